// The training run behind `npm run train` and the main job: builds (or fine-tunes, --init-from) a
// LLaMA / GPT-NeoX model, trains it with AdamW (weight decay only on matrices), cosine schedule with
// warm-up, gradient clipping and accumulation; logs metrics.jsonl, shows progress, evaluates held-out
// perplexity, checkpoints every N steps, at the end and on SIGINT/SIGTERM, and resumes exactly. With
// --precision f16-mixed the forward runs under autocast('float16') and a GradScaler scales the loss
// (its state checkpointed with the rest).
// Every check of the user's input happens before anything is written.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, manualSeed, memory, models, optim, scope, setDefaultDevice, type Tensor } from '../../index.js';
import {
  buildModel,
  readCheckpointInfo,
  saveTrainingCheckpoint,
  transferWeights,
  type CausalModel,
  type CheckpointInfo,
  type ModelConfigJson,
} from './checkpoint.js';
import { UsageError } from './cli.js';
import {
  loadText,
  makeTokenizer,
  tokenizerFromFlag,
  trainingBatch,
  type TokenizerDescription,
  type TokenizerKind,
  type TrainingBatch,
} from './data.js';
import { perplexity } from './evaluate.js';
import { passkeyOverhead } from './passkey.js';
import { checkPrecision, inPrecision, type Precision } from './precision.js';
import { MetricsLog, readMetrics } from './metrics.js';
import { TrainingProgress } from './progress.js';
import { StopRequest } from './signals.js';

/** --rope: plain RoPE ('none') or any rope_scaling type of the models. */
export const ROPES = ['none', ...models.ROPE_SCALING_TYPES] as const;
export type RopeChoice = (typeof ROPES)[number];

/** --train-positions: where training forwards put their tokens (models' RotaryEmbedding.trainingPositions). */
export const TRAIN_POSITIONS: readonly models.TrainingPositions[] = ['standard', 'chunks'];
export const TRAIN_POSITIONS_HELP =
  "'standard': 0..L−1 (CLEX: a sorted random subset of [0, t·L0), as in the paper); 'chunks': the window cut at a random point into two contiguous chunks with a random gap between them, spanning up to s·L0 for PI / NTK / YaRN / llama3 and t·L0 for CLEX (neighbours stay one position apart, PoSE-style)";

export interface ModelShape {
  model: 'llama' | 'neox';
  layers: number;
  hidden: number;
  heads: number;
  kvHeads?: number;
  intermediate?: number;
  /** An HF config.json; its fields win over the shape flags (vocab_size and max_position_embeddings are set by the run). */
  configFile?: string;
}

export interface RopeOptions {
  rope: RopeChoice;
  ropeFactor: number;
  maxFactor: number;
  clexMethod: 'dopri5' | 'rk4';
  clexGradient: 'adjoint' | 'backprop';
  /** Leave the CLEX ODE weights out of the optimizer (the ablation "ODE frozen at init"). */
  clexFreezeOde: boolean;
  /** CLEX training: probability of drawing t = 1 (default: t uniform over 1..max_factor, as in the paper). */
  clexT1Share?: number;
  /** CLEX: multiplier of the ODE weights' own learning rate (models.clexOdeLearningRate; default 1). */
  clexOdeLrScale?: number;
  /** Where training forwards put their tokens (RotaryEmbedding.trainingPositions; default 'standard'). */
  trainPositions?: models.TrainingPositions;
}

