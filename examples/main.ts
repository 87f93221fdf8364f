// The main job (`npm start`): the CLEX paper's recipe in miniature.
//   1. Pretrain a base model with plain RoPE at L0.
//   2. From that base, continue training for the same number of steps with CLEX (and, as an ablation,
//      CLEX with its ODE frozen at init), PI and YaRN at the largest evaluated factor, and plain RoPE
//      (the control: the same extra steps, no scaling).
//   3. Evaluate the base (plain, and training-free NTK / YaRN / dynamic NTK / CLEX at init) and every
//      fine-tune at 1×–8× L0 (the CLEX fine-tune also with its ODE reset to W_down = 0), print the table
//      and the passkey table, write results.json and the chart, and say in one line what it shows.
// Each stage checkpoints into --out/<stage> and a re-run continues where it stopped (same flags).
// --compare-precision instead trains only the base stage, under f32 and under f16-mixed (same seed), and
// f32 again from its initial weights rounded to float16 once (the control), and charts the loss curves.
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { getDefaultDevice, type models } from '../index.js';
import { choiceFlag, numberFlag, parseFlags, runScript, UsageError, type FlagSpecs } from './lib/cli.js';
import { loadText } from './lib/data.js';
import { readMetrics } from './lib/metrics.js';
import { F16_MIXED_HELP, PRECISIONS, type Precision } from './lib/precision.js';
import { evaluateCheckpoints, type EvalTarget } from './lib/evaluate.js';
import { markdownTable, passkeyTable, writeChart, writeLossChart, writeResults, type Results } from './lib/report.js';
import { passkeyCalibration, ROW, verdict } from './lib/verdict.js';
import { train, TRAIN_POSITIONS, TRAIN_POSITIONS_HELP, type TrainOptions } from './lib/trainer.js';

const LARGEST_FACTOR = 8;
/** The recipe, chosen by the study in docs/main-job-study.md. */
const DEFAULTS = {
  seqLen: 64,
  passkeyShare: 0.75,
  finetuneLr: 5e-4,
  maxFactor: 16,
  clexT1Share: 0.25 as number | undefined,
  clexOdeLrScale: 1,
  trainPositions: 'chunks' as models.TrainingPositions,
};

const FLAGS = {
  quick: { type: 'boolean', help: 'a one-minute version (fewer steps, fewer held-out tokens)' },
  data: {
    type: 'string',
    default: 'builtin',
    arg: 'builtin|prose|PATH',
    help: 'the text (a UTF-8 file or a folder of .txt files; 10% held out from the end)',
  },
  model: { type: 'string', default: 'llama', arg: 'llama|neox', help: 'decoder architecture' },
  layers: { type: 'string', default: '2', arg: 'N', help: 'decoder layers' },
  hidden: { type: 'string', default: '64', arg: 'N', help: 'hidden size' },
  heads: { type: 'string', default: '4', arg: 'N', help: 'attention heads' },
  'seq-len': {
    type: 'string',
    default: String(DEFAULTS.seqLen),
    arg: 'L0',
    help: 'training length L0 (evaluated at 1, 2, 4, 8 × L0)',
  },
  'base-steps': { type: 'string', arg: 'N', help: 'pretraining steps (default 600; --quick 40)' },
  'finetune-steps': {
    type: 'string',
    arg: 'N',
    help: 'continued-training steps of each fine-tune (default 200; --quick 10)',
  },
  'batch-size': { type: 'string', default: '8', arg: 'N', help: 'sequences per step (every stage)' },
  'passkey-share': {
    type: 'string',
    default: String(DEFAULTS.passkeyShare),
    arg: 'F',
    help: 'share of each batch that is passkey contexts, in every stage (a key and its question inside one L0 window)',
  },
  'finetune-lr': {
    type: 'string',
    default: String(DEFAULTS.finetuneLr),
    arg: 'X',
    help: 'peak rate of every fine-tune (cosine to a tenth of it; pretraining peaks at 3e-3)',
  },
  'max-factor': {
    type: 'string',
    default: String(DEFAULTS.maxFactor),
    arg: 'N',
    help: 'CLEX: the largest t it trains with (≥ 8: the longest evaluated context is 8×L0)',
  },
  'clex-t1-share': {
    type: 'string',
    arg: 'F|uniform',
    help: `CLEX: probability of t = 1 in training draws, or 'uniform' over 1..max_factor as in the paper (default ${DEFAULTS.clexT1Share ?? 'uniform'})`,
  },
  'clex-ode-lr-scale': {
    type: 'string',
    default: String(DEFAULTS.clexOdeLrScale),
    arg: 'X',
    help: "CLEX: multiplier of the ODE weights' own rate (lr / (d·(max_factor − 1)))",
  },
  'train-positions': {
    type: 'string',
    default: DEFAULTS.trainPositions,
    arg: TRAIN_POSITIONS.join('|'),
    help: `every fine-tune: ${TRAIN_POSITIONS_HELP}`,
  },
  'max-tokens': {
    type: 'string',
    arg: 'N',
    help: 'held-out tokens scored at every length (default 8192; --quick 512)',
  },
  'passkey-samples': {
    type: 'string',
    arg: 'N',
    help: 'passkey contexts per (length, depth); 0 = no passkey test (default 8; --quick 2)',
  },
  seed: {
    type: 'string',
    default: '1234',
    arg: 'N',
    help: 'seed of the initial weights and the batch order (every stage)',
  },
  device: { type: 'string', arg: 'webgpu|cpu', help: 'default: webgpu, or $DAWNGRAD_DEVICE' },
  precision: {
    type: 'string',
    arg: PRECISIONS.join('|'),
    help: `every stage and the evaluation (default f32); ${F16_MIXED_HELP}`,
  },
  out: { type: 'string', arg: 'DIR', help: 'checkpoints and results (default out/main, --quick out/main-quick)' },
  'compare-precision': {
    type: 'boolean',
    help: "train only the base stage, same seed, into DIR/precision/: under f32, under f16-mixed, and a control (f32 from the initial weights rounded to float16 once: the stage's own sensitivity); chart the loss curves (DIR/precision.png)",
  },
} satisfies FlagSpecs;

