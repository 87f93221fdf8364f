// `npm run gpu-report [-- --out DIR] [--smoke] [--skip-tests] [--skip-bench]`: one command for a machine
// with a GPU. It writes DIR/report.json and DIR/report.md (default out/gpu-report) with the adapter and
// its features, the test suite's result, `npm run bench` against TF.js, the LLaMA training step at three
// sizes in float32 and f16-mixed precision (tokens/s, dispatches per step, peak GPU bytes, f16-mixed ÷
// f32 ratios), the kernel variants that ran, and the settings
// the automatic choices followed. --smoke runs the smallest sizes only (about a minute on lavapipe).
// The test suite and the bench run as child processes; the training steps run here, after them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import type { ClexRow, DecoderRow } from '../bench/decoder-rows.js';
import {
  DawngradDecoder,
  describeShape,
  LOSS_EVERY,
  MAIN_JOB_DECODER,
  timeTraining,
  TWENTY_M_DECODER,
} from '../bench/decoder.js';
import type { DecoderShape } from '../bench/decoder.js';
import { PRECISIONS, type Precision } from '../examples/lib/precision.js';
import type { PrecisionRow } from '../bench/decoder-rows.js';
import type { OpRow } from '../bench/ops.js';
import { tunedChoices } from '../core/autotune.js';
import { gpuRuntime } from '../core/device.js';
import { hardware, variantUsage } from '../core/op.js';
import { config, configure, deviceInfo, emptyCache, manualSeed, memory, resetPeak } from '../index.js';

const USAGE = 'usage: npm run gpu-report [-- --out DIR] [--smoke] [--skip-tests] [--skip-bench]';

interface Options {
  out: string;
  smoke: boolean;
  skipTests: boolean;
  skipBench: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { out: 'out/gpu-report', smoke: false, skipTests: false, skipBench: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--skip-tests') o.skipTests = true;
    else if (a === '--skip-bench') o.skipBench = true;
    else if (a === '--out' && argv[i + 1] && !argv[i + 1].startsWith('--')) o.out = argv[++i];
    else fail(`gpu-report: unexpected argument '${a}'${a === '--out' ? ' (--out needs a folder)' : ''}\n${USAGE}`);
  }
  return o;
}

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

/** One training size: the shape and how many blocks of LOSS_EVERY steps are timed. */
interface TrainingSize {
  label: string;
  shape: DecoderShape;
  blocks: number;
}

// Byte-level vocabulary like the main job; the intermediate size follows the trainer's 8/3 rule
// (bench/decoder.ts), so ~12·hidden² parameters per layer.
const SIZES: readonly TrainingSize[] = [
  { label: "main job's decoder", shape: MAIN_JOB_DECODER, blocks: 5 },
  { label: '~20M parameters', shape: TWENTY_M_DECODER, blocks: 2 },
  {
    label: '~100M parameters',
    shape: { layers: 8, hidden: 1024, heads: 16, batch: 4, seqLen: 512, vocab: 256 },
    blocks: 1,
  },
];
const SMOKE_SIZES: readonly TrainingSize[] = [{ ...SIZES[0], blocks: 1 }];

const opts = parseArgs(process.argv.slice(2));
// The report is where the autotuner's choices on a GPU are seen.
configure({ autotune: 'on' });
const started = performance.now();
const seconds = (since: number) => Math.round((performance.now() - since) / 100) / 10;

// --- adapter ----------------------------------------------------------------------------------------
const info = deviceInfo();
if (info.backend !== 'webgpu') {
  const why =
    config().device === 'cpu'
      ? 'DAWNGRAD_DEVICE=cpu is set; this report measures the GPU: unset it.'
      : `Dawn found no usable WebGPU adapter${'webgpuError' in info && info.webgpuError ? ` (${info.webgpuError})` : ''}. ` +
        "Install the GPU's Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver, or run `npm run setup` " +
        '(as root on Debian 12 it installs Mesa lavapipe, a CPU emulation); with several adapters, ' +
        'DAWNGRAD_ADAPTER=<name substring> and DAWNGRAD_BACKEND=vulkan|metal|d3d12 pick one (README, "Settings").';
  fail(`gpu-report: no WebGPU device. ${why}`);
}
const hw = hardware();
const adapter = {
  deviceInfo: info,
  hardware: { ...hw, features: [...hw.features].sort() },
  machine: {
    platform: `${platform()} ${release()}`,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverage: loadavg(),
  },
};
console.log(`gpu-report: ${info.adapter} (${info.vendor}, ${info.architecture || 'no architecture given'})`);
console.log(
  `  features: ${adapter.hardware.features.join(', ') || 'none'}; profile: ${hw.software ? 'software' : 'hardware'}`,
);
if (hw.software && !opts.smoke)
  console.log(
    '  this adapter is a CPU emulation: the ~20M and ~100M training steps take many minutes here (--smoke runs the smallest only)',
  );
