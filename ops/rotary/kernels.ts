// WGSL for rotary position embeddings in the HF rotate_half layout: x' = x·cos + rotate_half(x)·sin
// over the first R dims of the last axis (the rest pass through), rotate_half(x) = cat(−x[R/2:R], x[:R/2]);
// the backward applies the transposed rotation. One dispatch serves one or two inputs (q and k), read
// through their strides, and the backward can also write the cos/sin gradients reduced over the dims the
// tables broadcast across (batch, heads) inside the kernel, without atomics: an invocation owns one
// rotary pair (or one pass-through element) of one table row and loops over those dims.
//
// The angles come from tables cos/sin [.., R] read through strides, or from frequencies (CLEX, whose θ
// changes every step): cos/sin = mscale·cos/sin(pos_t·θ_i) computed in the kernel, and the backward
// reduces dθ over every row in its own workgroup per rotary pair (no tables, no second pass).
//
// Also the CLEX tables from a frequency vector θ: cos/sin[t, j] = mscale·cos/sin(pos_t·θ[j mod R/2]).
import { ITEM_WG, itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import type { WType } from '../../core/webgpu/wgsl.js';

/** Leading dims (all but the last) a rotary input may have on webgpu (params words are limited). */
export const MAX_LEAD = 5;
/** Inputs one rotary dispatch serves (q and k). */
export const MAX_INPUTS = 2;

/**
 * Params. Invocations walk GRID (the leading dims of the parallel part, innermost last) × SLOTS (R/2
 * rotary pairs, then D − R pass-through elements). Lead dims whose PAR bit is clear are looped over
 * inside the invocation (the dims the tables broadcast across, when their gradients are reduced).
 * Per input i (arrays indexed i·MAX_LEAD + d): SHAPE, x strides, g strides (backward); outputs are
 * dense in the input's shape with the last dim innermost, their lead dims in the memory order packed
 * in OORDER[i] (3 bits per dim: its position, 0 = outermost; the words left allow no strides array).
 * Tables are read through strides (0 where broadcast). From frequencies, the C fields address the
 * positions (a virtual table [T, R] with strides [1, 0]), SOFF is θ's offset and MSCALE multiplies
 * cos and sin; the S strides are unused.
 */
export const RO = uniformLayout({
  N: 'u32',
  D: 'u32',
  R: 'u32',
  LEAD: 'u32',
  PAR: 'u32',
  SLOTS: 'u32',
  GRID: ['u32', MAX_LEAD],
  COFF: 'u32',
  SOFF: 'u32',
  CLAST: 'u32',
  SLAST: 'u32',
  CSTR: ['u32', MAX_LEAD],
  SSTR: ['u32', MAX_LEAD],
  XOFF: ['u32', MAX_INPUTS],
  GOFF: ['u32', MAX_INPUTS],
  OORDER: ['u32', MAX_INPUTS],
  SHAPE: ['u32', MAX_INPUTS * MAX_LEAD],
  XSTR: ['u32', MAX_INPUTS * MAX_LEAD],
  GSTR: ['u32', MAX_INPUTS * MAX_LEAD],
  MSCALE: 'f32',
});

/** Where the angles come from: cos/sin tables, or frequencies θ and positions (cos/sin computed in place). */
export type AngleSource = 'tables' | 'frequencies';

export interface RotaryVariant {
  direction: 'forward' | 'backward';
  inputs: number;
  angles: AngleSource;
  /** Backward only: also write the angles' gradients (dcos/dsin over GRID × R, or dθ over every row). */
  angleGrads: boolean;
  /**
   * Storage types: `x` of the inputs, their gradients and the outputs; `angles` of cos/sin or θ and
   * their gradients (f32 tables with f16 inputs, say); `pos` of the positions. Maths is in f32.
   */
  types: { x: WType; angles: WType; pos: WType };
}

/**
 * The bindings in launch order: outputs (y or dx per input, then dcos, dsin or dθ), then x (forward, or
 * backward with angle grads), g (backward), then cos, sin or positions, θ.
 */
function bindings(v: RotaryVariant): string[] {
  const typeOf = (n: string): WType =>
    n === 'pos' ? v.types.pos : ['cs', 'sn', 'theta', 'dcs', 'dsn', 'dth'].includes(n) ? v.types.angles : v.types.x;
  const rw = (n: string) => `var<storage, read_write> ${n}: array<${typeOf(n)}>`;
  const ro = (n: string) => `var<storage, read> ${n}: array<${typeOf(n)}>`;
  const each = (prefix: string) => Array.from({ length: v.inputs }, (_, i) => `${prefix}${i}`);
  const grads = !v.angleGrads ? [] : v.angles === 'tables' ? [rw('dcs'), rw('dsn')] : [rw('dth')];
  const xs = v.direction === 'forward' || v.angleGrads ? each('x').map(ro) : [];
  const gs = v.direction === 'backward' ? each('g').map(ro) : [];
  const angles = v.angles === 'tables' ? [ro('cs'), ro('sn')] : [ro('pos'), ro('theta')];
  return [...each('out').map(rw), ...grads, ...xs, ...gs, ...angles];
}

/** WGSL for cos/sin at element j (p: its partner): from the tables, or the pair's cj/sj computed once per row. */
function angleReads(v: RotaryVariant): { cj: string; sj: string; cp: string; sp: string } {
  return v.angles === 'tables'
    ? { cj: 'f32(cs[co + j * cl])', sj: 'f32(sn[so + j * sl])', cp: 'f32(cs[co + p * cl])', sp: 'f32(sn[so + p * sl])' }
    : { cj: 'cj', sj: 'sj', cp: 'cj', sp: 'sj' };
}

/** The work of one input at the offsets of one row: its rotary pair (j, p) or pass-through element j. */
function rowBody(v: RotaryVariant, i: number): string {
  const a = angleReads(v);
  const t = v.types.x;
  if (v.direction === 'forward') {
    return `if (rot) {
        let xj = f32(x${i}[xo + j]); let xp = f32(x${i}[xo + p]);
        out${i}[ob + j] = ${t}(xj * ${a.cj} - xp * ${a.sj});
        out${i}[ob + p] = ${t}(xp * ${a.cp} + xj * ${a.sp});
      } else { out${i}[ob + j] = x${i}[xo + j]; }`;
  }
  const angleGrads = v.angleGrads
    ? `
        let xj = f32(x${i}[xo + j]); let xp = f32(x${i}[xo + p]);
        dcj += gj * xj; dcp += gp * xp; dsj -= gj * xp; dsp += gp * xj;`
    : '';
  return `if (rot) {
        let gj = f32(g${i}[go + j]); let gp = f32(g${i}[go + p]);
        out${i}[ob + j] = ${t}(gj * ${a.cj} + gp * ${a.sp});
        out${i}[ob + p] = ${t}(gp * ${a.cp} - gj * ${a.sj});${angleGrads}
      } else { out${i}[ob + j] = g${i}[go + j]; }`;
}

function inputLoop(v: RotaryVariant, i: number): string {
  const at = (field: number, d: string) => `pu(${field}u + ${i * MAX_LEAD}u + ${d})`;
  return `{
    // Input ${i}: skip grid cells past its extent (e.g. fewer key heads), loop over its non-parallel dims.
    var inside = true;
    var loops = 1u;
    for (var d = 0u; d < lead; d++) {
      let e = ${at(RO.SHAPE, 'd')};
      if (((par >> d) & 1u) == 1u) { inside = inside && cell[d] < e; } else { loops *= e; }
    }
    for (var m = 0u; inside && m < loops; m++) {
      var rem = m;
      var xo = pu(${RO.XOFF}u + ${i}u);
      var go = pu(${RO.GOFF}u + ${i}u);
      var co = pu(${RO.COFF}u);
      var so = pu(${RO.SOFF}u);
      let order = pu(${RO.OORDER}u + ${i}u);
      var ob = 0u;
      for (var dd = i32(lead) - 1; dd >= 0; dd--) {
        let d = u32(dd);
        let e = ${at(RO.SHAPE, 'd')};
        var c = cell[d];
        if (((par >> d) & 1u) == 0u) { c = rem % e; rem = rem / e; }
        xo += c * ${at(RO.XSTR, 'd')};
        go += c * ${at(RO.GSTR, 'd')};
        co += c * pu(${RO.CSTR}u + d);
        so += c * pu(${RO.SSTR}u + d);
        // Output stride of dim d: D times the extents of the dims after it in memory.
        var ostride = D;
        for (var o = 0u; o < lead; o++) {
          if (((order >> (3u * o)) & 7u) > ((order >> (3u * d)) & 7u)) { ostride *= ${at(RO.SHAPE, 'o')}; }
        }
        ob += c * ostride;
      }
      ${rowBody(v, i)}
    }
  }`;
}

/** The slot's pair (j, p = j + R/2) or pass-through element j ≥ R, from `slot`. */
const slotPrologue = `
  let D = pu(${RO.D}u);
  let R = pu(${RO.R}u);
  let h = R / 2u;
  let lead = pu(${RO.LEAD}u);
  let par = pu(${RO.PAR}u);
  let slots = pu(${RO.SLOTS}u);
  let rot = slot < h;
  // A rotary pair (j, p = j + R/2), or a pass-through element j ≥ R.
  let j = select(R + slot - h, slot, rot);
  let p = j + h;
  let cl = pu(${RO.CLAST}u);
  let sl = pu(${RO.SLAST}u);`;

/** The grid cell of linear index `rest` (consumed), and from frequencies the pair's cos/sin there. */
function cellPrologue(v: RotaryVariant): string {
  const angle =
    v.angles === 'tables'
      ? ''
      : `
    // The position's row of the virtual table: the C strides are 0 on the dims it broadcasts across.
    var po = pu(${RO.COFF}u);
    for (var d = 0u; d < lead; d++) { po += cell[d] * pu(${RO.CSTR}u + d); }
    let a = f32(pos[po]) * f32(theta[pu(${RO.SOFF}u) + select(0u, j, rot)]);
    let cj = pf(${RO.MSCALE}u) * cos(a);
    let sj = pf(${RO.MSCALE}u) * sin(a);`;
  return `var cell: array<u32, ${MAX_LEAD}>;
    for (var dd = i32(lead) - 1; dd >= 0; dd--) {
      let e = pu(${RO.GRID}u + u32(dd));
      cell[dd] = rest % e;
      rest = rest / e;
    }${angle}`;
}

const inputLoops = (v: RotaryVariant) => Array.from({ length: v.inputs }, (_, i) => inputLoop(v, i)).join('\n  ');

/**
 * One invocation per grid cell × slot; with table gradients it writes the cell's dcos/dsin (summed over
 * the looped dims). From frequencies with dθ, a workgroup per slot instead: its invocations stride over
 * the cells and sum the rows' contributions pos·(cos·dsin − sin·dcos) in workgroup memory.
 */
export function rotarySource(v: RotaryVariant): string {
  const accumulators = 'var dcj = 0.0; var dcp = 0.0; var dsj = 0.0; var dsp = 0.0;';
  if (v.angles === 'frequencies' && v.angleGrads) {
    return `${kernelHeader(bindings(v))}
var<workgroup> red: array<f32, ${ITEM_WG}>;
@compute @workgroup_size(${ITEM_WG}) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let slot = wid.x;
  ${slotPrologue}
  let cells = pu(${RO.N}u) / slots;
  var acc = 0.0;
  for (var c0 = lid; c0 < cells; c0 += ${ITEM_WG}u) {
    var rest = c0;
    ${cellPrologue(v)}
    ${accumulators}
    ${inputLoops(v)}
    acc += f32(pos[po]) * (cj * (dsj + dsp) - sj * (dcj + dcp));
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${ITEM_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && rot) { dth[j] = ${v.types.angles}(red[0]); }
}`;
  }
  const tableGrads = v.angles === 'tables' && v.angleGrads;
  return `${kernelHeader(bindings(v))}
${itemMain(`
  if (item >= pu(${RO.N}u)) { return; }
  let slot = item % pu(${RO.SLOTS}u);
  ${slotPrologue}
  var rest = item / slots;
  let gridIndex = rest;
  ${cellPrologue(v)}
  ${tableGrads ? accumulators : ''}
  ${inputLoops(v)}
  ${
    tableGrads
      ? `if (rot) {
    dcs[gridIndex * R + j] = ${v.types.angles}(dcj); dcs[gridIndex * R + p] = ${v.types.angles}(dcp);
    dsn[gridIndex * R + j] = ${v.types.angles}(dsj); dsn[gridIndex * R + p] = ${v.types.angles}(dsp);
  }`
      : ''
  }`)}`;
}

/** Params of the table kernels: T positions, R table columns, mscale, offsets of θ and of the incoming dcos/dsin (contiguous). */
export const TB = uniformLayout({ T: 'u32', R: 'u32', MSCALE: 'f32', THOFF: 'u32', DCOFF: 'u32', DSOFF: 'u32' });

/**
 * 'forward': cos/sin [T, R] from θ [R/2] and positions [T], one invocation per entry.
 * 'backward': dθ[i] = mscale·Σ_t pos_t·Σ_{j ∈ {i, i+R/2}} (cos(a)·dsin[t, j] − sin(a)·dcos[t, j]), a = pos_t·θ[i];
 * one invocation per frequency loops over the positions.
 */
export function tableSource(direction: 'forward' | 'backward'): string {
  if (direction === 'forward') {
    return `${kernelHeader(['var<storage, read_write> cs: array<f32>', 'var<storage, read_write> sn: array<f32>', 'var<storage, read> theta: array<f32>', 'var<storage, read> pos: array<f32>'])}
${itemMain(`
  let R = pu(${TB.R}u);
  if (item >= pu(${TB.T}u) * R) { return; }
  let t = item / R;
  let a = pos[t] * theta[pu(${TB.THOFF}u) + (item % R) % (R / 2u)];
  cs[item] = pf(${TB.MSCALE}u) * cos(a);
  sn[item] = pf(${TB.MSCALE}u) * sin(a);`)}`;
  }
  return `${kernelHeader(['var<storage, read_write> dtheta: array<f32>', 'var<storage, read> theta: array<f32>', 'var<storage, read> pos: array<f32>', 'var<storage, read> dcs: array<f32>', 'var<storage, read> dsn: array<f32>'])}
${itemMain(`
  let R = pu(${TB.R}u);
  let h = R / 2u;
  if (item >= h) { return; }
  let th = theta[pu(${TB.THOFF}u) + item];
  let dco = pu(${TB.DCOFF}u) + item;
  let dso = pu(${TB.DSOFF}u) + item;
  var acc = 0.0;
  for (var t = 0u; t < pu(${TB.T}u); t++) {
    let a = pos[t] * th;
    let r = t * R;
    acc += pos[t] * (cos(a) * (dsn[dso + r] + dsn[dso + r + h]) - sin(a) * (dcs[dco + r] + dcs[dco + r + h]));
  }
  dtheta[item] = pf(${TB.MSCALE}u) * acc;`)}`;
}
