// fast-check arbitraries for shapes and tensor data. Pair them with `fcParams()` so the seed is
// printed on failure and runs are reproducible (FC_SEED / FC_RUNS environment variables).
import fc from 'fast-check';
import { numel } from '../core/shape.js';

export interface ShapeOptions {
  minRank?: number;
  maxRank?: number;
  minDim?: number;
  maxDim?: number;
}

export function shapeArb({ minRank = 0, maxRank = 3, minDim = 1, maxDim = 4 }: ShapeOptions = {}): fc.Arbitrary<
  number[]
> {
  return fc.array(fc.integer({ min: minDim, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

/** Two shapes that broadcast together: a common shape with some dims set to 1 or dropped in front. */
export function broadcastPairArb(opts: ShapeOptions = {}): fc.Arbitrary<[number[], number[]]> {
  return shapeArb({ minRank: 1, ...opts }).chain((shape) =>
    fc
      .tuple(
        fc.array(fc.boolean(), { minLength: shape.length, maxLength: shape.length }),
        fc.array(fc.boolean(), { minLength: shape.length, maxLength: shape.length }),
        fc.integer({ min: 0, max: shape.length }),
      )
      .map(([ones1, ones2, drop]) => {
        const a = shape.map((d, i) => (ones1[i] ? 1 : d));
        const b = shape.map((d, i) => (ones2[i] ? 1 : d)).slice(drop);
        return [a, b] as [number[], number[]];
      }),
  );
}

/** Values for a tensor of `shape`, in [min, max], optionally kept at least `gap` away from `avoid` points (kinks). */
export function valuesArb(
  shape: readonly number[],
  { min = -2, max = 2, avoid = [] as number[], gap = 0.05 } = {},
): fc.Arbitrary<number[]> {
  const n = numel(shape);
  const value = fc
    .double({ min, max, noNaN: true, noDefaultInfinity: true })
    .filter((v) => avoid.every((a) => Math.abs(v - a) > gap));
  return fc.array(value, { minLength: n, maxLength: n });
}

/** A shape together with values for it. */
export function tensorDataArb(
  shapeOpts: ShapeOptions = {},
  valueOpts: Parameters<typeof valuesArb>[1] = {},
): fc.Arbitrary<{ shape: number[]; values: number[] }> {
  return shapeArb(shapeOpts).chain((shape) => valuesArb(shape, valueOpts).map((values) => ({ shape, values })));
}

/** fast-check parameters: bounded runs (FC_RUNS, default `runs`), seed from FC_SEED, seed printed on failure. */
export function fcParams(runs = 20): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
  return { numRuns: Number(process.env.FC_RUNS ?? runs), ...(seed !== undefined ? { seed } : {}), verbose: 1 };
}
