// Scaled dot-product attention, fused flash-attention style: the forward keeps only the output and
// each query row's logsumexp; the backward recomputes probabilities from q, k and that logsumexp, so
// no [Tq, Tk] score matrix is ever stored. Two webgpu variants (family 'attention'): 'row', one
// invocation per row (WGSL in kernels.ts), and 'tiled', row blocks with staged tiles (tiled.ts), chosen
// per size; the cpu path runs the same loops in float64.
// Equals softmax(q kᵀ·scale + mask) v (with dropout on the probabilities when dropoutP > 0).
// Operands are read and written where they are, through their strides (heads split by a transpose
// cost no copy); the output is laid out [B, T, H, D] and each gradient like its input, so the views
// around attention in a decoder stay views in both directions.
import type { View } from '../../core/backend.js';
import { isFloat } from '../../core/dtype.js';
import { defineKernel, defineOp, dispatch, type Forward, type Variant } from '../../core/op.js';
import { nextUint32 } from '../../core/rng.js';
import { OpError, shapeStr } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import {
  AT,
  attentionBackwardKeySource,
  attentionBackwardQuerySource,
  attentionForwardSource,
  MAX_HEAD_DIM,
  operandWords,
  vectorWidth,
  type MaskKind,
  type AttentionTypes,
} from './kernels.js';
import { storageTypeOf } from '../../core/webgpu/wgsl.js';
import { counterUniform } from '../dropout/counter-rng.js';
import { preferTiled, tiledBackward, tiledFits, tiledForward, type AttentionShape } from './tiled.js';
import { emptyInOrder, emptyLike, outData, statDtype } from '../kernelio.js';
import { broadcastView, empty } from '../util.js';
import { cpuDataOf } from '../../core/cpu.js';

export interface AttentionOptions {
  /** Query i (of the last Tq positions) sees keys j ≤ i + Tk − Tq. */
  causal?: boolean;
  /** Score scale; default 1/sqrt(head dim). */
  scale?: number;
  /**
   * Broadcastable to [B, H, Tq, Tk]: a float tensor is added to the scores (use -Infinity to mask);
   * an int32 tensor keeps positions where it is nonzero. Receives no gradient.
   */
  mask?: Tensor | null;
  /** Dropout probability on the attention weights (applied whenever > 0). */
  dropoutP?: number;
}

interface Dims {
  B: number;
  H: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  D: number;
  scale: number;
  causal: boolean;
  dropoutP: number;
  seed: number;
}

interface Mask {
  view: View;
  kind: Exclude<MaskKind, 'none'>;
}

/** The [offset, strides] words of every operand; head dim and offsets in units of the kernel's vector width W. */
function params(
  d: Dims,
  W: 1 | 4,
  operands: { Q: View; K: View; V: View; O: View; G?: View; DQ?: View; DK?: View; DV?: View },
  mask: Mask | null,
): Uint32Array {
  const words = Object.fromEntries(Object.entries(operands).map(([name, v]) => [name, operandWords(v, W)]));
  return AT.pack({
    B: d.B,
    H: d.H,
    HKV: d.Hkv,
    TQ: d.Tq,
    TK: d.Tk,
    DH: d.D / W,
    SCALE: d.scale,
    CAUSAL: d.causal ? 1 : 0,
    DROP: d.dropoutP,
    SEED: d.seed,
    ...words,
    M: mask ? operandWords(mask.view, 1) : undefined,
  });
}

/** Element (b, h, t, e) of a rank-4 cpu view is data[at(b, h, t) + e · inner]. */
function cpuRows(v: View) {
  const [s0, s1, s2, inner] = v.strides;
  return { data: cpuDataOf(v), inner, at: (b: number, h: number, t: number) => v.offset + b * s0 + h * s1 + t * s2 };
}

