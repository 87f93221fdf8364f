// Views (no copy where strides allow) and copies that change layout: reshape, permute, transpose,
// expand, slice/narrow, split, squeeze/unsqueeze, contiguous, cat, stack, detach, device transfer.
import { dtypeOn, type DeviceName } from '../core/backend.js';
import { alias, record, recordJoint } from '../core/autograd.js';
import { checkDevice, getBackend, readNow } from '../core/device.js';
import { contiguousStrides, normAxis, numel, OpError, shapeStr } from '../core/shape.js';
import { checkDType, type DType } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import { ELEMENTWISE } from './elementwise/index.js';
import { sameDevice } from './util.js';
import { joinAlong } from './join/index.js';
import { argShape, argTensors } from '../core/args.js';

/** A view on x's storage; the backward rule maps the gradient back. */
function view(
  x: Tensor,
  name: string,
  shape: readonly number[],
  strides: readonly number[],
  offset: number,
  backward: (g: Tensor) => Tensor,
): Tensor {
  x.assertAlive(name);
  const y = new Tensor(x.storage, shape, strides, offset);
  return record(name, y, [x], (g) => [backward(g)]);
}

function resolveShape(x: Tensor, shape: readonly number[]): number[] {
  const n = x.size;
  const infer = shape.indexOf(-1);
  if (shape.filter((d) => d === -1).length > 1)
    throw new OpError('reshape', `only one dimension can be -1, got ${shapeStr(shape)}`);
  const known = numel(shape.filter((d) => d !== -1));
  const out = [...shape];
  if (infer >= 0) {
    if (known === 0 || n % known !== 0)
      throw new OpError('reshape', `cannot reshape ${shapeStr(x.shape)} (${n} elements) into ${shapeStr(shape)}`);
    out[infer] = n / known;
  }
  if (numel(out) !== n || out.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new OpError('reshape', `cannot reshape ${shapeStr(x.shape)} (${n} elements) into ${shapeStr(shape)}`);
  }
  return out;
}

/**
 * Strides that show x's elements, in row-major order, with `shape`; null when no strides can (the
 * reshape must copy). x's dims are cut into chunks that are contiguous among themselves (each dim's
 * stride is the next one's stride × size; size-1 dims fit anywhere); every chunk must be exactly
 * covered by consecutive new dims, which then step through it contiguously.
 */
function viewStrides(x: Tensor, shape: readonly number[]): number[] | null {
  if (x.size === 0 || x.isContiguous()) return contiguousStrides(shape);
  const strides = new Array<number>(shape.length);
  let newDim = shape.length - 1;
  let chunkStride = x.strides[x.rank - 1];
  let chunkSize = 1;
  for (let d = x.rank - 1; d >= 0; d--) {
    chunkSize *= x.shape[d];
    const chunkEnds = d === 0 || (x.shape[d - 1] !== 1 && x.strides[d - 1] !== chunkSize * chunkStride);
    if (!chunkEnds) continue;
    let covered = 1;
    while (newDim >= 0 && (covered < chunkSize || shape[newDim] === 1)) {
      strides[newDim] = covered * chunkStride;
      covered *= shape[newDim--];
    }
    if (covered !== chunkSize) return null;
    if (d > 0) {
      chunkStride = x.strides[d - 1];
      chunkSize = 1;
    }
  }
  return newDim === -1 ? strides : null;
}

/** A view when x's strides allow it (always for contiguous x), else a contiguous copy. */
function reshape(x: Tensor, shape: readonly number[]): Tensor {
  argShape('reshape', 'shape', shape);
  const out = resolveShape(x, shape);
  const strides = viewStrides(x, out);
  if (strides) return view(x, 'reshape', out, strides, x.offset, (g) => g.reshape(x.shape));
  const src = x.contiguous();
  return view(src, 'reshape', out, contiguousStrides(out), src.offset, (g) => g.reshape(x.shape));
}

