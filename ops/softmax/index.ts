// softmax, logSoftmax, logsumexp and fused cross-entropy. Rows are reduced in one kernel each way
// (WGSL in kernels.ts); the cpu path is the same maths in float64 JS.
// Stable: max-subtracted. A row that is entirely -Infinity (fully masked) gives softmax 0,
// logSoftmax -Infinity and logsumexp -Infinity, without NaN reaching other rows.
import { noGrad } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { normAxes, normAxis, numel, OpError, shapeStr } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { cpuDataOf } from '../../core/cpu.js';
import { rowGrid, rowVariants } from '../../core/webgpu/kernels/common.js';
import { storageTypeOf } from '../../core/webgpu/wgsl.js';
import { defineKernel, defineOp, dispatch, type Forward } from '../../core/op.js';
import { launch } from '../../core/webgpu/launch.js';
import {
  CE,
  CER,
  crossEntropyBackwardSource,
  crossEntropyForwardSource,
  crossEntropyReduceSource,
  SM,
  SMB,
  softmaxBackwardSource,
  softmaxForwardSource,
  type SoftmaxMode,
} from './kernels.js';
import { cpuData, outData, statDtype, withContiguous } from '../kernelio.js';
import { empty, type Tolerance } from '../util.js';
import { argTensor, knownIndexValues } from '../../core/args.js';

/**
 * webgpu float32 vs cpu float64 on long rows (C = 50304; other shapes use the checks' defaults). The
 * logSoftmax gradient g − p·Σg carries Σg over 50304 terms (|Σg| ~ 1e2) times p's f32 relative error
 * (~|lse|·2^-24), hence its absolute tolerance.
 */
export const SOFTMAX_LONG_ROW_TOLERANCE = {
  logSoftmax: { atol: 3e-4, rtol: 1e-4 },
  logsumexp: { atol: 1e-5, rtol: 1e-5 },
  crossEntropy: { atol: 1e-6, rtol: 1e-4 },
} as const satisfies Record<string, Tolerance>;

/**
 * webgpu float16 vs cpu float64: f16 inputs, f32 row statistics, each result rounded once to f16
 * (2^-11 relative); gradients add an f16 rounding of the incoming gradient's products.
 */
export const SOFTMAX_FLOAT16_TOLERANCE: Tolerance = { atol: 5e-3, rtol: 1e-2 };

function checkFloat(op: string, x: Tensor): void {
  x.assertAlive(op);
  if (!isFloat(x.dtype))
    throw new OpError(op, `needs a float tensor, got ${x.dtype} ${shapeStr(x.shape)}; cast with .astype('float32')`);
}

/** Row max, a safe shift (0 for an all -inf row), Σ exp(x - shift) and logsumexp of one row (float64). */
function rowStats(d: ArrayLike<number>, b: number, C: number): { ms: number; s: number; lse: number } {
  let m = -Infinity;
  for (let j = 0; j < C; j++) if (d[b + j] > m) m = d[b + j];
  const ms = m === -Infinity ? 0 : m;
  let s = 0;
  for (let j = 0; j < C; j++) s += Math.exp(d[b + j] - ms);
  return { ms, s, lse: s === 0 ? -Infinity : ms + Math.log(s) };
}

interface RowsArgs {
  readonly mode: SoftmaxMode;
  readonly x: Tensor;
  readonly out: Tensor;
  readonly nRows: number;
  readonly C: number;
}
const rowShape = (a: { nRows: number; C: number }) => ({ nRows: a.nRows, rowLen: a.C });

