// optim.GradScaler (dynamic loss scaling, as torch.cuda.amp.GradScaler): gradients through autocast,
// scaling and unscaling agree with the float64 reference; a power-of-two scale cancels exactly; an
// overflow skips the step (parameters and optimizer state untouched), backs the scale off, and the
// scale grows again after growthInterval clean steps; state dicts and their checks; the cost of a step.
import { describe, expect, it } from 'vitest';
import { autocast, functional as F, memory, nn, optim, tensor, type Tensor } from '../index.js';
import { kernelCounts } from './dispatch-helpers.js';
import { values } from './nn-optim-helpers.js';

type Device = 'cpu' | 'webgpu';

/** A small classifier: rmsNorm → linear → tanh → linear, cross-entropy over 6 rows of 4 classes. */
function classifier(device: Device, dtype: 'float32' | 'float64' = 'float32') {
  const opts = { device, dtype, requiresGrad: true } as const;
  const params = {
    gain: tensor(
      values(8, 1, 0.2).map((v) => 1 + v),
      opts,
    ),
    w1: tensor(values(12 * 8, 2, 0.4), { ...opts, shape: [12, 8] }),
    w2: tensor(values(4 * 12, 3, 0.4), { ...opts, shape: [4, 12] }),
  };
  const x = tensor(values(6 * 8, 4, 2), { device, dtype, shape: [6, 8] });
  const labels = tensor([0, 3, 1, 2, 2, 0], { device, dtype: 'int32' });
  const loss = () =>
    F.crossEntropy(
      nn.functional.linear(nn.functional.linear(F.rmsNorm(x, params.gain), params.w1).tanh(), params.w2),
      labels,
    );
  return { params: Object.values(params), loss };
}

const arrays = (ts: Tensor[]) => Promise.all(ts.map(async (t) => Array.from(await t.data())));

/** The optimizer's state buffers, in order, as arrays. */
const optimizerState = (opt: optim.AdamW) =>
  arrays(Object.values(opt.stateDict().state).flatMap((s) => Object.values(s.buffers)));

