// layerNorm and rmsNorm over the last axis: fused forward (saving each row's mean and 1/std) and
// fused backward, as op records (WGSL in kernels.ts; the cpu path is the same maths in float64).
// addLayerNorm / addRmsNorm also take the residual add before the norm into the forward kernel.
import { noGrad, record } from '../../core/autograd.js';
import { config } from '../../core/config.js';
import { getBackend } from '../../core/device.js';
import { isFloat } from '../../core/dtype.js';
import { defineKernel, defineOp, dispatch, hardware, type Hardware, type Tolerance } from '../../core/op.js';
import { numel, OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { rowGrid, rowStride, rowVariants } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { storageTypeOf } from '../../core/webgpu/wgsl.js';
import {
  NB,
  NF,
  normBackwardSource,
  normForwardSource,
  normKey,
  type NormParamGrads,
  type NormVariant,
} from './kernels.js';
import { cpuData, outData, statDtype, withContiguous } from '../kernelio.js';
import { empty } from '../util.js';
import { argTensor } from '../../core/args.js';

/** webgpu float32 vs cpu float64 on long rows (5000) and many rows (700, long weight-gradient sums); other shapes use the checks' defaults. */
export const NORM_LONG_ROW_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-3 };
/**
 * webgpu float16 vs cpu float64: f32 statistics of f16 rows; the input gradient subtracts row means of
 * f16-rounded products (cancellation), and the weight gradients sum f16 terms over the rows.
 */
export const NORM_FLOAT16_TOLERANCE: Tolerance = { atol: 1e-2, rtol: 2e-2 };

const opName = (v: NormVariant) =>
  v.residual ? (v.rms ? 'addRmsNorm' : 'addLayerNorm') : v.rms ? 'rmsNorm' : 'layerNorm';
const rowShape = (a: { nRows: number; D: number }) => ({ nRows: a.nRows, rowLen: a.D });

interface NormRowsArgs {
  readonly v: NormVariant;
  /** Contiguous, like residual, w and b. */
  readonly x: Tensor;
  readonly residual: Tensor | null;
  readonly w: Tensor | null;
  readonly b: Tensor | null;
  readonly eps: number;
  readonly y: Tensor;
  readonly mean: Tensor;
  readonly rstd: Tensor;
  /** x + residual in the residual form. */
  readonly h: Tensor | null;
  readonly nRows: number;
  readonly D: number;
}

/** y = (x − μ)·rstd·w + b per row, plus μ and rstd (μ = 0 for rms); in the residual form of h = x + residual, written too. */
const normRowsKernel = defineKernel<NormRowsArgs>({
  name: 'normRows',
  family: 'row',
  float16: true,
  cpu: ({ v, x, residual, w, b, eps, y, mean, rstd, h, nRows, D }) => {
    if (h && residual) {
      // h is stored (rounded to its dtype) first and normalised from there, as the unfused add + norm.
      const { data: ad, off: ao } = cpuData(x);
      const { data: rd, off: ro } = cpuData(residual);
      const hd = outData(h);
      for (let i = 0; i < nRows * D; i++) hd[i] = ad[ao + i] + rd[ro + i];
    }
    const { data: xd, off: xo } = cpuData(h ?? x);
    const wd = w && cpuData(w),
      bd = b && cpuData(b);
    const yo = outData(y),
      mo = outData(mean),
      ro = outData(rstd);
    for (let r = 0; r < nRows; r++) {
      const base = xo + r * D;
      let mu = 0;
      if (!v.rms) {
        for (let j = 0; j < D; j++) mu += xd[base + j];
        mu /= D;
      }
      let sq = 0;
      for (let j = 0; j < D; j++) sq += (xd[base + j] - mu) ** 2;
      const rs = 1 / Math.sqrt(sq / D + eps);
      mo[r] = mu;
      ro[r] = rs;
      for (let j = 0; j < D; j++) {
        let val = (xd[base + j] - mu) * rs;
        if (wd) val *= wd.data[wd.off + j];
        if (bd) val += bd.data[bd.off + j];
        yo[r * D + j] = val;
      }
    }
  },
  webgpu: rowVariants(rowShape, ({ v, x, residual, w, b, eps, y, mean, rstd, h, nRows, D }, variant) => {
    const p = NF.pack({
      NROWS: nRows,
      D,
      XOFF: x.offset,
      WOFF: w?.offset,
      BOFF: b?.offset,
      EPS: eps,
      ROFF: residual?.offset,
    });
    const views = [
      y,
      mean,
      rstd,
      ...(h ? [h] : []),
      x,
      ...(residual ? [residual] : []),
      ...(w ? [w] : []),
      ...(b ? [b] : []),
    ];
    const t = storageTypeOf(x.dtype);
    launch(
      opName(v),
      `fused:norm:${normKey(v)}:${variant}:${t}`,
      () => normForwardSource(v, variant, t),
      p,
      views,
      rowGrid(variant, nRows),
    );
  }),
});