/** softmax / logSoftmax / logsumexp of each contiguous row of x. */
const softmaxRowsKernel = defineKernel<RowsArgs>({
  name: 'softmaxRows',
  family: 'row',
  float16: true,
  cpu: ({ mode, x, out, nRows, C }) => {
    const { data, off } = cpuData(x);
    const o = outData(out);
    for (let r = 0; r < nRows; r++) {
      const b = off + r * C;
      const { ms, s, lse } = rowStats(data, b, C);
      if (mode === 'logsumexp') o[r] = lse;
      else if (mode === 'softmax')
        for (let j = 0; j < C; j++) o[r * C + j] = s === 0 ? 0 : Math.exp(data[b + j] - ms) / s;
      else for (let j = 0; j < C; j++) o[r * C + j] = s === 0 ? -Infinity : data[b + j] - lse;
    }
  },
  webgpu: rowVariants(rowShape, ({ mode, x, out, nRows, C }, variant) => {
    const p = SM.pack({ NROWS: nRows, C, XOFF: x.offset });
    const t = storageTypeOf(x.dtype);
    launch(
      mode,
      `fused:${mode}:${variant}:${t}`,
      () => softmaxForwardSource(mode, variant, t),
      p,
      [out, x],
      rowGrid(variant, nRows),
    );
  }),
});

interface RowsBackwardArgs {
  readonly mode: 'softmax' | 'logSoftmax';
  readonly y: Tensor;
  readonly g: Tensor;
  readonly dx: Tensor;
  readonly nRows: number;
  readonly C: number;
}

/** The input gradient of softmax / logSoftmax rows from their output y and its gradient g. */
const softmaxRowsBackwardKernel = defineKernel<RowsBackwardArgs>({
  name: 'softmaxRowsBackward',
  family: 'row',
  float16: true,
  cpu: ({ mode, y, g, dx, nRows, C }) => {
    const { data: yd, off: yo } = cpuData(y);
    const { data: gd, off: go } = cpuData(g);
    const o = outData(dx);
    for (let r = 0; r < nRows; r++) {
      const yb = yo + r * C,
        gb = go + r * C;
      let t = 0;
      for (let j = 0; j < C; j++) t += mode === 'softmax' ? gd[gb + j] * yd[yb + j] : gd[gb + j];
      for (let j = 0; j < C; j++)
        o[r * C + j] = mode === 'softmax' ? yd[yb + j] * (gd[gb + j] - t) : gd[gb + j] - Math.exp(yd[yb + j]) * t;
    }
  },
  webgpu: rowVariants(rowShape, ({ mode, y, g, dx, nRows, C }, variant) => {
    const p = SMB.pack({ NROWS: nRows, C, YOFF: y.offset, GOFF: g.offset });
    const t = storageTypeOf(y.dtype);
    launch(
      `${mode}Backward`,
      `fused:${mode}Backward:${variant}:${t}`,
      () => softmaxBackwardSource(mode, variant, t),
      p,
      [dx, y, g],
      rowGrid(variant, nRows),
    );
  }),
});

/** Forward over the last axis of x (any rank ≥ 1). logsumexp drops that axis. */
function softmaxRows(x: Tensor, mode: SoftmaxMode): Tensor {
  return withContiguous([x], ([xc]) => {
    const C = x.shape[x.rank - 1];
    const nRows = numel(x.shape.slice(0, -1));
    const out = empty(x.device, x.dtype, mode === 'logsumexp' ? x.shape.slice(0, -1) : x.shape);
    if (nRows > 0) dispatch(softmaxRowsKernel, x.device, { mode, x: xc, out, nRows, C });
    return out;
  });
}

function softmaxRowsBackward(y: Tensor, g: Tensor, mode: 'softmax' | 'logSoftmax'): Tensor {
  return withContiguous([y, g], ([yc, gc]) => {
    const C = y.shape[y.rank - 1];
    const nRows = numel(y.shape.slice(0, -1));
    const dx = empty(y.device, y.dtype, y.shape);
    if (nRows > 0) dispatch(softmaxRowsBackwardKernel, y.device, { mode, y: yc, g: gc, dx, nRows, C });
    return dx;
  });
}

