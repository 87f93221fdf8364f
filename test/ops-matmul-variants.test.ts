// Every webgpu matmul kernel (vec4 and 4×4 register-tiled for CPU rasterisers, shared-memory tiled for
// GPUs) agrees with the cpu float64 reference across tile boundaries, transposed views and batch
// broadcasting; the vec4 kernel's operand load modes are each exercised and checked. Each variant is
// forced with withConfig, and variantUsage() shows it ran.
import { describe, expect, it } from 'vitest';
import { config, withConfig } from '../core/config.js';
import { chooseVariant, registeredKernels, variantUsage } from '../core/op.js';
import { manualSeed, randn, type Tensor } from '../index.js';
import { matmulVec4Plan, type OperandLoad } from '../ops/matmul/vec4.js';

const VARIANTS = registeredKernels()
  .get('matmul')!
  .webgpu.map((v) => v.name);

/** Runs fn with the matmul variant forced, and checks that variant ran. */
async function forcing(variant: string, fn: () => Promise<void>): Promise<void> {
  const before = variantUsage().get(`matmul:${variant}`) ?? 0;
  await withConfig({ variants: { ...config().variants, matmul: variant } }, fn);
  expect(variantUsage().get(`matmul:${variant}`)).toBeGreaterThan(before);
}

async function maxError(a: Tensor, b: Tensor): Promise<number> {
  const got = await a.matmul(b).data();
  const ref = await (
    await a.toAsync('cpu')
  )
    .astype('float64')
    .matmul((await b.toAsync('cpu')).astype('float64'))
    .data();
  let err = 0;
  ref.forEach((r, i) => {
    err = Math.max(err, Math.abs(got[i] - r) / (1 + Math.abs(r)));
  });
  return err;
}

describe.each(VARIANTS)('matmul kernel %s', (variant) => {
  it('matches the reference on ragged, transposed and batched shapes', () =>
    forcing(variant, async () => {
      manualSeed(3);
      expect(await maxError(randn([70, 33]), randn([33, 90]))).toBeLessThan(1e-5);
      expect(await maxError(randn([65, 17]).transpose(0, 1), randn([65, 129]))).toBeLessThan(1e-5);
      expect(await maxError(randn([3, 1, 20, 40]), randn([5, 40, 9]))).toBeLessThan(1e-5);
      expect(await maxError(randn([1, 1]), randn([1, 1]))).toBeLessThan(1e-6);
      expect(await maxError(randn([2, 130, 20]), randn([20, 260]))).toBeLessThan(1e-5); // several tiles in each direction
    }));
});

/** The vec4 kernel's plan for a 2-D product (no batch dims). */
function plan(a: Tensor, b: Tensor) {
  const out = {
    storage: a.storage,
    shape: [a.shape[0], b.shape[1]],
    strides: [b.shape[1], 1],
    offset: 0,
    dtype: a.dtype,
  };
  return matmulVec4Plan(a, b, out).config;
}

describe('vec4 matmul kernel', () => {
  const cases: [string, () => [Tensor, Tensor], OperandLoad, OperandLoad][] = [
    // A row-major (vec4 along k), B row-major (vec4 along n): the forward pass.
    ['row-major operands', () => [randn([20, 12]), randn([12, 36])], 'k4', 'x4'],
    // g·Wᵀ: B a transposed view, read as vec4s along k.
    ['B transposed (g·Wᵀ)', () => [randn([19, 16]), randn([40, 16]).transpose(0, 1)], 'k4', 'k4'],
    // Xᵀ·g: A a transposed view, read as vec4s along m; M = 12 clamps the last row block to rows 4..11.
    ['A transposed (Xᵀ·g)', () => [randn([24, 12]).transpose(0, 1), randn([24, 44])], 'x4', 'x4'],
    // Sizes that are not multiples of 4 fall back to element loads.
    ['ragged sizes', () => [randn([9, 7]), randn([7, 13])], 'scalar', 'scalar'],
    // An offset view (a slice starting at element 1) cannot be bound as vec4s either.
    ['offset views', () => [randn([9, 13]).slice(1, 1), randn([12, 9]).slice(1, 1)], 'scalar', 'scalar'],
  ];
  it.each(cases)('%s: chosen load modes match the reference', (_name, make, aLoad, bLoad) =>
    forcing('vec4', async () => {
      manualSeed(5);
      const [a, b] = make();
      expect(plan(a, b)).toMatchObject({ aLoad, bLoad });
      expect(await maxError(a, b)).toBeLessThan(1e-5);
    }),
  );

  it('handles skinny products (fewer rows per invocation), 1-D operands and broadcast batches', () =>
    forcing('vec4', async () => {
      manualSeed(6);
      for (const m of [1, 2, 3, 5]) expect(await maxError(randn([m, 16]), randn([16, 72]))).toBeLessThan(1e-5);
      expect(plan(randn([3, 8]), randn([8, 8])).rows).toBe(2);
      const v = randn([24]);
      const w = randn([24, 40]);
      const got = await v.matmul(w).data();
      const ref = await (
        await v.toAsync('cpu')
      )
        .astype('float64')
        .matmul((await w.toAsync('cpu')).astype('float64'))
        .data();
      got.forEach((x, i) => expect(Math.abs(x - ref[i])).toBeLessThan(1e-4 * (1 + Math.abs(ref[i]))));
      expect(await maxError(randn([2, 3, 16, 8]), randn([3, 8, 20]))).toBeLessThan(1e-5);
      expect(await maxError(randn([4, 16, 32]), randn([4, 24, 32]).transpose(-1, -2))).toBeLessThan(1e-5); // batched g·Wᵀ
    }));
});

describe('matmul variant choice', () => {
  const kernel = registeredKernels().get('matmul')!;
  const args = (batch: number) => {
    const m = randn([1, 8, 8], { dtype: 'float64', device: 'cpu' }).expand([batch, 8, 8]);
    return { a: m, b: m, out: m } as never;
  };

  it('is vec4 on a software adapter and shared on a hardware one; a batch past the workgroup limit fits none', async () => {
    expect(await withConfig({ profile: 'software' }, () => chooseVariant(kernel, args(2)).name)).toBe('vec4');
    expect(await withConfig({ profile: 'hardware' }, () => chooseVariant(kernel, args(2)).name)).toBe('shared');
    expect(() => chooseVariant(kernel, args(70000))).toThrow(/matmul: no webgpu variant fits these arguments/);
  });
});
