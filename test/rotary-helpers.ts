// Random rotary cases shared by the rotary op tests: q and k as a projection stores them, with GQA and
// partial rotary.
import fc from 'fast-check';
import { testing } from '../index.js';

/** q [B, T, Hq, D] and k [B, T, Hk, D] (Hq = Hk·groups) rotating the first R ≤ D dims. */
export interface RotaryShape {
  B: number;
  T: number;
  Hk: number;
  Hq: number;
  D: number;
  R: number;
}

/** A rotary shape with up to maxT positions, q and k values, and what `extra` draws for that shape. */
export function rotaryCaseArb<Extra extends Record<string, unknown>>(
  maxT: number,
  extra: (c: RotaryShape) => { [K in keyof Extra]: fc.Arbitrary<Extra[K]> },
): fc.Arbitrary<{ c: RotaryShape; q: number[]; k: number[] } & Extra> {
  return fc
    .record({
      B: fc.integer({ min: 1, max: 2 }),
      T: fc.integer({ min: 1, max: maxT }),
      Hk: fc.integer({ min: 1, max: 2 }),
      groups: fc.integer({ min: 1, max: 2 }),
      halfD: fc.integer({ min: 1, max: 3 }),
      rotFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    .chain(({ B, T, Hk, groups, halfD, rotFrac }) => {
      const c: RotaryShape = {
        B,
        T,
        Hk,
        Hq: Hk * groups,
        D: 2 * halfD,
        R: 2 * Math.max(1, Math.round(rotFrac * halfD)),
      };
      return fc.record({
        c: fc.constant(c),
        q: testing.valuesArb([B, T, c.Hq, c.D]),
        k: testing.valuesArb([B, T, Hk, c.D]),
        ...extra(c),
      }) as fc.Arbitrary<{ c: RotaryShape; q: number[]; k: number[] } & Extra>;
    });
}
