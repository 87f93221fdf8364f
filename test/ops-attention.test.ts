// scaledDotProductAttention: equals the naive composition softmax(q kᵀ·scale + mask) v on random
// shapes (GQA, cross-length, causal, float and boolean masks), gradient checks on both backends,
// causality, dropout reproducibility, and the memory bound (no H·T·T buffer).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  arange,
  functional as F,
  manualSeed,
  memory,
  randn,
  resetPeak,
  scope,
  tensor,
  testing,
  type Tensor,
} from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const cpu64 = (values: number[], shape: number[]): Tensor => tensor(Float64Array.from(values), { ...f64, shape });
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);

/** The definition, composed from matmul and softmax, with k/v heads repeated for GQA. */
function naiveAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { causal?: boolean; mask?: Tensor | null; scale?: number },
): Tensor {
  const [B, H, Tq, D] = q.shape;
  const [, Hkv, Tk] = k.shape;
  const repeat = (t: Tensor) =>
    t
      .unsqueeze(2)
      .expand([B, Hkv, H / Hkv, Tk, D])
      .reshape([B, H, Tk, D]);
  let s = q.matmul(repeat(k).transpose(-1, -2)).mul(opts.scale ?? 1 / Math.sqrt(D));
  const big = -1e30;
  if (opts.mask) s = s.add(opts.mask.dtype === 'int32' ? opts.mask.eq(0).astype(q.dtype).mul(big) : opts.mask);
  if (opts.causal) {
    const i = arange(Tq, undefined, 1, { device: q.device })
      .reshape([Tq, 1])
      .add(Tk - Tq);
    const j = arange(Tk, undefined, 1, { device: q.device }).reshape([1, Tk]);
    s = s.add(j.gt(i).astype(q.dtype).mul(big));
  }
  return F.softmax(s, -1).matmul(repeat(v));
}

interface Case {
  qShape: number[];
  kShape: number[];
  causal: boolean;
  maskKind: 'none' | 'add' | 'bool';
  maskShape: number[];
  q: number[];
  k: number[];
  v: number[];
  mask: number[];
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    B: fc.integer({ min: 1, max: 2 }),
    Hkv: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 3 }),
    Tq: fc.integer({ min: 1, max: 4 }),
    Tk: fc.integer({ min: 1, max: 5 }),
    D: fc.integer({ min: 1, max: 5 }),
    causal: fc.boolean(),
    maskKind: fc.constantFrom('none', 'add', 'bool') as fc.Arbitrary<'none' | 'add' | 'bool'>,
    ones: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    drop: fc.integer({ min: 0, max: 2 }),
  })
  .map((c) => ({ ...c, Tq: c.causal ? Math.min(c.Tq, c.Tk) : c.Tq }))
  .chain((c) => {
    const H = c.Hkv * c.group;
    const full = [c.B, H, c.Tq, c.Tk];
    const maskShape = full.map((d, i) => (c.ones[i] && i < 3 ? 1 : d)).slice(c.drop);
    const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
    const maskValues =
      c.maskKind === 'bool'
        ? // Key 0 always kept, so every query row sees at least one key (the naive version needs that).
          fc
            .array(fc.integer({ min: 0, max: 1 }), { minLength: n(maskShape), maxLength: n(maskShape) })
            .map((m) => m.map((v, i) => (i % c.Tk === 0 ? 1 : v)))
        : testing.valuesArb(maskShape, { min: -3, max: 3 });
    return fc.record({
      qShape: fc.constant([c.B, H, c.Tq, c.D]),
      kShape: fc.constant([c.B, c.Hkv, c.Tk, c.D]),
      causal: fc.constant(c.causal),
      maskKind: fc.constant(c.maskKind),
      maskShape: fc.constant(maskShape),
      q: testing.valuesArb([c.B, H, c.Tq, c.D]),
      k: testing.valuesArb([c.B, c.Hkv, c.Tk, c.D]),
      v: testing.valuesArb([c.B, c.Hkv, c.Tk, c.D]),
      mask: maskValues,
    });
  });

