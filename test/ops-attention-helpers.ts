// The attention tests' shared harness: one problem run on the float64 cpu reference or on webgpu's
// row or tiled kernels, with q, k, v stored in any of several memory layouts, returning the output
// and gradients in logical order.
import { expect } from 'vitest';
import { config, withConfig } from '../core/config.js';
import { variantUsage } from '../core/op.js';
import { cat, functional as F, manualSeed, randn, scope, type Tensor } from '../index.js';

/** How an operand's [B, H, T, D] values sit in memory. */
export type Layout = 'contiguous' | 'heads' | 'fused' | 'offset' | 'columns';
export const LAYOUTS: Layout[] = ['contiguous', 'heads', 'fused', 'offset', 'columns'];
export const CONTIGUOUS: Layout[] = ['contiguous', 'contiguous', 'contiguous'];

/**
 * x's values stored as `layout` in a leaf `base`; view(base) is the [B, H, T, D] operand (and
 * view(base.grad) its gradient in logical order).
 */
export function stored(x: Tensor, layout: Layout): { base: Tensor; view: (b: Tensor) => Tensor } {
  const D = x.shape[3];
  const leaf = (t: Tensor) => {
    const b = t.contiguous().detach();
    b.requiresGrad = true;
    return b;
  };
  switch (layout) {
    case 'contiguous':
      return { base: leaf(x), view: (b) => b };
    // [B, T, H, D], as a projection's output split into heads (LLaMA).
    case 'heads':
      return { base: leaf(x.transpose(1, 2)), view: (b) => b.transpose(1, 2) };
    // [B, T, H, 3D] with this operand in the middle third (GPT-NeoX's fused qkv).
    case 'fused': {
      const t = x.transpose(1, 2);
      return { base: leaf(cat([t.add(1), t, t.add(2)], -1)), view: (b) => b.transpose(1, 2).narrow(-1, D, D) };
    }
    // Three elements into a flat buffer: no aligned vector loads.
    case 'offset':
      return {
        base: leaf(cat([x.reshape([-1]).narrow(0, 0, 3), x.reshape([-1])])),
        view: (b) => b.narrow(0, 3, x.size).reshape(x.shape),
      };
    // [B, H, D, T]: the head dim is strided.
    case 'columns':
      return { base: leaf(x.transpose(2, 3)), view: (b) => b.transpose(2, 3) };
  }
}

export interface Problem {
  B: number;
  H: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  D: number;
  causal: boolean;
  mask?: 'add' | 'bool';
  dropoutP?: number;
}
export type Target = 'cpu' | 'row' | 'tiled';
/** 'heads': the output gradient arrives as a transposed view of [B, T, H, D] (as from o_proj); 'sum': broadcast ones. */
export type Loss = 'heads' | 'sum';

/** Output and q, k, v gradients in logical order, for inputs drawn from `seed` and stored as `layouts`. */
export async function run(
  p: Problem,
  target: Target,
  seed: number,
  layouts: readonly Layout[] = CONTIGUOUS,
  loss: Loss = 'heads',
): Promise<number[][]> {
  if (target === 'cpu') return compute(p, 'cpu', seed, layouts, loss);
  // The variant forced, and checked to have run forward and backward.
  const ran = () =>
    ['scaledDotProductAttention', 'scaledDotProductAttentionBackward'].map(
      (k) => variantUsage().get(`${k}:${target}`) ?? 0,
    );
  const before = ran();
  const result = await withConfig({ variants: { ...config().variants, attention: target } }, () =>
    compute(p, 'webgpu', seed, layouts, loss),
  );
  ran().forEach((n, i) => expect(n, `${target} kernels ran`).toBeGreaterThan(before[i]));
  return result;
}

async function compute(
  p: Problem,
  device: 'cpu' | 'webgpu',
  seed: number,
  layouts: readonly Layout[],
  loss: Loss,
): Promise<number[][]> {
  return scope(async () => {
    manualSeed(seed);
    const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
    const xs = [
      randn([p.B, p.H, p.Tq, p.D], f64),
      randn([p.B, p.Hkv, p.Tk, p.D], f64),
      randn([p.B, p.Hkv, p.Tk, p.D], f64),
    ];
    const w = randn([p.B, p.Tq, p.H, p.D], f64);
    const scores = randn([p.Tq, p.Tk], f64);
    const mask = p.mask === 'add' ? scores : p.mask === 'bool' ? scores.gt(-0.5).astype('int32') : null;
    const ops = xs.map((x, n) => stored(x.to(device), layouts[n]));
    manualSeed(seed + 1); // the dropout seed
    const [q, k, v] = ops.map((o) => o.view(o.base));
    const out = F.scaledDotProductAttention(q, k, v, {
      causal: p.causal,
      mask: mask?.to(device),
      dropoutP: p.dropoutP,
    });
    (loss === 'sum' ? out.sum() : out.transpose(1, 2).mul(w.to(device)).sum()).backward();
    const logical = async (t: Tensor) => Array.from(await t.contiguous().data());
    return [await logical(out), ...(await Promise.all(ops.map((o) => logical(o.view(o.base.grad!)))))];
  });
}

export function expectClose(got: number[][], want: number[][], tol: number): void {
  got.forEach((g, n) => {
    const scale = Math.max(1, ...want[n].map(Math.abs));
    const worst = Math.max(...g.map((x, i) => Math.abs(x - want[n][i])));
    expect(g.length, `output ${['out', 'dq', 'dk', 'dv'][n]} size`).toBe(want[n].length);
    expect(worst / scale, `output ${['out', 'dq', 'dk', 'dv'][n]}`).toBeLessThan(tol);
  });
}