export interface TrainOptions extends ModelShape, RopeOptions {
  data: string;
  val?: string;
  valFraction: number;
  /** Undefined with --init-from: the source's tokenizer. */
  /** Also write the trained model as a Hugging Face folder here (savePretrained). */
  exportHf?: string;
  /** 'char', 'byte', or a path to a tokenizer.json (or a folder holding one). */
  tokenizer?: string;
  /** Undefined with --init-from: the source's L0. */
  seqLen?: number;
  batchSize: number;
  gradAccum: number;
  /** Share of each batch's rows that are passkey contexts (examples/lib/passkey.ts); 0 = plain text only. */
  passkeyShare?: number;
  steps: number;
  lr: number;
  minLr: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  seed: number;
  device: 'webgpu' | 'cpu';
  out: string;
  saveEvery: number;
  evalEvery: number;
  logEvery: number;
  /** Held-out tokens scored by each --eval-every evaluation. */
  evalTokens: number;
  /** true: continue the checkpoint in `out` (required); 'auto': continue it when there is one. */
  resume: boolean | 'auto';
  initFrom?: string;
  /** Prefix of progress lines. */
  label?: string;
  /** 'f16-mixed': forward under autocast('float16') with dynamic loss scaling (default 'f32'). */
  precision?: Precision;
  /**
   * 'float16': round the initial weights to float16 once, then train as usual. A perturbation the size
   * of one float16 rounding: the control that tells a precision's effect from the run's own sensitivity.
   */
  initRoundedTo?: 'float16';
}

export interface TrainResult {
  out: string;
  step: number;
  interrupted: boolean;
  finalLoss: number;
  /** Mean milliseconds per optimizer step in this process (excluding the first, which compiles kernels). */
  msPerStep: number;
}

function ropeScaling(o: RopeOptions): Partial<models.RopeScaling> | null {
  switch (o.rope) {
    case 'none':
      return null;
    case 'clex':
      return {
        type: 'clex',
        max_factor: o.maxFactor,
        param_factor: 1,
        act: 'tanh',
        ode_method: o.clexMethod,
        ode_gradient: o.clexGradient,
      };
    default:
      return { type: o.rope, factor: o.ropeFactor };
  }
}

function shapeConfig(o: TrainOptions, vocab: number, L0: number): ModelConfigJson {
  const fromFile = o.configFile ? readConfigFile(o.configFile) : {};
  const base: ModelConfigJson =
    o.model === 'neox'
      ? {
          model_type: 'gpt_neox',
          hidden_size: o.hidden,
          num_hidden_layers: o.layers,
          num_attention_heads: o.heads,
          intermediate_size: o.intermediate ?? 4 * o.hidden,
          rotary_pct: 1,
        }
      : {
          model_type: 'llama',
          hidden_size: o.hidden,
          num_hidden_layers: o.layers,
          num_attention_heads: o.heads,
          num_key_value_heads: o.kvHeads ?? o.heads,
          intermediate_size: o.intermediate ?? Math.round((8 * o.hidden) / 3 / 8) * 8,
        };
  const merged = { ...base, ...fromFile };
  if (typeof merged.vocab_size === 'number' && merged.vocab_size < vocab)
    throw new UsageError(
      `--config ${o.configFile}: vocab_size ${merged.vocab_size} is smaller than the tokenizer's ${vocab} ids`,
    );
  return {
    ...merged,
    vocab_size: merged.vocab_size ?? vocab,
    max_position_embeddings: L0,
    rope_scaling: ropeScaling(o),
  };
}

function readConfigFile(path: string): ModelConfigJson {
  try {
    const c = JSON.parse(readFileSync(path, 'utf8')) as ModelConfigJson;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new Error('not a JSON object');
    return c;
  } catch (e) {
    throw new UsageError(`--config ${path}: cannot read an HF config from it (${(e as Error).message})`);
  }
}

/**
 * Parameter groups: weight decay on weight matrices and embeddings only (not biases, norm gains or the
 * CLEX ODE: optim.weightDecayGroups chooses by the role each layer declares); the CLEX ODE weights get
 * their own rate (models.clexOdeParamGroup: a step moves no log-frequency by more than lr) unless frozen.
 */
