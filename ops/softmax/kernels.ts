// WGSL for the softmax family (softmax, logSoftmax, logsumexp) and fused cross-entropy, forward and
// backward. Rows are the contiguous last axis. Max-subtracted; a row that is entirely -Infinity
// gives softmax 0, logSoftmax -Infinity, logsumexp -Infinity (never NaN).
import { NAN, NEG_INF, rowKernel, type RowVariant } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import type { WType } from '../../core/webgpu/wgsl.js';

export type SoftmaxMode = 'softmax' | 'logSoftmax' | 'logsumexp';

/**
 * Shared prologue, one pass over the row: each invocation keeps an online (max, Σ exp(x − max)) over
 * its elements (rescaling the sum when the max grows; -inf entries add nothing), and `sx` = Σ x when
 * `withSum`; then the row max `m`, a safe shift `ms` (0 for an all -inf row), `s` = Σ exp(x − ms) and
 * `lse` come from one max and one sum reduction.
 */
const rowStats = (x: string, withSum = false) => `
  var m = ${NEG_INF};
  var s = 0.0;
  var sx = 0.0;
  for (var j = j0; j < C; j += js) {
    let xv = f32(${x}[xb + j]);
    ${withSum ? 'sx += xv;' : ''}
    if (xv > m) {
      s = select(s * exp(m - xv), 0.0, is_neg_inf(m)) + 1.0;
      m = xv;
    } else if (!is_neg_inf(xv)) {
      s += exp(xv - m);
    }
  }
  let mloc = m;
  m = red_max(m, lid);
  s = red_sum(select(s * exp(mloc - m), 0.0, is_neg_inf(mloc)), lid);
  let ms = select(m, 0.0, is_neg_inf(m));
  let empty_row = s == 0.0;
  let lse = select(ms + log(s), ${NEG_INF}, empty_row);`;

/** Softmax params. Output: softmax/logSoftmax [nRows, C] or logsumexp [nRows]. */
export const SM = uniformLayout({ NROWS: 'u32', C: 'u32', XOFF: 'u32' });

/** `t`: the storage type of x and out (f16 values are widened on load; the row statistics are f32). */
export function softmaxForwardSource(mode: SoftmaxMode, variant: RowVariant, t: WType): string {
  const write =
    mode === 'logsumexp'
      ? `if (lid == 0u) { out[row] = ${t}(lse); }`
      : mode === 'softmax'
        ? `let inv = select(1.0 / s, 0.0, empty_row);
  for (var j = j0; j < C; j += js) { out[ob + j] = ${t}(exp(f32(x[xb + j]) - ms) * inv); }`
        : `for (var j = j0; j < C; j += js) { out[ob + j] = ${t}(select(f32(x[xb + j]) - lse, ${NEG_INF}, empty_row)); }`;
  return rowKernel(
    variant,
    [`var<storage, read_write> out: array<${t}>`, `var<storage, read> x: array<${t}>`],
    `
  let C = pu(${SM.C}u);
  let xb = pu(${SM.XOFF}u) + row * C;
  let ob = row * C;
  ${rowStats('x')}
  ${write}`,
  );
}

/** Softmax backward params. dx from the saved output y and the gradient g. */
export const SMB = uniformLayout({ NROWS: 'u32', C: 'u32', YOFF: 'u32', GOFF: 'u32' });

export function softmaxBackwardSource(mode: 'softmax' | 'logSoftmax', variant: RowVariant, ty: WType): string {
  // softmax: dx = y (g - Σ g y);  logSoftmax: dx = g - exp(y) Σ g.
  const [yj, gj] = ['f32(y[yb + j])', 'f32(g[gb + j])'];
  const acc = mode === 'softmax' ? `${gj} * ${yj}` : gj;
  const dx = mode === 'softmax' ? `${yj} * (${gj} - t)` : `${gj} - exp(${yj}) * t`;
  return rowKernel(
    variant,
    [
      `var<storage, read_write> dx: array<${ty}>`,
      `var<storage, read> y: array<${ty}>`,
      `var<storage, read> g: array<${ty}>`,
    ],
    `
  let C = pu(${SMB.C}u);
  let yb = pu(${SMB.YOFF}u) + row * C;
  let gb = pu(${SMB.GOFF}u) + row * C;
  var t = 0.0;
  for (var j = j0; j < C; j += js) { t += ${acc}; }
  t = red_sum(t, lid);
  for (var j = j0; j < C; j += js) { dx[row * C + j] = ${ty}(${dx}); }`,
  );
}

/**
 * Cross-entropy params: IGNORE = ignoreIndex, SMOOTH = label smoothing; SOFF: the reduced loss's scale
 * (backward). Rows need not be packed: the lead dims fold into [·, L1], and row r of the logits starts
 * at XOFF + (r / L1)·XS0 + (r % L1)·XS1 (its C logits contiguous), its target at the same with T*.
 */
export const CE = uniformLayout({
  NROWS: 'u32',
  C: 'u32',
  XOFF: 'u32',
  TOFF: 'u32',
  IGNORE: 'i32',
  SMOOTH: 'f32',
  GOFF: 'u32',
  SOFF: 'u32',
  L1: 'u32',
  XS0: 'u32',
  XS1: 'u32',
  TS0: 'u32',
  TS1: 'u32',
});

/** WGSL: where row `r` of a strided [·, L1] lead starts, for a layout with L1 and the given offset and strides. */
const rowStart = (r: string, off: number, s0: number, s1: number, l1: number) =>
  `(pu(${off}u) + (${r} / pu(${l1}u)) * pu(${s0}u) + (${r} % pu(${l1}u)) * pu(${s1}u))`;
