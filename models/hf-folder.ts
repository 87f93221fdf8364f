// Hugging Face model folders: what `transformers`' save_pretrained writes and from_pretrained reads.
//   config.json                     the model config (HF names), with architectures, model_type, torch_dtype
//   model.safetensors               the weights, or, above maxShardSize,
//   model-00001-of-0000N.safetensors + model.safetensors.index.json { metadata: { total_size }, weight_map }
//   tokenizer.json, tokenizer_config.json   when a Hugging Face tokenizer is given
// This file writes folders (savePretrained) and lists a folder's weights; pretrained.ts builds models
// from folders. A save is all-or-nothing (staged temp files + commit journal, as checkpoints): a crash
// leaves the previous folder intact, and weight files of the previous save that the new one no longer
// has (other shard counts) are removed in the same commit.
import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DType } from '../core/dtype.js';
import { OpError } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';
import { commitFiles, recoverCommit } from '../nn/io/atomic.js';
import type { StateDict } from '../nn/module.js';
import {
  readSafetensorsHeader,
  serializeSafetensors,
  type FloatFormat,
  type TensorInfo,
} from '../nn/io/safetensors.js';
import type { GPTNeoXConfig, LlamaConfig, RopeScaling } from './config.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
const JOURNAL_FILE = 'save-commit.json';
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** The dtypes a folder's weights can be stored in (config.json's torch_dtype names). */
export type SaveDType = 'float32' | 'float16' | 'bfloat16';
const FORMAT_OF: Record<SaveDType, FloatFormat> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const BYTES_OF: Record<SaveDType, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** What savePretrained writes (a CausalLM has it). */
export interface PretrainedModel {
  readonly config: LlamaConfig | GPTNeoXConfig;
  /** CLEX's original log-frequencies (written as its inv_freq buffer); null without CLEX. */
  readonly clex: { readonly logFreqOrig: Float64Array } | null;
  /** The weights' dtype: a float16 model is saved as float16 unless told otherwise. */
  readonly dtype?: DType;
  stateDict(): StateDict;
}

/** A tokenizer that can be written as Hugging Face files (file name → contents). */
export interface HFTokenizerFiles {
  hfFiles(): Record<string, string>;
}

export interface SavePretrainedOptions {
  /** Written next to the weights (tokenizer.json, tokenizer_config.json); must come from a tokenizer.json. */
  tokenizer?: unknown;
  /** Largest shard: bytes, or a string such as '2GB', '500MB', '10KiB' (default '5GB', as transformers). */
  maxShardSize?: number | string;
  /** Stored dtype of the weights, written as torch_dtype (default 'float32', 'float16' for a float16 model). */
  dtype?: SaveDType;
}

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 1024,
  MIB: 1024 ** 2,
  GIB: 1024 ** 3,
  TIB: 1024 ** 4,
};

/** maxShardSize in bytes: a positive number, or a number with a unit (KB, MB, GB, KiB, MiB, GiB; also lowercase). */
export function parseShardSize(v: number | string): number {
  const bytes =
    typeof v === 'number'
      ? v
      : (() => {
          const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
          const unit = m ? UNITS[(m[2] || 'B').toUpperCase()] : undefined;
          return m && unit ? Number(m[1]) * unit : NaN;
        })();
  if (!(bytes >= 1) || !Number.isFinite(bytes)) {
    throw new OpError(
      'savePretrained',
      `maxShardSize must be a positive number of bytes or a size like '2GB' or '500MB', got ${JSON.stringify(v)}`,
    );
  }
  return Math.floor(bytes);
}

/** rope_scaling as transformers (and the reference CLEX code) read it: the keys of its type only. */
function hfRopeScaling(rs: Required<RopeScaling>, maxPositions: number): Record<string, unknown> {
  const named = { type: rs.type, rope_type: rs.type };
  switch (rs.type) {
    case 'linear':
    case 'dynamic':
    case 'ntk':
      return { ...named, factor: rs.factor };
    case 'yarn':
      return {
        ...named,
        factor: rs.factor,
        beta_fast: rs.beta_fast,
        beta_slow: rs.beta_slow,
        original_max_position_embeddings: maxPositions,
      };
    case 'llama3':
      return {
        ...named,
        factor: rs.factor,
        low_freq_factor: rs.low_freq_factor,
        high_freq_factor: rs.high_freq_factor,
        original_max_position_embeddings: rs.original_max_position_embeddings,
      };
    case 'clex':
      // The reference reads max_factor, param_factor, time_dt and act; the ode_* keys are this framework's.
      return {
        type: 'clex',
        max_factor: rs.max_factor,
        param_factor: rs.param_factor,
        time_dt: rs.time_dt,
        act: rs.act,
        ode_method: rs.ode_method,
        ode_gradient: rs.ode_gradient,
        ode_device: rs.ode_device,
        ode_rtol: rs.ode_rtol,
        ode_atol: rs.ode_atol,
      };
  }
}