interface NormRowsBackwardArgs {
  readonly v: NormVariant;
  /** What was normalised (contiguous), the forward's mean and rstd, the output's gradient (contiguous) and the weight. */
  readonly x: Tensor;
  readonly mean: Tensor;
  readonly rstd: Tensor;
  readonly g: Tensor;
  readonly w: Tensor | null;
  readonly dx: Tensor;
  /** [D] each, null when not asked for (db only with dw). */
  readonly dw: Tensor | null;
  readonly db: Tensor | null;
  readonly nRows: number;
  readonly D: number;
}

/**
 * Rows of parameter gradients one chunk sums. Software adapters take all rows in one chunk (one
 * dispatch): on lavapipe that cost the same CPU time as 16 chunks and a sum, at [512, 64] and
 * [4096, 256]. Hardware GPUs sum chunks of HW_CHUNK_ROWS rows in parallel, and the partial sums after.
 * config().normChunkRows (DAWNGRAD_NORM_CHUNK_ROWS) forces the chunk's rows (benchmarks, tests).
 */
function paramGradChunks(nRows: number, hw: Hardware): number {
  const rows = config().normChunkRows ?? (hw.software ? Infinity : HW_CHUNK_ROWS);
  return Math.max(1, Math.ceil(nRows / rows));
}
const HW_CHUNK_ROWS = 1024;

/** out [D] = Σ over the chunks of partial [nChunks, D] (one reduction), freeing partial. */
function sumChunks(partial: Tensor, out: Tensor): void {
  const [nChunks, D] = partial.shape;
  getBackend(out.device).reduce(
    'sum',
    { storage: partial.storage, shape: [D, nChunks], strides: [1, D], offset: 0, dtype: partial.dtype },
    1,
    out,
  );
  partial.dispose();
}

/** dx, and dw = Σ_rows g·x̂ and db = Σ_rows g when asked for (one kernel on webgpu, plus a sum of chunks on many rows). */
const normRowsBackwardKernel = defineKernel<NormRowsBackwardArgs>({
  name: 'normRowsBackward',
  family: 'row',
  float16: true,
  cpu: ({ v, x, mean, rstd, g, w, dx, dw, db, nRows, D }) => {
    const { data: xd, off: xo } = cpuData(x);
    const { data: gd, off: go } = cpuData(g);
    const md = cpuData(mean),
      rd = cpuData(rstd),
      wd = w && cpuData(w);
    const o = outData(dx);
    const sw = new Float64Array(D),
      sb = new Float64Array(D);
    const gh = (r: number, j: number) => gd[go + r * D + j] * (wd ? wd.data[wd.off + j] : 1);
    for (let r = 0; r < nRows; r++) {
      const mu = md.data[md.off + r],
        rs = rd.data[rd.off + r];
      let sg = 0,
        sgx = 0;
      for (let j = 0; j < D; j++) {
        const xhat = (xd[xo + r * D + j] - mu) * rs;
        sg += gh(r, j);
        sgx += gh(r, j) * xhat;
        sw[j] += gd[go + r * D + j] * xhat;
        sb[j] += gd[go + r * D + j];
      }
      const a = v.rms ? 0 : sg / D,
        c = sgx / D;
      for (let j = 0; j < D; j++) o[r * D + j] = rs * (gh(r, j) - a - (xd[xo + r * D + j] - mu) * rs * c);
    }
    if (dw) outData(dw).set(sw);
    if (db) outData(db).set(sb);
  },
  webgpu: rowVariants(rowShape, ({ v, x, mean, rstd, g, w, dx, dw, db, nRows, D }, variant) => {
    const params: NormParamGrads = db ? 'wb' : dw ? 'w' : 'none';
    // Many rows are summed in chunks (in parallel), and the chunks' partial sums after.
    const nChunks = dw ? paramGradChunks(nRows, hardware()) : 1;
    // Chunked partial sums stay in f32 until their sum is stored in the gradient's dtype.
    const [pw, pb] = [dw, db].map((t) => (t && nChunks > 1 ? empty(t.device, statDtype(t.dtype), [nChunks, D]) : t));
    // One column per invocation: a block of columns is the invocations that share a row (rowStride).
    const colBlocks = dw ? Math.ceil(D / rowStride(variant)) : 0;
    const items = colBlocks * nChunks + nRows;
    const p = NB.pack({
      NITEMS: items,
      ROWS: nRows,
      D,
      XOFF: x.offset,
      GOFF: g.offset,
      WOFF: w?.offset,
      COL_BLOCKS: colBlocks,
      NCHUNKS: nChunks,
      CHUNK: Math.ceil(nRows / nChunks),
    });
    const [t, tp] = [storageTypeOf(x.dtype), storageTypeOf((pw ?? dx).dtype)];
    const key = `fused:normBackward:${normKey({ ...v, hasBias: false, residual: false })}:${params}:${variant}:${t}:${tp}`;
    const views = [dx, ...(pw ? [pw] : []), ...(pb ? [pb] : []), x, mean, rstd, g, ...(w ? [w] : [])];
    launch(
      v.rms ? 'rmsNormBackward' : 'layerNormBackward',
      key,
      () => normBackwardSource(v, variant, params, t, tp),
      p,
      views,
      rowGrid(variant, items),
    );
    if (nChunks > 1)
      [
        [pw, dw],
        [pb, db],
      ].forEach(([partial, out]) => partial && out && sumChunks(partial, out));
  }),
});

