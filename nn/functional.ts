// nn.functional: the project's functional ops (fused softmax / cross-entropy / norms / attention /
// rotary / activations / dropout / embedding, from ops/functional.ts) plus the layer forms that only
// nn needs (linear, losses) and the tensor functions that are not methods.
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { autocastLower } from '../core/autocast.js';

export * from '../ops/functional.js';
export { matmul } from '../ops/matmul/index.js';
export { where } from '../ops/elementwise/index.js';
export { cat, stack } from '../ops/movement.js';

/** y = x Wᵀ + b with W of shape [out, in] (PyTorch / HF layout). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.rank !== 2) throw new OpError('linear', `weight must be 2-D [out, in], got ${shapeStr(weight.shape)}`);
  if (x.shape[x.rank - 1] !== weight.shape[1]) {
    throw new OpError(
      'linear',
      `input ${shapeStr(x.shape)} has last dim ${x.shape[x.rank - 1]} but weight ${shapeStr(weight.shape)} expects ${weight.shape[1]}`,
    );
  }
  const y = x.matmul(weight.transpose(0, 1));
  // under autocast the bias joins the product's half precision (a float32 bias would widen the sum)
  return bias ? y.add(autocastLower(bias)) : y;
}

/** Mean squared error (reduction 'mean' or 'sum'). */
export function mseLoss(pred: Tensor, target: Tensor, reduction: 'mean' | 'sum' = 'mean'): Tensor {
  const se = pred.sub(target).square();
  return reduction === 'mean' ? se.mean() : se.sum();
}
