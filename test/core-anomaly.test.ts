// Anomaly mode: the first op whose forward or backward produces NaN/Inf is named, with its input shapes
// (and, for backward, the forward op the gradient belongs to); off by default.
import { afterEach, describe, expect, it } from 'vitest';
import { gpuRuntime } from '../core/device.js';
import { AnomalyError, memory, scope, setDetectAnomaly, tensor } from '../index.js';

const devices = gpuRuntime() ? (['cpu', 'webgpu'] as const) : (['cpu'] as const);

afterEach(() => {
  setDetectAnomaly(false);
});

describe.each(devices)('anomaly mode on %s', (device) => {
  it('is off by default: NaN flows through silently', async () => {
    const values = (await scope(async () => tensor([-1, 4], { device }).log().sub(1).toArray())) as number[];
    expect(Number.isNaN(values[0])).toBe(true);
  });

  it('names the first forward op that produced NaN, and its input shapes', async () => {
    setDetectAnomaly(true);
    await scope(async () => {
      const x = tensor([[-1, 4, 9]], { device });
      const run = async () => {
        const y = x.sqrt().mul(2).sum(); // sqrt(-1) is the first NaN; mul and sum only propagate it
        return y.item();
      };
      const err = await run().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AnomalyError);
      expect((err as Error).message).toContain("forward of 'sqrt' (inputs [1, 3])");
    });
  });

  it('names the backward rule that produced Inf, and the forward op it belongs to', async () => {
    setDetectAnomaly(true);
    await scope(async () => {
      const x = tensor([0, 1], { device, requiresGrad: true });
      const y = x.sqrt().sum(); // finite forward; d sqrt(x)/dx = 1/(2 sqrt(x)) is Inf at 0
      const err = await y.backwardAsync().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AnomalyError);
      expect((err as Error).message).toContain("backward of 'sqrt' (the gradient for its input 0, shape [2])");
    });
  });

  it('passes finite programs and leaves no tensors behind', async () => {
    setDetectAnomaly(true);
    const before = memory().liveTensors;
    await scope(async () => {
      const x = tensor(
        [
          [1, 2],
          [3, 4],
        ],
        { device, requiresGrad: true },
      );
      const loss = x.exp().matmul(x).tanh().mean();
      await loss.backwardAsync();
      expect(await loss.item()).toBeGreaterThan(0);
      x.grad = null;
    });
    expect(memory().liveTensors).toBe(before);
  });
});

it('setDetectAnomaly rejects a non-boolean with a clear message', () => {
  expect(() => setDetectAnomaly('yes' as unknown as boolean)).toThrow(
    'setDetectAnomaly: on must be true or false, got string',
  );
});
