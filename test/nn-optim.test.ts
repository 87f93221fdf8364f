// Optimizers against plain-JS transcriptions of PyTorch's update rules (cpu float64, 1e-6 relative),
// webgpu float32 against cpu float64, parameter groups, state dicts, and multi-tensor dispatches that
// give bit for bit what one dispatch per parameter gives.
import { afterEach, describe, expect, it } from 'vitest';
import { deviceInfo, memory, nn, optim, tensor, type Tensor } from '../index.js';
import { variantUsage } from '../core/op.js';
import { setTensorsPerDispatchCap } from '../nn/optim/kernels.js';
import { values } from './nn-optim-helpers.js';

type Device = 'cpu' | 'webgpu';

interface Hyper {
  lr: number;
  weightDecay: number;
  [k: string]: unknown;
}

/** Reference rules, written from torch/optim/{sgd,adam,adamw,rmsprop}.py (single-tensor code paths). */
type RefState = Record<string, number[]> & { step?: number[] };
const REFERENCE: Record<string, (p: number[], g: number[], st: RefState, h: Hyper, step: number) => void> = {
  SGD(p, g, st, h) {
    const {
      lr,
      weightDecay: wd,
      momentum,
      dampening,
      nesterov,
    } = h as unknown as { lr: number; weightDecay: number; momentum: number; dampening: number; nesterov: boolean };
    for (let i = 0; i < p.length; i++) {
      let d = g[i] + wd * p[i];
      if (momentum !== 0) {
        if (!st.buf) st.buf = [];
        st.buf[i] = st.buf[i] === undefined ? d : momentum * st.buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * st.buf[i] : st.buf[i];
      }
      p[i] -= lr * d;
    }
  },
  Adam(p, g, st, h, t) {
    const [b1, b2] = h.betas as [number, number];
    const { lr, weightDecay: wd } = h;
    const eps = h.eps as number;
    st.m ??= new Array(p.length).fill(0);
    st.v ??= new Array(p.length).fill(0);
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + wd * p[i];
      st.m[i] += (gi - st.m[i]) * (1 - b1); // torch: exp_avg.lerp_(grad, 1 - beta1)
      st.v[i] = st.v[i] * b2 + (1 - b2) * gi * gi;
      const denom = Math.sqrt(st.v[i]) / Math.sqrt(1 - b2 ** t) + eps;
      p[i] -= (lr / (1 - b1 ** t)) * (st.m[i] / denom);
    }
  },
  AdamW(p, g, st, h, t) {
    // torch's AdamW: decoupled decay first, then Adam's update without an L2 term.
    for (let i = 0; i < p.length; i++) p[i] *= 1 - h.lr * h.weightDecay;
    REFERENCE.Adam(p, g, st, { ...h, weightDecay: 0 }, t);
  },
  RMSprop(p, g, st, h) {
    const { lr, weightDecay: wd } = h;
    const { alpha, eps, momentum, centered } = h as unknown as {
      alpha: number;
      eps: number;
      momentum: number;
      centered: boolean;
    };
    st.sq ??= new Array(p.length).fill(0);
    st.ga ??= new Array(p.length).fill(0);
    st.buf ??= new Array(p.length).fill(0);
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + wd * p[i];
      st.sq[i] = st.sq[i] * alpha + (1 - alpha) * gi * gi;
      let avg: number;
      if (centered) {
        st.ga[i] += (gi - st.ga[i]) * (1 - alpha);
        avg = Math.sqrt(st.sq[i] - st.ga[i] * st.ga[i]) + eps;
      } else avg = Math.sqrt(st.sq[i]) + eps;
      if (momentum > 0) {
        st.buf[i] = st.buf[i] * momentum + gi / avg;
        p[i] -= lr * st.buf[i];
      } else p[i] -= (lr * gi) / avg;
    }
  },
};

