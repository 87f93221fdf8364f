// Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_): every gradient is scaled by
// min(maxNorm / (‖g‖ + 1e-6), 1) on its device; the norm comes back as a tensor (no readback).
import { noGrad } from '../../core/autograd.js';
import { defineKernel, dispatch } from '../../core/op.js';
import { OpError } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { zeros } from '../../ops/creation.js';
import { empty } from '../../ops/util.js';
import { CLIP_LANES, clipFinalizeKernel, scaleByKernel, sumSquaresKernel } from './kernels.js';
import { cpuArray } from './optimizer.js';

/**
 * One view over gradients that tile a range of one storage (no gap, no overlap), when they are its only
 * holders and contiguous (the slices cat's backward hands to jointly projected weights); null otherwise.
 * One view per storage also keeps a dispatch from binding one buffer writable twice.
 */
function tiledRange(gs: readonly Tensor[]): Tensor | null {
  if (gs[0].storage.refs !== gs.length || gs.some((g) => !g.isContiguous())) return null;
  if (gs.length === 1) return gs[0];
  const sorted = [...gs].sort((a, b) => a.offset - b.offset);
  if (sorted.some((g, i) => i > 0 && g.offset !== sorted[i - 1].offset + sorted[i - 1].size)) return null;
  return new Tensor(gs[0].storage, [sorted.reduce((n, g) => n + g.size, 0)], [1], sorted[0].offset);
}

/**
 * The gradients as tensors that may be scaled in place, plus the views made for them (to dispose).
 * Gradients that alone hold their storage (together, when they tile it) are used as they are; any other
 * (held elsewhere too, one tensor on two parameters, overlapping or strided windows) is replaced by a
 * private contiguous copy first, so shared or user-owned memory is never modified.
 */
function scalableGrads(params: readonly Tensor[]): { grads: Tensor[]; views: Tensor[] } {
  const byStorage = new Map<Tensor['storage'], Tensor[]>();
  for (const p of params) {
    const g = p.grad as Tensor;
    byStorage.set(g.storage, [...(byStorage.get(g.storage) ?? []), g]);
  }
  const grads: Tensor[] = [],
    views: Tensor[] = [],
    copied: Tensor[] = [];
  for (const sharers of byStorage.values()) {
    const range = tiledRange(sharers);
    if (range) {
      grads.push(range);
      if (!sharers.includes(range)) views.push(range);
    } else copied.push(...params.filter((p) => sharers.includes(p.grad as Tensor)));
  }
  // All copies are taken before any is stored: storing one disposes the old gradient, which another
  // parameter may still hold.
  const copies = noGrad(() => copied.map((p) => (p.grad as Tensor).clone()));
  copied.forEach((p, i) => {
    p.grad = copies[i];
  });
  return { grads: [...grads, ...copies], views };
}

interface ClipArgs {
  readonly grads: Tensor[];
  readonly maxNorm: number;
  /** Receives [norm, scale factor]. */
  readonly result: Tensor;
}

/** Σ g² over every gradient, then each scaled in place by min(maxNorm / (‖g‖ + 1e-6), 1). */
const clipKernel = defineKernel<ClipArgs>({
  name: 'clipGradNorm',
  family: 'optim',
  cpu: ({ grads, maxNorm, result }) => {
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
    cpuArray(result).arr.set([norm, coef], result.offset);
  },
  webgpu: [
    {
      name: 'multiTensor',
      // Partial sums and in-place scaling each take as many gradients per dispatch as the adapter's
      // bindings allow, with one finalise between. The partials are fully written, so need no zero fill.
      run: ({ grads, maxNorm, result }) => {
        const partials = empty(result.device, 'float32', [grads.length * CLIP_LANES]);
        sumSquaresKernel(partials, grads);
        clipFinalizeKernel(result, partials, grads.length * CLIP_LANES, maxNorm);
        scaleByKernel(grads, result);
        partials.dispose();
      },
    },
  ],
});

/**
 * Scales the gradients of `params` so their global L2 norm is at most maxNorm; returns the norm before
 * clipping as a 0-d tensor on the gradients' device. Parameters without a gradient are skipped.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  if (!(maxNorm >= 0)) throw new OpError('clipGradNorm', `maxNorm must be >= 0, got ${maxNorm}`);
  const all = [...params];
  const withGrad = all.filter((p) => p.grad);
  if (withGrad.length === 0) return zeros([], { device: all[0]?.device });
  const device = withGrad[0].device;
  if (withGrad.some((p) => p.grad!.device !== device))
    throw new OpError(
      'clipGradNorm',
      `gradients are on different devices (${[...new Set(withGrad.map((p) => p.grad!.device))].join(', ')}); clip each device's parameters separately`,
    );
  const { grads, views } = scalableGrads(withGrad);
  const result = empty(device, grads[0].dtype, [2]);
  dispatch(clipKernel, device, { grads, maxNorm, result });
  views.forEach((v) => v.dispose());
  const norm = new Tensor(result.storage, [], [], 0);
  result.dispose();
  return norm;
}
