// The decoder training step of `npm run bench`: the main job's LLaMA trained as examples/lib/trainer.ts
// trains it (AdamW with weight decay on matrices and embeddings only, gradient clipping, CLEX's ODE in
// its own group and clip, steps in `scope`, backwardAsync), with the loss read once per LOSS_EVERY steps,
// in float32 or mixed precision (f16-mixed: the forward under autocast('float16'), backward outside it,
// float32 master weights, gradients and AdamW state, optim.GradScaler between backward and the update).
import { emptyCache, memory, models, optim, resetPeak, scope, seededUniform, tensor } from '../index.js';
import { inPrecision, type Precision } from '../examples/lib/precision.js';
import { parameterGroups } from '../examples/lib/trainer.js';
import { countTraffic, median, type TrafficPerStep } from './measure.js';

export interface DecoderShape {
  layers: number;
  hidden: number;
  heads: number;
  batch: number;
  seqLen: number;
  vocab: number;
}

/** `npm start`'s model: byte-level LLaMA, 2 layers × 64, 4 heads of 16, batch 8 × 64. */
export const MAIN_JOB_DECODER: DecoderShape = { layers: 2, hidden: 64, heads: 4, batch: 8, seqLen: 64, vocab: 256 };
/** A larger one: 4 layers × 256 (4 heads of 64) at T = 256, batch 1 (a step is seconds on lavapipe). */
export const LARGE_DECODER: DecoderShape = { layers: 4, hidden: 256, heads: 4, batch: 1, seqLen: 256, vocab: 256 };

/**
 * ~20M parameters (6 layers × 512, 8 heads of 64; 19.2M), trained on 8 × 512 tokens a step (nanoGPT's
 * small character model trains on 16,384): where the activations, not the weights, fill the memory
 * (gpu-report's middle size).
 */
export const TWENTY_M_DECODER: DecoderShape = { layers: 6, hidden: 512, heads: 8, batch: 8, seqLen: 512, vocab: 256 };

/** The main job's pretraining settings (examples/main.ts), at a constant rate: the schedule is host arithmetic. */
export const TRAINING = { lr: 3e-3, weightDecay: 0.01, clip: 1 };
/** The main job logs (reads) the loss every 10 steps. */
export const LOSS_EVERY = 10;

export type RopeChoice = 'plain' | 'clex';

/** The main job's CLEX fine-tune: max_factor 8, dopri5, backprop through the solver. */
const CLEX_SCALING = {
  type: 'clex',
  max_factor: 8,
  param_factor: 1,
  act: 'tanh',
  ode_method: 'dopri5',
  ode_gradient: 'backprop',
} as const;

export function describeShape(s: DecoderShape): string {
  return `${s.layers}×${s.hidden} b${s.batch}×${s.seqLen}`;
}

/** The LLaMA config the trainer builds for this shape (its intermediate size rule, untied head). */
export function llamaConfig(s: DecoderShape, rope: RopeChoice): models.LlamaConfigInput {
  return {
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.heads,
    intermediate_size: Math.round((8 * s.hidden) / 3 / 8) * 8,
    max_position_embeddings: s.seqLen,
    rope_scaling: rope === 'clex' ? { ...CLEX_SCALING } : null,
  };
}

/** `count` token batches [batch·seqLen] from a fixed seed (their values do not change the work). */
export function tokenBatches(s: DecoderShape, count: number, seed = 1234): Int32Array[] {
  const next = seededUniform(seed);
  return Array.from({ length: count }, () =>
    Int32Array.from({ length: s.batch * s.seqLen }, () => Math.floor(next() * s.vocab)),
  );
}

/** One framework's decoder training step. */
export interface DecoderTrainer {
  readonly numParameters: number;
  /** One optimizer step on ids [batch·seqLen]; returns the loss before the update when asked to read it. */
  step(ids: Int32Array, readLoss: boolean): Promise<number | null>;
  dispose(): void;
}

export class DawngradDecoder implements DecoderTrainer {
  readonly model: models.LlamaForCausalLM;
  /** Each parameter's weight decay, by its HF name (the trainer's groups). */
  readonly weightDecay = new Map<string, number>();
  private readonly optimizer: optim.AdamW;
  private readonly clip: () => unknown;
  /** Dynamic loss scaling under f16-mixed (a pass-through under f32), as the trainer has it. */
  private readonly scaler: optim.GradScaler;

