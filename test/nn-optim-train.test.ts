// Acceptance: a small MLP trained with AdamW + cosine schedule (warm-up) + gradient clipping on a toy
// regression reaches the documented loss on both backends, and the backends agree.
// Documented threshold: evaluation MSE < 0.05 after 300 steps (it starts near 0.67; about 0.022 is typical).
import { describe, expect, it } from 'vitest';
import { memory } from '../index.js';
import { evalLoss, makeTrainer, type Device } from './fixtures/train-mlp.js';

const STEPS = 300;
const THRESHOLD = 0.05;

describe('training an MLP with AdamW + cosine + clipping', () => {
  const finals: Partial<Record<Device, number>> = {};
  for (const device of ['cpu', 'webgpu'] as Device[]) {
    it(`${device}: evaluation MSE drops below ${THRESHOLD} with constant memory`, async () => {
      const trainer = makeTrainer(device, STEPS);
      const initial = await evalLoss(trainer.model, device);
      expect(initial).toBeGreaterThan(0.3);
      let live = 0;
      for (let i = 0; i < STEPS; i++) {
        await trainer.step();
        if (i === 10) live = memory().liveTensors;
      }
      expect(memory().liveTensors).toBe(live);
      const final = await evalLoss(trainer.model, device);
      finals[device] = final;
      expect(final).toBeLessThan(THRESHOLD);
      trainer.optimizer.dispose();
      trainer.model.dispose();
    });
  }

  it('webgpu float32 and cpu float64 training end at nearly the same loss', () => {
    expect(finals.cpu).toBeDefined();
    expect(finals.webgpu).toBeDefined();
    expect(Math.abs(finals.cpu! - finals.webgpu!)).toBeLessThan(0.05 * finals.cpu!);
  });
});