/** dx, and the parameter gradients `params` asks for (null otherwise). */
function normRowsBackward(
  v: NormVariant,
  x: Tensor,
  mean: Tensor,
  rstd: Tensor,
  g: Tensor,
  w: Tensor | null,
  params: NormParamGrads,
): [Tensor, Tensor | null, Tensor | null] {
  const D = x.shape[x.rank - 1];
  const nRows = numel(x.shape.slice(0, -1));
  const dx = empty(x.device, x.dtype, x.shape);
  const dw = params === 'none' ? null : empty(x.device, x.dtype, [D]);
  const db = params === 'wb' ? empty(x.device, x.dtype, [D]) : null;
  if (D > 0 && (nRows > 0 || dw))
    dispatch(normRowsBackwardKernel, x.device, { v, x, mean, rstd, g, w, dx, dw, db, nRows, D });
  return [dx, dw, db];
}

function checkArgs(op: string, x: Tensor, params: [string, Tensor | null | undefined][]): void {
  argTensor(op, 'x', x);
  if (!isFloat(x.dtype)) throw new OpError(op, `needs a float tensor, got ${x.dtype}`);
  if (x.rank < 1) throw new OpError(op, 'needs a tensor of rank ≥ 1 (it normalises the last axis)');
  const D = x.shape[x.rank - 1];
  for (const [name, p] of params) {
    if (!p) continue;
    argTensor(op, name, p);
    if (p.rank !== 1 || p.shape[0] !== D)
      throw new OpError(
        op,
        `${name} must have shape [${D}] (the last axis of x ${shapeStr(x.shape)}), got ${shapeStr(p.shape)}`,
      );
    if (p.device !== x.device || p.dtype !== x.dtype)
      throw new OpError(op, `${name} is ${p.dtype} on ${p.device} but x is ${x.dtype} on ${x.device}`);
  }
}

function checkResidual(op: string, x: Tensor, given: unknown): void {
  const residual = argTensor(op, 'residual', given);
  if (residual.shape.length !== x.shape.length || residual.shape.some((d, i) => d !== x.shape[i])) {
    throw new OpError(
      op,
      `residual must have the shape of x ${shapeStr(x.shape)}, got ${shapeStr(residual.shape)}; broadcast it first, or add and normalise separately`,
    );
  }
  if (residual.device !== x.device || residual.dtype !== x.dtype)
    throw new OpError(op, `residual is ${residual.dtype} on ${residual.device} but x is ${x.dtype} on ${x.device}`);
}

interface NormInfo {
  readonly v: NormVariant;
  readonly needW: boolean;
  readonly needB: boolean;
}
type NormArgs = [x: Tensor, residual: Tensor | null, weight: Tensor | null, bias: Tensor | null, eps: number];

/**
 * The four norms as records, one signature: x, the residual (residual forms), weight, bias (layer norms),
 * eps. Each returns { sum, normed }: for the residual forms sum is h = x + residual, its own graph node
 * (its gradient passes unchanged to x and residual) and the norm's input, so gradients reaching h from
 * later layers and from the norm add up there, as in the unfused form; otherwise sum is x.
 */
