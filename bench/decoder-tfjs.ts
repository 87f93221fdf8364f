// The same LLaMA training step written with TF.js ops: embedding, RMSNorm, rotary causal attention,
// SwiGLU MLP, untied head, shifted cross-entropy, global-norm clipping and AdamW (PyTorch semantics,
// weight decay per parameter as in dawngrad's groups). It starts from a copy of a dawngrad model's
// weights, so both frameworks train the same numbers.
import type * as TF from '@tensorflow/tfjs-core';
import { TRAINING, llamaConfig, type DawngradDecoder, type DecoderShape, type DecoderTrainer } from './decoder.js';

const BETAS = [0.9, 0.999] as const;
const EPS = 1e-8;
const RMS_EPS = 1e-6;

/** The parameters this TF.js model declares, by HF name, in the trainer's layout. */
export function tfjsParameterShapes(s: DecoderShape): [string, number[]][] {
  const inter = llamaConfig(s, 'plain').intermediate_size!;
  const h = s.hidden;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [s.vocab, h]]];
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    for (const name of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) out.push([`${p}.self_attn.${name}.weight`, [h, h]]);
    out.push(
      [`${p}.mlp.gate_proj.weight`, [inter, h]],
      [`${p}.mlp.up_proj.weight`, [inter, h]],
      [`${p}.mlp.down_proj.weight`, [h, inter]],
    );
    out.push([`${p}.input_layernorm.weight`, [h]], [`${p}.post_attention_layernorm.weight`, [h]]);
  }
  out.push(['model.norm.weight', [h]], ['lm_head.weight', [s.vocab, h]]);
  return out;
}

interface TfParameter {
  variable: TF.Variable;
  m: TF.Variable;
  v: TF.Variable;
  weightDecay: number;
}

export class TfjsDecoder implements DecoderTrainer {
  private readonly params = new Map<string, TfParameter>();
  private readonly cos: TF.Tensor2D;
  private readonly sin: TF.Tensor2D;
  /** 0 on and below the diagonal, −1e9 above: added to the scores for causal attention. */
  private readonly causalMask: TF.Tensor2D;
  private steps = 0;

