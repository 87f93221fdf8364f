// applyRotary: the HF rotate_half definition, partial rotary, broadcasting of [T, R] tables over
// [B, H, T, D], gradients for x, cos and sin on both backends, and the rotation property.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cat, functional as F, manualSeed, randn, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const cpu64 = (values: number[], shape: readonly number[]): Tensor =>
  tensor(Float64Array.from(values), { ...f64, shape });
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);

/** The definition, composed from slices: x[:R]·cos + cat(−x[R/2:R], x[:R/2])·sin, then x[R:]. */
function composedRotary(x: Tensor, cos: Tensor, sin: Tensor, R: number): Tensor {
  const D = x.shape[x.rank - 1];
  const h = R / 2;
  const xr = x.narrow(-1, 0, R);
  const rotated = xr.mul(cos).add(cat([xr.narrow(-1, h, h).neg(), xr.narrow(-1, 0, h)], -1).mul(sin));
  return R === D ? rotated : cat([rotated, x.narrow(-1, R, D - R)], -1);
}

/** cos/sin tables of angles θ[t, k] = t·base^(−k/half), duplicated over both halves (HF layout). */
function tables(
  T: number,
  R: number,
  sign = 1,
  device: 'cpu' | 'webgpu' = 'cpu',
  dtype: 'float32' | 'float64' = 'float64',
): [Tensor, Tensor] {
  const half = R / 2;
  const ang = Array.from({ length: T * R }, (_, i) => sign * Math.floor(i / R) * 10000 ** (-((i % R) % half) / half));
  return [
    tensor(ang.map(Math.cos), { shape: [T, R], dtype, device }),
    tensor(ang.map(Math.sin), { shape: [T, R], dtype, device }),
  ];
}

const caseArb = fc
  .record({
    B: fc.integer({ min: 1, max: 2 }),
    H: fc.integer({ min: 1, max: 3 }),
    T: fc.integer({ min: 1, max: 4 }),
    halfD: fc.integer({ min: 1, max: 4 }),
    rotFrac: fc.double({ min: 0, max: 1, noNaN: true }),
  })
  .chain((c) => {
    const D = 2 * c.halfD;
    const R = 2 * Math.max(1, Math.round(c.rotFrac * c.halfD));
    return fc.record({
      shape: fc.constant([c.B, c.H, c.T, D]),
      R: fc.constant(R),
      x: testing.valuesArb([c.B, c.H, c.T, D]),
      cos: testing.valuesArb([c.T, R]),
      sin: testing.valuesArb([c.T, R]),
    });
  });

describe('applyRotary', () => {
  it('equals the composed rotate_half definition, with partial rotary (cpu f64)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const T = c.shape[2];
        const x = cpu64(c.x, c.shape),
          cos = cpu64(c.cos, [T, c.R]),
          sin = cpu64(c.sin, [T, c.R]);
        const got = await F.applyRotary(x, cos, sin, { rotaryDim: c.R }).data();
        const want = await composedRotary(x, cos, sin, c.R).data();
        expect(Array.from(got)).toEqual(Array.from(want).map((v) => expect.closeTo(v, 12)));
      }),
      testing.fcParams(20),
    );
  });

  it('gradcheck for x, cos and sin on cpu f64, and webgpu f32 vs cpu f64', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const T = c.shape[2];
        const x = cpu64(c.x, c.shape),
          cos = cpu64(c.cos, [T, c.R]),
          sin = cpu64(c.sin, [T, c.R]);
        const f = (a: Tensor, co: Tensor, si: Tensor) => F.applyRotary(a, co, si, { rotaryDim: c.R });
        expectOk(testing.gradcheck(f, [x, cos, sin]));
        expectOk(await testing.gradcheckDevices(f, [x, cos, sin]));
      }),
      testing.fcParams(12),
    );
  });

  it('broadcasts per-head tables and accepts strided x', async () => {
    manualSeed(6);
    const x = randn([2, 3, 4, 6], f64);
    const cos = randn([3, 1, 4], f64),
      sin = randn([1, 4], f64);
    expectOk(testing.gradcheck((a, co, si) => F.applyRotary(a, co, si), [x, cos, sin]));
    expectOk(
      await testing.gradcheckDevices(
        (a, co, si) => F.applyRotary(a.transpose(1, 2), co.transpose(0, 1), si),
        [x, cos, sin],
      ),
    );
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`rotating by θ then by −θ gives x back; norms of rotated pairs are kept (${device})`, async () => {
      manualSeed(7);
      const x = randn([1, 2, 5, 8], { device });
      const [c1, s1] = tables(5, 6, 1, device, 'float32');
      const [c2, s2] = tables(5, 6, -1, device, 'float32');
      const y = F.applyRotary(x, c1, s1);
      const back = await F.applyRotary(y, c2, s2).data();
      const xs = await x.data();
      expect(Array.from(back)).toEqual(Array.from(xs).map((v) => expect.closeTo(v, 5)));
      const ys = await y.data();
      for (let row = 0; row < 10; row++) {
        for (let k = 0; k < 3; k++) {
          const [a, b] = [row * 8 + k, row * 8 + k + 3];
          expect(Math.hypot(ys[a], ys[b])).toBeCloseTo(Math.hypot(xs[a], xs[b]), 5);
        }
        expect([ys[row * 8 + 6], ys[row * 8 + 7]]).toEqual([xs[row * 8 + 6], xs[row * 8 + 7]]);
      }
    });
  }

  it('rejects odd or too large rotaryDim and tables that do not broadcast', () => {
    const x = randn([1, 1, 3, 4], f64);
    const [cos, sin] = tables(3, 4);
    expect(() => F.applyRotary(x, cos, sin, { rotaryDim: 3 })).toThrow(
      /applyRotary: rotaryDim must be a positive even/,
    );
    expect(() => F.applyRotary(x, cos, sin, { rotaryDim: 6 })).toThrow(/rotaryDim/);
    const [c5, s5] = tables(5, 4);
    expect(() => F.applyRotary(x, c5, s5)).toThrow(/applyRotary: cos \[5, 4\] must broadcast to \[1, 1, 3, 4\]/);
  });
});
