// The differentiable ops of the foundation, each with an input generator and the function to check.
// Elementwise cases come from the table in ops/elementwise (ranges and tolerances included); the
// other ops' tolerances come from their homes under ops/.
// Shared by the cpu (finite differences) and webgpu (vs cpu f64) gradient-check suites.
import fc from 'fast-check';
import { cat, stack, tensor, Tensor, testing } from '../index.js';
import { ASTYPE_CHECK, ELEMENTWISE, elementwiseOp, type EwRow, type ValueRange } from '../ops/elementwise/index.js';
import { MATMUL_TOLERANCE } from '../ops/matmul/index.js';

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
  return specs.map((s) =>
    tensor(s.dtype ? Int32Array.from(s.values) : Float64Array.from(s.values), {
      shape: s.shape,
      dtype: s.dtype ?? (device === 'cpu' ? 'float64' : 'float32'),
      device,
    }),
  );
}

const noParams = (a: fc.Arbitrary<InputSpec[]>) => a.map((specs) => ({ specs, params: [] as number[] }));

const one = (opts: Parameters<typeof valuesArb>[1] = {}, shape = shapeArb()) =>
  shape.chain((s) => valuesArb(s, opts).map((values) => [{ shape: s, values }]));

/** f32-exact and never subnormal (GPUs may flush those), so both devices see the same inputs. */
const f32Exact = (v: number) => (Math.abs(v) < 1e-30 ? 0 : Math.fround(v));

/** Values for one operand of an elementwise row, in the row's range (int32 where it says so). */
function rangeSpec(shape: number[], range: ValueRange = {}): fc.Arbitrary<InputSpec> {
  if (range.int) {
    const n = shape.reduce((x, y) => x * y, 1);
    return fc
      .array(fc.integer({ min: range.min ?? 0, max: range.max ?? 1 }), { minLength: n, maxLength: n })
      .map((values) => ({ shape, values, dtype: 'int32' as const }));
  }
  return valuesArb(shape, range).map((values) => ({ shape, values: values.map(f32Exact) }));
}

/**
 * Inputs for an elementwise row, from its check ranges: one shape for unary rows, broadcast partners
 * for binary ones; a third operand (where's condition comes first) has the first partner's shape.
 */
export function rowInputs(row: EwRow): fc.Arbitrary<InputSpec[]> {
  const ranges = row.check.ranges ?? [];
  if (row.arity === 1) return shapeArb().chain((s) => rangeSpec(s, ranges[0]).map((x) => [x]));
  const pairs = broadcastPairArb().chain(([a, b]) => {
    const shapes = row.arity === 2 ? [a, b] : [a, a, b];
    return fc.tuple(...shapes.map((s, i) => rangeSpec(s, ranges[i])));
  });
  // Untied rows: no two elements of the two operands within 0.05 (maximum/minimum have a kink at ties).
  return row.check.untied
    ? pairs.filter(([x, y]) => x.values.every((u) => y.values.every((v) => Math.abs(u - v) > 0.05)))
    : pairs;
}

/** Every differentiable row of the elementwise table, checked with the row's own ranges and tolerances. */
const elementwiseCases: OpCase[] = Object.values(ELEMENTWISE)
  .filter((row) => row.grad !== 'none')
  .map((row) => ({
    name: row.name,
    inputs: noParams(rowInputs(row)),
    f:
      () =>
      (...xs: Tensor[]) =>
        elementwiseOp(row.name, xs),
    cpu: row.check.cpu,
    gpu: row.check.gpu,
  }));

/** A shape (rank ≥ 1) with a random non-empty subset of its axes and a keepdim flag. */
const reduceArb = (opts: Parameters<typeof valuesArb>[1] = {}) =>
  shapeArb({ minRank: 1 }).chain((shape) =>
    fc
      .tuple(valuesArb(shape, opts), fc.subarray([...shape.keys()], { minLength: 1 }), fc.boolean())
      .map(([values, axes, keepdim]) => ({ inputs: [{ shape, values }], axes, keepdim })),
  );

/** No two values within 1e-3 (max/min have a kink at ties). */
const untied = (v: number[]) => [...v].sort((a, b) => a - b).every((x, i, a) => i === 0 || x - a[i - 1] > 1e-3);

/** params = [keepdim, ...axes]. var needs 2+ elements per reduced group. */
function reduceCase(
  name: string,
  f: (x: Tensor, axes: number[], keepdim: boolean) => Tensor,
  distinct = false,
): OpCase {
  return {
    name,
    inputs: reduceArb()
      .filter((c) => name !== 'var' || c.axes.reduce((n, a) => n * c.inputs[0].shape[a], 1) >= 2)
      .filter((c) => !distinct || untied(c.inputs[0].values))
      .map((c) => ({ specs: c.inputs, params: [c.keepdim ? 1 : 0, ...c.axes] })),
    f:
      ([keepdim, ...axes]) =>
      (x) =>
        f(x, axes, keepdim === 1),
  };
}