/** The cpu reference's view of the problem: scores with mask, causal range and dropout, as the kernels define them. */
function cpuProblem(d: Dims, q: View, k: View, v: View, mask: Mask | null) {
  const Q = cpuRows(q),
    K = cpuRows(k),
    V = cpuRows(v);
  const M = mask && cpuRows(mask.view);
  const group = d.H / d.Hkv;
  const keyEnd = (i: number) => (d.causal ? Math.min(Math.max(i + d.Tk - d.Tq + 1, 0), d.Tk) : d.Tk);
  const score = (b: number, h: number, i: number, j: number): number => {
    const qo = Q.at(b, h, i),
      ko = K.at(b, Math.floor(h / group), j);
    let s = 0;
    for (let e = 0; e < d.D; e++) s += Q.data[qo + e * Q.inner] * K.data[ko + e * K.inner];
    s *= d.scale;
    if (M) {
      const mv = M.data[M.at(b, h, i) + j * M.inner];
      if (mask!.kind === 'add') s += mv;
      else if (mv === 0) s = -Infinity;
    }
    return s;
  };
  const keepMult = (row: number, j: number): number => {
    if (d.dropoutP <= 0) return 1;
    return counterUniform(d.seed, (row * d.Tk + j) >>> 0) < d.dropoutP ? 0 : 1 / (1 - d.dropoutP);
  };
  /** Calls fn for every query row (b, h, i), with its index in [B, H, Tq] order. */
  const eachRow = (fn: (b: number, h: number, i: number, row: number) => void) => {
    for (let row = 0; row < d.B * d.H * d.Tq; row++)
      fn(Math.floor(row / (d.Tq * d.H)), Math.floor(row / d.Tq) % d.H, row % d.Tq, row);
  };
  return { Q, K, V, group, keyEnd, score, keepMult, eachRow };
}

/** The operands of one attention forward: q, k, v, the mask, and what it writes (out, and lse into stats). */
interface AttentionArgs {
  readonly d: Dims;
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
  readonly mask: Mask | null;
  readonly out: Tensor;
  readonly stats: Tensor;
}

/** The backward's operands: the forward's (stats holding lse), dout (g), and the gradients it writes. */
interface AttentionBackwardArgs extends AttentionArgs {
  readonly g: Tensor;
  readonly dq: Tensor;
  readonly dk: Tensor;
  readonly dv: Tensor;
}

type AttentionVariant = 'row' | 'tiled';

const shapeOf = (d: Dims): AttentionShape => ({ BH: d.B * d.H, Tq: d.Tq, BHkv: d.B * d.Hkv, Tk: d.Tk, D: d.D });
/** The row kernels hold a row of the head dim in private arrays of MAX_HEAD_DIM; the tiled ones unroll it (compile time grows with it): neither goes past it. */
const headDimFits = ({ d }: AttentionArgs) =>
  d.D <= MAX_HEAD_DIM || `head dim ${d.D} exceeds its maximum of ${MAX_HEAD_DIM}; use a smaller head dim`;

/**
 * The two webgpu variants of an attention kernel: 'tiled' (row blocks with staged tiles, tiled.ts)
 * when its grids fit the adapter and the attention is long enough (preferTiled), else 'row' (one
 * invocation per row, kernels.ts).
 */
function attentionVariants<A extends AttentionArgs>(run: (args: A, variant: AttentionVariant) => void): Variant<A>[] {
  return [
    {
      name: 'tiled',
      fits: (a, hw) =>
        headDimFits(a) === true
          ? tiledFits(shapeOf(a.d), hw) || 'the grid exceeds the adapter’s workgroups per dimension'
          : headDimFits(a),
      prefer: (a) => preferTiled(shapeOf(a.d)),
      run: (a) => run(a, 'tiled'),
    },
    { name: 'row', fits: headDimFits, run: (a) => run(a, 'row') },
  ];
}

/** The output (normalised), and each query row's logsumexp into stats' first half, in float64. */
function forwardCpu({ d, q, k, v, mask, out, stats }: AttentionArgs): void {
  const { Tk, D } = d;
  const P = cpuProblem(d, q, k, v, mask);
  const O = cpuRows(out),
    lse = outData(stats);
  const s = new Float64Array(Tk);
  P.eachRow((b, h, i, row) => {
    const vb = P.V.at(b, Math.floor(h / P.group), 0),
      vRow = v.strides[2],
      end = P.keyEnd(i);
    let m = -Infinity;
    for (let j = 0; j < end; j++) {
      s[j] = P.score(b, h, i, j);
      if (s[j] > m) m = s[j];
    }
    let sum = 0;
    const acc = new Float64Array(D);
    for (let j = 0; j < end && m !== -Infinity; j++) {
      if (s[j] === -Infinity) continue;
      const p = Math.exp(s[j] - m);
      sum += p;
      const pv = p * P.keepMult(row, j);
      for (let e = 0; e < D; e++) acc[e] += pv * P.V.data[vb + j * vRow + e * P.V.inner];
    }
    const oo = O.at(b, h, i);
    for (let e = 0; e < D; e++) O.data[oo + e] = sum === 0 ? 0 : acc[e] / sum;
    lse[row] = sum === 0 ? -Infinity : m + Math.log(sum);
  });
}

