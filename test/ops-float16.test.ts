// Every op in float16 on webgpu against the cpu float64 reference computed on the same f16-rounded inputs,
// forward and gradients of a random weighted sum, at the op record's float16 tolerance: the foundation
// ops' cases (test/ops-cases.ts) and the fused ops' exercises (test/ops-exercises.ts) under every forced
// variant. The kernels that declare float16 must have run natively on float16 tensors (not through the
// float32 fallback), and every op record must say what float16 tolerance it is checked at.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withConfig } from '../core/config.js';
import { gpuBackend } from '../core/device.js';
import { hardware, registeredKernels, registeredOps, variantUsage, type Tolerance } from '../core/op.js';
import { grad, manualSeed, noGrad, randn, tensor, testing, type Tensor } from '../index.js';
import { makeInputs, OP_CASES } from './ops-cases.js';
import { exerciseTolerance, EXERCISES, families, type Exercise } from './ops-exercises.js';

/**
 * The foundation ops (elementwise, reductions, views, gathers) store each result in f16: one rounding
 * (2^-11 relative) per primitive, a few in a chain, and sums of f16 terms in the gradients.
 */
const FOUNDATION_F16: Tolerance = { rtol: 1e-2, atol: 1e-2 };

/** Deterministic cotangent values in [-1, 1] (both devices see the same, f16-exact). */
function cotangent(n: number): number[] {
  let s = 4321;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return Math.round(((s / 4294967296) * 2 - 1) * 1024) / 1024;
  });
}

/** f(...xs) and the gradients of Σ f·v on a device: float16 on webgpu, float64 on cpu. */
async function run(f: Exercise['f'], values: number[][], like: readonly Tensor[], device: 'webgpu' | 'cpu') {
  const dtype = device === 'webgpu' ? 'float16' : 'float64';
  const xs = like.map((t, i) =>
    tensor(values[i], { shape: t.shape, dtype: t.dtype === 'int32' ? 'int32' : dtype, device }),
  );
  const wrt = xs.map((x, i) => (x.dtype === 'int32' ? -1 : i)).filter((i) => i >= 0);
  const y = noGrad(() => f(...xs));
  expect(y.dtype, 'the output keeps the inputs’ float dtype').toBe(dtype);
  const v = tensor(cotangent(y.size), { shape: y.shape, dtype, device });
  const grads = grad(
    (...ws) =>
      f(...xs.map((x, i) => (wrt.includes(i) ? ws[wrt.indexOf(i)] : x)))
        .mul(v)
        .sum(),
    wrt.map((i) => xs[i]),
  );
  grads.forEach((g) => expect(g.dtype, 'gradients of float16 inputs are float16').toBe(dtype));
  const out = [await y.data(), ...(await Promise.all(grads.map((g) => g.data())))];
  [...xs, y, v, ...grads].forEach((t) => t.dispose());
  return out;
}

/** The largest error of webgpu float16 against cpu float64 (relative to atol + rtol·|ref|), and where. */
async function compareHalf(f: Exercise['f'], inputs: readonly Tensor[], tol: Tolerance) {
  const { atol = 1e-2, rtol = 1e-2 } = tol;
  // Both devices start from the f16-rounded inputs (int32 inputs as they are).
  const values = await Promise.all(
    inputs.map(async (t) => [...(await (t.dtype === 'int32' ? t : t.astype('float16')).data())]),
  );
  const [gpu, ref] = [await run(f, values, inputs, 'webgpu'), await run(f, values, inputs, 'cpu')];
  let worst = { ratio: 0, what: 'ok', abs: 0, rel: 0 };
  ref.forEach((r, k) =>
    r.forEach((want, i) => {
      const got = gpu[k][i];
      const err = Math.abs(got - want);
      const same = (Number.isNaN(want) && Number.isNaN(got)) || got === want;
      const ratio = same ? 0 : Number.isFinite(err) ? err / (atol + rtol * Math.abs(want)) : Infinity;
      if (ratio > worst.ratio)
        worst = {
          ratio,
          what: `${k === 0 ? 'output' : `grad ${k - 1}`}[${i}]: ${got} vs ${want}`,
          abs: err,
          rel: err / Math.abs(want),
        };
    }),
  );
  return worst;
}

const gpu = gpuBackend();
const hasHalf = !!gpu && hardware().features.has('shader-f16');

