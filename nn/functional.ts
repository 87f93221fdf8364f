// Functional forms of the layers (what nn modules call), plus re-exports of the tensor ops that
// are functions rather than methods.
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { rand } from '../ops/creation.js';

export { matmul } from '../ops/matmul.js';
export { where } from '../ops/elementwise.js';
export { cat, stack } from '../ops/movement.js';

export const relu = (x: Tensor): Tensor => x.relu();
export const sigmoid = (x: Tensor): Tensor => x.sigmoid();
export const tanh = (x: Tensor): Tensor => x.tanh();
export const silu = (x: Tensor): Tensor => x.silu();

const GELU_TANH_C = Math.sqrt(2 / Math.PI);

/** GELU; `approximate: 'tanh'` is the GPT-2 / NeoX 'gelu_new' form. */
export function gelu(x: Tensor, opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
  if ((opts.approximate ?? 'none') === 'none') return x.gelu();
  const inner = x.add(x.pow(3).mul(0.044715)).mul(GELU_TANH_C);
  return x.mul(0.5).mul(inner.tanh().add(1));
}

/** y = x Wᵀ + b with W of shape [out, in] (PyTorch / HF layout). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.rank !== 2) throw new OpError('linear', `weight must be 2-D [out, in], got ${shapeStr(weight.shape)}`);
  if (x.shape[x.rank - 1] !== weight.shape[1]) {
    throw new OpError('linear', `input ${shapeStr(x.shape)} has last dim ${x.shape[x.rank - 1]} but weight ${shapeStr(weight.shape)} expects ${weight.shape[1]}`);
  }
  const y = x.matmul(weight.transpose(0, 1));
  return bias ? y.add(bias) : y;
}

/** Rows of `weight` picked by integer ids of any shape: output shape [...ids.shape, dim]. */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  if (ids.dtype !== 'int32') throw new OpError('embedding', `ids must be int32, got ${ids.dtype}`);
  const rows = weight.indexSelect(0, ids.reshape([-1]));
  return rows.reshape([...ids.shape, weight.shape[1]]);
}

/** Inverted dropout: zeroes elements with probability p and scales the rest by 1/(1-p) (mask from the seeded RNG). */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return x.mul(0);
  const keep = rand(x.shape, { device: x.device, dtype: x.dtype === 'float64' ? 'float64' : 'float32' }).ge(p).astype(x.dtype);
  return x.mul(keep).mul(1 / (1 - p));
}

function checkTrailing(op: string, x: Tensor, shape: readonly number[]): number[] {
  const axes = shape.map((_, i) => x.rank - shape.length + i);
  if (axes[0] < 0 || shape.some((d, i) => x.shape[axes[i]] !== d)) {
    throw new OpError(op, `input ${shapeStr(x.shape)} does not end with normalized shape ${shapeStr(shape)}`);
  }
  return axes;
}

/** Layer normalisation over the trailing `normalizedShape` dims (biased variance, as torch). */
export function layerNorm(x: Tensor, normalizedShape: readonly number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  const axes = checkTrailing('layerNorm', x, normalizedShape);
  const centered = x.sub(x.mean(axes, true));
  const variance = centered.square().mean(axes, true);
  let y = centered.mul(variance.add(eps).rsqrt());
  if (weight) y = y.mul(weight);
  if (bias) y = y.add(bias);
  return y;
}

/** RMS normalisation over the last dim: x · rsqrt(mean(x²) + eps) · weight (LLaMA). */
export function rmsNorm(x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor {
  const y = x.mul(x.square().mean(-1, true).add(eps).rsqrt());
  return weight ? y.mul(weight) : y;
}

/** Mean squared error (reduction 'mean' or 'sum'). */
export function mseLoss(pred: Tensor, target: Tensor, reduction: 'mean' | 'sum' = 'mean'): Tensor {
  const se = pred.sub(target).square();
  return reduction === 'mean' ? se.mean() : se.sum();
}
