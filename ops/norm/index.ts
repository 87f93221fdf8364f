// layerNorm and rmsNorm over the last axis: fused forward (saving each row's mean and 1/std) and
// fused backward (WGSL in kernels.ts; the cpu path is the same maths in float64). addLayerNorm /
// addRmsNorm also take the residual add before the norm into the forward kernel.
import { record } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { numel, OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { chooseRowVariant, ROW_WG, rowGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { gpuRuntime } from '../../core/device.js';
import { NB, NF, normBackwardSource, normForwardSource, normKey, type NormParamGrads, type NormVariant } from './kernels.js';
import { cpuData, outData, withContiguous } from '../kernelio.js';
import { empty, type Tolerance } from '../util.js';
import { argTensor } from '../../core/args.js';

function checkArgs(op: string, x: Tensor, params: [string, Tensor | null | undefined][]): void {
  argTensor(op, 'x', x);
  if (!isFloat(x.dtype)) throw new OpError(op, `needs a float tensor, got ${x.dtype}`);
  if (x.rank < 1) throw new OpError(op, 'needs a tensor of rank ≥ 1 (it normalises the last axis)');
  const D = x.shape[x.rank - 1];
  for (const [name, p] of params) {
    if (!p) continue;
    argTensor(op, name, p);
    if (p.rank !== 1 || p.shape[0] !== D) throw new OpError(op, `${name} must have shape [${D}] (the last axis of x ${shapeStr(x.shape)}), got ${shapeStr(p.shape)}`);
    if (p.device !== x.device || p.dtype !== x.dtype) throw new OpError(op, `${name} is ${p.dtype} on ${p.device} but x is ${x.dtype} on ${x.device}`);
  }
}

/**
 * y = (x − μ)·rstd·w + b per row, plus μ and rstd (μ = 0 for rms). With a residual rc (same shape),
 * the row is h = x + rc instead, and h is returned too.
 */
function normForward(v: NormVariant, xc: Tensor, w: Tensor | null, b: Tensor | null, eps: number, rc: Tensor | null): [Tensor, Tensor, Tensor, Tensor | null] {
  const D = xc.shape[xc.rank - 1];
  const nRows = numel(xc.shape.slice(0, -1));
  const y = empty(xc.device, xc.dtype, xc.shape);
  const mean = empty(xc.device, xc.dtype, [nRows]);
  const rstd = empty(xc.device, xc.dtype, [nRows]);
  const h = rc ? empty(xc.device, xc.dtype, xc.shape) : null;
  if (xc.device === 'cpu') {
    if (h && rc) {
      // h is stored (rounded to its dtype) first and normalised from there, as the unfused add + norm.
      const { data: ad, off: ao } = cpuData(xc);
      const { data: rd, off: ro } = cpuData(rc);
      const hd = outData(h);
      for (let i = 0; i < nRows * D; i++) hd[i] = ad[ao + i] + rd[ro + i];
    }
    const { data: xd, off: xo } = cpuData(h ?? xc);
    const wd = w && cpuData(w), bd = b && cpuData(b);
    const yo = outData(y), mo = outData(mean), ro = outData(rstd);
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
  } else if (nRows > 0 && D > 0) {
    const variant = chooseRowVariant(nRows, D);
    const p = NF.pack({ NROWS: nRows, D, XOFF: xc.offset, WOFF: w?.offset, BOFF: b?.offset, EPS: eps, ROFF: rc?.offset });
    const views = [y, mean, rstd, ...(h ? [h] : []), xc, ...(rc ? [rc] : []), ...(w ? [w] : []), ...(b ? [b] : [])];
    launch(opName(v), `fused:norm:${normKey(v)}:${variant}`, () => normForwardSource(v, variant), p, views, rowGrid(variant, nRows));
  }
  return [y, mean, rstd, h];
}

const opName = (v: NormVariant) => (v.residual ? (v.rms ? 'addRmsNorm' : 'addLayerNorm') : v.rms ? 'rmsNorm' : 'layerNorm');

/**
 * dx, and dw = Σ_rows g·x̂ and db = Σ_rows g when asked for (one kernel on webgpu). Parameter
 * gradients that are not asked for come back null.
 */
function normBackward(v: NormVariant, xc: Tensor, mean: Tensor, rstd: Tensor, gc: Tensor, w: Tensor | null, params: NormParamGrads): [Tensor, Tensor | null, Tensor | null] {
  const D = xc.shape[xc.rank - 1];
  const nRows = numel(xc.shape.slice(0, -1));
  const dx = empty(xc.device, xc.dtype, xc.shape);
  // On webgpu, many rows are summed in chunks (in parallel), and the chunks' partial sums after.
  const nChunks = xc.device === 'cpu' || params === 'none' ? 1 : paramGradChunks(nRows);
  const dw = params === 'none' ? null : empty(xc.device, xc.dtype, nChunks > 1 ? [nChunks, D] : [D]);
  const db = params === 'wb' ? empty(xc.device, xc.dtype, nChunks > 1 ? [nChunks, D] : [D]) : null;
  if (xc.device === 'cpu') {
    const { data: xd, off: xo } = cpuData(xc);
    const { data: gd, off: go } = cpuData(gc);
    const md = cpuData(mean), rd = cpuData(rstd), wd = w && cpuData(w);
    const o = outData(dx);
    const sw = new Float64Array(D), sb = new Float64Array(D);
    const gh = (r: number, j: number) => gd[go + r * D + j] * (wd ? wd.data[wd.off + j] : 1);
    for (let r = 0; r < nRows; r++) {
      const mu = md.data[md.off + r], rs = rd.data[rd.off + r];
      let sg = 0, sgx = 0;
      for (let j = 0; j < D; j++) {
        const xhat = (xd[xo + r * D + j] - mu) * rs;
        sg += gh(r, j);
        sgx += gh(r, j) * xhat;
        sw[j] += gd[go + r * D + j] * xhat;
        sb[j] += gd[go + r * D + j];
      }
      const a = v.rms ? 0 : sg / D, c = sgx / D;
      for (let j = 0; j < D; j++) o[r * D + j] = rs * (gh(r, j) - a - (xd[xo + r * D + j] - mu) * rs * c);
    }
    if (dw) outData(dw).set(sw);
    if (db) outData(db).set(sb);
  } else if (D > 0 && (nRows > 0 || dw)) {
    const variant = chooseRowVariant(nRows, D);
    // One column per invocation: a block of columns is one invocation ('thread') or one workgroup ('group').
    const colBlocks = dw ? Math.ceil(D / (variant === 'thread' ? 1 : ROW_WG)) : 0;
    const chunk = Math.ceil(nRows / nChunks);
    const items = colBlocks * nChunks + nRows;
    const p = NB.pack({ NITEMS: items, ROWS: nRows, D, XOFF: xc.offset, GOFF: gc.offset, WOFF: w?.offset, COL_BLOCKS: colBlocks, NCHUNKS: nChunks, CHUNK: chunk });
    const key = `fused:normBackward:${normKey({ ...v, hasBias: false, residual: false })}:${params}:${variant}`;
    const views = [dx, ...(dw ? [dw] : []), ...(db ? [db] : []), xc, mean, rstd, gc, ...(w ? [w] : [])];
    launch(v.rms ? 'rmsNormBackward' : 'layerNormBackward', key, () => normBackwardSource(v, variant, params), p, views, rowGrid(variant, items));
  }
  const total = (t: Tensor | null) => (t && nChunks > 1 ? t.sum(0) : t);
  return [dx, total(dw), total(db)];
}

/**
 * Chunks of rows for the parameter gradients. Software adapters take all rows in one chunk (one
 * dispatch): on lavapipe that cost the same CPU time as 16 chunks and a sum, at [512, 64] and
 * [4096, 256]. Hardware GPUs sum chunks of HW_CHUNK_ROWS rows in parallel, and the partial sums after.
 * DAWNGRAD_NORM_CHUNK_ROWS=n forces chunks of n rows (benchmarks, tests).
 */
function paramGradChunks(nRows: number): number {
  const forced = Number(process.env.DAWNGRAD_NORM_CHUNK_ROWS);
  const rows = forced > 0 ? forced : gpuRuntime()?.isSoftware ?? true ? Infinity : HW_CHUNK_ROWS;
  return Math.max(1, Math.ceil(nRows / rows));
}
const HW_CHUNK_ROWS = 1024;

/**
 * The normalisation of x, or with a residual of h = x + residual; `sum` is what was normalised (x, or
 * h). h is its own graph node (its gradient passes unchanged to x and residual) and the norm's input,
 * so gradients reaching h from later layers and from the norm add up there, as in the unfused form.
 */
function norm(v: NormVariant, x: Tensor, w: Tensor | null, b: Tensor | null, eps: number, residual: Tensor | null = null): AddNormResult {
  const needW = w?.requiresGrad ?? false;
  const needB = b?.requiresGrad ?? false;
  const optional = [residual, w, b].filter((t): t is Tensor => t !== null);
  return withContiguous([x, ...optional], ([xc, ...rest]) => {
    const [rc, wc, bc] = [residual, w, b].map((t) => (t ? rest[optional.indexOf(t)] : null));
    const [y, mean, rstd, h] = normForward(v, xc, wc, bc, eps, rc);
    const sum = h && residual ? record('add', h, [x, residual], (g) => [g, g]) : x;
    const inputs = [sum, ...(w ? [w] : []), ...(b ? [b] : [])];
    const params: NormParamGrads = needB ? 'wb' : needW ? 'w' : 'none';
    const normed = record(v.rms ? 'rmsNorm' : 'layerNorm', y, inputs, (g, [xs, ms, rs, ws]) => withContiguous([g], ([gc]) => {
      const [dx, dw, db] = normBackward(v, xs, ms, rs, gc, w ? ws : null, params);
      if (dw && !needW) dw.dispose(); // computed alongside the bias gradient
      return [dx, ...(w ? [needW ? dw : null] : []), ...(b ? [db] : [])];
    }), [h ?? xc, mean, rstd, ...(wc ? [wc] : [])]);
    mean.dispose();
    rstd.dispose();
    return { normed, sum };
  });
}

/** webgpu float32 vs cpu float64 on long rows (5000) and many rows (700, long weight-gradient sums); other shapes use the checks' defaults. */
export const NORM_LONG_ROW_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-3 };

/** (x − mean) / sqrt(var + eps) · weight + bias over the last axis (biased variance, as torch). */
export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  checkArgs('layerNorm', x, [['weight', weight], ['bias', bias]]);
  return norm({ rms: false, hasWeight: !!weight, hasBias: !!bias, residual: false }, x, weight ?? null, bias ?? null, eps).normed;
}