/** Applies a last-axis op along `axis` by swapping it to the end (views) and back. */
function alongAxis(x: Tensor, axis: number, op: string, f: (t: Tensor) => Tensor): Tensor {
  if (x.rank === 0) return f(x.reshape([1])).reshape([]);
  const a = normAxis(op, axis, x.rank);
  if (a === x.rank - 1) return f(x);
  return f(x.transpose(a, -1)).transpose(a, -1);
}

/** softmax / logSoftmax over the last axis, as ops recorded for autograd. */
const lastAxisOp = (mode: 'softmax' | 'logSoftmax') =>
  defineOp({
    name: mode,
    check: (x: Tensor) => checkFloat(mode, x),
    forward: (x: Tensor) => {
      const out = softmaxRows(x, mode);
      return { out, inputs: [x], saved: [out] };
    },
    backward: (g, [y]) => [softmaxRowsBackward(y, g, mode)],
    kernels: [softmaxRowsKernel, softmaxRowsBackwardKernel],
    tolerance: {
      float32: SOFTMAX_LONG_ROW_TOLERANCE[mode === 'logSoftmax' ? 'logSoftmax' : 'logsumexp'],
      float16: SOFTMAX_FLOAT16_TOLERANCE,
    },
  });
const softmaxLast = lastAxisOp('softmax');
const logSoftmaxLast = lastAxisOp('logSoftmax');

/** exp(x) / Σ exp(x) along `axis`. */
export function softmax(x: Tensor, axis = -1): Tensor {
  checkFloat('softmax', x);
  return alongAxis(x, axis, 'softmax', softmaxLast);
}

/** x - logsumexp(x) along `axis`. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  checkFloat('logSoftmax', x);
  return alongAxis(x, axis, 'logSoftmax', logSoftmaxLast);
}

/** log Σ exp of rows [..., n] (the reduced axes merged last). */
const logsumexpRows = defineOp({
  name: 'logsumexp',
  check: (rows: Tensor) => checkFloat('logsumexp', rows),
  forward: (rows: Tensor) => ({ out: softmaxRows(rows, 'logsumexp'), inputs: [rows], saved: [rows] }),
  backward: (g, [rows]) => [softmaxRows(rows, 'softmax').mul(g.unsqueeze(-1))],
  kernels: [softmaxRowsKernel],
  tolerance: { float32: SOFTMAX_LONG_ROW_TOLERANCE.logsumexp, float16: SOFTMAX_FLOAT16_TOLERANCE },
});

/** log Σ exp(x) over `axis` (one axis or several); -Infinity for an all -Infinity slice. */
export function logsumexp(x: Tensor, axis: number | readonly number[] = -1, keepdim = false): Tensor {
  checkFloat('logsumexp', x);
  if (x.rank === 0) return logsumexp(x.reshape([1]), 0, false).reshape([]);
  const axes = normAxes('logsumexp', axis, x.rank);
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const keptShape = kept.map((i) => x.shape[i]);
  // Reduced axes moved last and merged into one row axis.
  const rows = x.permute([...kept, ...axes]).reshape([...keptShape, numel(axes.map((a) => x.shape[a]))]);
  const yr = logsumexpRows(rows);
  return keepdim ? yr.reshape(x.shape.map((d, i) => (axes.includes(i) ? 1 : d))) : yr;
}

/** The target value crossEntropy skips by default (PyTorch's ignore_index). */
export const IGNORE_INDEX = -100;

export interface CrossEntropyOptions {
  /** Targets equal to this contribute no loss and no gradient (default -100). */
  ignoreIndex?: number;
  /** 'mean' (over non-ignored targets; NaN if all are ignored), 'sum', or 'none' (targets' shape). */
  reduction?: 'mean' | 'sum' | 'none';
  /** Mixes the one-hot target with the uniform distribution: (1-ε)·onehot + ε/C. */
  labelSmoothing?: number;
}

