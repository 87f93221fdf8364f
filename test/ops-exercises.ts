// Small programs that together reach every fused kernel, forward and backward: the variant-coverage test
// runs them under every forced variant in float32, the float16 test in float16.
import { registeredKernels, registeredOps, type Tolerance } from '../core/op.js';
import { solveFrequencies, type ClexSolveSpec } from '../models/clex/solve.js';
import type { DType } from '../core/dtype.js';
import { cat, functional as F, manualSeed, randn, split, tensor, type Tensor } from '../index.js';

const f64 = { device: 'cpu', dtype: 'float64' } as const;
/** An exercise's tolerance for `dtype`: its op record's entry, else the checks' defaults. */
export const exerciseTolerance = (ex: Exercise, dtype: DType): Tolerance =>
  (ex.op && registeredOps().get(ex.op)?.tolerance[dtype]) || {};

export interface Exercise {
  name: string;
  f: (...xs: Tensor[]) => Tensor;
  inputs: () => Tensor[];
  /** The op record whose tolerance (per dtype) it is checked at; the checks' defaults without one. */
  op?: string;
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
export const EXERCISES: Exercise[] = [
  {
    name: 'softmax + logSoftmax + logsumexp',
    f: (x) => F.softmax(x).add(F.logSoftmax(x)).sum(-1).add(F.logsumexp(x)),
    inputs: () => [randn([3, 40], f64)],
    op: 'logSoftmax',
  },
  {
    name: 'crossEntropy',
    f: (x, t) => F.crossEntropy(x, t, { labelSmoothing: 0.1 }),
    inputs: () => [randn([4, 9], f64), tensor([1, 0, 8, -100], { device: 'cpu', dtype: 'int32' })],
    op: 'crossEntropy',
  },
  {
    name: 'crossEntropy, per row',
    f: (x, t) => F.crossEntropy(x, t, { reduction: 'none' }),
    inputs: () => [randn([3, 9], f64), tensor([2, 5, 7], { device: 'cpu', dtype: 'int32' })],
    op: 'crossEntropy',
  },
  {
    name: 'layerNorm + addRmsNorm',
    f: (x, r, w, b) => {
      const { sum, normed } = F.addRmsNorm(x, r, w);
      return F.layerNorm(normed.add(sum), w, b);
    },
    inputs: () => [randn([5, 12], f64), randn([5, 12], f64), randn([12], f64), randn([12], f64)],
    op: 'layerNorm',
  },
  {
    name: 'matmul (batched)',
    f: (a, b) => a.matmul(b),
    inputs: () => [randn([2, 5, 7], f64), randn([7, 6], f64)],
    op: 'matmul',
  },
  {
    name: 'cat + split',
    f: (a, b) => {
      const [u, v] = split(cat([a, b, a], 1), [4, 5], 1);
      return u.sum(1).add(v.square().sum(1));
    },
    inputs: () => [randn([3, 2], f64), randn([3, 5], f64)],
  },
  {
    name: 'cat of five parts',
    f: (a) => cat([a, a.square(), a, a.neg(), a], 0),
    inputs: () => [randn([2, 3], f64)],
  },
  {
    name: 'applyRotaryQK',
    f: (q, k) => {
      const [c, s] = rotaryTablesLike(q, 3, 4);
      const r = F.applyRotaryQK(q, k, c, s);
      return r.q.add(r.k);
    },
    inputs: () => [randn([1, 2, 3, 4], f64), randn([1, 2, 3, 4], f64)],
    op: 'applyRotaryQK',
  },
  {
    name: 'applyRotaryQKFrequencies',
    f: (q, k, theta) => {
      const positions = tensor([0, 2, 5], { device: q.device, dtype: q.dtype });
      const r = F.applyRotaryQKFrequencies(q.transpose(1, 2), k.transpose(1, 2), theta, positions, { mscale: 1.2 });
      return r.q.add(r.k);
    },
    inputs: () => [randn([1, 3, 2, 6], f64), randn([1, 3, 2, 6], f64), randn([2], f64).abs()],
    op: 'applyRotaryQKFrequencies',
  },
  {
    name: 'rotaryTables',
    f: (theta) => {
      const { cos, sin } = F.rotaryTables(theta, [0, 1, 2, 5]);
      return cos.add(sin);
    },
    inputs: () => [randn([3], f64).abs()],
    op: 'rotaryTables',
  },
  {
    name: 'scaledDotProductAttention',
    f: (q, k, v) => F.scaledDotProductAttention(q, k, v, { causal: true }),
    inputs: () => [randn([1, 2, 5, 8], f64), randn([1, 2, 5, 8], f64), randn([1, 2, 5, 8], f64)],
    op: 'scaledDotProductAttention',
  },
  {
    name: 'swiglu',
    f: (g, u) => F.swiglu(g, u),
    inputs: () => [randn([3, 6], f64), randn([3, 6], f64)],
  },
  {
    name: 'dropout (p = 0.3, seeded)',
    f: (x) => {
      manualSeed(11);
      return F.dropout(x, 0.3, true);
    },
    inputs: () => [randn([4, 16], f64)],
  },
  {
    name: 'clexSolve',
    f: (u, w) => solveFrequencies(u, w, clexSpec, 2),
    inputs: () => [randn([4, 8], f64).mul(0.3), randn([8, 4], f64).mul(0.3)],
    op: 'clexSolve',
  },
];

/** Every family with its variant names, from the registry. */
export function families(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const k of registeredKernels().values()) {
    const names = out.get(k.family) ?? [];
    for (const v of k.webgpu) if (!names.includes(v.name)) names.push(v.name);
    out.set(k.family, names);
  }
  return out;
}