const normOp = (rms: boolean, residualForm: boolean) => {
  const name = opName({ rms, residual: residualForm, hasWeight: false, hasBias: false });
  return defineOp<NormArgs, NormInfo, AddNormResult>({
    name,
    autocast: 'lower',
    check: (x, residual, weight, bias) => {
      checkArgs(
        name,
        x,
        rms
          ? [['weight', weight]]
          : [
              ['weight', weight],
              ['bias', bias],
            ],
      );
      if (residualForm) checkResidual(name, x, residual);
    },
    forward: (x, residual, weight, bias, eps) => {
      const v: NormVariant = { rms, hasWeight: !!weight, hasBias: !!bias, residual: !!residual };
      // The kernels read contiguous operands; copies made here are freed once the graph holds them.
      const dense = (t: Tensor) => (t.isContiguous() ? t : noGrad(() => t.contiguous()));
      const xc = dense(x);
      const [rc, wc, bc] = [residual, weight, bias].map((t) => t && dense(t));
      const given = [x, residual, weight, bias];
      const copies = [xc, rc, wc, bc].filter((t, i): t is Tensor => t !== null && t !== given[i]);
      const D = x.shape[x.rank - 1];
      const nRows = numel(x.shape.slice(0, -1));
      const y = empty(x.device, x.dtype, x.shape);
      const mean = empty(x.device, statDtype(x.dtype), [nRows]);
      const rstd = empty(x.device, statDtype(x.dtype), [nRows]);
      const h = rc ? empty(x.device, x.dtype, x.shape) : null;
      if (nRows > 0 && D > 0)
        dispatch(normRowsKernel, x.device, { v, x: xc, residual: rc, w: wc, b: bc, eps, y, mean, rstd, h, nRows, D });
      const sum = h && residual ? record('add', h, [x, residual], (g) => [g, g]) : x;
      return {
        out: y,
        inputs: [sum, ...(weight ? [weight] : []), ...(bias ? [bias] : [])],
        saved: [h ?? xc, mean, rstd, ...(wc ? [wc] : [])],
        info: { v, needW: weight?.requiresGrad ?? false, needB: bias?.requiresGrad ?? false },
        after: (normed) => {
          [...copies, mean, rstd].forEach((t) => t.dispose());
          return { sum, normed };
        },
      };
    },
    backward: (g, [xs, ms, rs, ws], { v, needW, needB }) =>
      withContiguous([g], ([gc]) => {
        const [dx, dw, db] = normRowsBackward(
          v,
          xs,
          ms,
          rs,
          gc,
          v.hasWeight ? ws : null,
          needB ? 'wb' : needW ? 'w' : 'none',
        );
        if (dw && !needW) dw.dispose(); // computed alongside the bias gradient
        return [dx, ...(v.hasWeight ? [needW ? dw : null] : []), ...(v.hasBias ? [db] : [])];
      }),
    kernels: [normRowsKernel, normRowsBackwardKernel],
    tolerance: { float32: NORM_LONG_ROW_TOLERANCE, float16: NORM_FLOAT16_TOLERANCE },
  });
};
const layerNormOp = normOp(false, false);
const rmsNormOp = normOp(true, false);
const addLayerNormOp = normOp(false, true);
const addRmsNormOp = normOp(true, true);

/** (x − mean) / sqrt(var + eps) · weight + bias over the last axis (biased variance, as torch). */
export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return layerNormOp(x, null, weight ?? null, bias ?? null, eps).normed;
}

/** x / sqrt(mean(x²) + eps) · weight over the last axis. */
export function rmsNorm(x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor {
  return rmsNormOp(x, null, weight ?? null, null, eps).normed;
}

/** A residual add and the normalisation after it, in one kernel: `sum` = x + residual, `normed` = norm(sum). */
export interface AddNormResult {
  sum: Tensor;
  normed: Tensor;
}

/** sum = x + residual and layerNorm(sum, weight, bias) in one forward kernel (the pre-norm decoder's residual site). */
export function addLayerNorm(
  x: Tensor,
  residual: Tensor,
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): AddNormResult {
  return addLayerNormOp(x, residual, weight ?? null, bias ?? null, eps);
}

/** sum = x + residual and rmsNorm(sum, weight) in one forward kernel (the pre-norm decoder's residual site). */
export function addRmsNorm(x: Tensor, residual: Tensor, weight?: Tensor | null, eps = 1e-6): AddNormResult {
  return addRmsNormOp(x, residual, weight ?? null, null, eps);
}
