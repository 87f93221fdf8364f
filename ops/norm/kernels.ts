// WGSL for layerNorm and rmsNorm over the contiguous last axis: a fused forward that also writes
// each row's mean and 1/std for the backward, and one backward kernel for dx and the weight/bias
// gradients.
import { rowKernel, type RowVariant } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import type { WType } from '../../core/webgpu/wgsl.js';

export interface NormVariant {
  /** rmsNorm: no mean subtraction, no bias. */
  rms: boolean;
  hasWeight: boolean;
  hasBias: boolean;
  /** Residual form: normalises h = x + residual and also writes h (one kernel for the add and the norm). */
  residual: boolean;
}

export const normKey = (v: NormVariant): string =>
  `${v.rms ? 'rms' : 'ln'}${v.hasWeight ? 'W' : ''}${v.hasBias ? 'B' : ''}${v.residual ? 'R' : ''}`;

/** Forward params. Outputs y [nRows, D], mean [nRows], rstd [nRows], and in the residual form h = x + residual [nRows, D]. */
export const NF = uniformLayout({
  NROWS: 'u32',
  D: 'u32',
  XOFF: 'u32',
  WOFF: 'u32',
  BOFF: 'u32',
  EPS: 'f32',
  ROFF: 'u32',
});

/**
 * `t`: the storage type of x, residual, w, b, y and h (f16 values are widened on load, the statistics
 * are computed in f32 and mean/rstd stored as f32).
 */
export function normForwardSource(v: NormVariant, variant: RowVariant, t: WType): string {
  const bindings = [
    `var<storage, read_write> y: array<${t}>`,
    'var<storage, read_write> mean_out: array<f32>',
    'var<storage, read_write> rstd_out: array<f32>',
  ];
  if (v.residual) bindings.push(`var<storage, read_write> h: array<${t}>`);
  bindings.push(`var<storage, read> x: array<${t}>`);
  if (v.residual) bindings.push(`var<storage, read> res: array<${t}>`);
  if (v.hasWeight) bindings.push(`var<storage, read> w: array<${t}>`);
  if (v.hasBias) bindings.push(`var<storage, read> b: array<${t}>`);
  // In the residual form each invocation first writes its elements of h, then reads back only those
  // (same j0/js stride), so no barrier is needed; it normalises h as stored (rounded to t).
  const xv = v.residual ? 'f32(h[row * D + j])' : 'f32(x[xb + j])';
  const sumCode = v.residual
    ? `let rb = pu(${NF.ROFF}u) + row * D;
  for (var j = j0; j < D; j += js) { h[row * D + j] = ${t}(f32(x[xb + j]) + f32(res[rb + j])); }`
    : '';
  const meanCode = v.rms
    ? 'let mu = 0.0;'
    : `var sx = 0.0;
  for (var j = j0; j < D; j += js) { sx += ${xv}; }
  let mu = red_sum(sx, lid) / f32(D);`;
  let yExpr = `(${xv} - mu) * rstd`;
  if (v.hasWeight) yExpr = `${yExpr} * f32(w[pu(${NF.WOFF}u) + j])`;
  if (v.hasBias) yExpr = `${yExpr} + f32(b[pu(${NF.BOFF}u) + j])`;
  return rowKernel(
    variant,
    bindings,
    `
  let D = pu(${NF.D}u);
  let xb = pu(${NF.XOFF}u) + row * D;
  ${sumCode}
  ${meanCode}
  // Two passes (mean, then squared deviations) for accuracy.
  var sq = 0.0;
  for (var j = j0; j < D; j += js) { let d = ${xv} - mu; sq += d * d; }
  let rstd = inverseSqrt(red_sum(sq, lid) / f32(D) + pf(${NF.EPS}u));
  for (var j = j0; j < D; j += js) { y[row * D + j] = ${t}(${yExpr}); }
  if (lid == 0u) { mean_out[row] = mu; rstd_out[row] = rstd; }`,
  );
}

/**
 * Backward params. Items (rows of rowKernel, word 0 = NITEMS) are first the column items of the weight
 * and bias gradients (COL_BLOCKS blocks of columns × NCHUNKS chunks of CHUNK rows; none when no
 * parameter needs a gradient), then the ROWS rows of dx. mean/rstd are the forward's (offset 0).
 */
