// Both webgpu matmul kernels (register-tiled for CPU rasterisers, shared-memory tiled for GPUs) agree
// with the cpu float64 reference across tile boundaries, transposed views and batch broadcasting.
import { afterAll, describe, expect, it } from 'vitest';
import { manualSeed, randn, type Tensor } from '../index.js';
import { setMatmulVariant, type MatmulVariant } from '../ops/matmul/index.js';

afterAll(() => setMatmulVariant(null));

async function maxError(a: Tensor, b: Tensor): Promise<number> {
  const got = await a.matmul(b).data();
  const ref = await (await a.toAsync('cpu')).astype('float64').matmul((await b.toAsync('cpu')).astype('float64')).data();
  let err = 0;
  ref.forEach((r, i) => { err = Math.max(err, Math.abs(got[i] - r) / (1 + Math.abs(r))); });
  return err;
}

describe.each(['register', 'shared'] as MatmulVariant[])('matmul kernel %s', (variant) => {
  it('matches the reference on ragged, transposed and batched shapes', async () => {
    setMatmulVariant(variant);
    manualSeed(3);
    expect(await maxError(randn([70, 33]), randn([33, 90]))).toBeLessThan(1e-5);
    expect(await maxError(randn([65, 17]).transpose(0, 1), randn([65, 129]))).toBeLessThan(1e-5);
    expect(await maxError(randn([3, 1, 20, 40]), randn([5, 40, 9]))).toBeLessThan(1e-5);
    expect(await maxError(randn([1, 1]), randn([1, 1]))).toBeLessThan(1e-6);
    expect(await maxError(randn([2, 130, 20]), randn([20, 260]))).toBeLessThan(1e-5); // several tiles in each direction
  });
});
