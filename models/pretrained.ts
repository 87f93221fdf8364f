// models.fromPretrained: a Hugging Face folder (hf-folder.ts describes it) → LlamaForCausalLM or
// GPTNeoXForCausalLM chosen by config.json's model_type. Everything is checked from config.json and the
// safetensors headers before any weight is read, and every key problem (missing, unexpected, wrong
// shape, unreadable dtype, index entries a shard lacks) is reported in one error. Shards are then read
// one at a time and copied into the model, converted from F32/F16/BF16/F64 to the model's dtype. A
// float16 model reads each tensor straight into float16 (F16 weights keep their bits) and refuses, naming
// them all, tensors whose values float16 cannot hold; CLEX's ODE weights stay float32 in any model.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceName } from '../core/backend.js';
import type { DType } from '../core/dtype.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { Float16OverflowError, readSafetensors, type FloatDType } from '../nn/io/safetensors.js';
import type { GPTNeoXConfigInput, LlamaConfigInput } from './config.js';
import { CONFIG_FILE, listFolderWeights } from './hf-folder.js';
import { GPTNeoXForCausalLM } from './gptneox.js';
import { LlamaForCausalLM } from './llama.js';

const OP = 'fromPretrained';
const MODEL_TYPES = ['llama', 'gpt_neox'] as const;
const LOADABLE_DTYPES = ['F32', 'F16', 'BF16', 'F64'];

export interface FromPretrainedOptions {
  device?: DeviceName;
  /**
   * The model's float dtype (default float32; float64 only on cpu). float16 loads F16 weights without
   * widening and converts F32/F64/BF16 ones, refusing (with every such tensor named) values beyond ±65504.
   */
  dtype?: DType;
  /**
   * Fields that replace config.json's, e.g. `{ rope_scaling: { type: 'clex', max_factor: 8 } }` to
   * fine-tune a plain-RoPE folder with CLEX: the CLEX ODE weights, absent from such a folder, then keep
   * their init (W_down = 0: NTK-aware scaling until trained).
   */
  config?: Partial<LlamaConfigInput> | Partial<GPTNeoXConfigInput>;
}

/** A list for an error message: the first `limit` names, then how many more. */
function listed(names: string[], sep = ', ', limit = 20): string {
  return names.length <= limit
    ? names.join(sep)
    : `${names.slice(0, limit).join(sep)}${sep}… and ${names.length - limit} more`;
}

/** Buffers that checkpoints carry but this framework computes: accepted and skipped. */
const RECOMPUTED_BUFFERS = [/(^|\.)rotary_emb\.inv_freq$/, /^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias)$/];
/** The reference CLEX's persistent copy of the original inverse frequencies: checked, then skipped. */
const CLEX_INV_FREQ = /^(model|gpt_neox)\.clex_layer\.inv_freq$/;

/**
 * A config.json object → our config input. transformers ≥ 5 writes rope settings in rope_parameters
 * (rope_theta, rope_type and its keys, GPT-NeoX's partial_rotary_factor); older versions use rope_theta /
 * rotary_emb_base, rope_scaling and rotary_pct, which win when both are present.
 */
function configInput(raw: Record<string, unknown>): Record<string, unknown> {
  const {
    rope_parameters: rp,
    partial_rotary_factor,
    ...cfg
  } = raw as Record<string, unknown> & {
    rope_parameters?: Record<string, unknown> | null;
    partial_rotary_factor?: number;
  };
  const params = rp && typeof rp === 'object' ? rp : null;
  if ((cfg.rope_scaling === undefined || cfg.rope_scaling === null) && params) {
    const { rope_theta: _theta, partial_rotary_factor: _pct, ...scaling } = params;
    cfg.rope_scaling = scaling;
  }
  // Where a file has both spellings, the legacy top-level keys win (they are what an edit would change).
  const theta = cfg.rope_theta ?? params?.rope_theta;
  const pct = partial_rotary_factor ?? params?.partial_rotary_factor;
  if (raw.model_type === 'gpt_neox') {
    delete cfg.rope_theta;
    if (cfg.rotary_emb_base === undefined && theta !== undefined) cfg.rotary_emb_base = theta;
    if (cfg.rotary_pct === undefined && pct !== undefined) cfg.rotary_pct = pct;
  } else if (theta !== undefined) {
    cfg.rope_theta = theta;
  }
  return cfg;
}

async function readConfig(dir: string): Promise<Record<string, unknown>> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new OpError(
      OP,
      `${dir} has no ${CONFIG_FILE} (a Hugging Face model folder holds ${CONFIG_FILE} and model.safetensors or model.safetensors.index.json)`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new OpError(OP, `${path} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new OpError(OP, `${path} must hold a JSON object`);
  return raw as Record<string, unknown>;
}

/** Checks the checkpoint's copy of CLEX's original inverse frequencies against the config's rope base. */
async function checkClexInvFreq(
  name: string,
  t: Tensor,
  model: LlamaForCausalLM | GPTNeoXForCausalLM,
  stored: string,
): Promise<void> {
  const expected = (model.clex?.logFreqOrig ?? new Float64Array()).map(Math.exp);
  const got = await t.data();
  const tol = stored === 'BF16' ? 1e-2 : stored === 'F16' ? 1e-3 : 1e-6;
  const bad = got.length !== expected.length || expected.some((v, i) => Math.abs(got[i] - v) > tol * v);
  if (bad) {
    throw new OpError(
      OP,
      `${name} holds inverse frequencies [${Array.from(got.slice(0, 4), (v) => v.toPrecision(4)).join(', ')}…] that do not match this config's rope base and rotary dim (expected [${Array.from(expected.slice(0, 4), (v) => v.toPrecision(4)).join(', ')}…]): config.json does not describe these weights`,
    );
  }
}

