// layerNorm and rmsNorm over the last axis: fused forward (saving each row's mean and 1/std) and
// fused backward (WGSL in kernels.ts; the cpu path is the same maths in float64).
import { record } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { numel, OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { chooseRowVariant, itemGrid, rowGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { NB, NF, normBackwardSource, normForwardSource, normKey, normParamGradSource, NP, type NormVariant } from './kernels.js';
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

/** y = (x − μ)·rstd·w + b per row, plus μ and rstd (μ = 0 for rms). */
function normForward(v: NormVariant, xc: Tensor, w: Tensor | null, b: Tensor | null, eps: number): [Tensor, Tensor, Tensor] {
  const D = xc.shape[xc.rank - 1];
  const nRows = numel(xc.shape.slice(0, -1));
  const y = empty(xc.device, xc.dtype, xc.shape);
  const mean = empty(xc.device, xc.dtype, [nRows]);
  const rstd = empty(xc.device, xc.dtype, [nRows]);
  if (xc.device === 'cpu') {
    const { data: xd, off: xo } = cpuData(xc);
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
    const p = NF.pack({ NROWS: nRows, D, XOFF: xc.offset, WOFF: w?.offset, BOFF: b?.offset, EPS: eps });
    const views = [y, mean, rstd, xc, ...(w ? [w] : []), ...(b ? [b] : [])];
    launch(v.rms ? 'rmsNorm' : 'layerNorm', `fused:norm:${normKey(v)}:${variant}`, () => normForwardSource(v, variant), p, views, rowGrid(variant, nRows));
  }
  return [y, mean, rstd];
}

function normBackwardInput(v: NormVariant, xc: Tensor, mean: Tensor, rstd: Tensor, gc: Tensor, w: Tensor | null): Tensor {
  const D = xc.shape[xc.rank - 1];
  const nRows = numel(xc.shape.slice(0, -1));
  const dx = empty(xc.device, xc.dtype, xc.shape);
  if (xc.device === 'cpu') {
    const { data: xd, off: xo } = cpuData(xc);
    const { data: gd, off: go } = cpuData(gc);
    const md = cpuData(mean), rd = cpuData(rstd), wd = w && cpuData(w);
    const o = outData(dx);
    const gh = (r: number, j: number) => gd[go + r * D + j] * (wd ? wd.data[wd.off + j] : 1);
    for (let r = 0; r < nRows; r++) {
      const mu = md.data[md.off + r], rs = rd.data[rd.off + r];
      let sg = 0, sgx = 0;
      for (let j = 0; j < D; j++) {
        sg += gh(r, j);
        sgx += gh(r, j) * (xd[xo + r * D + j] - mu) * rs;
      }
      const a = v.rms ? 0 : sg / D, c = sgx / D;
      for (let j = 0; j < D; j++) o[r * D + j] = rs * (gh(r, j) - a - (xd[xo + r * D + j] - mu) * rs * c);
    }
  } else if (nRows > 0 && D > 0) {
    const variant = chooseRowVariant(nRows, D);
    const p = NB.pack({ NROWS: nRows, D, XOFF: xc.offset, GOFF: gc.offset, WOFF: w?.offset });
    const key = `fused:normBackward:${normKey({ ...v, hasBias: false })}:${variant}`;
    launch(v.rms ? 'rmsNormBackward' : 'layerNormBackward', key, () => normBackwardSource(v, variant), p, [dx, xc, mean, rstd, gc, ...(w ? [w] : [])], rowGrid(variant, nRows));
  }
  return dx;
}

/** dw = Σ_rows g·x̂ and db = Σ_rows g. */
function normBackwardParams(xc: Tensor, mean: Tensor, rstd: Tensor, gc: Tensor, withBias: boolean): [Tensor, Tensor | null] {
  const D = xc.shape[xc.rank - 1];
  const nRows = numel(xc.shape.slice(0, -1));
  if (xc.device === 'cpu') {
    const dw = empty('cpu', xc.dtype, [D]);
    const db = withBias ? empty('cpu', xc.dtype, [D]) : null;
    const { data: xd, off: xo } = cpuData(xc);
    const { data: gd, off: go } = cpuData(gc);
    const md = cpuData(mean), rd = cpuData(rstd);
    const sw = new Float64Array(D), sb = new Float64Array(D);
    for (let r = 0; r < nRows; r++) {
      const mu = md.data[md.off + r], rs = rd.data[rd.off + r];
      for (let j = 0; j < D; j++) {
        const gv = gd[go + r * D + j];
        sw[j] += gv * (xd[xo + r * D + j] - mu) * rs;
        sb[j] += gv;
      }
    }
    outData(dw).set(sw);
    if (db) outData(db).set(sb);
    return [dw, db];
  }
  if (nRows === 0) return [xc.fullLike(0, [D]), withBias ? xc.fullLike(0, [D]) : null];
  // Enough (column, row-chunk) pairs to fill the machine; the chunks' partial sums are reduced after.
  const nChunks = Math.max(1, Math.min(nRows, 256, Math.ceil(4096 / Math.max(D, 1))));
  const chunk = Math.ceil(nRows / nChunks);
  const pw = empty(xc.device, xc.dtype, [nChunks, D]);
  const pb = withBias ? empty(xc.device, xc.dtype, [nChunks, D]) : null;
  if (nRows > 0 && D > 0) {
    const p = NP.pack({ NROWS: nRows, D, XOFF: xc.offset, GOFF: gc.offset, CHUNK: chunk, NCHUNKS: nChunks });
    launch('normParamGrad', `fused:normParamGrad:${withBias}`, () => normParamGradSource(withBias), p, [pw, ...(pb ? [pb] : []), xc, mean, rstd, gc], itemGrid(nChunks * D));
  }
  return [pw.sum(0), pb && pb.sum(0)];
}

function norm(v: NormVariant, x: Tensor, w: Tensor | null, b: Tensor | null, eps: number): Tensor {
  const needW = w?.requiresGrad ?? false;
  const needB = b?.requiresGrad ?? false;
  return withContiguous([x, ...(w ? [w] : []), ...(b ? [b] : [])], ([xc, ...rest]) => {
    const wc = w ? rest[0] : null;
    const bc = b ? rest[w ? 1 : 0] : null;
    const [y, mean, rstd] = normForward(v, xc, wc, bc, eps);
    const inputs = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
    const out = record(v.rms ? 'rmsNorm' : 'layerNorm', y, inputs, (g, [xs, ms, rs, ws]) => withContiguous([g], ([gc]) => {
      const dx = normBackwardInput(v, xs, ms, rs, gc, w ? ws : null);
      const [dw, db] = needW || needB ? normBackwardParams(xs, ms, rs, gc, needB) : [null, null];
      return [dx, ...(w ? [needW ? dw : null] : []), ...(b ? [db] : [])];
    }), [xc, mean, rstd, ...(wc ? [wc] : [])]);
    mean.dispose();
    rstd.dispose();
    return out;
  });
}

/** webgpu float32 vs cpu float64 on long rows (5000) and many rows (700, chunked weight grads); other shapes use the checks' defaults. */
export const NORM_LONG_ROW_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-3 };

/** (x − mean) / sqrt(var + eps) · weight + bias over the last axis (biased variance, as torch). */
export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  checkArgs('layerNorm', x, [['weight', weight], ['bias', bias]]);
  return norm({ rms: false, hasWeight: !!weight, hasBias: !!bias }, x, weight ?? null, bias ?? null, eps);
}

/** x / sqrt(mean(x²) + eps) · weight over the last axis. */
export function rmsNorm(x: Tensor, weight?: Tensor | null, eps = 1e-6): Tensor {
  checkArgs('rmsNorm', x, [['weight', weight]]);
  return norm({ rms: true, hasWeight: !!weight, hasBias: false }, x, weight ?? null, null, eps);
}
