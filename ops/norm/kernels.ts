// WGSL for layerNorm and rmsNorm over the contiguous last axis: a fused forward that also writes
// each row's mean and 1/std for the backward, a fused row-wise dx kernel, and a column kernel for
// the weight/bias gradients (partial sums over row chunks, reduced afterwards).
import { itemMain, kernelHeader, rowMain, type RowVariant } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';

export interface NormVariant {
  /** rmsNorm: no mean subtraction, no bias. */
  rms: boolean;
  hasWeight: boolean;
  hasBias: boolean;
}

export const normKey = (v: NormVariant): string => `${v.rms ? 'rms' : 'ln'}${v.hasWeight ? 'W' : ''}${v.hasBias ? 'B' : ''}`;

/** Forward params. Outputs y [nRows, D], mean [nRows], rstd [nRows]. */
export const NF = uniformLayout({ NROWS: 'u32', D: 'u32', XOFF: 'u32', WOFF: 'u32', BOFF: 'u32', EPS: 'f32' });

export function normForwardSource(v: NormVariant, variant: RowVariant): string {
  const bindings = ['var<storage, read_write> y: array<f32>', 'var<storage, read_write> mean_out: array<f32>', 'var<storage, read_write> rstd_out: array<f32>', 'var<storage, read> x: array<f32>'];
  if (v.hasWeight) bindings.push('var<storage, read> w: array<f32>');
  if (v.hasBias) bindings.push('var<storage, read> b: array<f32>');
  const meanCode = v.rms ? 'let mu = 0.0;' : `var sx = 0.0;
  for (var j = j0; j < D; j += js) { sx += x[xb + j]; }
  let mu = red_sum(sx, lid) / f32(D);`;
  let yExpr = '(x[xb + j] - mu) * rstd';
  if (v.hasWeight) yExpr = `${yExpr} * w[pu(${NF.WOFF}u) + j]`;
  if (v.hasBias) yExpr = `${yExpr} + b[pu(${NF.BOFF}u) + j]`;
  return `${kernelHeader(bindings)}
${rowMain(variant, `
  let D = pu(${NF.D}u);
  let xb = pu(${NF.XOFF}u) + row * D;
  ${meanCode}
  // Two passes (mean, then squared deviations) for accuracy.
  var sq = 0.0;
  for (var j = j0; j < D; j += js) { let d = x[xb + j] - mu; sq += d * d; }
  let rstd = inverseSqrt(red_sum(sq, lid) / f32(D) + pf(${NF.EPS}u));
  for (var j = j0; j < D; j += js) { y[row * D + j] = ${yExpr}; }
  if (lid == 0u) { mean_out[row] = mu; rstd_out[row] = rstd; }`)}`;
}

/** Backward (dx) params. mean/rstd are the forward's (offset 0). */
export const NB = uniformLayout({ NROWS: 'u32', D: 'u32', XOFF: 'u32', GOFF: 'u32', WOFF: 'u32' });

/** dx = rstd (ĝ − mean(ĝ) − x̂ mean(ĝ x̂)) with ĝ = g·w, x̂ = (x − μ)·rstd (rms: no mean(ĝ) term). */
export function normBackwardSource(v: NormVariant, variant: RowVariant): string {
  const bindings = ['var<storage, read_write> dx: array<f32>', 'var<storage, read> x: array<f32>', 'var<storage, read> mean: array<f32>', 'var<storage, read> rstd: array<f32>', 'var<storage, read> g: array<f32>'];
  if (v.hasWeight) bindings.push('var<storage, read> w: array<f32>');
  const gh = v.hasWeight ? `g[gb + j] * w[pu(${NB.WOFF}u) + j]` : 'g[gb + j]';
  return `${kernelHeader(bindings)}
${rowMain(variant, `
  let D = pu(${NB.D}u);
  let xb = pu(${NB.XOFF}u) + row * D;
  let gb = pu(${NB.GOFF}u) + row * D;
  let mu = mean[row];
  let r = rstd[row];
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = j0; j < D; j += js) {
    let gh = ${gh};
    sg += gh;
    sgx += gh * (x[xb + j] - mu) * r;
  }
  let a = ${v.rms ? '0.0' : 'red_sum(sg, lid) / f32(D)'};
  let c = red_sum(sgx, lid) / f32(D);
  for (var j = j0; j < D; j += js) {
    dx[row * D + j] = r * (${gh} - a - (x[xb + j] - mu) * r * c);
  }`)}`;
}

/** Param-grad params (CHUNK = rows per chunk). Outputs partial dw (and db) [nChunks, D]. */
export const NP = uniformLayout({ NROWS: 'u32', D: 'u32', XOFF: 'u32', GOFF: 'u32', CHUNK: 'u32', NCHUNKS: 'u32' });

export function normParamGradSource(hasBias: boolean): string {
  const bindings = ['var<storage, read_write> dw: array<f32>'];
  if (hasBias) bindings.push('var<storage, read_write> db: array<f32>');
  bindings.push('var<storage, read> x: array<f32>', 'var<storage, read> mean: array<f32>', 'var<storage, read> rstd: array<f32>', 'var<storage, read> g: array<f32>');
  return `${kernelHeader(bindings)}
${itemMain(`
  let D = pu(${NP.D}u);
  if (item >= pu(${NP.NCHUNKS}u) * D) { return; }
  let d = item % D;
  let chunk = item / D;
  let r0 = chunk * pu(${NP.CHUNK}u);
  let r1 = min(pu(${NP.NROWS}u), r0 + pu(${NP.CHUNK}u));
  var sw = 0.0;
  var sb = 0.0;
  for (var r = r0; r < r1; r++) {
    let gv = g[pu(${NP.GOFF}u) + r * D + d];
    sw += gv * (x[pu(${NP.XOFF}u) + r * D + d] - mean[r]) * rstd[r];
    sb += gv;
  }
  dw[item] = sw;
  ${hasBias ? 'db[item] = sb;' : ''}`)}`;
}
