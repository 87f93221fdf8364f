// Writing values into an existing tensor's storage (parameter init, loadStateDict), so that every
// holder of the tensor (modules, optimizers) keeps seeing the same object.
import { noGrad } from '../core/autograd.js';
import { copiesSync } from '../core/device.js';
import { OpError, sameShape, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';

/**
 * target[...] = source (same shape; dtype converted). On webgpu the copy is a queued dispatch, so it is
 * ordered after earlier GPU work that reads the target (a raw buffer write would not be).
 */
export function copyInto(op: string, target: Tensor, source: Tensor): void {
  target.assertAlive(op);
  source.assertAlive(op);
  if (!sameShape(target.shape, source.shape))
    throw new OpError(op, `shape ${shapeStr(source.shape)} does not match target ${shapeStr(target.shape)}`);
  if (!copiesSync(source.device, target.device)) {
    throw new OpError(
      op,
      `cannot copy from ${source.device} to ${target.device} synchronously; move the source with \`await t.toAsync('${target.device}')\` first`,
    );
  }
  if (target.dtype === 'int32' && source.dtype !== 'int32')
    throw new OpError(op, `cannot copy ${source.dtype} values into an int32 tensor`);
  const src = source.to(target.device);
  noGrad(() => target.copy_(src));
  if (src !== source) src.dispose();
}

/** target[...] = values (row-major, length = target.size). */
export function assignValues(op: string, target: Tensor, values: ArrayLike<number>): void {
  target.assertAlive(op);
  if (values.length !== target.size)
    throw new OpError(op, `got ${values.length} values for a tensor of shape ${shapeStr(target.shape)}`);
  const src = tensor(Float64Array.from(values), { shape: target.shape, dtype: target.dtype, device: target.device });
  copyInto(op, target, src);
  src.dispose();
}
