// Host-side plumbing shared by the fused transformer ops (softmax, norm, rotary, attention,
// activation): contiguous operands and cpu data access.
import { noGrad } from '../core/autograd.js';
import { cpuDataOf } from '../core/cpu.js';
import type { TypedArray } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';

/**
 * Runs `fn` with contiguous versions of `ts` (copies made outside the graph where needed, freed
 * afterwards; queued GPU work keeps using them safely since buffers are reused in queue order).
 */
export function withContiguous<T>(ts: readonly Tensor[], fn: (cs: Tensor[]) => T): T {
  const cs = noGrad(() => ts.map((t) => t.contiguous()));
  try {
    return fn(cs);
  } finally {
    cs.forEach((c, i) => { if (c !== ts[i]) c.dispose(); });
  }
}

/** The elements of a contiguous cpu tensor: data[offset + k] is element k. */
export function cpuData(t: Tensor): { data: TypedArray; off: number } {
  return { data: cpuDataOf(t), off: t.offset };
}

/** The writable elements of a new contiguous cpu tensor (from empty()). */
export function outData(t: Tensor): TypedArray {
  return cpuDataOf(t);
}
