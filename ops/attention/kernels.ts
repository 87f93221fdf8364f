// WGSL for fused scaled-dot-product attention (flash-attention style, no T×T buffer):
//  - forward: one invocation per query row, online softmax over the keys; writes out and the row's
//    logsumexp (lse);
//  - backward dQ: one invocation per query row, recomputing scores from q, k, lse;
//  - backward dK/dV: one invocation per key row, looping over the query heads of its KV group (GQA)
//    and the query rows that see it. No atomics: deterministic.
// Queries are the LAST Tq positions of the Tk keys when causal (query i sees keys j ≤ i + Tk − Tq).
// Dropout on the probabilities uses a counter-based hash of (seed, (b·H + h)·Tq·Tk + i·Tk + j).
import { WGSL_COUNTER_RNG } from '../dropout/counter-rng.js';
import { itemMain, kernelHeader, NEG_INF } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';

export type MaskKind = 'none' | 'add' | 'bool';

/** Params: DH = head dim / W, gOff = dout's offset, mask strides broadcast to [B, H, Tq, Tk]. */
export const AT = uniformLayout({
  B: 'u32', H: 'u32', HKV: 'u32', TQ: 'u32', TK: 'u32', DH: 'u32', QOFF: 'u32', KOFF: 'u32', VOFF: 'u32', MOFF: 'u32',
  SCALE: 'f32', CAUSAL: 'u32', DROP: 'f32', SEED: 'u32', GOFF: 'u32', MSTR: ['u32', 4],
});

const maskBinding = (kind: MaskKind): string[] =>
  kind === 'none' ? [] : [`var<storage, read> mask: array<${kind === 'add' ? 'f32' : 'i32'}>`];

/** Largest head dim the kernels hold in private arrays. */
export const MAX_HEAD_DIM = 256;

/**
 * Rows of q/k/v/out/grads are read as `VT` (vec4<f32> when the head dim and every offset are
 * multiples of 4, else f32); DH (a param, so loops are not unrolled at compile time — full unrolls
 * made lavapipe's shader compiler take tens of seconds) is the row length in VT units, and
 * offsets in the params are in VT units too.
 */
export function vectorWidth(D: number, offsets: number[]): 1 | 4 {
  return D % 4 === 0 && offsets.every((o) => o % 4 === 0) ? 4 : 1;
}

/** Helpers: the scaled score of (q row, k row) with the mask applied (-inf = not attended), and dropout. */
/**
 * The WGSL both attention kernels (row and tiled) share: the vector type, the mask, dropout's keep
 * multiplier (same counter hash, so the same seed drops the same elements) and the causal key range.
 */
