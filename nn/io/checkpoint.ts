// Resumable training checkpoints: a directory holding
//   model.safetensors      the model's state dict (HF names)
//   config.json            JSON.stringify(config) (HF field names are the caller's choice)
//   optimizer.safetensors  optimizer state tensors `state.<i>.<buffer>`; groups and steps in __metadata__
//   trainer_state.json     global_step, scheduler and loss-scaler state, RNG state, and the save id tying the
//                          files together
// A save stages every file as a fsynced temp file, then writes a commit journal, renames the files into
// place and removes the journal. A crash before the journal leaves the previous checkpoint untouched; a
// crash after it is rolled forward by the next load or save. Files carry a save id that loads check, so
// a mixed set is never loaded silently. One writer per directory at a time.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceName } from '../../core/backend.js';
import { getDefaultDevice } from '../../core/device.js';
import { getRngState, setRngState } from '../../core/rng.js';
import type { Tensor } from '../../core/tensor.js';
import type { AnyModule, Module, StateDict } from '../module.js';
import type { BaseHyper, Optimizer, OptimizerStateDict } from '../optim/optimizer.js';
import type { GradScaler, GradScalerState } from '../optim/scaler.js';
import type { LRScheduler, SchedulerState } from '../optim/schedules.js';
import { commitFiles, recoverCommit } from './atomic.js';
import { readSafetensors, serializeSafetensors } from './safetensors.js';
import { argObject, argString } from '../../core/args.js';

export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const CONFIG_FILE = 'config.json';
export const TRAINER_STATE_FILE = 'trainer_state.json';
const JOURNAL_FILE = 'checkpoint-commit.json';
const FORMAT = 'dawngrad-checkpoint/1';
const SAVE_ID_KEY = 'dawngrad_save_id';

export class CheckpointError extends Error {
  constructor(
    readonly dir: string,
    problem: string,
  ) {
    super(`checkpoint: ${dir}: ${problem}`);
    this.name = 'CheckpointError';
  }
}

export interface CheckpointContents {
  /** A module (its stateDict is saved) or a state dict. */
  model?: AnyModule | StateDict;
  optimizer?: Optimizer<BaseHyper>;
  scheduler?: LRScheduler;
  /** Mixed precision: the loss scaler (its scale and counters go into trainer_state.json `grad_scaler`). */
  scaler?: GradScaler;
  /** Global training step (trainer_state.json `global_step`). */
  step?: number;
  /** RNG state to save; defaults to the current getRngState(). */
  rng?: number;
  /** Model config, written as config.json. */
  config?: unknown;
  /** Any other JSON-serialisable trainer information. */
  extra?: Record<string, unknown>;
}

export interface TrainerState {
  format: string;
  global_step: number;
  rng_state: number;
  scheduler: SchedulerState | null;
  /** Absent in checkpoints saved without a scaler (and in those of earlier releases). */
  grad_scaler?: GradScalerState;
  save_id: string;
  files: string[];
  /** sha256 of config.json, which (being plain HF JSON) cannot carry the save id itself. */
  config_sha256?: string;
  extra?: Record<string, unknown>;
}

const isModule = (m: unknown): m is AnyModule => typeof (m as Module)?.stateDict === 'function';

function optimizerTensors(sd: OptimizerStateDict): { tensors: Record<string, Tensor>; meta: string } {
  const tensors: Record<string, Tensor> = {};
  const steps: Record<string, number> = {};
  const buffers: Record<string, string[]> = {};
  for (const [id, st] of Object.entries(sd.state)) {
    steps[id] = st.step;
    buffers[id] = Object.keys(st.buffers);
    for (const [name, t] of Object.entries(st.buffers)) tensors[`state.${id}.${name}`] = t;
  }
  return { tensors, meta: JSON.stringify({ paramGroups: sd.paramGroups, steps, buffers }) };
}

function optimizerStateFrom(
  dir: string,
  tensors: Record<string, Tensor>,
  meta: string | undefined,
): OptimizerStateDict {
  if (!meta) throw new CheckpointError(dir, `${OPTIMIZER_FILE} has no 'optimizer' metadata`);
  const { paramGroups, steps, buffers } = JSON.parse(meta) as {
    paramGroups: OptimizerStateDict['paramGroups'];
    steps: Record<string, number>;
    buffers: Record<string, string[]>;
  };
  const state: OptimizerStateDict['state'] = {};
  for (const [id, step] of Object.entries(steps)) {
    const bufs: Record<string, Tensor> = {};
    for (const name of buffers[id]) {
      const t = tensors[`state.${id}.${name}`];
      if (!t) throw new CheckpointError(dir, `${OPTIMIZER_FILE} lacks tensor 'state.${id}.${name}'`);
      bufs[name] = t;
    }
    state[id] = { step, buffers: bufs };
  }
  return { state, paramGroups };
}