export function parameterGroups(
  model: CausalModel,
  lr: number,
  weightDecay: number,
  freezeOde: boolean,
  odeLrScale = 1,
): { groups: optim.ParamGroupInput<optim.AdamHyper>[]; trainable: Tensor[] } {
  const groups: optim.ParamGroupInput<optim.AdamHyper>[] = optim.weightDecayGroups(model, weightDecay, {
    exclude: model.clex?.parameters(),
  });
  const odeGroup = freezeOde ? null : models.clexOdeParamGroup(model, lr);
  if (odeGroup) groups.push({ ...odeGroup, lr: (odeGroup.lr ?? lr) * odeLrScale });
  return { groups, trainable: groups.flatMap((g) => [...g.params]) };
}

/**
 * The training loss of one micro-batch: next-token cross-entropy over every row (a passkey row's filler
 * is text too), plus, when it has passkey rows, the cross-entropy of their answers alone (its own mean:
 * one answer token weighs ~1/L0 of its row in the first term, too little for the model to learn
 * retrieval within a short budget).
 */
export async function batchLoss(model: CausalModel, batch: TrainingBatch): Promise<Tensor> {
  const { ids, passkeyRows: P, passkeyLabels } = batch;
  const { logits, loss } = await model.forward(ids, { labels: ids });
  return P === 0 || !passkeyLabels ? loss! : loss!.add(models.shiftedLoss(logits.narrow(0, 0, P), passkeyLabels));
}

/** What must match for --resume to continue a run (all but steps, which may grow). */
function runSettings(
  o: TrainOptions,
  config: ModelConfigJson,
  tokenizer: TokenizerKind,
  seqLen: number,
  initStep?: number,
): Record<string, unknown> {
  return {
    config,
    tokenizer,
    data: o.data,
    val: o.val ?? null,
    val_fraction: o.valFraction,
    seq_len: seqLen,
    batch_size: o.batchSize,
    grad_accum: o.gradAccum,
    passkey_share: o.passkeyShare ?? 0,
    steps: o.steps,
    lr: o.lr,
    min_lr: o.minLr,
    warmup: o.warmup,
    weight_decay: o.weightDecay,
    clip: o.clip,
    seed: o.seed,
    precision: o.precision ?? 'f32',
    clex_freeze_ode: o.clexFreezeOde,
    init_from: o.initFrom ?? null,
    ...(o.initRoundedTo ? { init_rounded_to: o.initRoundedTo } : {}),
    ...(initStep !== undefined ? { init_from_step: initStep } : {}),
    // Recorded only when not the default, so runs saved before the option existed still resume.
    ...(o.trainPositions === 'chunks' ? { train_positions: 'chunks' } : {}),
    ...(o.rope === 'clex' ? { clex_t1_share: o.clexT1Share ?? null, clex_ode_lr_scale: o.clexOdeLrScale ?? 1 } : {}),
  };
}

