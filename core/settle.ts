// Module-level switches (noGrad, autocast) that hold for a function's duration, sync or async.

/** Runs fn, then `restore` when it returns or throws, or, for an async fn, when its promise settles. */
export function thenRestore<T>(fn: () => T, restore: () => void): T {
  let result: T;
  try {
    result = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (result instanceof Promise) return result.finally(restore) as T;
  restore();
  return result;
}