mkdirSync(opts.out, { recursive: true });

/** A part of the report: what it measured, or why it has nothing. */
type Part<T> = { status: 'skipped'; reason: string } | { status: 'error'; error: string } | ({ status: 'ok' } & T);

interface TestsResult {
  files: string[] | 'all';
  passed: number;
  failed: number;
  skipped: number;
  seconds: number;
  failures: { test: string; message: string }[];
  report: string;
}

// --- test suite --------------------------------------------------------------------------------------
/** A quick subset for --smoke: device setup, the matmul variants and softmax (both test projects). */
const SMOKE_TESTS = ['test/core-device.test.ts', 'test/ops-matmul-variants.test.ts', 'test/ops-softmax.test.ts'];

interface VitestJson {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: {
    name: string;
    status: string;
    message: string;
    assertionResults: { fullName: string; status: string; failureMessages: string[] }[];
  }[];
}

function runTests(): Part<TestsResult> {
  if (opts.skipTests) return { status: 'skipped', reason: '--skip-tests' };
  const t0 = performance.now();
  const file = join(opts.out, 'vitest.json');
  const files = opts.smoke ? SMOKE_TESTS : [];
  console.log(`\n[tests] vitest run ${files.join(' ') || '(the whole suite, as npm test)'}`);
  const build = spawnSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
  if (build.status !== 0)
    return { status: 'error', error: `the package build (scripts/build.mjs) failed with code ${build.status}` };
  const run = spawnSync(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', ...files, '--reporter=dot', '--reporter=json', `--outputFile=${file}`],
    { stdio: 'inherit' },
  );
  if (!existsSync(file)) return { status: 'error', error: `vitest wrote no report (exit code ${run.status})` };
  const r = JSON.parse(readFileSync(file, 'utf8')) as VitestJson;
  // A file that failed to load has no test results; it counts as one failure (as .ci/summary.mjs does).
  const brokenFiles = r.testResults.filter((f) => f.status === 'failed' && f.assertionResults.length === 0);
  const failures = [
    ...brokenFiles.map((f) => ({ test: f.name, message: f.message })),
    ...r.testResults.flatMap((f) =>
      f.assertionResults
        .filter((a) => a.status === 'failed')
        .map((a) => ({ test: `${f.name} > ${a.fullName}`, message: (a.failureMessages[0] ?? '').split('\n')[0] })),
    ),
  ];
  return {
    status: 'ok',
    files: opts.smoke ? files : 'all',
    passed: r.numPassedTests,
    failed: r.numFailedTests + brokenFiles.length,
    skipped: r.numPendingTests + r.numTodoTests,
    seconds: seconds(t0),
    failures,
    report: file,
  };
}

// --- bench vs TF.js ----------------------------------------------------------------------------------
type BenchRow = OpRow | DecoderRow | ClexRow | PrecisionRow;

/** What bench/run.ts --json writes (the parts read here). */
interface BenchJson {
  reps: number;
  blocks: number;
  geomeanOpSpeedup: number | null;
  rows: BenchRow[];
}

interface BenchResult {
  reps: number;
  blocks: number;
  only: string | null;
  geomeanOpSpeedup: number | null;
  rows: BenchRow[];
  seconds: number;
  report: string;
}