/** x / sqrt(mean(x²) + eps) · weight over the last axis. */
export function rmsNorm(x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor {
  checkArgs('rmsNorm', x, [['weight', weight]]);
  return norm({ rms: true, hasWeight: !!weight, hasBias: false, residual: false }, x, weight ?? null, null, eps).normed;
}

/** A residual add and the normalisation after it, in one kernel: `sum` = x + residual, `normed` = norm(sum). */
export interface AddNormResult {
  sum: Tensor;
  normed: Tensor;
}

function checkResidual(op: string, x: Tensor, residual: Tensor): void {
  argTensor(op, 'residual', residual);
  if (residual.shape.length !== x.shape.length || residual.shape.some((d, i) => d !== x.shape[i])) {
    throw new OpError(op, `residual must have the shape of x ${shapeStr(x.shape)}, got ${shapeStr(residual.shape)}; broadcast it first, or add and normalise separately`);
  }
  if (residual.device !== x.device || residual.dtype !== x.dtype) throw new OpError(op, `residual is ${residual.dtype} on ${residual.device} but x is ${x.dtype} on ${x.device}`);
}

/** sum = x + residual and layerNorm(sum, weight, bias) in one forward kernel (the pre-norm decoder's residual site). */
export function addLayerNorm(x: Tensor, residual: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): AddNormResult {
  checkArgs('addLayerNorm', x, [['weight', weight], ['bias', bias]]);
  checkResidual('addLayerNorm', x, residual);
  return norm({ rms: false, hasWeight: !!weight, hasBias: !!bias, residual: true }, x, weight ?? null, bias ?? null, eps, residual);
}

/** sum = x + residual and rmsNorm(sum, weight) in one forward kernel (the pre-norm decoder's residual site). */
export function addRmsNorm(x: Tensor, residual: Tensor, weight?: Tensor | null, eps = 1e-6): AddNormResult {
  checkArgs('addRmsNorm', x, [['weight', weight]]);
  checkResidual('addRmsNorm', x, residual);
  return norm({ rms: true, hasWeight: !!weight, hasBias: false, residual: true }, x, weight ?? null, null, eps, residual);
}
