// Helpers every op module shares: output allocation, broadcasting views, gradient reduction.
import type { DeviceName, View } from '../core/backend.js';
import type { DType } from '../core/dtype.js';
import { contiguousStrides, OpError, sameShape, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { argTensor } from '../core/args.js';

export type TensorOrScalar = Tensor | number;

export type { Tolerance } from '../core/op.js';

export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

export { empty } from '../core/primitives.js';

/** A view of t broadcast to `shape` (leading dims added, size-1 dims given stride 0). */
export function broadcastView(t: View, shape: readonly number[]): View {
  const lead = shape.length - t.shape.length;
  const strides = shape.map((d, i) => {
    const j = i - lead;
    if (j < 0) return 0;
    return t.shape[j] === 1 && d !== 1 ? 0 : t.strides[j];
  });
  return { storage: t.storage, shape, strides, offset: t.offset, dtype: t.dtype };
}

export function contiguousView(storage: View['storage'], shape: readonly number[], dtype: DType): View {
  return { storage, shape, strides: contiguousStrides(shape), offset: 0, dtype };
}

/** All tensors must be alive and on one device; returns it. */
export function sameDevice(op: string, tensors: readonly Tensor[]): DeviceName {
  tensors.forEach((t, i) => argTensor(op, tensors.length > 1 ? `input ${i}` : 'input', t));
  const d = tensors[0].device;
  for (const t of tensors) {
    if (t.device !== d) {
      throw new OpError(
        op,
        `tensors are on different devices (${tensors.map((x) => `${shapeStr(x.shape)} on ${x.device}`).join(', ')}); move them with .to('${d}') first`,
      );
    }
  }
  return d;
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.shape.length - shape.length;
  const axes: number[] = [];
  g.shape.forEach((d, i) => {
    if (i < lead || (shape[i - lead] === 1 && d !== 1)) axes.push(i);
  });
  const s = axes.length ? g.sum(axes, true) : g;
  return lead || axes.length ? s.reshape(shape) : s;
}
