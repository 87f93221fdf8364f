// Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_): every gradient is scaled by
// min(maxNorm / (‖g‖ + 1e-6), 1) on its device; the norm comes back as a tensor (no readback).
import { noGrad } from '../../core/autograd.js';
import { OpError } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { tensor, zeros } from '../../ops/creation.js';
import { empty } from '../../ops/util.js';
import { CLIP_LANES, clipFinalizeKernel, scaleByKernel, sumSquaresKernel } from './kernels.js';
import { cpuArray } from './optimizer.js';

/**
 * A gradient that may be scaled in place: the only view of its storage, and contiguous. Otherwise the
 * parameter gets a private contiguous copy first, so shared or user-owned memory is never modified.
 */
function exclusiveGrad(p: Tensor): Tensor {
  const g = p.grad as Tensor;
  if (g.storage.refs === 1 && g.isContiguous()) return g;
  p.grad = noGrad(() => g.clone());
  return p.grad as Tensor;
}

/**
 * Scales the gradients of `params` so their global L2 norm is at most maxNorm; returns the norm before
 * clipping as a 0-d tensor on the gradients' device. Parameters without a gradient are skipped.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  if (!(maxNorm >= 0)) throw new OpError('clipGradNorm', `maxNorm must be >= 0, got ${maxNorm}`);
  const withGrad = [...params].filter((p) => p.grad);
  if (withGrad.length === 0) return zeros([], { device: [...params][0]?.device });
  const device = withGrad[0].device;
  if (withGrad.some((p) => p.grad!.device !== device)) throw new OpError('clipGradNorm', `gradients are on different devices (${[...new Set(withGrad.map((p) => p.grad!.device))].join(', ')}); clip each device's parameters separately`);
  const grads = withGrad.map(exclusiveGrad);
  if (device === 'cpu') {
    let total = 0;
    for (const g of grads) {
      const { arr, off } = cpuArray(g);
      for (let i = 0; i < g.size; i++) total += arr[off + i] * arr[off + i];
    }
    const norm = Math.sqrt(total);
    const coef = Math.min(maxNorm / (norm + 1e-6), 1);
    for (const g of grads) {
      const { arr, off } = cpuArray(g);
      for (let i = 0; i < g.size; i++) arr[off + i] *= coef;
    }
    return tensor([norm], { device: 'cpu', dtype: grads[0].dtype, shape: [] });
  }
  // webgpu: partial sums and in-place scaling each take as many gradients per dispatch as the adapter's
  // bindings allow, with one finalise between. Both buffers are fully written, so need no zero fill.
  const partials = empty(device, 'float32', [grads.length * CLIP_LANES]);
  const result = empty(device, 'float32', [2]);
  sumSquaresKernel(partials, grads);
  clipFinalizeKernel(result, partials, grads.length * CLIP_LANES, maxNorm);
  scaleByKernel(grads, result);
  partials.dispose();
  const norm = new Tensor(result.storage, [], [], 0);
  result.dispose();
  return norm;
}
