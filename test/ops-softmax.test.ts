// softmax, logSoftmax, logsumexp and fused crossEntropy: gradients (cpu f64 vs finite differences,
// webgpu f32 vs cpu f64) on random shapes, extreme and masked values, long rows, target checks.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpuBackend } from '../core/device.js';
import { withConfig } from '../core/config.js';
import { hardware, variantUsage } from '../core/op.js';
import { SOFTMAX_LONG_ROW_TOLERANCE } from '../ops/softmax/index.js';
import { functional as F, manualSeed, memory, randint, randn, scope, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const cpu64 = (values: number[], shape: number[]): Tensor => tensor(Float64Array.from(values), { ...f64, shape });
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);
const runs = (key: string) => variantUsage().get(key) ?? 0;
/** The row-kernel variants this adapter runs ('subgroup' needs the subgroups feature). */
const rowVariants = () => ['thread', 'group', ...(hardware().features.has('subgroups') ? ['subgroup'] : [])];

/** A float64 JS oracle for one row (independent of the library). */
function refLogSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
  return row.map((v) => v - lse);
}

/** Shape of rank 1..3 plus an axis in it. */
const shapeAxisArb = testing
  .shapeArb({ minRank: 1, maxRank: 3, maxDim: 4 })
  .chain((shape) =>
    fc.tuple(
      fc.constant(shape),
      fc.integer({ min: -shape.length, max: shape.length - 1 }),
      testing.valuesArb(shape, { min: -4, max: 4 }),
    ),
  );

