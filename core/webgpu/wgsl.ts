// WGSL generators for the backend primitives (elementwise, reduce, gather, scatterAdd). Shapes/strides travel in a uniform block of
// PARAM_WORDS u32 words, so one pipeline serves every shape of a given (op, dtypes, variant).
import type { DType } from '../dtype.js';
import { header, uniformLayout } from './uniforms.js';

export type WType = 'f16' | 'f32' | 'i32';

/** The type a kernel computes and accumulates values of storage type t in: f32 for f16 (as PyTorch's opmath). */
export const accType = (t: WType): ComputeType => (t === 'f16' ? 'f32' : t);
export type ComputeType = 'f32' | 'i32';
/** The WGSL type a storage of `dtype` holds (float64 has none: the backend refuses it first). */
export const storageTypeOf = (dtype: DType): WType => (dtype === 'int32' ? 'i32' : dtype === 'float16' ? 'f16' : 'f32');
export const MAX_RANK = 8;
export const WG = 64;

/**
 * WGSL that splits the linear `index` over the shape stored at params[shapeAt..] (rank in the params
 * slot `rank`), adding coordinate × stride (strides at params[stridesAt..]) to each offset variable.
 * Declares `rem`.
 */
export function unravel(
  index: string,
  rank: number,
  shapeAt: number,
  offsets: [variable: string, stridesAt: number][],
): string {
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
  NOUT: 'u32',
  KRANK: 'u32',
  RRANK: 'u32',
  R: 'u32',
  CHUNKS: 'u32',
  CHUNKLEN: 'u32',
  OFF: 'u32',
  INIT: 'u32',
  KSHAPE: ['u32', MAX_RANK],
  KSTRIDES: ['u32', MAX_RANK],
  RSHAPE: ['u32', MAX_RANK],
  RSTRIDES: ['u32', MAX_RANK],
});

export function reduceSource(kind: string, inType: WType, outType: WType): string {
  const isArg = kind === 'argmax' || kind === 'argmin';
  // The start value (0, ±inf, int extremes) comes as bits in the params: WGSL has no infinity literal.
  const acc = accType(inType);
  const initExpr = `bitcast<${acc}>(pu(${RD.INIT}u))`;
  const better =
    kind === 'max' || kind === 'argmax' ? '(v > acc || v != v) && acc == acc' : '(v < acc || v != v) && acc == acc';
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
  var acc: ${acc} = ${initExpr};
  var best: u32 = r0;
  for (var r = r0; r < r1; r++) {
    let v = ${acc}(inp[off]);
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

/** Gather params: out shape, input strides (axis zeroed), index and out strides, offsets, the axis' stride and length. */
export const GA = uniformLayout({
  N: 'u32',
  RANK: 'u32',
  SHAPE: ['u32', MAX_RANK],
  INS: ['u32', MAX_RANK],
  IDXS: ['u32', MAX_RANK],
  OUTS: ['u32', MAX_RANK],
  INOFF: 'u32',
  IDXOFF: 'u32',
  OUTOFF: 'u32',
  AXSTRIDE: 'u32',
  AXLEN: 'u32',
});

export function gatherSource(t: WType): string {
  return `${header([`var<storage, read_write> out: array<${t}>`, `var<storage, read> inp: array<${t}>`, 'var<storage, read> idx: array<i32>'])}
${mainSig} {
  ${linearId}
  if (i >= pu(${GA.N}u)) { return; }
  var io = pu(${GA.INOFF}u); var xo = pu(${GA.IDXOFF}u); var oo = pu(${GA.OUTOFF}u);
  ${unravel('i', GA.RANK, GA.SHAPE, [
    ['io', GA.INS],
    ['xo', GA.IDXS],
    ['oo', GA.OUTS],
  ])}
  // Indices were range-checked on the host where known; clamp so a bad one can never read out of bounds.
  let j = u32(clamp(idx[xo], 0, i32(pu(${GA.AXLEN}u)) - 1));
  out[oo] = inp[io + j * pu(${GA.AXSTRIDE}u)];
}`;
}

/**
 * Index-add params (scatterAdd whose index is one 1-D index broadcast over the other dims, as in an
 * embedding's gradient, and whose other dims collapse to one column axis in out and src): the column
 * count and strides, out's length V along the axis, the index length, offsets and axis strides.
 */
export const IA = uniformLayout({
  COLS: 'u32',
  V: 'u32',
  LEN: 'u32',
  OCOL: 'u32',
  SCOL: 'u32',
  OOFF: 'u32',
  XOFF: 'u32',
  SOFF: 'u32',
  OAX: 'u32',
  XAX: 'u32',
  SAX: 'u32',
  ZERO: 'u32',
});

/**
 * One invocation per target v along the axis scans the index and adds each hit's source row to
 * out[..., v, ...], in index order: V·LEN compares plus one add per (hit, column), where the
 * per-element kernel costs V·LEN·columns. Deterministic, no atomics (only this invocation writes row v).
 */
export function indexAddSource(t: WType): string {
  return `${header([`var<storage, read_write> out: array<${t}>`, `var<storage, read> src: array<${t}>`, 'var<storage, read> idx: array<i32>'])}
${mainSig} {
  ${linearId}
  let v = i;
  if (v >= pu(${IA.V}u)) { return; }
  // Uniform reads hoisted: they sit in the hot loops.
  let len = pu(${IA.LEN}u); let xoff = pu(${IA.XOFF}u); let xax = pu(${IA.XAX}u); let cols = pu(${IA.COLS}u);
  let ocol = pu(${IA.OCOL}u); let scol = pu(${IA.SCOL}u); let sax = pu(${IA.SAX}u); let soff = pu(${IA.SOFF}u);
  let orow = pu(${IA.OOFF}u) + v * pu(${IA.OAX}u);
  let row = i32(v);
  if (pu(${IA.ZERO}u) == 1u) {
    for (var c = 0u; c < cols; c++) { out[orow + c * ocol] = ${t}(0); }
  }
  for (var j = 0u; j < len; j++) {
    if (idx[xoff + j * xax] != row) { continue; }
    let srow = soff + j * sax;
    for (var c = 0u; c < cols; c++) {
      let o = orow + c * ocol;
      out[o] = ${t}(${accType(t)}(out[o]) + ${accType(t)}(src[srow + c * scol]));
    }
  }
}`;
}

/** ScatterAdd params: out shape and strides, index shape and strides, source strides, offsets, axis. */
export const SA = uniformLayout({
  N: 'u32',
  RANK: 'u32',
  OSHAPE: ['u32', MAX_RANK],
  OSTR: ['u32', MAX_RANK],
  XSHAPE: ['u32', MAX_RANK],
  XSTR: ['u32', MAX_RANK],
  SSTR: ['u32', MAX_RANK],
  OOFF: 'u32',
  XOFF: 'u32',
  SOFF: 'u32',
  AXIS: 'u32',
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
  var acc = ${accType(t)}(0);
  let len = pu(${SA.XSHAPE}u + axis);
  for (var j = 0u; j < len; j++) {
    if (u32(idx[xo + j * pu(${SA.XSTR}u + axis)]) == tgt) { acc += ${accType(t)}(src[so + j * pu(${SA.SSTR}u + axis)]); }
  }
  out[oo] = ${t}(${accType(t)}(out[oo]) + acc);
}`;
}
