// Model configs with Hugging Face field names. The constructors fill HF's defaults, validate every
// field and throw OpError naming the field and the offending value, so a bad config fails at build
// time rather than as a shape error deep inside a forward.
import { OpError } from '../core/shape.js';

export type RopeScalingType = 'linear' | 'ntk' | 'dynamic' | 'yarn' | 'clex';
export type OdeMethodName = 'rk4' | 'dopri5';

/**
 * rope_scaling as in HF configs ({ type, factor } for linear/dynamic/yarn; CLEX's max_factor,
 * param_factor, act, time_dt). Keys after time_dt are this framework's CLEX solver options.
 */
export interface RopeScaling {
  type: RopeScalingType;
  /** s for linear (PI), ntk, yarn; f for dynamic NTK. Ignored by clex (which uses t). */
  factor?: number;
  /** CLEX: largest integer t (the longest context is max_factor·L0). */
  max_factor?: number;
  /** CLEX: λ, the ODE hidden width is λ·d. */
  param_factor?: number;
  /** CLEX: activation of the ODE network. */
  act?: 'tanh' | 'silu';
  /** CLEX: the rk4 step (the reference's time_dt, 0.01). */
  time_dt?: number;
  /** CLEX: 'dopri5' (adaptive, default) or 'rk4' (fixed step time_dt, the reference solver). */
  ode_method?: OdeMethodName;
  /** CLEX: 'backprop' through the solver (default, exact for the discrete solve) or 'adjoint'. */
  ode_gradient?: 'backprop' | 'adjoint';
  /** CLEX: solve the tiny ODE on the 'cpu' reference backend in float64 (default) or on the model's 'device'. */
  ode_device?: 'cpu' | 'device';
  /** CLEX: dopri5 tolerances (defaults 1e-7 / 1e-9; the state is a log-frequency of order 1..10). */
  ode_rtol?: number;
  ode_atol?: number;
  /** YaRN: ramp bounds (defaults 32 and 1). */
  beta_fast?: number;
  beta_slow?: number;
}

const DEFAULT_CLEX = { max_factor: 16, param_factor: 1, act: 'tanh', time_dt: 0.01, ode_method: 'dopri5', ode_gradient: 'backprop', ode_device: 'cpu', ode_rtol: 1e-7, ode_atol: 1e-9 } as const;

function fail(model: string, msg: string): never {
  throw new OpError(model, msg);
}

function positiveInt(model: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(model, `${name} must be a positive integer, got ${String(v)}`);
  return v;
}

function positive(model: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(model, `${name} must be a positive finite number, got ${String(v)}`);
  return v;
}

/** Validates rope_scaling and fills the defaults of its type (null/undefined: plain RoPE). */
export function normalizeRopeScaling(model: string, rs: Partial<RopeScaling> | null | undefined): Required<RopeScaling> | null {
  if (rs === null || rs === undefined) return null;
  const types: RopeScalingType[] = ['linear', 'ntk', 'dynamic', 'yarn', 'clex'];
  const type = (rs.type ?? (rs as { rope_type?: RopeScalingType }).rope_type) as RopeScalingType | undefined;
  if (!type || !types.includes(type)) fail(model, `rope_scaling.type must be one of ${types.join(', ')}, got '${String(type)}'`);
  const out = {
    factor: 1, beta_fast: 32, beta_slow: 1, ...DEFAULT_CLEX, ...rs, type,
  } as Required<RopeScaling>;
  if (type === 'clex') {
    positiveInt(model, 'rope_scaling.max_factor', out.max_factor);
    positiveInt(model, 'rope_scaling.param_factor', out.param_factor);
    positive(model, 'rope_scaling.time_dt', out.time_dt);
    if (!['tanh', 'silu'].includes(out.act)) fail(model, `rope_scaling.act must be 'tanh' or 'silu', got '${out.act}'`);
    if (!['rk4', 'dopri5'].includes(out.ode_method)) fail(model, `rope_scaling.ode_method must be 'rk4' or 'dopri5', got '${out.ode_method}'`);
    if (!['backprop', 'adjoint'].includes(out.ode_gradient)) fail(model, `rope_scaling.ode_gradient must be 'backprop' or 'adjoint', got '${out.ode_gradient}'`);
    if (!['cpu', 'device'].includes(out.ode_device)) fail(model, `rope_scaling.ode_device must be 'cpu' or 'device', got '${out.ode_device}'`);
    positive(model, 'rope_scaling.ode_rtol', out.ode_rtol);
    positive(model, 'rope_scaling.ode_atol', out.ode_atol);
  } else {
    positive(model, 'rope_scaling.factor', out.factor);
    if (type !== 'dynamic' && out.factor < 1) fail(model, `rope_scaling.factor must be ≥ 1 for '${type}' (it stretches the context), got ${out.factor}`);
    if (type === 'yarn' && !(out.beta_fast > out.beta_slow)) fail(model, `rope_scaling.beta_fast (${out.beta_fast}) must exceed beta_slow (${out.beta_slow})`);
  }
  return out;
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
}