function runBench(): Part<BenchResult> {
  if (opts.skipBench) return { status: 'skipped', reason: '--skip-bench' };
  const t0 = performance.now();
  const file = join(opts.out, 'bench.json');
  // --smoke: few repetitions, one block of decoder steps, and not the larger decoder (seconds a step on
  // lavapipe). BENCH_* set by the caller win.
  const smokeEnv = opts.smoke
    ? { BENCH_REPS: '2', BENCH_BLOCKS: '1', BENCH_ONLY: '^(?!decoder step 4×|f16-mixed vs f32 6×)' }
    : {};
  const env = { ...smokeEnv, ...process.env };
  console.log(`\n[bench] bench/run.ts --json ${file}`);
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--json', file], {
    stdio: 'inherit',
    env,
  });
  if (run.status !== 0 || !existsSync(file))
    return { status: 'error', error: `bench/run.ts failed (exit code ${run.status})` };
  const r = JSON.parse(readFileSync(file, 'utf8')) as BenchJson;
  return {
    status: 'ok',
    reps: r.reps,
    blocks: r.blocks,
    only: env.BENCH_ONLY ?? null,
    geomeanOpSpeedup: r.geomeanOpSpeedup,
    rows: r.rows,
    seconds: seconds(t0),
    report: file,
  };
}

// --- training step at three sizes --------------------------------------------------------------------
/** Runs per 'kernel:variant' since `before`, grouped by kernel. */
function variantsSince(before: ReadonlyMap<string, number>): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [key, n] of [...variantUsage()].sort(([a], [b]) => a.localeCompare(b))) {
    const runs = n - (before.get(key) ?? 0);
    if (runs <= 0) continue;
    const [kernel, variant] = key.split(':');
    (out[kernel] ??= {})[variant] = runs;
  }
  return out;
}

interface TrainingResult {
  parameters: number;
  /** For f16-mixed: its ms/step and peak bytes ÷ the f32 row's of the same size (null without one). */
  vsFloat32: { time: number; memory: number } | null;
  timedSteps: number;
  msPerStep: number;
  tokensPerSecond: number;
  dispatchesPerStep: number;
  submitsPerStep: number;
  readbacksPerStep: number;
  /** Live bytes at the peak, from building the model to the last step (weights, optimizer state, activations). */
  peakBytes: number;
  variants: Record<string, Record<string, number>>;
  seconds: number;
}

type TrainingRow = { label: string; shape: DecoderShape; precision: Precision } & Exclude<
  Part<TrainingResult>,
  { status: 'skipped' }
>;

async function trainingRow(size: TrainingSize, precision: Precision, f32: TrainingRow | null): Promise<TrainingRow> {
  const { label, shape, blocks } = size;
  console.log(
    `\n[training] ${label}: LLaMA ${describeShape(shape)}, ${precision}, ${blocks} block(s) of ${LOSS_EVERY} steps`,
  );
  const t0 = performance.now();
  const variantsBefore = new Map(variantUsage());
  emptyCache();
  const liveBefore = memory().liveBytes;
  resetPeak();
  let trainer: DawngradDecoder | null = null;
  try {
    manualSeed(0);
    trainer = new DawngradDecoder(shape, 'plain', precision);
    const t = await timeTraining(trainer, shape, blocks);
    const peakBytes = memory().peakBytes - liveBefore;
    const row: TrainingRow & { status: 'ok' } = {
      status: 'ok',
      label,
      shape,
      precision,
      parameters: trainer.numParameters,
      vsFloat32:
        f32?.status === 'ok' && precision !== 'f32'
          ? { time: t.msPerStep / f32.msPerStep, memory: peakBytes / f32.peakBytes }
          : null,
      timedSteps: blocks * LOSS_EVERY,
      msPerStep: t.msPerStep,
      tokensPerSecond: t.tokensPerSecond,
      dispatchesPerStep: t.traffic.dispatches,
      submitsPerStep: t.traffic.submits,
      readbacksPerStep: t.traffic.readbacks,
      peakBytes,
      variants: variantsSince(variantsBefore),
      seconds: seconds(t0),
    };
    console.log(
      `  ${row.parameters.toLocaleString('en-US')} parameters: ${row.msPerStep.toFixed(1)} ms/step, ${row.tokensPerSecond.toFixed(0)} tokens/s, ` +
        `${row.dispatchesPerStep.toFixed(1)} dispatches/step, peak ${(row.peakBytes / 2 ** 20).toFixed(1)} MiB` +
        (row.vsFloat32
          ? ` (÷ f32: time ×${row.vsFloat32.time.toFixed(2)}, memory ×${row.vsFloat32.memory.toFixed(2)})`
          : ''),
    );
    return row;
  } catch (e) {
    console.log(`  failed: ${(e as Error).message}`);
    return { status: 'error', label, shape, precision, error: (e as Error).message };
  } finally {
    trainer?.dispose();
    emptyCache();
  }
}