/** The job as the flags set it: the base run's options (`common`) and what the fine-tunes and the evaluation change. */
interface Job {
  quick: boolean;
  comparePrecision: boolean;
  out: string;
  data: string;
  L0: number;
  /** The evaluated context lengths: 1, 2, 4 and 8 × L0. */
  lengths: number[];
  baseSteps: number;
  finetuneSteps: number;
  finetuneLr: number;
  maxFactor: number;
  clexT1Share: number | undefined;
  trainPositions: models.TrainingPositions;
  maxTokens: number;
  passkeySamples: number;
  common: TrainOptions;
}

/** Reads and checks the flags (a bad value is a UsageError naming it). */
function parseJob(argv: string[]): Job {
  const { values: v } = parseFlags('main', 'npm start -- [--quick] [--data PATH] [--model neox] [flags]', FLAGS, argv);
  const quick = v.quick;
  const baseSteps = numberFlag('base-steps', v['base-steps'] ?? (quick ? '40' : '600'), { integer: true, min: 1 });
  const finetuneSteps = numberFlag('finetune-steps', v['finetune-steps'] ?? (quick ? '10' : '200'), {
    integer: true,
    min: 1,
  });
  const L0 = numberFlag('seq-len', v['seq-len'], { integer: true, min: 8 });
  const lengths = [1, 2, 4, LARGEST_FACTOR].map((k) => k * L0);
  const maxTokens = numberFlag('max-tokens', v['max-tokens'] ?? (quick ? '512' : '8192'), {
    integer: true,
    min: lengths[3],
  });
  const passkeySamples = numberFlag('passkey-samples', v['passkey-samples'] ?? (quick ? '2' : '8'), {
    integer: true,
    min: 0,
  });
  const finetuneLr = numberFlag('finetune-lr', v['finetune-lr'], { above: 0 });
  const maxFactor = numberFlag('max-factor', v['max-factor'], { integer: true, min: LARGEST_FACTOR });
  const t1Flag = v['clex-t1-share'];
  const clexT1Share =
    t1Flag === undefined ? DEFAULTS.clexT1Share : t1Flag === 'uniform' ? undefined : Number(t1Flag.trim() || NaN);
  if (clexT1Share !== undefined && !(clexT1Share >= 0 && clexT1Share <= 1))
    throw new UsageError(`--clex-t1-share must be a number in [0, 1] or 'uniform', got '${t1Flag}'`);
  const out = v.out ?? (quick ? 'out/main-quick' : 'out/main');
  const comparePrecision = v['compare-precision'];
  if (comparePrecision && v.precision !== undefined)
    throw new UsageError(
      `--compare-precision trains the base under both precisions; drop --precision ${v.precision} (or drop --compare-precision)`,
    );
  const data = v.data ?? 'builtin';
  const common: TrainOptions = {
    model: choiceFlag('model', v.model, ['llama', 'neox'] as const),
    layers: numberFlag('layers', v.layers, { integer: true, min: 1 }),
    hidden: numberFlag('hidden', v.hidden, { integer: true, min: 1 }),
    heads: numberFlag('heads', v.heads, { integer: true, min: 1 }),
    rope: 'none',
    ropeFactor: LARGEST_FACTOR,
    maxFactor,
    clexMethod: 'dopri5',
    clexGradient: 'backprop',
    clexFreezeOde: false,
    clexT1Share,
    clexOdeLrScale: numberFlag('clex-ode-lr-scale', v['clex-ode-lr-scale'], { min: 0 }),
    data,
    valFraction: 0.1,
    tokenizer: 'byte',
    seqLen: L0,
    batchSize: numberFlag('batch-size', v['batch-size'], { integer: true, min: 1 }),
    gradAccum: 1,
    passkeyShare: numberFlag('passkey-share', v['passkey-share'], { min: 0, max: 1 }),
    steps: baseSteps,
    lr: 3e-3,
    minLr: 3e-4,
    warmup: quick ? 5 : 30,
    weightDecay: 0.01,
    clip: 1,
    seed: numberFlag('seed', v.seed, { integer: true, min: 0 }),
    precision: choiceFlag('precision', v.precision ?? 'f32', PRECISIONS),
    device: v.device === undefined ? getDefaultDevice() : choiceFlag('device', v.device, ['webgpu', 'cpu'] as const),
    out: join(out, 'base'),
    saveEvery: 100,
    evalEvery: 0,
    logEvery: 10,
    evalTokens: 8192,
    resume: 'auto',
    label: 'base',
  };
  return {
    quick,
    comparePrecision,
    out,
    data,
    L0,
    lengths,
    baseSteps,
    finetuneSteps,
    finetuneLr,
    maxFactor,
    clexT1Share,
    trainPositions: choiceFlag('train-positions', v['train-positions'], TRAIN_POSITIONS),
    maxTokens,
    passkeySamples,
    common,
  };
}