describe.each(['cpu', 'webgpu'] as const)('GradScaler on %s', (device) => {
  it('gradients through autocast, scale and unscale agree with the float64 reference gradients', async () => {
    const ref = classifier('cpu', 'float64');
    await ref.loss().backwardAsync();
    const want = await arrays(ref.params.map((p) => p.grad!));

    const { params, loss } = classifier(device);
    const opt = new optim.AdamW(params);
    const scaler = new optim.GradScaler();
    const scaledLoss = await autocast('float16', () => loss());
    expect(scaledLoss.dtype).toBe('float32'); // cross-entropy runs in float32 under autocast
    await scaler.scale(scaledLoss).backwardAsync();
    scaler.unscale(opt);
    const got = await arrays(params.map((p) => p.grad!));
    params.forEach((p) => expect(p.grad!.dtype).toBe('float32'));
    // float16 keeps 11 significant bits (unit roundoff u = 2^-11 ≈ 4.9e-4); the matmuls' inputs are rounded
    // to it and the chain back to each weight is ~4 ops deep, each adding a few u of relative error. 1e-2
    // (20 u) relative, plus 1e-2 of the tensor's largest gradient for entries that cancel toward zero.
    want.forEach((w, k) => {
      const scale = Math.max(...w.map(Math.abs));
      got[k].forEach((g, i) =>
        expect(Math.abs(g - w[i]), `param ${k}[${i}]`).toBeLessThan(1e-2 * (scale + Math.abs(w[i]))),
      );
    });
  });

  it('a power-of-two scale cancels exactly', async () => {
    const gradsAt = async (initScale: number) => {
      const { params, loss } = classifier(device);
      const scaler = new optim.GradScaler({ initScale });
      await scaler.scale(loss()).backwardAsync();
      scaler.unscale(new optim.SGD(params));
      return arrays(params.map((p) => p.grad!));
    };
    expect(await gradsAt(2 ** 16)).toEqual(await gradsAt(1));
    expect(await gradsAt(2 ** -4)).toEqual(await gradsAt(1));
  });

  it('skips a step whose gradients overflow (parameters and state untouched), backs off, then grows and trains on', async () => {
    const { params, loss } = classifier(device);
    const opt = new optim.AdamW(params, { lr: 0.05 });
    const scaler = new optim.GradScaler({ initScale: 2 ** 10, growthInterval: 3 });
    const step = async (inject = false) => {
      const value = await autocast('float16', () => loss());
      await scaler.scale(value).backwardAsync();
      if (inject) params[1].grad = params[1].grad!.add(tensor([Infinity], { device }).reshape([]));
      const applied = await scaler.step(opt);
      scaler.update();
      opt.zeroGrad();
      return { applied, loss: await value.item() };
    };
    const first = await step();
    expect(first.applied).toBe(true);
    const before = { params: await arrays(params), state: await optimizerState(opt) };
    expect(await step(true)).toMatchObject({ applied: false });
    expect(await arrays(params)).toEqual(before.params);
    expect(await optimizerState(opt)).toEqual(before.state);
    expect(Object.values(opt.stateDict().state).map((s) => s.step)).toEqual([1, 1, 1]);
    expect(scaler.getScale()).toBe(2 ** 9);
    expect(scaler.skippedSteps).toBe(1);
    // Three clean steps: the scale grows back; training goes on.
    const losses = [];
    for (let i = 0; i < 3; i++) {
      const s = await step();
      expect(s.applied).toBe(true);
      losses.push(s.loss);
      expect(scaler.getScale()).toBe(i < 2 ? 2 ** 9 : 2 ** 10);
    }
    expect(losses[2]).toBeLessThan(first.loss);
    expect(scaler.stateDict()).toMatchObject({ scale: 2 ** 10, growthTracker: 0, skippedSteps: 1 });
  });

  it('a scale too large for float16 backs off on its own until the steps go through', async () => {
    const { params, loss } = classifier(device);
    const opt = new optim.AdamW(params);
    const scaler = new optim.GradScaler({ initScale: 2 ** 40 }); // 2^40 × a gradient overflows float16
    let applied = false;
    for (let i = 0; i < 40 && !applied; i++) {
      await scaler.scale(await autocast('float16', () => loss())).backwardAsync();
      applied = await scaler.step(opt);
      scaler.update();
      opt.zeroGrad();
    }
    expect(applied).toBe(true);
    expect(scaler.skippedSteps).toBeGreaterThan(0);
    expect(scaler.getScale()).toBe(2 ** (40 - scaler.skippedSteps));
  });
});