/**
 * Loads a Hugging Face folder (config.json + model.safetensors or a sharded index) as a dawngrad model,
 * in eval mode as transformers does. `dir` may also name the config.json inside it.
 */
export async function fromPretrained(
  dir: string,
  opts: FromPretrainedOptions = {},
): Promise<LlamaForCausalLM | GPTNeoXForCausalLM> {
  if (typeof dir !== 'string' || !dir) throw new OpError(OP, `dir must be a folder path, got ${JSON.stringify(dir)}`);
  if (dir.endsWith(CONFIG_FILE)) dir = dir.slice(0, -CONFIG_FILE.length) || '.';
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory())
    throw new OpError(OP, `${dir} is not a folder (pass the folder that holds ${CONFIG_FILE} and the weights)`);
  const raw = await readConfig(dir);
  const modelType = raw.model_type;
  if (!MODEL_TYPES.includes(modelType as (typeof MODEL_TYPES)[number])) {
    throw new OpError(
      OP,
      `unknown model_type ${JSON.stringify(modelType)} in ${join(dir, CONFIG_FILE)}; supported: ${MODEL_TYPES.join(', ')}`,
    );
  }
  const weights = await listFolderWeights(dir, OP);
  const input = { ...configInput(raw), ...(opts.config ?? {}) };
  const modelOpts = { device: opts.device, dtype: opts.dtype };
  const model =
    modelType === 'llama'
      ? new LlamaForCausalLM(input as LlamaConfigInput, modelOpts)
      : new GPTNeoXForCausalLM(input as GPTNeoXConfigInput, modelOpts);
  try {
    const own = model.stateDict();
    const tied = model.config.tie_word_embeddings;
    const skipped = (name: string) =>
      RECOMPUTED_BUFFERS.some((re) => re.test(name)) ||
      (tied && (name === 'lm_head.weight' || name === 'embed_out.weight'));
    const found = new Map<string, string>();
    const problems = [...weights.problems];
    const unexpected: string[] = [],
      wrongShape: string[] = [],
      badDType: string[] = [];
    for (const [file, tensors] of weights.files) {
      for (const [name, t] of Object.entries(tensors)) {
        if (skipped(name)) continue;
        if (CLEX_INV_FREQ.test(name) && model.clex) {
          found.set(name, file);
          continue;
        }
        if (!(name in own)) {
          unexpected.push(name);
          continue;
        }
        found.set(name, file);
        if (!LOADABLE_DTYPES.includes(t.dtype)) badDType.push(`${name} (${t.dtype})`);
        const want = own[name].shape;
        if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
          wrongShape.push(`${name}: file ${shapeStr(t.shape)} vs model ${shapeStr(want)}`);
      }
    }
    // A rope_scaling given here may add CLEX to a folder that has none: its ODE weights start fresh.
    const fresh = (k: string) => opts.config?.rope_scaling !== undefined && /\.clex_layer\.proj_func\./.test(k);
    const missing = Object.keys(own).filter((k) => !found.has(k) && !fresh(k));
    if (missing.length) problems.push(`missing keys: ${listed(missing)}`);
    if (unexpected.length) problems.push(`unexpected keys: ${listed(unexpected)}`);
    if (wrongShape.length) problems.push(`wrong shapes: ${listed(wrongShape, '; ')}`);
    if (badDType.length) problems.push(`weights must be floating point (F32, F16, BF16, F64): ${listed(badDType)}`);
    if (problems.length) {
      throw new OpError(
        OP,
        `the weights in ${dir} do not fit the ${model.constructor.name} that ${CONFIG_FILE} describes: ${problems.join(' | ')}`,
      );
    }
    // Each tensor is read in the dtype of the model tensor it goes to (CLEX's ODE is float32 in a float16 model).
    const floatDType = (name: string): FloatDType => (own[name]?.dtype ?? 'float32') as FloatDType;
    const overflowing: string[] = [];
    for (const [file, infos] of weights.files) {
      let tensors: Record<string, Tensor>;
      try {
        ({ tensors } = await readSafetensors(join(dir, file), { device: model.device, floatDType }));
      } catch (e) {
        // Go on through the other shards, so that the error names every tensor float16 cannot hold.
        if (!(e instanceof Float16OverflowError)) throw e;
        overflowing.push(
          ...e.tensors.filter((name) => found.get(name) === file).map((n) => `${n} (${infos[n].dtype})`),
        );
        continue;
      }
      try {
        if (overflowing.length) continue;
        const part: Record<string, Tensor> = {};
        for (const [name, t] of Object.entries(tensors)) {
          if (found.get(name) !== file) continue;
          if (CLEX_INV_FREQ.test(name)) await checkClexInvFreq(name, t, model, infos[name].dtype);
          else part[name] = t;
        }
        model.loadStateDict(part, { strict: false });
      } finally {
        for (const t of Object.values(tensors)) t.dispose();
      }
    }
    if (overflowing.length) {
      throw new OpError(
        OP,
        `cannot load ${dir} as float16: these tensors hold values beyond float16's range (|x| > 65504), which would become ±Infinity: ${overflowing.join(', ')}; load the model with dtype 'float32' instead`,
      );
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  return model;
}
