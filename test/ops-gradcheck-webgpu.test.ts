// Every differentiable foundation op: webgpu float32 forward and gradients vs the cpu float64 reference.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { testing } from '../index.js';
import { makeInputs, OP_CASES } from './ops-cases.js';

let cases = 0;
describe('webgpu float32 vs cpu float64', () => {
  for (const op of OP_CASES) {
    it(op.name, async () => {
      await fc.assert(
        fc.asyncProperty(op.inputs, async ({ specs, params }) => {
          const inputs = makeInputs(specs);
          const report = await testing.gradcheckDevices(op.f(params), inputs, op.gpu);
          inputs.forEach((t) => t.dispose());
          cases++;
          expect(
            report.message,
            `shapes ${JSON.stringify(specs.map((s) => s.shape))} params ${JSON.stringify(params)}`,
          ).toBe('ok');
        }),
        testing.fcParams(50),
      );
    });
  }
  afterAll(() => console.log(`gradcheck webgpu: ${OP_CASES.length} ops, ${cases} cases`));
});