function inputs(c: Case): { q: Tensor; k: Tensor; v: Tensor; mask: Tensor | null } {
  const mask =
    c.maskKind === 'none'
      ? null
      : c.maskKind === 'bool'
        ? tensor(Int32Array.from(c.mask), { shape: c.maskShape, device: 'cpu' })
        : cpu64(c.mask, c.maskShape);
  return { q: cpu64(c.q, c.qShape), k: cpu64(c.k, c.kShape), v: cpu64(c.v, c.kShape), mask };
}

describe('scaledDotProductAttention', () => {
  it('equals the naive composition on cpu f64 and on webgpu (GQA, Tq ≠ Tk, causal, masks)', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        await scope(async () => {
          const { q, k, v, mask } = inputs(c);
          const want = await naiveAttention(q, k, v, { causal: c.causal, mask }).data();
          const got = await F.scaledDotProductAttention(q, k, v, { causal: c.causal, mask }).data();
          expect(Array.from(got)).toEqual(Array.from(want).map((x) => expect.closeTo(x, 10)));
          const g = (t: Tensor | null) => t && t.to('webgpu');
          const gpu = await F.scaledDotProductAttention(g(q)!, g(k)!, g(v)!, {
            causal: c.causal,
            mask: g(mask),
          }).data();
          expect(Array.from(gpu)).toEqual(Array.from(want).map((x) => expect.closeTo(x, 4)));
        });
      }),
      testing.fcParams(25),
    );
  });

  it('gradcheck for q, k, v on cpu f64, and webgpu f32 vs cpu f64', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const { q, k, v, mask } = inputs(c);
        const f = (a: Tensor, b: Tensor, d: Tensor, m?: Tensor) =>
          F.scaledDotProductAttention(a, b, d, { causal: c.causal, mask: m ?? null });
        const args = mask ? [q, k, v, mask] : [q, k, v];
        expectOk(testing.gradcheck(f, args, { wrt: [0, 1, 2] }));
        expectOk(await testing.gradcheckDevices(f, args, { wrt: [0, 1, 2] }));
      }),
      testing.fcParams(15),
    );
  });

  it('a custom scale, and query rows that see no key (causal, Tq > Tk) give zeros and zero gradients', async () => {
    manualSeed(8);
    const q = randn([1, 2, 5, 3], f64),
      k = randn([1, 1, 3, 3], f64),
      v = randn([1, 1, 3, 3], f64);
    expectOk(
      testing.gradcheck((a, b, d) => F.scaledDotProductAttention(a, b, d, { causal: true, scale: 0.7 }), [q, k, v]),
    );
    expectOk(
      await testing.gradcheckDevices((a, b, d) => F.scaledDotProductAttention(a, b, d, { causal: true }), [q, k, v]),
    );
    const out = (await F.scaledDotProductAttention(q, k, v, { causal: true }).toArray()) as number[][][][];
    expect(out[0][0].slice(0, 2).flat()).toEqual([0, 0, 0, 0, 0, 0]); // queries 0, 1 sit before key 0
    const want = await naiveAttention(q.narrow(2, 2, 3), k, v, { causal: true }).data();
    expect(out[0].map((h) => h.slice(2)).flat(2)).toEqual(Array.from(want).map((x) => expect.closeTo(x, 10)));
  });

  it('reads views at any offset (vector and scalar kernel paths)', async () => {
    manualSeed(13);
    const flat = randn([1 + 2 * 3 * 8], f64),
      k = randn([1, 1, 5, 8], f64),
      v = randn([1, 1, 5, 8], f64);
    const at = (t: Tensor, start: number) => t.narrow(0, start, 48).reshape([1, 2, 3, 8]);
    const f = (a: Tensor, b: Tensor, d: Tensor) => F.scaledDotProductAttention(at(a, 1), b, d, { causal: true });
    expectOk(await testing.gradcheckDevices(f, [flat, k, v]));
    const g = (a: Tensor, b: Tensor, d: Tensor) =>
      F.scaledDotProductAttention(at(a, 0), b, d.reshape([-1]).narrow(0, 8, 32).reshape([1, 1, 4, 8]), {});
    expectOk(await testing.gradcheckDevices(g, [flat, k.narrow(2, 0, 4), v]));
  });

  it('is causal: changing k/v at positions after p never changes outputs at positions ≤ p (webgpu)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 1000 }),
        async (Tq, pRaw, seed) => {
          await scope(async () => {
            const Tk = 7;
            const p = Math.min(pRaw, Tk - 1);
            manualSeed(seed);
            const q = randn([1, 4, Tq, 8]),
              k = randn([1, 2, Tk, 8]),
              v = randn([1, 2, Tk, 8]);
            const noise = randn([1, 2, Tk, 8]);
            const future = arange(Tk).gt(p).astype('float32').reshape([1, 1, Tk, 1]);
            const a = (await F.scaledDotProductAttention(q, k, v, { causal: true }).toArray()) as number[][][][];
            const b = (await F.scaledDotProductAttention(q, k.add(noise.mul(future)), v.sub(noise.mul(future)), {
              causal: true,
            }).toArray()) as number[][][][];
            for (let h = 0; h < 4; h++) {
              for (let i = 0; i < Tq; i++) {
                const position = i + Tk - Tq;
                if (position <= p) expect(b[0][h][i]).toEqual(a[0][h][i]);
                else if (p < Tk - 1) expect(b[0][h][i]).not.toEqual(a[0][h][i]);
              }
            }
          });
        },
      ),
      testing.fcParams(10),
    );
  });

  it('dropout: reproducible after manualSeed, the same mask on cpu and webgpu, gradient-checked', async () => {
    manualSeed(9);
    const q = randn([1, 2, 4, 4], f64),
      k = randn([1, 2, 6, 4], f64),
      v = randn([1, 2, 6, 4], f64);
    const run = async (device: 'cpu' | 'webgpu', seed: number) => {
      manualSeed(seed);
      return F.scaledDotProductAttention(q.to(device), k.to(device), v.to(device), { dropoutP: 0.4 }).data();
    };
    const [c1, c2, c3, g1] = [await run('cpu', 1), await run('cpu', 1), await run('cpu', 2), await run('webgpu', 1)];
    expect(Array.from(c2)).toEqual(Array.from(c1));
    expect(Array.from(c3)).not.toEqual(Array.from(c1));
    expect(Array.from(g1)).toEqual(Array.from(c1).map((x) => expect.closeTo(x, 4)));
    const f = (a: Tensor, b: Tensor, d: Tensor) => {
      manualSeed(3);
      return F.scaledDotProductAttention(a, b, d, { dropoutP: 0.4, causal: true });
    };
    expectOk(testing.gradcheck(f, [q, k, v]));
    expectOk(await testing.gradcheckDevices(f, [q, k, v]));
  });

  it('forward + backward at B=1, H=4, T=1024, D=64 allocates far less than one H·T·T buffer', async () => {
    manualSeed(10);
    const [H, T, D] = [4, 1024, 64];
    const q = randn([1, H, T, D], { requiresGrad: true });
    const k = randn([1, H, T, D], { requiresGrad: true });
    const v = randn([1, H, T, D], { requiresGrad: true });
    await q.data();
    resetPeak();
    const base = memory().liveBytes;
    await scope(async () => {
      F.scaledDotProductAttention(q, k, v, { causal: true }).sum().backward();
      await Promise.all([q.grad!.data(), k.grad!.data(), v.grad!.data()]);
    });
    const extra = memory().peakBytes - base;
    const scores = H * T * T * 4;
    expect(extra).toBeLessThan(scores / 2);
    expect(extra).toBeGreaterThan(3 * H * T * D * 4); // the three gradients at least
    [q, k, v].forEach((t) => t.dispose());
  });

  it('rejects bad head counts and shapes with clear errors', () => {
    const q = randn([1, 3, 2, 4], f64),
      k = randn([1, 2, 2, 4], f64);
    expect(() => F.scaledDotProductAttention(q, k, k)).toThrow(
      /query heads \(3\) must be a multiple of key\/value heads \(2\)/,
    );
    expect(() => F.scaledDotProductAttention(q, randn([1, 3, 2, 5], f64), randn([1, 3, 2, 5], f64))).toThrow(
      /head dim must match/,
    );
    expect(() => F.scaledDotProductAttention(q, q, q, { mask: randn([3, 3], f64) })).toThrow(
      /mask \[3, 3\] must broadcast/,
    );
    expect(() => F.scaledDotProductAttention(q, q, q, { dropoutP: 1 })).toThrow(/dropoutP/);
  });
});
