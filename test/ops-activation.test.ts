// gelu (tanh approximation), swiglu, dropout and embedding: definitions, gradient checks on both
// backends, dropout reproducibility and agreement between backends, embedding range errors.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { variantUsage } from '../core/op.js';
import { functional as F, manualSeed, memory, ones, randint, randn, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const cpu64 = (values: number[], shape: number[]): Tensor => tensor(Float64Array.from(values), { ...f64, shape });
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);

describe('gelu / swiglu', () => {
  it('gelu tanh approximation equals its formula; exact gelu is the default', async () => {
    const x = cpu64([-6, -1.5, -0.2, 0, 0.3, 1, 4], [7]);
    const c = Math.sqrt(2 / Math.PI);
    const formula = x.mul(0.5).mul(x.add(x.pow(3).mul(0.044715)).mul(c).tanh().add(1));
    expect(Array.from(await F.gelu(x, { approximate: 'tanh' }).data())).toEqual(
      Array.from(await formula.data()).map((v) => expect.closeTo(v, 12)),
    );
    expect(Array.from(await F.gelu(x).data())).toEqual(Array.from(await x.gelu().data()));
    expect(() => F.gelu(x, { approximate: 'erf' as 'tanh' })).toThrow(/gelu: approximate/);
  });

  it('gradcheck of gelu(tanh), silu and swiglu (broadcasting) on cpu f64 and webgpu vs cpu', async () => {
    await fc.assert(
      fc.asyncProperty(
        testing.broadcastPairArb({ maxRank: 3 }),
        fc.integer({ min: 0, max: 1000 }),
        async ([sa, sb], seed) => {
          manualSeed(seed);
          const a = randn(sa, f64).mul(2),
            b = randn(sb, f64);
          expectOk(testing.gradcheck((x) => F.gelu(x, { approximate: 'tanh' }), [a]));
          expectOk(testing.gradcheck((x, y) => F.swiglu(x, y), [a, b]));
          expectOk(testing.gradcheck((x) => F.silu(x), [a]));
          expectOk(await testing.gradcheckDevices((x) => F.gelu(x, { approximate: 'tanh' }), [a]));
          expectOk(await testing.gradcheckDevices((x, y) => F.swiglu(x, y), [a, b]));
        },
      ),
      testing.fcParams(10),
    );
  });

  it('swiglu gradients read gate and up through strides (halves of one joint projection, a transpose) and agree with cpu f64, one or both requested', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 1000 }),
        async (T, F2, seed) => {
          manualSeed(seed);
          const joint = randn([2, T, 2 * F2], f64).mul(2),
            other = randn([2, F2, T], f64);
          const halves = (j: Tensor) => [j.narrow(2, 0, F2), j.narrow(2, F2, F2)];
          const fromJoint = (j: Tensor) => F.swiglu(...(halves(j) as [Tensor, Tensor]));
          const transposedGate = (g: Tensor, u: Tensor) => F.swiglu(g.transpose(1, 2), u);
          const [gate, up] = halves(joint).map((h) => h.contiguous());
          // A constant operand, made on the device and dtype of the differentiated one.
          const [gateValues, upValues] = [Array.from(await gate.data()), Array.from(await up.data())];
          const constant = (values: number[], like: Tensor) =>
            tensor(values, { device: like.device, dtype: like.dtype, shape: like.shape });
          for (const [f, inputs] of [
            [fromJoint, [joint]],
            [transposedGate, [other, up]],
            [(g: Tensor) => F.swiglu(g, constant(upValues, g)), [gate]],
            [(u: Tensor) => F.swiglu(constant(gateValues, u), u), [up]],
          ] as [(...xs: Tensor[]) => Tensor, Tensor[]][]) {
            expectOk(testing.gradcheck(f, inputs));
            expectOk(await testing.gradcheckDevices(f, inputs));
          }
        },
      ),
      testing.fcParams(6),
    );
  });

  it('swiglu backward is one dispatch on webgpu, writing both gradients (one when only one is needed)', async () => {
    manualSeed(7);
    const backwardDispatches = async (gateNeedsGrad: boolean, upNeedsGrad: boolean) => {
      const joint = randn([2, 3, 8]);
      const [gate, up] = [joint.narrow(2, 0, 4).detach(), joint.narrow(2, 4, 4).detach()];
      gate.requiresGrad = gateNeedsGrad;
      up.requiresGrad = upNeedsGrad;
      const y = F.swiglu(gate, up),
        g = randn([2, 3, 4]);
      await g.data();
      const before = memory().dispatches;
      y.backward(g);
      await (gateNeedsGrad ? gate : up).grad!.data();
      return memory().dispatches - before;
    };
    const runs = () => variantUsage().get('swigluBackward:strided') ?? 0;
    const before = runs();
    expect(await backwardDispatches(true, true)).toBe(1);
    expect(await backwardDispatches(true, false)).toBe(1);
    expect(await backwardDispatches(false, true)).toBe(1);
    expect(runs()).toBe(before + 3);
  });

  it('swiglu equals silu(gate) · up and stays finite for large |gate| (webgpu)', async () => {
    const gate = tensor([-100, -3, 0, 2, 100]);
    const up = tensor([1, 2, 3, 4, 5]);
    const got = await F.swiglu(gate, up).data();
    const want = await gate.silu().mul(up).data();
    expect(Array.from(got)).toEqual(Array.from(want).map((v) => expect.closeTo(v, 5)));
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
  });
});

