// Tiled (flash-style) attention kernels for WebGPU. A workgroup owns a block of BLOCK rows of one head
// — query rows for the forward and dQ, key rows for dK/dV — one row per invocation, and walks the other
// side in tiles staged in workgroup memory, so each k/v (or q/dout) row is read from global memory once
// per block instead of once per row, and every read of a staged row is at a workgroup-uniform address
// (on lavapipe, staged tiles measured faster than the same loops reading global memory). O(T) memory:
// the forward saves only the output and each row's logsumexp; the backward recomputes the
// probabilities tile by tile (dQ per query block, dK/dV per key block, no atomics). Same uniform
// layout (AT: every operand through its own offset and strides), bindings, masks, causal rule and
// dropout counter as the row kernels in kernels.ts, so the same seed drops the same probabilities;
// the forward rescales its accumulator once per tile (online softmax).
import {
  AT,
  attentionBindings,
  attentionHelpers,
  col,
  keyRowRegisters,
  rowAt,
  rowStride,
  type AttentionTypes,
  type MaskKind,
} from './kernels.js';
import { kernelHeader, NEG_INF } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import type { View } from '../../core/backend.js';
import type { Hardware } from '../../core/op.js';

/** Rows owned by one workgroup (one per invocation). */
const BLOCK = 64;
/** Workgroup memory the staged tiles may use: WebGPU's guaranteed minimum. */
const WORKGROUP_BYTES = 16384;

/** The sizes of one attention: query and key/value heads (times batch), query and key rows, head dim. */
export interface AttentionShape {
  BH: number;
  Tq: number;
  BHkv: number;
  Tk: number;
  D: number;
}

/** Keys from which the tiled kernels run by default, given a full query block (bench/attention.ts, lavapipe: faster than the row kernels at T = 256-1024). */
const TILED_FROM_KEYS = 256;
/** Largest head dim the tiled kernels take by default: they unroll it, and compile time grows with it. */
const TILED_MAX_HEAD_DIM = 64;

/** The tiled grids (row blocks × heads) fit the adapter's workgroup limit. */
export function tiledFits(s: AttentionShape, hw: Hardware): boolean {
  return Math.max(s.BH, s.BHkv, Math.ceil(s.Tq / BLOCK), Math.ceil(s.Tk / BLOCK)) <= hw.maxWorkgroupsPerDimension;
}

/**
 * The automatic choice of the tiled kernels: from TILED_FROM_KEYS keys with a full query block, where
 * they measured faster than the row kernels on lavapipe. Short attentions and short query blocks (the
 * toy models' T = 64, decoding one token) stay on the row kernels: unmeasured there, and the row
 * pipelines compile in a fraction of the tiled ones' ~10 s of cpu on lavapipe (once per machine: Mesa
 * caches compiled shaders).
 */
export function preferTiled(s: AttentionShape): boolean {
  return s.Tq >= BLOCK && s.Tk >= TILED_FROM_KEYS && s.D <= TILED_MAX_HEAD_DIM;
}

/** Compile-time sizes of one pipeline: the head dim in VT units and the rows per staged tile. */
interface Sizes {
  W: 1 | 4;
  dmax: number;
  stage: number;
}

function sizes(W: 1 | 4, D: number): Sizes {
  const dmax = D / W;
  // Two staged row tiles (k and v, or q and dout) plus two f32 per staged row (lse, delta).
  const stage = Math.min(BLOCK, Math.floor(WORKGROUP_BYTES / (2 * dmax * W * 4 + 8)));
  return { W, dmax, stage };
}

function prelude({ W, dmax, stage }: Sizes, kind: MaskKind, types: AttentionTypes): string {
  return `const DMAX: u32 = ${dmax}u;
const DH: u32 = DMAX;
const STAGE: u32 = ${stage}u;
${attentionHelpers(W, kind, types)}`;
}

const blockMain = (
  body: string,
): string => `@compute @workgroup_size(${BLOCK}) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let lid = lidv.x;
  let Tq = pu(${AT.TQ}u); let Tk = pu(${AT.TK}u); let H = pu(${AT.H}u); let Hkv = pu(${AT.HKV}u);
  let scale = pf(${AT.SCALE}u);
${body}
}`;