/** The data's name in the chart and results.json: a file or folder by its base name. */
const dataName = (data: string): string => (data === 'builtin' || data === 'prose' ? data : basename(data));

function describeJob({ common, L0, data, baseSteps, finetuneSteps, finetuneLr, out }: Job): string {
  return `main job: ${common.model} ${common.layers} layers × ${common.hidden} (${common.heads} heads of ${common.hidden / common.heads}), byte tokenizer, L0 = ${L0}, batch ${common.batchSize} (passkey share ${common.passkeyShare}), data ${data}; base ${baseSteps} steps, each fine-tune ${finetuneSteps} steps at lr ${finetuneLr}; device ${common.device}, precision ${common.precision}; checkpoints in ${out}/`;
}

/** Every fine-tune gets the same budget and recipe; only the positional rule differs. */
const STAGES: [string, Partial<TrainOptions>][] = [
  ['base', {}],
  ['clex', { rope: 'clex' }],
  ['clex-frozen', { rope: 'clex', clexFreezeOde: true }],
  ['pi', { rope: 'linear' }],
  ['yarn', { rope: 'yarn' }],
  ['plain', { rope: 'none' }],
];

/** Wall time of each stage, printed as it ends and listed at the end. */
class Timings {
  readonly lines: string[] = [];

  /** Records the stage that started at `t0` (performance.now()). */
  done(name: string, t0: number): void {
    const line = `${name} ${((performance.now() - t0) / 1000).toFixed(0)} s`;
    this.lines.push(line);
    console.log(`time: ${line}`);
  }
}

/** Trains the base, then each fine-tune from it; each stage continues its checkpoint when re-run. Exits 130 when interrupted. */
async function trainStages(job: Job, timings: Timings): Promise<void> {
  for (const [name, change] of STAGES) {
    const t0 = performance.now();
    const fineTune = name !== 'base';
    const result = await train({
      ...job.common,
      ...change,
      out: join(job.out, name),
      label: name,
      ...(fineTune
        ? {
            initFrom: join(job.out, 'base'),
            steps: job.finetuneSteps,
            lr: job.finetuneLr,
            minLr: job.finetuneLr / 10,
            trainPositions: job.trainPositions,
            warmup: job.quick ? 2 : 10,
            tokenizer: undefined,
            seqLen: undefined,
          }
        : {}),
    });
    if (result.interrupted) process.exit(130);
    timings.done(name, t0);
  }
}

