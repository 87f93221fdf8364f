// Deterministic freeing: scope(fn) disposes every tensor created inside fn except what fn returns.
// AsyncLocalStorage keeps concurrent async scopes apart.
import { AsyncLocalStorage } from 'node:async_hooks';
import { OpError } from './shape.js';

interface Disposable {
  dispose(): void;
}

type ScopeSet = Set<Disposable>;
const current = new AsyncLocalStorage<ScopeSet>();

export function trackTensor(t: Disposable): void {
  current.getStore()?.add(t);
}

/** Removes a tensor from the enclosing scope, so it outlives it (it must then be disposed by hand). */
export function untrackTensor(t: Disposable): void {
  current.getStore()?.delete(t);
}

/** Keeps tensors alive past the enclosing scope. Returns its argument. */
export function keep<T>(value: T): T {
  visit(value, (t) => untrackTensor(t));
  return value;
}

function visit(value: unknown, fn: (t: Disposable) => void, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (typeof (value as Disposable).dispose === 'function' && 'storage' in (value as object)) {
    fn(value as Disposable);
    return;
  }
  if (Array.isArray(value)) value.forEach((v) => visit(v, fn, seen));
  else if (Object.getPrototypeOf(value) === Object.prototype) Object.values(value).forEach((v) => visit(v, fn, seen));
}

function close(own: ScopeSet, result: unknown, parent: ScopeSet | undefined): void {
  const returned = new Set<Disposable>();
  visit(result, (t) => returned.add(t));
  for (const t of own) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  own.clear();
}

/**
 * Called when an async scope ends; returns a promise when the caller should yield first (the webgpu
 * runtime uses it to bound the work queued on the GPU, see GpuRuntime.settleBacklog).
 */
let asyncBoundary: () => Promise<void> | null = () => null;

export function setAsyncBoundary(fn: () => Promise<void> | null): void {
  asyncBoundary = fn;
}

/** Yields to the event loop only when queued device work has built up (cheap otherwise). */
export function settleBacklog(): Promise<void> | null {
  return asyncBoundary();
}

/**
 * Runs fn (sync or async) and disposes every tensor it created that is not part of its result
 * (a tensor, or arrays / plain objects holding tensors). Returned tensors move to the outer scope.
 */
export function scope<T>(fn: () => T): T {
  if (typeof fn !== 'function')
    throw new OpError(
      'scope',
      `fn must be a function (sync or async), got ${Array.isArray(fn) ? 'an array' : typeof fn}`,
    );
  const parent = current.getStore();
  const own: ScopeSet = new Set();
  let result: T;
  try {
    result = current.run(own, fn);
  } catch (e) {
    close(own, undefined, parent);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => {
        close(own, r, parent);
        const wait = asyncBoundary();
        return wait ? wait.then(() => r) : r;
      },
      (e) => {
        close(own, undefined, parent);
        throw e;
      },
    ) as T;
  }
  close(own, result, parent);
  return result;
}

/** Whether t was created in (and is still owned by) the current scope. */
export function isTracked(t: Disposable): boolean {
  return current.getStore()?.has(t) ?? false;
}
