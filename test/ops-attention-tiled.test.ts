// The tiled attention kernels (ops/attention/tiled.ts) against the row kernels and the float64 cpu
// reference: forward and q/k/v gradients, causal and not, T not a multiple of the tile, the head dims
// the models use, GQA, Tq ≠ Tk with an additive mask, and dropout (the same seed drops the same
// probabilities on every path). Plus the kernel choice and its env override.
import { afterEach, describe, expect, it } from 'vitest';
import { chooseAttentionKernel } from '../ops/attention/tiled.js';
import { functional as F, manualSeed, randn, scope, type Tensor } from '../index.js';

type Path = 'row' | 'tiled' | 'cpu';

interface Problem { B: number; H: number; Hkv: number; Tq: number; Tk: number; D: number; causal: boolean; dropoutP?: number; mask?: 'add' | 'bool' }

/** Output and gradients of sum(out ∘ w) for q, k, v, on one path; inputs drawn from `seed` in float64 on cpu. */
async function run(path: Path, p: Problem, seed: number): Promise<number[][]> {
  return scope(async () => {
    manualSeed(seed);
    const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
    const base = [randn([p.B, p.H, p.Tq, p.D], f64), randn([p.B, p.Hkv, p.Tk, p.D], f64), randn([p.B, p.Hkv, p.Tk, p.D], f64)];
    const w = randn([p.B, p.H, p.Tq, p.D], f64);
    const scores = randn([p.Tq, p.Tk], f64);
    const mask = p.mask === 'add' ? scores : p.mask === 'bool' ? scores.gt(-0.5).astype('int32') : null;
    const device = path === 'cpu' ? 'cpu' : 'webgpu';
    const [q, k, v] = base.map((t) => { const x = t.to(device).detach(); x.requiresGrad = true; return x; });
    if (path !== 'cpu') process.env.DAWNGRAD_ATTENTION = path;
    manualSeed(seed + 1); // the dropout seed
    const out = F.scaledDotProductAttention(q, k, v, { causal: p.causal, dropoutP: p.dropoutP, mask: mask?.to(device) });
    out.mul(w.to(device)).sum().backward();
    return Promise.all([out, q.grad!, k.grad!, v.grad!].map(async (t: Tensor) => Array.from(await t.data())));
  });
}

function expectClose(got: number[][], want: number[][], tol: number): void {
  got.forEach((g, n) => {
    const scale = Math.max(1, ...want[n].map(Math.abs));
    const worst = Math.max(...g.map((x, i) => Math.abs(x - want[n][i])));
    expect(worst / scale, `output ${['out', 'dq', 'dk', 'dv'][n]}`).toBeLessThan(tol);
  });
}

const saved = process.env.DAWNGRAD_ATTENTION;
afterEach(() => {
  if (saved === undefined) delete process.env.DAWNGRAD_ATTENTION;
  else process.env.DAWNGRAD_ATTENTION = saved;
});

describe('tiled attention', () => {
  for (const D of [16, 32, 64]) {
    it(`equals the row kernels and the cpu f64 reference, forward and gradients (D ${D}, T 70, GQA, causal and not)`, async () => {
      for (const causal of [true, false]) {
        const p: Problem = { B: 1, H: 4, Hkv: 2, Tq: 70, Tk: 70, D, causal };
        const [tiled, row, cpu] = [await run('tiled', p, D), await run('row', p, D), await run('cpu', p, D)];
        expectClose(tiled, cpu, 2e-4);
        expectClose(tiled, row, 2e-4);
      }
    });
  }

  it('Tq ≠ Tk with an additive mask, causal (queries are the last Tq positions)', async () => {
    const p: Problem = { B: 2, H: 2, Hkv: 1, Tq: 37, Tk: 101, D: 16, causal: true, mask: 'add' };
    const [tiled, cpu] = [await run('tiled', p, 5), await run('cpu', p, 5)];
    expectClose(tiled, cpu, 2e-4);
  });

  it('a boolean mask and a head dim that is not a multiple of 4 (scalar kernels), non-causal', async () => {
    const p: Problem = { B: 1, H: 2, Hkv: 2, Tq: 66, Tk: 45, D: 6, causal: false, mask: 'bool' };
    const [tiled, cpu] = [await run('tiled', p, 6), await run('cpu', p, 6)];
    expectClose(tiled, cpu, 2e-4);
  });

  it('dropout: the same seed drops the same probabilities as the row kernels and the cpu reference; another seed does not', async () => {
    const p: Problem = { B: 1, H: 2, Hkv: 2, Tq: 70, Tk: 70, D: 16, causal: true, dropoutP: 0.3 };
    const [tiled, row, cpu, again, other] = [await run('tiled', p, 7), await run('row', p, 7), await run('cpu', p, 7), await run('tiled', p, 7), await run('tiled', p, 8)];
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
