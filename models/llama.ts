// LLaMA decoder (HF LlamaForCausalLM layout and parameter names): RMSNorm pre-norm blocks,
// separate q/k/v/o projections (biases only with attention_bias), grouped-query attention, SwiGLU MLP
// (biases only with mlp_bias), full-head RoPE, head_dim possibly apart from hidden_size / heads.
import { isGradEnabled } from '../core/autograd.js';
import type { Tensor } from '../core/tensor.js';
import { scaledDotProductAttention } from '../ops/attention/index.js';
import { swiglu } from '../ops/activation.js';
import { Module } from '../nn/module.js';
import { Embedding, Linear, ModuleList, RMSNorm } from '../nn/layers.js';
import { cat, linear } from '../nn/functional.js';
import { autocastLower } from '../core/autocast.js';
import type { CLEX } from './clex/index.js';
import { LlamaConfig, queryLogScale, type LlamaConfigInput } from './config.js';
import { CausalLM, clexLayer, DecoderTrunk, type ModelOptions, normStream, type ResidualStream } from './causal-lm.js';
import type { DecodeState } from './decode-state.js';
import { RotaryEmbedding, rotateQK, rotateRows, type RotaryTables } from './rope-scaling.js';

/** x·Wᵀ (+ b when the layer has one). */
function project(x: Tensor, layer: Linear): Tensor {
  return linear(x, layer.weight, layer.bias);
}

/**
 * When a module's projections of one input (q/k/v, gate/up) run as one matmul against their weights
 * concatenated along the output dim: 'training' (whenever a backward may follow: grad recording is on
 * and a weight requires grad), 'always', or 'never' (one matmul each). The parameters stay separate
 * either way; each gets its slice of the joint weight's gradient through cat's backward, and the
 * outputs are a split whose backward is one cat of their gradients (cat joins up to 4 parts in one
 * dispatch). Main-job training step (plain RoPE, 2 layers): q/k/v joined saves 6 dispatches per layer
 * (6 matmuls and 2 adds, for one cat of the weights and one in the split's backward); gate/up joined
 * saves 2 (3 matmuls and 1 add for the same two cats).
 * So 'training' is the default for both. In inference (no backward) joining never pays: the weights'
 * cat is a dispatch per forward that saves nothing.
 */
export type JointProjection = 'training' | 'always' | 'never';

function joins(mode: JointProjection, layers: readonly Linear[]): boolean {
  return mode === 'always' || (mode === 'training' && isGradEnabled() && layers.some((l) => l.weight.requiresGrad));
}

/** x·[W₁; W₂; …]ᵀ (+ [b₁; b₂; …]): the layers' projections of x side by side along the last dim, in one matmul. */
function projectJoint(x: Tensor, layers: readonly Linear[]): Tensor {
  // Under autocast each weight is cast before the cat, so no float32 copy of the joined weight is made.
  const biases = layers.map((l) => l.bias).filter((b): b is Tensor => b !== null);
  return linear(
    x,
    cat(
      layers.map((l) => autocastLower(l.weight)),
      0,
    ),
    biases.length ? cat(biases.map(autocastLower), 0) : null,
  );
}

export class LlamaAttention extends Module<[Tensor, RotaryTables, DecodeState | undefined], Tensor> {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  jointProjection: JointProjection = 'training';

  constructor(
    readonly config: LlamaConfig,
    readonly layerIdx: number,
    opts: Required<ModelOptions>,
  ) {
    super();
    const h = config.hidden_size,
      D = config.head_dim;
    const o = { ...opts, bias: config.attention_bias };
    this.q_proj = this.module('q_proj', new Linear(h, config.num_attention_heads * D, o));
    this.k_proj = this.module('k_proj', new Linear(h, config.num_key_value_heads * D, o));
    this.v_proj = this.module('v_proj', new Linear(h, config.num_key_value_heads * D, o));
    this.o_proj = this.module('o_proj', new Linear(config.num_attention_heads * D, h, o));
  }

  /** q [B, heads, T, D], k and v [B, kv heads, T, D]; when joined, views of the one projection split by heads. */
  private projectHeads(x: Tensor): Tensor[] {
    const c = this.config;
    const [B, T] = x.shape;
    const layers = [this.q_proj, this.k_proj, this.v_proj];
    const heads = (y: Tensor) => y.reshape([B, T, -1, c.head_dim]);
    // Split before the transpose: the parts' gradients then meet in [B, T, heads, D] order, which
    // reshapes back to the projection's [B, T, heads·D] without a copy.
    const parts = joins(this.jointProjection, layers)
      ? heads(projectJoint(x, layers)).split([c.num_attention_heads, c.num_key_value_heads, c.num_key_value_heads], 2)
      : layers.map((l) => heads(project(x, l)));
    return parts.map((p) => p.transpose(1, 2));
  }

  forward(x: Tensor, rope: RotaryTables, cache: DecodeState | undefined): Tensor {
    const c = this.config;
    const [B, T] = x.shape;
    const [q, kProjected, vProjected] = this.projectHeads(x);
    let [k, v] = [kProjected, vProjected];
    let qr: Tensor;
    if (cache) {
      qr = rotateRows(q, rope, rope.rows - T);
      ({ k, v } = cache.update(this.layerIdx, k, v));
    } else ({ q: qr, k } = rotateQK(q, k, rope));
    const scale = queryLogScale(c.log_scale, rope.rows, c.max_position_embeddings) / Math.sqrt(c.head_dim);
    const out = scaledDotProductAttention(qr, k, v, { causal: true, scale });
    return project(out.transpose(1, 2).reshape([B, T, c.num_attention_heads * c.head_dim]), this.o_proj);
  }
}

