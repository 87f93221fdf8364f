// The tiled attention kernels (ops/attention/tiled.ts) against the row kernels and the float64 cpu
// reference: forward and q/k/v gradients, causal and not, T not a multiple of the tile, the head dims
// the models use, GQA, Tq ≠ Tk with an additive mask, and dropout (the same seed drops the same
// probabilities on every path). Plus the variant choice, forcing a variant and the limits.
import { describe, expect, it } from 'vitest';
import { withConfig } from '../core/config.js';
import { chooseVariant, hardware, registeredKernels } from '../core/op.js';
import { expectClose, run, type Problem } from './ops-attention-helpers.js';

describe('tiled attention', () => {
  for (const D of [16, 32, 64]) {
    it(`equals the row kernels and the cpu f64 reference, forward and gradients (D ${D}, T 70, GQA, causal and not)`, async () => {
      for (const causal of [true, false]) {
        const p: Problem = { B: 1, H: 4, Hkv: 2, Tq: 70, Tk: 70, D, causal };
        const [tiled, row, cpu] = [await run(p, 'tiled', D), await run(p, 'row', D), await run(p, 'cpu', D)];
        expectClose(tiled, cpu, 2e-4);
        expectClose(tiled, row, 2e-4);
      }
    });
  }

  it('Tq ≠ Tk with an additive mask, causal (queries are the last Tq positions)', async () => {
    const p: Problem = { B: 2, H: 2, Hkv: 1, Tq: 37, Tk: 101, D: 16, causal: true, mask: 'add' };
    const [tiled, cpu] = [await run(p, 'tiled', 5), await run(p, 'cpu', 5)];
    expectClose(tiled, cpu, 2e-4);
  });

  it('a boolean mask and a head dim that is not a multiple of 4 (scalar kernels), non-causal', async () => {
    const p: Problem = { B: 1, H: 2, Hkv: 2, Tq: 66, Tk: 45, D: 6, causal: false, mask: 'bool' };
    const [tiled, cpu] = [await run(p, 'tiled', 6), await run(p, 'cpu', 6)];
    expectClose(tiled, cpu, 2e-4);
  });

  it('dropout: the same seed drops the same probabilities as the row kernels and the cpu reference; another seed does not', async () => {
    const p: Problem = { B: 1, H: 2, Hkv: 2, Tq: 70, Tk: 70, D: 16, causal: true, dropoutP: 0.3 };
    const [tiled, row, cpu, again, other] = [
      await run(p, 'tiled', 7),
      await run(p, 'row', 7),
      await run(p, 'cpu', 7),
      await run(p, 'tiled', 7),
      await run(p, 'tiled', 8),
    ];
    expectClose(tiled, cpu, 2e-4);
    expectClose(tiled, row, 2e-4);
    expect(again).toEqual(tiled);
    expect(other[0]).not.toEqual(tiled[0]);
  });

  it('is chosen for long attentions, the row kernels for short ones; configure forces either, and rejects other names and limits it cannot meet', async () => {
    const kernel = registeredKernels().get('scaledDotProductAttention')!;
    // The variants' fits and prefer read only the problem's sizes.
    const choice = (B: number, Tq: number, Tk: number, D: number) =>
      chooseVariant(kernel, { d: { B, H: 4, Hkv: 4, Tq, Tk, D } } as never).name;
    expect(choice(1, 512, 512, 64)).toBe('tiled');
    expect(choice(8, 64, 64, 16)).toBe('row');
    expect(choice(1, 1, 512, 64)).toBe('row');
    expect(choice(1, 512, 512, 128)).toBe('row');
    const tooMany = Math.ceil((hardware().maxWorkgroupsPerDimension + 1) / 4); // batches of 4 heads: more tiled workgroups than the adapter allows
    expect(choice(tooMany, 512, 512, 64)).toBe('row');
    expect(() => choice(1, 4, 4, 300)).toThrow(
      /scaledDotProductAttention: no webgpu variant fits .*tiled: head dim 300 exceeds its maximum of 256/,
    );
    await withConfig({ variants: { attention: 'tiled' } }, () => {
      expect(choice(8, 64, 64, 16)).toBe('tiled');
      expect(() => choice(tooMany, 512, 512, 64)).toThrow(
        /the forced variant 'tiled' \(family 'attention'\) does not fit/,
      );
    });
    await withConfig({ variants: { attention: 'row' } }, () => expect(choice(1, 512, 512, 64)).toBe('row'));
    await withConfig({ variants: { attention: 'flash' } }, () =>
      expect(() => choice(1, 512, 512, 64)).toThrow(
        /family 'attention' has no variant 'flash'; its variants are tiled, row/,
      ),
    );
  });
});