export const OP_CASES: OpCase[] = [
  ...elementwiseCases,
  reduceCase('sum', (x, axes, keepdim) => x.sum(axes, keepdim)),
  reduceCase('mean', (x, axes, keepdim) => x.mean(axes, keepdim)),
  reduceCase('max', (x, axes, keepdim) => x.max(axes, keepdim), true),
  reduceCase('min', (x, axes, keepdim) => x.min(axes, keepdim), true),
  reduceCase('var', (x, axes, keepdim) => x.var(axes, { keepdim })),
  {
    name: 'matmul',
    inputs: fc
      .tuple(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        broadcastPairArb({ maxRank: 2, maxDim: 3 }),
        fc.constantFrom('mm', 'vec-left', 'vec-right'),
      )
      .chain(([m, k, n, [ba, bb], kind]) => {
        const a = kind === 'vec-left' ? [k] : [...ba, m, k];
        const b = kind === 'vec-right' ? [k] : [...bb, k, n];
        return fc.tuple(valuesArb(a), valuesArb(b)).map(([va, vb]) => ({
          specs: [
            { shape: a, values: va },
            { shape: b, values: vb },
          ],
          params: [],
        }));
      }),
    f: () => (a, b) => a.matmul(b),
    gpu: MATMUL_TOLERANCE.gpu,
  },
  {
    name: 'reshape+permute+transpose',
    inputs: noParams(one({}, shapeArb({ minRank: 2, maxRank: 4 }))),
    f: () => (x) =>
      x
        .permute([...x.shape.keys()].reverse())
        .reshape([-1])
        .reshape([x.shape[x.rank - 1], -1])
        .transpose(0, 1)
        .mul(x.reshape([-1]).sum()),
  },
  {
    name: 'expand+unsqueeze+squeeze',
    inputs: noParams(one({}, shapeArb({ minRank: 1, maxRank: 3 }))),
    f: () => (x) =>
      x
        .unsqueeze(0)
        .expand([3, ...x.shape])
        .squeeze(0)
        .mul(x.unsqueeze(-1).squeeze(-1)),
  },
  {
    name: 'slice+narrow+contiguous',
    inputs: noParams(one({}, shapeArb({ minRank: 1, maxRank: 3, minDim: 2, maxDim: 5 }))),
    f: () => (x) =>
      x
        .slice(-1, 0, undefined, 2)
        .contiguous()
        .square()
        .sum()
        .add(
          x
            .narrow(0, 1, x.shape[0] - 1)
            .exp()
            .sum(),
        ),
  },
  {
    name: 'cat+stack',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc.tuple(valuesArb(s), valuesArb(s)).map(([a, b]) => ({
        specs: [
          { shape: s, values: a },
          { shape: s, values: b },
        ],
        params: [],
      })),
    ),
    f: () => (a, b) =>
      cat([a, b.mul(a)], -1)
        .add(1)
        .mul(
          stack([a, b], 0)
            .sum(0)
            .unsqueeze(-1)
            .expand([...a.shape, 1])
            .reshape(a.shape)
            .sum(),
        ),
  },
  {
    name: 'gather',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc
        .tuple(valuesArb(s), fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 4 }))
        .chain(([vals, axis, m]) => {
          const idxShape = s.map((d, i) => (i === axis ? m : d));
          const n = idxShape.reduce((a, b) => a * b, 1);
          return fc.array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: n, maxLength: n }).map((idx) => ({
            specs: [
              { shape: s, values: vals },
              { shape: idxShape, values: idx, dtype: 'int32' as const },
            ],
            params: [axis],
          }));
        }),
    ),
    f:
      ([axis]) =>
      (x, idx) =>
        x.gather(axis, idx),
  },
  {
    name: 'indexSelect',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc.tuple(valuesArb(s), fc.integer({ min: 0, max: s.length - 1 })).chain(([vals, axis]) =>
        fc.array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: 1, maxLength: 5 }).map((idx) => ({
          specs: [
            { shape: s, values: vals },
            { shape: [idx.length], values: idx, dtype: 'int32' as const },
          ],
          params: [axis],
        })),
      ),
    ),
    f:
      ([axis]) =>
      (x, idx) =>
        x.indexSelect(axis, idx),
  },
  {
    name: 'scatterAdd',
    inputs: shapeArb({ minRank: 1, maxRank: 3 }).chain((s) =>
      fc
        .tuple(valuesArb(s), fc.integer({ min: 0, max: s.length - 1 }), fc.integer({ min: 1, max: 4 }))
        .chain(([vals, axis, m]) => {
          const srcShape = s.map((d, i) => (i === axis ? m : d));
          const n = srcShape.reduce((a, b) => a * b, 1);
          return fc
            .tuple(
              valuesArb(srcShape),
              fc.array(fc.integer({ min: 0, max: s[axis] - 1 }), { minLength: n, maxLength: n }),
            )
            .map(([src, idx]) => ({
              specs: [
                { shape: s, values: vals },
                { shape: srcShape, values: src },
                { shape: srcShape, values: idx, dtype: 'int32' as const },
              ],
              params: [axis],
            }));
        }),
    ),
    f:
      ([axis]) =>
      (x, src, idx) =>
        x.scatterAdd(axis, idx, src).square(),
  },
  {
    name: 'astype',
    inputs: noParams(one()),
    f: () => (x) => x.astype('float32').astype(x.dtype).square(),
    cpu: ASTYPE_CHECK.cpu,
  },
];
