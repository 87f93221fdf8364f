// Scaled dot-product attention, fused flash-attention style: the forward keeps only the output and
// each query row's logsumexp; the backward recomputes probabilities from q, k and that logsumexp, so
// no [Tq, Tk] score matrix is ever stored. WGSL in kernels.ts (one invocation per row) and tiled.ts
// (row blocks with staged tiles, chosen per size); the cpu path
// runs the same loops in float64. Equals softmax(q kᵀ·scale + mask) v (with dropout on the
// probabilities when dropoutP > 0).
import type { View } from '../../core/backend.js';
import { record } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { nextUint32 } from '../../core/rng.js';
import { OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { AT, attentionBackwardKeySource, attentionBackwardQuerySource, attentionForwardSource, MAX_HEAD_DIM, vectorWidth, type MaskKind } from './kernels.js';
import { counterUniform } from '../dropout/counter-rng.js';
import { chooseAttentionKernel, tiledBackward, tiledForward, type TiledShape } from './tiled.js';
import { stack } from '../movement.js';
import { cpuData, outData, withContiguous } from '../kernelio.js';
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
  B: number; H: number; Hkv: number; Tq: number; Tk: number; D: number;
  scale: number; causal: boolean; dropoutP: number; seed: number;
}

interface Mask { view: View; kind: Exclude<MaskKind, 'none'> }

/** Head dim and row offsets go in units of the kernel's vector width W. */
function params(d: Dims, W: number, q: Tensor, k: Tensor, v: Tensor, mask: Mask | null, gOff = 0): Uint32Array {
  return AT.pack({
    B: d.B, H: d.H, HKV: d.Hkv, TQ: d.Tq, TK: d.Tk, DH: d.D / W, QOFF: q.offset / W, KOFF: k.offset / W, VOFF: v.offset / W,
    SCALE: d.scale, CAUSAL: d.causal ? 1 : 0, DROP: d.dropoutP, SEED: d.seed, GOFF: gOff / W, MOFF: mask?.view.offset, MSTR: mask?.view.strides,
  });
}

/** The cpu reference's view of the problem: scores with mask, causal range and dropout, as the kernels define them. */
function cpuProblem(d: Dims, q: Tensor, k: Tensor, v: Tensor, mask: Mask | null) {
  const Q = cpuData(q), K = cpuData(k), V = cpuData(v);
  const M = mask && { data: cpuDataOf(mask.view), s: mask.view.strides, o: mask.view.offset };
  const D = d.D;
  const kvBase = (b: number, h: number) => (b * d.Hkv + Math.floor(h / (d.H / d.Hkv))) * d.Tk * D;
  const keyEnd = (i: number) => (d.causal ? Math.min(Math.max(i + d.Tk - d.Tq + 1, 0), d.Tk) : d.Tk);
  const score = (b: number, h: number, i: number, j: number, qo: number, ko: number): number => {
    let s = 0;
    for (let e = 0; e < D; e++) s += Q.data[qo + e] * K.data[ko + e];
    s *= d.scale;
    if (M) {
      const mv = M.data[M.o + b * M.s[0] + h * M.s[1] + i * M.s[2] + j * M.s[3]];
      if (mask!.kind === 'add') s += mv;
      else if (mv === 0) s = -Infinity;
    }
    return s;
  };
  const keepMult = (row: number, j: number): number => {
    if (d.dropoutP <= 0) return 1;
    return counterUniform(d.seed, (row * d.Tk + j) >>> 0) < d.dropoutP ? 0 : 1 / (1 - d.dropoutP);
  };
  return { Q, K, V, kvBase, keyEnd, score, keepMult };
}

/** The tiled kernels' launch shape when they run this problem (ops/attention/tiled.ts), else null (row kernels). */
function tiledShape(d: Dims, W: 1 | 4, kind: MaskKind): TiledShape | null {
  const s = { W, D: d.D, kind, BH: d.B * d.H, Tq: d.Tq, BHkv: d.B * d.Hkv, Tk: d.Tk };
  return chooseAttentionKernel(s.BH, s.Tq, s.BHkv, s.Tk, s.D) === 'tiled' ? s : null;
}