// --- autotune ------------------------------------------------------------------------------------------
/**
 * The autotuner's choices on this adapter (core/autotune.ts: the fastest variant and each candidate's
 * median GPU ms, per kernel and shape bucket, from this run and earlier ones sharing the cache), and the
 * settings the automatic choices follow; the variant each kernel actually ran is under `variants`.
 */
function autotuneSection() {
  const c = config();
  const rt = gpuRuntime();
  const choices = rt ? tunedChoices(rt) : {};
  return {
    choices,
    note:
      c.autotune === 'off'
        ? "autotune is 'off': the automatic choices come from the profile and the kernels' prefer rules"
        : `the cache is ${c.cacheDir}`,
    settings: {
      autotune: c.autotune,
      profile: c.profile,
      variants: c.variants,
      normChunkRows: c.normChunkRows,
      fusion: c.fusion,
    },
  };
}

// --- markdown ----------------------------------------------------------------------------------------------
type Report = Awaited<ReturnType<typeof buildReport>>;

const ms = (x: number, digits: number) => `${x.toFixed(digits)} ms`;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function markdown(r: Report): string {
  const lines: string[] = [
    `# dawngrad GPU report`,
    '',
    `${r.date}, commit ${r.commit ?? 'unknown'}${r.smoke ? ', --smoke' : ''}`,
  ];
  const d = r.adapter.deviceInfo;
  lines.push(
    '',
    '## Adapter',
    '',
    `| adapter | vendor | architecture | profile | features | subgroup size |`,
    `|---|---|---|---|---|---|`,
    `| ${d.adapter} | ${d.vendor} | ${d.architecture || '—'} | ${r.adapter.hardware.software ? 'software' : 'hardware'} | ${r.adapter.hardware.features.join(', ') || '—'} | ${d.subgroupSize ? `${d.subgroupSize.min}–${d.subgroupSize.max}` : '—'} |`,
    '',
    `Limits: ${Object.entries(d.limits)
      .map(([k, v]) => `${k} ${v}`)
      .join(
        ', ',
      )}. Machine: ${r.adapter.machine.platform}, ${r.adapter.machine.cpu} × ${r.adapter.machine.cores}, Node ${r.adapter.machine.node}.`,
  );
  lines.push('', '## Tests', '');
  const t = r.tests;
  if (t.status === 'skipped') lines.push(`Skipped (${t.reason}).`);
  else if (t.status === 'error') lines.push(`Not run: ${t.error}.`);
  else {
    lines.push(
      `${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped (${t.files === 'all' ? 'the whole suite' : (t.files as string[]).join(', ')}; ${t.seconds} s).`,
    );
    for (const f of t.failures.slice(0, 50)) lines.push(`- ${f.test}: ${f.message}`);
  }
  lines.push('', '## Bench against TF.js (same adapter)', '');
  const b = r.bench;
  if (b.status === 'skipped') lines.push(`Skipped (${b.reason}).`);
  else if (b.status === 'error') lines.push(`Not run: ${b.error}.`);
  else {
    lines.push(
      `Median of ${b.reps} runs per op row, ${b.blocks} block(s) of ${LOSS_EVERY} decoder steps${b.only ? `; rows matching /${b.only}/` : ''}. Speedup = TF.js time / dawngrad time.`,
      '',
      '| row | dawngrad | TF.js | speedup |',
      '|---|---|---|---|',
    );
    for (const row of b.rows) {
      if (row.kind === 'op')
        lines.push(`| ${row.name} | ${ms(row.oursMs, 2)} | ${ms(row.tfjsMs, 2)} | ×${row.speedup.toFixed(2)} |`);
      else if (row.kind === 'decoder-step')
        lines.push(
          `| ${row.name} (${row.parameters.toLocaleString('en-US')} parameters) | ${ms(row.ours.msPerStep, 1)} | ${ms(row.tfjs.msPerStep, 1)} | ×${row.speedup.toFixed(2)} |`,
        );
      else if (row.kind === 'clex-vs-plain')
        lines.push(
          `| ${row.name}: plain / CLEX | ${ms(row.plain.msPerStep, 1)} / ${ms(row.clex.msPerStep, 1)} | — | CLEX takes ×${row.ratio.toFixed(2)} |`,
        );
      else
        lines.push(
          `| ${row.name}: f32 / f16-mixed | ${ms(row.f32.msPerStep, 1)} / ${ms(row.f16.msPerStep, 1)}; peak ${mib(row.f32.peakBytes)} / ${mib(row.f16.peakBytes)} | — | f16-mixed: time ×${row.timeRatio.toFixed(2)}, memory ×${row.memoryRatio.toFixed(2)} |`,
        );
    }
    if (b.geomeanOpSpeedup !== null) lines.push('', `Geometric-mean op speedup: ×${b.geomeanOpSpeedup.toFixed(2)}.`);
  }
  lines.push(
    '',
    '## LLaMA training step',
    '',
    'AdamW with weight decay, clipping at 1, the loss read once per 10 steps (bench/decoder.ts); median block after 2 untimed steps.',
    "f16-mixed: the forward under autocast('float16'), float32 master weights, gradients and AdamW state, a constant loss scale.",
    'Peak GPU memory: live bytes at the peak, from building the model to the last step.',
    '',
    '| size | shape | precision | parameters | ms/step | tokens/s | dispatches/step | peak GPU memory | ÷ f32: time, memory |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  for (const row of r.training) {
    const shape = describeShape(row.shape);
    if (row.status === 'error')
      lines.push(`| ${row.label} | ${shape} | ${row.precision} | failed: ${row.error} | | | | | |`);
    else
      lines.push(
        `| ${row.label} | ${shape} | ${row.precision} | ${row.parameters.toLocaleString('en-US')} | ${row.msPerStep.toFixed(1)} | ${row.tokensPerSecond.toFixed(0)} | ${row.dispatchesPerStep.toFixed(1)} | ${mib(row.peakBytes)} | ${row.vsFloat32 ? `×${row.vsFloat32.time.toFixed(2)}, ×${row.vsFloat32.memory.toFixed(2)}` : '—'} |`,
      );
  }
  lines.push('', '## Kernel variants that ran (training steps)', '', '| kernel | variant: runs |', '|---|---|');
  for (const [kernel, runs] of Object.entries(r.variants))
    lines.push(
      `| ${kernel} | ${Object.entries(runs)
        .map(([v, n]) => `${v}: ${n}`)
        .join(', ')} |`,
    );
  lines.push(
    '',
    '## Autotune',
    '',
    `${r.autotune.note[0].toUpperCase()}${r.autotune.note.slice(1)}.`,
    '',
    ...(Object.keys(r.autotune.choices).length
      ? [
          '| kernel | shape bucket | chosen | median GPU ms per candidate |',
          '|---|---|---|---|',
          ...Object.entries(r.autotune.choices).map(([key, choice]) => {
            const [kernel, bucket] = [key.slice(0, key.indexOf('|')), key.slice(key.indexOf('|') + 1)];
            const times = Object.entries(choice.ms).map(([v, t]) => `${v} ${t.toFixed(3)}`);
            return `| ${kernel} | ${bucket} | ${choice.variant} | ${times.join(', ')} |`;
          }),
        ]
      : ['No choices cached for this adapter yet.']),
    '',
    `Settings: ${JSON.stringify(r.autotune.settings)}.`,
    '',
    `Total ${r.seconds} s.`,
  );
  return lines.join('\n') + '\n';
}

