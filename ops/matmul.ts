// Matrix multiplication with NumPy semantics: 1-D operands, batch broadcasting.
import { record } from '../core/autograd.js';
import { getBackend } from '../core/device.js';
import { broadcastShapes, OpError, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { broadcastView, empty, sameDevice, sumTo } from './util.js';
import { argTensor } from '../core/args.js';

function matmul2(a: Tensor, b: Tensor): Tensor {
  const [M, K] = a.shape.slice(-2);
  const [K2, N] = b.shape.slice(-2);
  if (K !== K2) {
    throw new OpError('matmul', `inner dimensions differ: ${shapeStr(a.shape)} @ ${shapeStr(b.shape)} (${K} vs ${K2}); the last dim of the first must equal the second-to-last of the second`);
  }
  if (a.dtype === 'int32' || b.dtype === 'int32') throw new OpError('matmul', `float tensors only, got ${a.dtype} @ ${b.dtype}; cast with .astype('float32')`);
  if (a.dtype !== b.dtype) throw new OpError('matmul', `dtypes differ: ${a.dtype} @ ${b.dtype}; cast one with .astype()`);
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = empty(a.device, a.dtype, [...batch, M, N]);
  getBackend(a.device).matmul(broadcastView(a, [...batch, M, K]), broadcastView(b, [...batch, K, N]), out);
  return record('matmul', out, [a, b], (g, [sa, sb]) => [
    sumTo(g.matmul(sb.transpose(-1, -2)), a.shape),
    sumTo(sa.transpose(-1, -2).matmul(g), b.shape),
  ], [a, b]);
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  argTensor('matmul', 'input', a);
  argTensor('matmul', 'other', b);
  sameDevice('matmul', [a, b]);
  if (a.rank === 0 || b.rank === 0) throw new OpError('matmul', `both operands need at least one dimension, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}; use mul for scalars`);
  const a2 = a.rank === 1 ? a.unsqueeze(0) : a;
  const b2 = b.rank === 1 ? b.unsqueeze(1) : b;
  let y = matmul2(a2, b2);
  if (a.rank === 1) y = y.squeeze(-2);
  if (b.rank === 1) y = y.squeeze(-1);
  return y;
}

declare module '../core/tensor.js' {
  interface Tensor {
    matmul(other: Tensor): Tensor;
  }
}
Tensor.prototype.matmul = function (other: Tensor) { return matmul(this, other); };