export const NB = uniformLayout({
  NITEMS: 'u32',
  ROWS: 'u32',
  D: 'u32',
  XOFF: 'u32',
  GOFF: 'u32',
  WOFF: 'u32',
  COL_BLOCKS: 'u32',
  NCHUNKS: 'u32',
  CHUNK: 'u32',
});

/** Which parameter gradients the backward kernel also writes. */
export type NormParamGrads = 'none' | 'w' | 'wb';

/**
 * dx and the parameter gradients in one dispatch. Row items: dx = rstd (ĝ − mean(ĝ) − x̂ mean(ĝ x̂))
 * with ĝ = g·w, x̂ = (x − μ)·rstd (rms: no mean(ĝ) term). Column items (one column and one chunk of
 * rows per invocation): dw = Σ_rows g·x̂, db = Σ_rows g, as [NCHUNKS, D] partial sums (the gradients
 * themselves when NCHUNKS = 1). The columns come first so their longer loops start early. Both kinds
 * of items only read x, g, mean and rstd.
 */
/** `t`: the storage type of x, g, w and dx; `tp` that of dw and db (f32 partial sums when they are chunked). */
export function normBackwardSource(
  v: NormVariant,
  variant: RowVariant,
  params: NormParamGrads,
  t: WType,
  tp: WType,
): string {
  const bindings = [`var<storage, read_write> dx: array<${t}>`];
  if (params !== 'none') bindings.push(`var<storage, read_write> dw: array<${tp}>`);
  if (params === 'wb') bindings.push(`var<storage, read_write> db: array<${tp}>`);
  bindings.push(
    `var<storage, read> x: array<${t}>`,
    'var<storage, read> mean: array<f32>',
    'var<storage, read> rstd: array<f32>',
    `var<storage, read> g: array<${t}>`,
  );
  if (v.hasWeight) bindings.push(`var<storage, read> w: array<${t}>`);
  const gh = v.hasWeight ? `f32(g[gb + j]) * f32(w[pu(${NB.WOFF}u) + j])` : 'f32(g[gb + j])';
  const columns =
    params === 'none'
      ? ''
      : `if (row < colItems) {
    let chunk = row / pu(${NB.COL_BLOCKS}u);
    let d = (row % pu(${NB.COL_BLOCKS}u)) * js + lid;
    if (d < D) {
      var sw = 0.0;
      var sb = 0.0;
      let r1 = min(R, (chunk + 1u) * pu(${NB.CHUNK}u));
      for (var r = chunk * pu(${NB.CHUNK}u); r < r1; r++) {
        let gv = f32(g[pu(${NB.GOFF}u) + r * D + d]);
        sw += gv * (f32(x[pu(${NB.XOFF}u) + r * D + d]) - mean[r]) * rstd[r];
        sb += gv;
      }
      dw[chunk * D + d] = ${tp}(sw);
      ${params === 'wb' ? `db[chunk * D + d] = ${tp}(sb);` : ''}
    }
    return;
  }`;
  return rowKernel(
    variant,
    bindings,
    `
  let D = pu(${NB.D}u);
  let R = pu(${NB.ROWS}u);
  let colItems = pu(${NB.COL_BLOCKS}u) * pu(${NB.NCHUNKS}u);
  ${columns}
  let xrow = row - colItems;
  let xb = pu(${NB.XOFF}u) + xrow * D;
  let gb = pu(${NB.GOFF}u) + xrow * D;
  let mu = mean[xrow];
  let r = rstd[xrow];
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = j0; j < D; j += js) {
    let gh = ${gh};
    sg += gh;
    sgx += gh * (f32(x[xb + j]) - mu) * r;
  }
  let a = ${v.rms ? '0.0' : 'red_sum(sg, lid) / f32(D)'};
  let c = red_sum(sgx, lid) / f32(D);
  for (var j = j0; j < D; j += js) {
    dx[xrow * D + j] = ${t}(r * (${gh} - a - (f32(x[xb + j]) - mu) * r * c));
  }`,
  );
}
