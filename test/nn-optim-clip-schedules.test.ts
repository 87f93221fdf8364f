// clipGradNorm (device-side scaling, norm as a tensor, no readback) and the learning-rate schedules.
import { describe, expect, it } from 'vitest';
import { memory, optim, tensor, type Tensor } from '../index.js';

type Device = 'cpu' | 'webgpu';

const GRADS = [
  [
    [3, 0, 1],
    [0.5, -2, 1],
  ],
  [[4, -1]],
];

function setup(device: Device): { params: Tensor[]; flat: number[] } {
  const dtype = device === 'cpu' ? 'float64' : 'float32';
  const params = GRADS.map((g) =>
    tensor(
      g.map((r) => r.map(() => 0)),
      { dtype, device, requiresGrad: true },
    ),
  );
  params.forEach((p, k) => {
    p.grad = tensor(GRADS[k], { dtype, device });
  });
  // The first gradient becomes a transposed view of a [3, 2] tensor, like a Linear weight's.
  const t = tensor(
    [
      [3, 0.5],
      [0, -2],
      [1, 1],
    ],
    { dtype, device },
  );
  params[0].grad = t.transpose(0, 1);
  t.dispose();
  return { params, flat: GRADS.flat(2) };
}

describe('clipGradNorm', () => {
  for (const device of ['cpu', 'webgpu'] as Device[]) {
    for (const maxNorm of [1, 100]) {
      it(`${device}: scales by min(maxNorm/(norm+1e-6), 1) (maxNorm ${maxNorm}) and returns the norm`, async () => {
        const { params, flat } = setup(device);
        const norm = Math.sqrt(flat.reduce((s, v) => s + v * v, 0));
        const coef = Math.min(maxNorm / (norm + 1e-6), 1);
        const readbacks = memory().readbacks;
        const dispatches = memory().dispatches;
        const total = optim.clipGradNorm(params, maxNorm);
        if (device === 'webgpu') {
          expect(memory().readbacks).toBe(readbacks);
          // A copy makes the transposed gradient contiguous; then the finalise sums and scales both small
          // gradients itself (an adapter binds at least 8 storage buffers): no partial-sum or scaling pass.
          expect(memory().dispatches - dispatches).toBe(1 + 1);
        }
        expect(total.shape).toEqual([]);
        const tol = device === 'cpu' ? 1e-12 : 1e-6;
        expect(Math.abs((await total.item()) - norm)).toBeLessThan(tol * norm);
        const clipped = (await Promise.all(params.map(async (p) => Array.from(await p.grad!.data())))).flat();
        clipped.forEach((v, i) => expect(Math.abs(v - flat[i] * coef)).toBeLessThan(tol * 10));
      });
    }
  }

  it('never scales memory the gradient shares with another tensor', async () => {
    const p = tensor([0, 0], { device: 'webgpu', requiresGrad: true });
    const q = tensor([0, 0], { device: 'webgpu', requiresGrad: true });
    const shared = tensor([3, 4], { device: 'webgpu' });
    p.grad = shared.reshape([2]); // a second view of shared's storage
    q.grad = tensor([0, 0], { device: 'webgpu' });
    const norm = optim.clipGradNorm([p, q], 1);
    expect(await norm.item()).toBeCloseTo(5, 5);
    expect(Array.from(await shared.data())).toEqual([3, 4]);
    const g = Array.from(await p.grad!.data());
    expect(g[0]).toBeCloseTo(0.6, 5);
    expect(g[1]).toBeCloseTo(0.8, 5);
  });

  /** Parameters whose gradients are the given tensors. */
  const withGrads = (device: Device, grads: Tensor[]) =>
    grads.map((g) => {
      const p = tensor(new Array<number>(g.size).fill(0), { device, requiresGrad: true });
      p.grad = g;
      return p;
    });
  const values = async (params: Tensor[]) => Promise.all(params.map(async (p) => Array.from(await p.grad!.data())));

  for (const device of ['cpu', 'webgpu'] as Device[]) {
    it(`${device}: scales gradients that tile one buffer nothing else holds in place, without copies (q/k/v's slices)`, async () => {
      const joint = tensor([3, 0, 4, 1, 2, 2], { device });
      const parts = joint.split([2, 1, 3]);
      joint.dispose(); // the parts are now the buffer's only holders
      const params = withGrads(device, parts);
      const dispatches = memory().dispatches;
      const norm = optim.clipGradNorm(params, 1);
      // One view over the whole buffer, small enough for the finalise to sum and scale itself.
      if (device === 'webgpu') expect(memory().dispatches - dispatches).toBe(1);
      params.forEach((p, i) => expect(p.grad).toBe(parts[i]));
      const n = Math.sqrt(9 + 16 + 1 + 4 + 4);
      expect(await norm.item()).toBeCloseTo(n, 5);
      expect((await values(params)).flat()).toEqual([3, 0, 4, 1, 2, 2].map((v) => expect.closeTo(v / n, 5)));
    });

    it(`${device}: copies windows whose buffer is held elsewhere too, or that overlap, or one tensor on two parameters`, async () => {
      // Held elsewhere: the joint tensor keeps its values.
      const joint = tensor([3, 4, 12], { device });
      const held = withGrads(device, joint.split([2, 1]));
      expect(await optim.clipGradNorm(held, 1).item()).toBeCloseTo(13, 4);
      expect(Array.from(await joint.data())).toEqual([3, 4, 12]);
      expect((await values(held)).flat()).toEqual([3, 4, 12].map((v) => expect.closeTo(v / 13, 5)));
      // Overlapping windows, their only holders: each is scaled once (in place, the middle would be twice).
      const base = tensor([3, 4, 12], { device });
      const overlapping = withGrads(device, [base.narrow(0, 0, 2), base.narrow(0, 1, 2)]);
      base.dispose();
      const n2 = Math.sqrt(9 + 16 + 16 + 144);
      expect(await optim.clipGradNorm(overlapping, 1).item()).toBeCloseTo(n2, 4);
      expect(await values(overlapping)).toEqual(
        [
          [3, 4],
          [4, 12],
        ].map((r) => r.map((v) => expect.closeTo(v / n2, 5))),
      );
      // One tensor on two parameters (its only holder): each parameter gets its own scaled copy.
      const g = tensor([3, 4], { device });
      const twice = withGrads(device, [g, g]);
      const n3 = 5 * Math.SQRT2;
      expect(await optim.clipGradNorm(twice, 1).item()).toBeCloseTo(n3, 4);
      expect(twice[0].grad).not.toBe(twice[1].grad);
      expect(await values(twice)).toEqual(
        [
          [3, 4],
          [3, 4],
        ].map((r) => r.map((v) => expect.closeTo(v / n3, 5))),
      );
    });
  }

  it('skips parameters without gradients and rejects mixed devices', async () => {
    const a = tensor([1], { device: 'cpu', requiresGrad: true });
    expect(await optim.clipGradNorm([a], 1).item()).toBe(0);
    const b = tensor([1], { device: 'webgpu', requiresGrad: true });
    a.grad = tensor([1], { device: 'cpu' });
    b.grad = tensor([1], { device: 'webgpu' });
    expect(() => optim.clipGradNorm([a, b], 1)).toThrow(/different devices/);
  });
});