describe('GradScaler API', () => {
  it('disabled: passes through (scale 1, the optimizer always steps, update does nothing)', async () => {
    const { params, loss } = classifier('cpu');
    const opt = new optim.SGD(params, { lr: 0.1 });
    const scaler = new optim.GradScaler({ enabled: false });
    const value = loss();
    expect(scaler.scale(value)).toBe(value);
    await value.backwardAsync();
    params[0].grad = params[0].grad!.add(Infinity);
    expect(await scaler.step(opt)).toBe(true);
    scaler.update();
    expect(scaler.getScale()).toBe(1);
  });

  it('a float16 loss is scaled in float32 (a float16 product would overflow past 65504)', async () => {
    const scaled = new optim.GradScaler().scale(tensor([3], { dtype: 'float16' }).reshape([]));
    expect(scaled.dtype).toBe('float32');
    expect(await scaled.item()).toBe(3 * 2 ** 16);
  });

  it('state dicts round-trip and bad ones are refused with what to do, nothing changed', () => {
    const a = new optim.GradScaler({ initScale: 256, growthInterval: 10 });
    a.loadStateDict({ ...a.stateDict(), scale: 64, growthTracker: 7, skippedSteps: 3 });
    const b = new optim.GradScaler({ growthInterval: 10 });
    b.loadStateDict(a.stateDict());
    expect(b.stateDict()).toEqual({
      enabled: true,
      scale: 64,
      growthFactor: 2,
      backoffFactor: 0.5,
      growthInterval: 10,
      growthTracker: 7,
      skippedSteps: 3,
    });
    const good = b.stateDict();
    const cases: [unknown, RegExp][] = [
      [null, /GradScaler\.loadStateDict: state must be an object/],
      [{ ...good, scale: 0 }, /state\.scale must be a finite number > 0, got number 0/],
      [{ ...good, scale: Infinity }, /state\.scale must be a finite number/],
      [{ ...good, growthTracker: 10 }, /growthTracker must be < growthInterval 10, got 10/],
      [{ ...good, growthTracker: 1.5 }, /growthTracker must be an integer/],
      [
        { ...good, growthInterval: 2000 },
        /state's growthInterval is number 2000, this scaler's is 10; make the scaler with the options/,
      ],
      [{ ...good, enabled: false }, /enabled = boolean false, this one has enabled = true/],
    ];
    for (const [state, message] of cases)
      expect(() => b.loadStateDict(state as optim.GradScalerState)).toThrow(message);
    expect(b.stateDict()).toEqual(good);
  });

  it('bad options and out-of-order calls get clear errors', async () => {
    expect(() => new optim.GradScaler({ initScale: -1 })).toThrow(/GradScaler: initScale must be a finite number > 0/);
    expect(() => new optim.GradScaler({ growthFactor: 1 })).toThrow(/growthFactor must be a finite number > 1/);
    expect(() => new optim.GradScaler({ backoffFactor: 1 })).toThrow(/backoffFactor must be < 1, got 1/);
    expect(() => new optim.GradScaler({ growthInterval: 0.5 })).toThrow(/growthInterval must be an integer ≥ 1/);
    const scaler = new optim.GradScaler();
    expect(() => scaler.scale([1] as never)).toThrow(/GradScaler\.scale: loss must be a Tensor/);
    expect(() => scaler.unscale({} as never)).toThrow(/GradScaler\.unscale: optimizer must be an optimizer/);
    expect(() => scaler.update()).toThrow(/GradScaler\.update: no optimizer was stepped .* call await scaler\.step/);
    const { params, loss } = classifier('cpu');
    const opt = new optim.AdamW(params);
    await scaler.scale(loss()).backwardAsync();
    scaler.unscale(opt);
    expect(() => scaler.unscale(opt)).toThrow(
      /unscale\(\) was already called for this AdamW since the last update\(\)/,
    );
    await scaler.step(opt);
    await expect(scaler.step(opt)).rejects.toThrow(/step\(\) was already called for this AdamW .* call update\(\)/);
    scaler.update();
    const half = tensor([1, 2], { dtype: 'float16', requiresGrad: true });
    half.grad = tensor([1, 1], { dtype: 'float16' });
    expect(() => scaler.unscale(new optim.SGD([half]))).toThrow(
      /parameter 0 of the SGD has a float16 gradient; keep the parameters in float32 \(master weights\)/,
    );
  });
});

describe('the cost of a scaled step on webgpu', () => {
  it('one unscale dispatch for all gradients, the optimizer still one dispatch, one 4-byte readback', async () => {
    const { params, loss } = classifier('webgpu');
    const opt = new optim.AdamW(params);
    const scaler = new optim.GradScaler();
    await scaler.scale(loss()).backwardAsync();
    const readbacks = memory().readbacks;
    const counts = await kernelCounts(async () => {
      scaler.unscale(opt);
      optim.clipGradNorm(params, 1);
      await scaler.step(opt);
    });
    expect(memory().readbacks - readbacks).toBe(1);
    expect(counts.get('optim.unscale')).toBe(1);
    expect(counts.get('optim.adam')).toBe(1);
    scaler.update();
  });
});