describe('softmax family', () => {
  it('gradcheck on cpu f64 for softmax / logSoftmax / logsumexp along any axis', () => {
    fc.assert(
      fc.property(shapeAxisArb, fc.boolean(), ([shape, axis, values], keepdim) => {
        const x = cpu64(values, shape);
        expectOk(testing.gradcheck((a) => F.softmax(a, axis), [x]));
        expectOk(testing.gradcheck((a) => F.logSoftmax(a, axis), [x]));
        expectOk(testing.gradcheck((a) => F.logsumexp(a, axis, keepdim), [x]));
        x.dispose();
      }),
      testing.fcParams(15),
    );
  });

  it('webgpu f32 matches cpu f64 (values and gradients) along any axis', async () => {
    await fc.assert(
      fc.asyncProperty(shapeAxisArb, async ([shape, axis, values]) => {
        const x = cpu64(values, shape);
        expectOk(await testing.gradcheckDevices((a) => F.softmax(a, axis), [x]));
        expectOk(await testing.gradcheckDevices((a) => F.logSoftmax(a, axis), [x]));
        expectOk(await testing.gradcheckDevices((a) => F.logsumexp(a, axis), [x]));
        x.dispose();
      }),
      testing.fcParams(10),
    );
  });

  it('logsumexp over several axes equals a reduction of the merged axes', async () => {
    manualSeed(1);
    const x = randn([2, 3, 4], f64);
    const a = await F.logsumexp(x, [0, 2], true).data();
    const b = await F.logsumexp(x.permute([1, 0, 2]).reshape([3, 8]), 1).data();
    expect(Array.from(a)).toEqual(Array.from(b).map((v) => expect.closeTo(v, 12)));
    expectOk(testing.gradcheck((t) => F.logsumexp(t, [0, 2]), [x]));
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`is stable for logits of ±1e4 and exact for masked entries and fully masked rows (${device})`, async () => {
      const rows = [
        [1e4, -1e4, 0, 9999],
        [-1e4, -1e4 + 1, -1e4 + 2, -1e4],
        [0, -Infinity, 3, -Infinity],
        [-Infinity, 1, -Infinity, 4],
      ];
      const x = tensor([...rows, [-Infinity, -Infinity, -Infinity, -Infinity]], { device });
      const logp = (await F.logSoftmax(x).toArray()) as number[][];
      const p = (await F.softmax(x).toArray()) as number[][];
      const lse = (await F.logsumexp(x).toArray()) as number[];
      rows.forEach((row, r) => {
        const ref = refLogSoftmax(row);
        ref.forEach((v, j) => {
          // float32 storage: values near 2e4 are spaced 2e-3 apart.
          if (v === -Infinity) expect(logp[r][j]).toBe(-Infinity);
          else expect(Math.abs(logp[r][j] - v)).toBeLessThanOrEqual(1e-3 + 1e-7 * Math.abs(v));
          expect(p[r][j]).toBeCloseTo(Math.exp(v), 6);
        });
        expect(Number.isFinite(lse[r])).toBe(true);
      });
      // Documented result for a fully masked row: softmax 0, logSoftmax and logsumexp -Infinity.
      expect(p[4]).toEqual([0, 0, 0, 0]);
      expect(logp[4]).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
      expect(lse[4]).toBe(-Infinity);
      // Gradients stay finite: NaN never spreads from the masked row.
      const xg = tensor(
        [
          [1, 2, -Infinity],
          [-Infinity, -Infinity, -Infinity],
        ],
        { device, requiresGrad: true },
      );
      F.softmax(xg)
        .mul(
          tensor(
            [
              [1, 2, 3],
              [4, 5, 6],
            ],
            { device },
          ),
        )
        .sum()
        .backward();
      const g = (await xg.grad!.toArray()) as number[][];
      expect(g.flat().every(Number.isFinite)).toBe(true);
      expect(g[1]).toEqual([0, 0, 0]);
      const xl = tensor(
        [
          [1, 2, -Infinity],
          [-Infinity, -Infinity, -Infinity],
        ],
        { device, requiresGrad: true },
      );
      F.logsumexp(xl).sum().backward();
      expect(((await xl.grad!.toArray()) as number[][]).flat().every(Number.isFinite)).toBe(true);
    });
  }

  it('long rows (C = 50304) on webgpu match the cpu f64 reference', async () => {
    manualSeed(2);
    const x = randn([3, 50304], f64).mul(4);
    expectOk(await testing.gradcheckDevices((a) => F.logSoftmax(a), [x], SOFTMAX_LONG_ROW_TOLERANCE.logSoftmax));
    expectOk(await testing.gradcheckDevices((a) => F.logsumexp(a), [x], SOFTMAX_LONG_ROW_TOLERANCE.logsumexp));
  });

  it('every row-kernel variant (one invocation per row; a workgroup per row with tree or subgroup reductions) agrees with cpu f64', async () => {
    manualSeed(15);
    const x = randn([5, 300], f64).mul(3);
    const t = tensor([1, -100, 299, 0, 7], { dtype: 'int32', device: 'cpu' });
    for (const variant of rowVariants()) {
      const before = variantUsage().get(`softmaxRows:${variant}`) ?? 0;
      await withConfig({ variants: { row: variant } }, async () => {
        expectOk(await testing.gradcheckDevices((a) => F.softmax(a), [x]));
        expectOk(await testing.gradcheckDevices((a) => F.logSoftmax(a), [x]));
        expectOk(await testing.gradcheckDevices((a) => F.logsumexp(a), [x]));
        expectOk(await testing.gradcheckDevices((a, tt) => F.crossEntropy(a, tt, { labelSmoothing: 0.2 }), [x, t]));
        // Masked entries in any position, and a fully masked row.
        const NI = -Infinity;
        const masked = [
          [NI, 1, NI, 4, 2],
          [3, NI, NI, NI, 0],
          [NI, NI, NI, NI, NI],
        ];
        const gm = tensor(masked),
          cm = tensor(masked, f64);
        expect(Array.from(await F.softmax(gm).data())).toEqual(
          Array.from(await F.softmax(cm).data()).map((v) => expect.closeTo(v, 6)),
        );
        expect(Array.from(await F.logsumexp(gm).data())).toEqual(
          Array.from(await F.logsumexp(cm).data()).map((v) => (v === NI ? NI : expect.closeTo(v, 5))),
        );
      });
      expect(variantUsage().get(`softmaxRows:${variant}`)).toBeGreaterThan(before);
    }
  });

  it('every row-kernel variant handles long rows (C = 50304, masked entries, a fully masked row) and rows shorter than a subgroup', async () => {
    manualSeed(18);
    const long = randn([2, 50304], f64).mul(4);
    const longTargets = tensor([5, 50300], { dtype: 'int32', device: 'cpu' });
    // Row 0: all but two entries masked (one near each end); row 1: fully masked.
    const maskedLong = Array.from({ length: 2 }, (_, r) =>
      Array.from({ length: 50304 }, (_, j) => (r === 0 && (j === 7 || j === 50000) ? j / 1e4 : -Infinity)),
    );
    const shortRows = [1, 3, 7].map((C) => randn([4, C], f64).mul(3));
    for (const variant of rowVariants()) {
      const before = ['softmaxRows', 'softmaxRowsBackward', 'crossEntropyRows'].map((k) => runs(`${k}:${variant}`));
      await withConfig({ variants: { row: variant } }, async () => {
        const tol = SOFTMAX_LONG_ROW_TOLERANCE;
        expectOk(await testing.gradcheckDevices((a) => F.logSoftmax(a), [long], tol.logSoftmax));
        expectOk(await testing.gradcheckDevices((a) => F.logsumexp(a), [long], tol.logsumexp));
        expectOk(
          await testing.gradcheckDevices((a, tt) => F.crossEntropy(a, tt), [long, longTargets], tol.crossEntropy),
        );
        const gm = tensor(maskedLong),
          cm = tensor(maskedLong, f64);
        const [p, pRef] = [await F.softmax(gm).data(), await F.softmax(cm).data()];
        expect([p[7], p[50000], p[8], p[50304]]).toEqual([pRef[7], pRef[50000], 0, 0].map((v) => expect.closeTo(v, 6)));
        expect(p.every((v, j) => v === 0 || j === 7 || j === 50000)).toBe(true);
        expect(Array.from(await F.logsumexp(gm).data())).toEqual([
          expect.closeTo((await F.logsumexp(cm).data())[0], 5),
          -Infinity,
        ]);
        for (const xs of shortRows) {
          expectOk(await testing.gradcheckDevices((a) => F.softmax(a), [xs]));
          expectOk(await testing.gradcheckDevices((a) => F.logsumexp(a), [xs]));
          const ts = tensor([0, xs.shape[1] - 1, -100, 0], { dtype: 'int32', device: 'cpu' });
          expectOk(await testing.gradcheckDevices((a, tt) => F.crossEntropy(a, tt, { labelSmoothing: 0.1 }), [xs, ts]));
        }
      });
      ['softmaxRows', 'softmaxRowsBackward', 'crossEntropyRows'].forEach((k, i) =>
        expect(runs(`${k}:${variant}`), k).toBeGreaterThan(before[i]),
      );
    }
  });

  it('Tensor methods delegate to the functional ops', async () => {
    const x = tensor(
      [
        [1, 2],
        [3, 5],
      ],
      f64,
    );
    expect(await x.softmax().toArray()).toEqual(await F.softmax(x).toArray());
    expect(await x.logSoftmax(0).toArray()).toEqual(await F.logSoftmax(x, 0).toArray());
    expect(await x.logsumexp(1, true).toArray()).toEqual(await F.logsumexp(x, 1, true).toArray());
  });
});

