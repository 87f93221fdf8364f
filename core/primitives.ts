// The few tensor computations the engine itself needs (allocation, fills for gradient seeds and zeros,
// dense copies, gradient accumulation, anomaly flags), written straight on the Backend interface so core
// runs with no ops module loaded. None of them records a graph: the backward pass accumulates outside
// it (no higher-order gradients), as it always has.
import { ADD_KERNEL, COPY_KERNEL, type DeviceName, type ElementwiseDef } from './backend.js';
import { getBackend } from './device.js';
import { promoteTypes, type DType } from './dtype.js';
import { numel, OpError, sameShape, shapeStr } from './shape.js';
import { Tensor } from './tensor.js';

/**
 * 1 where an f32 is neither NaN nor ±Inf. It tests the exponent bits rather than `x − x == 0`, which a
 * driver that assumes finite math may fold to true.
 */
const FINITE_KERNEL: ElementwiseDef = {
  name: 'isFinite',
  arity: 1,
  scalarOnly: true,
  wgsl: ([a], t) => `select(${t}(0), ${t}(1), (bitcast<u32>(${a}) & 0x7f800000u) != 0x7f800000u)`,
  js: (a) => +Number.isFinite(a),
};

/** An uninitialised dense tensor. */
export function empty(device: DeviceName, dtype: DType, shape: readonly number[]): Tensor {
  return new Tensor(getBackend(device).alloc(dtype, numel(shape)), shape);
}

/** A dense tensor of `shape` (default: like's) filled with `value`, with like's dtype and device. */
export function fill(like: Tensor, value: number, shape: readonly number[] = like.shape): Tensor {
  const out = empty(like.device, like.dtype, shape);
  getBackend(like.device).elementwise(COPY_KERNEL, [{ scalar: value }], out, like.dtype);
  return out;
}

/** A dense copy (contiguous, offset 0) of t's elements, whatever t's strides. */
export function copy(t: Tensor): Tensor {
  const out = empty(t.device, t.dtype, t.shape);
  getBackend(t.device).elementwise(COPY_KERNEL, [t], out, t.dtype);
  return out;
}

/** a + b for two tensors of one shape and device (gradient accumulation), in their promoted dtype. */
export function add(a: Tensor, b: Tensor): Tensor {
  if (!sameShape(a.shape, b.shape) || a.device !== b.device) {
    throw new OpError(
      'backward',
      `cannot accumulate a gradient ${shapeStr(b.shape)} on ${b.device} into one ${shapeStr(a.shape)} on ${a.device}: gradients of one tensor must share its shape and device (was a .grad assigned by hand?)`,
    );
  }
  const dtype = promoteTypes(a.dtype, b.dtype);
  const out = empty(a.device, dtype, a.shape);
  getBackend(a.device).elementwise(ADD_KERNEL, [a, b], out, dtype);
  return out;
}

/** A 0-d int32 tensor: 1 when no element of t is NaN or ±Inf, else 0. Computed on t's device, no read. */
export function allFinite(t: Tensor): Tensor {
  const out = empty(t.device, 'int32', []);
  const backend = getBackend(t.device);
  if (t.dtype === 'int32' || t.size === 0) {
    backend.elementwise(COPY_KERNEL, [{ scalar: 1 }], out, 'int32');
    return out;
  }
  const flags = empty(t.device, 'int32', t.shape);
  backend.elementwise(FINITE_KERNEL, [t], flags, t.dtype);
  backend.reduce('min', { storage: flags.storage, shape: [t.size], strides: [1], offset: 0, dtype: 'int32' }, 1, out);
  flags.dispose();
  return out;
}