  /** invFreq: the rotary inverse frequencies [D/2] (the table is HF's rotate_half layout: angles repeated). */
  private constructor(
    private readonly tf: typeof TF,
    readonly shape: DecoderShape,
    invFreq: Float64Array,
  ) {
    const T = shape.seqLen;
    this.causalMask = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)), -1e9) as TF.Tensor2D);
    const angles = Array.from({ length: T }, (_, pos) => [...invFreq, ...invFreq].map((f) => pos * f));
    this.cos = tf.tensor2d(angles.map((row) => row.map(Math.cos)));
    this.sin = tf.tensor2d(angles.map((row) => row.map(Math.sin)));
  }

  /** A TF.js copy of a plain-RoPE dawngrad model: same parameter names, shapes, values, rotary table, weight decay. */
  static async fromDawngrad(tf: typeof TF, ours: DawngradDecoder): Promise<TfjsDecoder> {
    if (ours.model.clex)
      throw new Error(
        "TfjsDecoder.fromDawngrad: the TF.js model has plain RoPE only; give a model built with rope 'plain'",
      );
    const s = ours.shape;
    const d = new TfjsDecoder(tf, s, ours.model.rotary.inverseFrequencies(s.seqLen).invFreq);
    const given = new Map(ours.model.namedParameters());
    const declared = tfjsParameterShapes(s);
    const missing = [...given.keys()].filter((name) => !declared.some(([n]) => n === name));
    if (missing.length)
      throw new Error(
        `TfjsDecoder.fromDawngrad: the TF.js model has no parameter ${missing.join(', ')}; add it to tfjsParameterShapes`,
      );
    for (const [name, shape] of declared) {
      const p = given.get(name);
      if (!p || p.shape.join() !== shape.join())
        throw new Error(
          `TfjsDecoder.fromDawngrad: ${name} is [${shape}] in TF.js but ${p ? `[${p.shape}]` : 'absent'} in dawngrad`,
        );
      const values = Float32Array.from(await p.data());
      d.params.set(name, {
        variable: tf.variable(tf.tensor(values, shape)),
        m: tf.variable(tf.zeros(shape)),
        v: tf.variable(tf.zeros(shape)),
        weightDecay: ours.weightDecay.get(name) ?? 0,
      });
    }
    return d;
  }

  get numParameters(): number {
    return [...this.params.values()].reduce((n, p) => n + p.variable.size, 0);
  }

  private weight(name: string): TF.Variable {
    return this.params.get(name)!.variable;
  }

  /** x [N, in] · Wᵀ for an HF [out, in] weight. */
  private linear(x: TF.Tensor2D, name: string): TF.Tensor2D {
    return this.tf.matMul(x, this.weight(name), false, true);
  }

  private rmsNorm(x: TF.Tensor2D, name: string): TF.Tensor2D {
    const tf = this.tf;
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), RMS_EPS))), this.weight(name));
  }

  /** q·cos + rotate_half(q)·sin over [B, H, T, D]. */
  private rotary(x: TF.Tensor4D): TF.Tensor4D {
    const tf = this.tf;
    const [B, H, T, D] = x.shape;
    const h = D / 2;
    const rotated = tf.concat(
      [tf.neg(tf.slice(x, [0, 0, 0, h], [B, H, T, h])), tf.slice(x, [0, 0, 0, 0], [B, H, T, h])],
      3,
    );
    return tf.add(tf.mul(x, this.cos), tf.mul(rotated, this.sin));
  }

  private attention(x: TF.Tensor2D, p: string): TF.Tensor2D {
    const tf = this.tf;
    const { batch: B, seqLen: T, heads: H, hidden } = this.shape;
    const D = hidden / H;
    const heads = (name: string) =>
      tf.transpose(tf.reshape(this.linear(x, `${p}.${name}.weight`), [B, T, H, D]), [0, 2, 1, 3]) as TF.Tensor4D;
    const q = this.rotary(heads('q_proj')),
      k = this.rotary(heads('k_proj')),
      v = heads('v_proj');
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)), this.causalMask);
    const out = tf.matMul(tf.softmax(scores), v);
    return this.linear(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B * T, hidden]), `${p}.o_proj.weight`);
  }

  private mlp(x: TF.Tensor2D, p: string): TF.Tensor2D {
    const tf = this.tf;
    const gate = this.linear(x, `${p}.gate_proj.weight`);
    return this.linear(
      tf.mul(tf.mul(gate, tf.sigmoid(gate)), this.linear(x, `${p}.up_proj.weight`)),
      `${p}.down_proj.weight`,
    );
  }

  /** Mean next-token cross-entropy of ids [B, T] (logits at t predict ids at t + 1). */
  loss(ids: TF.Tensor2D): TF.Scalar {
    const tf = this.tf;
    const { batch: B, seqLen: T, vocab: V, hidden } = this.shape;
    let h = tf.reshape(tf.gather(this.weight('model.embed_tokens.weight'), ids), [B * T, hidden]) as TF.Tensor2D;
    for (let i = 0; i < this.shape.layers; i++) {
      const p = `model.layers.${i}`;
      h = tf.add(h, this.attention(this.rmsNorm(h, `${p}.input_layernorm.weight`), `${p}.self_attn`));
      h = tf.add(h, this.mlp(this.rmsNorm(h, `${p}.post_attention_layernorm.weight`), `${p}.mlp`));
    }
    const logits = tf.reshape(this.linear(this.rmsNorm(h, 'model.norm.weight'), 'lm_head.weight'), [B, T, V]);
    const logProbs = tf.logSoftmax(tf.slice(logits, [0, 0, 0], [B, T - 1, V]));
    const targets = tf.oneHot(tf.slice(ids, [0, 1], [B, T - 1]), V);
    return tf.neg(tf.mean(tf.sum(tf.mul(targets, logProbs), -1))) as TF.Scalar;
  }

  async step(ids: Int32Array, readLoss: boolean): Promise<number | null> {
    const tf = this.tf;
    const { batch: B, seqLen: T } = this.shape;
    const x = tf.tensor2d(ids, [B, T], 'int32');
    const params = [...this.params.values()];
    const { value, grads } = tf.variableGrads(
      () => this.loss(x),
      params.map((p) => p.variable),
    );
    x.dispose();
    this.steps++;
    const [beta1, beta2] = BETAS;
    const stepSize = TRAINING.lr / (1 - beta1 ** this.steps);
    const sqrtBc2 = Math.sqrt(1 - beta2 ** this.steps);
    tf.tidy(() => {
      // Global-norm clipping: every gradient × min(clip / (‖g‖ + 1e-6), 1).
      const gs = params.map((p) => grads[p.variable.name]);
      // stack, not addN: addN binds every input at once, past the adapter's storage-buffer limit.
      const norm = tf.sqrt(tf.sum(tf.stack(gs.map((g) => tf.sum(tf.square(g))))));
      const coef = tf.minimum(tf.div(TRAINING.clip, tf.add(norm, 1e-6)), 1);
      params.forEach((p, i) => {
        const g = tf.mul(gs[i], coef);
        const m = tf.add(tf.mul(p.m, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(p.v, beta2), tf.mul(tf.square(g), 1 - beta2));
        p.m.assign(m);
        p.v.assign(v);
        const decayed = p.weightDecay ? tf.mul(p.variable, 1 - TRAINING.lr * p.weightDecay) : p.variable;
        p.variable.assign(tf.sub(decayed, tf.div(tf.mul(m, stepSize), tf.add(tf.div(tf.sqrt(v), sqrtBc2), EPS))));
      });
    });
    tf.dispose(grads);
    const loss = readLoss ? (await value.data())[0] : null;
    value.dispose();
    return loss;
  }

  dispose(): void {
    for (const p of this.params.values()) this.tf.dispose([p.variable, p.m, p.v]);
    this.tf.dispose([this.cos, this.sin, this.causalMask]);
  }
}
