// Bounded GPU memory without scopes. GPU buffers are invisible to the JS garbage collector, so a loop
// written the PyTorch way (no scope/dispose) would let live GPU bytes grow until the collector happens to
// run. When live GPU bytes pass a threshold, this forces a collection; the tensors JavaScript can no
// longer reach are then freed by the tensor FinalizationRegistry at the next turn of the event loop
// (any read, or the framework's async boundaries, which wait for it while a reclaim is pending).
// Scopes stay the fast, exact way; this is the safety net that keeps the other way bounded.
import v8 from 'node:v8';
import vm from 'node:vm';
import { config } from './config.js';
import { stats } from './stats.js';

let forceGc: (() => void) | null = null;
let threshold = (config().gcThresholdMB ?? 0) * 2 ** 20;
/** Bytes allocated since the last forced collection. */
let allocatedSinceGc = 0;
let collectedSinceBoundary = false;

function collector(): () => void {
  if (!forceGc) {
    v8.setFlagsFromString('--expose-gc');
    forceGc = vm.runInNewContext('gc') as () => void;
  }
  return forceGc;
}

/** Sets the live-GPU-bytes threshold (0 turns reclaiming off). The default comes from the adapter's limits. */
export function setGcThreshold(bytes: number): void {
  if (!Number.isFinite(bytes) || bytes < 0)
    throw new RangeError(`setGcThreshold(bytes): bytes must be a number ≥ 0 (0 turns it off), got ${bytes}`);
  threshold = bytes;
}

export function gcThreshold(): number {
  return threshold;
}

/**
 * Called by the webgpu runtime before it allocates `bytes`. Collections start at 7/8 of the threshold and
 * are spaced by 1/8 of it in allocated bytes, so live bytes stay under the threshold (plus what is freed
 * only at the next turn of the event loop), and memory that is really in use costs one collection per
 * threshold/8 allocated, not one per allocation.
 */
export function beforeDeviceAlloc(bytes: number): void {
  allocatedSinceGc += bytes;
  if (!threshold || stats.liveBytes + bytes <= threshold * 0.875 || allocatedSinceGc < threshold / 8) return;
  allocatedSinceGc = 0;
  collector()();
  stats.gcReclaims++;
  collectedSinceBoundary = true;
}

/** At an async boundary after a forced collection: one turn of the event loop, so the finalizers free what it found. */
export function pendingReclaim(): Promise<void> | null {
  if (!collectedSinceBoundary) return null;
  collectedSinceBoundary = false;
  return new Promise((resolve) => setImmediate(resolve));
}

/** The default threshold when none was configured: a few maximal buffers, within [256 MiB, 8 GiB]. */
export function defaultGcThreshold(maxStorageBufferBindingSize: number): void {
  if (threshold || config().gcThresholdMB !== null) return;
  setGcThreshold(Math.min(8 * 2 ** 30, Math.max(256 * 2 ** 20, 4 * maxStorageBufferBindingSize)));
}
