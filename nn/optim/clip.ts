// Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_): every gradient is scaled by
// min(maxNorm / (‖g‖ + 1e-6), 1) on its device; the norm comes back as a tensor (no readback).
// clipGradNormGroups clips several groups, each to its own norm, in the same pass.
import { noGrad } from '../../core/autograd.js';
import { defineKernel, dispatch } from '../../core/op.js';
import { OpError } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { zeros } from '../../ops/creation.js';
import { empty } from '../../ops/util.js';
import { clipGroupsKernel, MAX_CLIP_GROUPS, type GroupedGrad } from './kernels.js';
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
export function scalableGrads(params: readonly Tensor[]): { grads: Tensor[]; views: Tensor[] } {
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
  /** Contiguous gradients, each scaled in place by its group's factor. */
  readonly grads: GroupedGrad[];
  readonly groups: number;
  readonly maxNorm: number;
  /** Receives [norm, scale factor] per group. */
  readonly result: Tensor;
}

/** Σ g² per group, then each gradient scaled in place by its group's min(maxNorm / (‖g‖ + 1e-6), 1). */
const clipKernel = defineKernel<ClipArgs>({
  name: 'clipGradNorm',
  family: 'optim',
  cpu: ({ grads, groups, maxNorm, result }) => {
    const total = new Array<number>(groups).fill(0);
    for (const { grad, group } of grads) {
      const { arr, off } = cpuArray(grad);
      for (let i = 0; i < grad.size; i++) total[group] += arr[off + i] * arr[off + i];
    }
    const norms = total.map(Math.sqrt);
    const coefs = norms.map((norm) => Math.min(maxNorm / (norm + 1e-6), 1));
    for (const { grad, group } of grads) {
      const { arr, off } = cpuArray(grad);
      for (let i = 0; i < grad.size; i++) arr[off + i] *= coefs[group];
    }
    cpuArray(result).arr.set(
      norms.flatMap((norm, g) => [norm, coefs[g]]),
      result.offset,
    );
  },
  webgpu: [
    {
      name: 'multiTensor',
      // Partial sums and in-place scaling each take as many gradients per dispatch as the adapter's
      // bindings allow, with one finalise between that also takes the small gradients itself.
      run: ({ grads, groups, maxNorm, result }) => clipGroupsKernel(grads, groups, maxNorm, result),
    },
  ],
});

/**
 * Scales the gradients of `params` so their global L2 norm is at most maxNorm; returns the norm before
 * clipping as a 0-d tensor on the gradients' device. Parameters without a gradient are skipped.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  return clipGroups('clipGradNorm', [params], maxNorm)[0];
}

/**
 * clipGradNorm for several groups of parameters at once, each group to its own global L2 norm ≤ maxNorm
 * (as separate clipGradNorm calls, in one pass: on webgpu three dispatches for typical models, however
 * many groups). Returns each group's norm before clipping (0-d tensors, no readback); a group without
 * gradients has norm 0. A parameter may be in one group only.
 */
export function clipGradNormGroups(groups: readonly Iterable<Tensor>[], maxNorm: number): Tensor[] {
  return clipGroups('clipGradNormGroups', groups, maxNorm);
}

function clipGroups(op: string, groups: readonly Iterable<Tensor>[], maxNorm: number): Tensor[] {
  if (!(maxNorm >= 0)) throw new OpError(op, `maxNorm must be >= 0, got ${maxNorm}`);
  const lists = groups.map((g) => [...g]);
  const seen = new Set<Tensor>();
  for (const p of lists.flat()) {
    if (seen.has(p))
      throw new OpError(op, 'a parameter appears in more than one group; each gradient may be clipped once');
    seen.add(p);
  }
  const withGrad = lists.map((ps) => ps.filter((p) => p.grad));
  const all = withGrad.flat();
  if (all.length === 0) return lists.map(() => zeros([], { device: lists.flat()[0]?.device }));
  const device = all[0].device;
  if (all.some((p) => p.grad!.device !== device))
    throw new OpError(
      op,
      `gradients are on different devices (${[...new Set(all.map((p) => p.grad!.device))].join(', ')}); clip each device's parameters separately`,
    );
  const norms: Tensor[] = [];
  // A finalise serves MAX_CLIP_GROUPS groups; more are clipped in several passes.
  for (let first = 0; first < withGrad.length; first += MAX_CLIP_GROUPS) {
    const pass = withGrad.slice(first, first + MAX_CLIP_GROUPS);
    const scalable = pass.map((ps) => (ps.length ? scalableGrads(ps) : { grads: [], views: [] }));
    const grads = scalable.flatMap(({ grads: gs }, group) => gs.map((grad) => ({ grad, group })));
    const result = empty(device, all[0].grad!.dtype, [2 * pass.length]);
    dispatch(clipKernel, device, { grads, groups: pass.length, maxNorm, result });
    scalable.forEach(({ views }) => views.forEach((v) => v.dispose()));
    pass.forEach((_, g) => norms.push(new Tensor(result.storage, [], [], 2 * g)));
    result.dispose();
  }
  return norms;
}