/** Scores every stage (and the base's training-free rules) on the held-out text at each length; rows named as in the paper's tables. */
async function evaluateStages(job: Job, heldOutText: string, timings: Timings): Promise<Results> {
  console.log(`\nevaluating on ${job.data} held-out text at ${job.lengths.join(', ')} tokens:`);
  const base = join(job.out, 'base');
  const targets: EvalTarget[] = [
    { dir: base, name: ROW.base, rules: ['ntk', 'yarn', 'dynamic', 'clex-init'] },
    { dir: join(job.out, 'plain'), name: 'fine-tuned plain RoPE (control)' },
    { dir: join(job.out, 'pi'), name: `fine-tuned PI (s = ${LARGEST_FACTOR})` },
    { dir: join(job.out, 'yarn'), name: `fine-tuned YaRN (s = ${LARGEST_FACTOR})` },
    { dir: join(job.out, 'clex'), name: ROW.clex, resetOde: true },
    { dir: join(job.out, 'clex-frozen'), name: ROW.clexFrozen },
  ];
  const t0 = performance.now();
  const results = await evaluateCheckpoints(targets, {
    heldOutText,
    lengths: job.lengths,
    maxTokens: job.maxTokens,
    passkeySamples: job.passkeySamples,
    precision: job.common.precision,
    log: console.log,
  });
  timings.done('evaluation', t0);
  // Rename the base's rule rows to read as in the paper's tables.
  for (const row of results.rows) row.name = row.name.replace(`${ROW.base} + `, 'base + ');
  results.passkey?.forEach((p) => {
    p.name = p.name.replace(`${ROW.base} + `, 'base + ');
  });
  return results;
}

/** Prints the tables and the one-line verdict; writes results.json (with the recipe and timings) and the chart. */
async function report(job: Job, results: Results, timings: Timings): Promise<void> {
  const { out, common, L0 } = job;
  const calibration = passkeyCalibration(results);
  mkdirSync(out, { recursive: true });
  console.log(`\nheld-out perplexity (${results.tokens} tokens of ${job.data} at every length; L0 = ${L0}):\n`);
  console.log(markdownTable(results));
  if (calibration) console.log(`\n${passkeyTable(results)}\n\n${calibration.message}`);
  const chart = await writeChart(
    out,
    results,
    `main job: ${common.model}, L0 = ${L0}, ${dataName(job.data)}${calibration?.passed === false ? ' (passkey void: the base fails at 1×L0)' : ''}`,
  );
  console.log(`\nIn one line: ${verdict(results)}`);
  const recipe = {
    data: dataName(job.data),
    model: common.model,
    L0,
    batchSize: common.batchSize,
    passkeyShare: common.passkeyShare,
    baseSteps: job.baseSteps,
    finetuneSteps: job.finetuneSteps,
    finetuneLr: job.finetuneLr,
    maxFactor: job.maxFactor,
    clexT1Share: job.clexT1Share ?? null,
    clexOdeLrScale: common.clexOdeLrScale,
    trainPositions: job.trainPositions,
  };
  console.log(
    `\nwrote ${writeResults(out, { ...results, recipe, timings: timings.lines, ...(calibration ? { passkeyCalibration: calibration } : {}) })}, ${chart.svg}, ${chart.png}`,
  );
}

/** --compare-precision's runs: both precisions, and the control that measures the stage's own sensitivity. */
const PRECISION_RUNS: { name: string; folder: string; precision: Precision; initRoundedTo?: 'float16' }[] = [
  { name: 'f32', folder: 'f32', precision: 'f32' },
  { name: 'f16-mixed', folder: 'f16-mixed', precision: 'f16-mixed' },
  { name: 'f32, init rounded to f16', folder: 'f32-init-rounded', precision: 'f32', initRoundedTo: 'float16' },
];

/** What --compare-precision reports of each run. */
interface PrecisionRun {
  name: string;
  /** ln of the held-out perplexity at the last step. */
  heldOutLoss: number;
  heldOutPpl: number;
  msPerStep: number;
  seconds: number;
  /** f16-mixed: the steps skipped on overflow and the last loss scale. */
  skippedSteps?: number;
  lossScale?: number;
}

