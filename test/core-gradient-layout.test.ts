// Gradients arrive dense without copies: reshape is a view whenever the strides allow, the matmul rule
// gives each operand its gradient in that operand's memory order (a linear layer's Wᵀ), autograd
// keeps a contiguous gradient that is a window of a larger buffer (cat's backward) instead of copying it,
// and a gather's gradient is a zero fill and one scatter-add.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dispatchesOf } from './dispatch-helpers.js';
import { cat, nn, optim, scope, tensor, testing, type Tensor } from '../index.js';

const devices = ['cpu', 'webgpu'] as const;
const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);

const iota = (shape: number[], device: 'cpu' | 'webgpu' = 'cpu') =>
  tensor(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i),
    { shape, device },
  );

describe('reshape of strided tensors', () => {
  it('is a view when dims are split or merged where the strides allow, a copy otherwise', () => {
    const x = iota([6, 4]);
    const split = x.transpose(0, 1).reshape([4, 2, 3]);
    expect(split.storage).toBe(x.storage);
    expect(split.strides).toEqual([1, 12, 4]);
    const window = iota([4, 6]).narrow(1, 2, 3);
    const rows = window.reshape([2, 2, 3]);
    expect(rows.storage).toBe(window.storage);
    expect(rows.offset).toBe(2);
    // A fused q/k/v projection's slice splits into heads as a view.
    const qkv = iota([2, 5, 3 * 8]);
    const k = qkv.narrow(2, 8, 8).reshape([2, 5, 2, 4]);
    expect(k.storage).toBe(qkv.storage);
    expect(k.strides).toEqual([120, 24, 4, 1]);
    const merged = iota([2, 3, 4]).permute([1, 0, 2]).reshape([6, 4]);
    expect(merged.storage).not.toBe(x.storage);
    expect(merged.isContiguous()).toBe(true);
  });

  it('agrees with the copy on random permutations, slices and regroupings; view() succeeds exactly when reshape does not copy', async () => {
    const arb = fc.record({
      shape: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }),
      seed: fc.nat(),
      sliceStep: fc.integer({ min: 1, max: 2 }),
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ shape, seed, sliceStep }) => {
        await scope(async () => {
          const base = iota(shape);
          const perm = shape.map((_, i) => i).sort((a, b) => ((a * 7919 + seed) % 13) - ((b * 7919 + seed) % 13));
          let x: Tensor = base.permute(perm);
          x = x.slice(seed % x.rank, 0, undefined, sliceStep);
          // A random regrouping of the elements into factors.
          const target: number[] = [];
          let rest = x.size;
          for (let f = 2 + (seed % 3); rest > 1 && f <= rest; f++) {
            while (rest % f === 0 && target.length < 4) {
              target.push(f);
              rest /= f;
            }
          }
          if (rest > 1) target.push(rest);
          if (target.length === 0) target.push(1);
          const y = x.reshape(target);
          expect(await y.toArray()).toEqual(await x.contiguous().reshape(target).toArray());
          const isView = y.storage === base.storage;
          if (isView) expect(await x.view(target).toArray()).toEqual(await y.toArray());
          else expect(() => x.view(target)).toThrow(/view.*without a copy.*reshape\(\)/);
        });
      }),
      { numRuns: 60 },
    );
  });

  it('passes gradients through strided views (cpu float64 gradcheck)', () => {
    const x = tensor(
      Array.from({ length: 24 }, (_, i) => Math.sin(i)),
      { ...f64, shape: [4, 6] },
    );
    const r = testing.gradcheck(
      (t) =>
        t
          .transpose(0, 1)
          .reshape([2, 3, 4])
          .mul(t.narrow(1, 0, 4).reshape([2, 2, 4]).sum(0).sum(0))
          .sum(),
      [x],
    );
    expect(r.ok, r.message).toBe(true);
  });
});

