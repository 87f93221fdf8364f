// Checkpoints of the scripts, on top of io.saveCheckpoint / io.loadCheckpoint (atomic saves): the
// model is rebuilt from its HF-style config.json (model_type, sizes, rope_scaling), the tokenizer and
// the run's settings live in trainer_state.json `extra`. Also: weights from one positional scheme into
// another (fine-tuning a plain-RoPE base with CLEX, PI or YaRN), and the CLEX ODE reset used by the
// ablations.
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, models, nn, type optim } from '../../index.js';
import { UsageError } from './cli.js';
import { checkTokenizerDescription, makeTokenizer, type TokenizerDescription } from './data.js';

export type CausalModel = models.LlamaForCausalLM | models.GPTNeoXForCausalLM;
export type ModelConfigJson = Record<string, unknown> & {
  model_type?: string;
  rope_scaling?: Partial<models.RopeScaling> | null;
  max_position_embeddings?: number;
};

/** Parameter names of CLEX's ODE network (present only in CLEX models). */
export const isClexParameter = (name: string): boolean => name.includes('clex_layer');

/** A model from HF config fields (model_type 'llama' or 'gpt_neox'). Config errors name the field. */
export function buildModel(config: ModelConfigJson): CausalModel {
  const { model_type, architectures: _architectures, ...fields } = config;
  if (model_type === 'gpt_neox') return new models.GPTNeoXForCausalLM(fields as models.GPTNeoXConfigInput);
  if (model_type === 'llama' || model_type === undefined)
    return new models.LlamaForCausalLM(fields as models.LlamaConfigInput);
  throw new UsageError(`config model_type '${String(model_type)}' is not supported (use 'llama' or 'gpt_neox')`);
}

export interface CheckpointInfo {
  dir: string;
  config: ModelConfigJson;
  step: number;
  /** True for a Hugging Face model folder (weights in HF layout, no training state). */
  hf: boolean;
  /** Null only for a Hugging Face folder without tokenizer.json (the train script then needs --tokenizer). */
  tokenizer: models.Tokenizer | null;
  tokenizerDescription: TokenizerDescription | null;
  /** The settings the run was started with (compared on --resume). */
  run: Record<string, unknown>;
}

/** A Hugging Face model folder (config.json + safetensors weights) that is not a training checkpoint. */
export function isHFFolder(dir: string): boolean {
  return (
    existsSync(join(dir, io.CONFIG_FILE)) &&
    !existsSync(join(dir, io.TRAINER_STATE_FILE)) &&
    (existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, 'model.safetensors.index.json')))
  );
}

/**
 * Reads config.json and trainer_state.json (no tensors) and loads the tokenizer. A Hugging Face folder
 * (savePretrained, transformers' save_pretrained) reads as step 0 with its tokenizer.json when it has
 * one. `flag` names the option in errors.
 */
export async function readCheckpointInfo(flag: string, dir: string): Promise<CheckpointInfo> {
  const statePath = join(dir, io.TRAINER_STATE_FILE);
  const configPath = join(dir, io.CONFIG_FILE);
  if (isHFFolder(dir)) {
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as ModelConfigJson;
    const description: TokenizerDescription | null = existsSync(join(dir, 'tokenizer.json'))
      ? { type: 'hf', file: 'tokenizer.json' }
      : null;
    return {
      dir,
      config,
      step: 0,
      hf: true,
      tokenizer: description ? await makeTokenizer(description, dir) : null,
      tokenizerDescription: description,
      run: {},
    };
  }
  if (!existsSync(statePath) || !existsSync(configPath)) {
    throw new UsageError(
      `${flag} ${dir}: no checkpoint there (${io.CONFIG_FILE} and ${io.TRAINER_STATE_FILE} are missing, and no model.safetensors of a Hugging Face folder); give a folder written by the train script or by savePretrained`,
    );
  }
  let state: io.TrainerState, config: ModelConfigJson;
  try {
    state = JSON.parse(readFileSync(statePath, 'utf8')) as io.TrainerState;
    config = JSON.parse(readFileSync(configPath, 'utf8')) as ModelConfigJson;
  } catch (e) {
    throw new UsageError(`${flag} ${dir}: unreadable checkpoint (${(e as Error).message})`);
  }
  const extra = state.extra ?? {};
  const description = checkTokenizerDescription(`${flag} ${dir}`, extra.tokenizer ?? { type: 'char' });
  return {
    dir,
    config,
    step: state.global_step,
    hf: false,
    tokenizer: await makeTokenizer(description, dir),
    tokenizerDescription: description,
    run: (extra.run ?? {}) as Record<string, unknown>,
  };
}