/** Validates targets where their values are known on the host (cpu data, or a webgpu upload's range). */
function checkTargets(targets: Tensor, C: number, ignoreIndex: number): void {
  const bad = (v: number) => v !== ignoreIndex && (v < 0 || v >= C);
  const explain = (v: number, where: string) =>
    new OpError(
      'crossEntropy',
      `target ${v}${where} is outside [0, ${C}) for logits with C = ${C} classes, and is not ignoreIndex (${ignoreIndex})`,
    );
  const known = knownIndexValues(targets);
  if (!known || targets.size === 0) return;
  const i = known.values ? Array.prototype.findIndex.call(known.values, bad) : -1;
  if (i >= 0) throw explain(known.values![i], ` at flat position ${i}`);
  if (bad(known.min)) throw explain(known.min, '');
  if (bad(known.max)) throw explain(known.max, '');
}

/** Where row r of logits [L0, L1, C] (or targets [L0, L1]) starts: the row layout the CE kernels read. */
function rowOffset(t: Tensor, r: number): number {
  const l1 = t.shape[1];
  return t.offset + Math.floor(r / l1) * t.strides[0] + (r % l1) * t.strides[1];
}

/** The CE kernels' row layout params of logits [L0, L1, C] and targets [L0, L1]. */
const ceRows = (x: Tensor, t: Tensor) => ({
  L1: x.shape[1],
  XOFF: x.offset,
  XS0: x.strides[0],
  XS1: x.strides[1],
  TOFF: t.offset,
  TS0: t.strides[0],
  TS1: t.strides[1],
});

interface CeArgs {
  readonly x: Tensor;
  readonly t: Tensor;
  readonly ignoreIndex: number;
  readonly eps: number;
  readonly nRows: number;
  readonly C: number;
}
const ceRowShape = (a: CeArgs) => ({ nRows: a.nRows, rowLen: a.C });

/** Per-row losses and logsumexps of logits [L0, L1, C] against targets [L0, L1]. */
const crossEntropyRowsKernel = defineKernel<CeArgs & { readonly loss: Tensor; readonly lse: Tensor }>({
  name: 'crossEntropyRows',
  family: 'row',
  float16: true,
  cpu: ({ x, t, ignoreIndex, eps, nRows, C, loss, lse }) => {
    const data = cpuDataOf(x),
      td = cpuDataOf(t);
    const lo = outData(loss),
      so = outData(lse);
    for (let r = 0; r < nRows; r++) {
      const b = rowOffset(x, r);
      const st = rowStats(data, b, C);
      so[r] = st.lse;
      const target = td[rowOffset(t, r)];
      if (target === ignoreIndex) {
        lo[r] = 0;
        continue;
      }
      let l = st.lse - (1 - eps) * data[b + target];
      if (eps !== 0) {
        let sx = 0;
        for (let j = 0; j < C; j++) sx += data[b + j];
        l -= (eps / C) * sx;
      }
      lo[r] = l;
    }
  },
  webgpu: rowVariants(ceRowShape, ({ x, t, ignoreIndex, eps, nRows, C, loss, lse }, variant) => {
    const p = CE.pack({ NROWS: nRows, C, ...ceRows(x, t), IGNORE: ignoreIndex, SMOOTH: eps });
    const types = { loss: storageTypeOf(loss.dtype), x: storageTypeOf(x.dtype) };
    launch(
      'crossEntropy',
      `fused:crossEntropy:${variant}:${types.loss}:${types.x}`,
      () => crossEntropyForwardSource(variant, types),
      p,
      [loss, lse, x, t],
      rowGrid(variant, nRows),
    );
  }),
});

/**
 * dx [L0, L1, C] of the row losses. `scale` (a reduced loss: g is its scalar gradient) multiplies g on
 * every row; without it g holds one value per row.
 */
const crossEntropyRowsBackwardKernel = defineKernel<
  CeArgs & { readonly lse: Tensor; readonly g: Tensor; readonly scale: Tensor | null; readonly dx: Tensor }
