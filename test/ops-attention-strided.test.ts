// scaledDotProductAttention reads and writes its operands where they are: strided views of q, k, v
// (heads split by a transpose, GPT-NeoX's slices of a fused projection, offset views, a strided head
// dim) and of the output gradient give the contiguous result, forward and gradients, on the float64
// cpu reference and on webgpu's row and tiled kernels. The output is laid out [B, T, H, D], so
// merging heads is a view, and a head-split training step is 1 forward + 2 backward dispatches with
// no copies.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { functional as F, manualSeed, memory, randn, scope, testing, type Tensor } from '../index.js';
import {
  CONTIGUOUS,
  expectClose,
  LAYOUTS,
  run,
  type Layout,
  type Loss,
  type Problem,
} from './ops-attention-helpers.js';

describe('attention on strided operands', () => {
  it('row kernels: any layout of q, k, v equals the contiguous cpu f64 result, forward and gradients (GQA, causal, masks)', async () => {
    const arb = fc.record({
      layouts: fc.array(fc.constantFrom(...LAYOUTS), { minLength: 3, maxLength: 3 }),
      Hkv: fc.integer({ min: 1, max: 2 }),
      Tq: fc.integer({ min: 1, max: 5 }),
      Tk: fc.integer({ min: 1, max: 6 }),
      D: fc.constantFrom(4, 5, 8),
      causal: fc.boolean(),
      mask: fc.constantFrom(undefined, 'add', 'bool') as fc.Arbitrary<'add' | 'bool' | undefined>,
      loss: fc.constantFrom('heads', 'sum') as fc.Arbitrary<Loss>,
      seed: fc.integer({ min: 0, max: 1000 }),
    });
    await fc.assert(
      fc.asyncProperty(arb, async (c) => {
        const p: Problem = {
          B: 2,
          H: 2 * c.Hkv,
          Hkv: c.Hkv,
          Tq: c.causal ? Math.min(c.Tq, c.Tk) : c.Tq,
          Tk: c.Tk,
          D: c.D,
          causal: c.causal,
          mask: c.mask,
        };
        const want = await run(p, 'cpu', c.seed, CONTIGUOUS, c.loss);
        expectClose(await run(p, 'cpu', c.seed, c.layouts, c.loss), want, 1e-10);
        expectClose(await run(p, 'row', c.seed, c.layouts, c.loss), want, 2e-4);
      }),
      testing.fcParams(12),
    );
  });

  it('tiled kernels: head-split, fused-slice, offset and strided-head-dim views equal the contiguous cpu f64 result', async () => {
    const vector: Problem = { B: 1, H: 4, Hkv: 2, Tq: 9, Tk: 9, D: 16, causal: true };
    const want = await run(vector, 'cpu', 3);
    expectClose(await run(vector, 'tiled', 3, ['heads', 'fused', 'heads']), want, 2e-4);
    // Scalar loads (head dim 6; a strided head dim, an unaligned offset), with a boolean mask.
    const scalar: Problem = { B: 1, H: 2, Hkv: 2, Tq: 7, Tk: 5, D: 6, causal: false, mask: 'bool' };
    expectClose(await run(scalar, 'tiled', 4, ['columns', 'offset', 'heads']), await run(scalar, 'cpu', 4), 2e-4);
  });

  it('dropout: strided operands drop the same probabilities as contiguous ones (same seed), on cpu and both kernels', async () => {
    const p: Problem = { B: 1, H: 2, Hkv: 1, Tq: 6, Tk: 6, D: 16, causal: true, dropoutP: 0.3 };
    const layouts: Layout[] = ['heads', 'fused', 'columns'];
    const want = await run(p, 'cpu', 5);
    expectClose(await run(p, 'cpu', 5, layouts), want, 1e-10);
    expectClose(await run(p, 'row', 5, layouts), want, 2e-4);
    // (Vector loads on the tiled path: its scalar pipelines at this head dim take minutes to compile on lavapipe.)
    expectClose(await run(p, 'tiled', 5, ['heads', 'fused', 'heads']), await run(p, 'tiled', 5), 1e-6);
    expect((await run(p, 'row', 6, layouts))[0]).not.toEqual((await run(p, 'row', 5, layouts))[0]);
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`returns the output laid out as [B, T, H, D] memory (${device}): merging heads needs no copy`, () => {
      scope(() => {
        const [B, H, T, D] = [2, 3, 5, 4];
        const q = randn([B, H, T, D], { device }),
          k = randn([B, 1, T, D], { device });
        const out = F.scaledDotProductAttention(q, k, k, { causal: true });
        expect(out.shape).toEqual([B, H, T, D]);
        expect(out.strides).toEqual([T * H * D, D, H * D, 1]);
        expect(out.transpose(1, 2).isContiguous()).toBe(true);
      });
    });
  }

  it('a head-split training step: forward 1 dispatch, backward 2 (row statistics inside), no copies; gradients as on cpu f64', async () => {
    const [B, T, H, Hkv, D] = [2, 8, 4, 2, 16];
    manualSeed(11);
    const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
    const [qp, kp, vp] = [randn([B, T, H * D], f64), randn([B, T, Hkv * D], f64), randn([B, T, Hkv * D], f64)];
    const gm = randn([B, T, H * D], f64);
    const split = (x: Tensor, heads: number) => x.reshape([B, T, heads, D]).transpose(1, 2);
    /** LLaMA's attention between the projections; returns the dispatches of forward and backward. */
    const step = (p: Tensor[], g: Tensor): [number, number] =>
      scope(() => {
        const d0 = memory().dispatches;
        const out = F.scaledDotProductAttention(split(p[0], H), split(p[1], Hkv), split(p[2], Hkv), { causal: true });
        const merged = out.transpose(1, 2).reshape([B, T, H * D]);
        const d1 = memory().dispatches;
        merged.backward(g);
        return [d1 - d0, memory().dispatches - d1];
      });
    const leaves = (device: 'cpu' | 'webgpu') =>
      [qp, kp, vp].map((t) => {
        const x = t.to(device).detach();
        x.requiresGrad = true;
        return x;
      });
    const gpu = leaves('webgpu'),
      cpu = leaves('cpu'),
      gmGpu = gm.to('webgpu');
    await Promise.all([...gpu, gmGpu].map((t) => t.data()));
    expect(step(gpu, gmGpu)).toEqual([1, 2]);
    step(cpu, gm);
    for (let n = 0; n < 3; n++) {
      const [got, want] = [await gpu[n].grad!.data(), await cpu[n].grad!.data()];
      expect(Array.from(got)).toEqual(Array.from(want).map((x) => expect.closeTo(x, 4)));
    }
    for (const t of [qp, kp, vp, gm, gmGpu, ...gpu, ...cpu]) t.dispose();
  });
});