function gitCommit(): string | null {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

async function buildReport() {
  const tests = runTests();
  const bench = runBench();
  const variantsBefore = new Map(variantUsage());
  const training: TrainingRow[] = [];
  for (const size of opts.smoke ? SMOKE_SIZES : SIZES) {
    let f32: TrainingRow | null = null;
    for (const precision of PRECISIONS) {
      const row = await trainingRow(size, precision, f32);
      if (precision === 'f32') f32 = row;
      training.push(row);
    }
  }
  return {
    date: new Date().toISOString(),
    commit: gitCommit(),
    smoke: opts.smoke,
    adapter,
    tests,
    bench,
    training,
    variants: variantsSince(variantsBefore),
    autotune: autotuneSection(),
    seconds: seconds(started),
  };
}

const report = await buildReport();
const jsonFile = join(opts.out, 'report.json');
const mdFile = join(opts.out, 'report.md');
writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
const md = markdown(report);
writeFileSync(mdFile, md);
console.log(`\n${md}\nwrote ${jsonFile} and ${mdFile}`);
// Exit code 1 when a test failed or a part could not run (the report is written either way).
const failed =
  (report.tests.status === 'ok' && report.tests.failed > 0) ||
  [report.tests, report.bench, ...report.training].some((part) => part.status === 'error');
process.exit(failed ? 1 : 0);
