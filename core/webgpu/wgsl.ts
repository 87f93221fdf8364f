// WGSL generators for the backend primitives. Shapes/strides travel in a uniform block of
// PARAM_WORDS u32 words, so one pipeline serves every shape of a given (op, dtypes, variant).
import { header, uniformLayout } from './uniforms.js';

export type WType = 'f32' | 'i32';
export const MAX_RANK = 8;
export const WG = 64;

/**
 * WGSL that splits the linear `index` over the shape stored at params[shapeAt..] (rank in the params
 * slot `rank`), adding coordinate × stride (strides at params[stridesAt..]) to each offset variable.
 * Declares `rem`.
 */
function unravel(index: string, rank: number, shapeAt: number, offsets: [variable: string, stridesAt: number][]): string {
  return `var rem = ${index};
  for (var d = i32(pu(${rank}u)) - 1; d >= 0; d--) {
    let du = u32(d);
    let c = rem % pu(${shapeAt}u + du);
    rem = rem / pu(${shapeAt}u + du);
    ${offsets.map(([v, at]) => `${v} += c * pu(${at}u + du);`).join(' ')}
  }`;
}

/** Linear invocation index for 2-D dispatches of WG-wide workgroups (to pass 65535 groups). */
const linearId = `let i = gid.x + gid.y * nwg.x * ${WG}u;`;
export const mainSig = `@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>)`;

/** Workgroup grid for `groups` workgroups: 2-D past the 65535-per-dimension limit (kernels use linearId). */
export function spreadGroups(groups: number): [number, number, number] {
  return groups <= 65535 ? [groups, 1, 1] : [65535, Math.ceil(groups / 65535), 1];
}

/** Workgroup grid for `n` invocations of WG-wide workgroups. */
export function grid(n: number): [number, number, number] {
  return spreadGroups(Math.ceil(n / WG));
}

/** Reduce params: INIT holds the start value's bits; kept dims then reduced dims. */
export const RD = uniformLayout({
  NOUT: 'u32', KRANK: 'u32', RRANK: 'u32', R: 'u32', CHUNKS: 'u32', CHUNKLEN: 'u32', OFF: 'u32', INIT: 'u32',
  KSHAPE: ['u32', MAX_RANK], KSTRIDES: ['u32', MAX_RANK], RSHAPE: ['u32', MAX_RANK], RSTRIDES: ['u32', MAX_RANK],
});

export function reduceSource(kind: string, inType: WType, outType: WType): string {
  const isArg = kind === 'argmax' || kind === 'argmin';
  // The start value (0, ±inf, int extremes) comes as bits in the params: WGSL has no infinity literal.
  const initExpr = `bitcast<${inType}>(pu(${RD.INIT}u))`;
  const better = kind === 'max' || kind === 'argmax' ? '(v > acc || v != v) && acc == acc' : '(v < acc || v != v) && acc == acc';
  const update = kind === 'sum' ? 'acc += v;' : `if (${better}) { acc = v; best = r; }`;
  return `${header([`var<storage, read_write> out: array<${outType}>`, `var<storage, read> inp: array<${inType}>`])}
${mainSig} {
  ${linearId}
  let chunks = pu(${RD.CHUNKS}u);
  if (i >= pu(${RD.NOUT}u) * chunks) { return; }
  let o = i / chunks;
  let ch = i % chunks;
  var base = pu(${RD.OFF}u);
  ${unravel('o', RD.KRANK, RD.KSHAPE, [['base', RD.KSTRIDES]])}
  let rr = pu(${RD.RRANK}u);
  let r0 = ch * pu(${RD.CHUNKLEN}u);
  let r1 = min(pu(${RD.R}u), r0 + pu(${RD.CHUNKLEN}u));
  // Odometer over the reduced dims, started at r0.
  var idx: array<u32, ${MAX_RANK}>;
  var off = base;
  rem = r0;
  for (var d = i32(rr) - 1; d >= 0; d--) {
    let du = u32(d);
    idx[du] = rem % pu(${RD.RSHAPE}u + du);
    rem = rem / pu(${RD.RSHAPE}u + du);
    off += idx[du] * pu(${RD.RSTRIDES}u + du);
  }
  var acc: ${inType} = ${initExpr};
  var best: u32 = r0;
  for (var r = r0; r < r1; r++) {
    let v = inp[off];
    ${update}
    for (var d = i32(rr) - 1; d >= 0; d--) {
      let du = u32(d);
      idx[du] += 1u;
      off += pu(${RD.RSTRIDES}u + du);
      if (idx[du] < pu(${RD.RSHAPE}u + du)) { break; }
      off -= idx[du] * pu(${RD.RSTRIDES}u + du);
      idx[du] = 0u;
    }
  }
  out[i] = ${isArg ? `${outType}(best)` : `${outType}(acc)`};
}`;
}

/** Matmul params: sizes, batch dims and each operand's batch strides, offsets, row/column strides. */
export const MM = uniformLayout({
  M: 'u32', N: 'u32', K: 'u32', BRANK: 'u32', BSHAPE: ['u32', MAX_RANK], ABATCH: ['u32', MAX_RANK], BBATCH: ['u32', MAX_RANK], OBATCH: ['u32', MAX_RANK],
  AOFF: 'u32', BOFF: 'u32', OOFF: 'u32', ARS: 'u32', ACS: 'u32', BRS: 'u32', BCS: 'u32', ORS: 'u32', OCS: 'u32',
});
const batchOffsets = (batch: string) => unravel(batch, MM.BRANK, MM.BSHAPE, [['ao', MM.ABATCH], ['bo', MM.BBATCH], ['oo', MM.OBATCH]]);
export const MM_TILE = 4; // outputs per invocation per axis
export const MM_WG = 8; // invocations per workgroup per axis

