// Argument checks at public boundaries: a value of the wrong kind raises an OpError naming the function,
// the argument, what it got and what it expects — never a raw TypeError from deep inside.
import { OpError } from './shape.js';
import { getBackend } from './device.js';
import { Tensor } from './tensor.js';

/** A short description of what a caller passed: "an array of 3", "the string '1'", "undefined"… */
export function describeValue(v: unknown): string {
  if (v === undefined || v === null) return String(v);
  if (v instanceof Tensor) return `a tensor ${v.toString()}`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `the string '${v.length > 40 ? `${v.slice(0, 40)}…` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${v}`;
  if (typeof v === 'function') return 'a function';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  return `an object (${Object.getPrototypeOf(v)?.constructor?.name ?? 'no prototype'})`;
}

function fail(op: string, name: string, expected: string, got: unknown, hint = ''): never {
  throw new OpError(op, `${name} must be ${expected}, got ${describeValue(got)}${hint ? `; ${hint}` : ''}`);
}

/** A live Tensor (disposed tensors are refused too). */
export function argTensor(op: string, name: string, v: unknown): Tensor {
  if (!(v instanceof Tensor))
    fail(op, name, 'a Tensor', v, Array.isArray(v) || typeof v === 'number' ? 'wrap data with tensor(...)' : '');
  v.assertAlive(op);
  return v;
}

/** An array of live tensors. */
export function argTensors(op: string, name: string, v: unknown, { nonEmpty = false } = {}): Tensor[] {
  if (!Array.isArray(v)) fail(op, name, 'an array of tensors', v);
  if (nonEmpty && v.length === 0) fail(op, name, 'a non-empty array of tensors', v);
  return v.map((t, i) => argTensor(op, `${name}[${i}]`, t));
}

/** A Tensor or a plain number (binary ops broadcast numbers as scalars). */
export function argTensorOrNumber(op: string, name: string, v: unknown): Tensor | number {
  if (typeof v === 'number') return v;
  if (!(v instanceof Tensor))
    fail(op, name, 'a Tensor or a number', v, Array.isArray(v) ? 'wrap arrays with tensor(...)' : '');
  v.assertAlive(op);
  return v;
}

export function argFunction<F>(op: string, name: string, v: F): F {
  if (typeof v !== 'function') fail(op, name, 'a function', v);
  return v;
}

export interface NumberRule {
  integer?: boolean;
  min?: number;
  /** Strictly greater than min. */
  above?: number;
}

/** A finite number (optionally an integer, ≥ min or > above). */
export function argNumber(op: string, name: string, v: unknown, rule: NumberRule = {}): number {
  const kind = rule.integer ? 'an integer' : 'a finite number';
  const bound = rule.min !== undefined ? ` ≥ ${rule.min}` : rule.above !== undefined ? ` > ${rule.above}` : '';
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    (rule.integer && !Number.isInteger(v)) ||
    (rule.min !== undefined && v < rule.min) ||
    (rule.above !== undefined && v <= rule.above)
  ) {
    fail(op, name, `${kind}${bound}`, v, typeof v === 'string' ? 'pass a number, not a string' : '');
  }
  return v;
}

/** A list of non-negative integer sizes. */
export function argShape(op: string, name: string, v: unknown): number[] {
  if (!Array.isArray(v) || !v.every((d) => Number.isInteger(d) && d >= -1))
    fail(op, name, 'an array of integer sizes', v);
  return v;
}

export function argString(op: string, name: string, v: unknown): string {
  if (typeof v !== 'string') fail(op, name, 'a string', v);
  return v;
}

/** A plain object (options, configs, state dicts). */
export function argObject<T extends object>(op: string, name: string, v: T | undefined | null): T {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(op, name, 'an object', v);
  return v;
}

/**
 * The values of an index tensor where the host knows them without a GPU readback: all of them on cpu,
 * the range recorded at upload for a whole webgpu tensor made from JS; null when computed on the GPU.
 */
export function knownIndexValues(t: Tensor): { min: number; max: number; values: ArrayLike<number> | null } | null {
  const values = getBackend(t.device).readSync?.(t) ?? null;
  if (values) {
    let min = Infinity,
      max = -Infinity;
    for (let i = 0; i < values.length; i++) {
      min = Math.min(min, values[i]);
      max = Math.max(max, values[i]);
    }
    return { min, max, values };
  }
  const range = t.storage.hostRange;
  return range && t.size === t.storage.length ? { ...range, values: null } : null;
}
