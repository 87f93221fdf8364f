// `npm run fuzz [-- programs]`: the differential fuzzer (testing/fuzz.ts) for longer than the suite runs it.
// Prints the seed; FC_SEED=<seed> reproduces a run. Exits non-zero with the shrunk program on a mismatch.
import fc from 'fast-check';
import '../index.js';
import { fuzzCompare, fuzzProgram } from '../testing/fuzz.js';

const programs = Number(process.argv[2] ?? 20_000);
if (!Number.isInteger(programs) || programs < 1) {
  console.error(`fuzz: the number of programs must be a positive integer, got '${process.argv[2]}'`);
  process.exit(2);
}
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31;
console.log(`fuzz: ${programs} programs, seed ${seed} (FC_SEED=${seed} reproduces this run)`);
let done = 0;
const t0 = performance.now();
const result = await fc.check(
  fc.asyncProperty(fuzzProgram(6), async (p) => {
    const problem = await fuzzCompare(p);
    if (++done % 1000 === 0) console.log(`  ${done} programs, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    if (problem) throw new Error(problem);
  }),
  { numRuns: programs, seed },
);
if (result.failed) {
  console.error(fc.defaultReportMessage(result));
  process.exit(1);
}
console.log(
  `fuzz: ${programs} programs agree (webgpu f32 vs cpu f64, values and gradients) in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
);
process.exit(0);
