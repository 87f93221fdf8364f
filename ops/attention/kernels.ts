// WGSL for fused scaled-dot-product attention (flash-attention style, no T×T buffer):
//  - forward: one invocation per query row, online softmax over the keys; writes out and the row's
//    logsumexp (the first half of `stats`);
//  - backward dQ: one invocation per query row, recomputing scores from q, k, lse; it also writes the
//    row's delta = Σ dout·out (the second half of `stats`), which dK/dV reads after it;
//  - backward dK/dV: one invocation per key row, looping over the query heads of its KV group (GQA)
//    and the query rows that see it. No atomics: deterministic.
// Every [B, H, T, D] operand (q, k, v, out, dout and the gradients) is read or written through its own
// offset and strides, so views (heads split by a transpose, slices) need no contiguous copy.
// Queries are the LAST Tq positions of the Tk keys when causal (query i sees keys j ≤ i + Tk − Tq).
// Dropout on the probabilities uses a counter-based hash of (seed, (b·H + h)·Tq·Tk + i·Tk + j).
import type { View } from '../../core/backend.js';
import { WGSL_COUNTER_RNG } from '../dropout/counter-rng.js';
import { itemMain, kernelHeader, NEG_INF } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import type { WType } from '../../core/webgpu/wgsl.js';

export type MaskKind = 'none' | 'add' | 'bool';

/**
 * Storage types: `t` of q, k, v, out, dout and the gradients (f16 rows are widened to f32 on load: the
 * scores, softmax statistics and accumulators are f32), `mask` of an additive mask.
 */
export interface AttentionTypes {
  t: WType;
  mask: WType;
}

/**
 * Params. DH = head dim / W. Each operand field is [offset, stride b, stride h, stride t, stride d]
 * in units of the kernel's vector type (the mask M in elements, broadcast to [B, H, Tq, Tk]).
 */
export const AT = uniformLayout({
  B: 'u32',
  H: 'u32',
  HKV: 'u32',
  TQ: 'u32',
  TK: 'u32',
  DH: 'u32',
  SCALE: 'f32',
  CAUSAL: 'u32',
  DROP: 'f32',
  SEED: 'u32',
  Q: ['u32', 5],
  K: ['u32', 5],
  V: ['u32', 5],
  O: ['u32', 5],
  G: ['u32', 5],
  DQ: ['u32', 5],
  DK: ['u32', 5],
  DV: ['u32', 5],
  M: ['u32', 5],
});

/** The operands addressed through AT's [offset, strides] fields. */
export type Operand = 'Q' | 'K' | 'V' | 'O' | 'G' | 'DQ' | 'DK' | 'DV' | 'M';

/** Largest head dim the kernels hold in private arrays. */
export const MAX_HEAD_DIM = 256;

/** Strides with size-1 dims zeroed (their stride never moves the address, so it must not block vector loads). */
const liveStrides = (v: View): number[] => v.strides.map((s, i) => (v.shape[i] === 1 ? 0 : s));

/**
 * Rows of q/k/v/out/grads are read as `VT`: vec4<f32> when the head dim is a multiple of 4 and every
 * operand's head dim is contiguous with its offset and other strides multiples of 4, else f32 (scalar
 * loads through the head-dim stride). DH (a param, so loops are not unrolled at compile time — full
 * unrolls made lavapipe's shader compiler take tens of seconds) is the row length in VT units.
 */
export function vectorWidth(D: number, operands: readonly View[]): 1 | 4 {
  const aligned = (v: View) => {
    const s = liveStrides(v);
    return v.offset % 4 === 0 && s[3] === 1 && s.slice(0, 3).every((x) => x % 4 === 0);
  };
  return D % 4 === 0 && operands.every(aligned) ? 4 : 1;
}

/** An operand's AT field: offset and strides in units of W (the head-dim stride is one VT when W = 4). */
export function operandWords(v: View, W: 1 | 4): number[] {
  const s = liveStrides(v);
  return [v.offset / W, s[0] / W, s[1] / W, s[2] / W, W === 4 ? 1 : s[3]];
}