function permute(x: Tensor, dims: readonly number[]): Tensor {
  const axes = dims.map((d) => normAxis('permute', d, x.rank));
  if (axes.length !== x.rank || new Set(axes).size !== x.rank) {
    throw new OpError(
      'permute',
      `dims [${dims.join(', ')}] are not a permutation of the ${x.rank} axes of ${shapeStr(x.shape)}`,
    );
  }
  const inverse = new Array<number>(x.rank);
  axes.forEach((a, i) => {
    inverse[a] = i;
  });
  return view(
    x,
    'permute',
    axes.map((a) => x.shape[a]),
    axes.map((a) => x.strides[a]),
    x.offset,
    (g) => g.permute(inverse),
  );
}

function transpose(x: Tensor, a: number, b: number): Tensor {
  const dims = [...x.shape.keys()];
  const [i, j] = [normAxis('transpose', a, x.rank), normAxis('transpose', b, x.rank)];
  [dims[i], dims[j]] = [dims[j], dims[i]];
  return permute(x, dims);
}

function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.rank;
  if (lead < 0) throw new OpError('expand', `cannot expand ${shapeStr(x.shape)} to fewer dims ${shapeStr(shape)}`);
  const outShape = shape.map((d, i) => (d === -1 && i >= lead ? x.shape[i - lead] : d));
  const strides = outShape.map((d, i) => {
    const j = i - lead;
    if (j < 0) return 0;
    if (x.shape[j] === d) return x.strides[j];
    if (x.shape[j] === 1) return 0;
    throw new OpError(
      'expand',
      `cannot expand ${shapeStr(x.shape)} to ${shapeStr(shape)}: dim ${j} has size ${x.shape[j]} (only size-1 dims expand)`,
    );
  });
  return view(x, 'expand', outShape, strides, x.offset, (g) => {
    const axes = outShape.map((_, i) => i).filter((i) => i < lead || (x.shape[i - lead] === 1 && outShape[i] !== 1));
    const s = axes.length ? g.sum(axes, true) : g;
    return s.reshape(x.shape);
  });
}

/** x[..., start:end:step, ...] along one axis (negative start/end count from the end). */
function slice(x: Tensor, axis: number, start = 0, end?: number, step = 1): Tensor {
  const a = normAxis('slice', axis, x.rank);
  const n = x.shape[a];
  if (!Number.isInteger(step) || step < 1) throw new OpError('slice', `step must be a positive integer, got ${step}`);
  const clampIdx = (i: number) => Math.min(Math.max(i < 0 ? i + n : i, 0), n);
  const s = clampIdx(start);
  const e = clampIdx(end ?? n);
  const len = Math.max(0, Math.ceil((e - s) / step));
  const shape = x.shape.map((d, i) => (i === a ? len : d));
  const strides = x.strides.map((st, i) => (i === a ? st * step : st));
  // A window that is the whole axis (narrow(0, 0, n), as for rotary tables at full length) passes g on as is.
  const whole = len === n && step === 1;
  return view(x, 'slice', shape, strides, x.offset + s * x.strides[a], (g) =>
    whole ? g : embed(g, x.shape, a, s, step),
  );
}

/** The gradient of a slice: zeros of the input shape with g written into the sliced window. */
function embed(g: Tensor, shape: readonly number[], axis: number, start: number, step: number): Tensor {
  const len = g.shape[axis];
  let out: Tensor;
  if (step === 1 || len <= 1) {
    // Zeros, g, zeros along the axis: one join (one dispatch on webgpu) instead of a fill and a copy.
    const parts = [
      [start, 0],
      [len, g],
      [shape[axis] - start - len, 0],
    ] as const;
    const kept = parts.filter(([n]) => n > 0);
    out = joinAlong(
      g,
      axis,
      kept.map(([n]) => n),
      kept.map(([, src]) => src),
    );
  } else {
    out = g.fullLike(0, shape);
    const cs = contiguousStrides(shape);
    const window = {
      storage: out.storage,
      shape: g.shape,
      strides: cs.map((st, i) => (i === axis ? st * step : st)),
      offset: start * cs[axis],
      dtype: g.dtype,
    };
    getBackend(g.device).elementwise(ELEMENTWISE.copy, [g], window, g.dtype);
  }
  return record('embed', out, [g], (gg) => [gg.slice(axis, start, start + len * step, step)]);
}