/**
 * The query-block kernels' common start: the block's head, this invocation's query row, the KV head's
 * k/v bases and the keys the block needs (the last row of the block sees the most).
 */
const queryBlock = `
  let bh = wid.y; let h = bh % H; let b = bh / H;
  let i = wid.x * ${BLOCK}u + lid;
  let live = i < Tq;
  let ic = min(i, Tq - 1u);
  let row = bh * Tq + ic;
  let hk = h / (H / Hkv);
  let kb = ${rowAt('K', 'b', 'hk', '0u')}; let kRow = ${rowStride('K')};
  let vb = ${rowAt('V', 'b', 'hk', '0u')}; let vRow = ${rowStride('V')};
  let jend = key_end(i);
  let blockEnd = key_end(min(wid.x * ${BLOCK}u + ${BLOCK - 1}u, Tq - 1u));
  let qo = ${rowAt('Q', 'b', 'h', 'ic')};
  var qr: array<VT, DMAX>;
  for (var d = 0u; d < DH; d++) { qr[d] = VT(q[qo + ${col('Q', 'd')}]); }`;

/** Stages key/value rows [j0, j0 + n) of this KV head in ks/vs (between barriers: uniform control flow). */
const stageKeys = `
    let n = min(STAGE, blockEnd - j0);
    workgroupBarrier();
    for (var e = lid; e < n * DH; e += ${BLOCK}u) {
      let j = j0 + e / DH; let c = e % DH;
      ks[e] = VT(k[kb + j * kRow + ${col('K', 'c')}]); vs[e] = VT(v[vb + j * vRow + ${col('V', 'c')}]);
    }
    workgroupBarrier();`;

/** s = masked(q·k·scale) for staged key jj, or -inf when the key is out of this query's range. */
const stagedScore = `
      var s = ${NEG_INF};
      if (live && j0 + jj < jend) {
        var dt = 0.0;
        for (var d = 0u; d < DH; d++) { dt += vdot(qr[d], ks[jj * DH + d]); }
        s = masked(dt * scale, b, h, i, j0 + jj);
      }`;

const keyTiles = `var<workgroup> ks: array<VT, ${'STAGE * DMAX'}>;
var<workgroup> vs: array<VT, ${'STAGE * DMAX'}>;`;

function forwardSource(z: Sizes, kind: MaskKind, types: AttentionTypes): string {
  return `${kernelHeader(attentionBindings('fwd', kind, types))}
${prelude(z, kind, types)}
${keyTiles}
${blockMain(`${queryBlock}
  var acc: array<VT, DMAX>;
  var m = ${NEG_INF};
  var l = 0.0;
  var sc: array<f32, STAGE>;
  for (var j0 = 0u; j0 < blockEnd; j0 += STAGE) {${stageKeys}
    var tmax = ${NEG_INF};
    for (var jj = 0u; jj < n; jj++) {${stagedScore}
      sc[jj] = s;
      tmax = max(tmax, s);
    }
    // Online softmax, once per tile: rescale what was accumulated under the old running max.
    let mn = max(m, tmax);
    if (!is_neg_inf(mn)) {
      let corr = select(exp(m - mn), 0.0, is_neg_inf(m));
      l *= corr;
      for (var d = 0u; d < DH; d++) { acc[d] *= corr; }
      for (var jj = 0u; jj < n; jj++) {
        if (is_neg_inf(sc[jj])) { continue; }
        let p = exp(sc[jj] - mn);
        l += p;
        let pv = p * keep_mult(row, j0 + jj);
        for (var d = 0u; d < DH; d++) { acc[d] += pv * vs[jj * DH + d]; }
      }
      m = mn;
    }
  }
  if (!live) { return; }
  let inv = select(1.0 / l, 0.0, l == 0.0);
  let oo = ${rowAt('O', 'b', 'h', 'i')};
  for (var d = 0u; d < DH; d++) { out[oo + ${col('O', 'd')}] = ST(acc[d] * inv); }
  stats[row] = select(m + log(l), ${NEG_INF}, l == 0.0);`)}`;
}

