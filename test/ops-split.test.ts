// split (torch.split): consecutive parts of a tensor as views, recorded as one autograd node whose
// backward is one cat of the parts' gradients (zeros for parts that got none), instead of a zero fill
// and a copy per part summed by autograd.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dispatchesOf } from './dispatch-helpers.js';
import { withConfig } from '../core/config.js';
import { variantUsage } from '../core/op.js';
import { cat, split, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);
const runs = (variant: string) => variantUsage().get(`join:${variant}`) ?? 0;
const iota = (shape: number[], device: 'cpu' | 'webgpu' = 'cpu') =>
  tensor(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i / 10),
    { shape, device },
  );

/** Σ over the `used` parts of x split by `sizes` along `axis` of part · its own weights (so each part's gradient differs). */
function weightedParts(x: Tensor, sizes: number[], axis: number, used: number[]): Tensor {
  const parts = x.split(sizes, axis);
  return used
    .map((i) =>
      parts[i]
        .mul(parts[i].fullLike(i + 1))
        .square()
        .sum(),
    )
    .reduce((a, b) => a.add(b));
}

describe('split', () => {
  it('returns views along an axis: a list of sizes, or one length with a shorter last part', async () => {
    const x = iota([2, 7]);
    const parts = x.split([3, 0, 4], 1);
    expect(parts.map((p) => p.shape)).toEqual([
      [2, 3],
      [2, 0],
      [2, 4],
    ]);
    parts.forEach((p) => expect(p.storage).toBe(x.storage));
    expect(await parts[2].toArray()).toEqual(await x.narrow(1, 3, 4).toArray());
    expect(x.split(3, -1).map((p) => p.shape)).toEqual([
      [2, 3],
      [2, 3],
      [2, 1],
    ]);
    expect(split(x, 1).map((p) => p.shape)).toEqual([
      [1, 7],
      [1, 7],
    ]);
    expect(await split(x, 1)[1].toArray()).toEqual(await x.narrow(0, 1, 1).toArray());
  });

  it('rejects sizes that do not cut the axis exactly, naming split, the sizes and the axis length', () => {
    const x = iota([2, 7]);
    expect(() => x.split([3, 3], 1)).toThrow(/split.*\[3, 3\].*7/);
    expect(() => x.split([3, -1, 5], 1)).toThrow(/split.*\[3, -1, 5\]/);
    expect(() => x.split([], 1)).toThrow(/split.*\[\]/);
    expect(() => x.split(0, 1)).toThrow(/split.*positive integer.*0/);
    expect(() => x.split(2.5, 1)).toThrow(/split.*2\.5/);
    expect(() => x.split([7], 2)).toThrow(/split/);
  });

  it('gradients match finite differences (cpu f64) for random shapes, axes, sizes and unused parts', () => {
    const arb = fc.record({
      rows: fc.integer({ min: 1, max: 3 }),
      sizes: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 4 }),
      axis: fc.integer({ min: 0, max: 1 }),
      usedMask: fc.integer({ min: 1, max: 15 }),
    });
    fc.assert(
      fc.property(arb, ({ rows, sizes, axis, usedMask }) => {
        const n = sizes.reduce((a, b) => a + b, 0);
        const used = sizes.map((_, i) => i).filter((i) => usedMask & (1 << i));
        if (n === 0 || used.length === 0) return;
        const shape = axis === 0 ? [n, rows] : [rows, n];
        const x = tensor(
          Array.from({ length: n * rows }, (_, i) => Math.sin(i + 1)),
          { shape, ...f64 },
        );
        expectOk(testing.gradcheck((t: Tensor) => weightedParts(t, sizes, axis, used), [x]));
      }),
      { numRuns: 25 },
    );
  });

  it('webgpu agrees with cpu f64, forward and gradients, with all, some and one part used', async () => {
    const x = tensor(
      Array.from({ length: 24 }, (_, i) => Math.cos(i)),
      { shape: [2, 3, 4], ...f64 },
    );
    for (const used of [[0, 1, 2], [0, 2], [1]]) {
      expectOk(
        await testing.gradcheckDevices(
          (t: Tensor) =>
            cat(
              t
                .split([1, 2, 1], 2)
                .filter((_, i) => used.includes(i))
                .map((p) => p.exp()),
              2,
            ),
          [x],
        ),
      );
    }
  });

  it("backward: one cat of the parts' gradients, no zero fill per part and no adds", async () => {
    const x = iota([4, 6], 'webgpu');
    x.requiresGrad = true;
    // Forward cat + exps; backward: cat's gradient is narrow views (no dispatch), each exp one g·eˣ.
    const joined = (parts: Tensor[], used: number[]) =>
      cat(
        used.map((i) => parts[i].exp()),
        1,
      );
    const seed = (y: Tensor) => y.fullLike(1);
    const backwardOf = async (parts: Tensor[], used: number[]) => {
      const y = joined(parts, used);
      const s = seed(y);
      const d = await dispatchesOf(() => y.backward(s));
      x.grad = null;
      return d;
    };
    const sizes = [1, 2, 3];
    const narrowed = () => {
      let s = 0;
      return sizes.map((n) => x.narrow(1, (s += n) - n, n));
    };
    // All three parts: 3 exp rules + one cat (one dispatch); narrow: 3 gradients each embedded in zeros
    // (one join each) and 2 adds instead.
    expect(await backwardOf(x.split(sizes, 1), [0, 1, 2])).toBe(3 + 1);
    expect(await backwardOf(narrowed(), [0, 1, 2])).toBe(3 + 3 + 2);
    // Two of three: 2 exp rules + one cat that also writes the unused part's zeros.
    expect(await backwardOf(x.split(sizes, 1), [0, 2])).toBe(2 + 1);
    // One: 1 exp rule + the part's gradient embedded in zeros (one join), as narrow does.
    expect(await backwardOf(x.split(sizes, 1), [1])).toBe(1 + 1);
    // The values are the exps in place, zeros where a part had no gradient.
    const y = joined(x.split(sizes, 1), [0, 2]);
    y.backward(seed(y));
    const xs = Array.from(await x.data());
    const want = xs.map((v, i) => (i % 6 >= 1 && i % 6 < 3 ? 0 : expect.closeTo(Math.exp(v), 4)));
    expect(Array.from(await x.grad!.data())).toEqual(want);
  });
});