/** Finishes a save cut short after its journal; with `cleanTemps`, deletes staged files of unfinished saves. */
async function recover(dir: string, cleanTemps: boolean): Promise<void> {
  try {
    await recoverCommit(
      dir,
      JOURNAL_FILE,
      cleanTemps ? [MODEL_FILE, OPTIMIZER_FILE, CONFIG_FILE, TRAINER_STATE_FILE] : null,
    );
  } catch (e) {
    throw new CheckpointError(dir, (e as Error).message);
  }
}

/** Saves a resumable checkpoint into `dir` (created if needed), all-or-nothing (see the file comment). */
export async function saveCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  argString('saveCheckpoint', 'dir', dir);
  argObject('saveCheckpoint', 'contents', c);
  await mkdir(dir, { recursive: true });
  await recover(dir, true);
  const saveId = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  const files: [string, Uint8Array[]][] = [];
  const json = (v: unknown) => [Buffer.from(JSON.stringify(v, null, 2) + '\n', 'utf8')];
  if (c.model) {
    const sd = isModule(c.model) ? c.model.stateDict() : c.model;
    files.push([MODEL_FILE, await serializeSafetensors(sd, { format: 'pt', [SAVE_ID_KEY]: saveId })]);
  }
  if (c.optimizer) {
    const { tensors, meta } = optimizerTensors(c.optimizer.stateDict());
    files.push([
      OPTIMIZER_FILE,
      await serializeSafetensors(tensors, {
        optimizer: meta,
        optimizer_class: c.optimizer.name,
        [SAVE_ID_KEY]: saveId,
      }),
    ]);
  }
  const configBytes = c.config !== undefined ? json(c.config) : null;
  if (configBytes) files.push([CONFIG_FILE, configBytes]);
  const trainerState: TrainerState = {
    format: FORMAT,
    global_step: c.step ?? 0,
    rng_state: c.rng ?? getRngState(),
    scheduler: c.scheduler ? c.scheduler.stateDict() : null,
    ...(c.scaler ? { grad_scaler: c.scaler.stateDict() } : {}),
    save_id: saveId,
    files: files.map(([name]) => name),
    ...(configBytes ? { config_sha256: sha256(configBytes[0]) } : {}),
    ...(c.extra ? { extra: c.extra } : {}),
  };
  files.push([TRAINER_STATE_FILE, json(trainerState)]);

  await commitFiles(dir, JOURNAL_FILE, files, { saveId });
}

export interface LoadCheckpointOptions {
  /** Loads model.safetensors into this module (in place). Otherwise the tensors are returned. */
  model?: AnyModule;
  /** Restores this optimizer's state. Otherwise the state dict is returned. */
  optimizer?: Optimizer<BaseHyper>;
  scheduler?: LRScheduler;
  /** Restores this loss scaler's state (the checkpoint must have been saved with one). */
  scaler?: GradScaler;
  /** Device for returned / staged tensors (default: the model's device, else the default device). */
  device?: DeviceName;
  /** Restore the saved RNG state with setRngState (default true). */
  restoreRng?: boolean;
  /** Passed to model.loadStateDict (default true). */
  strict?: boolean;
}

export interface LoadedCheckpoint {
  step: number;
  rngState: number;
  config: unknown;
  trainerState: TrainerState;
  /** Present when no model was given to load into (the caller owns these tensors). */
  modelState?: StateDict;
  /** Present when no optimizer was given to load into (the caller owns its tensors). */
  optimizerState?: OptimizerStateDict;
}

/**
 * Loads a checkpoint written by saveCheckpoint, restoring into the given objects. Nothing is applied
 * unless every file was read and belongs to the same save. A read that raced a concurrent save (files
 * from two saves) is retried.
 */
export async function loadCheckpoint(dir: string, opts: LoadCheckpointOptions = {}): Promise<LoadedCheckpoint> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await loadOnce(dir, opts);
    } catch (e) {
      if (!(e instanceof MixedSaveError) || attempt === 3) throw e;
    }
  }
}

class MixedSaveError extends CheckpointError {}

