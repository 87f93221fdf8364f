// WGSL for rotary position embeddings in the HF rotate_half layout, one invocation per element:
// x' = x·cos + rotate_half(x)·sin over the first R dims of the last axis (the rest pass through),
// rotate_half(x) = cat(−x[R/2:R], x[:R/2]). The backward applies the transposed rotation.
import { itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import { MAX_RANK } from '../../core/webgpu/wgsl.js';

/** Params: x's shape; cos/sin strides broadcast to x.shape[:-1] + [R]. */
export const RO = uniformLayout({
  N: 'u32', D: 'u32', R: 'u32', RANK: 'u32', XOFF: 'u32', COFF: 'u32', SOFF: 'u32', SHAPE: ['u32', MAX_RANK], CSTR: ['u32', MAX_RANK], SSTR: ['u32', MAX_RANK],
});

/** 'forward': out = x c + rot(x) s.  'backward': out = g c + rotᵀ(g s) (x is the incoming gradient). */
export function rotarySource(direction: 'forward' | 'backward'): string {
  const rotated = direction === 'forward'
    ? 'select(x[xo + p], -x[xo + p], j < h) * sn[so + j * sstr]'
    : 'select(-x[xo + p] * sn[so + p * sstr], x[xo + p] * sn[so + p * sstr], j < h)';
  return `${kernelHeader(['var<storage, read_write> out: array<f32>', 'var<storage, read> x: array<f32>', 'var<storage, read> cs: array<f32>', 'var<storage, read> sn: array<f32>'])}
${itemMain(`
  if (item >= pu(${RO.N}u)) { return; }
  let D = pu(${RO.D}u);
  let R = pu(${RO.R}u);
  let j = item % D;
  let xo = pu(${RO.XOFF}u) + item - j;
  if (j >= R) { out[item] = x[xo + j]; return; }
  // Offsets of this row in the (broadcast) cos/sin tables.
  var co = pu(${RO.COFF}u);
  var so = pu(${RO.SOFF}u);
  var rem = item / D;
  let last = pu(${RO.RANK}u) - 1u;
  for (var d = i32(last) - 1; d >= 0; d--) {
    let du = u32(d);
    let c = rem % pu(${RO.SHAPE}u + du);
    rem = rem / pu(${RO.SHAPE}u + du);
    co += c * pu(${RO.CSTR}u + du);
    so += c * pu(${RO.SSTR}u + du);
  }
  let cstr = pu(${RO.CSTR}u + last);
  let sstr = pu(${RO.SSTR}u + last);
  let h = R / 2u;
  let p = select(j - h, j + h, j < h);
  out[item] = x[xo + j] * cs[co + j * cstr] + ${rotated};`)}`;
}
