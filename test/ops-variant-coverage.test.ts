// Every webgpu variant of every kernel runs in CI: for each kernel family and each of its variants, the
// exercises below run with that variant forced and must agree with the float64 cpu kernels (values and
// gradients, at the op record's float32 tolerance); at the end, every kernel:variant pair declared in
// the registry must have run. A new kernel or variant without an exercise fails the last test.
import { describe, expect, it } from 'vitest';
import { withConfig } from '../core/config.js';
import { gpuBackend } from '../core/device.js';
import { hardware, registeredKernels, registeredOps, variantUsage, type Tolerance } from '../core/op.js';
import { solveFrequencies, type ClexSolveSpec } from '../models/clex/solve.js';
import {
  cat,
  functional as F,
  manualSeed,
  optim,
  randn,
  split,
  tensor,
  testing,
  WIDEST_FLOAT,
  type DeviceName,
  type Tensor,
} from '../index.js';

const f64 = { device: 'cpu', dtype: 'float64' } as const;
const tol = (op: string): Tolerance => registeredOps().get(op)?.tolerance.float32 ?? {};

interface Exercise {
  name: string;
  f: (...xs: Tensor[]) => Tensor;
  inputs: () => Tensor[];
  tolerance: Tolerance;
}

const clexSpec: ClexSolveSpec = {
  dim: 8,
  act: 'tanh',
  timeDt: 0.5,
  logBase: Math.log(10000),
  logNtkBase: Math.log(10000),
};
/** cos and sin tables [T, R] (the halves repeated, as the rotary ops expect), on `like`'s device and dtype. */
const rotaryTablesLike = (like: Tensor, T: number, R: number) => {
  const angles = tensor(
    Array.from({ length: (T * R) / 2 }, (_, i) => 0.1 * (i % 7) + 0.05 * i),
    { device: like.device, dtype: like.dtype, shape: [T, R / 2] },
  );
  return [cat([angles.cos(), angles.cos()], -1), cat([angles.sin(), angles.sin()], -1)];
};

/** Small programs that together reach every kernel, forward and backward. */
const EXERCISES: Exercise[] = [
  {
    name: 'softmax + logSoftmax + logsumexp',
    f: (x) => F.softmax(x).add(F.logSoftmax(x)).sum(-1).add(F.logsumexp(x)),
    inputs: () => [randn([3, 40], f64)],
    tolerance: tol('logSoftmax'),
  },
  {
    name: 'crossEntropy',
    f: (x, t) => F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
    inputs: () => [randn([4, 9], f64), tensor([1, 0, 8, -100], { device: 'cpu', dtype: 'int32' })],
    tolerance: tol('crossEntropy'),
  },
  {
    name: 'crossEntropy, per row',
    f: (x, t) => F.crossEntropy(x, t, { reduction: 'none' }),
    inputs: () => [randn([3, 9], f64), tensor([2, 5, 7], { device: 'cpu', dtype: 'int32' })],
    tolerance: tol('crossEntropy'),
  },
  {
    name: 'layerNorm + addRmsNorm',
    f: (x, r, w, b) => {
      const { sum, normed } = F.addRmsNorm(x, r, w);
      return F.layerNorm(normed.add(sum), w, b);
    },
    inputs: () => [randn([5, 12], f64), randn([5, 12], f64), randn([12], f64), randn([12], f64)],
    tolerance: tol('layerNorm'),
  },
  {
    name: 'matmul (batched)',
    f: (a, b) => a.matmul(b),
    inputs: () => [randn([2, 5, 7], f64), randn([7, 6], f64)],
    tolerance: tol('matmul'),
  },
  {
    name: 'cat + split',
    f: (a, b) => {
      const [u, v] = split(cat([a, b, a], 1), [4, 5], 1);
      return u.sum(1).add(v.square().sum(1));
    },
    inputs: () => [randn([3, 2], f64), randn([3, 5], f64)],
    tolerance: {},
  },
  {
    name: 'cat of five parts',
    f: (a) => cat([a, a.square(), a, a.neg(), a], 0),
    inputs: () => [randn([2, 3], f64)],
    tolerance: {},
  },
  {
    name: 'applyRotaryQK',
    f: (q, k) => {
      const [c, s] = rotaryTablesLike(q, 3, 4);
      const r = F.applyRotaryQK(q, k, c, s);
      return r.q.add(r.k);
    },
    inputs: () => [randn([1, 2, 3, 4], f64), randn([1, 2, 3, 4], f64)],
    tolerance: tol('applyRotaryQK'),
  },
  {
    name: 'applyRotaryQKFrequencies',
    f: (q, k, theta) => {
      const positions = tensor([0, 2, 5], { device: q.device, dtype: q.dtype });
      const r = F.applyRotaryQKFrequencies(q.transpose(1, 2), k.transpose(1, 2), theta, positions, { mscale: 1.2 });
      return r.q.add(r.k);
    },
    inputs: () => [randn([1, 3, 2, 6], f64), randn([1, 3, 2, 6], f64), randn([2], f64).abs()],
    tolerance: tol('applyRotaryQKFrequencies'),
  },
  {
    name: 'rotaryTables',
    f: (theta) => {
      const { cos, sin } = F.rotaryTables(theta, [0, 1, 2, 5]);
      return cos.add(sin);
    },
    inputs: () => [randn([3], f64).abs()],
    tolerance: tol('rotaryTables'),
  },
  {
    name: 'scaledDotProductAttention',
    f: (q, k, v) => F.scaledDotProductAttention(q, k, v, { causal: true }),
    inputs: () => [randn([1, 2, 5, 8], f64), randn([1, 2, 5, 8], f64), randn([1, 2, 5, 8], f64)],
    tolerance: tol('scaledDotProductAttention'),
  },
  {
    name: 'swiglu',
    f: (g, u) => F.swiglu(g, u),
    inputs: () => [randn([3, 6], f64), randn([3, 6], f64)],
    tolerance: {},
  },
  {
    name: 'dropout (p = 0.3, seeded)',
    f: (x) => {
      manualSeed(11);
      return F.dropout(x, 0.3, true);
    },
    inputs: () => [randn([4, 16], f64)],
    tolerance: {},
  },
  {
    name: 'clexSolve',
    f: (u, w) => solveFrequencies(u, w, clexSpec, 2),
    inputs: () => [randn([4, 8], f64).mul(0.3), randn([8, 4], f64).mul(0.3)],
    tolerance: tol('clexSolve'),
  },
];

