// WGSL for matmul: a 4×4 register-tiled kernel (variant 'register'; lavapipe's default is the vec4
// one in vec4.ts) and a shared-memory tiled one for real GPUs. Shapes, strides and offsets travel
// in the params uniform (layout MM).
import { header, uniformLayout } from '../../core/webgpu/uniforms.js';
import { MAX_RANK, unravel, type WType } from '../../core/webgpu/wgsl.js';

/** Matmul params: sizes, batch dims and each operand's batch strides, offsets, row/column strides. */
export const MM = uniformLayout({
  M: 'u32',
  N: 'u32',
  K: 'u32',
  BRANK: 'u32',
  BSHAPE: ['u32', MAX_RANK],
  ABATCH: ['u32', MAX_RANK],
  BBATCH: ['u32', MAX_RANK],
  OBATCH: ['u32', MAX_RANK],
  AOFF: 'u32',
  BOFF: 'u32',
  OOFF: 'u32',
  ARS: 'u32',
  ACS: 'u32',
  BRS: 'u32',
  BCS: 'u32',
  ORS: 'u32',
  OCS: 'u32',
});
const batchOffsets = (batch: string) =>
  unravel(batch, MM.BRANK, MM.BSHAPE, [
    ['ao', MM.ABATCH],
    ['bo', MM.BBATCH],
    ['oo', MM.OBATCH],
  ]);
/**
 * The bindings C, A, B: element types f16 or f32 (values are widened to f32 on load, products accumulate
 * in f32, and C is rounded to its type on store); `vec4<…>` element types where an operand is read as vec4s.
 */
export function matmulBindings(c: string, a: string, b: string): string[] {
  return [
    `var<storage, read_write> C: array<${c}>`,
    `var<storage, read> A: array<${a}>`,
    `var<storage, read> B: array<${b}>`,
  ];
}
export const MM_TILE = 4; // outputs per invocation per axis
export const MM_WG = 8; // invocations per workgroup per axis

/** Register-tiled matmul: each invocation computes a 4×4 block with no barriers (fast on lavapipe). */
export function matmulSource(t: WType): string {
  return `${header(matmulBindings(t, t, t))}
@compute @workgroup_size(${MM_WG}, ${MM_WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let M = pu(${MM.M}u); let N = pu(${MM.N}u); let K = pu(${MM.K}u);
  let row0 = gid.y * 4u; let col0 = gid.x * 4u;
  if (row0 >= M || col0 >= N) { return; }
  var ao = pu(${MM.AOFF}u); var bo = pu(${MM.BOFF}u); var oo = pu(${MM.OOFF}u);
  ${batchOffsets('gid.z')}
  let ars = pu(${MM.ARS}u); let acs = pu(${MM.ACS}u); let brs = pu(${MM.BRS}u); let bcs = pu(${MM.BCS}u);
  // Clamp rows/cols so loads stay in bounds; clamped lanes are simply not stored.
  let r = vec4<u32>(min(row0, M - 1u), min(row0 + 1u, M - 1u), min(row0 + 2u, M - 1u), min(row0 + 3u, M - 1u)) * ars + vec4<u32>(ao);
  let c = vec4<u32>(min(col0, N - 1u), min(col0 + 1u, N - 1u), min(col0 + 2u, N - 1u), min(col0 + 3u, N - 1u)) * bcs + vec4<u32>(bo);
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k = 0u; k < K; k++) {
    let ak = k * acs; let bk = k * brs;
    let b = vec4<f32>(vec4<${t}>(B[c.x + bk], B[c.y + bk], B[c.z + bk], B[c.w + bk]));
    acc0 += f32(A[r.x + ak]) * b; acc1 += f32(A[r.y + ak]) * b; acc2 += f32(A[r.z + ak]) * b; acc3 += f32(A[r.w + ak]) * b;
  }
  let ors = pu(${MM.ORS}u); let ocs = pu(${MM.OCS}u);
  let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    if (row0 + i >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      if (col0 + j >= N) { break; }
      C[oo + (row0 + i) * ors + (col0 + j) * ocs] = ${t}(accs[i][j]);
    }
  }
}`;
}

/**
 * Shared-memory tiled matmul for real GPUs: 64×64 output tile per 16×16 workgroup, 4×4 per invocation,
 * K in steps of 16. Neighbouring invocations load neighbouring addresses (coalesced): along k when A is
 * row-major (`aKFast`), along m when A is a transposed view.
 */
export const MM_SHARED_TILE = 64;
export function matmulSharedSource(aKFast: boolean, t: WType): string {
  return `${header(matmulBindings(t, t, t))}
var<workgroup> As: array<array<f32, 64>, 16>; // [k][m]
var<workgroup> Bs: array<array<f32, 64>, 16>; // [k][n]
@compute @workgroup_size(16, 16) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = pu(${MM.M}u); let N = pu(${MM.N}u); let K = pu(${MM.K}u);
  var ao = pu(${MM.AOFF}u); var bo = pu(${MM.BOFF}u); var oo = pu(${MM.OOFF}u);
  ${batchOffsets('wid.z')}
  let ars = pu(${MM.ARS}u); let acs = pu(${MM.ACS}u); let brs = pu(${MM.BRS}u); let bcs = pu(${MM.BCS}u);
  let tid = lid.y * 16u + lid.x;
  let m0 = wid.y * 64u; let n0 = wid.x * 64u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K; k0 += 16u) {
    // 1024 elements of each tile, 4 per invocation; out-of-range elements load as 0.
    for (var e = 0u; e < 4u; e++) {
      let idx = tid + e * 256u;
      ${aKFast ? 'let ka = idx % 16u; let ma = idx / 16u;' : 'let ka = idx / 64u; let ma = idx % 64u;'}
      As[ka][ma] = select(0.0, f32(A[ao + min(m0 + ma, M - 1u) * ars + min(k0 + ka, K - 1u) * acs]), m0 + ma < M && k0 + ka < K);
      let kb = idx / 64u; let nb = idx % 64u;
      Bs[kb][nb] = select(0.0, f32(B[bo + min(k0 + kb, K - 1u) * brs + min(n0 + nb, N - 1u) * bcs]), n0 + nb < N && k0 + kb < K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let a = vec4<f32>(As[kk][lid.y * 4u], As[kk][lid.y * 4u + 1u], As[kk][lid.y * 4u + 2u], As[kk][lid.y * 4u + 3u]);
      let b = vec4<f32>(Bs[kk][lid.x * 4u], Bs[kk][lid.x * 4u + 1u], Bs[kk][lid.x * 4u + 2u], Bs[kk][lid.x * 4u + 3u]);
      acc[0] += a.x * b; acc[1] += a.y * b; acc[2] += a.z * b; acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  let ors = pu(${MM.ORS}u); let ocs = pu(${MM.OCS}u);
  for (var i = 0u; i < 4u; i++) {
    let row = m0 + lid.y * 4u + i;
    if (row >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = n0 + lid.x * 4u + j;
      if (col >= N) { break; }
      C[oo + row * ors + col * ocs] = ${t}(acc[i][j]);
    }
  }
}`;
}