/** Ops that compute in float32 by design (CLEX's ODE): float16 inputs go through the float32 fallback. */
const FLOAT32_BY_DESIGN = ['clexDynamics', 'clexSolve'];

/** The kernels with native float16 variants: dropping a declaration falls back to float32 and fails here. */
const NATIVE_FLOAT16 = [
  'matmul',
  'softmaxRows',
  'softmaxRowsBackward',
  'crossEntropyRows',
  'crossEntropyRowsBackward',
  'crossEntropyReduce',
  'normRows',
  'normRowsBackward',
  'applyRotary',
  'applyRotaryBackward',
  'applyRotaryFrequencies',
  'applyRotaryFrequenciesBackward',
  'scaledDotProductAttention',
  'scaledDotProductAttentionBackward',
  'swigluBackward',
  'join',
  'dropout',
];

describe('op records', () => {
  it('every registered op has a float16 tolerance (but the float32-by-design ones)', () => {
    const missing = [...registeredOps().values()]
      .filter((op) => !op.tolerance.float16 && !FLOAT32_BY_DESIGN.includes(op.name))
      .map((op) => op.name);
    expect(missing).toEqual([]);
  });

  it('the fused kernels declare native float16 variants', () => {
    expect(NATIVE_FLOAT16.filter((name) => !registeredKernels().get(name)?.float16)).toEqual([]);
  });
});

describe.runIf(hasHalf)('webgpu float16 vs cpu float64', () => {
  describe('foundation ops', () => {
    for (const op of OP_CASES) {
      it(op.name, async () => {
        await fc.assert(
          fc.asyncProperty(op.inputs, async ({ specs, params }) => {
            const inputs = makeInputs(specs);
            const worst = await compareHalf(op.f(params), inputs, FOUNDATION_F16);
            inputs.forEach((t) => t.dispose());
            expect(
              worst.ratio,
              `shapes ${JSON.stringify(specs.map((s) => s.shape))}: ${worst.what}`,
            ).toBeLessThanOrEqual(1);
          }),
          testing.fcParams(4),
        );
      });
    }
  });

  /** Aligned shapes (vec4 loads of f16), as well as the exercises' odd ones. */
  const extra: Exercise[] = [
    {
      name: 'matmul (aligned: vec4 loads; a transposed operand)',
      f: (a, b) => a.matmul(b).add(a.matmul(b.transpose(-1, -2).contiguous().transpose(-1, -2))),
      inputs: () => [
        randn([2, 8, 16], { device: 'cpu', dtype: 'float64' }),
        randn([16, 12], { device: 'cpu', dtype: 'float64' }),
      ],
      op: 'matmul',
    },
  ];
  /** family:variant pairs this adapter cannot run (a missing feature). */
  const unavailable = new Set<string>();
  const before = new Map(variantUsage());
  const cases = [...families()].flatMap(([family, variants]) => variants.map((variant) => [family, variant] as const));

  it.each(cases)('family %s, variant %s: every exercise in float16', async (family, variant) => {
    manualSeed(7);
    for (const ex of [...EXERCISES, ...extra]) {
      const inputs = ex.inputs();
      const worst = await withConfig({ variants: { [family]: variant } }, () =>
        compareHalf(ex.f, inputs, exerciseTolerance(ex, 'float16')),
      ).catch((e: Error) => {
        if (!/the forced variant .* does not fit/.test(e.message)) throw e;
        const feature = /needs the (\S+) feature/.exec(e.message)?.[1];
        if (feature && !hardware().features.has(feature)) unavailable.add(`${family}:${variant}`);
        return null;
      });
      inputs.forEach((t) => t.dispose());
      if (worst) expect(worst.ratio, `${ex.name}: ${worst.what}`).toBeLessThanOrEqual(1);
    }
  });

  it('every kernel that declares float16 ran natively on float16 tensors, in every variant', () => {
    const missing: string[] = [];
    for (const k of registeredKernels().values()) {
      if (!k.float16) continue;
      for (const v of k.webgpu) {
        const key = `${k.name}:${v.name}:float16`;
        if (unavailable.has(`${k.family}:${v.name}`)) continue;
        if ((variantUsage().get(key) ?? 0) <= (before.get(key) ?? 0)) missing.push(key);
      }
    }
    expect(missing).toEqual([]);
  });
});
