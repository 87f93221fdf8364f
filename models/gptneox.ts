// GPT-NeoX decoder (HF GPTNeoXForCausalLM layout and names, as Pythia): LayerNorm with bias, fused
// query_key_value laid out per head as [heads, 3, head_dim], partial rotary (first rotary_ndims dims
// of each head), parallel residual out = x + attn(ln1(x)) + mlp(ln2(x)), GELU MLP with biases.
import type { Tensor } from '../core/tensor.js';
import { scaledDotProductAttention } from '../ops/attention/index.js';
import { gelu } from '../ops/activation.js';
import { Module } from '../nn/module.js';
import { Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { linear } from '../nn/functional.js';
import type { CLEX } from './clex/index.js';
import { GPTNeoXConfig, queryLogScale, type GPTNeoXConfigInput } from './config.js';
import { CausalLM, clexLayer, DecoderTrunk, type ModelOptions, normStream, type ResidualStream } from './causal-lm.js';
import type { DecodeState } from './decode-state.js';
import { RotaryEmbedding, rotateQK, rotateRows, type RotaryTables } from './rope-scaling.js';

export class GPTNeoXAttention extends Module<[Tensor, RotaryTables, DecodeState | undefined], Tensor> {
  readonly query_key_value: Linear;
  readonly dense: Linear;

  constructor(
    readonly config: GPTNeoXConfig,
    readonly layerIdx: number,
    opts: Required<ModelOptions>,
  ) {
    super();
    const h = config.hidden_size;
    this.query_key_value = this.module(
      'query_key_value',
      new Linear(h, 3 * h, { ...opts, bias: config.attention_bias }),
    );
    this.dense = this.module('dense', new Linear(h, h, { ...opts, bias: config.attention_bias }));
  }

  forward(x: Tensor, rope: RotaryTables, cache: DecodeState | undefined): Tensor {
    const c = this.config;
    const [B, T] = x.shape;
    const H = c.num_attention_heads,
      D = c.head_dim,
      R = c.rotary_ndims;
    // Per-head layout: the 3h outputs are [heads, 3, head_dim], i.e. each head's q, k, v are adjacent.
    const qkv = linear(x, this.query_key_value.weight, this.query_key_value.bias)
      .reshape([B, T, H, 3 * D])
      .transpose(1, 2);
    const q = qkv.narrow(-1, 0, D);
    let k = qkv.narrow(-1, D, D);
    let v = qkv.narrow(-1, 2 * D, D);
    let qr: Tensor;
    if (cache) {
      qr = rotateRows(q, rope, rope.rows - T, R);
      ({ k, v } = cache.update(this.layerIdx, k, v));
    } else ({ q: qr, k } = rotateQK(q, k, rope, R));
    const scale = queryLogScale(c.log_scale, rope.rows, c.max_position_embeddings) / Math.sqrt(D);
    const out = scaledDotProductAttention(qr, k, v, { causal: true, scale });
    return linear(out.transpose(1, 2).reshape([B, T, c.hidden_size]), this.dense.weight, this.dense.bias);
  }
}

export class GPTNeoXMLP extends Module {
  readonly dense_h_to_4h: Linear;
  readonly dense_4h_to_h: Linear;

  constructor(
    readonly config: GPTNeoXConfig,
    opts: Required<ModelOptions>,
  ) {
    super();
    this.dense_h_to_4h = this.module('dense_h_to_4h', new Linear(config.hidden_size, config.intermediate_size, opts));
    this.dense_4h_to_h = this.module('dense_4h_to_h', new Linear(config.intermediate_size, config.hidden_size, opts));
  }

  forward(x: Tensor): Tensor {
    const a = gelu(linear(x, this.dense_h_to_4h.weight, this.dense_h_to_4h.bias), {
      approximate: this.config.hidden_act === 'gelu_new' ? 'tanh' : 'none',
    });
    return linear(a, this.dense_4h_to_h.weight, this.dense_4h_to_h.bias);
  }
}

export class GPTNeoXLayer extends Module<[ResidualStream, RotaryTables, DecodeState | undefined], ResidualStream> {
  readonly input_layernorm: LayerNorm;
  readonly post_attention_layernorm: LayerNorm;
  readonly attention: GPTNeoXAttention;
  readonly mlp: GPTNeoXMLP;

  constructor(
    readonly config: GPTNeoXConfig,
    layerIdx: number,
    opts: Required<ModelOptions>,
  ) {
    super();
    const ln = { ...opts, eps: config.layer_norm_eps };
    this.input_layernorm = this.module('input_layernorm', new LayerNorm(config.hidden_size, ln));
    this.post_attention_layernorm = this.module('post_attention_layernorm', new LayerNorm(config.hidden_size, ln));
    this.attention = this.module('attention', new GPTNeoXAttention(config, layerIdx, opts));
    this.mlp = this.module('mlp', new GPTNeoXMLP(config, opts));
  }

  /**
   * x = hidden + pending, then parallel: out = (x + attn(ln1(x))) + mlp(ln2(x)); sequential:
   * h = x + attn(ln1(x)), out = h + mlp(ln2(h)). The last add is handed on for the next norm's kernel.
   */
  forward(input: ResidualStream, rope: RotaryTables, cache: DecodeState | undefined): ResidualStream {
    const eps = this.config.layer_norm_eps;
    const { sum: x, normed } = normStream(input, this.input_layernorm, eps);
    const attn = this.attention.call(normed, rope, cache);
    if (this.config.use_parallel_residual) {
      return {
        hidden: x.add(attn),
        pending: this.mlp.call(normStream({ hidden: x, pending: null }, this.post_attention_layernorm, eps).normed),
      };
    }
    const { sum: h, normed: n2 } = normStream({ hidden: x, pending: attn }, this.post_attention_layernorm, eps);
    return { hidden: h, pending: this.mlp.call(n2) };
  }
}

/** The trunk (`gpt_neox.*` in HF checkpoints). */
export class GPTNeoXModel extends DecoderTrunk {
  readonly embed_in: Embedding;
  readonly layers: ModuleList<GPTNeoXLayer>;
  readonly final_layer_norm: LayerNorm;
  /** Over the rotary_ndims rotated dims of each head. */
  readonly clex_layer: CLEX | null;
  readonly rotary: RotaryEmbedding;

  constructor(
    readonly config: GPTNeoXConfig,
    opts: Required<ModelOptions>,
  ) {
    super();
    this.embed_in = this.module('embed_in', new Embedding(config.vocab_size, config.hidden_size, opts));
    this.layers = this.module(
      'layers',
      new ModuleList(Array.from({ length: config.num_hidden_layers }, (_, i) => new GPTNeoXLayer(config, i, opts))),
    );
    this.final_layer_norm = this.module(
      'final_layer_norm',
      new LayerNorm(config.hidden_size, { ...opts, eps: config.layer_norm_eps }),
    );
    const scaling = config.rope_scaling;
    const common = {
      dim: config.rotary_ndims,
      base: config.rotary_emb_base,
      maxPositionEmbeddings: config.max_position_embeddings,
    };
    this.clex_layer =
      scaling?.type === 'clex' ? this.module('clex_layer', clexLayer({ ...common, scaling, ...opts })) : null;
    this.rotary = new RotaryEmbedding({ ...common, scaling, clex: this.clex_layer });
  }

  get tokenEmbedding(): Embedding {
    return this.embed_in;
  }

  forward(ids: Tensor, rope: RotaryTables, cache?: DecodeState): Tensor {
    let stream: ResidualStream = { hidden: this.embed_in.call(ids), pending: null };
    for (const layer of this.layers) stream = layer.call(stream, rope, cache);
    return normStream(stream, this.final_layer_norm, this.config.layer_norm_eps).normed;
  }
}

/** GPT-NeoX with its LM head; names match HF (`gpt_neox.layers.0.attention.query_key_value.weight`, `embed_out.weight`). */
export class GPTNeoXForCausalLM extends CausalLM<GPTNeoXConfig, GPTNeoXModel> {
  constructor(config: GPTNeoXConfig | GPTNeoXConfigInput, opts: ModelOptions = {}) {
    super(config instanceof GPTNeoXConfig ? config : new GPTNeoXConfig(config), opts, {
      trunk: 'gpt_neox',
      Trunk: GPTNeoXModel,
      head: 'embed_out',
    });
  }

  get gpt_neox(): GPTNeoXModel {
    return this.trunk;
  }
  /** Absent when tie_word_embeddings (the head reuses gpt_neox.embed_in.weight). */
  get embed_out(): Linear | null {
    return this.head;
  }
}
