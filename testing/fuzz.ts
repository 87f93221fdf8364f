// Differential fuzzing: fast-check generates random programs (chains of ops over random shapes, with
// broadcasting partners, views, reductions, matmuls and fused transformer ops); each runs on webgpu
// (float32) and on the float64 cpu reference, and values and gradients must agree.
import fc from 'fast-check';
import '../ops/elementwise/index.js'; // the Tensor methods the programs call
import '../ops/reduce.js';
import '../ops/matmul/index.js';
import '../ops/indexing.js';
import { seededUniform } from '../core/rng.js';
import { WIDEST_FLOAT, type DeviceName } from '../core/backend.js';
import type { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';
import { cat } from '../ops/movement.js';
import * as F from '../ops/functional.js';
import { scope } from '../core/scope.js';

/** The elementwise steps: they apply at any rank, 0-d included. */
export const POINTWISE_FUZZ_OPS = [
  'exp',
  'log',
  'sqrt',
  'tanh',
  'sigmoid',
  'sin',
  'neg',
  'softplus',
  'square',
  'gelu',
  'silu',
  'pow',
  'reciprocal',
  'add',
  'sub',
  'mul',
  'div',
] as const;

/** Every op a program may use. Domains are kept smooth (no kinks, no ties) so f32 and f64 agree. */
export const FUZZ_OPS = [
  ...POINTWISE_FUZZ_OPS,
  'sum',
  'mean',
  'var',
  'transpose',
  'flatten',
  'unsqueeze',
  'narrow',
  'expand',
  'permute',
  'matmul',
  'cat',
  'softmax',
  'logSoftmax',
  'layerNorm',
  'rmsNorm',
  'indexSelect',
  'attention',
  'crossEntropy',
] as const;
export type FuzzOp = (typeof FUZZ_OPS)[number];

export interface FuzzStep {
  op: FuzzOp;
  seed: number;
}
export interface FuzzProgram {
  shape: number[];
  seed: number;
  steps: FuzzStep[];
}

export const fuzzProgram = (maxSteps = 5): fc.Arbitrary<FuzzProgram> =>
  fc.record({
    shape: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
    seed: fc.nat(),
    steps: fc.array(fc.record({ op: fc.constantFrom(...FUZZ_OPS), seed: fc.nat() }), {
      minLength: 1,
      maxLength: maxSteps,
    }),
  });

export interface FuzzResult {
  /** The ops that actually ran (a step that does not apply to the current rank is skipped). */
  trace: string[];
  out: number[];
  outShape: number[];
  /** Gradients of the program's inputs (the start tensor and every partner), flattened. */
  grads: number[][];
}

/** n distinct values from [-2, 2] on a 1/256 grid (exact in f32), in random order. Distinct, because an exact
 * tie fed to a shift-invariant op (softmax, layer norm) makes a gradient cancel to exactly 0, and float32
 * rounding of the large terms that cancel then fails the comparison by chance (it did, twice). */
const values = (seed: number, n: number): number[] => {
  const next = seededUniform(seed);
  const grid = Array.from({ length: 1025 }, (_, k) => (k - 512) / 256);
  for (let i = grid.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [grid[i], grid[j]] = [grid[j], grid[i]];
  }
  return Array.from({ length: n }, (_, i) => grid[i % grid.length]);
};

/** Runs a program on one device: chain the steps, then loss = Σ out·w, backward. */
export async function runFuzzProgram(p: FuzzProgram, device: DeviceName): Promise<FuzzResult> {
  const dtype = WIDEST_FLOAT[device];
  return scope(async () => {
    const inputs: Tensor[] = [];
    const input = (shape: number[], seed: number): Tensor => {
      const t = tensor(
        values(
          seed,
          shape.reduce((a, b) => a * b, 1),
        ),
        { shape, device, dtype, requiresGrad: true },
      );
      inputs.push(t);
      return t;
    };
    let x = input(p.shape, p.seed);
    const trace: string[] = [];
    for (const step of p.steps) {
      const next = applyStep(x, step, input);
      if (next) {
        x = next;
        trace.push(`${step.op}→[${x.shape.join(',')}]`);
      }
    }
    const w = tensor(values(p.seed + 1, x.size), { shape: [...x.shape], device, dtype });
    const loss = x.mul(w).sum();
    await loss.backwardAsync();
    const out = Array.from(await x.data());
    const grads: number[][] = [];
    for (const t of inputs) grads.push(t.grad ? Array.from(await t.grad.data()) : []);
    return { trace, out, outShape: [...x.shape], grads };
  });
}

/** Ops that apply to a 0-d tensor (the rest need an axis). */
const RANK0_OPS = new Set<FuzzOp>([...POINTWISE_FUZZ_OPS, 'unsqueeze', 'expand']);

/** One step, or null when it does not apply at this rank/shape. */
function applyStep(x: Tensor, { op, seed }: FuzzStep, input: (shape: number[], seed: number) => Tensor): Tensor | null {
  const next = seededUniform(seed);
  const pick = (n: number) => Math.floor(next() * n);
  const axis = x.rank ? pick(x.rank) : 0;
  /** A partner whose shape broadcasts against x (some dims 1, maybe fewer leading dims). */
  const partner = () => {
    const drop = pick(x.rank);
    return input(
      x.shape.slice(drop).map((d) => (next() < 0.3 ? 1 : d)),
      seed + 7,
    );
  };
  const positive = (t: Tensor) => t.square().add(0.5);
  /** Ops that copy values (repeated indices, expand) are followed by a distinct constant offset: no ties. */
  const untie = (t: Tensor) =>
    t.add(tensor(values(seed + 37, t.size), { shape: [...t.shape], device: t.device, dtype: t.dtype }));
  if (x.rank === 0 && !RANK0_OPS.has(op)) return null;
  switch (op) {
    case 'exp':
      return x.tanh().exp();
    case 'log':
      return positive(x).log();
    case 'sqrt':
      return positive(x).sqrt();
    case 'pow':
      return positive(x).pow(1.5);
    case 'reciprocal':
      return positive(x).reciprocal();
    case 'tanh':
      return x.tanh();
    case 'sigmoid':
      return x.sigmoid();
    case 'sin':
      return x.sin();
    case 'neg':
      return x.neg();
    case 'softplus':
      return x.softplus();
    case 'square':
      return x.tanh().square();
    case 'gelu':
      return F.gelu(x);
    case 'silu':
      return F.silu(x);
    case 'add':
      return x.add(partner());
    case 'sub':
      return partner().sub(x);
    case 'mul':
      return x.mul(partner());
    case 'div':
      return x.div(positive(partner()));
    case 'sum':
      return x.rank > 1 ? x.sum(axis, next() < 0.5) : null;
    case 'mean':
      return x.rank > 1 ? x.mean(axis, next() < 0.5) : null;
    case 'var':
      return x.rank > 1 && x.shape[axis] > 1 ? x.var(axis, { keepdim: true }) : null;
    case 'transpose':
      return x.rank > 1 ? x.transpose(axis, pick(x.rank)) : null;
    case 'permute':
      return x.rank > 1 ? x.permute([...x.shape.keys()].reverse()) : null;
    case 'flatten':
      return x.rank > 1 ? x.reshape([x.size]) : null;
    case 'unsqueeze':
      return x.rank < 4 ? x.unsqueeze(pick(x.rank + 1)) : null;
    case 'expand': {
      if (x.rank >= 4) return null;
      const y = x.unsqueeze(0);
      return untie(y.expand([2 + pick(2), ...x.shape]));
    }
    case 'narrow': {
      const d = x.shape[axis];
      if (d < 2) return null;
      const start = pick(d - 1);
      return x.narrow(axis, start, 1 + pick(d - start - 1));
    }
    case 'matmul': {
      const k = x.shape[x.rank - 1];
      return x.matmul(input([k, 1 + pick(4)], seed + 11));
    }
    case 'cat': {
      const shape = [...x.shape];
      shape[axis] = 1 + pick(3);
      return cat([x, input(shape, seed + 13)], axis);
    }
    case 'softmax':
      return F.softmax(x, -1);
    case 'logSoftmax':
      return F.logSoftmax(x, -1);
    // Over 2 values a layer norm gives ±1 whatever its input: the input's gradient is exactly 0, and
    // float32 returns rounding noise scaled by 1/|x₁ − x₂| (it failed the comparison by chance), so ≥ 3.
    case 'layerNorm':
      return x.shape[x.rank - 1] > 2
        ? F.layerNorm(x, input([x.shape[x.rank - 1]], seed + 17), input([x.shape[x.rank - 1]], seed + 19))
        : null;
    case 'rmsNorm':
      return F.rmsNorm(x, input([x.shape[x.rank - 1]], seed + 23));
    case 'indexSelect': {
      // Repeated indices make the backward a scatter-add with collisions.
      const ids = Array.from({ length: 1 + pick(5) }, () => pick(x.shape[axis]));
      return untie(x.indexSelect(axis, tensor(ids, { dtype: 'int32', device: x.device })));
    }
    case 'attention': {
      // x as [batch, heads, T, D] queries; keys and values are partners of the same shape.
      if (x.rank < 2) return null;
      const q = x.reshape([1, 1, x.size / x.shape[x.rank - 1], x.shape[x.rank - 1]]);
      const k = input([...q.shape], seed + 29),
        v = input([...q.shape], seed + 31);
      return F.scaledDotProductAttention(q, k, v, { causal: next() < 0.5 });
    }
    case 'crossEntropy': {
      // Rows of x as logits over its last axis; a scalar loss.
      if (x.rank < 1 || x.shape[x.rank - 1] < 2) return null;
      const classes = x.shape[x.rank - 1];
      const logits = x.reshape([x.size / classes, classes]);
      const targets = tensor(
        Array.from({ length: logits.shape[0] }, () => pick(classes)),
        { dtype: 'int32', device: x.device },
      );
      return F.crossEntropy(logits, targets, { labelSmoothing: next() < 0.5 ? 0.1 : 0 });
    }
  }
}

/** Largest |a − b| / (atol + rtol·max|b|) over two arrays (≤ 1 means they agree). */
export function fuzzMismatch(a: readonly number[], b: readonly number[], rtol = 2e-3, atol = 2e-4): number {
  if (a.length !== b.length) return Infinity;
  const scale = Math.max(1, ...b.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity;
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / (atol * scale + rtol * Math.abs(b[i])));
  }
  return worst;
}

/** Runs p on webgpu and cpu; describes the first disagreement, or returns null when they agree. */
export async function fuzzCompare(p: FuzzProgram): Promise<string | null> {
  const [gpu, ref] = [await runFuzzProgram(p, 'webgpu'), await runFuzzProgram(p, 'cpu')];
  const where = `program ${JSON.stringify(p)} (${ref.trace.join(' ')})`;
  if (gpu.outShape.join() !== ref.outShape.join()) return `${where}: shapes differ`;
  const outErr = fuzzMismatch(gpu.out, ref.out);
  if (outErr > 1) return `${where}: values differ (×${outErr.toFixed(1)} the tolerance)`;
  for (let i = 0; i < ref.grads.length; i++) {
    const e = fuzzMismatch(gpu.grads[i], ref.grads[i], 5e-3, 5e-4);
    if (e > 1) return `${where}: gradient of input ${i} differs (×${e.toFixed(1)} the tolerance)`;
  }
  return null;
}