/** WGSL for the start of row (b, h, t) of an operand, and for element d of that row. */
export const rowAt = (t: Operand, b: string, h: string, i: string): string => `row_at(${AT[t]}u, ${b}, ${h}, ${i})`;
export const col = (t: Operand, d: string): string => `col(${AT[t]}u, ${d})`;
/** WGSL for an operand's stride between consecutive rows (positions). */
export const rowStride = (t: Operand): string => `pu(${AT[t] + 3}u)`;

/** dK/dV kernels: key row `j`'s K and V in registers (kr, vr) and its gradient accumulators (dka, dva). */
export const keyRowRegisters = (j: string): string => `var kr: array<VT, DMAX>;
  var vr: array<VT, DMAX>;
  var dka: array<VT, DMAX>;
  var dva: array<VT, DMAX>;
  let ko = ${rowAt('K', 'b', 'hk', j)};
  let vo = ${rowAt('V', 'b', 'hk', j)};
  for (var d = 0u; d < DH; d++) { kr[d] = VT(k[ko + ${col('K', 'd')}]); vr[d] = VT(v[vo + ${col('V', 'd')}]); }`;

/**
 * The WGSL both attention kernels (row and tiled) share: the vector type, strided addressing, the
 * mask, dropout's keep multiplier (same counter hash, so the same seed drops the same elements) and
 * the causal key range.
 */
export function attentionHelpers(W: 1 | 4, kind: MaskKind, types: AttentionTypes): string {
  const maskCode =
    kind === 'none'
      ? ''
      : `
  let mo = row_at(${AT.M}u, b, h, i) + j * pu(${AT.M + 4}u);
  ${kind === 'add' ? 's += f32(mask[mo]);' : `if (mask[mo] == 0) { s = ${NEG_INF}; }`}`;
  return `alias VT = ${W === 4 ? 'vec4<f32>' : 'f32'};
alias ST = ${W === 4 ? `vec4<${types.t}>` : types.t};
fn vdot(a: VT, b: VT) -> f32 { return ${W === 4 ? 'dot(a, b)' : 'a * b'}; }
/** Start of row (b, h, i) of the operand whose [offset, strides] field starts at word t. */
fn row_at(t: u32, b: u32, h: u32, i: u32) -> u32 { return pu(t) + b * pu(t + 1u) + h * pu(t + 2u) + i * pu(t + 3u); }
/** Element d of a row (contiguous when vectorised). */
fn col(t: u32, d: u32) -> u32 { return ${W === 4 ? 'd' : 'd * pu(t + 4u)'}; }
${WGSL_COUNTER_RNG}
/** The scaled score with the mask applied (-inf: not attended). */
fn masked(s0: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {
  var s = s0;${maskCode}
  return s;
}
/** Dropout multiplier for probability (row, j): 0 if dropped, 1/(1-p) if kept. */
fn keep_mult(row: u32, j: u32) -> f32 {
  let dp = pf(${AT.DROP}u);
  if (dp <= 0.0) { return 1.0; }
  if (counter_uniform(pu(${AT.SEED}u), row * pu(${AT.TK}u) + j) < dp) { return 0.0; }
  return 1.0 / (1.0 - dp);
}
/** Keys [0, end) that query i may see (causal: the queries are the last Tq positions). */
fn key_end(i: u32) -> u32 {
  let Tk = pu(${AT.TK}u);
  if (pu(${AT.CAUSAL}u) == 0u) { return Tk; }
  return u32(clamp(i32(i) + i32(Tk) - i32(pu(${AT.TQ}u)) + 1, 0, i32(Tk)));
}`;
}

function prelude(W: 1 | 4, kind: MaskKind, types: AttentionTypes): string {
  return `const DMAX: u32 = ${MAX_HEAD_DIM / W}u;
${attentionHelpers(W, kind, types)}`;
}

