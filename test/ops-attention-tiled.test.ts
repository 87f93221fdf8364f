// The tiled attention kernels (ops/attention/tiled.ts) against the row kernels and the float64 cpu
// reference: forward and q/k/v gradients, causal and not, T not a multiple of the tile, the head dims
// the models use, GQA, Tq ≠ Tk with an additive mask, and dropout (the same seed drops the same
// probabilities on every path). Plus the kernel choice and its env override.
import { describe, expect, it } from 'vitest';
import { chooseAttentionKernel } from '../ops/attention/tiled.js';
import { expectClose, keepAttentionKernelChoice, run, type Problem } from './ops-attention-helpers.js';

keepAttentionKernelChoice();

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
    const [tiled, row, cpu, again, other] = [await run(p, 'tiled', 7), await run(p, 'row', 7), await run(p, 'cpu', 7), await run(p, 'tiled', 7), await run(p, 'tiled', 8)];
    expectClose(tiled, cpu, 2e-4);
    expectClose(tiled, row, 2e-4);
    expect(again).toEqual(tiled);
    expect(other[0]).not.toEqual(tiled[0]);
  });

  it('is chosen for long attentions, the row kernels for short ones; DAWNGRAD_ATTENTION forces either and rejects other values', () => {
    delete process.env.DAWNGRAD_ATTENTION;
    expect(chooseAttentionKernel(4, 512, 4, 512, 64)).toBe('tiled');
    expect(chooseAttentionKernel(32, 64, 32, 64, 16)).toBe('row');
    expect(chooseAttentionKernel(4, 1, 4, 512, 64)).toBe('row');
    expect(chooseAttentionKernel(4, 512, 4, 512, 128)).toBe('row');
    process.env.DAWNGRAD_ATTENTION = 'tiled';
    expect(chooseAttentionKernel(32, 64, 32, 64, 16)).toBe('tiled');
    process.env.DAWNGRAD_ATTENTION = 'row';
    expect(chooseAttentionKernel(4, 512, 4, 512, 64)).toBe('row');
    process.env.DAWNGRAD_ATTENTION = 'flash';
    expect(() => chooseAttentionKernel(4, 512, 4, 512, 64)).toThrow(/DAWNGRAD_ATTENTION must be 'row' or 'tiled', got 'flash'/);
  });
});
