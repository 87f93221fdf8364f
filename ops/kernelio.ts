// Host-side plumbing shared by the fused transformer ops (softmax, norm, rotary, attention,
// activation): contiguous operands and cpu data access.
import { noGrad } from '../core/autograd.js';
import { cpuDataOf } from '../core/cpu.js';
import type { View } from '../core/backend.js';
import { getBackend } from '../core/device.js';
import type { DType, TypedArray } from '../core/dtype.js';
import { numel } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';

/**
 * Runs `fn` with contiguous versions of `ts` (copies made outside the graph where needed, freed
 * afterwards; queued GPU work keeps using them safely since buffers are reused in queue order). With
 * `lastAxisOnly`, only tensors whose last axis is strided are copied (kernels that read the other dims
 * through strides).
 */
export function withContiguous<T>(
  ts: readonly Tensor[],
  fn: (cs: Tensor[]) => T,
  opts: { lastAxisOnly?: boolean } = {},
): T {
  const needsCopy = (t: Tensor) =>
    opts.lastAxisOnly ? t.rank > 0 && t.shape[t.rank - 1] > 1 && t.strides[t.rank - 1] !== 1 : !t.isContiguous();
  const cs = noGrad(() => ts.map((t) => (needsCopy(t) ? t.contiguous() : t)));
  try {
    return fn(cs);
  } finally {
    cs.forEach((c, i) => {
      if (c !== ts[i]) c.dispose();
    });
  }
}

/**
 * The dtype of the statistics a fused op keeps beside its outputs (row logsumexps, means, 1/std): float32
 * for float16 tensors (as PyTorch keeps them), the tensor's own dtype otherwise.
 */
export function statDtype(dtype: DType): DType {
  return dtype === 'float16' ? 'float32' : dtype;
}

/** The elements of a contiguous cpu tensor: data[offset + k] is element k. */
export function cpuData(t: Tensor): { data: TypedArray; off: number } {
  return { data: cpuDataOf(t), off: t.offset };
}

/** The writable elements of a new contiguous cpu tensor (from empty()). */
export function outData(t: Tensor): TypedArray {
  return cpuDataOf(t);
}

/**
 * An uninitialised dense tensor of `shape` whose memory runs through dims `order` (outermost first),
 * e.g. [0, 2, 1, 3] for a [B, H, T, D] tensor in [B, T, H, D] memory.
 */
export function emptyInOrder(
  device: Tensor['device'],
  dtype: DType,
  shape: readonly number[],
  order: readonly number[],
): Tensor {
  const strides: number[] = [];
  let step = 1;
  for (const dim of [...order].reverse()) {
    strides[dim] = step;
    step *= shape[dim];
  }
  return new Tensor(getBackend(device).alloc(dtype, numel(shape)), shape, strides);
}

/**
 * A dense output (or input gradient) shaped like t with t's memory order of its leading dims (a
 * broadcast dim outermost) and the last dim innermost, so a gradient flowing back through the view
 * that made t (e.g. the transpose of a head split) is dense again and its reshape needs no copy.
 */
export function emptyLike(t: Pick<Tensor, 'device' | 'dtype'> & Pick<View, 'shape' | 'strides'>): Tensor {
  const last = t.shape.length - 1;
  const key = (dim: number) => (t.shape[dim] === 1 ? -1 : t.strides[dim] === 0 ? Infinity : t.strides[dim]);
  const lead = Array.from({ length: Math.max(last, 0) }, (_, d) => d).sort((a, b) => key(b) - key(a) || a - b);
  return emptyInOrder(t.device, t.dtype, t.shape, last < 0 ? [] : [...lead, last]);
}
