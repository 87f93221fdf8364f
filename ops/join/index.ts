// Joining windows along an axis into a new tensor (cat's forward, split's backward), as a kernel with
// two webgpu variants: 'onePass' (one dispatch for up to JOIN_MAX_PARTS parts of rank ≤ JOIN_MAX_RANK)
// and 'perPart' (one copy per window, any number of parts; the cpu backend does the same).
import { getBackend } from '../../core/device.js';
import { defineKernel, dispatch } from '../../core/op.js';
import type { Tensor } from '../../core/tensor.js';
import { bitsOf } from '../../core/webgpu/uniforms.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { storageTypeOf } from '../../core/webgpu/wgsl.js';
import { ELEMENTWISE } from '../elementwise/index.js';
import { empty } from '../util.js';
import { JN, JOIN_MAX_PARTS, JOIN_MAX_RANK, joinSource } from './kernels.js';

interface JoinArgs {
  readonly out: Tensor;
  readonly axis: number;
  /** Window i spans [starts[i], starts[i] + lengths[i]) along axis. */
  readonly starts: readonly number[];
  readonly lengths: readonly number[];
  /** A tensor of the window's shape, or a value to fill it with. */
  readonly sources: readonly (Tensor | number)[];
}

/** One elementwise copy (or fill) per window, on out's backend. */
function copyWindows({ out, axis, starts, lengths, sources }: JoinArgs): void {
  sources.forEach((src, i) => {
    const window = {
      storage: out.storage,
      shape: out.shape.map((d, j) => (j === axis ? lengths[i] : d)),
      strides: out.strides,
      offset: starts[i] * out.strides[axis],
      dtype: out.dtype,
    };
    getBackend(out.device).elementwise(
      ELEMENTWISE.copy,
      [typeof src === 'number' ? { scalar: src } : src],
      window,
      out.dtype,
    );
  });
}

/** Every part in one dispatch: each output element finds its part (the uniforms hold JOIN_MAX_PARTS parts of rank ≤ JOIN_MAX_RANK). */
function joinOnePass({ out, axis, starts, sources }: JoinArgs): void {
  const t = storageTypeOf(out.dtype);
  const tensors = sources.filter((s): s is Tensor => typeof s !== 'number');
  const strides = sources.flatMap((s) =>
    Array.from({ length: JOIN_MAX_RANK }, (_, d) => (typeof s === 'number' || d >= out.rank ? 0 : s.strides[d])),
  );
  const p = JN.pack({
    N: out.size,
    RANK: out.rank,
    PARTS: sources.length,
    AXIS: axis,
    INNER: out.shape.slice(axis + 1).reduce((n, d) => n * d, 1),
    FILLED: sources.reduce<number>((m, s, i) => (typeof s === 'number' ? m | (1 << i) : m), 0),
    SHAPE: out.shape,
    START: starts,
    BASE: sources.map((s, i) => (typeof s === 'number' ? 0 : s.offset - starts[i] * s.strides[axis])),
    FILL: sources.map((s) => (typeof s === 'number' ? bitsOf(s, t === 'i32' ? 'i32' : 'f32') : 0)),
    STR: strides,
  });
  launch(
    'cat',
    `join:${t}:${tensors.length}`,
    () => joinSource(t, tensors.length),
    p,
    [out, ...tensors],
    itemGrid(out.size),
  );
}

const joinKernel = defineKernel<JoinArgs>({
  name: 'join',
  family: 'join',
  float16: true,
  cpu: copyWindows,
  webgpu: [
    {
      name: 'onePass',
      fits: ({ out, sources }) => sources.length <= JOIN_MAX_PARTS && out.rank <= JOIN_MAX_RANK,
      run: joinOnePass,
    },
    { name: 'perPart', run: copyWindows },
  ],
});

/**
 * A new tensor of like's shape but `lengths` along axis a, whose consecutive windows along a are copies
 * of `sources` (a tensor of the window's shape, or a value to fill it with).
 */
export function joinAlong(
  like: Tensor,
  a: number,
  lengths: readonly number[],
  sources: readonly (Tensor | number)[],
): Tensor {
  const out = empty(
    like.device,
    like.dtype,
    like.shape.map((d, i) => (i === a ? lengths.reduce((s, n) => s + n, 0) : d)),
  );
  if (out.size === 0) return out;
  const starts = lengths.map((_, i) => lengths.slice(0, i).reduce((s, n) => s + n, 0));
  dispatch(joinKernel, out.device, { out, axis: a, starts, lengths, sources });
  return out;
}
