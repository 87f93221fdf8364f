// layerNorm and rmsNorm: equal to their composed definitions, gradient-checked on random shapes
// (cpu f64 vs finite differences, webgpu f32 vs cpu f64), short and long rows, strided inputs; the
// residual forms addLayerNorm / addRmsNorm agree with add + norm, forward and gradients.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpuBackend } from '../core/device.js';
import { withConfig } from '../core/config.js';
import { hardware, variantUsage } from '../core/op.js';
import { NORM_LONG_ROW_TOLERANCE } from '../ops/norm/index.js';
import { functional as F, manualSeed, memory, randn, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const cpu64 = (values: number[], shape: number[]): Tensor => tensor(Float64Array.from(values), { ...f64, shape });
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);
const runs = (key: string) => variantUsage().get(key) ?? 0;

/** Runs fn and checks that the norm kernels ran the row variant both ways. */
async function expectRowVariant(variant: string, fn: () => Promise<void>): Promise<void> {
  const before = ['normRows', 'normRowsBackward'].map((k) => runs(`${k}:${variant}`));
  await fn();
  ['normRows', 'normRowsBackward'].forEach((k, i) => expect(runs(`${k}:${variant}`), k).toBeGreaterThan(before[i]));
}
const withRowVariant = (variant: string, fn: () => Promise<void>) =>
  expectRowVariant(variant, () => withConfig({ variants: { row: variant } }, fn));
/** The row-kernel variants this adapter runs ('subgroup' needs the subgroups feature). */
const rowVariants = () => ['thread', 'group', ...(hardware().features.has('subgroups') ? ['subgroup'] : [])];

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

const caseArb = testing
  .shapeArb({ minRank: 1, maxRank: 3, maxDim: 5 })
  .chain((shape) => {
    const D = shape[shape.length - 1];
    return fc.record({
      shape: fc.constant(shape),
      x: testing.valuesArb(shape, { min: -3, max: 3 }),
      w: testing.valuesArb([D], { min: -2, max: 2 }),
      b: testing.valuesArb([D], { min: -2, max: 2 }),
      useW: fc.boolean(),
      useB: fc.boolean(),
    });
  })
  .filter((c) => c.shape[c.shape.length - 1] > 1);