/** The kernels' storage types: q's for the rows (q, k, v, out and their gradients share it), the additive mask's. */
const storageTypes = (q: View, mask: { view: View } | null): AttentionTypes => ({
  t: storageTypeOf(q.dtype),
  mask: storageTypeOf(mask?.view.dtype ?? 'float32'),
});

const attentionForwardKernel = defineKernel<AttentionArgs>({
  name: 'scaledDotProductAttention',
  family: 'attention',
  cpu: forwardCpu,
  float16: true,
  webgpu: attentionVariants(({ d, q, k, v, mask, out, stats }, variant) => {
    const kind = mask?.kind ?? 'none';
    const W = vectorWidth(d.D, [q, k, v, out]);
    const p = params(d, W, { Q: q, K: k, V: v, O: out }, mask);
    const views = [out, stats, q, k, v, ...(mask ? [mask.view] : [])];
    const types = storageTypes(q, mask);
    if (variant === 'tiled') tiledForward({ ...shapeOf(d), W, kind, types }, p, views);
    else
      launch(
        'scaledDotProductAttention',
        `fused:attention:fwd:${W}:${kind}:${types.t}:${types.mask}`,
        () => attentionForwardSource(W, kind, types),
        p,
        views,
        itemGrid(d.B * d.H * d.Tq),
      );
  }),
});

/** dq, dk, dv from dout, recomputing the probabilities from q, k and the saved lse, in float64. */
function backwardCpu({ d, q, k, v, mask, out, stats, g, dq, dk, dv }: AttentionBackwardArgs): void {
  const { D } = d;
  const P = cpuProblem(d, q, k, v, mask);
  const lse = cpuDataOf(stats),
    G = cpuRows(g),
    O = cpuRows(out);
  const DQ = cpuRows(dq),
    DK = cpuRows(dk),
    DV = cpuRows(dv);
  // Accumulate in float64 whatever the dtype, in each gradient's own memory order.
  const dqa = new Float64Array(dq.size),
    dka = new Float64Array(dk.size),
    dva = new Float64Array(dv.size);
  const [kRow, vRow] = [k.strides[2], v.strides[2]];
  P.eachRow((b, h, i, row) => {
    const L = lse[row];
    if (L === -Infinity) return;
    const hk = Math.floor(h / P.group),
      kb = P.K.at(b, hk, 0),
      vb = P.V.at(b, hk, 0);
    const qo = P.Q.at(b, h, i),
      go = G.at(b, h, i),
      oo = O.at(b, h, i),
      dqo = DQ.at(b, h, i);
    let delta = 0;
    for (let e = 0; e < D; e++) delta += G.data[go + e * G.inner] * O.data[oo + e * O.inner];
    for (let j = 0; j < P.keyEnd(i); j++) {
      const s = P.score(b, h, i, j);
      if (s === -Infinity) continue;
      const p = Math.exp(s - L);
      let dp = 0;
      for (let e = 0; e < D; e++) dp += G.data[go + e * G.inner] * P.V.data[vb + j * vRow + e * P.V.inner];
      const mult = P.keepMult(row, j);
      const ds = p * (dp * mult - delta);
      const dko = DK.at(b, hk, j),
        dvo = DV.at(b, hk, j);
      for (let e = 0; e < D; e++) {
        dqa[dqo + e] += ds * P.K.data[kb + j * kRow + e * P.K.inner] * d.scale;
        dka[dko + e] += ds * P.Q.data[qo + e * P.Q.inner] * d.scale;
        dva[dvo + e] += p * mult * G.data[go + e * G.inner];
      }
    }
  });
  outData(dq).set(dqa);
  outData(dk).set(dka);
  outData(dv).set(dva);
}

