// The autograd engine: topological order on shared subgraphs, accumulation, retainGraph, freeing,
// noGrad/detach, and the functional grad/vjp transforms.
import { describe, expect, it } from 'vitest';
import { grad, memory, noGrad, scope, tensor, vjp, type Tensor } from '../index.js';
import { record } from '../core/autograd.js';

const devices = ['cpu', 'webgpu'] as const;
const f64 = { dtype: 'float64' as const, device: 'cpu' as const };

describe('autograd', () => {
  it('visits shared subgraphs once (x doubled 60 times gives 2^60 in linear time)', async () => {
    const x = tensor([1.5], { ...f64, requiresGrad: true });
    let y: Tensor = x;
    for (let i = 0; i < 60; i++) y = y.add(y);
    y.sum().backward();
    expect(await x.grad!.item()).toBe(2 ** 60);
  });

  it('accumulates into leaves across backward calls and through repeated use', async () => {
    const x = tensor([2, 3], { ...f64, requiresGrad: true });
    x.mul(x).sum().backward(); // 2x
    x.mul(3).sum().backward(); // + 3
    expect(await x.grad!.toArray()).toEqual([7, 9]);
  });

  for (const device of devices) {
    it(`retainGraph allows a second backward; without it the graph is freed (${device})`, async () => {
      const x = tensor([1, 2], { device, requiresGrad: true });
      const y = x.exp().sum();
      y.backward(undefined, { retainGraph: true });
      y.backward();
      const g = (await x.grad!.toArray()) as number[];
      expect(g[0]).toBeCloseTo(2 * Math.E, 5);
      expect(() => y.backward()).toThrow(/already freed.*retainGraph/);
    });
  }

  it('requires a gradient for non-scalar outputs, with the shape in the message', () => {
    const x = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { ...f64, requiresGrad: true },
    );
    expect(() => x.mul(2).backward()).toThrow(/backward.*scalar.*\[2, 2\]/);
    const y = x.mul(2);
    y.backward(
      tensor(
        [
          [1, 0],
          [0, 1],
        ],
        f64,
      ),
    );
  });

  it('noGrad and detach cut the graph', () => {
    const x = tensor([1], { ...f64, requiresGrad: true });
    expect(noGrad(() => x.mul(2)).requiresGrad).toBe(false);
    expect(x.detach().mul(2).requiresGrad).toBe(false);
    expect(x.mul(2).requiresGrad).toBe(true);
  });

  it('grad() returns gradients without touching .grad', async () => {
    const x = tensor([1, 2, 3], { ...f64, requiresGrad: true });
    const [g] = grad((a) => a.square().sum(), [x]);
    expect(await g.toArray()).toEqual([2, 4, 6]);
    expect(x.grad).toBeNull();
  });

  it('vjp pulls a cotangent back to inputs and closed-over params (zeros when unused)', async () => {
    const w = tensor([2, 3], { ...f64, requiresGrad: true });
    const unused = tensor([5], { ...f64, requiresGrad: true });
    const y = tensor([1, 1], f64);
    const r = vjp((a) => a.mul(w), [y], tensor([1, 10], f64), { params: [w, unused] });
    expect(await r.output.toArray()).toEqual([2, 3]);
    expect(await r.grads[0].toArray()).toEqual([2, 30]);
    expect(await r.paramGrads[0].toArray()).toEqual([1, 10]);
    expect(await r.paramGrads[1].toArray()).toEqual([0]);
    expect(w.grad).toBeNull();
  });

  it('vjp keeps the graphs it did not build: non-leaf params, what they came from, and closed-over tensors', async () => {
    const w = tensor([2, 3], { ...f64, requiresGrad: true });
    const p = w.exp(); // a non-leaf param (as a slice of a transferred copy is)
    const h = w.mul(w); // closed over, not a param
    const y = tensor([1, 1], f64);
    const close = async (t: Tensor, expected: number[]) =>
      ((await t.toArray()) as number[]).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
    // The graphs survive a first vjp, so the same params serve many (as the ODE adjoint's steps do).
    for (let k = 0; k < 3; k++) {
      const r = vjp((a) => a.mul(p).add(h), [y], tensor([1, 10], f64), { params: [p, w] });
      await close(r.grads[0], [Math.exp(2), 10 * Math.exp(3)]);
      await close(r.paramGrads[0], [1, 10]);
      // w's gradient is the total one (as torch.autograd.grad's): through p and through h.
      await close(r.paramGrads[1], [Math.exp(2) + 2 * 2, 10 * Math.exp(3) + 10 * 2 * 3]);
    }
    p.add(h).sum().backward();
    await close(w.grad!, [Math.exp(2) + 4, Math.exp(3) + 6]);
    // What lies below a captured param is not run: here an asynchronous rule a synchronous vjp could not run.
    const q = record('asyncCopy', w.detach().mul(1), [w], async (g) => [g]);
    const r = vjp((a) => a.mul(q), [y], tensor([1, 10], f64), { params: [q] });
    await close(r.paramGrads[0], [1, 10]);
  });

  it('frees saved activations after backward and everything at scope end', async () => {
    const x = tensor(
      Array.from({ length: 64 }, (_, i) => i / 64),
      { device: 'webgpu', requiresGrad: true },
    );
    await x.data();
    const before = memory();
    await scope(async () => {
      const loss = x.exp().mul(x.sin()).tanh().sum();
      loss.backward();
      await loss.item();
    });
    const after = memory();
    expect(after.liveTensors).toBe(before.liveTensors + 1); // x.grad
    expect(after.liveBuffers).toBe(before.liveBuffers + 1);
    x.grad = null;
    expect(memory().liveBuffers).toBe(before.liveBuffers);
  });

  it('dropping an output without backward releases its saved tensors', () => {
    const x = tensor([1, 2, 3], { ...f64, requiresGrad: true });
    const before = memory().liveBuffers;
    const y = x.exp();
    const z = y.sin();
    y.dispose();
    expect(memory().liveBuffers).toBeGreaterThan(before);
    z.dispose();
    expect(memory().liveBuffers).toBe(before);
  });
});