/**
 * --compare-precision: the base stage under each precision (same seed and batches), held-out loss every
 * 50 steps (--quick: 10) and at the end, and a control: f32 again from the same initial weights rounded
 * to float16 once. The control's gap is what one float16 rounding does to this stage on its own, the
 * yardstick for the f16-mixed gap. Prints the final held-out losses and both gaps; writes
 * precision.json and one chart of every run's training and held-out losses.
 */
async function comparePrecision(job: Job): Promise<void> {
  const dir = join(job.out, 'precision');
  const runs: PrecisionRun[] = [];
  const curves = [];
  for (const { name, folder, precision, initRoundedTo } of PRECISION_RUNS) {
    const t0 = performance.now();
    const out = join(dir, folder);
    const result = await train({
      ...job.common,
      precision,
      initRoundedTo,
      out,
      label: `base ${name}`,
      evalEvery: job.quick ? 10 : 50,
    });
    if (result.interrupted) process.exit(130);
    const records = readMetrics(join(out, 'metrics.jsonl'));
    const last = records[records.length - 1];
    runs.push({
      name,
      heldOutLoss: Math.log(last.val_ppl!),
      heldOutPpl: last.val_ppl!,
      msPerStep: result.msPerStep,
      seconds: (performance.now() - t0) / 1000,
      ...(last.loss_scale !== undefined ? { skippedSteps: last.skipped_steps, lossScale: last.loss_scale } : {}),
    });
    curves.push({ name, records });
  }
  const [f32, f16, control] = runs;
  const gap = f16.heldOutLoss / f32.heldOutLoss - 1;
  const controlGap = control.heldOutLoss / f32.heldOutLoss - 1;
  console.log('\nbase stage, held-out loss (nats per byte) at the last step:');
  for (const r of runs)
    console.log(
      `  ${r.name}: ${r.heldOutLoss.toFixed(4)} (perplexity ${r.heldOutPpl.toFixed(3)}), ${r.msPerStep.toFixed(0)} ms/step${r.skippedSteps !== undefined ? `, ${r.skippedSteps} ${r.skippedSteps === 1 ? 'step' : 'steps'} skipped, loss scale ${r.lossScale}` : ''}`,
    );
  const percent = (x: number): string => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}%`;
  console.log(`f16-mixed vs f32: ${percent(gap)} (${Math.abs(gap) <= 0.02 ? 'within' : 'outside'} 2%)`);
  console.log(
    `control, f32 from the initial weights rounded to float16 once, vs f32: ${percent(controlGap)} (how far one float16 rounding moves this stage by itself)`,
  );
  console.log(
    Math.abs(gap) <= Math.abs(controlGap)
      ? "so f16-mixed's gap is within this stage's own sensitivity: at this seed it cannot be told from noise"
      : `so f16-mixed's gap is ${(Math.abs(gap) / Math.max(Math.abs(controlGap), 1e-12)).toFixed(1)}× the control's: more than one rounding explains`,
  );
  mkdirSync(job.out, { recursive: true });
  const json = join(job.out, 'precision.json');
  const summary = { steps: job.baseSteps, seed: job.common.seed, data: dataName(job.data), runs, gap, controlGap };
  writeFileSync(json, JSON.stringify(summary, null, 2) + '\n');
  const chart = await writeLossChart(
    job.out,
    curves,
    `base stage (${job.common.model}, ${dataName(job.data)}, seed ${job.common.seed}): held-out f32 ${f32.heldOutLoss.toFixed(3)}, f16-mixed ${f16.heldOutLoss.toFixed(3)}, control ${control.heldOutLoss.toFixed(3)}`,
    'precision',
  );
  console.log(`wrote ${json}, ${chart.svg}, ${chart.png}`);
}

runScript(async () => {
  const job = parseJob(process.argv.slice(2));
  const text = loadText({ data: job.data, valFraction: 0.1 }); // checked up front: a bad --data fails before any training
  console.log(describeJob(job));
  if (job.comparePrecision) return comparePrecision(job);
  const started = performance.now();
  const timings = new Timings();
  await trainStages(job, timings);
  const results = await evaluateStages(job, text.val, timings);
  await report(job, results, timings);
  console.log(`time: ${timings.lines.join(', ')}; total ${((performance.now() - started) / 1000).toFixed(0)} s`);
});
