// The differentiable ops of the foundation, each with an input generator and the function to check.
// Shared by the cpu (finite differences) and webgpu (vs cpu f64) gradient-check suites.
import fc from 'fast-check';
import { cat, stack, tensor, Tensor, where, testing } from '../index.js';

const { shapeArb, broadcastPairArb, valuesArb } = testing;

export interface InputSpec {
  shape: number[];
  values: number[];
  dtype?: 'int32';
}

export interface OpCase {
  name: string;
  /** Tensor inputs, plus plain-number parameters (axes, flags) for f. */
  inputs: fc.Arbitrary<{ specs: InputSpec[]; params: number[] }>;
  f: (params: number[]) => (...xs: Tensor[]) => Tensor;
  /** Options for the cpu finite-difference check. */
  cpu?: testing.GradcheckOptions;
  /** Options for the webgpu-vs-cpu check. */
  gpu?: testing.DeviceCheckOptions;
}

export function makeInputs(specs: InputSpec[], device: 'cpu' | 'webgpu' = 'cpu'): Tensor[] {
  return specs.map((s) => tensor(s.dtype ? Int32Array.from(s.values) : Float64Array.from(s.values), { shape: s.shape, dtype: s.dtype ?? (device === 'cpu' ? 'float64' : 'float32'), device }));
}

const noParams = (a: fc.Arbitrary<InputSpec[]>) => a.map((specs) => ({ specs, params: [] as number[] }));

const one = (opts: Parameters<typeof valuesArb>[1] = {}, shape = shapeArb()) =>
  shape.chain((s) => valuesArb(s, opts).map((values) => [{ shape: s, values }]));

const positive = { min: 0.2, max: 2 };

const unary: [string, (x: Tensor) => Tensor, Parameters<typeof valuesArb>[1]?][] = [
  ['neg', (x) => x.neg()],
  ['exp', (x) => x.exp()],
  ['log', (x) => x.log(), positive],
  ['sqrt', (x) => x.sqrt(), positive],
  ['rsqrt', (x) => x.rsqrt(), positive],
  ['abs', (x) => x.abs(), { avoid: [0] }],
  ['sin', (x) => x.sin()],
  ['cos', (x) => x.cos()],
  ['tanh', (x) => x.tanh()],
  ['sigmoid', (x) => x.sigmoid()],
  ['relu', (x) => x.relu(), { avoid: [0] }],
  ['gelu', (x) => x.gelu()],
  ['silu', (x) => x.silu()],
  ['softplus', (x) => x.softplus()],
  ['square', (x) => x.square()],
  ['reciprocal', (x) => x.reciprocal(), positive],
];

const pair = (opts: Parameters<typeof valuesArb>[1] = {}, optsB = opts) =>
  broadcastPairArb().chain(([a, b]) => fc.tuple(valuesArb(a, opts), valuesArb(b, optsB)).map(([va, vb]) => [{ shape: a, values: va }, { shape: b, values: vb }]));

/** Pairs whose elements never tie after broadcasting (maximum/minimum have a kink there). */
const untiedPair = pair().filter(([a, b]) => a.values.every((x) => b.values.every((y) => Math.abs(x - y) > 0.05)));

const binary: [string, (a: Tensor, b: Tensor) => Tensor, fc.Arbitrary<InputSpec[]>][] = [
  ['add', (a, b) => a.add(b), pair()],
  ['sub', (a, b) => a.sub(b), pair()],
  ['mul', (a, b) => a.mul(b), pair()],
  ['div', (a, b) => a.div(b), pair({}, { min: 0.3, max: 2 })],
  ['pow', (a, b) => a.pow(b), pair({ min: 0.3, max: 2 }, { min: -2, max: 2 })],
  ['maximum', (a, b) => a.maximum(b), untiedPair],
  ['minimum', (a, b) => a.minimum(b), untiedPair],
];

/** A shape (rank ≥ 1) with a random non-empty subset of its axes and a keepdim flag. */
const reduceArb = (opts: Parameters<typeof valuesArb>[1] = {}) =>
  shapeArb({ minRank: 1 }).chain((shape) =>
    fc.tuple(valuesArb(shape, opts), fc.subarray([...shape.keys()], { minLength: 1 }), fc.boolean()).map(([values, axes, keepdim]) => ({ inputs: [{ shape, values }], axes, keepdim })),
  );

/** No two values within 1e-3 (max/min have a kink at ties). */
const untied = (v: number[]) => [...v].sort((a, b) => a - b).every((x, i, a) => i === 0 || x - a[i - 1] > 1e-3);

/** params = [keepdim, ...axes]. var needs 2+ elements per reduced group. */
function reduceCase(name: string, f: (x: Tensor, axes: number[], keepdim: boolean) => Tensor, distinct = false): OpCase {
  return {
    name,
    inputs: reduceArb()
      .filter((c) => name !== 'var' || c.axes.reduce((n, a) => n * c.inputs[0].shape[a], 1) >= 2)
      .filter((c) => !distinct || untied(c.inputs[0].values))
      .map((c) => ({ specs: c.inputs, params: [c.keepdim ? 1 : 0, ...c.axes] })),
    f: ([keepdim, ...axes]) => (x) => f(x, axes, keepdim === 1),
  };
}