>({
  name: 'crossEntropyRowsBackward',
  family: 'row',
  float16: true,
  cpu: ({ x, t, ignoreIndex, eps, nRows, C, lse, g, scale, dx }) => {
    const data = cpuDataOf(x),
      td = cpuDataOf(t);
    const { data: gd, off: go } = cpuData(g);
    const { data: ld, off: lo } = cpuData(lse);
    const sd = scale && cpuData(scale);
    const o = outData(dx);
    for (let r = 0; r < nRows; r++) {
      const target = td[rowOffset(t, r)];
      const l = ld[lo + r];
      const gr = sd ? gd[go] * sd.data[sd.off] : gd[go + r];
      const b = rowOffset(x, r);
      for (let j = 0; j < C; j++) {
        if (target === ignoreIndex) {
          o[r * C + j] = 0;
          continue;
        }
        const p = l === -Infinity ? 0 : Math.exp(data[b + j] - l);
        o[r * C + j] = gr * (p - (j === target ? 1 - eps : 0) - eps / C);
      }
    }
  },
  webgpu: rowVariants(ceRowShape, ({ x, t, ignoreIndex, eps, nRows, C, lse, g, scale, dx }, variant) => {
    const p = CE.pack({
      NROWS: nRows,
      C,
      ...ceRows(x, t),
      IGNORE: ignoreIndex,
      SMOOTH: eps,
      GOFF: g.offset,
      SOFF: scale?.offset,
    });
    const reduced = scale !== null;
    const types = { x: storageTypeOf(x.dtype), g: storageTypeOf(g.dtype) };
    // lse is freshly allocated by the forward (offset 0).
    launch(
      'crossEntropyBackward',
      `fused:crossEntropyBackward:${reduced ? 'reduced' : 'rows'}:${variant}:${types.x}:${types.g}`,
      () => crossEntropyBackwardSource(variant, reduced, types),
      p,
      [dx, x, lse, t, g, ...(scale ? [scale] : [])],
      rowGrid(variant, nRows),
    );
  }),
});

interface CeReduceArgs {
  readonly loss: Tensor;
  readonly t: Tensor;
  readonly ignoreIndex: number;
  readonly mean: boolean;
  /** [1]: the reduced loss, and each row's gradient scale (statDtype). */
  readonly out: Tensor;
  readonly scale: Tensor;
}

/**
 * The row losses summed ('sum') or averaged over non-ignored targets ('mean'; NaN when all are
 * ignored), and the scale of each row's gradient (1, or 1/count).
 */
const crossEntropyReduceKernel = defineKernel<CeReduceArgs>({
  name: 'crossEntropyReduce',
  family: 'row',
  float16: true,
  cpu: ({ loss, t, ignoreIndex, mean, out, scale }) => {
    const ld = cpuDataOf(loss),
      td = cpuDataOf(t);
    let total = 0,
      count = 0;
    for (let r = 0; r < loss.size; r++) {
      total += ld[r];
      if (td[rowOffset(t, r)] !== ignoreIndex) count++;
    }
    outData(out)[0] = mean ? total / count : total;
    outData(scale)[0] = mean ? 1 / count : 1;
  },
  webgpu: rowVariants(
    (a) => ({ nRows: 1, rowLen: a.loss.size }),
    ({ loss, t, ignoreIndex, mean, out, scale }, variant) => {
      const p = CER.pack({
        NROWS: 1,
        N: loss.size,
        TOFF: t.offset,
        L1: t.shape[1],
        TS0: t.strides[0],
        TS1: t.strides[1],
        IGNORE: ignoreIndex,
        MEAN: mean ? 1 : 0,
      });
      const types = { out: storageTypeOf(out.dtype), loss: storageTypeOf(loss.dtype) };
      launch(
        'crossEntropyReduce',
        `fused:crossEntropyReduce:${variant}:${types.out}:${types.loss}`,
        () => crossEntropyReduceSource(variant, types),
        p,
        [out, scale, loss, t],
        rowGrid(variant, 1),
      );
    },
  ),
});