interface Case {
  name: string;
  kind: keyof typeof REFERENCE;
  hyper: Hyper;
  buffersPerParam: number;
}
const CASES: Case[] = [
  {
    name: 'SGD plain + wd',
    kind: 'SGD',
    hyper: { lr: 0.1, weightDecay: 0.01, momentum: 0, dampening: 0, nesterov: false },
    buffersPerParam: 2,
  },
  {
    name: 'SGD momentum + dampening',
    kind: 'SGD',
    hyper: { lr: 0.05, weightDecay: 0, momentum: 0.9, dampening: 0.1, nesterov: false },
    buffersPerParam: 3,
  },
  {
    name: 'SGD nesterov + wd',
    kind: 'SGD',
    hyper: { lr: 0.05, weightDecay: 0.02, momentum: 0.8, dampening: 0, nesterov: true },
    buffersPerParam: 3,
  },
  {
    name: 'Adam + L2',
    kind: 'Adam',
    hyper: { lr: 0.01, weightDecay: 0.1, betas: [0.9, 0.999], eps: 1e-8 },
    buffersPerParam: 4,
  },
  {
    name: 'AdamW',
    kind: 'AdamW',
    hyper: { lr: 0.01, weightDecay: 0.1, betas: [0.8, 0.99], eps: 1e-6 },
    buffersPerParam: 4,
  },
  {
    name: 'RMSprop',
    kind: 'RMSprop',
    hyper: { lr: 0.01, weightDecay: 0, alpha: 0.9, eps: 1e-8, momentum: 0, centered: false },
    buffersPerParam: 3,
  },
  {
    name: 'RMSprop centered + momentum + wd',
    kind: 'RMSprop',
    hyper: { lr: 0.01, weightDecay: 0.05, alpha: 0.95, eps: 1e-6, momentum: 0.5, centered: true },
    buffersPerParam: 5,
  },
];

function makeOptimizer(kind: string, params: Tensor[], hyper: Hyper): optim.Optimizer<optim.BaseHyper> {
  const h = hyper as never;
  switch (kind) {
    case 'SGD':
      return new optim.SGD(params, h);
    case 'Adam':
      return new optim.Adam(params, h);
    case 'AdamW':
      return new optim.AdamW(params, h);
    default:
      return new optim.RMSprop(params, h);
  }
}

const SHAPES = [[3, 4], [5], [2, 3, 2]];
const STEPS = 6;

/** Runs STEPS updates with fixed gradients; the learning rate changes every step (as a schedule would). */
async function run(device: Device, c: Case): Promise<{ params: number[][]; dispatches: number[]; readbacks: number }> {
  const dtype = device === 'cpu' ? 'float64' : 'float32';
  const params = SHAPES.map((s, k) =>
    tensor(
      Float64Array.from(
        values(
          s.reduce((a, b) => a * b, 1),
          10 + k,
        ),
      ),
      { shape: s, dtype, device, requiresGrad: true },
    ),
  );
  const opt = makeOptimizer(c.kind, params, c.hyper);
  const dispatches: number[] = [];
  const readbacks0 = memory().readbacks;
  for (let t = 1; t <= STEPS; t++) {
    opt.paramGroups[0].lr = c.hyper.lr * (1 + 0.1 * t);
    params.forEach((p, k) => {
      const g = tensor(Float64Array.from(values(p.size, 100 * t + k, 2)), { shape: p.shape, dtype, device });
      // The first gradient arrives as a strided (transposed) view, as a Linear weight's does.
      p.grad = k === 0 ? g.reshape([4, 3]).transpose(0, 1) : g;
    });
    const d0 = memory().dispatches;
    opt.step();
    dispatches.push(memory().dispatches - d0);
  }
  const readbacks = memory().readbacks - readbacks0;
  const out = await Promise.all(params.map(async (p) => Array.from(await p.data())));
  opt.dispose();
  params.forEach((p) => p.dispose());
  return { params: out, dispatches, readbacks };
}

function reference(c: Case): number[][] {
  const ps = SHAPES.map((s, k) =>
    values(
      s.reduce((a, b) => a * b, 1),
      10 + k,
    ),
  );
  const states: RefState[] = ps.map(() => ({}));
  for (let t = 1; t <= STEPS; t++) {
    const h = { ...c.hyper, lr: c.hyper.lr * (1 + 0.1 * t) };
    ps.forEach((p, k) => {
      let g = values(p.length, 100 * t + k, 2);
      if (k === 0) g = Array.from({ length: 12 }, (_, i) => g[(i % 4) * 3 + Math.floor(i / 4)]); // transpose of [4,3]
      REFERENCE[c.kind](p, g, states[k], h, t);
    });
  }
  return ps;
}

function maxRelError(actual: number[][], expected: number[][], floor: number): number {
  let worst = 0;
  actual.forEach((a, k) =>
    a.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(v - expected[k][i]) / Math.max(Math.abs(expected[k][i]), floor));
    }),
  );
  return worst;
}

