// The elementwise table is wired end to end: every row's kernel agrees with its float64 reference on
// both backends (inputs from the row's own ranges, within the row's tolerance), and every
// differentiable row is in the gradient-check suites. A new row is picked up from the table itself.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { testing } from '../index.js';
import { ELEMENTWISE, elementwiseOp, type EwRow } from '../ops/elementwise/index.js';
import { makeInputs, OP_CASES, rowInputs } from './ops-cases.js';

const rows: EwRow[] = Object.values(ELEMENTWISE);

describe('elementwise table', () => {
  it('puts every differentiable row in the gradient-check suites, with its tolerances', () => {
    for (const row of rows.filter((r) => r.grad !== 'none')) {
      const c = OP_CASES.find((op) => op.name === row.name);
      expect(c, row.name).toBeDefined();
      expect(c?.cpu).toEqual(row.check.cpu);
      expect(c?.gpu).toEqual(row.check.gpu);
    }
  });

  it('declares arity matching its WGSL expression and reference', () => {
    for (const row of rows) {
      expect(
        row.js.length === 0 || row.js.length === row.arity,
        `${row.name}: js takes ${row.js.length} arguments`,
      ).toBe(true);
      const args = Array.from({ length: row.arity }, (_, i) => `a${i}`);
      const expr = row.wgsl(args, 'f32');
      for (const a of args) expect(expr, row.name).toContain(a);
    }
  });

  for (const row of rows) {
    it(`${row.name}: cpu equals the reference, webgpu agrees within tolerance`, async () => {
      await fc.assert(
        fc.asyncProperty(rowInputs(row), async (specs) => {
          const inputs = makeInputs(specs);
          const y = elementwiseOp(row.name, inputs);
          const got = await y.data();
          const values = await Promise.all(inputs.map((t) => t.data()));
          // Reference by hand: broadcast each operand's flat values to the output's shape.
          const index = (shape: readonly number[], flat: number) => {
            let off = 0,
              stride = 1,
              rem = flat;
            for (let d = y.rank - 1; d >= 0; d--) {
              const c = rem % y.shape[d];
              rem = Math.floor(rem / y.shape[d]);
              const sd = d - (y.rank - shape.length);
              if (sd >= 0) {
                if (shape[sd] !== 1) off += c * stride;
                stride *= shape[sd];
              }
            }
            return off;
          };
          got.forEach((v, i) => {
            const expected = row.js(...inputs.map((t, k) => values[k][index(t.shape, i)]));
            expect(Object.is(v, expected) || v === expected, `${row.name} element ${i}: ${v} vs ${expected}`).toBe(
              true,
            );
          });
          const report = await testing.gradcheckDevices((...xs) => elementwiseOp(row.name, xs), inputs, {
            ...row.check.gpu,
            ...(row.grad === 'none' ? { wrt: [] } : {}),
          });
          [y, ...inputs].forEach((t) => t.dispose());
          expect(report.message, `shapes ${JSON.stringify(specs.map((s) => s.shape))}`).toBe('ok');
        }),
        testing.fcParams(8),
      );
    });
  }
});
