// WGSL for rotary position embeddings in the HF rotate_half layout: x' = x·cos + rotate_half(x)·sin
// over the first R dims of the last axis (the rest pass through), rotate_half(x) = cat(−x[R/2:R], x[:R/2]);
// the backward applies the transposed rotation. One dispatch serves one or two inputs (q and k), read
// through their strides, and the backward can also write the cos/sin gradients reduced over the dims the
// tables broadcast across (batch, heads) inside the kernel, without atomics: an invocation owns one
// rotary pair (or one pass-through element) of one table row and loops over those dims.
//
// Also the CLEX tables from a frequency vector θ: cos/sin[t, j] = mscale·cos/sin(pos_t·θ[j mod R/2]).
import { itemMain, kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';

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
 * Tables are read through strides (0 where broadcast).
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
});

export interface RotaryVariant {
  direction: 'forward' | 'backward';
  inputs: number;
  /** Backward only: also write dcos/dsin over GRID × R. */
  tableGrads: boolean;
}

/** The bindings in launch order: outputs (y or dx per input, then dcos, dsin), then x (forward, or backward with table grads), g (backward), cos, sin. */
function bindings(v: RotaryVariant): string[] {
  const rw = (n: string) => `var<storage, read_write> ${n}: array<f32>`;
  const ro = (n: string) => `var<storage, read> ${n}: array<f32>`;
  const each = (prefix: string) => Array.from({ length: v.inputs }, (_, i) => `${prefix}${i}`);
  const outs = [...each('out').map(rw), ...(v.tableGrads ? [rw('dcs'), rw('dsn')] : [])];
  const xs = v.direction === 'forward' || v.tableGrads ? each('x').map(ro) : [];
  const gs = v.direction === 'backward' ? each('g').map(ro) : [];
  return [...outs, ...xs, ...gs, ro('cs'), ro('sn')];
}

/** The work of one input at the offsets of one row: its rotary pair (j, p) or pass-through element j. */
function rowBody(v: RotaryVariant, i: number): string {
  if (v.direction === 'forward') {
    return `if (rot) {
        let xj = x${i}[xo + j]; let xp = x${i}[xo + p];
        out${i}[ob + j] = xj * cs[co + j * cl] - xp * sn[so + j * sl];
        out${i}[ob + p] = xp * cs[co + p * cl] + xj * sn[so + p * sl];
      } else { out${i}[ob + j] = x${i}[xo + j]; }`;
  }
  const tables = v.tableGrads
    ? `
        let xj = x${i}[xo + j]; let xp = x${i}[xo + p];
        dcj += gj * xj; dcp += gp * xp; dsj -= gj * xp; dsp += gp * xj;`
    : '';
  return `if (rot) {
        let gj = g${i}[go + j]; let gp = g${i}[go + p];
        out${i}[ob + j] = gj * cs[co + j * cl] + gp * sn[so + p * sl];
        out${i}[ob + p] = gp * cs[co + p * cl] - gj * sn[so + j * sl];${tables}
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

export function rotarySource(v: RotaryVariant): string {
  const accumulate = v.tableGrads;
  return `${kernelHeader(bindings(v))}
${itemMain(`
  if (item >= pu(${RO.N}u)) { return; }
  let D = pu(${RO.D}u);
  let R = pu(${RO.R}u);
  let h = R / 2u;
  let lead = pu(${RO.LEAD}u);
  let par = pu(${RO.PAR}u);
  let slots = pu(${RO.SLOTS}u);
  let slot = item % slots;
  let rot = slot < h;
  // A rotary pair (j, p = j + R/2), or a pass-through element j ≥ R.
  let j = select(R + slot - h, slot, rot);
  let p = j + h;
  let cl = pu(${RO.CLAST}u);
  let sl = pu(${RO.SLAST}u);
  var cell: array<u32, ${MAX_LEAD}>;
  var rest = item / slots;
  var gridIndex = rest;
  for (var dd = i32(lead) - 1; dd >= 0; dd--) {
    let e = pu(${RO.GRID}u + u32(dd));
    cell[dd] = rest % e;
    rest = rest / e;
  }
  ${accumulate ? 'var dcj = 0.0; var dcp = 0.0; var dsj = 0.0; var dsp = 0.0;' : ''}
  ${Array.from({ length: v.inputs }, (_, i) => inputLoop(v, i)).join('\n  ')}
  ${
    accumulate
      ? `if (rot) {
    dcs[gridIndex * R + j] = dcj; dcs[gridIndex * R + p] = dcp;
    dsn[gridIndex * R + j] = dsj; dsn[gridIndex * R + p] = dsp;
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
