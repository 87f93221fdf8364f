// The one way a kernel reaches the GPU: core primitives, fused ops and optimizer updates all bind
// tensors (views) through their storage accessor and record the dispatch here.
import type { Storage } from '../backend.js';
import { gpuBackend } from '../device.js';
import { OpError } from '../shape.js';

/** Anything backed by a storage: a View, a Tensor. */
export type Bindable = { readonly storage: Storage };

/**
 * Compiles `source` once per `key` and records one dispatch on the default device: binding 0 is the
 * `params` block (from a uniformLayout's pack), then `bound` in order.
 */
export function launch(
  op: string,
  key: string,
  source: () => string,
  params: Uint32Array,
  bound: readonly Bindable[],
  groups: [number, number, number],
): void {
  const backend = gpuBackend();
  if (!backend)
    throw new OpError(
      op,
      "the webgpu runtime is not available (DAWNGRAD_DEVICE=cpu, or no adapter); use device 'cpu' tensors",
    );
  backend.launchKernel(op, key, source, params, bound, groups);
}