/** Also writes each query row's delta = Σ dout·out into stats' second half, for the dK/dV kernel. */
function backwardQuerySource(z: Sizes, kind: MaskKind, types: AttentionTypes): string {
  return `${kernelHeader(attentionBindings('dq', kind, types))}
${prelude(z, kind, types)}
${keyTiles}
${blockMain(`${queryBlock}
  let L = stats[row];
  let go = ${rowAt('G', 'b', 'h', 'ic')};
  let oo = ${rowAt('O', 'b', 'h', 'ic')};
  var gr: array<VT, DMAX>;
  var acc: array<VT, DMAX>;
  var delta = 0.0;
  for (var d = 0u; d < DH; d++) { gr[d] = VT(dout[go + ${col('G', 'd')}]); delta += vdot(gr[d], VT(out[oo + ${col('O', 'd')}])); }
  if (live) { stats[pu(${AT.B}u) * H * Tq + row] = delta; }
  let attends = !is_neg_inf(L);
  for (var j0 = 0u; j0 < blockEnd; j0 += STAGE) {${stageKeys}
    // Non-uniform branches only below the barriers: no continue/break of the tile loop.
    for (var jj = 0u; jj < n && attends; jj++) {${stagedScore}
      if (is_neg_inf(s)) { continue; }
      let p = exp(s - L);
      var dp = 0.0;
      for (var d = 0u; d < DH; d++) { dp += vdot(gr[d], vs[jj * DH + d]); }
      let ds = p * (dp * keep_mult(row, j0 + jj) - delta);
      for (var d = 0u; d < DH; d++) { acc[d] += ds * ks[jj * DH + d]; }
    }
  }
  if (!live) { return; }
  let dqo = ${rowAt('DQ', 'b', 'h', 'i')};
  for (var d = 0u; d < DH; d++) { dq[dqo + ${col('DQ', 'd')}] = ST(acc[d] * scale); }`)}`;
}

/** One invocation per key row, walking the query rows of every head in its KV group in staged tiles. */
function backwardKeySource(z: Sizes, kind: MaskKind, types: AttentionTypes): string {
  return `${kernelHeader(attentionBindings('dkv', kind, types))}
${prelude(z, kind, types)}
var<workgroup> qs: array<VT, STAGE * DMAX>;
var<workgroup> gs: array<VT, STAGE * DMAX>;
var<workgroup> Ls: array<f32, STAGE>;
var<workgroup> deltas: array<f32, STAGE>;
${blockMain(`
  let bhk = wid.y; let hk = bhk % Hkv; let b = bhk / Hkv;
  let j = wid.x * ${BLOCK}u + lid;
  let live = j < Tk;
  let jc = min(j, Tk - 1u);
  let group = H / Hkv;
  let nq = pu(${AT.B}u) * H * Tq;
  ${keyRowRegisters('jc')}
  // Causal: query i sees key j when j < key_end(i); the block's first key bounds the first query.
  var iStart = 0u;
  if (pu(${AT.CAUSAL}u) != 0u) { iStart = u32(clamp(i32(wid.x * ${BLOCK}u) - (i32(Tk) - i32(Tq)), 0, i32(Tq))); }
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    let rowBase = (b * H + h) * Tq;
    let qb = ${rowAt('Q', 'b', 'h', '0u')}; let qRow = ${rowStride('Q')};
    let gb = ${rowAt('G', 'b', 'h', '0u')}; let gRow = ${rowStride('G')};
    for (var i0 = iStart; i0 < Tq; i0 += STAGE) {
      let n = min(STAGE, Tq - i0);
      workgroupBarrier();
      for (var e = lid; e < n * DH; e += ${BLOCK}u) {
        let i = i0 + e / DH; let c = e % DH;
        qs[e] = VT(q[qb + i * qRow + ${col('Q', 'c')}]);
        gs[e] = VT(dout[gb + i * gRow + ${col('G', 'c')}]);
      }
      for (var e = lid; e < n; e += ${BLOCK}u) { Ls[e] = stats[rowBase + i0 + e]; deltas[e] = stats[nq + rowBase + i0 + e]; }
      workgroupBarrier();
      for (var ii = 0u; ii < n && live; ii++) {
        let i = i0 + ii;
        let L = Ls[ii];
        if (is_neg_inf(L) || j >= key_end(i)) { continue; }
        var s = 0.0;
        for (var d = 0u; d < DH; d++) { s += vdot(qs[ii * DH + d], kr[d]); }
        s = masked(s * scale, b, h, i, j);
        if (is_neg_inf(s)) { continue; }
        let p = exp(s - L);
        var dp = 0.0;
        for (var d = 0u; d < DH; d++) { dp += vdot(gs[ii * DH + d], vr[d]); }
        let mult = keep_mult(rowBase + i, j);
        let ds = p * (dp * mult - deltas[ii]);
        let pm = p * mult;
        for (var d = 0u; d < DH; d++) {
          dva[d] += pm * gs[ii * DH + d];
          dka[d] += ds * qs[ii * DH + d];
        }
      }
    }
  }
  if (!live) { return; }
  let dko = ${rowAt('DK', 'b', 'hk', 'j')};
  let dvo = ${rowAt('DV', 'b', 'hk', 'j')};
  for (var d = 0u; d < DH; d++) { dk[dko + ${col('DK', 'd')}] = ST(dka[d] * scale); dv[dvo + ${col('DV', 'd')}] = ST(dva[d]); }`)}`;
}