/** Decodes a query row index into b, h, i, its KV head hk, and the row / KV head bases of q, k, v. */
const queryRow = `
  let DH = pu(${AT.DH}u);
  let Tq = pu(${AT.TQ}u); let Tk = pu(${AT.TK}u); let H = pu(${AT.H}u); let Hkv = pu(${AT.HKV}u);
  if (item >= pu(${AT.B}u) * H * Tq) { return; }
  let i = item % Tq; let bh = item / Tq; let h = bh % H; let b = bh / H;
  let hk = h / (H / Hkv);
  let scale = pf(${AT.SCALE}u);
  let qo = ${rowAt('Q', 'b', 'h', 'i')};
  let kb = ${rowAt('K', 'b', 'hk', '0u')}; let kRow = ${rowStride('K')};
  let vb = ${rowAt('V', 'b', 'hk', '0u')}; let vRow = ${rowStride('V')};
  let jend = key_end(i);`;

const storage = (name: string, type: string, writable = false) =>
  `var<storage, ${writable ? 'read_write' : 'read'}> ${name}: array<${type}>`;
const inputs = ['q', 'k', 'v'].map((n) => storage(n, 'ST'));

/**
 * Bindings of the three kernels, row and tiled alike (at most 8 storage buffers, WebGPU's default
 * limit). stats = [lse; delta], one f32 per query row each: the forward writes lse, the dQ kernel
 * writes delta = Σ dout·out (so it binds stats writable) and the dK/dV kernel, dispatched after it,
 * reads both.
 */
export const attentionBindings = (part: 'fwd' | 'dq' | 'dkv', kind: MaskKind, types: AttentionTypes): string[] => [
  ...(part === 'fwd'
    ? [storage('out', 'ST', true), storage('stats', 'f32', true), ...inputs]
    : part === 'dq'
      ? [
          storage('dq', 'ST', true),
          storage('stats', 'f32', true),
          ...inputs,
          storage('out', 'ST'),
          storage('dout', 'ST'),
        ]
      : [
          storage('dk', 'ST', true),
          storage('dv', 'ST', true),
          ...inputs,
          storage('stats', 'f32'),
          storage('dout', 'ST'),
        ]),
  ...(kind === 'none' ? [] : [storage('mask', kind === 'add' ? types.mask : 'i32')]),
];

export function attentionForwardSource(W: 1 | 4, kind: MaskKind, types: AttentionTypes): string {
  return `${kernelHeader(attentionBindings('fwd', kind, types))}
${prelude(W, kind, types)}
${itemMain(`${queryRow}
  var qr: array<VT, DMAX>;
  var acc: array<VT, DMAX>;
  for (var d = 0u; d < DH; d++) { qr[d] = VT(q[qo + ${col('Q', 'd')}]); }
  var m = ${NEG_INF};
  var l = 0.0;
  for (var j = 0u; j < jend; j++) {
    var s = 0.0;
    for (var d = 0u; d < DH; d++) { s += vdot(qr[d], VT(k[kb + j * kRow + ${col('K', 'd')}])); }
    s = masked(s * scale, b, h, i, j);
    if (is_neg_inf(s)) { continue; }
    // Online softmax: rescale what was accumulated under the old running max.
    let mn = max(m, s);
    let corr = select(exp(m - mn), 0.0, is_neg_inf(m));
    let p = exp(s - mn);
    l = l * corr + p;
    let pv = p * keep_mult(item, j);
    for (var d = 0u; d < DH; d++) { acc[d] = acc[d] * corr + pv * VT(v[vb + j * vRow + ${col('V', 'd')}]); }
    m = mn;
  }
  let inv = select(1.0 / l, 0.0, l == 0.0);
  let oo = ${rowAt('O', 'b', 'h', 'i')};
  for (var d = 0u; d < DH; d++) { out[oo + ${col('O', 'd')}] = ST(acc[d] * inv); }
  stats[item] = select(m + log(l), ${NEG_INF}, l == 0.0);`)}`;
}