/** Register-tiled matmul: each invocation computes a 4×4 block with no barriers (fast on lavapipe). */
export function matmulSource(): string {
  return `${header(['var<storage, read_write> C: array<f32>', 'var<storage, read> A: array<f32>', 'var<storage, read> B: array<f32>'])}
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
    let b = vec4<f32>(B[c.x + bk], B[c.y + bk], B[c.z + bk], B[c.w + bk]);
    acc0 += A[r.x + ak] * b; acc1 += A[r.y + ak] * b; acc2 += A[r.z + ak] * b; acc3 += A[r.w + ak] * b;
  }
  let ors = pu(${MM.ORS}u); let ocs = pu(${MM.OCS}u);
  let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    if (row0 + i >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      if (col0 + j >= N) { break; }
      C[oo + (row0 + i) * ors + (col0 + j) * ocs] = accs[i][j];
    }
  }
}`;
}

/** Gather params: out shape, input strides (axis zeroed), index and out strides, offsets, the axis' stride and length. */
export const GA = uniformLayout({
  N: 'u32', RANK: 'u32', SHAPE: ['u32', MAX_RANK], INS: ['u32', MAX_RANK], IDXS: ['u32', MAX_RANK], OUTS: ['u32', MAX_RANK],
  INOFF: 'u32', IDXOFF: 'u32', OUTOFF: 'u32', AXSTRIDE: 'u32', AXLEN: 'u32',
});

export function gatherSource(t: WType): string {
  return `${header([`var<storage, read_write> out: array<${t}>`, `var<storage, read> inp: array<${t}>`, 'var<storage, read> idx: array<i32>'])}
${mainSig} {
  ${linearId}
  if (i >= pu(${GA.N}u)) { return; }
  var io = pu(${GA.INOFF}u); var xo = pu(${GA.IDXOFF}u); var oo = pu(${GA.OUTOFF}u);
  ${unravel('i', GA.RANK, GA.SHAPE, [['io', GA.INS], ['xo', GA.IDXS], ['oo', GA.OUTS]])}
  // Indices were range-checked on the host where known; clamp so a bad one can never read out of bounds.
  let j = u32(clamp(idx[xo], 0, i32(pu(${GA.AXLEN}u)) - 1));
  out[oo] = inp[io + j * pu(${GA.AXSTRIDE}u)];
}`;
}

/** ScatterAdd params: out shape and strides, index shape and strides, source strides, offsets, axis. */
export const SA = uniformLayout({
  N: 'u32', RANK: 'u32', OSHAPE: ['u32', MAX_RANK], OSTR: ['u32', MAX_RANK], XSHAPE: ['u32', MAX_RANK], XSTR: ['u32', MAX_RANK], SSTR: ['u32', MAX_RANK],
  OOFF: 'u32', XOFF: 'u32', SOFF: 'u32', AXIS: 'u32',
});

/** One invocation per output element sums the matching sources in order: deterministic, no atomics. */
export function scatterAddSource(t: WType): string {
  return `${header([`var<storage, read_write> out: array<${t}>`, `var<storage, read> src: array<${t}>`, 'var<storage, read> idx: array<i32>'])}
${mainSig} {
  ${linearId}
  if (i >= pu(${SA.N}u)) { return; }
  let axis = pu(${SA.AXIS}u);
  var oo = pu(${SA.OOFF}u); var xo = pu(${SA.XOFF}u); var so = pu(${SA.SOFF}u);
  var tgt = 0u;
  var rem = i;
  for (var d = i32(pu(${SA.RANK}u)) - 1; d >= 0; d--) {
    let du = u32(d);
    let c = rem % pu(${SA.OSHAPE}u + du);
    rem = rem / pu(${SA.OSHAPE}u + du);
    oo += c * pu(${SA.OSTR}u + du);
    if (du == axis) { tgt = c; } else {
      if (c >= pu(${SA.XSHAPE}u + du)) { return; }
      xo += c * pu(${SA.XSTR}u + du); so += c * pu(${SA.SSTR}u + du);
    }
  }
  var acc = ${t}(0);
  let len = pu(${SA.XSHAPE}u + axis);
  for (var j = 0u; j < len; j++) {
    if (u32(idx[xo + j * pu(${SA.XSTR}u + axis)]) == tgt) { acc += src[so + j * pu(${SA.SSTR}u + axis)]; }
  }
  out[oo] += acc;
}`;
}

/**
 * Shared-memory tiled matmul for real GPUs: 64×64 output tile per 16×16 workgroup, 4×4 per invocation,
 * K in steps of 16. Neighbouring invocations load neighbouring addresses (coalesced): along k when A is
 * row-major (`aKFast`), along m when A is a transposed view.
 */
export const MM_SHARED_TILE = 64;
export function matmulSharedSource(aKFast: boolean): string {
  return `${header(['var<storage, read_write> C: array<f32>', 'var<storage, read> A: array<f32>', 'var<storage, read> B: array<f32>'])}
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
      As[ka][ma] = select(0.0, A[ao + min(m0 + ma, M - 1u) * ars + min(k0 + ka, K - 1u) * acs], m0 + ma < M && k0 + ka < K);
      let kb = idx / 64u; let nb = idx % 64u;
      Bs[kb][nb] = select(0.0, B[bo + min(k0 + kb, K - 1u) * brs + min(n0 + nb, N - 1u) * bcs], n0 + nb < N && k0 + kb < K);
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
      C[oo + row * ors + col * ocs] = acc[i][j];
    }
  }
}`;
}