/**
 * Per-row losses (of `lossDtype`) and logsumexps (statDtype: f32 for f16 logits) of logits [L0, L1, C]
 * against targets [L0, L1] (the fused forward).
 */
function crossEntropyRows(
  x: Tensor,
  t: Tensor,
  ignoreIndex: number,
  eps: number,
  lossDtype: Tensor['dtype'],
): [Tensor, Tensor] {
  const [L0, L1, C] = x.shape;
  const nRows = L0 * L1;
  const loss = empty(x.device, lossDtype, [nRows]);
  const lse = empty(x.device, statDtype(x.dtype), [nRows]);
  if (nRows > 0) dispatch(crossEntropyRowsKernel, x.device, { x, t, ignoreIndex, eps, nRows, C, loss, lse });
  return [loss, lse];
}

function crossEntropyRowsBackward(
  x: Tensor,
  lse: Tensor,
  t: Tensor,
  g: Tensor,
  scale: Tensor | null,
  ignoreIndex: number,
  eps: number,
): Tensor {
  return withContiguous([g], ([gc]) => {
    const [L0, L1, C] = x.shape;
    const nRows = L0 * L1;
    const dx = empty(x.device, x.dtype, x.shape);
    if (nRows * C > 0)
      dispatch(crossEntropyRowsBackwardKernel, x.device, { x, t, ignoreIndex, eps, nRows, C, lse, g: gc, scale, dx });
    return dx;
  });
}

/** The reduced loss (0-d, of `dtype`) and each row's gradient scale ([1], of the row losses' dtype). */
function reduceRowLosses(
  loss: Tensor,
  t: Tensor,
  ignoreIndex: number,
  mean: boolean,
  dtype: Tensor['dtype'],
): [Tensor, Tensor] {
  const out = empty(loss.device, dtype, [1]);
  const scale = empty(loss.device, loss.dtype, [1]);
  dispatch(crossEntropyReduceKernel, loss.device, { loss, t, ignoreIndex, mean, out, scale });
  const result = out.reshape([]);
  out.dispose();
  return [result, scale];
}