function forward(d: Dims, q: Tensor, k: Tensor, v: Tensor, mask: Mask | null): [Tensor, Tensor] {
  const { B, H, Tq, Tk, D } = d;
  const out = empty(q.device, q.dtype, [B, H, Tq, D]);
  const lse = empty(q.device, q.dtype, [B, H, Tq]);
  const rows = B * H * Tq;
  if (q.device === 'cpu') {
    const P = cpuProblem(d, q, k, v, mask);
    const o = outData(out), l = outData(lse);
    const s = new Float64Array(Tk);
    for (let row = 0; row < rows; row++) {
      const i = row % Tq, h = Math.floor(row / Tq) % H, b = Math.floor(row / (Tq * H));
      const kv = P.kvBase(b, h), qo = P.Q.off + row * D, end = P.keyEnd(i);
      let m = -Infinity;
      for (let j = 0; j < end; j++) {
        s[j] = P.score(b, h, i, j, qo, P.K.off + kv + j * D);
        if (s[j] > m) m = s[j];
      }
      let sum = 0;
      const acc = new Float64Array(D);
      for (let j = 0; j < end && m !== -Infinity; j++) {
        if (s[j] === -Infinity) continue;
        const p = Math.exp(s[j] - m);
        sum += p;
        const pv = p * P.keepMult(row, j);
        for (let e = 0; e < D; e++) acc[e] += pv * P.V.data[P.V.off + kv + j * D + e];
      }
      for (let e = 0; e < D; e++) o[row * D + e] = sum === 0 ? 0 : acc[e] / sum;
      l[row] = sum === 0 ? -Infinity : m + Math.log(sum);
    }
  } else if (rows > 0) {
    const kind = mask?.kind ?? 'none';
    const W = vectorWidth(D, [q.offset, k.offset, v.offset]);
    const p = params(d, W, q, k, v, mask);
    const views = [out, lse, q, k, v, ...(mask ? [mask.view] : [])];
    const tiled = tiledShape(d, W, kind);
    if (tiled) tiledForward(tiled, p, views);
    else launch('scaledDotProductAttention', `fused:attention:fwd:${W}:${kind}`, () => attentionForwardSource(W, kind), p, views, itemGrid(rows));
  }
  return [out, lse];
}

/** Gradients for q, k, v from dout (g), with stats = [lse; rowsum(g ∘ out)] stacked, offset 0. */
function backward(d: Dims, q: Tensor, k: Tensor, v: Tensor, mask: Mask | null, stats: Tensor, g: Tensor): [Tensor, Tensor, Tensor] {
  const { B, H, Hkv, Tq, Tk, D } = d;
  const dq = empty(q.device, q.dtype, q.shape);
  const dk = empty(q.device, q.dtype, k.shape);
  const dv = empty(q.device, q.dtype, v.shape);
  const nq = B * H * Tq;
  if (q.device === 'cpu') {
    const P = cpuProblem(d, q, k, v, mask);
    const st = cpuData(stats), G = cpuData(g);
    const dqo = outData(dq), dko = outData(dk), dvo = outData(dv);
    const dqa = new Float64Array(dq.size), dka = new Float64Array(dk.size), dva = new Float64Array(dv.size);
    for (let row = 0; row < nq; row++) {
      const L = st.data[st.off + row], delta = st.data[st.off + nq + row];
      if (L === -Infinity) continue;
      const i = row % Tq, h = Math.floor(row / Tq) % H, b = Math.floor(row / (Tq * H));
      const kv = P.kvBase(b, h), qo = P.Q.off + row * D, go = G.off + row * D;
      for (let j = 0; j < P.keyEnd(i); j++) {
        const ko = P.K.off + kv + j * D, vo = P.V.off + kv + j * D;
        const s = P.score(b, h, i, j, qo, ko);
        if (s === -Infinity) continue;
        const p = Math.exp(s - L);
        let dp = 0;
        for (let e = 0; e < D; e++) dp += G.data[go + e] * P.V.data[vo + e];
        const mult = P.keepMult(row, j);
        const ds = p * (dp * mult - delta);
        for (let e = 0; e < D; e++) {
          dqa[row * D + e] += ds * P.K.data[ko + e] * d.scale;
          dka[kv + j * D + e] += ds * P.Q.data[qo + e] * d.scale;
          dva[kv + j * D + e] += p * mult * G.data[go + e];
        }
      }
    }
    dqo.set(dqa); dko.set(dka); dvo.set(dva);
  } else if (nq > 0) {
    const kind = mask?.kind ?? 'none';
    const W = vectorWidth(D, [q.offset, k.offset, v.offset, g.offset]);
    const p = params(d, W, q, k, v, mask, g.offset);
    const extra = mask ? [mask.view] : [];
    const dqViews = [dq, q, k, v, stats, g, ...extra], dkvViews = [dk, dv, q, k, v, stats, g, ...extra];
    const tiled = tiledShape(d, W, kind);
    if (tiled) tiledBackward(tiled, p, dqViews, dkvViews);
    else {
      launch('scaledDotProductAttentionBackward', `fused:attention:dq:${W}:${kind}`, () => attentionBackwardQuerySource(W, kind), p, dqViews, itemGrid(nq));
      launch('scaledDotProductAttentionBackward', `fused:attention:dkv:${W}:${kind}`, () => attentionBackwardKeySource(W, kind), p, dkvViews, itemGrid(B * Hkv * Tk));
    }
  }
  return [dq, dk, dv];
}

