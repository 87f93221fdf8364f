// Host-side plumbing shared by the fused transformer ops (softmax, norm, rotary, attention,
// activation): contiguous operands, cpu data access and output allocation.
import type { DeviceName } from '../core/backend.js';
import { noGrad } from '../core/autograd.js';
import type { CpuStorage } from '../core/cpu.js';
import type { DType, TypedArray } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import { empty } from './util.js';

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
  return { data: (t.storage as CpuStorage).data, off: t.offset };
}

/** A new contiguous tensor; on cpu, also its writable data. */
export function output(device: DeviceName, dtype: DType, shape: readonly number[]): Tensor {
  return empty(device, dtype, shape);
}

export function outData(t: Tensor): TypedArray {
  return (t.storage as CpuStorage).data;
}

/** Counter-based random bits shared by every backend: a PCG hash of (seed, counter). */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** Uniform in [0, 1) with 24 bits (exact in f32), from the seed and a per-element counter. */
export function counterUniform(seed: number, counter: number): number {
  return (pcgHash((counter + pcgHash(seed)) >>> 0) >>> 8) / 16777216;
}

/** The same as WGSL helpers (u32 arithmetic wraps like the JS version above). */
export const WGSL_COUNTER_RNG = `
fn pcg_hash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn counter_uniform(seed: u32, counter: u32) -> f32 {
  return f32(pcg_hash(counter + pcg_hash(seed)) >> 8u) / 16777216.0;
}`;
