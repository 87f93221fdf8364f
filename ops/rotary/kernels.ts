// WGSL for rotary position embeddings in the HF rotate_half layout, one invocation per element:
// x' = x·cos + rotate_half(x)·sin over the first R dims of the last axis (the rest pass through),
// rotate_half(x) = cat(−x[R/2:R], x[:R/2]). The backward applies the transposed rotation.
import { itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';

/** Layout: n, D, R, rank, xOff, cosOff, sinOff, _, shape[8] (x's), cosStrides[8], sinStrides[8] (broadcast to x.shape[:-1] + [R]). */
export const RO = { N: 0, D: 1, R: 2, RANK: 3, XOFF: 4, COFF: 5, SOFF: 6, SHAPE: 8, CSTR: 16, SSTR: 24 } as const;

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