describe('clipGradNormGroups', () => {
  /** Gradients of sizes across the finalise's limit (the largest go through the partial-sum and scaling passes). */
  const SIZES = [20000, 18000, 70, 9000, 130, 17000, 5];
  const gradValues = (n: number, k: number) =>
    Float64Array.from({ length: n }, (_, i) => Math.sin(0.37 * i + k) * (k + 1));

  /** Three groups: the even-indexed parameters, the odd ones, one without gradients. */
  async function clip(device: Device, maxNorm: number) {
    const dtype = device === 'cpu' ? 'float64' : 'float32';
    const params = SIZES.map((n, k) => {
      const p = tensor(new Float64Array(n), { device, dtype, requiresGrad: true });
      p.grad = tensor(gradValues(n, k), { device, dtype });
      return p;
    });
    const idle = tensor([0, 0], { device, dtype, requiresGrad: true });
    const groups = [params.filter((_, k) => k % 2 === 0), params.filter((_, k) => k % 2 === 1), [idle]];
    const d0 = memory().dispatches;
    const norms = optim.clipGradNormGroups(groups, maxNorm);
    const dispatches = memory().dispatches - d0;
    return {
      norms: await Promise.all(norms.map((n) => n.item())),
      grads: await Promise.all(params.map(async (p) => Array.from(await p.grad!.data()))),
      dispatches,
    };
  }

  it('clips each group to its own norm, as separate clipGradNorm calls would (cpu float64, webgpu float32), in 3 dispatches on webgpu', async () => {
    for (const maxNorm of [1, 1e6]) {
      const expected = [0, 1].map((parity) => {
        const gs = SIZES.flatMap((n, k) => (k % 2 === parity ? [gradValues(n, k)] : []));
        const norm = Math.sqrt(gs.reduce((s, g) => s + g.reduce((a, v) => a + v * v, 0), 0));
        return { norm, coef: Math.min(maxNorm / (norm + 1e-6), 1) };
      });
      for (const device of ['cpu', 'webgpu'] as Device[]) {
        const got = await clip(device, maxNorm);
        const tol = device === 'cpu' ? 1e-12 : 2e-6;
        expect(got.norms[2]).toBe(0);
        got.norms
          .slice(0, 2)
          .forEach((n, g) => expect(Math.abs(n - expected[g].norm)).toBeLessThan(tol * expected[g].norm));
        got.grads.forEach((g, k) => {
          const want = gradValues(SIZES[k], k).map((v) => v * expected[k % 2].coef);
          g.forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(tol * (k + 1) * 10));
        });
        // Partial sums of the large gradients, the finalise (both norms; it also scales the small ones), the scaling.
        if (device === 'webgpu') expect(got.dispatches).toBe(3);
      }
    }
  });

  it('rejects a parameter in two groups, and a bad maxNorm', () => {
    const a = tensor([1], { device: 'cpu', requiresGrad: true });
    a.grad = tensor([1], { device: 'cpu' });
    expect(() => optim.clipGradNormGroups([[a], [a]], 1)).toThrow(
      /clipGradNormGroups: a parameter appears in more than one group/,
    );
    expect(() => optim.clipGradNormGroups([[a]], -1)).toThrow(/clipGradNormGroups: maxNorm must be >= 0/);
  });
});

