// WGSL generators for the backend primitives. Shapes/strides travel in a uniform block of
// PARAM_WORDS u32 words, so one pipeline serves every shape of a given (op, dtypes, variant).
import type { ElementwiseDef } from '../backend.js';
import { PARAM_WORDS } from './runtime.js';

export type WType = 'f32' | 'i32';
export const MAX_RANK = 8;
export const WG = 64;
/** Elements per invocation in the contiguous elementwise kernel. */
export const EW_PER_THREAD = 4;
/** vec4 loads per invocation in the vectorised elementwise kernel. */
export const EW_VEC4_PER_THREAD = 2;

/** The params-uniform header every kernel starts with: binding 0 = params, then `bindings` in order. */
export const header = (bindings: string[]): string => `
struct Params { v: array<vec4<u32>, ${PARAM_WORDS / 4}> }
@group(0) @binding(0) var<uniform> P: Params;
${bindings.map((b, i) => `@group(0) @binding(${i + 1}) ${b};`).join('\n')}
fn pu(i: u32) -> u32 { return P.v[i / 4u][i % 4u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(P.v[i / 4u][i % 4u]); }
fn pi(i: u32) -> i32 { return bitcast<i32>(P.v[i / 4u][i % 4u]); }
`;

/**
 * WGSL that splits the linear `index` over the shape stored at params[shapeAt..], adding
 * coordinate × stride (strides at params[stridesAt..]) to each offset variable. Declares `rem`.
 * `rank` is either the params slot holding it (a loop) or, with `{ fixed: n }`, a compile-time rank
 * (unrolled, constant uniform indices: markedly faster for strided elementwise kernels).
 */