describe('dropout', () => {
  it('is reproducible after manualSeed, agrees between cpu and webgpu, and keeps ≈ 1 − p scaled by 1/(1 − p)', async () => {
    const run = async (device: 'cpu' | 'webgpu', seed: number) => {
      manualSeed(seed);
      return F.dropout(ones([20000], { device }), 0.3).data();
    };
    const gpuRuns = variantUsage().get('dropout:item') ?? 0;
    const [a, b, c, g] = [await run('cpu', 5), await run('cpu', 5), await run('cpu', 6), await run('webgpu', 5)];
    expect(variantUsage().get('dropout:item')).toBe(gpuRuns + 1);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(Array.from(c)).not.toEqual(Array.from(a));
    expect(Array.from(g)).toEqual(Array.from(a));
    const kept = Array.from(a).filter((v) => v !== 0);
    expect(kept.length / a.length).toBeGreaterThan(0.68);
    expect(kept.length / a.length).toBeLessThan(0.72);
    expect(new Set(kept)).toEqual(new Set([Math.fround(1 / 0.7)]));
  });

  it('backward uses the forward mask; identity when not training or p = 0; zeros at p = 1', async () => {
    for (const device of ['cpu', 'webgpu'] as const) {
      manualSeed(11);
      const x = randn([50], { device, requiresGrad: true });
      const y = F.dropout(x, 0.5);
      y.sum().backward();
      const [yv, xv, gv] = [await y.data(), await x.data(), await x.grad!.data()];
      for (let i = 0; i < 50; i++) {
        expect(gv[i]).toBe(yv[i] === 0 && xv[i] !== 0 ? 0 : 2);
      }
      expect(F.dropout(x, 0.5, false)).toBe(x);
      expect(F.dropout(x, 0)).toBe(x);
      expect(Array.from(await F.dropout(x, 1).data()).every((v) => v === 0)).toBe(true);
    }
    expect(() => F.dropout(randn([2], f64), 1.5)).toThrow(/dropout: p must be in \[0, 1\]/);
  });

  it('gradcheck on random shapes and rates (the seed is fixed inside f so every evaluation uses one mask)', async () => {
    await fc.assert(
      fc.asyncProperty(
        testing.tensorDataArb({ minRank: 1, maxRank: 3 }),
        fc.double({ min: 0.05, max: 0.9, noNaN: true }),
        async ({ shape, values }, p) => {
          const x = cpu64(values, shape);
          const f = (a: Tensor) => {
            manualSeed(2);
            return F.dropout(a.rank > 1 ? a.transpose(0, -1) : a, p);
          };
          expectOk(testing.gradcheck(f, [x]));
          expectOk(await testing.gradcheckDevices(f, [x]));
        },
      ),
      testing.fcParams(10),
    );
  });
});

describe('embedding', () => {
  it('looks up rows for ids of any shape, with a deterministic scatter-add backward', async () => {
    manualSeed(12);
    const w = randn([10, 3], f64);
    const ids = tensor(
      [
        [1, 4, 1],
        [9, 0, 4],
      ],
      { dtype: 'int32', device: 'cpu' },
    );
    const y = F.embedding(ids, w);
    expect(y.shape).toEqual([2, 3, 3]);
    const rows = (await w.toArray()) as number[][];
    expect(await y.toArray()).toEqual([
      [rows[1], rows[4], rows[1]],
      [rows[9], rows[0], rows[4]],
    ]);
    expectOk(testing.gradcheck((ww, i) => F.embedding(i, ww), [w, randint(0, 10, [2, 2, 3], { device: 'cpu' })]));
    expectOk(await testing.gradcheckDevices((ww, i) => F.embedding(i, ww), [w, ids]));
  });

  it('gradcheck on random tables and id shapes (repeated ids accumulate)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        testing.shapeArb({ minRank: 1, maxRank: 3 }),
        fc.integer({ min: 0, max: 1000 }),
        async (V, D, idShape, seed) => {
          manualSeed(seed);
          const w = randn([V, D], f64),
            ids = randint(0, V, idShape, { device: 'cpu' });
          expectOk(testing.gradcheck((ww, i) => F.embedding(i, ww), [w, ids]));
          expectOk(await testing.gradcheckDevices((ww, i) => F.embedding(i, ww), [w, ids]));
        },
      ),
      testing.fcParams(10),
    );
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`rejects ids outside the table (${device})`, () => {
      const w = randn([5, 2], { device });
      expect(() => F.embedding(tensor([[0, 5]], { dtype: 'int32', device }), w)).toThrow(
        /embedding: ids \[1, 2\] reach outside the table of 5 rows/,
      );
      expect(() => F.embedding(tensor([-1], { dtype: 'int32', device }), w)).toThrow(/embedding/);
      expect(() => F.embedding(tensor([0], { device }), w)).toThrow(/embedding: ids must be int32/);
    });
  }
});

describe('functional namespace', () => {
  it('exposes the transformer ops and the existing activations as functions', async () => {
    const x = cpu64([-1, 0.5, 2], [3]);
    for (const name of ['relu', 'sigmoid', 'tanh', 'softplus', 'silu'] as const) {
      expect(Array.from(await F[name](x).data())).toEqual(Array.from(await x[name]().data()));
    }
    for (const name of [
      'softmax',
      'logSoftmax',
      'logsumexp',
      'crossEntropy',
      'layerNorm',
      'rmsNorm',
      'applyRotary',
      'scaledDotProductAttention',
      'gelu',
      'swiglu',
      'dropout',
      'embedding',
    ]) {
      expect(typeof (F as Record<string, unknown>)[name]).toBe('function');
    }
  });
});