  constructor(
    readonly shape: DecoderShape,
    rope: RopeChoice,
    readonly precision: Precision = 'f32',
  ) {
    const model = new models.LlamaForCausalLM(llamaConfig(shape, rope));
    const { groups, trainable } = parameterGroups(model, TRAINING.lr, TRAINING.weightDecay, false);
    const groupOf = new Map(
      groups.flatMap((g) => [...g.params].map((p) => [p, g.weightDecay ?? TRAINING.weightDecay] as const)),
    );
    for (const [name, p] of model.namedParameters()) this.weightDecay.set(name, groupOf.get(p) ?? 0);
    this.optimizer = new optim.AdamW(groups, { lr: TRAINING.lr });
    this.clip = model.clex
      ? () => models.clipClexGradNorm(model, TRAINING.clip)
      : () => optim.clipGradNorm(trainable, TRAINING.clip);
    this.model = model.train();
    this.scaler = new optim.GradScaler({ enabled: precision === 'f16-mixed' });
  }

  get numParameters(): number {
    return this.model.numParameters();
  }

  async step(ids: Int32Array, readLoss: boolean): Promise<number | null> {
    const { batch, seqLen } = this.shape;
    const loss = await scope(async () => {
      const x = tensor(ids, { dtype: 'int32', shape: [batch, seqLen] });
      const out = await inPrecision(this.precision, () => this.model.forward(x, { labels: x }));
      // async: CLEX with ode_device 'cpu' reads its gradient back
      await this.scaler.scale(out.loss!).backwardAsync();
      return readLoss ? out.loss!.item() : null;
    });
    await scope(async () => {
      this.scaler.unscale(this.optimizer);
      this.clip();
      await this.scaler.step(this.optimizer);
      this.scaler.update();
      this.model.zeroGrad();
    });
    return loss;
  }

  dispose(): void {
    this.optimizer.dispose();
    this.model.dispose();
  }
}

export interface StepTiming {
  msPerStep: number;
  tokensPerSecond: number;
  /** dawngrad's counters over the timed steps (zero for a TF.js run: they count dawngrad's work only). */
  traffic: TrafficPerStep;
}

/** Untimed steps before timing: the first compiles kernels, the second reuses pooled buffers; both read the loss. */
const WARMUP_STEPS = 2;

/**
 * Median over `blocks` blocks of LOSS_EVERY steps, each ending with the loss read, after WARMUP_STEPS
 * untimed steps.
 */
export async function timeTraining(trainer: DecoderTrainer, s: DecoderShape, blocks: number): Promise<StepTiming> {
  const [timing] = await timeTrainingInterleaved([trainer], s, blocks);
  return timing;
}

/**
 * Like timeTraining for several trainers, their blocks interleaved (A B A B ...), so a change in the
 * machine's load during the run shifts every trainer alike and their ratio stays fair.
 */
export async function timeTrainingInterleaved(
  trainers: readonly DecoderTrainer[],
  s: DecoderShape,
  blocks: number,
): Promise<StepTiming[]> {
  const batches = tokenBatches(s, LOSS_EVERY);
  for (const trainer of trainers) for (let i = 0; i < WARMUP_STEPS; i++) await trainer.step(batches[i], true);
  const ms = trainers.map((): number[] => []);
  const traffic = trainers.map(() => ({ dispatches: 0, submits: 0, readbacks: 0 }));
  for (let b = 0; b < blocks; b++) {
    for (const [k, trainer] of trainers.entries()) {
      const counted = countTraffic();
      const t0 = performance.now();
      for (let i = 0; i < LOSS_EVERY; i++) await trainer.step(batches[i], i === LOSS_EVERY - 1);
      ms[k].push(performance.now() - t0);
      const t = counted(blocks * LOSS_EVERY);
      traffic[k].dispatches += t.dispatches;
      traffic[k].submits += t.submits;
      traffic[k].readbacks += t.readbacks;
    }
  }
  return ms.map((times, k) => {
    const msPerStep = median(times) / LOSS_EVERY;
    return { msPerStep, tokensPerSecond: (s.batch * s.seqLen * 1000) / msPerStep, traffic: traffic[k] };
  });
}

/**
 * Live GPU bytes at the peak of one training step of a fresh trainer (weights, gradients, AdamW state,
 * activations and temporaries: what must fit on the device), after one untimed step that creates the
 * optimizer state and compiles the kernels. Other live tensors are not counted.
 */
export async function stepPeakBytes(
  s: DecoderShape,
  rope: RopeChoice,
  precision: Precision,
): Promise<{ peakBytes: number; parameters: number }> {
  emptyCache();
  const before = memory().liveBytes;
  const trainer = new DawngradDecoder(s, rope, precision);
  try {
    const [warm, measured] = tokenBatches(s, 2);
    await trainer.step(warm, true);
    resetPeak();
    await trainer.step(measured, true);
    return { peakBytes: memory().peakBytes - before, parameters: trainer.numParameters };
  } finally {
    trainer.dispose();
    emptyCache();
  }
}
