// Counting webgpu dispatches in tests. Elementwise fusion is turned off while counting, so every op is
// its own kernel and the counts do not depend on the adapter's fusion default.
import { gpuBackend } from '../core/device.js';
import { memory } from '../index.js';

/** Runs fn with elementwise fusion off, restoring the previous setting after. */
export async function unfused<T>(fn: () => Promise<T> | T): Promise<T> {
  const fuser = gpuBackend()!.fuser;
  const before = fuser.enabled;
  fuser.enabled = false;
  try {
    return await fn();
  } finally {
    fuser.enabled = before;
  }
}

/** The webgpu dispatches fn makes (fusion off). */
export function dispatchesOf(fn: () => Promise<unknown> | unknown): Promise<number> {
  return unfused(async () => {
    const d0 = memory().dispatches;
    await fn();
    return memory().dispatches - d0;
  });
}

/** The webgpu dispatches fn makes by kernel name (fusion off). */
export function kernelCounts(fn: () => Promise<unknown> | unknown): Promise<Map<string, number>> {
  const rt = gpuBackend()!.rt;
  const counts = new Map<string, number>();
  const dispatch = rt.dispatch;
  rt.dispatch = function (op, ...rest) {
    counts.set(op, (counts.get(op) ?? 0) + 1);
    return dispatch.call(this, op, ...rest);
  };
  return unfused(async () => {
    try {
      await fn();
      return counts;
    } finally {
      rt.dispatch = dispatch;
    }
  });
}