/** Composed reference: -(1-ε) logp[t] - ε mean(logp), averaged over non-ignored rows. */
async function refCrossEntropy(
  logits: number[][],
  targets: number[],
  ignore: number,
  eps: number,
  reduction: string,
): Promise<number | number[]> {
  const per = logits.map((row, r) => {
    if (targets[r] === ignore) return 0;
    const lp = refLogSoftmax(row);
    return -(1 - eps) * lp[targets[r]] - (eps * lp.reduce((s, v) => s + v, 0)) / row.length;
  });
  if (reduction === 'none') return per;
  const total = per.reduce((s, v) => s + v, 0);
  return reduction === 'sum' ? total : total / targets.filter((t) => t !== ignore).length;
}

const ceCaseArb = fc
  .record({
    lead: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }),
    C: fc.integer({ min: 2, max: 6 }),
    smoothing: fc.constantFrom(0, 0.1, 0.5),
    reduction: fc.constantFrom('mean', 'sum', 'none') as fc.Arbitrary<'mean' | 'sum' | 'none'>,
    seed: fc.integer({ min: 0, max: 1000 }),
  })
  .map((c) => {
    const n = c.lead.reduce((a, b) => a * b, 1);
    let s = c.seed;
    const rnd = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
    // Every row has a valid target except some ignored ones (never all, so 'mean' stays finite).
    const targets = Array.from({ length: n }, (_, i) => (i > 0 && rnd() < 0.3 ? -100 : Math.floor(rnd() * c.C)));
    const logits = Array.from({ length: n * c.C }, () => rnd() * 8 - 4);
    return { ...c, targets, logits };
  });

