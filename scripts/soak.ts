// `npm run soak [-- steps]`: a long training run (default 1,000 steps) of the train script's trainer on the
// default device; fails unless live GPU buffers and bytes stay constant from step 3 on.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { readMetrics } from '../examples/lib/metrics.js';
import { train } from '../examples/lib/trainer.js';
import { getDefaultDevice } from '../index.js';

const steps = Number(process.argv[2] ?? 1000);
if (!Number.isInteger(steps) || steps < 10) {
  console.error(`soak: steps must be an integer ≥ 10, got '${process.argv[2]}'`);
  process.exit(2);
}
const out = 'out/soak';
rmSync(out, { recursive: true, force: true });
await train({
  model: 'llama',
  layers: 2,
  hidden: 64,
  heads: 4,
  rope: 'none',
  ropeFactor: 8,
  maxFactor: 8,
  clexMethod: 'dopri5',
  clexGradient: 'backprop',
  clexFreezeOde: false,
  data: 'builtin',
  valFraction: 0.1,
  batchSize: 8,
  gradAccum: 1,
  steps,
  lr: 3e-3,
  minLr: 3e-4,
  warmup: 20,
  weightDecay: 0.01,
  clip: 1,
  seed: 1,
  device: getDefaultDevice(),
  out,
  saveEvery: 250,
  evalEvery: 0,
  logEvery: 10,
  evalTokens: 4096,
  resume: false,
});
const records = readMetrics(join(out, 'metrics.jsonl')).filter((r) => r.step >= 30);
const buffers = new Set(records.map((r) => r.live_buffers));
const bytes = new Set(records.map((r) => r.live_bytes));
console.log(
  `soak: ${steps} steps; live buffers ${[...buffers].join(', ')}; live bytes ${[...bytes].join(', ')} (steps 30–${steps})`,
);
if (buffers.size !== 1 || bytes.size !== 1) {
  console.error('soak: live memory changed during the run');
  process.exit(1);
}
process.exit(0);
