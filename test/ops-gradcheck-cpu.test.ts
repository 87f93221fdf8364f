// Every differentiable foundation op: analytic gradient (cpu, float64) vs central finite differences.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { scope, testing } from '../index.js';
import { makeInputs, OP_CASES } from './ops-cases.js';

let cases = 0;
describe('gradcheck on cpu float64 vs finite differences', () => {
  for (const op of OP_CASES) {
    it(op.name, () => {
      fc.assert(
        fc.property(op.inputs, ({ specs, params }) =>
          scope(() => {
            const report = testing.gradcheck(op.f(params), makeInputs(specs), op.cpu);
            cases++;
            expect(
              report.message,
              `shapes ${JSON.stringify(specs.map((s) => s.shape))} params ${JSON.stringify(params)}`,
            ).toBe('ok');
          }),
        ),
        testing.fcParams(100),
      );
    });
  }
  afterAll(() => console.log(`gradcheck cpu: ${OP_CASES.length} ops, ${cases} cases`));
});
