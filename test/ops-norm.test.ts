// layerNorm and rmsNorm: equal to their composed definitions, gradient-checked on random shapes
// (cpu f64 vs finite differences, webgpu f32 vs cpu f64), short and long rows, strided inputs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NORM_LONG_ROW_TOLERANCE } from '../ops/norm/index.js';
import { functional as F, manualSeed, randn, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const cpu64 = (values: number[], shape: number[]): Tensor => tensor(Float64Array.from(values), { ...f64, shape });
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);

/** Composed definitions from elementary ops (biased variance, as torch). */
const composedLayerNorm = (x: Tensor, w: Tensor | null, b: Tensor | null, eps: number): Tensor => {
  let y = x.sub(x.mean(-1, true)).div(x.var(-1, { correction: 0, keepdim: true }).add(eps).sqrt());
  if (w) y = y.mul(w);
  return b ? y.add(b) : y;
};
const composedRmsNorm = (x: Tensor, w: Tensor | null, eps: number): Tensor => {
  const y = x.mul(x.square().mean(-1, true).add(eps).rsqrt());
  return w ? y.mul(w) : y;
};

const caseArb = testing.shapeArb({ minRank: 1, maxRank: 3, maxDim: 5 }).chain((shape) => {
  const D = shape[shape.length - 1];
  return fc.record({
    shape: fc.constant(shape),
    x: testing.valuesArb(shape, { min: -3, max: 3 }),
    w: testing.valuesArb([D], { min: -2, max: 2 }),
    b: testing.valuesArb([D], { min: -2, max: 2 }),
    useW: fc.boolean(),
    useB: fc.boolean(),
  });
}).filter((c) => c.shape[c.shape.length - 1] > 1);

describe('layerNorm / rmsNorm', () => {
  it('equal their composed definitions (cpu f64)', async () => {
    await fc.assert(fc.asyncProperty(caseArb, async (c) => {
      const D = c.shape[c.shape.length - 1];
      const x = cpu64(c.x, c.shape), w = c.useW ? cpu64(c.w, [D]) : null, b = c.useB ? cpu64(c.b, [D]) : null;
      const ln = await F.layerNorm(x, w, b, 1e-5).data();
      const lnRef = await composedLayerNorm(x, w, b, 1e-5).data();
      expect(Array.from(ln)).toEqual(Array.from(lnRef).map((v) => expect.closeTo(v, 9)));
      const rms = await F.rmsNorm(x, w, 1e-6).data();
      const rmsRef = await composedRmsNorm(x, w, 1e-6).data();
      expect(Array.from(rms)).toEqual(Array.from(rmsRef).map((v) => expect.closeTo(v, 9)));
    }), testing.fcParams(20));
  });

  it('gradcheck on cpu f64 for x, weight and bias', () => {
    fc.assert(fc.property(caseArb, (c) => {
      const D = c.shape[c.shape.length - 1];
      const x = cpu64(c.x, c.shape), w = cpu64(c.w, [D]), b = cpu64(c.b, [D]);
      if (c.useW && c.useB) expectOk(testing.gradcheck((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
      else if (c.useW) expectOk(testing.gradcheck((a, ww) => F.layerNorm(a, ww), [x, w]));
      else if (c.useB) expectOk(testing.gradcheck((a, bb) => F.layerNorm(a, null, bb), [x, b]));
      else expectOk(testing.gradcheck((a) => F.layerNorm(a), [x]));
      if (c.useW) expectOk(testing.gradcheck((a, ww) => F.rmsNorm(a, ww), [x, w]));
      else expectOk(testing.gradcheck((a) => F.rmsNorm(a), [x]));
    }), testing.fcParams(15));
  });

  it('webgpu f32 matches cpu f64 (outputs and all gradients)', async () => {
    await fc.assert(fc.asyncProperty(caseArb, async (c) => {
      const D = c.shape[c.shape.length - 1];
      const x = cpu64(c.x, c.shape), w = cpu64(c.w, [D]), b = cpu64(c.b, [D]);
      expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
      expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [x, w]));
    }), testing.fcParams(10));
  });

  it('long rows (workgroup reduction), many rows (chunked weight grads) and strided inputs', async () => {
    manualSeed(4);
    const tol = NORM_LONG_ROW_TOLERANCE;
    const xl = randn([3, 5000], f64).mul(2).add(1), wl = randn([5000], f64), bl = randn([5000], f64);
    expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [xl, wl, bl], tol));
    expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [xl, wl], tol));
    const xm = randn([700, 48], f64), wm = randn([48], f64), bm = randn([48], f64);
    expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [xm, wm, bm], tol));
    const xs = randn([6, 4, 5], f64);
    expectOk(testing.gradcheck((a, ww) => F.layerNorm(a.transpose(0, 2), ww), [xs, randn([6], f64)]));
    expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a.transpose(0, 2), ww), [xs, randn([6], f64)]));
  });

  it('both row-kernel variants (one invocation per row, one workgroup per row) agree with cpu f64', async () => {
    manualSeed(16);
    const x = randn([5, 300], f64), w = randn([300], f64), b = randn([300], f64);
    for (const variant of ['thread', 'group']) {
      process.env.DAWNGRAD_ROW_KERNEL = variant;
      try {
        expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
        expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [x, w]));
      } finally {
        delete process.env.DAWNGRAD_ROW_KERNEL;
      }
    }
  });

  it('normalises rows with large offsets accurately (two-pass variance)', async () => {
    const x = tensor([[1e4 + 1, 1e4 + 2, 1e4 + 3]], { device: 'webgpu' });
    const y = (await F.layerNorm(x, null, null, 0).toArray()) as number[][];
    const s = Math.sqrt(1.5);
    expect(y[0]).toEqual([-s, 0, s].map((v) => expect.closeTo(v, 3)));
  });

  it('rejects mismatched parameter shapes with a clear error', () => {
    const x = randn([2, 4], f64);
    expect(() => F.layerNorm(x, randn([3], f64))).toThrow(/layerNorm: weight must have shape \[4\]/);
    expect(() => F.rmsNorm(x, randn([4], { device: 'webgpu' }))).toThrow(/rmsNorm: weight is float32 on webgpu/);
  });
});
