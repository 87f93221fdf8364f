// Tensor creation: from JS data, constants, ranges and seeded random numbers.
import type { DeviceName } from '../core/backend.js';
import { checkDevice, getBackend, getDefaultDevice } from '../core/device.js';
import { checkDType, type DType } from '../core/dtype.js';
import { intArray, normalArray, uniformArray } from '../core/rng.js';
import { checkShape, numel, OpError } from '../core/shape.js';
import { Tensor, type NestedArray } from '../core/tensor.js';
import { ELEMENTWISE } from './elementwise/index.js';
import { empty } from './util.js';

export interface TensorOptions {
  dtype?: DType;
  device?: DeviceName;
  requiresGrad?: boolean;
}

function resolve(op: string, opts: TensorOptions, fallback: DType = 'float32'): { dtype: DType; device: DeviceName } {
  return { dtype: checkDType(op, opts.dtype ?? fallback), device: checkDevice(op, opts.device ?? getDefaultDevice()) };
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) {
    if (t.dtype === 'int32') throw new OpError('requiresGrad', 'only float tensors can require gradients');
    t.requiresGrad = true;
  }
  return t;
}

function fromFlat(
  op: string,
  values: ArrayLike<number>,
  shape: readonly number[],
  opts: TensorOptions,
  fallback: DType,
): Tensor {
  const { dtype, device } = resolve(op, opts, fallback);
  const storage = getBackend(device).upload(dtype, values);
  if (dtype === 'int32') {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < values.length; i++) {
      if (values[i] < min) min = values[i];
      if (values[i] > max) max = values[i];
    }
    storage.hostRange = { min, max };
  }
  return finish(new Tensor(storage, shape), opts);
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as NestedArray;
    if (cur === undefined) break;
  }
  return shape;
}

function flatten(data: NestedArray, shape: number[], depth = 0, out: number[] = []): number[] {
  if (depth === shape.length) {
    if (typeof data !== 'number')
      throw new OpError('tensor', `ragged or non-numeric data at depth ${depth} (expected a number)`);
    out.push(data);
    return out;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new OpError(
      'tensor',
      `ragged nested array: expected length ${shape[depth]} at depth ${depth}, got ${Array.isArray(data) ? data.length : typeof data}`,
    );
  }
  for (const d of data) flatten(d, shape, depth + 1, out);
  return out;
}

/**
 * A tensor from nested arrays, a number, or a TypedArray (with `shape`). dtype defaults to float32,
 * int32 for Int32Array, float64 for Float64Array.
 */
export function tensor(
  data: NestedArray | Float32Array | Float64Array | Int32Array,
  opts: TensorOptions & { shape?: readonly number[] } = {},
): Tensor {
  if (ArrayBuffer.isView(data)) {
    const shape = checkShape('tensor', opts.shape ?? [data.length]);
    if (numel(shape) !== data.length)
      throw new OpError('tensor', `shape [${shape.join(', ')}] needs ${numel(shape)} values, got ${data.length}`);
    const fallback: DType = data instanceof Int32Array ? 'int32' : data instanceof Float64Array ? 'float64' : 'float32';
    return fromFlat('tensor', data, shape, opts, fallback);
  }
  const shape = inferShape(data);
  const flat = flatten(data, shape);
  const finalShape = opts.shape ? checkShape('tensor', opts.shape) : shape;
  if (numel(finalShape) !== flat.length)
    throw new OpError(
      'tensor',
      `shape [${finalShape.join(', ')}] needs ${numel(finalShape)} values, got ${flat.length}`,
    );
  return fromFlat('tensor', flat, finalShape, opts, 'float32');
}

export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  const { dtype, device } = resolve('full', opts);
  const t = empty(device, dtype, checkShape('full', shape));
  getBackend(device).elementwise(ELEMENTWISE.copy, [{ scalar: value }], t, dtype);
  return finish(t, opts);
}

export const zeros = (shape: readonly number[], opts: TensorOptions = {}): Tensor => full(shape, 0, opts);
export const ones = (shape: readonly number[], opts: TensorOptions = {}): Tensor => full(shape, 1, opts);

const likeOpts = (t: Tensor, opts: TensorOptions): TensorOptions => ({ dtype: t.dtype, device: t.device, ...opts });
export const zerosLike = (t: Tensor, opts: TensorOptions = {}): Tensor => zeros(t.shape, likeOpts(t, opts));
export const onesLike = (t: Tensor, opts: TensorOptions = {}): Tensor => ones(t.shape, likeOpts(t, opts));
export const fullLike = (t: Tensor, value: number, opts: TensorOptions = {}): Tensor =>
  full(t.shape, value, likeOpts(t, opts));

/** arange(end) or arange(start, end, step); int32 when all arguments are integers (like torch's int64). */
export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new OpError('arange', 'step must be nonzero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const values = Array.from({ length: n }, (_, i) => start + i * step);
  const ints = [start, end, step].every(Number.isInteger);
  return fromFlat('arange', values, [n], opts, ints ? 'int32' : 'float32');
}

export function linspace(start: number, end: number, steps: number, opts: TensorOptions = {}): Tensor {
  if (!Number.isInteger(steps) || steps < 0)
    throw new OpError('linspace', `steps must be a non-negative integer, got ${steps}`);
  const values = Array.from({ length: steps }, (_, i) =>
    steps === 1 ? start : start + ((end - start) * i) / (steps - 1),
  );
  return fromFlat('linspace', values, [steps], opts, 'float32');
}

/** Uniform [0, 1) from the seeded generator (see manualSeed). */
export function rand(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return fromFlat('rand', uniformArray(numel(checkShape('rand', shape))), shape, opts, 'float32');
}

/** Standard normal from the seeded generator. */
export function randn(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return fromFlat('randn', normalArray(numel(checkShape('randn', shape))), shape, opts, 'float32');
}

/** Integers uniform in [low, high), int32. */
export function randint(low: number, high: number, shape: readonly number[], opts: TensorOptions = {}): Tensor {
  if (!(high > low)) throw new OpError('randint', `high (${high}) must be greater than low (${low})`);
  return fromFlat('randint', intArray(numel(checkShape('randint', shape)), low, high), shape, opts, 'int32');
}
