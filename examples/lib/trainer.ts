// The training run behind `npm run train` and the main job: builds (or fine-tunes, --init-from) a
// LLaMA / GPT-NeoX model, trains it with AdamW (weight decay only on matrices), cosine schedule with
// warm-up, gradient clipping and accumulation; logs metrics.jsonl, shows progress, evaluates held-out
// perplexity, checkpoints every N steps, at the end and on SIGINT/SIGTERM, and resumes exactly.
// Every check of the user's input happens before anything is written.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, manualSeed, memory, models, optim, scope, setDefaultDevice, type Tensor } from '../../index.js';
import { buildModel, readCheckpointInfo, saveTrainingCheckpoint, transferWeights, type CausalModel, type ModelConfigJson } from './checkpoint.js';
import { UsageError } from './cli.js';
import { loadText, makeTokenizer, tokenizerFromFlag, trainingBatch, type TokenizerDescription, type TokenizerKind, type TrainingBatch } from './data.js';
import { perplexity } from './evaluate.js';
import { passkeyOverhead } from './passkey.js';
import { MetricsLog, readMetrics } from './metrics.js';
import { TrainingProgress } from './progress.js';
import { StopRequest } from './signals.js';

/** --rope: plain RoPE ('none') or any rope_scaling type of the models. */
export const ROPES = ['none', ...models.ROPE_SCALING_TYPES] as const;
export type RopeChoice = (typeof ROPES)[number];

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
    case 'none': return null;
    case 'clex': return { type: 'clex', max_factor: o.maxFactor, param_factor: 1, act: 'tanh', ode_method: o.clexMethod, ode_gradient: o.clexGradient };
    default: return { type: o.rope, factor: o.ropeFactor };
  }
}