/** Kernels outside autograd (optimizer updates, gradient clipping): final values on a device. */
interface Update {
  name: string;
  values: (device: DeviceName) => Promise<number[]>;
}

const UPDATES: Update[] = [
  {
    name: 'clipGradNorm + AdamW step (two parameters)',
    values: async (device) => {
      const opts = { device, dtype: WIDEST_FLOAT[device], requiresGrad: true };
      const params = [
        tensor([0.5, -1, 2, 0.25], opts),
        tensor(
          [
            [1.5, -0.5],
            [0.75, 3],
          ],
          opts,
        ),
      ];
      params[0].square().sum().add(params[1].mul(params[1].sum()).sum()).backward();
      const norm = optim.clipGradNorm(params, 1);
      const opt = new optim.AdamW(params, { lr: 0.1, weightDecay: 0.01 });
      opt.step();
      opt.step();
      return [...(await norm.data()), ...(await params[0].data()), ...(await params[1].data())];
    },
  },
  {
    name: 'clipGradNormGroups + AdamW step (two groups, their own lr and weight decay, a large gradient)',
    values: async (device) => {
      const opts = { device, dtype: WIDEST_FLOAT[device], requiresGrad: true };
      const big = tensor(
        Array.from({ length: 20000 }, (_, i) => Math.sin(i)),
        opts,
      );
      const small = tensor([0.5, -1, 2], opts);
      big.square().sum().mul(0.01).add(small.exp().sum()).backward();
      const norms = optim.clipGradNormGroups([[big], [small]], 1);
      const opt = new optim.AdamW(
        [
          { params: [big], weightDecay: 0.1 },
          { params: [small], lr: 0.02, weightDecay: 0 },
        ],
        { lr: 0.1 },
      );
      opt.step();
      return [
        ...(await Promise.all(norms.map((n) => n.item()))),
        ...(await big.data()).slice(0, 50),
        ...(await small.data()),
      ];
    },
  },
  {
    name: 'GradScaler: unscale, then an AdamW step',
    values: async (device) => {
      const opts = { device, dtype: WIDEST_FLOAT[device], requiresGrad: true };
      const params = [tensor([0.5, -1, 2, 0.25], opts), tensor([1.5, -0.5, 0.75], opts)];
      const scaler = new optim.GradScaler({ initScale: 2 ** 8 });
      const opt = new optim.AdamW(params, { lr: 0.1 });
      await scaler.scale(params[0].square().sum().add(params[1].exp().sum())).backwardAsync();
      const applied = await scaler.step(opt);
      scaler.update();
      return [Number(applied), scaler.getScale(), ...(await params[0].data()), ...(await params[1].data())];
    },
  },
];

/** Every family with its variant names, from the registry. */
function families(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const k of registeredKernels().values()) {
    const names = out.get(k.family) ?? [];
    for (const v of k.webgpu) if (!names.includes(v.name)) names.push(v.name);
    out.set(k.family, names);
  }
  return out;
}

describe.runIf(gpuBackend())('every kernel variant', () => {
  const before = new Map(variantUsage());
  /** family:variant pairs that need a feature this adapter lacks (e.g. 'needs the subgroups feature'): they cannot run here. */
  const unavailable = new Set<string>();
  const cases = [...families()].flatMap(([family, variants]) => variants.map((variant) => [family, variant] as const));

  it.each(cases)(
    'family %s, variant %s: every exercise agrees with the float64 cpu kernels',
    async (family, variant) => {
      manualSeed(5);
      for (const ex of EXERCISES) {
        const inputs = ex.inputs();
        // A forced variant that does not fit an exercise is an error naming it; those exercises skip it.
        const report = await withConfig({ variants: { [family]: variant } }, () =>
          testing.gradcheckDevices(ex.f, inputs, ex.tolerance),
        ).catch((e: Error) => {
          if (!/the forced variant .* does not fit/.test(e.message)) throw e;
          const feature = /needs the (\S+) feature/.exec(e.message)?.[1];
          if (feature && !hardware().features.has(feature)) unavailable.add(`${family}:${variant}`);
          return null;
        });
        if (report) expect(report.ok, `${ex.name}: ${report.message}`).toBe(true);
      }
      for (const update of UPDATES) {
        const [gpu, ref] = await withConfig({ variants: { [family]: variant } }, async () => [
          await update.values('webgpu'),
          await update.values('cpu'),
        ]);
        expect(
          gpu.map((v, i) => Math.abs(v - ref[i]) <= 1e-5 + 1e-4 * Math.abs(ref[i])),
          update.name,
        ).not.toContain(false);
      }
    },
  );

  it('every declared kernel:variant pair ran', () => {
    const missing: string[] = [];
    for (const k of registeredKernels().values()) {
      for (const v of k.webgpu) {
        const key = `${k.name}:${v.name}`;
        if (unavailable.has(`${k.family}:${v.name}`)) continue;
        if ((variantUsage().get(key) ?? 0) <= (before.get(key) ?? 0)) missing.push(key);
      }
    }
    expect(missing).toEqual([]);
  });
});