function checkCommon(model: string, c: CommonFields): void {
  for (const k of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'max_position_embeddings'] as const) positiveInt(model, k, c[k]);
  if (c.hidden_size % c.num_attention_heads !== 0) {
    fail(model, `hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`);
  }
  positive(model, 'initializer_range', c.initializer_range);
  if (typeof c.tie_word_embeddings !== 'boolean') fail(model, `tie_word_embeddings must be a boolean, got ${String(c.tie_word_embeddings)}`);
}

export type LlamaConfigInput = Partial<Omit<LlamaConfig, 'rope_scaling' | 'head_dim' | 'model_type'>> & { rope_scaling?: Partial<RopeScaling> | null };

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
  rope_scaling: Required<RopeScaling> | null;

  constructor(input: LlamaConfigInput = {}) {
    const { rope_scaling, ...rest } = input;
    Object.assign(this, rest);
    this.num_key_value_heads = input.num_key_value_heads ?? this.num_attention_heads;
    this.rope_scaling = normalizeRopeScaling('LlamaConfig', rope_scaling);
    checkCommon('LlamaConfig', this);
    positiveInt('LlamaConfig', 'num_key_value_heads', this.num_key_value_heads);
    if (this.num_attention_heads % this.num_key_value_heads !== 0) {
      fail('LlamaConfig', `num_attention_heads (${this.num_attention_heads}) must be a multiple of num_key_value_heads (${this.num_key_value_heads})`);
    }
    if (this.head_dim % 2 !== 0) fail('LlamaConfig', `head_dim = hidden_size / num_attention_heads = ${this.head_dim} must be even for rotary embeddings`);
    if (this.head_dim < 4 && this.rope_scaling) fail('LlamaConfig', `rope scaling needs head_dim ≥ 4 (its formulas divide by d − 2), got ${this.head_dim}`);
    positive('LlamaConfig', 'rope_theta', this.rope_theta);
    positive('LlamaConfig', 'rms_norm_eps', this.rms_norm_eps);
    if (this.hidden_act !== 'silu') fail('LlamaConfig', `hidden_act must be 'silu' (SwiGLU), got '${this.hidden_act}'`);
  }

  get head_dim(): number {
    return this.hidden_size / this.num_attention_heads;
  }

  /** The JSON written to config.json (HF field names). */
  toJSON(): Record<string, unknown> {
    return { ...(this as object), architectures: ['LlamaForCausalLM'] } as Record<string, unknown>;
  }
}

export type GPTNeoXConfigInput = Partial<Omit<GPTNeoXConfig, 'rope_scaling' | 'head_dim' | 'rotary_ndims' | 'model_type'>> & { rope_scaling?: Partial<RopeScaling> | null };

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
  rope_scaling: Required<RopeScaling> | null;

  constructor(input: GPTNeoXConfigInput = {}) {
    const { rope_scaling, ...rest } = input;
    Object.assign(this, rest);
    this.intermediate_size = input.intermediate_size ?? 4 * this.hidden_size;
    this.rope_scaling = normalizeRopeScaling('GPTNeoXConfig', rope_scaling);
    checkCommon('GPTNeoXConfig', this);
    if (!(this.rotary_pct > 0 && this.rotary_pct <= 1)) fail('GPTNeoXConfig', `rotary_pct must be in (0, 1], got ${this.rotary_pct}`);
    const r = this.rotary_ndims;
    if (r < 2 || r % 2 !== 0) {
      fail('GPTNeoXConfig', `rotary_ndims = floor(head_dim ${this.head_dim} · rotary_pct ${this.rotary_pct}) = ${r} must be an even number ≥ 2`);
    }
    if (r < 4 && this.rope_scaling) fail('GPTNeoXConfig', `rope scaling needs rotary_ndims ≥ 4 (its formulas divide by d − 2), got ${r}`);
    positive('GPTNeoXConfig', 'rotary_emb_base', this.rotary_emb_base);
    positive('GPTNeoXConfig', 'layer_norm_eps', this.layer_norm_eps);
    if (this.hidden_act !== 'gelu' && this.hidden_act !== 'gelu_new') fail('GPTNeoXConfig', `hidden_act must be 'gelu' or 'gelu_new', got '${this.hidden_act}'`);
  }

  get head_dim(): number {
    return this.hidden_size / this.num_attention_heads;
  }

  /** Rotated dims per head: floor(head_dim · rotary_pct), as HF. */
  get rotary_ndims(): number {
    return Math.floor(this.head_dim * this.rotary_pct);
  }

  toJSON(): Record<string, unknown> {
    return { ...(this as object), architectures: ['GPTNeoXForCausalLM'] } as Record<string, unknown>;
  }
}
