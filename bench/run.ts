// `npm run bench [-- --json [FILE]]`: dawngrad vs TensorFlow.js's WebGPU backend on the same Dawn
// instance and adapter, reported as ratios measured side by side in this run (never as absolute
// targets): per-op rows (bench/ops.ts), the decoder training step at the main job's size and a larger
// one, CLEX vs plain RoPE, and f16-mixed vs float32 (step time and peak GPU bytes) at the main job's size
// and, with BENCH_SIZE=large, at ~20M parameters (bench/decoder-rows.ts). --json also writes every row to FILE
// (default bench/results/bench-<time>.json).
// Environment: BENCH_REPS (op timings, default 10), BENCH_BLOCKS (timed blocks of 10 decoder steps,
// default 5; the larger decoder runs a fifth as many, at least one), BENCH_SIZE=large (larger op shapes, and the f16-mixed vs f32 row at ~20M parameters),
// BENCH_ONLY=regex (only the rows whose name matches).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { configure, deviceInfo } from '../index.js';
import {
  clexRow,
  decoderRow,
  formatClexRow,
  formatDecoderRow,
  formatPrecisionRow,
  precisionRow,
  type ClexRow,
  type DecoderRow,
  type PrecisionRow,
} from './decoder-rows.js';
import { describeShape, LARGE_DECODER, LOSS_EVERY, MAIN_JOB_DECODER, TWENTY_M_DECODER } from './decoder.js';
import { formatOpRow, opRows, type OpRow } from './ops.js';
import { bootTfjs } from './tfjs.js';

/** The --json [FILE] target, or null without --json; anything else on the command line is an error. */
function jsonPath(argv: string[]): string | null {
  const [flag, file, ...rest] = argv;
  if (flag === undefined) return null;
  if (flag !== '--json' || rest.length || file?.startsWith('--'))
    throw new Error(`bench: unexpected arguments '${argv.join(' ')}'; the only flag is --json [FILE]`);
  return file ?? `bench/results/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
}

function positiveIntegerEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`bench: ${name}=${raw} must be a positive integer`);
  return n;
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}

const out = jsonPath(process.argv.slice(2));
const reps = positiveIntegerEnv('BENCH_REPS', 10);
const blocks = positiveIntegerEnv('BENCH_BLOCKS', 5);
const large = process.env.BENCH_SIZE === 'large';
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : null;
const selected = (name: string) => !only || only.test(name);

// The bench measures what autotuning gives (its op rows also time the heuristics, alternately).
configure({ autotune: 'on' });
const tf = await bootTfjs();
const loadBefore = loadavg();
console.log(`adapter: ${JSON.stringify(deviceInfo())}\nload average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);
console.log(`ops: median of ${reps} runs, each ending in a readback; sizes: ${large ? 'large' : 'small'}`);
console.log(
  `decoder steps: median of ${blocks} blocks of ${LOSS_EVERY} steps (each block ends with a loss read; the compared trainers' blocks interleaved), after a few untimed steps\n`,
);

const ops = await opRows(tf, { reps, large, selected }, (row) => console.log(formatOpRow(row)));
const mlp = ops.find((r) => r.traffic);
if (mlp?.traffic) {
  const t = mlp.traffic;
  console.log(
    `\ndawngrad MLP training step: ${t.dispatches} dispatches, ${t.submits} submit(s), ${t.readbacks} readback(s), peak ${t.peakMiB.toFixed(2)} MiB live GPU memory`,
  );
}
const geomean = ops.length ? Math.exp(ops.reduce((s, r) => s + Math.log(r.speedup), 0) / ops.length) : null;
if (geomean !== null) console.log(`geometric-mean speedup of the op rows over tfjs-webgpu: ×${geomean.toFixed(2)}`);
if (ops.length) {
  const differing = ops.filter((r) => r.tunedDiffers);
  const slower = differing.filter((r) => r.oursMs > r.heuristicMs);
  console.log(
    `autotune: other variants than the heuristics on ${differing.length} of ${ops.length} op rows${differing.length ? `, slower than the heuristics on ${slower.length} of them${slower.length ? ` (${slower.map((r) => r.name).join(', ')})` : ''}` : ''}\n`,
  );
}

const decoders: (DecoderRow | ClexRow | PrecisionRow)[] = [];
for (const [shape, n] of [
  [MAIN_JOB_DECODER, blocks],
  [LARGE_DECODER, Math.max(1, Math.floor(blocks / 5))],
] as const) {
  if (!selected(`decoder step ${describeShape(shape)}`)) continue;
  const row = await decoderRow(tf, shape, n);
  decoders.push(row);
  console.log(formatDecoderRow(row));
}
if (selected(`CLEX vs plain ${describeShape(MAIN_JOB_DECODER)}`)) {
  const row = await clexRow(MAIN_JOB_DECODER, blocks);
  decoders.push(row);
  console.log(formatClexRow(row));
}

// The ~20M row takes tens of seconds a step on a software adapter: with BENCH_SIZE=large only.
for (const [shape, n] of [[MAIN_JOB_DECODER, blocks] as const, ...(large ? [[TWENTY_M_DECODER, 1] as const] : [])]) {
  if (!selected(`f16-mixed vs f32 ${describeShape(shape)}`)) continue;
  const row = await precisionRow(shape, n);
  decoders.push(row);
  console.log(formatPrecisionRow(row));
}

if (out) {
  const rows: (OpRow | DecoderRow | ClexRow | PrecisionRow)[] = [...ops, ...decoders];
  const report = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    adapter: deviceInfo(),
    loadAverage: { before: loadBefore, after: loadavg() },
    reps,
    blocks,
    opSizes: large ? 'large' : 'small',
    only: only?.source ?? null,
    geomeanOpSpeedup: geomean,
    rows,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
}
process.exit(0);
