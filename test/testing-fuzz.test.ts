// Differential fuzzing (testing/fuzz.ts): random programs agree on webgpu f32 and the cpu f64 reference,
// values and gradients. `npm run fuzz` runs many more.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpuRuntime } from '../core/device.js';
import { fuzzCompare, fuzzMismatch, fuzzProgram, runFuzzProgram } from '../testing/fuzz.js';
import { fcParams } from '../testing/arbitraries.js';

const PROGRAMS = 1000;

describe.runIf(gpuRuntime())('differential fuzzing', () => {
  it(`${PROGRAMS} random programs: webgpu float32 agrees with cpu float64, values and gradients`, async () => {
    await fc.assert(
      fc.asyncProperty(fuzzProgram(), async (p) => {
        const problem = await fuzzCompare(p);
        if (problem) throw new Error(problem);
      }),
      fcParams(PROGRAMS),
    );
  }, 600_000);
});

it('the comparison catches a wrong result (a perturbed gradient fails it)', async () => {
  const p = {
    shape: [2, 3],
    seed: 5,
    steps: [
      { op: 'layerNorm' as const, seed: 1 },
      { op: 'matmul' as const, seed: 2 },
    ],
  };
  const ref = await runFuzzProgram(p, 'cpu');
  expect(ref.trace).toEqual(['layerNorm→[2,3]', expect.stringMatching(/^matmul→\[2,\d\]$/)]);
  expect(fuzzMismatch(ref.grads[0], ref.grads[0])).toBe(0);
  const off = ref.grads[0].map((g, i) => (i === 3 ? g + 0.05 : g));
  expect(fuzzMismatch(off, ref.grads[0], 5e-3, 5e-4)).toBeGreaterThan(1);
});