export class LlamaMLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  jointProjection: JointProjection = 'training';

  constructor(config: LlamaConfig, opts: Required<ModelOptions>) {
    super();
    const o = { ...opts, bias: config.mlp_bias };
    this.gate_proj = this.module('gate_proj', new Linear(config.hidden_size, config.intermediate_size, o));
    this.up_proj = this.module('up_proj', new Linear(config.hidden_size, config.intermediate_size, o));
    this.down_proj = this.module('down_proj', new Linear(config.intermediate_size, config.hidden_size, o));
  }

  /** down(silu(gate(x)) · up(x)), the SwiGLU product in one fused kernel. */
  forward(x: Tensor): Tensor {
    const layers = [this.gate_proj, this.up_proj];
    const [gate, up] = joins(this.jointProjection, layers)
      ? projectJoint(x, layers).split(
          layers.map((l) => l.weight.shape[0]),
          -1,
        )
      : layers.map((l) => project(x, l));
    return project(swiglu(gate, up), this.down_proj);
  }
}

export class LlamaDecoderLayer extends Module<[ResidualStream, RotaryTables, DecodeState | undefined], ResidualStream> {
  readonly self_attn: LlamaAttention;
  readonly mlp: LlamaMLP;
  readonly input_layernorm: RMSNorm;
  readonly post_attention_layernorm: RMSNorm;

  constructor(
    readonly config: LlamaConfig,
    layerIdx: number,
    opts: Required<ModelOptions>,
  ) {
    super();
    this.self_attn = this.module('self_attn', new LlamaAttention(config, layerIdx, opts));
    this.mlp = this.module('mlp', new LlamaMLP(config, opts));
    this.input_layernorm = this.module(
      'input_layernorm',
      new RMSNorm(config.hidden_size, { ...opts, eps: config.rms_norm_eps }),
    );
    this.post_attention_layernorm = this.module(
      'post_attention_layernorm',
      new RMSNorm(config.hidden_size, { ...opts, eps: config.rms_norm_eps }),
    );
  }

  /**
   * Sequential pre-norm: x = hidden + pending; h = x + attn(n1(x)); out = h + mlp(n2(h)), handed on
   * as (h, mlp(n2(h))) for the next norm to add. Every residual add runs inside a norm's kernel.
   */
  forward(input: ResidualStream, rope: RotaryTables, cache: DecodeState | undefined): ResidualStream {
    const eps = this.config.rms_norm_eps;
    const { sum: x, normed } = normStream(input, this.input_layernorm, eps);
    const attn = this.self_attn.call(normed, rope, cache);
    const { sum: h, normed: n2 } = normStream({ hidden: x, pending: attn }, this.post_attention_layernorm, eps);
    return { hidden: h, pending: this.mlp.call(n2) };
  }
}

/** The trunk (`model.*` in HF checkpoints). */
export class LlamaModel extends DecoderTrunk {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  readonly clex_layer: CLEX | null;
  readonly rotary: RotaryEmbedding;

  constructor(
    readonly config: LlamaConfig,
    opts: Required<ModelOptions>,
  ) {
    super();
    this.embed_tokens = this.module('embed_tokens', new Embedding(config.vocab_size, config.hidden_size, opts));
    this.layers = this.module(
      'layers',
      new ModuleList(
        Array.from({ length: config.num_hidden_layers }, (_, i) => new LlamaDecoderLayer(config, i, opts)),
      ),
    );
    this.norm = this.module('norm', new RMSNorm(config.hidden_size, { ...opts, eps: config.rms_norm_eps }));
    const scaling = config.rope_scaling;
    const common = {
      dim: config.head_dim,
      base: config.rope_theta,
      maxPositionEmbeddings: config.max_position_embeddings,
    };
    this.clex_layer =
      scaling?.type === 'clex' ? this.module('clex_layer', clexLayer({ ...common, scaling, ...opts })) : null;
    this.rotary = new RotaryEmbedding({ ...common, scaling, clex: this.clex_layer });
  }

  get tokenEmbedding(): Embedding {
    return this.embed_tokens;
  }

  forward(ids: Tensor, rope: RotaryTables, cache?: DecodeState): Tensor {
    let stream: ResidualStream = { hidden: this.embed_tokens.call(ids), pending: null };
    for (const layer of this.layers) stream = layer.call(stream, rope, cache);
    return normStream(stream, this.norm, this.config.rms_norm_eps).normed;
  }
}

/** LLaMA with its LM head; parameter names match HF (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`). */
export class LlamaForCausalLM extends CausalLM<LlamaConfig, LlamaModel> {
  constructor(config: LlamaConfig | LlamaConfigInput, opts: ModelOptions = {}) {
    super(config instanceof LlamaConfig ? config : new LlamaConfig(config), opts, {
      trunk: 'model',
      Trunk: LlamaModel,
      head: 'lm_head',
    });
  }

  get model(): LlamaModel {
    return this.trunk;
  }
  /** Absent when tie_word_embeddings (the head reuses model.embed_tokens.weight, as HF checkpoints omit it). */
  get lm_head(): Linear | null {
    return this.head;
  }
}
