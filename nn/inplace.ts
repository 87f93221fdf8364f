// Writing values into an existing tensor's storage (parameter init, loadStateDict), so that every
// holder of the tensor (modules, optimizers) keeps seeing the same object.
import { cpuDataOf, type CpuBackend } from '../core/cpu.js';
import { noGrad } from '../core/autograd.js';
import { getBackend } from '../core/device.js';
import { OpError, sameShape, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { tensor } from '../ops/creation.js';

/**
 * target[...] = source (same shape; dtype converted). On webgpu the copy is a queued dispatch, so it is
 * ordered after earlier GPU work that reads the target (a raw buffer write would not be).
 */
export function copyInto(op: string, target: Tensor, source: Tensor): void {
  target.assertAlive(op);
  source.assertAlive(op);
  if (!sameShape(target.shape, source.shape)) throw new OpError(op, `shape ${shapeStr(source.shape)} does not match target ${shapeStr(target.shape)}`);
  let src = source;
  if (source.device !== target.device) {
    if (source.device === 'webgpu') throw new OpError(op, "cannot copy from webgpu to cpu synchronously; move the source with `await t.toAsync('cpu')` first");
    src = source.to(target.device);
  }
  if (target.dtype === 'int32' && src.dtype !== 'int32') throw new OpError(op, `cannot copy ${src.dtype} values into an int32 tensor`);
  noGrad(() => target.copy_(src));
  if (src !== source) src.dispose();
}

/** target[...] = values (row-major, length = target.size). */
export function assignValues(op: string, target: Tensor, values: ArrayLike<number>): void {
  target.assertAlive(op);
  if (values.length !== target.size) throw new OpError(op, `got ${values.length} values for a tensor of shape ${shapeStr(target.shape)}`);
  if (target.device === 'cpu' && target.isContiguous()) {
    cpuDataOf(target).set(values, target.offset);
    return;
  }
  const src = tensor(Float64Array.from(values), { shape: target.shape, dtype: target.dtype === 'float64' ? 'float64' : target.dtype, device: 'cpu' });
  copyInto(op, target, src);
  src.dispose();
}

/** The cpu storage's elements (contiguous copy for views). */
export function cpuValues(t: Tensor): ArrayLike<number> {
  return (getBackend('cpu') as CpuBackend).readSync(t);
}
