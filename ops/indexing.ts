// Index-based ops: gather, indexSelect, scatterAdd. Indices are int32 tensors.
import type { View } from '../core/backend.js';
import { record } from '../core/autograd.js';
import { knownIndexValues } from '../core/args.js';
import { getBackend } from '../core/device.js';
import { normAxis, OpError, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { ELEMENTWISE } from './elementwise/index.js';
import { empty, sameDevice } from './util.js';

/**
 * Range check without a GPU readback: cpu indices are read directly; webgpu indices uploaded from JS
 * carry their value range. Indices computed on the GPU cannot be checked and are clamped in the kernel.
 */
function checkIndexRange(op: string, index: Tensor, size: number): void {
  const known = knownIndexValues(index);
  if (known && index.size > 0 && (known.min < 0 || known.max >= size)) {
    const { min, max } = known;
    throw new OpError(op, `index out of range: values span [${min}, ${max}] but the indexed axis has size ${size}`);
  }
}

function checkIndex(op: string, index: Tensor): void {
  if (index.dtype !== 'int32') throw new OpError(op, `indices must be int32, got ${index.dtype}; use .astype('int32')`);
}

/** torch.gather: out[c] = x[c with c[axis] = index[c]]; out has index's shape. */
function gather(x: Tensor, axis: number, index: Tensor): Tensor {
  const device = sameDevice('gather', [x, index]);
  checkIndex('gather', index);
  const a = normAxis('gather', axis, x.rank);
  if (index.rank !== x.rank || index.shape.some((d, i) => i !== a && d > x.shape[i])) {
    throw new OpError(
      'gather',
      `index ${shapeStr(index.shape)} must have the rank of input ${shapeStr(x.shape)} and no larger size off axis ${axis}`,
    );
  }
  checkIndexRange('gather', index, x.shape[a]);
  const out = empty(device, x.dtype, index.shape);
  getBackend(device).gather(x, a, index, out);
  return record('gather', out, [x], (g, [idx]) => [scatterIntoZeros(g, x.shape, a, idx)], [index]);
}

/** The gradient of a gather: g scatter-added along axis into zeros of the input's shape (one kernel for an embedding's). */
function scatterIntoZeros(g: Tensor, shape: readonly number[], axis: number, index: Tensor): Tensor {
  const out = empty(g.device, g.dtype, shape);
  getBackend(g.device).scatterAdd(out, axis, index, g, true);
  return record('scatterAdd', out, [g], (gg, [idx]) => [gg.gather(axis, idx)], [index]);
}

/** Rows (or slices along axis) of x picked by a 1-D index: x.indexSelect(0, ids). */
function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  const device = sameDevice('indexSelect', [x, index]);
  checkIndex('indexSelect', index);
  if (index.rank !== 1)
    throw new OpError(
      'indexSelect',
      `index must be 1-D, got ${shapeStr(index.shape)}; reshape it (and the result) instead`,
    );
  const a = normAxis('indexSelect', axis, x.rank);
  checkIndexRange('indexSelect', index, x.shape[a]);
  const shape = x.shape.map((d, i) => (i === a ? index.shape[0] : d));
  // The 1-D index seen as a broadcast view of the output's shape.
  const idxView: View = {
    storage: index.storage,
    shape,
    strides: shape.map((_, i) => (i === a ? index.strides[0] : 0)),
    offset: index.offset,
    dtype: 'int32',
  };
  const out = empty(device, x.dtype, shape);
  getBackend(device).gather(x, a, idxView, out);
  return record(
    'indexSelect',
    out,
    [x],
    (g, [idx]) => {
      const view = new Tensor(idx.storage, shape, idxView.strides, idx.offset);
      const grad = scatterIntoZeros(g, x.shape, a, view);
      view.dispose();
      return [grad];
    },
    [index],
  );
}

/** torch.scatter_add: a copy of x with src added at index positions along axis. */
function scatterAdd(x: Tensor, axis: number, index: Tensor, src: Tensor): Tensor {
  const device = sameDevice('scatterAdd', [x, index, src]);
  checkIndex('scatterAdd', index);
  const a = normAxis('scatterAdd', axis, x.rank);
  if (
    index.rank !== x.rank ||
    src.rank !== x.rank ||
    index.shape.some((d, i) => d > src.shape[i] || (i !== a && d > x.shape[i]))
  ) {
    throw new OpError(
      'scatterAdd',
      `index ${shapeStr(index.shape)} must fit in src ${shapeStr(src.shape)} and (off axis ${axis}) in input ${shapeStr(x.shape)}`,
    );
  }
  if (src.dtype !== x.dtype)
    throw new OpError('scatterAdd', `src dtype ${src.dtype} differs from input dtype ${x.dtype}`);
  checkIndexRange('scatterAdd', index, x.shape[a]);
  const out = empty(device, x.dtype, x.shape);
  getBackend(device).elementwise(ELEMENTWISE.copy, [x], out, x.dtype);
  getBackend(device).scatterAdd(out, a, index, src);
  return record('scatterAdd', out, [x, src], (g, [idx]) => [g, g.gather(a, idx)], [index]);
}

declare module '../core/tensor.js' {
  interface Tensor {
    gather(axis: number, index: Tensor): Tensor;
    indexSelect(axis: number, index: Tensor): Tensor;
    scatterAdd(axis: number, index: Tensor, src: Tensor): Tensor;
  }
}

const P = Tensor.prototype;
P.gather = function (axis, index) {
  return gather(this, axis, index);
};
P.indexSelect = function (axis, index) {
  return indexSelect(this, axis, index);
};
P.scatterAdd = function (axis, index, src) {
  return scatterAdd(this, axis, index, src);
};