describe('learning-rate schedules', () => {
  const opt = () =>
    new optim.SGD(
      [
        { params: [tensor([1], { device: 'cpu', requiresGrad: true })] },
        { params: [tensor([1], { device: 'cpu', requiresGrad: true })], lr: 0.5 },
      ],
      { lr: 1 },
    );
  const trace = (s: optim.LRScheduler, n: number) =>
    Array.from({ length: n }, () => {
      const lr = s.getLr();
      s.step();
      return lr;
    });

  it('constant keeps the base rates', () => {
    expect(trace(optim.lr.constant(opt()), 3)).toEqual([
      [1, 0.5],
      [1, 0.5],
      [1, 0.5],
    ]);
  });

  it('linearWarmup ramps from 0 and (with totalSteps) decays linearly to 0', () => {
    expect(trace(optim.lr.linearWarmup(opt(), { warmupSteps: 4 }), 6).map(([a]) => a)).toEqual([
      0, 0.25, 0.5, 0.75, 1, 1,
    ]);
    expect(trace(optim.lr.linearWarmup(opt(), { warmupSteps: 2, totalSteps: 6 }), 8).map(([a]) => a)).toEqual([
      0, 0.5, 1, 0.75, 0.5, 0.25, 0, 0,
    ]);
  });

  it('cosineWithWarmup follows the HF formula (to a floor with minLrRatio)', () => {
    const lrs = trace(optim.lr.cosineWithWarmup(opt(), { warmupSteps: 2, totalSteps: 10 }), 12);
    lrs.forEach(([a, b], s) => {
      const expected = s < 2 ? s / 2 : 0.5 * (1 + Math.cos(Math.PI * Math.min(1, (s - 2) / 8)));
      expect(a).toBeCloseTo(expected, 14);
      expect(b).toBeCloseTo(0.5 * expected, 14);
    });
    const floored = trace(optim.lr.cosineWithWarmup(opt(), { warmupSteps: 0, totalSteps: 4, minLrRatio: 0.1 }), 6).map(
      ([a]) => a,
    );
    expect(floored[0]).toBeCloseTo(1, 14);
    expect(floored[2]).toBeCloseTo(0.1 + 0.9 * 0.5, 14);
    expect(floored[5]).toBeCloseTo(0.1, 14);
  });

  it('step decays by gamma every stepSize steps', () => {
    expect(trace(optim.lr.step(opt(), { stepSize: 2, gamma: 0.5 }), 5).map(([a]) => a)).toEqual([1, 1, 0.5, 0.5, 0.25]);
  });

  it('a restored scheduler continues with identical rates', () => {
    const o1 = opt();
    const s1 = optim.lr.cosineWithWarmup(o1, { warmupSteps: 3, totalSteps: 20 });
    for (let i = 0; i < 7; i++) s1.step();
    const o2 = opt();
    const s2 = optim.lr.cosineWithWarmup(o2, { warmupSteps: 3, totalSteps: 20 });
    s2.loadStateDict(JSON.parse(JSON.stringify(s1.stateDict())));
    expect(s2.getLr()).toEqual(s1.getLr());
    expect(trace(s2, 5)).toEqual(trace(s1, 5));
    expect(() => optim.lr.constant(opt()).loadStateDict(s1.stateDict())).toThrow(
      /'cosineWithWarmup' schedule, this one is 'constant'/,
    );
  });
});