describe('cat on webgpu: up to 4 parts in one dispatch', () => {
  // Parts of different layouts: a transposed view, an offset slice, a broadcast, a dense tensor.
  const parts = (device: 'cpu' | 'webgpu', dtype: 'float32' | 'int32') => {
    const base = (shape: number[]) =>
      tensor(
        Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => (dtype === 'int32' ? i - 7 : i / 8 - 1)),
        { shape, device, dtype },
      );
    return [base([5, 3]).transpose(0, 1), base([3, 9]).narrow(1, 2, 4), base([3, 1]).expand([3, 2]), base([3, 1])];
  };
  for (const dtype of ['float32', 'int32'] as const) {
    it(`joins strided, offset and broadcast ${dtype} parts like the cpu backend, in one dispatch`, async () => {
      const want = Array.from(await cat(parts('cpu', dtype), 1).data());
      const gpuParts = parts('webgpu', dtype);
      let got: Tensor | null = null;
      const [onePass, perPart] = [runs('onePass'), runs('perPart')];
      expect(
        await dispatchesOf(() => {
          got = cat(gpuParts, 1);
        }),
      ).toBe(1);
      expect(Array.from(await got!.data())).toEqual(want);
      expect(runs('onePass')).toBe(onePass + 1);
      // Five parts: one copy per part (the kernel binds at most four), same values.
      const five = [...gpuParts, gpuParts[3]];
      expect(
        await dispatchesOf(() => {
          got = cat(five, 1);
        }),
      ).toBe(5);
      expect(Array.from(await got!.data())).toEqual(
        Array.from(await cat([...parts('cpu', dtype), parts('cpu', dtype)[3]], 1).data()),
      );
      expect(runs('perPart')).toBe(perPart + 1);
      // Forced: one copy per part for four parts too, same values.
      await withConfig({ variants: { join: 'perPart' } }, async () => {
        expect(
          await dispatchesOf(() => {
            got = cat(gpuParts, 1);
          }),
        ).toBe(4);
      });
      expect(Array.from(await got!.data())).toEqual(want);
      expect(runs('perPart')).toBe(perPart + 2);
      // Forcing the one-pass kernel on five parts is an error naming the variant, not a wrong result.
      await withConfig({ variants: { join: 'onePass' } }, () => {
        expect(() => cat(five, 1)).toThrow(/join: the forced variant 'onePass'.*does not fit/);
      });
    });
  }

  it('joins along the first and the last axis of a rank-4 tensor', async () => {
    for (const axis of [0, 3]) {
      const shapes = [
        [2, 2, 3, 2],
        [1, 2, 3, 2],
      ].map((s) => s.map((d, i) => (i === axis ? d : [3, 2, 3, 2][i])));
      const cpuParts = shapes.map((s, k) => iota(s).add(k));
      const want = Array.from(await cat(cpuParts, axis).data());
      expect(
        Array.from(
          await cat(
            cpuParts.map((p) => p.to('webgpu')),
            axis,
          ).data(),
        ).map((v) => Math.round(v * 1e4) / 1e4),
      ).toEqual(want.map((v) => Math.round(v * 1e4) / 1e4));
    }
  });
});
