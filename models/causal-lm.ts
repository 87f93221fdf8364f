// What LLaMA and GPT-NeoX share: the trunk + LM head layout (tied or not), the async forward contract
// (ids → logits, shifted loss), the rotary table per forward (or per decoding step, from the
// DecodeState), HF-style init, generation and saving as a Hugging Face folder.
import type { DeviceName } from '../core/backend.js';
import { getDefaultDevice } from '../core/device.js';
import type { DType } from '../core/dtype.js';
import { argTensor } from '../core/args.js';
import { settleBacklog } from '../core/scope.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { crossEntropy, IGNORE_INDEX } from '../ops/softmax/index.js';

export { IGNORE_INDEX };
import { addLayerNorm, addRmsNorm, layerNorm, rmsNorm, type AddNormResult } from '../ops/norm/index.js';
import { Module } from '../nn/module.js';
import * as init from '../nn/init.js';
import { Linear, RMSNorm, type Embedding, type LayerNorm } from '../nn/layers.js';
import { linear } from '../nn/functional.js';
import { CLEX, type ClexOptions } from './clex/index.js';
import type { GPTNeoXConfig, LlamaConfig } from './config.js';
import type { DecodeState } from './decode-state.js';
import { generate, type GenerateOptions } from './generate.js';
import { savePretrained, type SavePretrainedOptions } from './hf-folder.js';
import type { RotaryEmbedding, RotaryTables } from './rope-scaling.js';

export interface ModelOptions {
  device?: DeviceName;
  dtype?: DType;
}

export interface ForwardOptions {
  /** Token ids [B, T] (int32); the loss compares logits at t with labels at t + 1; -100 is ignored. */
  labels?: Tensor;
  /** Incremental decoding: the keys/values of earlier tokens and the step's table (a DecodeState, alias KVCache; use under noGrad). */
  cache?: DecodeState;
}

export interface CausalLMOutput {
  /** [B, T, vocab]. */
  logits: Tensor;
  /** Mean next-token cross-entropy (when labels were given). */
  loss?: Tensor;
}

function resolveOptions(opts: ModelOptions): Required<ModelOptions> {
  return { device: opts.device ?? getDefaultDevice(), dtype: opts.dtype ?? 'float32' };
}

/** Mean next-token loss: logits at position t predict labels at t + 1 (HF's shift), ignoring -100. */
export function shiftedLoss(logits: Tensor, labels: Tensor): Tensor {
  const [B, T] = labels.shape;
  if (labels.rank !== 2 || logits.shape[0] !== B || logits.shape[1] !== T) {
    throw new OpError(
      'CausalLM.forward',
      `labels ${shapeStr(labels.shape)} must match the ids' [B, T] = ${shapeStr(logits.shape.slice(0, 2))}`,
    );
  }
  if (T < 2) throw new OpError('CausalLM.forward', `a loss needs at least 2 tokens per sequence, got ${T}`);
  return crossEntropy(logits.narrow(1, 0, T - 1), labels.narrow(1, 1, T - 1), { ignoreIndex: IGNORE_INDEX });
}

export type DecoderConfig = LlamaConfig | GPTNeoXConfig;

/**
 * A decoder's CLEX layer: its ODE stays float32 in a float16 model (half precision would cost its solve
 * the range and accuracy of log θ), and keepsDtype keeps it so through half() and to({ dtype }).
 */
export function clexLayer(opts: ClexOptions): CLEX {
  const clex = new CLEX({ ...opts, dtype: opts.dtype === 'float16' ? 'float32' : opts.dtype });
  clex.keepsDtype = true;
  return clex;
}

/**
 * What a decoder layer hands to the next: the residual stream and the block output not yet added to
 * it. The next layer's input norm (or the trunk's final norm) adds them inside its own kernel
 * (addRmsNorm / addLayerNorm), so a layer's last residual add costs no dispatch of its own.
 */
export interface ResidualStream {
  hidden: Tensor;
  /** Added to `hidden` by the next norm; null for the embeddings entering the first layer. */
  pending: Tensor | null;
}

/** The norm of hidden + pending, and that sum: the pending residual add runs inside the norm's kernel. */
export function normStream(stream: ResidualStream, norm: RMSNorm | LayerNorm, eps: number): AddNormResult {
  const { hidden, pending } = stream;
  if (norm instanceof RMSNorm)
    return pending
      ? addRmsNorm(hidden, pending, norm.weight, eps)
      : { sum: hidden, normed: rmsNorm(hidden, norm.weight, eps) };
  return pending
    ? addLayerNorm(hidden, pending, norm.weight, norm.bias, eps)
    : { sum: hidden, normed: layerNorm(hidden, norm.weight, norm.bias, eps) };
}

/** The stack under the LM head (`model.*` in LLaMA checkpoints, `gpt_neox.*` in NeoX): ids → final hidden states. */
export abstract class DecoderTrunk extends Module<[Tensor, RotaryTables, DecodeState | undefined], Tensor> {
  abstract readonly rotary: RotaryEmbedding;
  /** CLEX's ODE parameters (`<trunk>.clex_layer.proj_func.*`, as the reference), when rope_scaling is CLEX. */
  abstract readonly clex_layer: CLEX | null;
  /** The token embedding; a tied head multiplies by its weight. */
  abstract readonly tokenEmbedding: Embedding;
}