function differences(saved: Record<string, unknown>, wanted: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const key of new Set([...Object.keys(saved), ...Object.keys(wanted)])) {
    const a = saved[key],
      b = wanted[key];
    if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a))
      out.push(...differences(a as Record<string, unknown>, b as Record<string, unknown>, `${prefix}${key}.`));
    else if (JSON.stringify(a) !== JSON.stringify(b))
      out.push(`${prefix}${key} ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
  }
  return out;
}

/** What the checks of a run's input settle, before anything is written. */
interface RunPlan {
  /** The --init-from checkpoint or Hugging Face folder. */
  source: CheckpointInfo | null;
  tokenizer: models.Tokenizer;
  tokenizerDescription: TokenizerDescription;
  /** Where an 'hf' tokenizer.json is read from now (and copied into every checkpoint of this run). */
  tokenizerFile?: string;
  seqLen: number;
  config: ModelConfigJson;
  trainIds: Int32Array;
  valIds: Int32Array;
  /** Passkey rows per batch. */
  passkeyRows: number;
  /** What --resume compares (runSettings). */
  settings: Record<string, unknown>;
  /** Whether this run continues the checkpoint in --out. */
  resuming: boolean;
}

/** Checks everything the user gave (flags, source, data, an existing checkpoint); writes nothing. */
async function planRun(o: TrainOptions): Promise<RunPlan> {
  checkPrecision(o.precision ?? 'f32', o.device);
  const source = o.initFrom !== undefined ? await readCheckpointInfo('--init-from', o.initFrom) : null;
  const { tokenizer, tokenizerDescription, tokenizerFile } = await runTokenizer(o, source);
  const seqLen = o.seqLen ?? source?.config.max_position_embeddings ?? 64;
  const config = modelConfig(o, source, tokenizer.vocabSize, seqLen);
  const { trainIds, valIds } = tokenizedText(o, tokenizer, seqLen);
  const passkeyRows = passkeyRowsPerBatch(o, tokenizer, seqLen);
  // The source's step too: a fine-tune made from a shorter run of its base must not be resumed as if from the longer one.
  const settings = runSettings(o, config, tokenizerDescription.type, seqLen, source?.step);
  const resuming = await resumesCheckpoint(o, settings, source);
  return {
    source,
    tokenizer,
    tokenizerDescription,
    tokenizerFile,
    seqLen,
    config,
    trainIds,
    valIds,
    passkeyRows,
    settings,
    resuming,
  };
}

/** The source's tokenizer, else --tokenizer's, else bytes; a --tokenizer must agree with the source's. */
async function runTokenizer(
  o: TrainOptions,
  source: CheckpointInfo | null,
): Promise<Pick<RunPlan, 'tokenizer' | 'tokenizerDescription' | 'tokenizerFile'>> {
  const flagged = o.tokenizer === undefined ? null : tokenizerFromFlag(o.tokenizer);
  if (source?.tokenizerDescription && flagged && flagged.description.type !== source.tokenizerDescription.type) {
    throw new UsageError(
      `--tokenizer ${o.tokenizer}: the --init-from checkpoint ${o.initFrom} uses the '${source.tokenizerDescription.type}' tokenizer; drop --tokenizer or match it`,
    );
  }
  if (source && !source.tokenizerDescription && !flagged)
    throw new UsageError(
      `--init-from ${o.initFrom}: the Hugging Face folder has no tokenizer.json; pass --tokenizer PATH/tokenizer.json`,
    );
  const tokenizerDescription: TokenizerDescription = source?.tokenizerDescription ??
    flagged?.description ?? { type: 'byte' };
  const tokenizerFile =
    tokenizerDescription.type !== 'hf'
      ? undefined
      : source?.tokenizerDescription
        ? join(source.dir, 'tokenizer.json')
        : flagged?.path;
  const tokenizer =
    source?.tokenizer ??
    (tokenizerFile ? await models.Tokenizer.fromFile(tokenizerFile) : await makeTokenizer(tokenizerDescription));
  return { tokenizer, tokenizerDescription, tokenizerFile };
}

/** The source's config with this run's positional scheme, or one from the shape flags; validated. */
function modelConfig(o: TrainOptions, source: CheckpointInfo | null, vocab: number, seqLen: number): ModelConfigJson {
  const config: ModelConfigJson = source
    ? { ...source.config, rope_scaling: ropeScaling(o) }
    : shapeConfig(o, vocab, seqLen);
  buildModel(config).dispose(); // validates the config (errors name the field)
  if (o.rope === 'clex' && seqLen > (config.max_position_embeddings ?? seqLen))
    throw new UsageError(
      `--seq-len ${seqLen} exceeds L0 = ${config.max_position_embeddings} of the --init-from model; CLEX trains at L0`,
    );
  return config;
}

/** The training and held-out token ids, each checked to hold a sequence (held-out only when evaluated). */
function tokenizedText(
  o: TrainOptions,
  tokenizer: models.Tokenizer,
  seqLen: number,
): { trainIds: Int32Array; valIds: Int32Array } {
  const text = loadText({ data: o.data, val: o.val, valFraction: o.valFraction });
  const trainIds = Int32Array.from(tokenizer.encode(text.train));
  const valIds = Int32Array.from(tokenizer.encode(text.val));
  if (trainIds.length < seqLen + 1)
    throw new UsageError(
      `--data ${o.data}: the training text has ${trainIds.length} tokens, fewer than one sequence of --seq-len ${seqLen} (+1); give more text or a shorter --seq-len`,
    );
  if (o.evalEvery > 0 && valIds.length < seqLen)
    throw new UsageError(
      `--val: the held-out text has ${valIds.length} tokens, fewer than one sequence of ${seqLen}; give more, or --eval-every 0`,
    );
  return { trainIds, valIds };
}

/** --passkey-share as rows per batch, checked to leave room for a passkey context in a sequence. */
function passkeyRowsPerBatch(o: TrainOptions, tokenizer: models.Tokenizer, seqLen: number): number {
  const passkeyRows = Math.round((o.passkeyShare ?? 0) * o.batchSize);
  if (passkeyRows > 0 && passkeyOverhead(tokenizer) + 2 > seqLen)
    throw new UsageError(
      `--passkey-share ${o.passkeyShare}: a passkey context needs at least ${passkeyOverhead(tokenizer) + 2} tokens, longer than --seq-len ${seqLen}; raise --seq-len or pass --passkey-share 0`,
    );
  return passkeyRows;
}

/**
 * Whether the run continues the checkpoint in --out: one must be there, made with the same settings (only
 * --steps may change), when --resume asks; without --resume, --out must hold none.
 */
async function resumesCheckpoint(
  o: TrainOptions,
  settings: Record<string, unknown>,
  source: CheckpointInfo | null,
): Promise<boolean> {
  const hasCheckpoint = existsSync(join(o.out, io.TRAINER_STATE_FILE));
  const resuming = o.resume === true || (o.resume === 'auto' && hasCheckpoint);
  if (resuming) {
    if (!hasCheckpoint)
      throw new UsageError(
        `--resume: there is no checkpoint in ${o.out} to continue (run without --resume to start one)`,
      );
    const saved = await readCheckpointInfo('--resume', o.out);
    // Defaults for settings that checkpoints of earlier releases lack; --steps may change (HF Trainer /
    // nanoGPT style): the schedule is recomputed from the new total.
    const defaults = {
      passkey_share: 0,
      precision: 'f32',
      ...(o.rope === 'clex' ? { clex_t1_share: null, clex_ode_lr_scale: 1 } : {}),
      ...(source ? { init_from_step: source.step } : {}),
    };
    const diff = differences({ ...defaults, ...saved.run, steps: o.steps }, settings);
    if (diff.length)
      throw new UsageError(
        `--resume: the checkpoint in ${o.out} was made with other settings (${diff.join('; ')}); pass the same flags (only --steps may change), or choose another --out`,
      );
    if (saved.step > o.steps)
      throw new UsageError(
        `--resume: the checkpoint in ${o.out} is at step ${saved.step}, past --steps ${o.steps}; pass --steps ${saved.step} or more`,
      );
  } else if (hasCheckpoint) {
    throw new UsageError(
      `--out ${o.out} already holds a checkpoint (step ${(await readCheckpointInfo('--out', o.out)).step}); pass --resume to continue it, or choose another --out`,
    );
  }
  return resuming;
}

/** A new model from the config, or the --init-from source's weights (moved into this run's positional scheme). */
async function initialModel(
  o: TrainOptions,
  source: CheckpointInfo | null,
  config: ModelConfigJson,
): Promise<CausalModel> {
  const model = source?.hf
    ? await models.fromPretrained(source.dir, {
        device: o.device,
        config: { rope_scaling: config.rope_scaling ?? null } as never,
      })
    : buildModel(config);
  if (source && !source.hf) {
    const loaded = await io.loadCheckpoint(source.dir, { restoreRng: false });
    transferWeights(`--init-from ${source.dir}`, loaded.modelState!, model);
    Object.values(loaded.modelState!).forEach((t) => t.dispose());
    Object.values(loaded.optimizerState?.state ?? {}).forEach((s) =>
      Object.values(s.buffers).forEach((t) => t.dispose()),
    );
  }
  return model;
}

/** Step timings: seconds in all (a resumed run's included), ms per step after the first, throughput since the last log line. */
class StepClock {
  private timedMs = 0;
  private timedSteps = 0;
  private intervalStart = performance.now();
  private intervalSteps = 0;

  constructor(
    private readonly firstStep: number,
    private readonly tokensPerStep: number,
    public elapsed: number,
  ) {}

  /** Counts a step that took `ms`; returns the tokens per second since the last log line. */
  count(step: number, ms: number): number {
    this.elapsed += ms / 1000;
    if (step > this.firstStep) {
      this.timedMs += ms;
      this.timedSteps++;
    }
    this.intervalSteps++;
    return (this.intervalSteps * this.tokensPerStep) / ((performance.now() - this.intervalStart) / 1000);
  }

  /** After a log line: throughput counts from here. */
  restartInterval(): void {
    this.intervalStart = performance.now();
    this.intervalSteps = 0;
  }

  /** Mean ms per step, the first (which compiles kernels) left out. */
  get msPerStep(): number {
    return this.timedMs / Math.max(this.timedSteps, 1);
  }
}

/**
 * One step's gradients summed over --grad-accum micro-batches (each loss scaled by the GradScaler, which
 * passes it through at f32); returns the step's mean loss.
 */
async function accumulateGradients(
  o: TrainOptions,
  plan: RunPlan,
  t: Pick<Trainee, 'model' | 'scaler'>,
  step: number,
): Promise<number> {
  const passkey = { tokenizer: plan.tokenizer, rows: plan.passkeyRows };
  let loss = 0;
  for (let micro = 0; micro < o.gradAccum; micro++) {
    loss += await scope(async () => {
      const batch = trainingBatch(plan.trainIds, {
        seed: o.seed,
        step,
        micro,
        batchSize: o.batchSize,
        seqLen: plan.seqLen,
        passkey,
      });
      const batchLossValue = await inPrecision(o.precision ?? 'f32', () => batchLoss(t.model, batch));
      const scaled = t.scaler.scale(o.gradAccum > 1 ? batchLossValue.div(o.gradAccum) : batchLossValue);
      await scaled.backwardAsync(); // async: CLEX with ode_device 'cpu' reads its gradient back
      return (await batchLossValue.item()) / o.gradAccum;
    });
  }
  return loss;
}

/** Lets the event loop run: on the cpu backend a step is all microtasks, and a Ctrl-C is only seen here. */
const yieldToEventLoop = () => new Promise((resolve) => setImmediate(resolve));

/** The model and what updates it. */
interface Trainee {
  model: CausalModel;
  optimizer: optim.AdamW;
  scheduler: optim.LRScheduler;
  /** Scales the loss under --precision f16-mixed; disabled (a pass-through) under f32. */
  scaler: optim.GradScaler;
  /** Clips the gradients (global norm --clip). */
  clip: () => unknown;
}

interface StepStats {
  step: number;
  loss: number;
  /** The rate the step was taken with. */
  lr: number;
  tokensPerSecond: number;
}

/** f16-mixed: the loss scale for the next step and the steps skipped so far (on overflow); nothing under f32. */
function scalerStats(scaler: optim.GradScaler): { lossScale?: number; skippedSteps?: number } {
  return scaler.enabled ? { lossScale: scaler.getScale(), skippedSteps: scaler.skippedSteps } : {};
}

/**
 * The steps of a run, from `start` to --steps: each accumulates gradients and updates; every --log-every
 * steps a metrics line (and an evaluation every --eval-every); a checkpoint every --save-every steps, at
 * the end, and when a stop is requested (Ctrl-C, SIGTERM), which ends the run after that step.
 */
class TrainingLoop {
  private readonly metrics: MetricsLog;
  private readonly clock: StepClock;
  private readonly evalTokens: Int32Array;
  private readonly stop: StopRequest;
  private readonly progress: TrainingProgress;
  private lastSaved: number;
  finalLoss = NaN;

  constructor(
    private readonly o: TrainOptions,
    private readonly plan: RunPlan,
    private readonly t: Trainee,
    private readonly start: number,
    private readonly label: string,
  ) {
    this.metrics = new MetricsLog(join(o.out, 'metrics.jsonl'));
    this.metrics.startAt(start - 1);
    const { valIds, seqLen } = plan;
    this.clock = new StepClock(
      start,
      o.batchSize * o.gradAccum * seqLen,
      readMetrics(this.metrics.path).at(-1)?.elapsed_s ?? 0,
    );
    this.evalTokens = valIds.subarray(
      0,
      Math.max(seqLen, Math.floor(Math.min(valIds.length, o.evalTokens) / seqLen) * seqLen),
    );
    this.stop = new StopRequest().install();
    this.progress = new TrainingProgress(label, o.steps, start);
    this.lastSaved = start - 1;
  }

  /** Trains to --steps; returns the step a stop request ended the run after, else null. */
  async run(): Promise<number | null> {
    this.t.model.train();
    for (let step = this.start; step <= this.o.steps; step++) {
      const last = step === this.o.steps;
      const stats = await this.trainStep(step);
      if (step % this.o.logEvery === 0 || last) await this.log(stats, last);
      await yieldToEventLoop();
      if (step % this.o.saveEvery === 0 || last || this.stop.requested) await this.checkpoint(step);
      if (this.stop.requested) {
        this.progress.stop();
        console.log(
          `${this.label}: interrupted; checkpoint saved at step ${step} in ${this.o.out} (continue with --resume)`,
        );
        return step;
      }
    }
    return null;
  }

  /** Gradients over the micro-batches, then clipping, the update and the schedule's next rate. */
  private async trainStep(step: number): Promise<StepStats> {
    const { o, t } = this;
    const t0 = performance.now();
    const lr = t.optimizer.paramGroups[0].lr;
    const loss = await accumulateGradients(o, this.plan, t, step);
    if (!Number.isFinite(loss))
      throw new UsageError(
        `training diverged at step ${step} (loss ${loss}); lower --lr or raise --warmup. The last good checkpoint in ${o.out} is at step ${this.lastSaved}`,
      );
    await scope(async () => {
      if (o.clip > 0) {
        t.scaler.unscale(t.optimizer); // clip the true gradients
        t.clip();
      }
      await t.scaler.step(t.optimizer); // f16-mixed: skipped when a gradient overflowed
      t.scaler.update();
      t.scheduler.step(); // the schedule follows the step count, skipped steps included (as with torch)
      t.model.zeroGrad(); // also clears the gradients of frozen CLEX weights
    });
    this.finalLoss = loss;
    const tokensPerSecond = this.clock.count(step, performance.now() - t0);
    this.progress.update(step, { loss, lr, tokensPerSecond, ...scalerStats(t.scaler) });
    return { step, loss, lr, tokensPerSecond };
  }

  /** Appends a metrics line, with the held-out perplexity when an evaluation is due. */
  private async log({ step, loss, lr, tokensPerSecond }: StepStats, last: boolean): Promise<void> {
    const { liveBuffers, liveBytes } = memory(); // between steps: should stay constant over a run
    const { lossScale, skippedSteps } = scalerStats(this.t.scaler);
    const record = {
      step,
      loss,
      lr,
      tokens_per_s: Math.round(tokensPerSecond),
      elapsed_s: Number(this.clock.elapsed.toFixed(3)),
      live_buffers: liveBuffers,
      live_bytes: liveBytes,
      ...(lossScale !== undefined ? { loss_scale: lossScale, skipped_steps: skippedSteps } : {}),
    };
    const evaluate = this.o.evalEvery > 0 && (step % this.o.evalEvery === 0 || last);
    this.metrics.append(
      evaluate
        ? { ...record, val_ppl: await perplexity(this.t.model, this.evalTokens, this.plan.seqLen, this.o.precision) }
        : record,
    );
    if (evaluate) this.t.model.train();
    this.clock.restartInterval();
  }

  private async checkpoint(step: number): Promise<void> {
    const { model, optimizer, scheduler, scaler } = this.t;
    const { tokenizerDescription: tokenizer, tokenizerFile, settings: run } = this.plan;
    await saveTrainingCheckpoint(this.o.out, {
      model,
      optimizer,
      scheduler,
      ...(scaler.enabled ? { scaler } : {}),
      step,
      tokenizer,
      tokenizerFile,
      run,
    });
    this.lastSaved = step;
  }

  /** Mean ms per step in this process (the first, which compiles kernels, left out). */
  get msPerStep(): number {
    return this.clock.msPerStep;
  }

  /** Ends the progress display and the signal handling. */
  close(): void {
    this.progress.stop();
    this.stop.uninstall();
  }
}

/** Writes the trained model as a Hugging Face folder (--export-hf), with an 'hf' tokenizer's tokenizer.json. */
async function exportHuggingFace(dir: string, model: CausalModel, plan: RunPlan, label: string): Promise<void> {
  await model.savePretrained(dir, { tokenizer: plan.tokenizerDescription.type === 'hf' ? plan.tokenizer : undefined });
  console.log(
    `${label}: wrote a Hugging Face folder to ${dir} (models.fromPretrained, or transformers for LLaMA/NeoX without CLEX)`,
  );
}

/** AdamW over the parameter groups, its cosine schedule with warmup, the gradient clipping and the loss scaler. */
function optimization(model: CausalModel, o: TrainOptions) {
  const { groups, trainable } = parameterGroups(model, o.lr, o.weightDecay, o.clexFreezeOde, o.clexOdeLrScale);
  // A learned CLEX ODE is clipped apart from the rest: its gradient (norm 10-100 at t > 1) would otherwise set the global clip factor.
  const clip =
    model.clex && !o.clexFreezeOde
      ? () => models.clipClexGradNorm(model, o.clip)
      : () => optim.clipGradNorm(trainable, o.clip);
  const optimizer = new optim.AdamW(groups, { lr: o.lr });
  const scheduler = optim.lr.cosineWithWarmup(optimizer, {
    warmupSteps: Math.min(o.warmup, o.steps),
    totalSteps: o.steps,
    minLrRatio: o.minLr / o.lr,
  });
  const scaler = new optim.GradScaler({ enabled: o.precision === 'f16-mixed' });
  return { optimizer, scheduler, clip, scaler };
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  setDefaultDevice(o.device);
  const label = o.label ?? 'train';
  // --- Everything the user gave is checked before anything is written. ---
  const plan = await planRun(o);

  // --- Build, load, and only then write. ---
  manualSeed(o.seed);
  const model = await initialModel(o, plan.source, plan.config);
  if (model.clex && o.clexT1Share !== undefined) model.clex.trainingT1Share = o.clexT1Share;
  model.rotary.trainingPositions = o.trainPositions ?? 'standard';
  if (o.initRoundedTo && !plan.resuming) model.to({ dtype: o.initRoundedTo }).to({ dtype: 'float32' });
  const { optimizer, scheduler, clip, scaler } = optimization(model, o);
  let start = 1;
  if (plan.resuming)
    start =
      (await io.loadCheckpoint(o.out, { model, optimizer, scheduler, ...(scaler.enabled ? { scaler } : {}) })).step + 1;
  mkdirSync(o.out, { recursive: true });

  const loop = new TrainingLoop(o, plan, { model, optimizer, scheduler, scaler, clip }, start, label);
  const result = (step: number, interrupted: boolean): TrainResult => ({
    out: o.out,
    step,
    interrupted,
    finalLoss: loop.finalLoss,
    msPerStep: loop.msPerStep,
  });
  try {
    const stoppedAt = await loop.run();
    if (stoppedAt !== null) return result(stoppedAt, true);
    if (o.exportHf) await exportHuggingFace(o.exportHf, model, plan, label);
  } finally {
    loop.close();
    optimizer.dispose();
    model.dispose();
  }
  return result(Math.max(o.steps, start - 1), false);
}