/**
 * config.json for a model: its config's HF fields plus torch_dtype, rope_scaling in the legacy form
 * and rope_parameters (transformers ≥ 5 reads rope settings from there; older versions ignore it).
 */
export function hfConfigJSON(config: LlamaConfig | GPTNeoXConfig, dtype: SaveDType): Record<string, unknown> {
  const json = config.toJSON();
  const rs = config.rope_scaling;
  const base =
    config.model_type === 'llama' ? (config as LlamaConfig).rope_theta : (config as GPTNeoXConfig).rotary_emb_base;
  const ropeScaling = rs ? hfRopeScaling(rs, config.max_position_embeddings) : null;
  const ropeParameters: Record<string, unknown> = { ...(ropeScaling ?? { rope_type: 'default' }), rope_theta: base };
  delete ropeParameters.type;
  const extra: Record<string, unknown> = {};
  if (config.model_type === 'gpt_neox') {
    const rotaryPct = (config as GPTNeoXConfig).rotary_pct;
    ropeParameters.partial_rotary_factor = rotaryPct;
    Object.assign(extra, { rope_theta: base, partial_rotary_factor: rotaryPct });
  }
  return { ...json, ...extra, rope_scaling: ropeScaling, rope_parameters: ropeParameters, torch_dtype: dtype };
}

function isHFTokenizerFiles(t: unknown): t is HFTokenizerFiles {
  return typeof (t as HFTokenizerFiles)?.hfFiles === 'function';
}

/** The weights a folder holds: each file and the tensors it contains (from the headers only). */
export interface FolderWeights {
  /** file name → tensor name → info. */
  files: Map<string, Record<string, TensorInfo>>;
  /** Problems found while listing (index entries that the shard lacks), for the caller's single error. */
  problems: string[];
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * Lists a folder's safetensors weights: model.safetensors, else the shards named by
 * model.safetensors.index.json (every shard must exist). Reads only headers.
 */
export async function listFolderWeights(dir: string, op: string): Promise<FolderWeights> {
  const files = new Map<string, Record<string, TensorInfo>>();
  const problems: string[] = [];
  if (await exists(join(dir, WEIGHTS_FILE))) {
    files.set(WEIGHTS_FILE, (await readSafetensorsHeader(join(dir, WEIGHTS_FILE))).tensors);
    return { files, problems };
  }
  if (!(await exists(join(dir, WEIGHTS_INDEX_FILE)))) {
    const present = await readdir(dir).catch(() => [] as string[]);
    const other = present.filter((f) => /\.(bin|pt|pth|ckpt)$/.test(f));
    throw new OpError(
      op,
      `${dir} has neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE}${other.length ? ` (found ${other.join(', ')}: only safetensors weights are read; convert them with transformers' save_pretrained(safe_serialization=True))` : ''}`,
    );
  }
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(await readFile(join(dir, WEIGHTS_INDEX_FILE), 'utf8')) as { weight_map?: unknown };
  } catch (e) {
    throw new OpError(op, `${join(dir, WEIGHTS_INDEX_FILE)} is not valid JSON (${(e as Error).message})`);
  }
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Object.values(map).some((f) => typeof f !== 'string')) {
    throw new OpError(op, `${join(dir, WEIGHTS_INDEX_FILE)} has no weight_map of tensor name → shard file`);
  }
  const byShard = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map as Record<string, string>))
    byShard.set(file, [...(byShard.get(file) ?? []), name]);
  const absent: string[] = [];
  for (const file of byShard.keys())
    if (file.includes('/') || file.includes('\\') || !(await exists(join(dir, file)))) absent.push(file);
  if (absent.length) {
    throw new OpError(
      op,
      `${join(dir, WEIGHTS_INDEX_FILE)} names shard${absent.length > 1 ? 's' : ''} ${absent.join(', ')} but ${absent.length > 1 ? 'they are' : 'it is'} not in ${dir} (an interrupted download or copy?)`,
    );
  }
  for (const [file, names] of byShard) {
    const header = (await readSafetensorsHeader(join(dir, file))).tensors;
    for (const name of names)
      if (!(name in header)) problems.push(`${name}: the index puts it in ${file}, which lacks it`);
    // Only what the index assigns to this shard is taken from it.
    files.set(file, Object.fromEntries(names.filter((n) => n in header).map((n) => [n, header[n]])));
  }
  return { files, problems };
}