/** Two dispatches on webgpu: dQ (which also writes each row's delta into stats' second half), then dK/dV. */
const attentionBackwardKernel = defineKernel<AttentionBackwardArgs>({
  name: 'scaledDotProductAttentionBackward',
  family: 'attention',
  cpu: backwardCpu,
  float16: true,
  webgpu: attentionVariants(({ d, q, k, v, mask, out, stats, g, dq, dk, dv }, variant) => {
    // A dout broadcast along the head dim (out.sum()'s gradient) is made dense, so it does not turn
    // every load scalar (and compile scalar pipelines) for the sake of one constant.
    const dense = g.strides[3] === 0 && d.D > 1 ? g.contiguous() : g;
    const kind = mask?.kind ?? 'none';
    const W = vectorWidth(d.D, [q, k, v, out, dense, dq, dk, dv]);
    const p = params(d, W, { Q: q, K: k, V: v, O: out, G: dense, DQ: dq, DK: dk, DV: dv }, mask);
    const extra = mask ? [mask.view] : [];
    const dqViews = [dq, stats, q, k, v, out, dense, ...extra],
      dkvViews = [dk, dv, q, k, v, stats, dense, ...extra];
    const types = storageTypes(q, mask);
    if (variant === 'tiled') tiledBackward({ ...shapeOf(d), W, kind, types }, p, dqViews, dkvViews);
    else {
      launch(
        'scaledDotProductAttentionBackward',
        `fused:attention:dq:${W}:${kind}:${types.t}:${types.mask}`,
        () => attentionBackwardQuerySource(W, kind, types),
        p,
        dqViews,
        itemGrid(d.B * d.H * d.Tq),
      );
      launch(
        'scaledDotProductAttentionBackward',
        `fused:attention:dkv:${W}:${kind}:${types.t}:${types.mask}`,
        () => attentionBackwardKeySource(W, kind, types),
        p,
        dkvViews,
        itemGrid(d.B * d.Hkv * d.Tk),
      );
    }
    if (dense !== g) dense.dispose();
  }),
});

/**
 * The output, in [B, Tq, H, D] memory order (so merging heads before the output projection is a
 * view), returned as the [B, H, Tq, D] view; and stats = [lse; delta] per query row, the forward
 * filling lse (the dQ kernel fills delta).
 */
function forward(d: Dims, q: Tensor, k: Tensor, v: Tensor, mask: Mask | null): [Tensor, Tensor] {
  const { B, H, Tq, D } = d;
  const out = emptyInOrder(q.device, q.dtype, [B, H, Tq, D], [0, 2, 1, 3]);
  const rows = B * H * Tq;
  // Row logsumexps and deltas stay f32 for float16 rows (the backward recomputes exp(s − lse) from them).
  const stats = empty(q.device, statDtype(q.dtype), [2, rows]);
  if (rows > 0) dispatch(attentionForwardKernel, q.device, { d, q, k, v, mask, out, stats });
  return [out, stats];
}

/** Gradients for q, k, v from dout (g); stats holds each query row's lse. */
function backward(
  d: Dims,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Mask | null,
  out: Tensor,
  stats: Tensor,
  g: Tensor,
): [Tensor, Tensor, Tensor] {
  // No query row: nothing reaches k and v.
  if (d.B * d.H * d.Tq === 0) return [emptyLike(q), k.fullLike(0), v.fullLike(0)];
  const dq = emptyLike(q),
    dk = emptyLike(k),
    dv = emptyLike(v);
  dispatch(attentionBackwardKernel, q.device, { d, q, k, v, mask, out, stats, g, dq, dk, dv });
  return [dq, dk, dv];
}

