// Model configs with Hugging Face field names. The constructors fill HF's defaults, validate every
// field and throw OpError naming the field and the offending value, so a bad config fails at build
// time rather than as a shape error deep inside a forward.
import { OpError } from '../core/shape.js';

/** Every rope_scaling type (the one list: configs, the scripts' --rope and the tests read it). */
export const ROPE_SCALING_TYPES = ['linear', 'ntk', 'dynamic', 'yarn', 'llama3', 'clex'] as const;
export type RopeScalingType = (typeof ROPE_SCALING_TYPES)[number];
export type OdeMethodName = 'rk4' | 'dopri5';

/**
 * rope_scaling as in HF configs ({ type, factor } for linear/dynamic/yarn/llama3, or the newer
 * `rope_type` spelling of `type`; CLEX's max_factor, param_factor, act, time_dt). Keys after time_dt
 * are this framework's CLEX solver options.
 */
export interface RopeScaling {
  type: RopeScalingType;
  /** s for linear (PI), ntk, yarn, llama3; f for dynamic NTK. Ignored by clex (which uses t). */
  factor?: number;
  /** CLEX: largest integer t (the longest context is max_factor·L0). */
  max_factor?: number;
  /** CLEX: λ, the ODE hidden width is λ·d. */
  param_factor?: number;
  /** CLEX: activation of the ODE network. */
  act?: 'tanh' | 'silu';
  /** CLEX: the rk4 step (the reference's time_dt, 0.01). Giving it selects rk4 unless ode_method says otherwise. */
  time_dt?: number;
  /** CLEX: 'dopri5' (adaptive; the default without time_dt) or 'rk4' (fixed step time_dt, the reference solver). */
  ode_method?: OdeMethodName;
  /** CLEX: 'backprop' through the solver (default, exact for the discrete solve) or 'adjoint' (cpu solves; the device kernels always take the discrete adjoint, which is backprop's gradient). */
  ode_gradient?: 'backprop' | 'adjoint';
  /** CLEX: solve the tiny ODE on the model's 'device' (default; on webgpu: fused rk4 kernels, no readbacks, see models/clex/solve.ts) or on the 'cpu' reference backend in float64 (the reference; reads the weights and their gradient back). */
  ode_device?: 'cpu' | 'device';
  /** CLEX: dopri5 tolerances (defaults 1e-7 / 1e-9; the state is a log-frequency of order 1..10). */
  ode_rtol?: number;
  ode_atol?: number;
  /** YaRN: ramp bounds (defaults 32 and 1). */
  beta_fast?: number;
  beta_slow?: number;
  /** llama3: wavelengths above original_max_position_embeddings / low_freq_factor are divided by factor (default 1). */
  low_freq_factor?: number;
  /** llama3: wavelengths below original_max_position_embeddings / high_freq_factor are kept (default 4). */
  high_freq_factor?: number;
  /** llama3: the pre-training context (default: max_position_embeddings). */
  original_max_position_embeddings?: number;
}

const DEFAULT_CLEX = {
  max_factor: 16,
  param_factor: 1,
  act: 'tanh',
  time_dt: 0.01,
  ode_method: 'dopri5',
  ode_gradient: 'backprop',
  ode_device: 'device',
  ode_rtol: 1e-7,
  ode_atol: 1e-9,
} as const;

function fail(model: string, msg: string): never {
  throw new OpError(model, msg);
}