export function unravel(index: string, rank: number | { fixed: number }, shapeAt: number, offsets: [variable: string, stridesAt: number][]): string {
  if (typeof rank === 'object') {
    const dims = [...Array(rank.fixed).keys()].reverse();
    return `var rem = ${index};
  ${dims.map((d) => `{ let c = rem % pu(${shapeAt + d}u); rem = rem / pu(${shapeAt + d}u); ${offsets.map(([v, at]) => `${v} += c * pu(${at + d}u);`).join(' ')} }`).join('\n  ')}`;
  }
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

/** Elementwise param layout: n, (unused), shape[8], out strides[8], out offset, per tensor operand strides[8]+offset, then scalars. */
export const EW = { N: 0, SHAPE: 2, OSTRIDES: 10, OOFF: 18, IN0: 19, IN_STRIDE: 9 } as const;

/**
 * Kernel layouts: 'vec4' (contiguous, 4-aligned, n % 4 = 0: EW_VEC4_PER_THREAD vec4 loads per
 * invocation), 'contiguous' (EW_PER_THREAD scalars per invocation), or a rank (strided, unrolled index math).
 */
export type EwLayout = 'vec4' | 'contiguous' | number;

export function elementwiseSource(def: ElementwiseDef, operandTypes: (WType | 'scalar')[], outType: WType, ctype: WType, layout: EwLayout): string {
  const vec = layout === 'vec4';
  const vt = (t: WType) => (vec ? `vec4<${t}>` : t);
  const tensorIdx: number[] = [];
  operandTypes.forEach((t, a) => { if (t !== 'scalar') tensorIdx.push(a); });
  const bindings = [`var<storage, read_write> out: array<${vt(outType)}>`, ...tensorIdx.map((a, k) => `var<storage, read> in${k}: array<${vt(operandTypes[a] as WType)}>`)];
  const scalarBase = EW.IN0 + EW.IN_STRIDE * tensorIdx.length;
  let scalarCount = 0;
  const args = operandTypes.map((t, a) => {
    if (t === 'scalar') return `${vt(ctype)}(bitcast<${ctype}>(pu(${scalarBase + scalarCount++}u)))`;
    const k = tensorIdx.indexOf(a);
    return `${vt(ctype)}(in${k}[o${k}])`;
  });
  const expr = `${vt(outType)}(${def.wgsl(args, vt(ctype))})`;
  if (vec) {
    // Offsets are in elements and multiples of 4 here.
    return `${header(bindings)}
${def.wgslHelpers ?? ''}
${mainSig} {
  ${linearId}
  let n = pu(${EW.N}u) / 4u;
  for (var j = 0u; j < ${EW_VEC4_PER_THREAD}u; j++) {
    let e = i * ${EW_VEC4_PER_THREAD}u + j;
    if (e >= n) { return; }
    ${tensorIdx.map((_, k) => `let o${k} = pu(${EW.IN0 + EW.IN_STRIDE * k + 8}u) / 4u + e;`).join(' ')}
    out[pu(${EW.OOFF}u) / 4u + e] = ${expr};
  }
}`;
  }
  const offsets = tensorIdx.map((_, k) => `var o${k} = pu(${EW.IN0 + EW.IN_STRIDE * k + 8}u);`).join(' ');
  if (layout === 'contiguous') {
    // Contiguous operands: EW_PER_THREAD consecutive elements per invocation, no index math.
    return `${header(bindings)}
${def.wgslHelpers ?? ''}
${mainSig} {
  ${linearId}
  let n = pu(${EW.N}u);
  for (var j = 0u; j < ${EW_PER_THREAD}u; j++) {
    let e = i * ${EW_PER_THREAD}u + j;
    if (e >= n) { return; }
    ${tensorIdx.map((_, k) => `let o${k} = pu(${EW.IN0 + EW.IN_STRIDE * k + 8}u) + e;`).join(' ')}
    out[pu(${EW.OOFF}u) + e] = ${expr};
  }
}`;
  }
  const body = `${offsets}\n  var oo = pu(${EW.OOFF}u);
  ${unravel('i', { fixed: layout }, EW.SHAPE, [['oo', EW.OSTRIDES], ...tensorIdx.map((_, k): [string, number] => [`o${k}`, EW.IN0 + EW.IN_STRIDE * k])])}`;
  return `${header(bindings)}
${def.wgslHelpers ?? ''}
${mainSig} {
  ${linearId}
  if (i >= pu(${EW.N}u)) { return; }
  ${body}
  out[oo] = ${expr};
}`;
}

/** Reduce layout: nOut, keptRank, redRank, R, chunks, chunkLen, offset, init bits, keptShape[8], keptStrides[8], redShape[8], redStrides[8]. */
export const RD = { NOUT: 0, KRANK: 1, RRANK: 2, R: 3, CHUNKS: 4, CHUNKLEN: 5, OFF: 6, INIT: 7, KSHAPE: 8, KSTRIDES: 16, RSHAPE: 24, RSTRIDES: 32 } as const;

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

/** Matmul layout: M, N, K, batchRank, batchShape[8], aBatch[8], bBatch[8], oBatch[8], aOff, bOff, oOff, ars, acs, brs, bcs, ors, ocs. */
export const MM = { M: 0, N: 1, K: 2, BRANK: 3, BSHAPE: 4, ABATCH: 12, BBATCH: 20, OBATCH: 28, AOFF: 36, BOFF: 37, OOFF: 38, ARS: 39, ACS: 40, BRS: 41, BCS: 42, ORS: 43, OCS: 44 } as const;
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

/** Gather layout: n, rank, outShape[8], inStrides[8] (axis zeroed), idxStrides[8], outStrides[8], inOff, idxOff, outOff, axisStride, axisLen. */
export const GA = { N: 0, RANK: 1, SHAPE: 2, INS: 10, IDXS: 18, OUTS: 26, INOFF: 34, IDXOFF: 35, OUTOFF: 36, AXSTRIDE: 37, AXLEN: 38 } as const;

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

/** ScatterAdd layout: n, rank, outShape[8], outStrides[8], idxShape[8], idxStrides[8], srcStrides[8], outOff, idxOff, srcOff, axis. */
export const SA = { N: 0, RANK: 1, OSHAPE: 2, OSTR: 10, XSHAPE: 18, XSTR: 26, SSTR: 34, OOFF: 42, XOFF: 43, SOFF: 44, AXIS: 45 } as const;

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
