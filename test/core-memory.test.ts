// A training loop must not leak: constant live buffers/bytes and O(1) submits per iteration.
import { describe, expect, it } from 'vitest';
import { manualSeed, memory, noGrad, randn, scope } from '../index.js';

describe('memory and scheduling in a training loop', () => {
  it('200 MLP iterations on webgpu keep live buffers/bytes constant with O(1) submits', async () => {
    manualSeed(0);
    const device = 'webgpu';
    const { params, x, y } = scope(() => {
      const x = randn([32, 8], { device });
      return {
        params: [
          randn([8, 16], { device }).mul(0.3),
          randn([16], { device }).mul(0),
          randn([16, 1], { device }).mul(0.3),
          randn([1], { device }).mul(0),
        ],
        x,
        y: x.sum(1, true).sin(),
      };
    });
    params.forEach((p) => {
      p.requiresGrad = true;
    });
    const step = async () =>
      scope(async () => {
        const [w1, b1, w2, b2] = params;
        const pred = x.matmul(w1).add(b1).tanh().matmul(w2).add(b2);
        const loss = pred.sub(y).square().mean();
        loss.backward();
        noGrad(() => {
          for (const p of params) {
            p.copy_(p.sub(p.grad!.mul(0.1)));
            p.grad = null;
          }
        });
        return loss.item();
      });
    const first = await step();
    const base = memory();
    const counts: { buffers: number; bytes: number; tensors: number }[] = [];
    let last = first;
    for (let i = 0; i < 199; i++) {
      last = await step();
      const m = memory();
      counts.push({ buffers: m.liveBuffers, bytes: m.liveBytes, tensors: m.liveTensors });
    }
    const end = memory();
    for (const c of counts)
      expect(c).toEqual({ buffers: base.liveBuffers, bytes: base.liveBytes, tensors: base.liveTensors });
    const submitsPerIter = (end.submits - base.submits) / 199;
    const dispatchesPerIter = (end.dispatches - base.dispatches) / 199;
    console.log(
      `MLP iteration: ${dispatchesPerIter} dispatches, ${submitsPerIter} submits, ${(end.readbacks - base.readbacks) / 199} readbacks`,
    );
    expect(submitsPerIter).toBeLessThanOrEqual(1);
    expect(last).toBeLessThan(first);
  });
});

describe('buffer pool', () => {
  it('reuses freed buffers, and emptyCache returns them to the driver', async () => {
    const { emptyCache, zeros } = await import('../index.js');
    emptyCache();
    expect(memory().pooledBytes).toBe(0);
    scope(() => {
      zeros([1000]).add(1);
    });
    const pooled = memory().pooledBytes;
    expect(pooled).toBeGreaterThan(0); // the two freed buffers went to the pool
    const again = memory().liveBuffers;
    scope(() => {
      zeros([1000]).add(1);
    });
    expect(memory().pooledBytes).toBe(pooled); // same size classes came back from the pool
    expect(memory().liveBuffers).toBe(again);
    emptyCache();
    expect(memory().pooledBytes).toBe(0);
  });
});
