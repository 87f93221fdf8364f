// scatterAdd with one 1-D index broadcast over the other dims (an embedding's gradient) runs a kernel
// that scans the index once per target row: it must agree with the float64 cpu backend and with the
// per-element kernel, across index chunks, repeats, odd column counts and strided operands.
import { describe, expect, it } from 'vitest';
import { memory, randint, randn, manualSeed, noGrad, tensor, type Tensor } from '../index.js';
import { gpuBackend } from '../core/device.js';

const closeTo = async (a: Tensor, b: Tensor, tol = 1e-5) => {
  const [fx, fy] = [Array.from(await a.data()), Array.from(await b.data())];
  expect(fx.length).toBe(fy.length);
  fx.forEach((v, i) => expect(Math.abs(v - fy[i])).toBeLessThanOrEqual(tol * (1 + Math.abs(fy[i]))));
};

describe('scatterAdd with a broadcast 1-D index (index add)', async () => {
  it('an embedding gradient (vocab 300, 200 repeated ids, 70 columns) matches the cpu backend in one dispatch', async () => {
    manualSeed(7);
    const ids = randint(0, 37, [200], { device: 'cpu' }); // few distinct ids: many repeats, hits in every chunk
    const g = randn([200, 70], { device: 'cpu', dtype: 'float64' });
    const want = noGrad(() =>
      tensor(new Float64Array(300 * 70), { device: 'cpu', dtype: 'float64', shape: [300, 70] }).scatterAdd(
        0,
        ids.reshape([200, 1]).expand([200, 70]),
        g,
      ),
    );
    const gw = g.to('webgpu').astype('float32'),
      idw = ids.to('webgpu');
    const before = memory().dispatches;
    const got = noGrad(() => gw.fullLike(0, [300, 70]).scatterAdd(0, idw.reshape([200, 1]).expand([200, 70]), gw));
    const used = memory().dispatches - before;
    await closeTo(got, want);
    expect(used).toBeLessThanOrEqual(3); // zeros, copy into the result, one scatter
  });

  it('agrees with the per-element kernel on a source with strided rows, and with the cpu on a middle axis', async () => {
    manualSeed(8);
    const onGpu = (t: Tensor) => t.to('webgpu').astype('float32');
    const ids = randint(0, 9, [130], { device: 'cpu' });
    // Rows of src 30 floats apart: the scanning kernel reads them in place.
    const x64 = randn([9, 15], { device: 'cpu', dtype: 'float64' });
    const big64 = randn([260, 15], { device: 'cpu', dtype: 'float64' });
    const src64 = big64.slice(0, 0, 260, 2);
    const x = onGpu(x64),
      srcStrided = onGpu(big64).slice(0, 0, 260, 2);
    const broadcast = ids.to('webgpu').reshape([130, 1]).expand([130, 15]);
    const fast = x.scatterAdd(0, broadcast, srcStrided);
    const general = x.scatterAdd(0, broadcast.contiguous(), srcStrided); // a dense index: the per-element kernel
    await closeTo(fast, general);
    await closeTo(fast, x64.scatterAdd(0, ids.reshape([130, 1]).expand([130, 15]), src64));
    // A middle axis whose other dims do not collapse in src: the per-element kernel, same answer.
    const y64 = randn([3, 9, 5], { device: 'cpu', dtype: 'float64' });
    const s64 = randn([5, 130, 3], { device: 'cpu', dtype: 'float64' }).permute([2, 1, 0]);
    const middle = ids.reshape([1, 130, 1]).expand([3, 130, 5]);
    await closeTo(
      onGpu(y64).scatterAdd(1, middle.to('webgpu'), onGpu(s64.permute([2, 1, 0]).contiguous()).permute([2, 1, 0])),
      y64.scatterAdd(1, middle, s64),
    );
  });

  it('gives an embedding weight the cpu gradient through indexSelect', async () => {
    manualSeed(9);
    const w64 = randn([50, 33], { device: 'cpu', dtype: 'float64', requiresGrad: true });
    const ids = randint(0, 50, [150], { device: 'cpu' });
    w64.indexSelect(0, ids).square().sum().backward();
    const w = w64.detach().to('webgpu').astype('float32');
    w.requiresGrad = true;
    w.indexSelect(0, ids.to('webgpu')).square().sum().backward();
    await closeTo(w.grad!, w64.grad!, 1e-4);
  });

  it('into zeros ignores what the output held, in the scanning and the per-element kernel', async () => {
    manualSeed(10);
    const ids = randint(0, 6, [40], { device: 'cpu' }); // some of the 12 rows are never picked
    const src64 = randn([40, 5], { device: 'cpu', dtype: 'float64' });
    const want = noGrad(() =>
      tensor(new Float64Array(12 * 5), { device: 'cpu', dtype: 'float64', shape: [12, 5] }).scatterAdd(
        0,
        ids.reshape([40, 1]).expand([40, 5]),
        src64,
      ),
    );
    const src = src64.to('webgpu').astype('float32');
    for (const index of [
      ids.to('webgpu').reshape([40, 1]).expand([40, 5]),
      ids.to('webgpu').reshape([40, 1]).expand([40, 5]).contiguous(),
    ]) {
      const out = noGrad(() => src.fullLike(7, [12, 5])); // stale values the result must not keep
      gpuBackend()!.scatterAdd(out, 0, index, src, true);
      await closeTo(out, want);
    }
  });
});