function positiveInt(model: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0)
    fail(model, `${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function positive(model: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v))
    fail(model, `${name} must be a positive finite number, got ${String(v)}`);
  return v;
}

/**
 * Validates rope_scaling and fills the defaults of its type (null/undefined, or HF's rope_type
 * 'default': plain RoPE). `maxPositionEmbeddings` fills llama3's original_max_position_embeddings.
 */
export function normalizeRopeScaling(
  model: string,
  rs: Partial<RopeScaling> | null | undefined,
  maxPositionEmbeddings = 2048,
): Required<RopeScaling> | null {
  if (rs === null || rs === undefined) return null;
  const { rope_type: ropeType, ...given } = rs as Partial<RopeScaling> & { rope_type?: string };
  if (given.type === undefined && ropeType === 'default') return null;
  const type = (given.type ?? ropeType) as RopeScalingType | undefined;
  if (!type || !ROPE_SCALING_TYPES.includes(type))
    fail(
      model,
      `rope_scaling.type must be one of ${ROPE_SCALING_TYPES.join(', ')} (also spelled rope_type, where 'default' means plain RoPE), got '${String(type)}'`,
    );
  // The reference CLEX configs give time_dt to mean its fixed-step rk4; without it the default is dopri5.
  const odeMethod =
    given.ode_method ?? (type === 'clex' && given.time_dt !== undefined ? 'rk4' : DEFAULT_CLEX.ode_method);
  const out = {
    factor: 1,
    beta_fast: 32,
    beta_slow: 1,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: maxPositionEmbeddings,
    ...DEFAULT_CLEX,
    ...given,
    ode_method: odeMethod,
    type,
  } as Required<RopeScaling>;
  if (type === 'clex') {
    positiveInt(model, 'rope_scaling.max_factor', out.max_factor);
    positiveInt(model, 'rope_scaling.param_factor', out.param_factor);
    positive(model, 'rope_scaling.time_dt', out.time_dt);
    if (!['tanh', 'silu'].includes(out.act)) fail(model, `rope_scaling.act must be 'tanh' or 'silu', got '${out.act}'`);
    if (!['rk4', 'dopri5'].includes(out.ode_method))
      fail(model, `rope_scaling.ode_method must be 'rk4' or 'dopri5', got '${out.ode_method}'`);
    if (!['backprop', 'adjoint'].includes(out.ode_gradient))
      fail(model, `rope_scaling.ode_gradient must be 'backprop' or 'adjoint', got '${out.ode_gradient}'`);
    if (!['cpu', 'device'].includes(out.ode_device))
      fail(model, `rope_scaling.ode_device must be 'cpu' or 'device', got '${out.ode_device}'`);
    positive(model, 'rope_scaling.ode_rtol', out.ode_rtol);
    positive(model, 'rope_scaling.ode_atol', out.ode_atol);
  } else {
    positive(model, 'rope_scaling.factor', out.factor);
    if (type !== 'dynamic' && out.factor < 1)
      fail(model, `rope_scaling.factor must be ≥ 1 for '${type}' (it stretches the context), got ${out.factor}`);
    if (type === 'yarn' && !(out.beta_fast > out.beta_slow))
      fail(model, `rope_scaling.beta_fast (${out.beta_fast}) must exceed beta_slow (${out.beta_slow})`);
    if (type === 'llama3') {
      positive(model, 'rope_scaling.low_freq_factor', out.low_freq_factor);
      positive(model, 'rope_scaling.high_freq_factor', out.high_freq_factor);
      positiveInt(model, 'rope_scaling.original_max_position_embeddings', out.original_max_position_embeddings);
      if (!(out.high_freq_factor > out.low_freq_factor))
        fail(
          model,
          `rope_scaling.high_freq_factor (${out.high_freq_factor}) must exceed low_freq_factor (${out.low_freq_factor})`,
        );
    }
  }
  return out;
}

/**
 * The reference CLEX's `log_scale`: queries are multiplied by log(L)/log(L0) for a total length L past
 * L0 (1 up to L0), i.e. the attention scores' scale grows with the context.
 */
export function queryLogScale(enabled: boolean, length: number, L0: number): number {
  return enabled && length > L0 ? Math.log(length) / Math.log(L0) : 1;
}

interface CommonFields {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  initializer_range: number;
  rope_scaling: Required<RopeScaling> | null;
  log_scale: boolean;
}

function checkCommon(model: string, c: CommonFields, headDimGiven = false): void {
  for (const k of [
    'vocab_size',
    'hidden_size',
    'intermediate_size',
    'num_hidden_layers',
    'num_attention_heads',
    'max_position_embeddings',
  ] as const)
    positiveInt(model, k, c[k]);
  if (!headDimGiven && c.hidden_size % c.num_attention_heads !== 0) {
    fail(model, `hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`);
  }
  positive(model, 'initializer_range', c.initializer_range);
  for (const k of ['tie_word_embeddings', 'log_scale'] as const)
    if (typeof c[k] !== 'boolean') fail(model, `${k} must be a boolean, got ${String(c[k])}`);
}

/** HF bookkeeping keys that describe a saved file rather than the model; dropped from configs. */
const FILE_KEYS = [
  'architectures',
  'model_type',
  'torch_dtype',
  'dtype',
  'transformers_version',
  '_name_or_path',
  'auto_map',
];

function withoutFileKeys<T extends object>(input: T): T {
  const out = { ...input } as Record<string, unknown>;
  for (const k of FILE_KEYS) delete out[k];
  return out as T;
}

export type LlamaConfigInput = Partial<Omit<LlamaConfig, 'rope_scaling' | 'model_type' | 'toJSON'>> & {
  rope_scaling?: Partial<RopeScaling> | null;
};

/** LLaMA config (HF `LlamaConfig` field names and defaults, sized down by the caller). */
export class LlamaConfig implements CommonFields {
  readonly model_type = 'llama';
  vocab_size = 32000;
  hidden_size = 4096;
  intermediate_size = 11008;
  num_hidden_layers = 32;
  num_attention_heads = 32;
  /** Defaults to num_attention_heads (no grouped-query attention). */
  num_key_value_heads: number;
  /** L0: the training context, and CLEX's unit of t. */
  max_position_embeddings = 2048;
  rope_theta = 10000;
  rms_norm_eps = 1e-6;
  tie_word_embeddings = false;
  initializer_range = 0.02;
  hidden_act = 'silu';
  /** Per-head width; defaults to hidden_size / num_attention_heads (newer configs may set it apart). */
  head_dim: number;
  /** Biases on q/k/v/o (Qwen-style); HF default false. */
  attention_bias = false;
  /** Biases on gate/up/down; HF default false. */
  mlp_bias = false;
  /** The reference CLEX's query scaling by log(L)/log(L0) past L0 (off by default). */
  log_scale = false;
  rope_scaling: Required<RopeScaling> | null;

  constructor(input: LlamaConfigInput = {}) {
    const { rope_scaling, ...rest } = withoutFileKeys(input);
    Object.assign(this, rest);
    this.num_key_value_heads = input.num_key_value_heads ?? this.num_attention_heads;
    this.head_dim = input.head_dim ?? this.hidden_size / this.num_attention_heads;
    this.rope_scaling = normalizeRopeScaling('LlamaConfig', rope_scaling, this.max_position_embeddings);
    checkCommon('LlamaConfig', this, input.head_dim !== undefined);
    positiveInt('LlamaConfig', 'head_dim', this.head_dim);
    for (const k of ['attention_bias', 'mlp_bias'] as const)
      if (typeof this[k] !== 'boolean') fail('LlamaConfig', `${k} must be a boolean, got ${String(this[k])}`);
    positiveInt('LlamaConfig', 'num_key_value_heads', this.num_key_value_heads);
    if (this.num_attention_heads % this.num_key_value_heads !== 0) {
      fail(
        'LlamaConfig',
        `num_attention_heads (${this.num_attention_heads}) must be a multiple of num_key_value_heads (${this.num_key_value_heads})`,
      );
    }
    if (this.head_dim % 2 !== 0)
      fail(
        'LlamaConfig',
        `head_dim = hidden_size / num_attention_heads = ${this.head_dim} must be even for rotary embeddings`,
      );
    if (this.head_dim < 4 && this.rope_scaling)
      fail('LlamaConfig', `rope scaling needs head_dim ≥ 4 (its formulas divide by d − 2), got ${this.head_dim}`);
    positive('LlamaConfig', 'rope_theta', this.rope_theta);
    positive('LlamaConfig', 'rms_norm_eps', this.rms_norm_eps);
    if (this.hidden_act !== 'silu') fail('LlamaConfig', `hidden_act must be 'silu' (SwiGLU), got '${this.hidden_act}'`);
  }

  /** The JSON written to config.json (HF field names). */
  toJSON(): Record<string, unknown> {
    return { architectures: ['LlamaForCausalLM'], ...(this as object) } as Record<string, unknown>;
  }
}

export type GPTNeoXConfigInput = Partial<
  Omit<GPTNeoXConfig, 'rope_scaling' | 'head_dim' | 'rotary_ndims' | 'model_type' | 'toJSON'>
> & { rope_scaling?: Partial<RopeScaling> | null; head_dim?: number };

/** GPT-NeoX config (HF `GPTNeoXConfig` names; defaults as Pythia: partial rotary, parallel residual). */
export class GPTNeoXConfig implements CommonFields {
  readonly model_type = 'gpt_neox';
  vocab_size = 50432;
  hidden_size = 6144;
  /** Defaults to 4·hidden_size. */
  intermediate_size: number;
  num_hidden_layers = 44;
  num_attention_heads = 64;
  max_position_embeddings = 2048;
  rotary_pct = 0.25;
  rotary_emb_base = 10000;
  use_parallel_residual = true;
  layer_norm_eps = 1e-5;
  tie_word_embeddings = false;
  initializer_range = 0.02;
  hidden_act: 'gelu' | 'gelu_new' = 'gelu';
  attention_bias = true;
  /** The reference CLEX's query scaling by log(L)/log(L0) past L0 (off by default). */
  log_scale = false;
  rope_scaling: Required<RopeScaling> | null;

  constructor(input: GPTNeoXConfigInput = {}) {
    const { rope_scaling, head_dim, ...rest } = withoutFileKeys(input);
    Object.assign(this, rest);
    this.intermediate_size = input.intermediate_size ?? 4 * this.hidden_size;
    this.rope_scaling = normalizeRopeScaling('GPTNeoXConfig', rope_scaling, this.max_position_embeddings);
    checkCommon('GPTNeoXConfig', this);
    // GPT-NeoX derives its head width; a config that states another one describes a different model.
    if (head_dim !== undefined && head_dim !== this.head_dim)
      fail(
        'GPTNeoXConfig',
        `head_dim ${String(head_dim)} differs from hidden_size / num_attention_heads = ${this.head_dim}; GPT-NeoX does not support a separate head_dim`,
      );
    if (!(this.rotary_pct > 0 && this.rotary_pct <= 1))
      fail('GPTNeoXConfig', `rotary_pct must be in (0, 1], got ${this.rotary_pct}`);
    const r = this.rotary_ndims;
    if (r < 2 || r % 2 !== 0) {
      fail(
        'GPTNeoXConfig',
        `rotary_ndims = floor(head_dim ${this.head_dim} · rotary_pct ${this.rotary_pct}) = ${r} must be an even number ≥ 2`,
      );
    }
    if (r < 4 && this.rope_scaling)
      fail('GPTNeoXConfig', `rope scaling needs rotary_ndims ≥ 4 (its formulas divide by d − 2), got ${r}`);
    positive('GPTNeoXConfig', 'rotary_emb_base', this.rotary_emb_base);
    positive('GPTNeoXConfig', 'layer_norm_eps', this.layer_norm_eps);
    if (this.hidden_act !== 'gelu' && this.hidden_act !== 'gelu_new')
      fail('GPTNeoXConfig', `hidden_act must be 'gelu' or 'gelu_new', got '${this.hidden_act}'`);
  }

  get head_dim(): number {
    return this.hidden_size / this.num_attention_heads;
  }

  /** Rotated dims per head: floor(head_dim · rotary_pct), as HF. */
  get rotary_ndims(): number {
    return Math.floor(this.head_dim * this.rotary_pct);
  }

  toJSON(): Record<string, unknown> {
    return { architectures: ['GPTNeoXForCausalLM'], ...(this as object) } as Record<string, unknown>;
  }
}
