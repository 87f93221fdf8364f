// Reductions over one or more axes: sum, mean, max, min, argmax, argmin, var.
import type { ReduceKind } from '../core/backend.js';
import { record } from '../core/autograd.js';
import { getBackend } from '../core/device.js';
import { isFloat } from '../core/dtype.js';
import { normAxes, numel, OpError, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { empty } from './util.js';

type Axes = number | readonly number[] | undefined;

/** Output shape with reduced axes dropped (or kept as 1). */
function reducedShape(shape: readonly number[], axes: number[], keepdim: boolean): number[] {
  return keepdim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Runs the backend reduction with the reduced axes moved last (a view, no copy). */
function rawReduce(kind: ReduceKind, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  x.assertAlive(kind);
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const order = [...kept, ...axes];
  const outDtype = kind === 'argmax' || kind === 'argmin' ? 'int32' : x.dtype;
  const out = empty(x.device, outDtype, reducedShape(x.shape, axes, keepdim));
  if (kind !== 'sum' && numel(axes.map((a) => x.shape[a])) === 0) {
    throw new OpError(kind, `cannot reduce over an empty axis (shape ${shapeStr(x.shape)}, axes [${axes.join(', ')}])`);
  }
  const view = {
    storage: x.storage,
    shape: order.map((i) => x.shape[i]),
    strides: order.map((i) => x.strides[i]),
    offset: x.offset,
    dtype: x.dtype,
  };
  getBackend(x.device).reduce(kind, view, axes.length, out);
  return out;
}

/** Reshapes a reduced gradient to keepdim form and broadcasts it to the input shape. */
function spread(g: Tensor, inShape: readonly number[], axes: number[]): Tensor {
  return g.reshape(reducedShape(inShape, axes, true)).expand(inShape);
}

function sum(x: Tensor, axis?: Axes, keepdim = false): Tensor {
  const axes = normAxes('sum', axis, x.rank);
  const y = rawReduce('sum', x, axes, keepdim);
  return record('sum', y, [x], (g) => [spread(g, x.shape, axes)]);
}

function mean(x: Tensor, axis?: Axes, keepdim = false): Tensor {
  const axes = normAxes('mean', axis, x.rank);
  const n = numel(axes.map((a) => x.shape[a]));
  return sum(isFloat(x.dtype) ? x : x.astype('float32'), axes, keepdim).div(n);
}

function extreme(kind: 'max' | 'min', x: Tensor, axis?: Axes, keepdim = false): Tensor {
  const axes = normAxes(kind, axis, x.rank);
  const y = rawReduce(kind, x, axes, keepdim);
  if (!isFloat(x.dtype)) return y;
  // Gradient is shared evenly among tied extremes (like torch.amax).
  return record(
    kind,
    y,
    [x],
    (g, [xs, ys]) => {
      const mask = xs.eq(spread(ys, x.shape, axes)).astype(g.dtype);
      return [spread(g, x.shape, axes).mul(mask).div(mask.sum(axes, true))];
    },
    [x, y],
  );
}

function argReduce(kind: 'argmax' | 'argmin', x: Tensor, axis?: number, keepdim = false): Tensor {
  if (axis === undefined) return argReduce(kind, x.reshape([-1]), 0, false);
  return rawReduce(kind, x, normAxes(kind, axis, x.rank), keepdim);
}

/** Variance with Bessel's correction by default (correction = 1), as torch.var. */
function variance(x: Tensor, axis?: Axes, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
  const axes = normAxes('var', axis, x.rank);
  const n = numel(axes.map((a) => x.shape[a]));
  const correction = opts.correction ?? 1;
  const centered = x.sub(mean(x, axes, true));
  return sum(centered.square(), axes, opts.keepdim ?? false).div(Math.max(n - correction, 0));
}

declare module '../core/tensor.js' {
  interface Tensor {
    sum(axis?: Axes, keepdim?: boolean): Tensor;
    mean(axis?: Axes, keepdim?: boolean): Tensor;
    max(axis?: Axes, keepdim?: boolean): Tensor;
    min(axis?: Axes, keepdim?: boolean): Tensor;
    /** Index of the largest value along `axis` (over the flattened tensor when omitted), int32. */
    argmax(axis?: number, keepdim?: boolean): Tensor;
    argmin(axis?: number, keepdim?: boolean): Tensor;
    var(axis?: Axes, opts?: { correction?: number; keepdim?: boolean }): Tensor;
  }
}

const P = Tensor.prototype;
P.sum = function (axis, keepdim) {
  return sum(this, axis, keepdim);
};
P.mean = function (axis, keepdim) {
  return mean(this, axis, keepdim);
};
P.max = function (axis, keepdim) {
  return extreme('max', this, axis, keepdim);
};
P.min = function (axis, keepdim) {
  return extreme('min', this, axis, keepdim);
};
P.argmax = function (axis, keepdim) {
  return argReduce('argmax', this, axis, keepdim);
};
P.argmin = function (axis, keepdim) {
  return argReduce('argmin', this, axis, keepdim);
};
P.var = function (axis, opts) {
  return variance(this, axis, opts);
};