export const OP_CASES: OpCase[] = [
  ...unary.map(([name, f, opts]) => ({ name, inputs: noParams(one(opts)), f: () => f })),
  ...binary.map(([name, f, inputs]) => ({ name, inputs: noParams(inputs), f: () => f })),
  {
    name: 'where',
    inputs: broadcastPairArb().chain(([a, b]) =>
      fc.tuple(valuesArb(a), valuesArb(b), fc.array(fc.integer({ min: 0, max: 1 }), { minLength: a.reduce((x, y) => x * y, 1), maxLength: a.reduce((x, y) => x * y, 1) })).map(([va, vb, c]) => [
        { shape: a, values: c, dtype: 'int32' as const }, { shape: a, values: va }, { shape: b, values: vb },
      ])).map((specs) => ({ specs, params: [] })),
    f: () => (c, a, b) => where(c, a, b),
  },
  reduceCase('sum', (x, axes, keepdim) => x.sum(axes, keepdim)),
  reduceCase('mean', (x, axes, keepdim) => x.mean(axes, keepdim)),
  reduceCase('max', (x, axes, keepdim) => x.max(axes, keepdim), true),
  reduceCase('min', (x, axes, keepdim) => x.min(axes, keepdim), true),
  reduceCase('var', (x, axes, keepdim) => x.var(axes, { keepdim })),
  {
    name: 'matmul',
    inputs: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), broadcastPairArb({ maxRank: 2, maxDim: 3 }), fc.constantFrom('mm', 'vec-left', 'vec-right'))
      .chain(([m, k, n, [ba, bb], kind]) => {
        const a = kind === 'vec-left' ? [k] : [...ba, m, k];
        const b = kind === 'vec-right' ? [k] : [...bb, k, n];
        return fc.tuple(valuesArb(a), valuesArb(b)).map(([va, vb]) => ({ specs: [{ shape: a, values: va }, { shape: b, values: vb }], params: [] }));
      }),
    f: () => (a, b) => a.matmul(b),
    gpu: { rtol: 3e-4, atol: 3e-5 },
  },
  {
    name: 'reshape+permute+transpose',
    inputs: noParams(one({}, shapeArb({ minRank: 2, maxRank: 4 }))),
    f: () => (x) => x.permute([...x.shape.keys()].reverse()).reshape([-1]).reshape([x.shape[x.rank - 1], -1]).transpose(0, 1).mul(x.reshape([-1]).sum()),
  },
  {
    name: 'expand+unsqueeze+squeeze',
    inputs: noParams(one({}, shapeArb({ minRank: 1, maxRank: 3 }))),
    f: () => (x) => x.unsqueeze(0).expand([3, ...x.shape]).squeeze(0).mul(x.unsqueeze(-1).squeeze(-1)),
  },
  {
    name: 'slice+narrow+contiguous',
    inputs: noParams(one({}, shapeArb({ minRank: 1, maxRank: 3, minDim: 2, maxDim: 5 }))),
    f: () => (x) => x.slice(-1, 0, undefined, 2).contiguous().square().sum().add(x.narrow(0, 1, x.shape[0] - 1).exp().sum()),
  },
  {
    name: 'cat+stack',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) => fc.tuple(valuesArb(s), valuesArb(s)).map(([a, b]) => ({ specs: [{ shape: s, values: a }, { shape: s, values: b }], params: [] }))),
    f: () => (a, b) => cat([a, b.mul(a)], -1).add(1).mul(stack([a, b], 0).sum(0).unsqueeze(-1).expand([...a.shape, 1]).reshape(a.shape).sum()),
  },
  {
    name: 'gather',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc.tuple(valuesArb(s), fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 4 })).chain(([vals, axis, m]) => {
        const idxShape = s.map((d, i) => (i === axis ? m : d));
        const n = idxShape.reduce((a, b) => a * b, 1);
        return fc.array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: n, maxLength: n }).map((idx) => ({
          specs: [{ shape: s, values: vals }, { shape: idxShape, values: idx, dtype: 'int32' as const }], params: [axis],
        }));
      })),
    f: ([axis]) => (x, idx) => x.gather(axis, idx),
  },
  {
    name: 'indexSelect',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc.tuple(valuesArb(s), fc.integer({ min: 0, max: s.length - 1 })).chain(([vals, axis]) =>
        fc.array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: 1, maxLength: 5 }).map((idx) => ({
          specs: [{ shape: s, values: vals }, { shape: [idx.length], values: idx, dtype: 'int32' as const }], params: [axis],
        })))),
    f: ([axis]) => (x, idx) => x.indexSelect(axis, idx),
  },
  {
    name: 'scatterAdd',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc.tuple(valuesArb(s), fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 4 })).chain(([vals, axis, m]) => {
        const srcShape = s.map((d, i) => (i === axis ? m : d));
        const n = srcShape.reduce((a, b) => a * b, 1);
        return fc.tuple(valuesArb(srcShape), fc.array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: n, maxLength: n })).map(([src, idx]) => ({
          specs: [{ shape: s, values: vals }, { shape: srcShape, values: src }, { shape: srcShape, values: idx, dtype: 'int32' as const }], params: [axis],
        }));
      })),
    f: ([axis]) => (x, src, idx) => x.scatterAdd(axis, idx, src).square(),
  },
  {
    name: 'astype',
    inputs: noParams(one()),
    f: () => (x) => x.astype('float32').astype(x.dtype).square(),
    cpu: { eps: 1e-2, atol: 1e-4, rtol: 1e-3 },
  },
];