function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis('narrow', axis, x.rank);
  if (start < 0 || length < 0 || start + length > x.shape[a]) {
    throw new OpError(
      'narrow',
      `range [${start}, ${start + length}) is outside axis ${axis} of size ${x.shape[a]} (shape ${shapeStr(x.shape)})`,
    );
  }
  return slice(x, a, start, start + length);
}

/**
 * Consecutive parts of x along `axis` as views (torch.split): `sizes` lists each part's length, or one
 * number cuts parts of that length (the last may be shorter). The parts are one autograd node, so the
 * input's gradient is one join of the parts' gradients (zeros for parts that got none) instead of a
 * zero fill and a copy per part, summed.
 */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  x.assertAlive('split');
  const a = normAxis('split', axis, x.rank);
  const n = x.shape[a];
  const bad = (what: string) =>
    new OpError(
      'split',
      `${what}; pass part lengths along axis ${axis} of ${shapeStr(x.shape)} that sum to ${n}, or one positive length`,
    );
  let lengths: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes < 1) throw bad(`sizes must be a positive integer, got ${sizes}`);
    lengths = Array.from({ length: Math.max(1, Math.ceil(n / sizes)) }, (_, i) => Math.min(sizes, n - i * sizes));
  } else {
    lengths = [...sizes];
    if (
      lengths.length === 0 ||
      lengths.some((d) => !Number.isInteger(d) || d < 0) ||
      lengths.reduce((s, d) => s + d, 0) !== n
    ) {
      throw bad(`sizes [${lengths.join(', ')}] are not non-negative integers summing to ${n}`);
    }
  }
  const starts = lengths.map((_, i) => lengths.slice(0, i).reduce((s, d) => s + d, 0));
  const parts = lengths.map(
    (len, i) =>
      new Tensor(
        x.storage,
        x.shape.map((d, j) => (j === a ? len : d)),
        x.strides,
        x.offset + starts[i] * x.strides[a],
      ),
  );
  return recordJoint('split', parts, [x], (gs) => {
    const whole = gs.find((g, i) => g && lengths[i] === n);
    return [
      whole ??
        joinAlong(
          x,
          a,
          lengths,
          gs.map((g) => g ?? 0),
        ),
    ];
  });
}

function squeeze(x: Tensor, axis?: number): Tensor {
  const axes =
    axis === undefined
      ? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)
      : [normAxis('squeeze', axis, x.rank)];
  const keep = x.shape.map((_, i) => i).filter((i) => !(axes.includes(i) && x.shape[i] === 1));
  return view(
    x,
    'squeeze',
    keep.map((i) => x.shape[i]),
    keep.map((i) => x.strides[i]),
    x.offset,
    (g) => g.reshape(x.shape),
  );
}

function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normAxis('unsqueeze', axis, x.rank + 1);
  const shape = [...x.shape];
  const strides = [...x.strides];
  shape.splice(a, 0, 1);
  strides.splice(a, 0, a < x.rank ? x.strides[a] * x.shape[a] : 1);
  return view(x, 'unsqueeze', shape, strides, x.offset, (g) => g.reshape(x.shape));
}

function contiguous(x: Tensor): Tensor {
  x.assertAlive('contiguous');
  return x.isContiguous() ? x : x.clone();
}

export function cat(tensors: readonly Tensor[], axis = 0): Tensor {
  argTensors('cat', 'tensors', tensors, { nonEmpty: true });
  sameDevice('cat', tensors);
  const first = tensors[0];
  const a = normAxis('cat', axis, first.rank);
  for (const t of tensors) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== a && d !== first.shape[i]) || t.dtype !== first.dtype) {
      throw new OpError(
        'cat',
        `tensors must match except along axis ${axis}: ${tensors.map((x) => `${shapeStr(x.shape)} ${x.dtype}`).join(', ')}`,
      );
    }
  }
  const starts = tensors.map((_, i) => tensors.slice(0, i).reduce((s, t) => s + t.shape[a], 0));
  const out = joinAlong(
    first,
    a,
    tensors.map((t) => t.shape[a]),
    tensors,
  );
  return record('cat', out, tensors, (g) => tensors.map((t, i) => g.narrow(a, starts[i], t.shape[a])));
}