function checkInputs(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): void {
  const op = 'scaledDotProductAttention';
  for (const t of [q, k, v]) t.assertAlive(op);
  const shapes = `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}`;
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw new OpError(op, `q, k, v must be [B, H, T, D]; got ${shapes}`);
  if (k.shape.some((s, i) => s !== v.shape[i])) throw new OpError(op, `k and v must have the same shape; got ${shapes}`);
  const [B, H, , D] = q.shape;
  const [Bk, Hkv, , Dk] = k.shape;
  if (B !== Bk || D !== Dk) throw new OpError(op, `batch and head dim must match; got ${shapes}`);
  if (Hkv === 0 || H % Hkv !== 0) throw new OpError(op, `query heads (${H}) must be a multiple of key/value heads (${Hkv}) for grouped-query attention; got ${shapes}`);
  if (!isFloat(q.dtype) || q.dtype !== k.dtype || q.dtype !== v.dtype) throw new OpError(op, `q, k, v must share one float dtype; got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  if (q.device !== k.device || q.device !== v.device) throw new OpError(op, `q, k, v are on different devices (${q.device}, ${k.device}, ${v.device})`);
  if (q.device === 'webgpu' && D > MAX_HEAD_DIM) throw new OpError(op, `head dim ${D} exceeds the fused webgpu kernel's maximum of ${MAX_HEAD_DIM}; use device 'cpu' or a smaller head dim`);
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
    if (mask.dtype !== 'int32' && mask.dtype !== q.dtype) throw new OpError(op, `a float mask must have q's dtype ${q.dtype}, got ${mask.dtype}`);
    if (mask.requiresGrad) throw new OpError(op, 'the mask receives no gradient; pass mask.detach()');
  }
}

/**
 * softmax(q kᵀ·scale + mask) v over [B, H, T, D] inputs. k/v may have fewer heads than q (GQA:
 * H % Hkv == 0; query head h uses KV head h / (H / Hkv)); Tq may differ from Tk (with causal, the
 * queries are the last Tq positions). A query row that sees no key gives zeros.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  checkInputs(q, k, v, opts);
  const [B, H, Tq, D] = q.shape;
  const [, Hkv, Tk] = k.shape;
  const dropoutP = opts.dropoutP ?? 0;
  const d: Dims = {
    B, H, Hkv, Tq, Tk, D, scale: opts.scale ?? 1 / Math.sqrt(D), causal: opts.causal ?? false,
    dropoutP, seed: dropoutP > 0 ? nextUint32() : 0,
  };
  const maskT = opts.mask ?? null;
  const maskOf = (t: Tensor | null): Mask | null => t && { view: broadcastView(t, [B, H, Tq, Tk]), kind: t.dtype === 'int32' ? 'bool' : 'add' };
  return withContiguous([q, k, v], ([qc, kc, vc]) => {
    const [out, lse] = forward(d, qc, kc, vc, maskOf(maskT));
    const y = record('scaledDotProductAttention', out, [q, k, v], (g, [qs, ks, vs, os, ls, ms]) => withContiguous([g], ([gc]) => {
      const stats = stack([ls, gc.mul(os).sum(-1)]);
      return backward(d, qs, ks, vs, maskOf(ms ?? null), stats, gc);
    }), [qc, kc, vc, out, lse, ...(maskT ? [maskT] : [])]);
    lse.dispose();
    return y;
  });
}