describe('optimizers match the PyTorch update rules', () => {
  for (const c of CASES) {
    it(`${c.name}: cpu float64 within 1e-6 relative of the reference`, async () => {
      const { params } = await run('cpu', c);
      expect(maxRelError(params, reference(c), 1e-3)).toBeLessThan(1e-6);
    });
  }

  for (const c of CASES) {
    it(`${c.name}: webgpu float32 agrees with cpu float64, parameters share dispatches, no readback`, async () => {
      const gpu = await run('webgpu', c);
      const cpu = await run('cpu', c);
      expect(maxRelError(gpu.params, cpu.params, 1e-2)).toBeLessThan(2e-5);
      // One copy makes the transposed gradient contiguous; the updates take as many parameters per
      // dispatch as the adapter's storage bindings allow.
      const perDispatch = Math.floor(storageBindings() / c.buffersPerParam);
      expect(gpu.dispatches).toEqual(new Array(STEPS).fill(1 + Math.ceil(SHAPES.length / perDispatch)));
      expect(gpu.readbacks).toBe(0);
    });
  }
});

function storageBindings(): number {
  const info = deviceInfo();
  if (info.backend !== 'webgpu') throw new Error('these tests need the webgpu backend');
  return info.limits.maxStorageBuffersPerShaderStage;
}

describe('multi-tensor updates and clipping on webgpu', () => {
  afterEach(() => setTensorsPerDispatchCap(null));

  /** Sizes across workgroup boundaries (64), more parameters than any dispatch binds. */
  const SIZES = [1, 63, 64, 65, 200, 3, 130, 7, 64, 5, 17, 300, 2, 90, 11, 40, 1, 129, 33, 8, 70, 6];
  const STEPS_MT = 4;

  /**
   * STEPS_MT steps of `c` over SIZES in two groups (the second at a third of the rate), optionally
   * clipping first. Every third parameter's gradient is a strided view, every fourth a view at an
   * offset, and parameter 5 has no gradient at step 2 (so its step count, and its bias corrections,
   * differ from the others'). Returns parameters and state as f32 bits (or values on cpu).
   */
  async function train(device: Device, c: Case, clip: boolean): Promise<{ values: number[][]; dispatches: number[] }> {
    const dtype = device === 'cpu' ? 'float64' : 'float32';
    const params = SIZES.map((n, k) =>
      tensor(Float64Array.from(values(n, 7 + k)), { dtype, device, requiresGrad: true }),
    );
    const half = SIZES.length / 2;
    const opt = makeOptimizer(
      c.kind,
      [{ params: params.slice(0, half) }, { params: params.slice(half), lr: c.hyper.lr / 3 }] as never,
      c.hyper,
    );
    const dispatches: number[] = [];
    for (let t = 1; t <= STEPS_MT; t++) {
      params.forEach((p, k) => {
        const g = Float64Array.from(values(p.size, 1000 * t + k, 3));
        if (k === 5 && t === 2) p.grad = null;
        else if (k % 3 === 0)
          p.grad = tensor(Float64Array.from(Array.from(g).flatMap((v) => [v, -7])), { dtype, device }).slice(
            0,
            0,
            2 * p.size,
            2,
          );
        else if (k % 4 === 0) p.grad = tensor(Float64Array.from([9, ...g]), { dtype, device }).narrow(0, 1, p.size);
        else p.grad = tensor(g, { dtype, device });
      });
      const d0 = memory().dispatches;
      if (clip) optim.clipGradNorm(params, 0.5);
      opt.step();
      dispatches.push(memory().dispatches - d0);
    }
    const stateTensors = Object.values(opt.stateDict().state).flatMap((st) => Object.values(st.buffers));
    const snapshot = await Promise.all([...params, ...stateTensors].map(async (t) => Array.from(await t.data())));
    opt.dispose();
    params.forEach((p) => p.dispose());
    return { values: snapshot, dispatches };
  }

  for (const clip of [false, true]) {
    for (const c of CASES) {
      it(`${c.name}${clip ? ' after clipGradNorm' : ''}: bit-identical to one dispatch per parameter, close to cpu float64`, async () => {
        const fused = await train('webgpu', c, clip);
        setTensorsPerDispatchCap(1);
        const single = await train('webgpu', c, clip);
        setTensorsPerDispatchCap(null);
        expect(fused.values).toEqual(single.values);
        const cpu = await train('cpu', c, clip);
        expect(maxRelError(fused.values, cpu.values, 1e-2)).toBeLessThan(5e-5);
        // Fewer dispatches whenever two parameters' buffers fit in one dispatch's bindings.
        fused.dispatches.forEach((d, t) => expect(d).toBeLessThanOrEqual(single.dispatches[t]));
        if (storageBindings() >= 2 * c.buffersPerParam)
          expect(Math.max(...fused.dispatches)).toBeLessThan(Math.max(...single.dispatches));
      });
    }
  }

  it('dispatches per step: ceil(params / parameters per dispatch) updates whatever the groups, clipping in 2·ceil(large grads / chunk) + 1', () => {
    const n = 40;
    const params = Array.from({ length: n }, (_, k) => tensor(values(10 + k, k), { requiresGrad: true }));
    const opt = new optim.AdamW([{ params: params.slice(0, 30) }, { params: params.slice(30), weightDecay: 0 }]);
    params.forEach((p, k) => {
      p.grad = tensor(values(p.size, 50 + k));
    });
    let d0 = memory().dispatches;
    optim.clipGradNorm(params, 1);
    const clipDispatches = memory().dispatches - d0;
    d0 = memory().dispatches;
    opt.step();
    const stepDispatches = memory().dispatches - d0;
    // The groups' learning rates and weight decays are per parameter in the table: they share dispatches.
    const perDispatch = Math.floor(storageBindings() / 4);
    expect(stepDispatches).toBe(Math.ceil(40 / perDispatch));
    expect(variantUsage().get('optimizerStep:multiTensor')).toBeGreaterThan(0);
    expect(variantUsage().get('clipGradNorm:multiTensor')).toBeGreaterThan(0);
    // The finalise sums and scales the smallest gradients itself, as many as it binds next to its two
    // buffers (its uniforms hold 19); partial sums and scaling bind one gradient each next to one
    // shared buffer (their uniforms hold 30 and 15).
    const finalised = Math.min(storageBindings() - 2, 19);
    const chunk = Math.min(storageBindings() - 1, 15);
    expect(clipDispatches).toBe(2 * Math.ceil((n - finalised) / chunk) + 1);
    // As many gradients as the finalise and one dispatch bind: one partial-sum, one finalise, one scaling dispatch.
    d0 = memory().dispatches;
    optim.clipGradNorm(params.slice(0, finalised + chunk), 1);
    expect(memory().dispatches - d0).toBe(3);
    // Only small gradients: the finalise alone.
    d0 = memory().dispatches;
    optim.clipGradNorm(params.slice(0, finalised), 1);
    expect(memory().dispatches - d0).toBe(1);
    opt.dispose();
    params.forEach((p) => p.dispose());
  });
});