function shapeConfig(o: TrainOptions, vocab: number, L0: number): ModelConfigJson {
  const fromFile = o.configFile ? readConfigFile(o.configFile) : {};
  const base: ModelConfigJson = o.model === 'neox'
    ? { model_type: 'gpt_neox', hidden_size: o.hidden, num_hidden_layers: o.layers, num_attention_heads: o.heads, intermediate_size: o.intermediate ?? 4 * o.hidden, rotary_pct: 1 }
    : { model_type: 'llama', hidden_size: o.hidden, num_hidden_layers: o.layers, num_attention_heads: o.heads, num_key_value_heads: o.kvHeads ?? o.heads, intermediate_size: o.intermediate ?? Math.round((8 * o.hidden) / 3 / 8) * 8 };
  const merged = { ...base, ...fromFile };
  if (typeof merged.vocab_size === 'number' && merged.vocab_size < vocab) throw new UsageError(`--config ${o.configFile}: vocab_size ${merged.vocab_size} is smaller than the tokenizer's ${vocab} ids`);
  return { ...merged, vocab_size: merged.vocab_size ?? vocab, max_position_embeddings: L0, rope_scaling: ropeScaling(o) };
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
export function parameterGroups(model: CausalModel, lr: number, weightDecay: number, freezeOde: boolean, odeLrScale = 1): { groups: optim.ParamGroupInput<optim.AdamHyper>[]; trainable: Tensor[] } {
  const groups: optim.ParamGroupInput<optim.AdamHyper>[] = optim.weightDecayGroups(model, weightDecay, { exclude: model.clex?.parameters() });
  const odeGroup = freezeOde ? null : models.clexOdeParamGroup(model, lr);
  if (odeGroup) groups.push({ ...odeGroup, lr: (odeGroup.lr ?? lr) * odeLrScale });
  return { groups, trainable: groups.flatMap((g) => [...g.params]) };
}

/**
 * The training loss of one micro-batch: next-token cross-entropy over its text rows, plus, when it has
 * passkey rows, the cross-entropy of their answers alone (its own mean: one answer token per row would
 * otherwise weigh ~1/L0 of a row, too little for the model to learn retrieval within a short budget).
 */
export async function batchLoss(model: CausalModel, batch: TrainingBatch): Promise<Tensor> {
  const { ids, passkeyRows: P, passkeyLabels } = batch;
  if (P === 0 || !passkeyLabels) return (await model.forward(ids, { labels: ids })).loss!;
  const { logits } = await model.forward(ids);
  const B = ids.shape[0];
  const passkeyLoss = models.shiftedLoss(logits.narrow(0, 0, P), passkeyLabels);
  return P === B ? passkeyLoss : models.shiftedLoss(logits.narrow(0, P, B - P), ids.narrow(0, P, B - P)).add(passkeyLoss);
}

/** What must match for --resume to continue a run (all but steps, which may grow). */
function runSettings(o: TrainOptions, config: ModelConfigJson, tokenizer: TokenizerKind, seqLen: number, initStep?: number): Record<string, unknown> {
  return {
    config, tokenizer, data: o.data, val: o.val ?? null, val_fraction: o.valFraction, seq_len: seqLen, batch_size: o.batchSize, grad_accum: o.gradAccum, passkey_share: o.passkeyShare ?? 0,
    steps: o.steps, lr: o.lr, min_lr: o.minLr, warmup: o.warmup, weight_decay: o.weightDecay, clip: o.clip, seed: o.seed,
    clex_freeze_ode: o.clexFreezeOde, init_from: o.initFrom ?? null, ...(initStep !== undefined ? { init_from_step: initStep } : {}),
    ...(o.rope === 'clex' ? { clex_t1_share: o.clexT1Share ?? null, clex_ode_lr_scale: o.clexOdeLrScale ?? 1 } : {}),
  };
}

function differences(saved: Record<string, unknown>, wanted: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const key of new Set([...Object.keys(saved), ...Object.keys(wanted)])) {
    const a = saved[key], b = wanted[key];
    if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a)) out.push(...differences(a as Record<string, unknown>, b as Record<string, unknown>, `${prefix}${key}.`));
    else if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${prefix}${key} ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
  }
  return out;
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  setDefaultDevice(o.device);
  const label = o.label ?? 'train';
  // --- Everything the user gave is checked before anything is written. ---
  const source = o.initFrom !== undefined ? await readCheckpointInfo('--init-from', o.initFrom) : null;
  const flagged = o.tokenizer === undefined ? null : tokenizerFromFlag(o.tokenizer);
  if (source?.tokenizerDescription && flagged && flagged.description.type !== source.tokenizerDescription.type) {
    throw new UsageError(`--tokenizer ${o.tokenizer}: the --init-from checkpoint ${o.initFrom} uses the '${source.tokenizerDescription.type}' tokenizer; drop --tokenizer or match it`);
  }
  if (source && !source.tokenizerDescription && !flagged) throw new UsageError(`--init-from ${o.initFrom}: the Hugging Face folder has no tokenizer.json; pass --tokenizer PATH/tokenizer.json`);
  const tokenizerDescription: TokenizerDescription = source?.tokenizerDescription ?? flagged?.description ?? { type: 'byte' };
  // Where an 'hf' tokenizer.json is read from now (and copied into every checkpoint of this run).
  const tokenizerFile = tokenizerDescription.type !== 'hf' ? undefined : source?.tokenizerDescription ? join(source.dir, 'tokenizer.json') : flagged?.path;
  const tokenizer = source?.tokenizer ?? (tokenizerFile ? await models.Tokenizer.fromFile(tokenizerFile) : await makeTokenizer(tokenizerDescription));
  const tokenizerKind = tokenizerDescription.type;
  const sourceL0 = source?.config.max_position_embeddings;
  const seqLen = o.seqLen ?? sourceL0 ?? 64;
  const config: ModelConfigJson = source
    ? { ...source.config, rope_scaling: ropeScaling(o) }
    : shapeConfig(o, tokenizer.vocabSize, seqLen);
  buildModel(config).dispose(); // validates the config (errors name the field)
  if (o.rope === 'clex' && seqLen > (config.max_position_embeddings ?? seqLen)) throw new UsageError(`--seq-len ${seqLen} exceeds L0 = ${config.max_position_embeddings} of the --init-from model; CLEX trains at L0`);

  const text = loadText({ data: o.data, val: o.val, valFraction: o.valFraction });
  const trainIds = Int32Array.from(tokenizer.encode(text.train));
  const valIds = Int32Array.from(tokenizer.encode(text.val));
  if (trainIds.length < seqLen + 1) throw new UsageError(`--data ${o.data}: the training text has ${trainIds.length} tokens, fewer than one sequence of --seq-len ${seqLen} (+1); give more text or a shorter --seq-len`);
  if (o.evalEvery > 0 && valIds.length < seqLen) throw new UsageError(`--val: the held-out text has ${valIds.length} tokens, fewer than one sequence of ${seqLen}; give more, or --eval-every 0`);

  const passkeyRows = Math.round((o.passkeyShare ?? 0) * o.batchSize);
  if (passkeyRows > 0 && passkeyOverhead(tokenizer) + 2 > seqLen) throw new UsageError(`--passkey-share ${o.passkeyShare}: a passkey context needs at least ${passkeyOverhead(tokenizer) + 2} tokens, longer than --seq-len ${seqLen}; raise --seq-len or pass --passkey-share 0`);
  // The source's step too: a fine-tune made from a shorter run of its base must not be resumed as if from the longer one.
  const settings = runSettings(o, config, tokenizerKind, seqLen, source?.step);
  const hasCheckpoint = existsSync(join(o.out, io.TRAINER_STATE_FILE));
  const resuming = o.resume === true || (o.resume === 'auto' && hasCheckpoint);
  if (resuming) {
    if (!hasCheckpoint) throw new UsageError(`--resume: there is no checkpoint in ${o.out} to continue (run without --resume to start one)`);
    const saved = await readCheckpointInfo('--resume', o.out);
    // Defaults for settings that checkpoints of earlier releases lack; --steps may change (HF Trainer /
    // nanoGPT style): the schedule is recomputed from the new total.
    const defaults = { passkey_share: 0, ...(o.rope === 'clex' ? { clex_t1_share: null, clex_ode_lr_scale: 1 } : {}), ...(source ? { init_from_step: source.step } : {}) };
    const diff = differences({ ...defaults, ...saved.run, steps: o.steps }, settings);
    if (diff.length) throw new UsageError(`--resume: the checkpoint in ${o.out} was made with other settings (${diff.join('; ')}); pass the same flags (only --steps may change), or choose another --out`);
    if (saved.step > o.steps) throw new UsageError(`--resume: the checkpoint in ${o.out} is at step ${saved.step}, past --steps ${o.steps}; pass --steps ${saved.step} or more`);
  } else if (hasCheckpoint) {
    throw new UsageError(`--out ${o.out} already holds a checkpoint (step ${(await readCheckpointInfo('--out', o.out)).step}); pass --resume to continue it, or choose another --out`);
  }

  // --- Build, load, and only then write. ---
  manualSeed(o.seed);
  const model = source?.hf ? await models.fromPretrained(source.dir, { device: o.device, config: { rope_scaling: config.rope_scaling ?? null } as never }) : buildModel(config);
  if (source && !source.hf) {
    const loaded = await io.loadCheckpoint(source.dir, { restoreRng: false });
    transferWeights(`--init-from ${source.dir}`, loaded.modelState!, model);
    Object.values(loaded.modelState!).forEach((t) => t.dispose());
    Object.values(loaded.optimizerState?.state ?? {}).forEach((s) => Object.values(s.buffers).forEach((t) => t.dispose()));
  }
  if (model.clex && o.clexT1Share !== undefined) model.clex.trainingT1Share = o.clexT1Share;
  const { groups, trainable } = parameterGroups(model, o.lr, o.weightDecay, o.clexFreezeOde, o.clexOdeLrScale);
  // A learned CLEX ODE is clipped apart from the rest: its gradient (norm 10-100 at t > 1) would otherwise set the global clip factor.
  const clip = model.clex && !o.clexFreezeOde ? () => models.clipClexGradNorm(model, o.clip) : () => optim.clipGradNorm(trainable, o.clip);
  const optimizer = new optim.AdamW(groups, { lr: o.lr });
  const scheduler = optim.lr.cosineWithWarmup(optimizer, { warmupSteps: Math.min(o.warmup, o.steps), totalSteps: o.steps, minLrRatio: o.minLr / o.lr });
  let start = 1;
  if (resuming) start = (await io.loadCheckpoint(o.out, { model, optimizer, scheduler })).step + 1;
  mkdirSync(o.out, { recursive: true });
  const metrics = new MetricsLog(join(o.out, 'metrics.jsonl'));
  metrics.startAt(start - 1);
  let elapsed = readMetrics(metrics.path).at(-1)?.elapsed_s ?? 0;

  const save = (step: number) => saveTrainingCheckpoint(o.out, { model, optimizer, scheduler, step, tokenizer: tokenizerDescription, tokenizerFile, run: settings });
  const evalTokens = valIds.subarray(0, Math.max(seqLen, Math.floor(Math.min(valIds.length, o.evalTokens) / seqLen) * seqLen));
  const stop = new StopRequest().install();
  const progress = new TrainingProgress(label, o.steps, start);
  const tokensPerStep = o.batchSize * o.gradAccum * seqLen;
  const passkey = { tokenizer, rows: passkeyRows };
  let finalLoss = NaN, interrupted = false, lastSaved = start - 1, timedMs = 0, timedSteps = 0;
  let intervalStart = performance.now(), intervalSteps = 0;
  model.train();
  try {
    for (let step = start; step <= o.steps; step++) {
      const t0 = performance.now();
      const lr = optimizer.paramGroups[0].lr;
      let loss = 0;
      for (let micro = 0; micro < o.gradAccum; micro++) {
        loss += await scope(async () => {
          const batch = trainingBatch(trainIds, { seed: o.seed, step, micro, batchSize: o.batchSize, seqLen, passkey });
          const batchLossValue = await batchLoss(model, batch);
          const scaled = o.gradAccum > 1 ? batchLossValue.div(o.gradAccum) : batchLossValue;
          await scaled.backwardAsync(); // async: CLEX with ode_device 'cpu' reads its gradient back
          return (await batchLossValue.item()) / o.gradAccum;
        });
      }
      if (!Number.isFinite(loss)) throw new UsageError(`training diverged at step ${step} (loss ${loss}); lower --lr or raise --warmup. The last good checkpoint in ${o.out} is at step ${lastSaved}`);
      scope(() => {
        if (o.clip > 0) clip();
        optimizer.step();
        scheduler.step();
        model.zeroGrad(); // also clears the gradients of frozen CLEX weights
      });
      finalLoss = loss;
      const ms = performance.now() - t0;
      elapsed += ms / 1000;
      if (step > start) { timedMs += ms; timedSteps++; }
      intervalSteps++;
      const tokensPerSecond = (intervalSteps * tokensPerStep) / ((performance.now() - intervalStart) / 1000);
      progress.update(step, { loss, lr, tokensPerSecond });
      const last = step === o.steps;
      if (step % o.logEvery === 0 || last) {
        const { liveBuffers, liveBytes } = memory(); // between steps: should stay constant over a run
        const record = { step, loss, lr, tokens_per_s: Math.round(tokensPerSecond), elapsed_s: Number(elapsed.toFixed(3)), live_buffers: liveBuffers, live_bytes: liveBytes };
        const evaluate = o.evalEvery > 0 && (step % o.evalEvery === 0 || last);
        metrics.append(evaluate ? { ...record, val_ppl: await perplexity(model, evalTokens, seqLen) } : record);
        if (evaluate) model.train();
        intervalStart = performance.now();
        intervalSteps = 0;
      }
      // Let the event loop run: on the cpu backend a step is all microtasks, and a Ctrl-C is only seen here.
      await new Promise((resolve) => setImmediate(resolve));
      if (step % o.saveEvery === 0 || last || stop.requested) {
        await save(step);
        lastSaved = step;
      }
      if (stop.requested) {
        interrupted = true;
        progress.stop();
        console.log(`${label}: interrupted; checkpoint saved at step ${step} in ${o.out} (continue with --resume)`);
        return { out: o.out, step, interrupted, finalLoss, msPerStep: timedMs / Math.max(timedSteps, 1) };
      }
    }
    if (o.exportHf) {
      await model.savePretrained(o.exportHf, { tokenizer: tokenizerKind === 'hf' ? tokenizer : undefined });
      console.log(`${label}: wrote a Hugging Face folder to ${o.exportHf} (models.fromPretrained, or transformers for LLaMA/NeoX without CLEX)`);
    }
  } finally {
    progress.stop();
    stop.uninstall();
    optimizer.dispose();
    model.dispose();
  }
  return { out: o.out, step: Math.max(o.steps, start - 1), interrupted, finalLoss, msPerStep: timedMs / Math.max(timedSteps, 1) };
}