export function attentionBackwardQuerySource(W: 1 | 4, kind: MaskKind, types: AttentionTypes): string {
  return `${kernelHeader(attentionBindings('dq', kind, types))}
${prelude(W, kind, types)}
${itemMain(`${queryRow}
  let L = stats[item];
  let go = ${rowAt('G', 'b', 'h', 'i')};
  let oo = ${rowAt('O', 'b', 'h', 'i')};
  var qr: array<VT, DMAX>;
  var gr: array<VT, DMAX>;
  var acc: array<VT, DMAX>;
  var delta = 0.0;
  for (var d = 0u; d < DH; d++) { qr[d] = VT(q[qo + ${col('Q', 'd')}]); gr[d] = VT(dout[go + ${col('G', 'd')}]); delta += vdot(gr[d], VT(out[oo + ${col('O', 'd')}])); }
  stats[pu(${AT.B}u) * H * Tq + item] = delta;
  if (!is_neg_inf(L)) {
    for (var j = 0u; j < jend; j++) {
      var s = 0.0;
      for (var d = 0u; d < DH; d++) { s += vdot(qr[d], VT(k[kb + j * kRow + ${col('K', 'd')}])); }
      s = masked(s * scale, b, h, i, j);
      if (is_neg_inf(s)) { continue; }
      let p = exp(s - L);
      var dp = 0.0;
      for (var d = 0u; d < DH; d++) { dp += vdot(gr[d], VT(v[vb + j * vRow + ${col('V', 'd')}])); }
      let ds = p * (dp * keep_mult(item, j) - delta);
      for (var d = 0u; d < DH; d++) { acc[d] += ds * VT(k[kb + j * kRow + ${col('K', 'd')}]); }
    }
  }
  let dqo = ${rowAt('DQ', 'b', 'h', 'i')};
  for (var d = 0u; d < DH; d++) { dq[dqo + ${col('DQ', 'd')}] = ST(acc[d] * scale); }`)}`;
}

export function attentionBackwardKeySource(W: 1 | 4, kind: MaskKind, types: AttentionTypes): string {
  return `${kernelHeader(attentionBindings('dkv', kind, types))}
${prelude(W, kind, types)}
${itemMain(`
  let DH = pu(${AT.DH}u);
  let Tq = pu(${AT.TQ}u); let Tk = pu(${AT.TK}u); let H = pu(${AT.H}u); let Hkv = pu(${AT.HKV}u);
  if (item >= pu(${AT.B}u) * Hkv * Tk) { return; }
  let j = item % Tk; let bhk = item / Tk; let hk = bhk % Hkv; let b = bhk / Hkv;
  let group = H / Hkv;
  let scale = pf(${AT.SCALE}u);
  let nq = pu(${AT.B}u) * H * Tq;
  ${keyRowRegisters('j')}
  // Causal: query i sees key j when i ≥ j − (Tk − Tq).
  var i0 = 0u;
  if (pu(${AT.CAUSAL}u) != 0u) { i0 = u32(clamp(i32(j) - (i32(Tk) - i32(Tq)), 0, i32(Tq))); }
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    for (var i = i0; i < Tq; i++) {
      let row = (b * H + h) * Tq + i;
      let L = stats[row];
      if (is_neg_inf(L)) { continue; }
      let qo = ${rowAt('Q', 'b', 'h', 'i')};
      let go = ${rowAt('G', 'b', 'h', 'i')};
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < DH; d++) { s += vdot(VT(q[qo + ${col('Q', 'd')}]), kr[d]); dp += vdot(VT(dout[go + ${col('G', 'd')}]), vr[d]); }
      s = masked(s * scale, b, h, i, j);
      if (is_neg_inf(s)) { continue; }
      let p = exp(s - L);
      let mult = keep_mult(row, j);
      let ds = p * (dp * mult - stats[nq + row]);
      let pm = p * mult;
      for (var d = 0u; d < DH; d++) {
        dva[d] += pm * VT(dout[go + ${col('G', 'd')}]);
        dka[d] += ds * VT(q[qo + ${col('Q', 'd')}]);
      }
    }
  }
  let dko = ${rowAt('DK', 'b', 'hk', 'j')};
  let dvo = ${rowAt('DV', 'b', 'hk', 'j')};
  for (var d = 0u; d < DH; d++) { dk[dko + ${col('DK', 'd')}] = ST(dka[d] * scale); dv[dvo + ${col('DV', 'd')}] = ST(dva[d]); }`)}`;
}