const ceLogitsRow = rowStart('row', CE.XOFF, CE.XS0, CE.XS1, CE.L1);
const ceTarget = `targets[${rowStart('row', CE.TOFF, CE.TS0, CE.TS1, CE.L1)}]`;

/**
 * Per row (lse is always f32: the backward's probabilities exp(x − lse) need it to f32 precision): loss = lse - (1-ε) x[t] - ε/C Σ x (0 for ignored rows, NaN for a target outside [0, C)),
 * and the row's logsumexp, saved for the backward pass.
 */
export function crossEntropyForwardSource(variant: RowVariant, types: { loss: WType; x: WType }): string {
  return rowKernel(
    variant,
    [
      `var<storage, read_write> loss: array<${types.loss}>`,
      'var<storage, read_write> lse_out: array<f32>',
      `var<storage, read> x: array<${types.x}>`,
      'var<storage, read> targets: array<i32>',
    ],
    `
  let C = pu(${CE.C}u);
  let xb = ${ceLogitsRow};
  let eps = pf(${CE.SMOOTH}u);
  ${rowStats('x', true)}
  sx = red_sum(sx, lid);
  if (lid == 0u) {
    let t = ${ceTarget};
    var l = 0.0;
    if (t != pi(${CE.IGNORE}u)) {
      if (t < 0 || t >= i32(C)) { l = ${NAN}; } else {
        l = lse - (1.0 - eps) * f32(x[xb + u32(t)]);
        if (eps != 0.0) { l -= eps / f32(C) * sx; }
      }
    }
    loss[row] = ${types.loss}(l);
    lse_out[row] = lse;
  }`,
  );
}

/**
 * Row-wise: dx = g_row (softmax − (1−ε) onehot(t) − ε/C); 0 on ignored rows, NaN for bad targets. For
 * a reduced loss g_row is the scalar g times the reduction's scale (1/count for 'mean', 1 for 'sum').
 */
export function crossEntropyBackwardSource(
  variant: RowVariant,
  reduced: boolean,
  types: { x: WType; g: WType },
): string {
  const bindings = [
    `var<storage, read_write> dx: array<${types.x}>`,
    `var<storage, read> x: array<${types.x}>`,
    'var<storage, read> lse: array<f32>',
    'var<storage, read> targets: array<i32>',
    `var<storage, read> g: array<${types.g}>`,
  ];
  if (reduced) bindings.push('var<storage, read> scale: array<f32>');
  const gr = reduced ? `f32(g[pu(${CE.GOFF}u)]) * scale[pu(${CE.SOFF}u)]` : `f32(g[pu(${CE.GOFF}u) + row])`;
  return rowKernel(
    variant,
    bindings,
    `
  let C = pu(${CE.C}u);
  let xb = ${ceLogitsRow};
  let ob = row * C;
  let t = ${ceTarget};
  let eps = pf(${CE.SMOOTH}u);
  let l = lse[row];
  let gr = ${gr};
  let ignored = t == pi(${CE.IGNORE}u);
  let bad = !ignored && (t < 0 || t >= i32(C));
  // A row whose logits are all -inf has no probabilities (lse = -inf): its softmax part is 0.
  let empty_row = is_neg_inf(l);
  for (var j = j0; j < C; j += js) {
    let p = select(exp(f32(x[xb + j]) - l), 0.0, empty_row);
    let onehot = select(0.0, 1.0 - eps, i32(j) == t);
    var v = gr * (p - onehot - eps / f32(C));
    if (ignored) { v = 0.0; }
    if (bad) { v = ${NAN}; }
    dx[ob + j] = ${types.x}(v);
  }`,
  );
}

/** Cross-entropy reduction params: N row losses; MEAN = 1 divides by the count of non-ignored targets (laid out as in CE). */
export const CER = uniformLayout({
  NROWS: 'u32',
  N: 'u32',
  TOFF: 'u32',
  IGNORE: 'i32',
  MEAN: 'u32',
  L1: 'u32',
  TS0: 'u32',
  TS1: 'u32',
});

/**
 * The row losses reduced in one row (NROWS = 1): out[0] = Σ loss (÷ count for 'mean', NaN when every
 * target is ignored, as 0/0), scale[0] = the scale of the backward's per-row gradient (1/count, or 1;
 * f32 whatever the loss's type). Compensated sums keep long f32 accumulations close to the float64
 * reference.
 */
export function crossEntropyReduceSource(variant: RowVariant, types: { out: WType; loss: WType }): string {
  return rowKernel(
    variant,
    [
      `var<storage, read_write> out: array<${types.out}>`,
      'var<storage, read_write> scale: array<f32>',
      `var<storage, read> loss: array<${types.loss}>`,
      'var<storage, read> targets: array<i32>',
    ],
    `
  let N = pu(${CER.N}u);
  var s = 0.0;
  var comp = 0.0;
  var n = 0.0;
  for (var j = j0; j < N; j += js) {
    let y = f32(loss[j]) - comp;
    let t = s + y;
    comp = (t - s) - y;
    s = t;
    if (targets[${rowStart('j', CER.TOFF, CER.TS0, CER.TS1, CER.L1)}] != pi(${CER.IGNORE}u)) { n += 1.0; }
  }
  let total = red_sum(s, lid);
  let count = red_sum(n, lid);
  if (lid == 0u) {
    let mean = pu(${CER.MEAN}u) == 1u;
    out[0] = ${types.out}(select(total, total / count, mean));
    scale[0] = select(1.0, 1.0 / count, mean);
  }`,
  );
}
