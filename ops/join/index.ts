// Joining windows along an axis into a new tensor (cat's forward, split's backward): one dispatch for up
// to JOIN_MAX_PARTS parts on webgpu, one copy per window otherwise (and on the cpu backend).
import { getBackend } from '../../core/device.js';
import type { Tensor } from '../../core/tensor.js';
import { bitsOf } from '../../core/webgpu/uniforms.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { ELEMENTWISE } from '../elementwise/index.js';
import { empty } from '../util.js';
import { JN, JOIN_MAX_PARTS, JOIN_MAX_RANK, joinSource } from './kernels.js';

/**
 * A new tensor of like's shape but `lengths` along axis a, whose consecutive windows along a are copies
 * of `sources` (a tensor of the window's shape, or a value to fill it with).
 */
export function joinAlong(like: Tensor, a: number, lengths: readonly number[], sources: readonly (Tensor | number)[]): Tensor {
  const out = empty(like.device, like.dtype, like.shape.map((d, i) => (i === a ? lengths.reduce((s, n) => s + n, 0) : d)));
  if (out.size === 0) return out;
  const starts = lengths.map((_, i) => lengths.slice(0, i).reduce((s, n) => s + n, 0));
  if (out.device === 'webgpu' && sources.length <= JOIN_MAX_PARTS && out.rank <= JOIN_MAX_RANK) {
    const t = out.dtype === 'int32' ? 'i32' : 'f32';
    const tensors = sources.filter((s): s is Tensor => typeof s !== 'number');
    const strides = sources.flatMap((s) => Array.from({ length: JOIN_MAX_RANK }, (_, d) => (typeof s === 'number' || d >= out.rank ? 0 : s.strides[d])));
    const p = JN.pack({
      N: out.size, RANK: out.rank, PARTS: sources.length, AXIS: a, INNER: out.shape.slice(a + 1).reduce((n, d) => n * d, 1),
      FILLED: sources.reduce<number>((m, s, i) => (typeof s === 'number' ? m | (1 << i) : m), 0),
      SHAPE: out.shape, START: starts,
      BASE: sources.map((s, i) => (typeof s === 'number' ? 0 : s.offset - starts[i] * s.strides[a])),
      FILL: sources.map((s) => (typeof s === 'number' ? bitsOf(s, t) : 0)),
      STR: strides,
    });
    launch('cat', `join:${t}:${tensors.length}`, () => joinSource(t, tensors.length), p, [out, ...tensors], itemGrid(out.size));
    return out;
  }
  sources.forEach((src, i) => {
    const window = { storage: out.storage, shape: out.shape.map((d, j) => (j === a ? lengths[i] : d)), strides: out.strides, offset: starts[i] * out.strides[a], dtype: out.dtype };
    getBackend(out.device).elementwise(ELEMENTWISE.copy, [typeof src === 'number' ? { scalar: src } : src], window, out.dtype);
  });
  return out;
}