describe('optimizer mechanics', () => {
  it('parameter groups use their own lr and weightDecay', async () => {
    const a = tensor([1, 2, 3], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const b = tensor([4, 5], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const opt = new optim.SGD([{ params: [a] }, { params: [b], lr: 0.5, weightDecay: 0.1 }], { lr: 0.1 });
    a.grad = tensor([1, 1, 1], { dtype: 'float64', device: 'cpu' });
    b.grad = tensor([1, 1], { dtype: 'float64', device: 'cpu' });
    opt.step();
    expect(Array.from(await a.data())).toEqual([0.9, 1.9, 2.9]);
    const bv = Array.from(await b.data());
    [4, 5].forEach((v, i) => expect(bv[i]).toBeCloseTo(v - 0.5 * (1 + 0.1 * v), 12));
    expect(opt.paramGroups.map((g) => [g.lr, g.weightDecay])).toEqual([
      [0.1, 0],
      [0.5, 0.1],
    ]);
  });

  it('weightDecayGroups: decay on weights and embeddings, none on biases and norm gains, chosen by declared role', () => {
    const f64 = { device: 'cpu' as const, dtype: 'float64' as const };
    const net = new nn.Sequential(
      new nn.Embedding(5, 4, f64),
      new nn.LayerNorm(4, f64),
      new nn.Linear(4, 3, f64),
      new nn.RMSNorm(3, f64),
      new nn.Linear(3, 2, { ...f64, bias: false }),
    );
    const names = new Map(net.namedParameters().map(([n, p]) => [p, n]));
    const named = (groups: { params: Tensor[]; weightDecay: number }[]) =>
      groups.map((g) => [g.params.map((p) => names.get(p)), g.weightDecay]);
    expect(named(optim.weightDecayGroups(net, 0.1))).toEqual([
      [['0.weight', '2.weight', '4.weight'], 0.1],
      [['1.weight', '1.bias', '2.bias', '3.weight'], 0],
    ]);
    // Excluded parameters (another group's, or frozen) are in neither group; an empty group is left out.
    const matrices = [0, 2, 4].map((i) => net.at(i).parameters()[0]);
    expect(named(optim.weightDecayGroups(net, 0.1, { exclude: matrices }))).toEqual([
      [['1.weight', '1.bias', '2.bias', '3.weight'], 0],
    ]);
    expect(() => optim.weightDecayGroups(net, -1)).toThrow(/weightDecayGroups.*weightDecay/);
    const opt = new optim.AdamW(optim.weightDecayGroups(net, 0.1), { lr: 1e-3 });
    expect(opt.paramGroups.map((g) => g.weightDecay)).toEqual([0.1, 0]);
    net.dispose();
  });

  it('skips parameters without gradients and zeroGrad clears them', async () => {
    const a = tensor([1, 2], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const b = tensor([3, 4], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const opt = new optim.AdamW([a, b], { lr: 0.1 });
    a.grad = tensor([1, -1], { dtype: 'float64', device: 'cpu' });
    opt.step();
    expect(Array.from(await b.data())).toEqual([3, 4]);
    expect(opt.stateDict().state['1']).toBeUndefined();
    expect(opt.stateDict().state['0'].step).toBe(1);
    opt.zeroGrad();
    expect(a.grad).toBeNull();
  });

  it('stateDict / loadStateDict: a restored optimizer continues exactly like the original', async () => {
    for (const device of ['cpu', 'webgpu'] as Device[]) {
      const dtype = device === 'cpu' ? 'float64' : 'float32';
      const mk = () => tensor(Float64Array.from(values(6, 3)), { dtype, device, requiresGrad: true });
      const gradAt = (t: number) => tensor(Float64Array.from(values(6, 50 + t)), { dtype, device });
      const p1 = mk();
      const o1 = new optim.RMSprop([p1], { lr: 0.01, momentum: 0.9, centered: true });
      for (let t = 0; t < 3; t++) {
        p1.grad = gradAt(t);
        o1.step();
      }
      const p2 = tensor(await p1.data(), { dtype, device, requiresGrad: true });
      const o2 = new optim.RMSprop([p2], { lr: 0.5 });
      o2.loadStateDict(o1.stateDict());
      expect(o2.paramGroups[0].lr).toBe(0.01);
      expect(o2.paramGroups[0].centered).toBe(true);
      for (let t = 3; t < 6; t++) {
        p1.grad = gradAt(t);
        o1.step();
        p2.grad = gradAt(t);
        o2.step();
      }
      expect(Array.from(await p2.data())).toEqual(Array.from(await p1.data()));
    }
  });

  it('loadStateDict rejects mismatched groups or shapes and changes nothing', async () => {
    const p = tensor([1, 2, 3], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const opt = new optim.Adam([p], { lr: 0.1 });
    p.grad = tensor([1, 1, 1], { dtype: 'float64', device: 'cpu' });
    opt.step();
    const q = tensor([1, 2], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const other = new optim.Adam([q], { lr: 0.3 });
    expect(() => other.loadStateDict(opt.stateDict())).toThrow(/exp_avg' has shape \[3\], parameter has \[2\]/);
    expect(other.paramGroups[0].lr).toBe(0.3);
    const two = new optim.Adam([{ params: [q] }, { params: [] }]);
    expect(() => two.loadStateDict(opt.stateDict())).toThrow(/1 parameter groups, optimizer has 2/);
  });

  it('loadStateDict refuses state on a device read asynchronously for parameters elsewhere, and changes nothing', () => {
    const g = tensor([1, 2], { device: 'webgpu', requiresGrad: true });
    const onGpu = new optim.Adam([g], { lr: 0.1 });
    g.grad = tensor([1, 1], { device: 'webgpu' });
    onGpu.step();
    const c = tensor([1, 2], { dtype: 'float64', device: 'cpu', requiresGrad: true });
    const onCpu = new optim.Adam([c], { lr: 0.3 });
    expect(() => onCpu.loadStateDict(onGpu.stateDict())).toThrow(
      /state 'exp_avg' is on webgpu, which is read asynchronously, but the parameter is on cpu; load the state on cpu/,
    );
    expect(onCpu.paramGroups[0].lr).toBe(0.3);
    // The other way round is a synchronous upload.
    c.grad = tensor([1, 1], { dtype: 'float64', device: 'cpu' });
    onCpu.step();
    expect(() => onGpu.loadStateDict(onCpu.stateDict())).not.toThrow();
    [onGpu, onCpu].forEach((o) => o.dispose());
  });

  it('rejects invalid hyperparameters with the optimizer name', () => {
    const p = tensor([1], { requiresGrad: true, device: 'cpu' });
    expect(() => new optim.SGD([p], { lr: -1 })).toThrow('SGD: lr must be a finite number ≥ 0, got number -1');
    expect(() => new optim.SGD([p], { lr: 0.1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => new optim.Adam([p], { betas: [1, 0.9] })).toThrow(/Adam: betas/);
    expect(() => new optim.AdamW([p, p])).toThrow(/more than one place/);
  });
});