async function loadOnce(dir: string, opts: LoadCheckpointOptions): Promise<LoadedCheckpoint> {
  await recover(dir, false);
  let trainerState: TrainerState;
  try {
    trainerState = JSON.parse(await readFile(join(dir, TRAINER_STATE_FILE), 'utf8')) as TrainerState;
  } catch (e) {
    throw new CheckpointError(dir, `cannot read ${TRAINER_STATE_FILE} (${(e as Error).message})`);
  }
  if (trainerState.format !== FORMAT)
    throw new CheckpointError(
      dir,
      `${TRAINER_STATE_FILE} has format ${JSON.stringify(trainerState.format)}, expected '${FORMAT}'`,
    );
  const device = opts.device ?? opts.model?.parameters()[0]?.device ?? getDefaultDevice();
  const owned: Tensor[] = [];
  const release = () => owned.forEach((t) => t.dispose());
  try {
    let modelState: StateDict | undefined;
    let optimizerState: OptimizerStateDict | undefined;
    if (trainerState.files.includes(MODEL_FILE)) {
      const { tensors, metadata } = await readSafetensors(join(dir, MODEL_FILE), { device });
      owned.push(...Object.values(tensors));
      checkSaveId(dir, MODEL_FILE, metadata[SAVE_ID_KEY], trainerState.save_id);
      modelState = tensors;
    }
    if (trainerState.files.includes(OPTIMIZER_FILE)) {
      const { tensors, metadata } = await readSafetensors(join(dir, OPTIMIZER_FILE), { device });
      owned.push(...Object.values(tensors));
      checkSaveId(dir, OPTIMIZER_FILE, metadata[SAVE_ID_KEY], trainerState.save_id);
      optimizerState = optimizerStateFrom(dir, tensors, metadata.optimizer);
    }
    let config: unknown = undefined;
    if (trainerState.files.includes(CONFIG_FILE)) {
      const bytes = await readFile(join(dir, CONFIG_FILE));
      if (trainerState.config_sha256 && sha256(bytes) !== trainerState.config_sha256) {
        throw new MixedSaveError(
          dir,
          `${CONFIG_FILE} does not match the hash in ${TRAINER_STATE_FILE}: the directory mixes two saves`,
        );
      }
      config = JSON.parse(bytes.toString('utf8'));
    }
    // Everything is read and consistent: apply (the scaler first: its checks are the likeliest to refuse).
    if (opts.scaler) {
      if (!trainerState.grad_scaler)
        throw new CheckpointError(
          dir,
          'no grad scaler state in this checkpoint (it was saved without one: a float32 run); load it without a scaler',
        );
      opts.scaler.loadStateDict(trainerState.grad_scaler);
    }
    if (opts.model) {
      if (!modelState) throw new CheckpointError(dir, `no ${MODEL_FILE} in this checkpoint`);
      opts.model.loadStateDict(modelState, { strict: opts.strict ?? true });
    }
    if (opts.optimizer) {
      if (!optimizerState) throw new CheckpointError(dir, `no ${OPTIMIZER_FILE} in this checkpoint`);
      opts.optimizer.loadStateDict(optimizerState);
    }
    if (opts.scheduler) {
      if (!trainerState.scheduler) throw new CheckpointError(dir, 'no scheduler state in this checkpoint');
      opts.scheduler.loadStateDict(trainerState.scheduler);
    }
    if (opts.restoreRng ?? true) setRngState(trainerState.rng_state);
    // Hand over what was not applied; free what was copied into the targets.
    const kept = new Set<Tensor>([
      ...(opts.model ? [] : Object.values(modelState ?? {})),
      ...(opts.optimizer ? [] : Object.values(optimizerState?.state ?? {}).flatMap((s) => Object.values(s.buffers))),
    ]);
    owned.filter((t) => !kept.has(t)).forEach((t) => t.dispose());
    return {
      step: trainerState.global_step,
      rngState: trainerState.rng_state,
      config,
      trainerState,
      ...(opts.model ? {} : { modelState }),
      ...(opts.optimizer ? {} : { optimizerState }),
    };
  } catch (e) {
    release();
    throw e;
  }
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function checkSaveId(dir: string, file: string, found: string | undefined, expected: string): void {
  if (found !== expected) {
    throw new MixedSaveError(
      dir,
      `${file} belongs to save ${found ?? '(none)'} but ${TRAINER_STATE_FILE} to save ${expected}: the directory mixes two saves (was it written by two processes at once?)`,
    );
  }
}
