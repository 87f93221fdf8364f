// Autocast (mixed precision), as torch.autocast: inside autocast('float16', fn), ops declared to run in
// half precision (matmul, the norms, attention: OpSpec.autocast) take float16 copies of their float32
// inputs, and ops that need float32 (cross-entropy, so a scaled loss cannot overflow) take float32
// copies of float16 ones. The casts are differentiable, so float32 parameters get float32 gradients.
import { thenRestore } from './settle.js';
import { OpError } from './shape.js';
import type { Tensor } from './tensor.js';

/** The precision an op runs in under autocast. */
export type AutocastPolicy = 'lower' | 'float32';
export type AutocastDType = 'float16';

let active: AutocastDType | null = null;

/** The autocast dtype in force, or null outside autocast. */
export function autocastDtype(): AutocastDType | null {
  return active;
}

/**
 * Runs fn with autocast to `dtype` (null turns it off inside fn) and returns what fn returns. An async fn
 * (a model's forward) keeps autocast on until its promise settles: while it runs, every op is cast, so
 * do not overlap it with other work. Backward belongs outside, as with PyTorch: gradients follow the
 * dtypes the forward used.
 */
export function autocast<T>(dtype: AutocastDType | null, fn: () => T): T {
  if (dtype !== null && dtype !== 'float16')
    throw new OpError('autocast', `dtype must be 'float16' (or null to turn it off), got ${String(dtype)}`);
  if (typeof fn !== 'function') throw new OpError('autocast', 'expects a function to run: autocast(dtype, () => …)');
  const previous = active;
  active = dtype;
  return thenRestore(fn, () => (active = previous));
}

/** t in the autocast dtype when autocast is on and t is float32 (for code that feeds autocast ops), else t. */
export function autocastLower(t: Tensor): Tensor {
  return active && t.dtype === 'float32' ? t.astype(active) : t;
}