describe('layerNorm / rmsNorm', () => {
  it('equal their composed definitions (cpu f64)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const D = c.shape[c.shape.length - 1];
        const x = cpu64(c.x, c.shape),
          w = c.useW ? cpu64(c.w, [D]) : null,
          b = c.useB ? cpu64(c.b, [D]) : null;
        const ln = await F.layerNorm(x, w, b, 1e-5).data();
        const lnRef = await composedLayerNorm(x, w, b, 1e-5).data();
        expect(Array.from(ln)).toEqual(Array.from(lnRef).map((v) => expect.closeTo(v, 9)));
        const rms = await F.rmsNorm(x, w, 1e-6).data();
        const rmsRef = await composedRmsNorm(x, w, 1e-6).data();
        expect(Array.from(rms)).toEqual(Array.from(rmsRef).map((v) => expect.closeTo(v, 9)));
      }),
      testing.fcParams(20),
    );
  });

  it('gradcheck on cpu f64 for x, weight and bias', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const D = c.shape[c.shape.length - 1];
        const x = cpu64(c.x, c.shape),
          w = cpu64(c.w, [D]),
          b = cpu64(c.b, [D]);
        if (c.useW && c.useB) expectOk(testing.gradcheck((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
        else if (c.useW) expectOk(testing.gradcheck((a, ww) => F.layerNorm(a, ww), [x, w]));
        else if (c.useB) expectOk(testing.gradcheck((a, bb) => F.layerNorm(a, null, bb), [x, b]));
        else expectOk(testing.gradcheck((a) => F.layerNorm(a), [x]));
        if (c.useW) expectOk(testing.gradcheck((a, ww) => F.rmsNorm(a, ww), [x, w]));
        else expectOk(testing.gradcheck((a) => F.rmsNorm(a), [x]));
      }),
      testing.fcParams(15),
    );
  });

  it('webgpu f32 matches cpu f64 (outputs and all gradients)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const D = c.shape[c.shape.length - 1];
        const x = cpu64(c.x, c.shape),
          w = cpu64(c.w, [D]),
          b = cpu64(c.b, [D]);
        expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
        expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [x, w]));
      }),
      testing.fcParams(10),
    );
  });

  it('long rows (workgroup reduction), many rows (chunked weight grads) and strided inputs', async () => {
    manualSeed(4);
    const tol = NORM_LONG_ROW_TOLERANCE;
    const xl = randn([3, 5000], f64).mul(2).add(1),
      wl = randn([5000], f64),
      bl = randn([5000], f64);
    expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [xl, wl, bl], tol));
    expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [xl, wl], tol));
    const xm = randn([700, 48], f64),
      wm = randn([48], f64),
      bm = randn([48], f64);
    expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [xm, wm, bm], tol));
    const xs = randn([6, 4, 5], f64);
    expectOk(testing.gradcheck((a, ww) => F.layerNorm(a.transpose(0, 2), ww), [xs, randn([6], f64)]));
    expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a.transpose(0, 2), ww), [xs, randn([6], f64)]));
  });

  it('every row-kernel variant (one invocation per row; a workgroup per row with tree or subgroup reductions) agrees with cpu f64 on short, medium and long rows', async () => {
    manualSeed(16);
    // Rows shorter than a subgroup (1, 3, 7), 300, and long rows (50304: many column blocks in the backward).
    const cases = [1, 3, 7, 300, 50304].map((D) => ({
      x: randn([D > 1000 ? 2 : 5, D], f64)
        .mul(2)
        .add(1),
      w: randn([D], f64),
      b: randn([D], f64),
      tol: D > 1000 ? NORM_LONG_ROW_TOLERANCE : undefined,
    }));
    for (const variant of rowVariants()) {
      await withRowVariant(variant, async () => {
        for (const { x, w, b, tol } of cases) {
          expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b], tol));
          expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [x, w], tol));
        }
      });
    }
  });

  it('backward is one dispatch on webgpu (dx, weight and bias gradients together); chunked parameter sums agree with cpu f64', async () => {
    const fuser = gpuBackend()!.fuser;
    const fused = fuser.enabled;
    fuser.enabled = false;
    try {
      const make = (shape: number[]) => randn(shape, { device: 'webgpu', requiresGrad: true });
      for (const run of [
        (x: Tensor, w: Tensor, b: Tensor) => F.layerNorm(x, w, b),
        (x: Tensor, w: Tensor) => F.rmsNorm(x, w),
      ]) {
        const [x, w, b] = [make([6, 8]), make([8]), make([8])];
        const y = run(x, w, b);
        const seed = randn([6, 8], { device: 'webgpu' });
        const d0 = memory().dispatches;
        y.backward(seed);
        expect(memory().dispatches - d0).toBe(1);
      }
    } finally {
      fuser.enabled = fused;
    }
    manualSeed(5);
    const x = randn([10, 7], f64),
      w = randn([7], f64),
      b = randn([7], f64);
    await withConfig({ normChunkRows: 3 }, async () => {
      expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
      expectOk(await testing.gradcheckDevices((a, ww) => F.rmsNorm(a, ww), [x, w]));
      expectOk(await testing.gradcheckDevices((a, bb) => F.layerNorm(a, null, bb), [x, b]));
      await withRowVariant('group', async () => {
        expectOk(await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b]));
      });
      // 10 rows in chunks of 3: the backward kernel, then one sum of the chunks per parameter gradient.
      const [xg, wg, bg] = [x, w, b].map((t) => t.to('webgpu').astype('float32'));
      [xg, wg, bg].forEach((t) => {
        t.requiresGrad = true;
      });
      const y = F.layerNorm(xg, wg, bg);
      const seed = randn([10, 7], { device: 'webgpu' });
      const d0 = memory().dispatches;
      y.backward(seed);
      expect(memory().dispatches - d0).toBe(3);
    });
  });

  it("the hardware profile's choices (a workgroup per row of ≥ 128, parameter sums in chunks of 1024 rows) agree with cpu f64", async () => {
    manualSeed(6);
    const x = randn([2100, 130], f64),
      w = randn([130], f64),
      b = randn([130], f64);
    await withConfig({ profile: 'hardware', variants: {} }, async () => {
      await expectRowVariant('group', async () => {
        expectOk(
          await testing.gradcheckDevices((a, ww, bb) => F.layerNorm(a, ww, bb), [x, w, b], NORM_LONG_ROW_TOLERANCE),
        );
      });
      // 2100 rows: three chunks, so the backward kernel and one sum per parameter gradient.
      const [xg, wg, bg] = [x, w, b].map((t) => t.to('webgpu').astype('float32'));
      [xg, wg, bg].forEach((t) => {
        t.requiresGrad = true;
      });
      const y = F.layerNorm(xg, wg, bg);
      const seed = randn([2100, 130], { device: 'webgpu' });
      const d0 = memory().dispatches;
      y.backward(seed);
      expect(memory().dispatches - d0).toBe(3);
    });
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

describe('addLayerNorm / addRmsNorm (residual add fused into the norm)', () => {
  type Fused = (x: Tensor, r: Tensor, w: Tensor, b: Tensor) => F.AddNormResult;
  type Unfused = (h: Tensor, w: Tensor, b: Tensor) => Tensor;
  const kinds: [string, Fused, Unfused][] = [
    ['addLayerNorm', (x, r, w, b) => F.addLayerNorm(x, r, w, b), (h, w, b) => F.layerNorm(h, w, b)],
    ['addRmsNorm', (x, r, w) => F.addRmsNorm(x, r, w), (h, w) => F.rmsNorm(h, w)],
  ];
  const residualArb = caseArb.chain((c) => testing.valuesArb(c.shape, { min: -3, max: 3 }).map((r) => ({ ...c, r })));
  /** Both outputs reach the loss, as in a decoder (h feeds the next residual, the norm feeds the block). */
  const both = (o: F.AddNormResult) => o.normed.add(o.sum.square().mul(0.25));

  for (const [name, fused, unfused] of kinds) {
    it(`${name}: fused and unfused agree, forward and gradients, on cpu f64 and webgpu f32`, async () => {
      await fc.assert(
        fc.asyncProperty(residualArb, async (c) => {
          const D = c.shape[c.shape.length - 1];
          for (const device of ['cpu', 'webgpu'] as const) {
            const dtype = device === 'cpu' ? ('float64' as const) : ('float32' as const);
            const make = (v: number[], shape: number[]) => tensor(v, { shape, dtype, device, requiresGrad: true });
            const run = async (useFused: boolean) => {
              const [x, r, w, b] = [make(c.x, c.shape), make(c.r, c.shape), make(c.w, [D]), make(c.b, [D])];
              const out = useFused
                ? fused(x, r, w, b)
                : (() => {
                    const sum = x.add(r);
                    return { sum, normed: unfused(sum, w, b) };
                  })();
              both(out).sum().backward();
              return Promise.all(
                [out.sum, out.normed, x.grad!, r.grad!, w.grad!, ...(name === 'addLayerNorm' ? [b.grad!] : [])].map(
                  (t) => t.data(),
                ),
              );
            };
            const [got, want] = [await run(true), await run(false)];
            const tol = device === 'cpu' ? 1e-12 : 1e-5;
            got.forEach((g, k) =>
              g.forEach((v, i) =>
                expect(Math.abs(v - want[k][i]), `${device} output ${k} element ${i}`).toBeLessThanOrEqual(
                  tol * (1 + Math.abs(want[k][i])),
                ),
              ),
            );
          }
        }),
        testing.fcParams(10),
      );
    });

    it(`${name}: gradcheck on cpu f64 and webgpu f32 vs cpu f64`, async () => {
      await fc.assert(
        fc.asyncProperty(residualArb, async (c) => {
          const D = c.shape[c.shape.length - 1];
          const inputs = [cpu64(c.x, c.shape), cpu64(c.r, c.shape), cpu64(c.w, [D]), cpu64(c.b, [D])];
          const f = (x: Tensor, r: Tensor, w: Tensor, b: Tensor) => both(fused(x, r, w, b));
          const wrt = name === 'addLayerNorm' ? [0, 1, 2, 3] : [0, 1, 2];
          expectOk(testing.gradcheck(f, inputs, { wrt }));
          expectOk(await testing.gradcheckDevices(f, inputs, { wrt }));
        }),
        testing.fcParams(8),
      );
    });
  }

  it('every row-kernel variant agrees with cpu f64, and the forward is one dispatch', async () => {
    manualSeed(17);
    const x = randn([5, 300], f64),
      r = randn([5, 300], f64),
      w = randn([300], f64),
      b = randn([300], f64);
    for (const variant of rowVariants()) {
      await withRowVariant(variant, async () => {
        expectOk(await testing.gradcheckDevices((a, rr, ww, bb) => both(F.addLayerNorm(a, rr, ww, bb)), [x, r, w, b]));
        expectOk(await testing.gradcheckDevices((a, rr, ww) => both(F.addRmsNorm(a, rr, ww)), [x, r, w]));
      });
    }
    const [xg, rg, wg] = [x, r, w].map((t) => t.to('webgpu').astype('float32'));
    const before = memory().dispatches;
    const { sum, normed } = F.addRmsNorm(xg, rg, wg);
    expect(memory().dispatches - before).toBe(1);
    [xg, rg, wg, sum, normed].forEach((t) => t.dispose());
  });

  it('rejects a residual of another shape, dtype or device with a clear error', () => {
    const x = randn([2, 4], f64);
    expect(() => F.addRmsNorm(x, randn([1, 4], f64))).toThrow(
      /addRmsNorm: residual must have the shape of x \[2, 4\], got \[1, 4\]/,
    );
    expect(() => F.addLayerNorm(x, randn([2, 4], { device: 'webgpu' }))).toThrow(
      /addLayerNorm: residual is float32 on webgpu but x is float64 on cpu/,
    );
  });
});