export function attentionHelpers(W: 1 | 4, kind: MaskKind): string {
  const maskCode = kind === 'none' ? '' : `
  let mo = pu(${AT.MOFF}u) + b * pu(${AT.MSTR}u) + h * pu(${AT.MSTR + 1}u) + i * pu(${AT.MSTR + 2}u) + j * pu(${AT.MSTR + 3}u);
  ${kind === 'add' ? 's += mask[mo];' : `if (mask[mo] == 0) { s = ${NEG_INF}; }`}`;
  return `alias VT = ${W === 4 ? 'vec4<f32>' : 'f32'};
fn vdot(a: VT, b: VT) -> f32 { return ${W === 4 ? 'dot(a, b)' : 'a * b'}; }
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

function prelude(W: 1 | 4, kind: MaskKind): string {
  return `const DMAX: u32 = ${MAX_HEAD_DIM / W}u;
${attentionHelpers(W, kind)}`;
}

/** Decodes a query row index into b, h, i and its KV head's base offset (in elements). */
const queryRow = `
  let DH = pu(${AT.DH}u);
  let Tq = pu(${AT.TQ}u); let Tk = pu(${AT.TK}u); let H = pu(${AT.H}u); let Hkv = pu(${AT.HKV}u);
  if (item >= pu(${AT.B}u) * H * Tq) { return; }
  let i = item % Tq; let bh = item / Tq; let h = bh % H; let b = bh / H;
  let kvb = (b * Hkv + h / (H / Hkv)) * Tk * DH;
  let scale = pf(${AT.SCALE}u);
  let qo = pu(${AT.QOFF}u) + item * DH;
  let kb = pu(${AT.KOFF}u) + kvb;
  let vb = pu(${AT.VOFF}u) + kvb;
  let jend = key_end(i);`;

export function attentionForwardSource(W: 1 | 4, kind: MaskKind): string {
  return `${kernelHeader(['var<storage, read_write> out: array<VT>', 'var<storage, read_write> lse: array<f32>', 'var<storage, read> q: array<VT>', 'var<storage, read> k: array<VT>', 'var<storage, read> v: array<VT>', ...maskBinding(kind)])}
${prelude(W, kind)}
${itemMain(`${queryRow}
  var qr: array<VT, DMAX>;
  var acc: array<VT, DMAX>;
  for (var d = 0u; d < DH; d++) { qr[d] = q[qo + d]; }
  var m = ${NEG_INF};
  var l = 0.0;
  for (var j = 0u; j < jend; j++) {
    var s = 0.0;
    for (var d = 0u; d < DH; d++) { s += vdot(qr[d], k[kb + j * DH + d]); }
    s = masked(s * scale, b, h, i, j);
    if (is_neg_inf(s)) { continue; }
    // Online softmax: rescale what was accumulated under the old running max.
    let mn = max(m, s);
    let corr = select(exp(m - mn), 0.0, is_neg_inf(m));
    let p = exp(s - mn);
    l = l * corr + p;
    let pv = p * keep_mult(item, j);
    for (var d = 0u; d < DH; d++) { acc[d] = acc[d] * corr + pv * v[vb + j * DH + d]; }
    m = mn;
  }
  let inv = select(1.0 / l, 0.0, l == 0.0);
  for (var d = 0u; d < DH; d++) { out[item * DH + d] = acc[d] * inv; }
  lse[item] = select(m + log(l), ${NEG_INF}, l == 0.0);`)}`;
}

/** stats = [lse (B·H·Tq), delta = rowsum(dout ∘ out) (B·H·Tq)], offset 0. */
export function attentionBackwardQuerySource(W: 1 | 4, kind: MaskKind): string {
  return `${kernelHeader(['var<storage, read_write> dq: array<VT>', 'var<storage, read> q: array<VT>', 'var<storage, read> k: array<VT>', 'var<storage, read> v: array<VT>', 'var<storage, read> stats: array<f32>', 'var<storage, read> dout: array<VT>', ...maskBinding(kind)])}
${prelude(W, kind)}
${itemMain(`${queryRow}
  let nq = pu(${AT.B}u) * H * Tq;
  let L = stats[item];
  let delta = stats[nq + item];
  let go = pu(${AT.GOFF}u) + item * DH;
  var qr: array<VT, DMAX>;
  var gr: array<VT, DMAX>;
  var acc: array<VT, DMAX>;
  for (var d = 0u; d < DH; d++) { qr[d] = q[qo + d]; gr[d] = dout[go + d]; }
  if (!is_neg_inf(L)) {
    for (var j = 0u; j < jend; j++) {
      var s = 0.0;
      for (var d = 0u; d < DH; d++) { s += vdot(qr[d], k[kb + j * DH + d]); }
      s = masked(s * scale, b, h, i, j);
      if (is_neg_inf(s)) { continue; }
      let p = exp(s - L);
      var dp = 0.0;
      for (var d = 0u; d < DH; d++) { dp += vdot(gr[d], v[vb + j * DH + d]); }
      let ds = p * (dp * keep_mult(item, j) - delta);
      for (var d = 0u; d < DH; d++) { acc[d] += ds * k[kb + j * DH + d]; }
    }
  }
  for (var d = 0u; d < DH; d++) { dq[item * DH + d] = acc[d] * scale; }`)}`;
}

export function attentionBackwardKeySource(W: 1 | 4, kind: MaskKind): string {
  return `${kernelHeader(['var<storage, read_write> dk: array<VT>', 'var<storage, read_write> dv: array<VT>', 'var<storage, read> q: array<VT>', 'var<storage, read> k: array<VT>', 'var<storage, read> v: array<VT>', 'var<storage, read> stats: array<f32>', 'var<storage, read> dout: array<VT>', ...maskBinding(kind)])}
${prelude(W, kind)}
${itemMain(`
  let DH = pu(${AT.DH}u);
  let Tq = pu(${AT.TQ}u); let Tk = pu(${AT.TK}u); let H = pu(${AT.H}u); let Hkv = pu(${AT.HKV}u);
  if (item >= pu(${AT.B}u) * Hkv * Tk) { return; }
  let j = item % Tk; let bhk = item / Tk; let hk = bhk % Hkv; let b = bhk / Hkv;
  let group = H / Hkv;
  let scale = pf(${AT.SCALE}u);
  let nq = pu(${AT.B}u) * H * Tq;
  var kr: array<VT, DMAX>;
  var vr: array<VT, DMAX>;
  var dka: array<VT, DMAX>;
  var dva: array<VT, DMAX>;
  for (var d = 0u; d < DH; d++) { kr[d] = k[pu(${AT.KOFF}u) + item * DH + d]; vr[d] = v[pu(${AT.VOFF}u) + item * DH + d]; }
  // Causal: query i sees key j when i ≥ j − (Tk − Tq).
  var i0 = 0u;
  if (pu(${AT.CAUSAL}u) != 0u) { i0 = u32(clamp(i32(j) - (i32(Tk) - i32(Tq)), 0, i32(Tq))); }
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    for (var i = i0; i < Tq; i++) {
      let row = (b * H + h) * Tq + i;
      let L = stats[row];
      if (is_neg_inf(L)) { continue; }
      let qo = pu(${AT.QOFF}u) + row * DH;
      let go = pu(${AT.GOFF}u) + row * DH;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < DH; d++) { s += vdot(q[qo + d], kr[d]); dp += vdot(dout[go + d], vr[d]); }
      s = masked(s * scale, b, h, i, j);
      if (is_neg_inf(s)) { continue; }
      let p = exp(s - L);
      let mult = keep_mult(row, j);
      let ds = p * (dp * mult - stats[nq + row]);
      let pm = p * mult;
      for (var d = 0u; d < DH; d++) {
        dva[d] += pm * dout[go + d];
        dka[d] += ds * q[qo + d];
      }
    }
  }
  for (var d = 0u; d < DH; d++) { dk[item * DH + d] = dka[d] * scale; dv[item * DH + d] = dva[d]; }`)}`;
}