export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new OpError('stack', 'needs at least one tensor');
  const a = normAxis('stack', axis, tensors[0].rank + 1);
  return cat(
    tensors.map((t) => t.unsqueeze(a)),
    a,
  );
}

function copyTo(x: Tensor, device: DeviceName, data: ArrayLike<number>): Tensor {
  const t = new Tensor(getBackend(device).upload(dtypeOn(device, x.dtype), data), x.shape);
  t.requiresGrad = x.requiresGrad;
  return t;
}

declare module '../core/tensor.js' {
  interface Tensor {
    reshape(shape: readonly number[]): Tensor;
    view(shape: readonly number[]): Tensor;
    flatten(): Tensor;
    permute(dims: readonly number[]): Tensor;
    transpose(a: number, b: number): Tensor;
    expand(shape: readonly number[]): Tensor;
    slice(axis: number, start?: number, end?: number, step?: number): Tensor;
    narrow(axis: number, start: number, length: number): Tensor;
    /** Consecutive parts along `axis` as views, as torch.split (see split in ops/movement.ts). */
    split(sizes: number | readonly number[], axis?: number): Tensor[];
    squeeze(axis?: number): Tensor;
    unsqueeze(axis: number): Tensor;
    contiguous(): Tensor;
    /** Same data, cut from the graph. */
    detach(): Tensor;
    /**
     * Copy to another device as a new leaf (requiresGrad carried over). cpu → webgpu is synchronous;
     * webgpu → cpu needs a readback: use `await x.toAsync('cpu')`. float64 becomes float32 on webgpu.
     */
    to(device: DeviceName): Tensor;
    /** As torch's x.to(dtype=…, device=…): a dtype change stays in the graph (astype), then the device move. */
    to(target: { device?: DeviceName; dtype?: DType }): Tensor;
    toAsync(device: DeviceName): Promise<Tensor>;
  }
}

const P = Tensor.prototype;
P.reshape = function (shape) {
  return reshape(this, shape);
};
P.view = function (shape) {
  argShape('view', 'shape', shape);
  if (!viewStrides(this, resolveShape(this, shape)))
    throw new OpError(
      'view',
      `tensor ${shapeStr(this.shape)} with strides [${this.strides.join(', ')}] cannot be viewed as ${shapeStr(shape)} without a copy; use reshape() (which copies when it must) or contiguous() first`,
    );
  return reshape(this, shape);
};
P.flatten = function () {
  return reshape(this, [-1]);
};
P.permute = function (dims) {
  return permute(this, dims);
};
P.transpose = function (a, b) {
  return transpose(this, a, b);
};
P.expand = function (shape) {
  return expand(this, shape);
};
P.slice = function (axis, start, end, step) {
  return slice(this, axis, start, end, step);
};
P.narrow = function (axis, start, length) {
  return narrow(this, axis, start, length);
};
P.split = function (sizes, axis) {
  return split(this, sizes, axis);
};
P.squeeze = function (axis) {
  return squeeze(this, axis);
};
P.unsqueeze = function (axis) {
  return unsqueeze(this, axis);
};
P.contiguous = function () {
  return contiguous(this);
};
P.detach = function () {
  this.assertAlive('detach');
  return alias(this);
};
P.to = function (this: Tensor, target: DeviceName | { device?: DeviceName; dtype?: DType }): Tensor {
  this.assertAlive('to');
  if (typeof target === 'object' && target !== null) {
    const { device = this.device, dtype = this.dtype, ...rest } = target;
    const unknown = Object.keys(rest);
    if (unknown.length)
      throw new OpError('to', `unknown option '${unknown[0]}'; x.to() takes a device name or { device, dtype }`);
    const cast = this.astype(checkDType('to', dtype));
    return device === this.device ? cast : cast.to(device);
  }
  const device = target;
  checkDevice('to', device);
  if (device === this.device) return this;
  return copyTo(this, device, readNow('to', this, `use \`await x.toAsync('${device}')\``));
};
P.toAsync = async function (device) {
  this.assertAlive('toAsync');
  checkDevice('toAsync', device);
  if (device === this.device) return this;
  return copyTo(this, device, await this.data());
};