function checkInputs(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): void {
  const op = 'scaledDotProductAttention';
  for (const t of [q, k, v]) t.assertAlive(op);
  const shapes = `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}`;
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4)
    throw new OpError(op, `q, k, v must be [B, H, T, D]; got ${shapes}`);
  if (k.shape.some((s, i) => s !== v.shape[i]))
    throw new OpError(op, `k and v must have the same shape; got ${shapes}`);
  const [B, H, , D] = q.shape;
  const [Bk, Hkv, , Dk] = k.shape;
  if (B !== Bk || D !== Dk) throw new OpError(op, `batch and head dim must match; got ${shapes}`);
  if (Hkv === 0 || H % Hkv !== 0)
    throw new OpError(
      op,
      `query heads (${H}) must be a multiple of key/value heads (${Hkv}) for grouped-query attention; got ${shapes}`,
    );
  if (!isFloat(q.dtype) || q.dtype !== k.dtype || q.dtype !== v.dtype)
    throw new OpError(op, `q, k, v must share one float dtype; got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  if (q.device !== k.device || q.device !== v.device)
    throw new OpError(op, `q, k, v are on different devices (${q.device}, ${k.device}, ${v.device})`);
  const p = opts.dropoutP ?? 0;
  if (!(p >= 0 && p < 1)) throw new OpError(op, `dropoutP must be in [0, 1), got ${p}`);
  const mask = opts.mask;
  if (mask) {
    mask.assertAlive(op);
    const full = [B, H, q.shape[2], k.shape[2]];
    if (mask.rank > 4 || mask.shape.some((s, i) => s !== 1 && s !== full[4 - mask.rank + i])) {
      throw new OpError(op, `mask ${shapeStr(mask.shape)} must broadcast to [B, H, Tq, Tk] = ${shapeStr(full)}`);
    }
    if (mask.device !== q.device) throw new OpError(op, `mask is on ${mask.device} but q on ${q.device}`);
    if (mask.dtype !== 'int32' && mask.dtype !== q.dtype && !(q.dtype === 'float16' && mask.dtype === 'float32'))
      throw new OpError(
        op,
        `a float mask must have q's dtype ${q.dtype} (or float32 with float16 q), got ${mask.dtype}`,
      );
    if (mask.requiresGrad) throw new OpError(op, 'the mask receives no gradient; pass mask.detach()');
  }
}

interface AttentionInfo {
  readonly d: Dims;
}

const attentionOp = defineOp({
  name: 'scaledDotProductAttention',
  autocast: 'lower',
  check: checkInputs,
  forward: (q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Forward<AttentionInfo> => {
    const [B, H, Tq, D] = q.shape;
    const [, Hkv, Tk] = k.shape;
    const dropoutP = opts.dropoutP ?? 0;
    const d: Dims = {
      B,
      H,
      Hkv,
      Tq,
      Tk,
      D,
      scale: opts.scale ?? 1 / Math.sqrt(D),
      causal: opts.causal ?? false,
      dropoutP,
      seed: dropoutP > 0 ? nextUint32() : 0,
    };
    const mask = opts.mask ?? null;
    // Operands are read where they are (any strides): no contiguous copies.
    const [out, stats] = forward(d, q, k, v, maskOf(d, mask));
    return {
      out,
      inputs: [q, k, v],
      saved: [q, k, v, out, stats, ...(mask ? [mask] : [])],
      info: { d },
      // The graph holds its own reference to stats.
      after: (y) => {
        stats.dispose();
        return y;
      },
    };
  },
  backward: (g, [qs, ks, vs, os, ss, ms], { d }) => backward(d, qs, ks, vs, maskOf(d, ms ?? null), os, ss, g),
  kernels: [attentionForwardKernel, attentionBackwardKernel],
  // webgpu float32 vs cpu float64: the gradcheckDevices defaults the attention tests pass at.
  // float16: f16 rows, f32 scores, softmax statistics and accumulators; each result rounded once to f16.
  tolerance: { float32: { atol: 1e-5, rtol: 1e-4 }, float16: { atol: 5e-3, rtol: 1e-2 } },
});

/** A mask tensor as the kernels read it: broadcast to [B, H, Tq, Tk]; int32 keeps nonzero positions, a float one is added. */
function maskOf(d: Dims, t: Tensor | null): Mask | null {
  return t && { view: broadcastView(t, [d.B, d.H, d.Tq, d.Tk]), kind: t.dtype === 'int32' ? 'bool' : 'add' };
}

/**
 * softmax(q kᵀ·scale + mask) v over [B, H, T, D] inputs. k/v may have fewer heads than q (GQA:
 * H % Hkv == 0; query head h uses KV head h / (H / Hkv)); Tq may differ from Tk (with causal, the
 * queries are the last Tq positions). A query row that sees no key gives zeros. On webgpu the head
 * dim is at most MAX_HEAD_DIM (256).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  return attentionOp(q, k, v, opts);
}