/**
 * Cross-entropy of logits [..., C] (e.g. [N, C] or [B, T, C]) against int32 class targets of shape
 * [...]: log-softmax, gather and reduction fused in one kernel, with a fused backward
 * (softmax − onehot, scaled). Targets outside [0, C) other than ignoreIndex raise where their values
 * are known on the host (cpu tensors, tensors uploaded from JS); computed on the GPU, they give NaN.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  return crossEntropyOp(logits, targets, opts);
}

interface CeInfo {
  readonly logitsShape: readonly number[];
  readonly ignoreIndex: number;
  readonly eps: number;
}

const crossEntropyOp = defineOp({
  name: 'crossEntropy',
  // a loss in float32: scaled for mixed precision it would overflow float16
  autocast: 'float32',
  check: (logits: Tensor, targets: Tensor, opts: CrossEntropyOptions) => {
    const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
    const reduction = opts.reduction ?? 'mean';
    const eps = opts.labelSmoothing ?? 0;
    checkFloat('crossEntropy', logits);
    argTensor('crossEntropy', 'targets', targets);
    if (logits.device !== targets.device)
      throw new OpError('crossEntropy', `logits are on ${logits.device} but targets on ${targets.device}`);
    if (targets.dtype !== 'int32')
      throw new OpError(
        'crossEntropy',
        `targets must be int32 class indices, got ${targets.dtype}; use .astype('int32')`,
      );
    if (logits.rank < 1 || targets.rank !== logits.rank - 1 || targets.shape.some((d, i) => d !== logits.shape[i])) {
      throw new OpError(
        'crossEntropy',
        `logits ${shapeStr(logits.shape)} need targets of shape ${shapeStr(logits.shape.slice(0, -1))}, got ${shapeStr(targets.shape)}`,
      );
    }
    if (!(eps >= 0 && eps <= 1)) throw new OpError('crossEntropy', `labelSmoothing must be in [0, 1], got ${eps}`);
    if (!['mean', 'sum', 'none'].includes(reduction))
      throw new OpError('crossEntropy', `reduction must be 'mean', 'sum' or 'none', got '${reduction}'`);
    checkTargets(targets, logits.shape[logits.rank - 1], ignoreIndex);
  },
  forward: (logits: Tensor, targets: Tensor, opts: CrossEntropyOptions): Forward<CeInfo> => {
    const ignoreIndex = opts.ignoreIndex ?? IGNORE_INDEX;
    const reduction = opts.reduction ?? 'mean';
    const eps = opts.labelSmoothing ?? 0;
    const C = logits.shape[logits.rank - 1];
    // Rows as [L0, L1] lead dims: views of strided logits and targets (a sliced [B, T − 1, C], say) where
    // the lead dims fold into two strided levels and each row's logits are contiguous; copies otherwise.
    const lead = logits.shape.slice(0, -1);
    const L1 = lead.length ? lead[lead.length - 1] : 1;
    const L0 = numel(lead.slice(0, -1));
    const [x, t] = noGrad(() => {
      const xr = logits.reshape([L0, L1, C]);
      if (xr.strides[2] === 1 || C <= 1) return [xr, targets.reshape([L0, L1])];
      const xc = xr.contiguous();
      xr.dispose();
      return [xc, targets.reshape([L0, L1])];
    });
    // The loss has the logits' dtype (as PyTorch's); row losses that are summed stay in statDtype.
    const reduced = reduction !== 'none';
    const [loss, lse] = crossEntropyRows(x, t, ignoreIndex, eps, reduced ? statDtype(x.dtype) : x.dtype);
    const [out, scale] = reduced ? reduceRowLosses(loss, t, ignoreIndex, reduction === 'mean', x.dtype) : [loss, null];
    return {
      out,
      inputs: [logits],
      saved: [x, lse, t, ...(scale ? [scale] : [])],
      info: { logitsShape: logits.shape, ignoreIndex, eps },
      // The graph holds its own references to what it saved; 'none' gives the targets' shape.
      after: (y) => {
        [x, t, lse, ...(scale ? [scale, loss] : [])].forEach((v) => v.dispose());
        return reduction === 'none' ? y.reshape(targets.shape) : y;
      },
    };
  },
  backward: (g, [xs, ls, ts, sc], { logitsShape, ignoreIndex, eps }) => [
    crossEntropyRowsBackward(xs, ls, ts, g, sc ?? null, ignoreIndex, eps).reshape(logitsShape),
  ],
  kernels: [crossEntropyRowsKernel, crossEntropyRowsBackwardKernel, crossEntropyReduceKernel],
  tolerance: { float32: SOFTMAX_LONG_ROW_TOLERANCE.crossEntropy, float16: SOFTMAX_FLOAT16_TOLERANCE },
});

declare module '../../core/tensor.js' {
  interface Tensor {
    /** exp(x) / Σ exp(x) along axis (default last). */
    softmax(axis?: number): Tensor;
    /** x − logsumexp(x) along axis (default last). */
    logSoftmax(axis?: number): Tensor;
    /** log Σ exp(x) over axis (default last). */
    logsumexp(axis?: number | readonly number[], keepdim?: boolean): Tensor;
  }
}

const P = Tensor.prototype;
P.softmax = function (axis) {
  return softmax(this, axis);
};
P.logSoftmax = function (axis) {
  return logSoftmax(this, axis);
};
P.logsumexp = function (axis, keepdim) {
  return logsumexp(this, axis, keepdim);
};