/** Loads a checkpoint's model for evaluation or sampling (weights only; the RNG is left alone). */
export async function loadModel(
  flag: string,
  dir: string,
): Promise<{ model: CausalModel; info: CheckpointInfo; tokenizer: models.Tokenizer }> {
  const info = await readCheckpointInfo(flag, dir);
  const tokenizer = info.tokenizer;
  if (!tokenizer)
    throw new UsageError(
      `${flag} ${dir}: the Hugging Face folder has no tokenizer.json; add one (savePretrained(dir, { tokenizer }) writes it)`,
    );
  if (info.hf) return { model: await models.fromPretrained(dir), info, tokenizer };
  const model = buildModel(info.config);
  const loaded = await io.loadCheckpoint(dir, { model, restoreRng: false });
  // The optimizer's state is handed over unused: free it now rather than leave it to the collector.
  Object.values(loaded.optimizerState?.state ?? {}).forEach((st) =>
    Object.values(st.buffers).forEach((t) => t.dispose()),
  );
  return { model, info, tokenizer };
}

export interface SaveArgs {
  model: CausalModel;
  optimizer: optim.AdamW;
  scheduler: optim.LRScheduler;
  /** Under --precision f16-mixed: the loss scaler. */
  scaler?: optim.GradScaler;
  step: number;
  tokenizer: TokenizerDescription;
  /** Where an 'hf' tokenizer's tokenizer.json comes from. */
  tokenizerFile?: string;
  run: Record<string, unknown>;
}

/** Weights, config.json (HF fields incl. rope_scaling), optimizer, scheduler, scaler and RNG state, tokenizer, run settings. */
export async function saveTrainingCheckpoint(dir: string, a: SaveArgs): Promise<void> {
  // A Hugging Face tokenizer travels with the checkpoint (copied once; the file never changes).
  if (a.tokenizerFile && !existsSync(join(dir, 'tokenizer.json')))
    copyFileSync(a.tokenizerFile, join(dir, 'tokenizer.json'));
  return io.saveCheckpoint(dir, {
    model: a.model,
    optimizer: a.optimizer,
    scheduler: a.scheduler,
    scaler: a.scaler,
    step: a.step,
    config: a.model.config.toJSON(),
    extra: { tokenizer: a.tokenizer, run: a.run },
  });
}

/**
 * Copies `source` weights into `target` where the two differ only in the positional scheme: CLEX's
 * ODE parameters may be present on one side only (a new CLEX model keeps its own init); any other
 * missing, extra or reshaped tensor is an error.
 */
export function transferWeights(where: string, source: nn.StateDict, target: CausalModel): void {
  const own = target.stateDict();
  const kept = Object.fromEntries(Object.entries(source).filter(([k]) => !isClexParameter(k) || k in own));
  const missing = Object.keys(own).filter((k) => !(k in kept) && !isClexParameter(k));
  const extra = Object.keys(kept).filter((k) => !(k in own));
  if (missing.length || extra.length) {
    throw new UsageError(
      `${where}: the checkpoint's weights do not fit this model (${[missing.length ? `missing ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}` : '', extra.length ? `unexpected ${extra.slice(0, 4).join(', ')}` : ''].filter(Boolean).join('; ')}); the model sizes must match the source's`,
    );
  }
  target.loadStateDict(kept, { strict: false });
}

/** Sets CLEX's W_down to zero: the ODE then gives NTK(α = 2t − 1) frequencies (the learned part removed). */
export function resetClexOde(model: CausalModel): void {
  const down = model.namedParameters().filter(([name]) => name.endsWith('ode_down_proj'));
  if (down.length === 0)
    throw new UsageError('--clex-reset-ode: the model has no CLEX ODE (its rope_scaling is not clex)');
  for (const [, p] of down) nn.init.zeros(p);
}