/** Groups tensors into shards of at most maxBytes (one larger tensor gets a shard of its own), in order. */
function planShards(entries: [string, Tensor][], bytesPerElement: number, maxBytes: number): [string, Tensor][][] {
  const shards: [string, Tensor][][] = [];
  let current: [string, Tensor][] = [];
  let size = 0;
  for (const entry of entries) {
    const bytes = entry[1].size * bytesPerElement;
    if (current.length && size + bytes > maxBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(entry);
    size += bytes;
  }
  if (current.length) shards.push(current);
  return shards;
}

/** What the reference CLEX checkpoints also hold: the persistent buffer of the original inverse frequencies. */
function clexInvFreq(model: PretrainedModel): [string, Tensor] | null {
  const clex = model.clex;
  if (!clex) return null;
  const prefix = model.config.model_type === 'llama' ? 'model' : 'gpt_neox';
  return [`${prefix}.clex_layer.inv_freq`, tensor(clex.logFreqOrig.map(Math.exp), { device: 'cpu', dtype: 'float64' })];
}

/** Writes `model` as a Hugging Face folder (see the file comment); `dir` is created if needed. */
export async function savePretrained(
  model: PretrainedModel,
  dir: string,
  opts: SavePretrainedOptions = {},
): Promise<void> {
  const dtype = opts.dtype ?? (model.dtype === 'float16' ? 'float16' : 'float32');
  if (!(dtype in FORMAT_OF))
    throw new OpError(
      'savePretrained',
      `dtype must be one of ${Object.keys(FORMAT_OF).join(', ')}, got '${String(dtype)}'`,
    );
  const maxBytes = parseShardSize(opts.maxShardSize ?? '5GB');
  if (opts.tokenizer !== undefined && !isHFTokenizerFiles(opts.tokenizer)) {
    const name = (opts.tokenizer as object)?.constructor?.name ?? typeof opts.tokenizer;
    throw new OpError(
      'savePretrained',
      `tokenizer ${name} has no Hugging Face files to write; pass a tokenizer loaded from a tokenizer.json (models.Tokenizer.fromFile) or omit it`,
    );
  }
  if (typeof dir !== 'string' || !dir)
    throw new OpError('savePretrained', `dir must be a folder path, got ${JSON.stringify(dir)}`);
  await mkdir(dir, { recursive: true }).catch((e: Error) => {
    throw new OpError('savePretrained', `cannot create the folder ${dir} (${e.message})`);
  });

  const invFreq = clexInvFreq(model);
  const entries: [string, Tensor][] = [...Object.entries(model.stateDict()), ...(invFreq ? [invFreq] : [])];
  const format = FORMAT_OF[dtype];
  const files: [string, Uint8Array[]][] = [];
  try {
    const shards = planShards(entries, BYTES_OF[dtype], maxBytes);
    const metadata = { format: 'pt' };
    if (shards.length === 1) {
      files.push([
        WEIGHTS_FILE,
        await serializeSafetensors(Object.fromEntries(shards[0]), metadata, { floatFormat: format }),
      ]);
    } else {
      const weightMap: Record<string, string> = {};
      let total = 0;
      for (let i = 0; i < shards.length; i++) {
        const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
        for (const [key, t] of shards[i]) {
          weightMap[key] = name;
          total += t.size * BYTES_OF[dtype];
        }
        files.push([
          name,
          await serializeSafetensors(Object.fromEntries(shards[i]), metadata, { floatFormat: format }),
        ]);
      }
      files.push([WEIGHTS_INDEX_FILE, jsonBytes({ metadata: { total_size: total }, weight_map: weightMap })]);
    }
  } finally {
    invFreq?.[1].dispose();
  }
  if (opts.tokenizer) {
    for (const [name, text] of Object.entries(opts.tokenizer.hfFiles()))
      files.push([name, [Buffer.from(text, 'utf8')]]);
  }
  files.push([CONFIG_FILE, jsonBytes(hfConfigJSON(model.config, dtype))]);

  const written = new Set(files.map(([name]) => name));
  await recoverCommit(dir, JOURNAL_FILE, [...written]);
  const stale = (await readdir(dir)).filter(
    (f) => !written.has(f) && (f === WEIGHTS_FILE || f === WEIGHTS_INDEX_FILE || SHARD_NAME.test(f)),
  );
  await commitFiles(dir, JOURNAL_FILE, files, { removes: stale });
}

function jsonBytes(v: unknown): Uint8Array[] {
  return [Buffer.from(JSON.stringify(v, null, 2) + '\n', 'utf8')];
}