describe('gradient layout', () => {
  for (const device of devices) {
    it(`a linear layer's weight gradient is dense [out, in] and matches the reference (${device})`, async () => {
      const x = tensor(
        Array.from({ length: 2 * 5 * 3 }, (_, i) => Math.cos(i)),
        { shape: [2, 5, 3], device, requiresGrad: true },
      );
      const w = tensor(
        Array.from({ length: 4 * 3 }, (_, i) => Math.sin(i + 1)),
        { shape: [4, 3], device, requiresGrad: true },
      );
      nn.functional.linear(x, w).square().sum().backward();
      expect(w.grad!.isContiguous()).toBe(true);
      expect(w.grad!.offset).toBe(0);
      const report = await testing.gradcheckDevices(
        (a, b) => nn.functional.linear(a, b).square().sum(),
        [x.detach(), w.detach()],
      );
      expect(report.ok, report.message).toBe(true);
    });
  }

  it('a linear backward on webgpu is the two matmuls, with no copy of the weight gradient', async () => {
    const x = tensor(
      Array.from({ length: 8 * 3 }, (_, i) => i / 10),
      { shape: [8, 3], device: 'webgpu', requiresGrad: true },
    );
    const w = tensor(
      Array.from({ length: 4 * 3 }, (_, i) => i / 7),
      { shape: [4, 3], device: 'webgpu', requiresGrad: true },
    );
    const seed = tensor(
      Array.from({ length: 8 * 4 }, (_, i) => i % 3),
      { shape: [8, 4], device: 'webgpu' },
    );
    const y = nn.functional.linear(x, w);
    expect(await dispatchesOf(() => y.backward(seed))).toBe(2);
    expect(w.grad!.shape).toEqual([4, 3]);
    expect(w.grad!.isContiguous()).toBe(true);
  });

  it("keeps each slice of cat's gradient as a window of one buffer, valid after its siblings and the scope are gone", async () => {
    const a = tensor([1, 2, 3], { device: 'webgpu', requiresGrad: true });
    const b = tensor([0, 0], { device: 'webgpu', requiresGrad: true });
    // Backward: the seed fill and exp's g·eˣ; the two slices of that product are not copied.
    const loss = cat([a, b]).exp().sum();
    expect(await dispatchesOf(() => loss.backward())).toBe(2);
    expect(a.grad!.storage).toBe(b.grad!.storage);
    expect(b.grad!.offset).toBe(3);
    b.grad = null;
    expect(await a.grad!.toArray()).toEqual([1, 2, 3].map((v) => expect.closeTo(Math.exp(v), 4)));
    // Clipping scales gradients in place: a shared buffer is copied first, so the sibling is untouched.
    const a2 = tensor([3, 4], { device: 'webgpu', requiresGrad: true });
    const b2 = tensor([0, 0], { device: 'webgpu', requiresGrad: true });
    cat([a2, b2])
      .mul(tensor([1, 1, 2, 2], { device: 'webgpu' }))
      .sum()
      .backward();
    optim.clipGradNorm([a2], 0.5);
    expect(await a2.grad!.toArray()).toEqual([
      expect.closeTo(0.5 / Math.SQRT2, 5),
      expect.closeTo(0.5 / Math.SQRT2, 5),
    ]);
    expect(await b2.grad!.toArray()).toEqual([2, 2]);
  });

  it("an embedding's gradient is one scatter-add into zeros on webgpu (rows 1 and 2 never picked), and matches cpu f64 (repeated ids)", async () => {
    const w = tensor(
      Array.from({ length: 5 * 3 }, (_, i) => i / 4),
      { shape: [5, 3], device: 'webgpu', requiresGrad: true },
    );
    const ids = tensor(
      [
        [0, 3, 3],
        [4, 0, 0],
      ],
      { dtype: 'int32', device: 'webgpu' },
    );
    const y = nn.functional.embedding(ids, w);
    const seed = tensor(
      Array.from({ length: 18 }, (_, i) => i),
      { shape: [2, 3, 3], device: 'webgpu' },
    );
    expect(await dispatchesOf(() => y.backward(seed))).toBe(1);
    const wc = tensor(
      Array.from({ length: 5 * 3 }, (_, i) => i / 4),
      { shape: [5, 3], ...f64 },
    );
    const idsCpu = tensor(
      [
        [0, 3, 3],
        [4, 0, 0],
      ],
      { dtype: 'int32', device: 'cpu' },
    );
    for (const f of [
      (a: Tensor, i: Tensor) => nn.functional.embedding(i, a).square().sum(),
      (a: Tensor, i: Tensor) =>
        a
          .gather(0, i.narrow(1, 0, 2).reshape([2, 2]).add(0))
          .exp()
          .sum(),
    ]) {
      expectOk(testing.gradcheck(f, [wc, idsCpu]));
      expectOk(await testing.gradcheckDevices(f, [wc, idsCpu]));
    }
  });

  it('a slice that is the whole axis passes its gradient on without a zero fill or copy; a partial one embeds it', async () => {
    const x = tensor(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      { device: 'webgpu', requiresGrad: true },
    );
    const whole = x.narrow(0, 0, 3).exp().sum();
    expect(await dispatchesOf(() => whole.backward())).toBe(2); // the seed and exp's g·eˣ
    expect(await x.grad!.toArray()).toEqual(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ].map((r) => r.map((v) => expect.closeTo(Math.exp(v), 3))),
    );
    x.grad = null;
    x.narrow(0, 1, 2).exp().sum().backward();
    expect(await x.grad!.toArray()).toEqual(
      [
        [0, 0],
        [3, 4],
        [5, 6],
      ].map((r, i) => r.map((v) => (i === 0 ? 0 : expect.closeTo(Math.exp(v), 3)))),
    );
  });
});