/** Where a decoder's trunk and head live in the module tree (HF names). */
export interface DecoderLayout<C extends DecoderConfig, T extends DecoderTrunk> {
  trunk: string;
  Trunk: new (config: C, opts: Required<ModelOptions>) => T;
  /** The untied head's name (absent from the tree when tie_word_embeddings). */
  head: string;
}

/** Base of the decoder-only models: a trunk and an LM head, registered under the subclass's HF names. */
export abstract class CausalLM<
  C extends DecoderConfig = DecoderConfig,
  T extends DecoderTrunk = DecoderTrunk,
> extends Module<[Tensor, ForwardOptions?], Promise<CausalLMOutput>> {
  readonly device: DeviceName;
  protected readonly trunk: T;
  /** Null when tie_word_embeddings (the head reuses the token embedding, as HF checkpoints omit it). */
  protected readonly head: Linear | null;

  protected constructor(
    readonly config: C,
    opts: ModelOptions,
    layout: DecoderLayout<C, T>,
  ) {
    super();
    const o = resolveOptions(opts);
    this.device = o.device;
    this.trunk = this.module(layout.trunk, new layout.Trunk(config, o));
    this.head = config.tie_word_embeddings
      ? null
      : this.module(layout.head, new Linear(config.hidden_size, config.vocab_size, { ...o, bias: false }));
    this.initWeights(config.initializer_range);
  }

  /** The dtype of the model's weights and activations (changed by half(), float(), to({ dtype })). */
  get dtype(): DType {
    return this.trunk.tokenEmbedding.weight.dtype;
  }
  get rotary(): RotaryEmbedding {
    return this.trunk.rotary;
  }
  get clex(): CLEX | null {
    return this.trunk.clex_layer;
  }
  get numLayers(): number {
    return this.config.num_hidden_layers;
  }
  get vocabSize(): number {
    return this.config.vocab_size;
  }
  get maxPositionEmbeddings(): number {
    return this.config.max_position_embeddings;
  }
  /** The reference CLEX's log_scale option (queries × log(L)/log(L0) past L0). */
  get logScale(): boolean {
    return this.config.log_scale;
  }

  /** Logits [B, T, V] for ids [B, T], with this forward's rotary tables. */
  protected decode(ids: Tensor, rope: RotaryTables, cache: DecodeState | undefined): Tensor {
    const h = this.trunk.call(ids, rope, cache);
    return linear(h, (this.head ?? this.trunk.tokenEmbedding).weight);
  }

  /**
   * ids [B, T] int32 → { logits [B, T, V], loss? }. Async because CLEX may solve its ODE (every type
   * goes through the same path; for static rules the await costs a microtask). With a cache, ids are
   * the new tokens only, positions continue after the cached ones, and the cache decides the table
   * (and whether the cached tokens run again with it).
   */
  async forward(ids: Tensor, opts: ForwardOptions = {}): Promise<CausalLMOutput> {
    argTensor(`${this.constructor.name}.forward`, 'ids', ids);
    const backlog = settleBacklog(); // a training loop may never read: keep the GPU queue bounded
    if (backlog) await backlog;
    if (ids.rank !== 2 || ids.dtype !== 'int32')
      throw new OpError('CausalLM.forward', `ids must be int32 [batch, seq], got ${ids.dtype} ${shapeStr(ids.shape)}`);
    if (ids.device !== this.device)
      throw new OpError('CausalLM.forward', `ids are on ${ids.device} but the model is on ${this.device}`);
    const { cache } = opts;
    const T = ids.shape[1];
    let logits: Tensor;
    if (cache) {
      const step = await cache.step(ids, this);
      logits = this.decode(step.ids, step.rope, cache);
      // A recomputing step ran every token so far: keep the new ones' rows.
      if (step.ids.shape[1] > T) logits = logits.narrow(1, step.ids.shape[1] - T, T);
    } else {
      const rope = await this.rotary.forward({
        length: T,
        device: this.device,
        dtype: this.dtype,
        training: this.training,
      });
      logits = this.decode(ids, rope, undefined);
    }
    if (!opts.labels) return { logits };
    return { logits, loss: shiftedLoss(logits, opts.labels) };
  }

  /** Samples continuations with a KV cache; returns the full token lists (prompt + new tokens). */
  generate(
    ids: Tensor | readonly number[] | readonly (readonly number[])[],
    opts: GenerateOptions = {},
  ): Promise<number[][]> {
    return generate(this, ids, opts);
  }

  /**
   * Writes a Hugging Face folder that `transformers` (and models.fromPretrained) load: config.json,
   * safetensors weights (sharded past maxShardSize, stored as dtype), the tokenizer's files. Atomic.
   */
  savePretrained(dir: string, opts: SavePretrainedOptions = {}): Promise<void> {
    return savePretrained(this, dir, opts);
  }

  /** HF's init by each parameter's declared role: weights and embeddings N(0, initializer_range), biases 0, norm gains 1. */
  protected initWeights(std: number): void {
    const clex = new Set(this.clex?.parameters()); // CLEX keeps its own init (W_up uniform, W_down zeros)
    for (const [p, role] of this.parameterRoles()) {
      if (clex.has(p)) continue;
      if (role === 'bias') init.zeros(p);
      else if (role === 'norm') init.ones(p);
      else init.normal(p, 0, std);
    }
  }

  /** Frees parameters and cached rotary tables. */
  dispose(): void {
    this.rotary.dispose();
    super.dispose();
  }
}
