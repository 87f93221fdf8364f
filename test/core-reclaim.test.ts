// Bounded GPU memory without scopes: a training loop written the PyTorch way (no scope, no dispose)
// keeps live GPU bytes under the threshold plus one step's working set.
import { afterAll, describe, expect, it } from 'vitest';
import { gpuRuntime } from '../core/device.js';
import { gcThreshold, memory, nn, optim, randn, resetPeak, scope, setGcThreshold } from '../index.js';

const STEPS = 2000;
const previous = gcThreshold();
afterAll(() => setGcThreshold(previous));

describe.runIf(gpuRuntime())('bounded memory without scopes', () => {
  it(`${STEPS} MLP steps without scope or dispose stay under the threshold plus one step's working set`, async () => {
    const model = new nn.Sequential(new nn.Linear(32, 256), new nn.Tanh(), new nn.Linear(256, 1));
    const opt = new optim.Adam(model.parameters(), { lr: 1e-3 });
    const x = randn([128, 32]);
    const y = x.sum(1, true).sin();
    const step = () => {
      const loss = model.call(x).sub(y).square().mean();
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss;
    };
    // One step's working set, measured the exact way (in a scope).
    await scope(async () => {
      await step().item();
    });
    resetPeak();
    const base = memory().liveBytes;
    await scope(async () => {
      await step().item();
    });
    const workingSet = memory().peakBytes - base;

    const threshold = base + 8 * 2 ** 20;
    setGcThreshold(threshold);
    const reclaims0 = memory().gcReclaims;
    let maxLive = 0;
    let last = Infinity;
    for (let s = 0; s < STEPS; s++) {
      const loss = step(); // PyTorch style: nothing is disposed, the loss is logged every step
      maxLive = Math.max(maxLive, memory().liveBytes);
      last = await loss.item();
    }
    expect(Number.isFinite(last)).toBe(true);
    expect(memory().gcReclaims).toBeGreaterThan(reclaims0); // the collector was prompted, not lucky
    expect(maxLive).toBeLessThanOrEqual(threshold + workingSet);
    console.log(
      `without scopes: max live ${(maxLive / 2 ** 20).toFixed(2)} MiB over ${STEPS} steps (threshold ${(threshold / 2 ** 20).toFixed(2)} MiB, working set ${(workingSet / 2 ** 20).toFixed(2)} MiB, ${memory().gcReclaims - reclaims0} forced collections)`,
    );
  }, 240_000);
});

it('setGcThreshold rejects a bad value with a clear message', () => {
  expect(() => setGcThreshold(-1)).toThrow(
    'setGcThreshold(bytes): bytes must be a number ≥ 0 (0 turns it off), got -1',
  );
  expect(() => setGcThreshold(Number('12MB'))).toThrow('got NaN');
});