/** What the launches need beyond the params block. */
export interface TiledShape extends AttentionShape {
  W: 1 | 4;
  kind: MaskKind;
  types: AttentionTypes;
}

/**
 * Loops over the head dim are written as WGSL loops above and unrolled here, at generation time: with
 * constant indices the per-row arrays (q, accumulators) stay in registers on lavapipe instead of
 * scratch memory (measured 2× on the forward). The head dim is a compile-time constant per pipeline.
 */
function unrollHeadDim(source: string, dh: number): string {
  return source.replace(/for \(var d = 0u; d < DH; d\+\+\) \{([^{}]*)\}/g, (_, body: string) =>
    Array.from({ length: dh }, (_, d) => body.replace(/\bd\b/g, `${d}u`).trim()).join('\n'),
  );
}

const pipelineKey = (part: string, z: Sizes, kind: MaskKind, types: AttentionTypes) =>
  `fused:attention-tiled:${part}:${z.W}:${z.dmax}:${kind}:${types.t}:${types.mask}`;
const blocks = (rows: number, heads: number): [number, number, number] => [Math.ceil(rows / BLOCK), heads, 1];

/** views: out, stats, q, k, v[, mask]. */
export function tiledForward(s: TiledShape, p: Uint32Array, views: View[]): void {
  const z = sizes(s.W, s.D);
  launch(
    'scaledDotProductAttention',
    pipelineKey('fwd', z, s.kind, s.types),
    () => unrollHeadDim(forwardSource(z, s.kind, s.types), z.dmax),
    p,
    views,
    blocks(s.Tq, s.BH),
  );
}

/** dqViews: dq, stats, q, k, v, out, dout[, mask]; dkvViews: dk, dv, q, k, v, stats, dout[, mask] (attentionBindings). */
export function tiledBackward(s: TiledShape, p: Uint32Array, dqViews: View[], dkvViews: View[]): void {
  const z = sizes(s.W, s.D);
  const op = 'scaledDotProductAttentionBackward';
  launch(
    op,
    pipelineKey('dq', z, s.kind, s.types),
    () => unrollHeadDim(backwardQuerySource(z, s.kind, s.types), z.dmax),
    p,
    dqViews,
    blocks(s.Tq, s.BH),
  );
  launch(
    op,
    pipelineKey('dkv', z, s.kind, s.types),
    () => unrollHeadDim(backwardKeySource(z, s.kind, s.types), z.dmax),
    p,
    dkvViews,
    blocks(s.Tk, s.BHkv),
  );
}
