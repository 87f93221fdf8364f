// Autoregressive sampling with a KV cache: one prefill forward, then one forward per new token over
// the new token only. Each step reads the last position's logits [B, V] back (sampling happens on the
// host), which is the one readback per token that sampling needs.
import { noGrad } from '../core/autograd.js';
import { nextUint32, seededUniform } from '../core/rng.js';
import { scope } from '../core/scope.js';
import { OpError } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';
import { describeValue } from '../core/args.js';
import type { DeviceName } from '../core/backend.js';
import { DecodeState } from './decode-state.js';

export interface GenerateOptions {
  /** New tokens per sequence (default 32). */
  maxNewTokens?: number;
  /** 0 (default 1 when topK/topP are set, else 0) = greedy argmax. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Nucleus sampling: keep the smallest set with cumulative probability ≥ topP (1 = off). */
  topP?: number;
  /** Seeds this call's own sampler (the global RNG is not consumed); default: drawn from the global RNG. */
  seed?: number;
  /** Stop a sequence once it emits this token. */
  eosTokenId?: number;
  /** Called after each decoding step with the token chosen for every row (for streaming output). */
  onToken?: (tokens: number[]) => void;
}

/** What generate() needs of a model (a CausalLM has it). */
export interface GenerativeModel {
  training: boolean;
  train(mode?: boolean): unknown;
  eval(): unknown;
  readonly device: DeviceName;
  readonly numLayers: number;
  readonly vocabSize: number;
  /** CLEX's module, whose frequency cache is pinned while decoding; null without CLEX. */
  readonly clex: { pinCache<T>(fn: () => Promise<T>): Promise<T> } | null;
  forward(ids: Tensor, opts: { cache: DecodeState }): Promise<{ logits: Tensor }>;
}

/** Picks the next token from one row of logits. */
export function sampleToken(
  logits: ArrayLike<number>,
  opts: { temperature: number; topK: number; topP: number },
  uniform: () => number,
): number {
  const V = logits.length;
  if (opts.temperature === 0) {
    let best = 0;
    for (let j = 1; j < V; j++) if (logits[j] > logits[best]) best = j;
    return best;
  }
  let order = Array.from({ length: V }, (_, j) => j).sort((a, b) => logits[b] - logits[a]);
  if (opts.topK > 0) order = order.slice(0, opts.topK);
  const m = logits[order[0]];
  let probs = order.map((j) => Math.exp((logits[j] - m) / opts.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (opts.topP < 1) {
    let cum = 0,
      keep = 0;
    while (keep < probs.length && cum < opts.topP * total) cum += probs[keep++];
    order = order.slice(0, Math.max(keep, 1));
    probs = probs.slice(0, order.length);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = uniform() * total;
  for (let i = 0; i < order.length; i++) {
    r -= probs[i];
    if (r <= 0) return order[i];
  }
  return order[order.length - 1];
}

function toRows(ids: Tensor | readonly number[] | readonly (readonly number[])[]): Promise<number[][]> | number[][] {
  if (ids instanceof Tensor) {
    if (ids.rank !== 2) throw new OpError('generate', `ids must be [batch, seq], got rank ${ids.rank}`);
    return ids
      .data()
      .then((d) =>
        Array.from({ length: ids.shape[0] }, (_, b) =>
          Array.from(d.subarray(b * ids.shape[1], (b + 1) * ids.shape[1])),
        ),
      );
  }
  if (!Array.isArray(ids))
    throw new OpError(
      'generate',
      `ids must be a Tensor [batch, seq], an array of token ids or an array of rows, got ${describeValue(ids)}; encode text with a tokenizer first`,
    );
  if (ids.length === 0) throw new OpError('generate', 'the prompt is empty');
  return typeof ids[0] === 'number'
    ? [[...(ids as readonly number[])]]
    : (ids as readonly (readonly number[])[]).map((r) => [...r]);
}

/**
 * Continues every prompt row (all rows must have the same length) by maxNewTokens tokens. Runs under
 * noGrad in eval mode (the model's mode is restored after). CLEX models switch t as the sequence grows;
 * at each switch the cache (policy 'recompute') re-runs the cached tokens with the new table, so the
 * result equals a full forward. The CLEX frequency cache is pinned meanwhile.
 */
export async function generate(
  model: GenerativeModel,
  ids: Tensor | readonly number[] | readonly (readonly number[])[],
  opts: GenerateOptions = {},
): Promise<number[][]> {
  const rows = await toRows(ids);
  const T = rows[0].length;
  if (T === 0 || rows.some((r) => r.length !== T))
    throw new OpError(
      'generate',
      `prompt rows must be non-empty and of equal length, got lengths ${rows.map((r) => r.length).join(', ')}`,
    );
  const maxNew = opts.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNew) || maxNew < 0)
    throw new OpError('generate', `maxNewTokens must be a non-negative integer, got ${maxNew}`);
  const topK = opts.topK ?? 0,
    topP = opts.topP ?? 1;
  const temperature = opts.temperature ?? (topK > 0 || topP < 1 ? 1 : 0);
  if (!(temperature >= 0)) throw new OpError('generate', `temperature must be ≥ 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new OpError('generate', `topP must be in (0, 1], got ${topP}`);
  const uniform = seededUniform(opts.seed ?? nextUint32());
  const wasTraining = model.training;
  model.eval();
  const cache = new DecodeState(model.numLayers);
  const done = rows.map(() => false);
  const run = async () => {
    let next: number[][] = rows;
    for (let step = 0; step < maxNew && !done.every(Boolean); step++) {
      const chosen = await scope(async () => {
        const input = tensor(next.flat(), {
          dtype: 'int32',
          device: model.device,
          shape: [rows.length, next[0].length],
        });
        const { logits } = await model.forward(input, { cache });
        const last = logits.narrow(1, logits.shape[1] - 1, 1).reshape([rows.length, model.vocabSize]);
        const values = await last.data();
        const V = model.vocabSize;
        return rows.map((_, b) =>
          sampleToken(values.subarray(b * V, (b + 1) * V), { temperature, topK, topP }, uniform),
        );
      });
      chosen.forEach((tok, b) => {
        if (done[b]) return;
        rows[b].push(tok);
        if (opts.eosTokenId !== undefined && tok === opts.eosTokenId) done[b] = true;
      });
      opts.onToken?.(chosen);
      next = chosen.map((t) => [t]);
    }
  };
  try {
    await noGrad(() => (model.clex ? model.clex.pinCache(run) : run()));
  } finally {
    cache.dispose();
    model.train(wasTraining);
  }
  return rows;
}