describe('crossEntropy', () => {
  it('equals log-softmax + gather + reduction, with ignoreIndex and label smoothing (cpu f64)', async () => {
    await fc.assert(
      fc.asyncProperty(ceCaseArb, async (c) => {
        const x = cpu64(c.logits, [...c.lead, c.C]);
        const t = tensor(Int32Array.from(c.targets), { shape: c.lead, device: 'cpu' });
        const got = await F.crossEntropy(x, t, { labelSmoothing: c.smoothing, reduction: c.reduction }).data();
        const rows = Array.from({ length: c.targets.length }, (_, r) => c.logits.slice(r * c.C, (r + 1) * c.C));
        const want = [await refCrossEntropy(rows, c.targets, -100, c.smoothing, c.reduction)].flat();
        expect(Array.from(got)).toEqual(want.map((v) => expect.closeTo(v, 10)));
      }),
      testing.fcParams(20),
    );
  });

  it('gradcheck on cpu f64 and webgpu f32 vs cpu f64, [N, C] and [B, T, C]', async () => {
    await fc.assert(
      fc.asyncProperty(ceCaseArb, async (c) => {
        const x = cpu64(c.logits, [...c.lead, c.C]);
        const t = tensor(Int32Array.from(c.targets), { shape: c.lead, device: 'cpu' });
        const f = (a: Tensor, tt: Tensor) =>
          F.crossEntropy(a, tt, { labelSmoothing: c.smoothing, reduction: c.reduction });
        expectOk(testing.gradcheck(f, [x, t]));
        expectOk(await testing.gradcheckDevices(f, [x, t]));
      }),
      testing.fcParams(12),
    );
  });

  it('ignored rows get zero gradient; logits of ±1e4 and C = 50304 stay finite and correct', async () => {
    manualSeed(3);
    const big = randn([4, 50304], f64).mul(3);
    const t = tensor([5, -100, 50303, 0], { dtype: 'int32', device: 'cpu' });
    expectOk(
      await testing.gradcheckDevices(
        (a, tt) => F.crossEntropy(a, tt),
        [big, t],
        SOFTMAX_LONG_ROW_TOLERANCE.crossEntropy,
      ),
    );
    const x = tensor(
      [
        [1e4, -1e4, 0],
        [-1e4, 1e4, 1e4],
        [3, 2, 1],
      ],
      { requiresGrad: true },
    );
    const loss = F.crossEntropy(x, tensor([1, 2, -100], { dtype: 'int32' }), { reduction: 'sum' });
    expect(await loss.item()).toBeCloseTo(2e4 + Math.log(2), 0);
    loss.backward();
    const g = (await x.grad!.toArray()) as number[][];
    // float32: the logsumexp near 1e4 is only known to ~1e-3, so p is within ~1e-3 of exact.
    expect(g[0]).toEqual([1, -1, 0].map((v) => expect.closeTo(v, 3)));
    expect(g[1]).toEqual([0, 0.5, -0.5].map((v) => expect.closeTo(v, 3)));
    expect(g[2]).toEqual([0, 0, 0]);
  });

  it('a reduced loss is two dispatches forward (row losses, one reduction) and one backward; many rows match cpu f64', async () => {
    const fuser = gpuBackend()!.fuser;
    const fused = fuser.enabled;
    fuser.enabled = false;
    try {
      for (const reduction of ['mean', 'sum'] as const) {
        const x = randn([6, 5], { device: 'webgpu', requiresGrad: true });
        const t = tensor([0, 4, -100, 2, 1, -100], { dtype: 'int32' });
        const d0 = memory().dispatches;
        const loss = F.crossEntropy(x, t, { reduction, labelSmoothing: 0.1 });
        const d1 = memory().dispatches;
        loss.backward(tensor(2, { device: 'webgpu' }));
        expect([d1 - d0, memory().dispatches - d1]).toEqual([2, 1]);
      }
      // A shifted language-model loss reads the sliced logits and targets in place (no copies).
      const logits = randn([2, 5, 4], { device: 'webgpu', requiresGrad: true });
      const ids = tensor(
        [
          [0, 1, 2, 3, 0],
          [3, 2, 1, 0, -100],
        ],
        { dtype: 'int32' },
      );
      const d0 = memory().dispatches;
      F.crossEntropy(logits.narrow(1, 0, 4), ids.narrow(1, 1, 4));
      expect(memory().dispatches - d0).toBe(2);
    } finally {
      fuser.enabled = fused;
    }
    // Strided rows (sliced lead dims; logits whose class axis is not contiguous are copied) match cpu f64.
    manualSeed(7);
    const xs = randn([3, 6, 5], f64);
    const ts = tensor(
      Int32Array.from({ length: 18 }, (_, i) => (i % 5 === 2 ? -100 : i % 5)),
      { shape: [3, 6], device: 'cpu' },
    );
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      const shifted = (a: Tensor, tt: Tensor) =>
        F.crossEntropy(a.narrow(1, 0, 5), tt.narrow(1, 1, 5), { reduction, labelSmoothing: 0.1 });
      expectOk(testing.gradcheck(shifted, [xs, ts]));
      expectOk(await testing.gradcheckDevices(shifted, [xs, ts]));
      const classesFirst = (a: Tensor, tt: Tensor) => F.crossEntropy(a.permute([1, 2, 0]), tt, { reduction });
      expectOk(await testing.gradcheckDevices(classesFirst, [randn([5, 3, 6], f64), ts]));
    }
    // 3000 row losses summed in f32 (compensated) against the float64 reference, with ignored rows.
    manualSeed(8);
    const x = randn([3000, 3], f64).mul(2);
    const t = tensor(
      Int32Array.from({ length: 3000 }, (_, i) => (i % 7 === 3 ? -100 : i % 3)),
      { device: 'cpu' },
    );
    for (const reduction of ['mean', 'sum'] as const)
      expectOk(await testing.gradcheckDevices((a, tt) => F.crossEntropy(a, tt, { reduction }), [x, t]));
  });

  it('mean over an all-ignored batch is NaN (0/0) with zero gradients, on both backends', async () => {
    for (const device of ['cpu', 'webgpu'] as const) {
      const x = tensor(
        [
          [1, 2],
          [3, 4],
        ],
        { device, requiresGrad: true },
      );
      const loss = F.crossEntropy(x, tensor([-100, -100], { dtype: 'int32', device }));
      expect(await loss.item()).toBeNaN();
      loss.backward();
      expect(await x.grad!.toArray()).toEqual([
        [0, 0],
        [0, 0],
      ]);
    }
  });

  it('targets computed on the GPU (values unknown to the host) give NaN, not garbage, when out of range', async () => {
    const x = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { requiresGrad: true },
    );
    const t = tensor([0, 9], { dtype: 'int32' }).add(0);
    expect(t.storage.hostRange).toBeUndefined();
    const loss = F.crossEntropy(x, t, { reduction: 'none' });
    const l = await loss.data();
    expect(Number.isFinite(l[0])).toBe(true);
    expect(l[1]).toBeNaN();
    loss.sum().backward();
    const g = (await x.grad!.toArray()) as number[][];
    expect(g[0].every(Number.isFinite)).toBe(true);
    expect(g[1].every(Number.isNaN)).toBe(true);
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`rejects targets outside [0, C) that are not ignoreIndex (${device})`, () => {
      scope(() => {
        const x = randn([3, 5], { device });
        expect(() => F.crossEntropy(x, tensor([0, 5, 1], { dtype: 'int32', device }))).toThrow(
          /crossEntropy: target 5 .*outside \[0, 5\)/,
        );
        expect(() => F.crossEntropy(x, tensor([0, -1, 1], { dtype: 'int32', device }))).toThrow(
          /crossEntropy: target -1/,
        );
        expect(() =>
          F.crossEntropy(x, tensor([0, 7, 1], { dtype: 'int32', device }), { ignoreIndex: 7 }),
        ).not.toThrow();
        expect(() => F.crossEntropy(x, tensor([0, 1, 2], { device }))).toThrow(/int32/);
        expect(() => F.crossEntropy(x, randint(0, 5, [4], { device }))).toThrow(/targets of shape \[3\]/);
      });
    });
  }
});
