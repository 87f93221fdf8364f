// Elementwise ops: each definition carries its WGSL kernel expression, its JS reference and
// (in the op table below) its backward rule written with other differentiable ops.
import type { ElementwiseDef } from '../core/backend.js';
import { isGradEnabled, record } from '../core/autograd.js';
import { getBackend } from '../core/device.js';
import { isFloat, promoteTypes, type DType } from '../core/dtype.js';
import { broadcastShapes, OpError, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { erf, WGSL_ERF } from './erf.js';
import { broadcastView, empty, isTensor, sameDevice, sumTo, type TensorOrScalar } from './util.js';
import { argTensorOrNumber } from '../core/args.js';

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Expressions must also be valid for vec4 operands (type-generic literals via `t`), or set scalarOnly. */
const def = (name: string, arity: number, wgsl: ElementwiseDef['wgsl'], js: ElementwiseDef['js'], wgslHelpers?: string, scalarOnly = false): ElementwiseDef => ({ name, arity, wgsl, js, wgslHelpers, scalarOnly });

const POW_HELPER = `
fn pow_signed(x: f32, y: f32) -> f32 {
  if (x >= 0.0) { return pow(x, y); }
  let nan_bits = 0x7fc00000u; // a let, not a constant: WGSL rejects NaN constants
  if (y != floor(y)) { return bitcast<f32>(nan_bits); }
  let m = pow(-x, y);
  return select(m, -m, (abs(y) % 2.0) == 1.0);
}`;

/** The elementwise kernels, by name. `t` is the WGSL compute type (f32 or i32). */
export const DEFS = {
  copy: def('copy', 1, ([a]) => a, (a) => a),
  neg: def('neg', 1, ([a]) => `-${a}`, (a) => -a),
  exp: def('exp', 1, ([a]) => `exp(${a})`, Math.exp),
  log: def('log', 1, ([a]) => `log(${a})`, Math.log),
  sqrt: def('sqrt', 1, ([a]) => `sqrt(${a})`, Math.sqrt),
  rsqrt: def('rsqrt', 1, ([a]) => `inverseSqrt(${a})`, (a) => 1 / Math.sqrt(a)),
  abs: def('abs', 1, ([a]) => `abs(${a})`, Math.abs),
  sign: def('sign', 1, ([a]) => `sign(${a})`, Math.sign),
  sin: def('sin', 1, ([a]) => `sin(${a})`, Math.sin),
  cos: def('cos', 1, ([a]) => `cos(${a})`, Math.cos),
  // tanh(±15) is ±1 in f32; clamping avoids inf/inf inside some drivers' tanh.
  tanh: def('tanh', 1, ([a], t) => `tanh(clamp(${a}, ${t}(-15.0), ${t}(15.0)))`, Math.tanh),
  sigmoid: def('sigmoid', 1, ([a]) => `1.0 / (1.0 + exp(-${a}))`, sigmoid),
  relu: def('relu', 1, ([a], t) => `max(${a}, ${t}(0))`, (a) => Math.max(a, 0)),
  gelu: def('gelu', 1, ([a]) => `0.5 * ${a} * (1.0 + erf_f32(${a} * ${SQRT1_2}))`, (a) => 0.5 * a * (1 + erf(a * SQRT1_2)), WGSL_ERF, true),
  geluGrad: def('geluGrad', 1, ([a]) => `0.5 * (1.0 + erf_f32(${a} * ${SQRT1_2})) + ${a} * exp(-0.5 * ${a} * ${a}) * ${INV_SQRT_2PI}`, (a) => 0.5 * (1 + erf(a * SQRT1_2)) + a * Math.exp(-0.5 * a * a) * INV_SQRT_2PI, WGSL_ERF, true),
  silu: def('silu', 1, ([a]) => `${a} / (1.0 + exp(-${a}))`, (a) => a * sigmoid(a)),
  siluGrad: def('siluGrad', 1, ([a]) => `(1.0 / (1.0 + exp(-${a}))) * (1.0 + ${a} * (1.0 - 1.0 / (1.0 + exp(-${a}))))`, (a) => sigmoid(a) * (1 + a * (1 - sigmoid(a)))),
  softplus: def('softplus', 1, ([a], t) => `max(${a}, ${t}(0)) + log(1.0 + exp(-abs(${a})))`, (a) => Math.max(a, 0) + Math.log1p(Math.exp(-Math.abs(a)))),
  square: def('square', 1, ([a]) => `${a} * ${a}`, (a) => a * a),
  reciprocal: def('reciprocal', 1, ([a]) => `1.0 / ${a}`, (a) => 1 / a),
  add: def('add', 2, ([a, b]) => `${a} + ${b}`, (a, b) => a + b),
  sub: def('sub', 2, ([a, b]) => `${a} - ${b}`, (a, b) => a - b),
  mul: def('mul', 2, ([a, b]) => `${a} * ${b}`, (a, b) => a * b),
  div: def('div', 2, ([a, b]) => `${a} / ${b}`, (a, b) => a / b),
  pow: def('pow', 2, ([a, b]) => `pow_signed(${a}, ${b})`, Math.pow, POW_HELPER, true),
  maximum: def('maximum', 2, ([a, b]) => `max(${a}, ${b})`, Math.max),
  minimum: def('minimum', 2, ([a, b]) => `min(${a}, ${b})`, Math.min),
  eq: def('eq', 2, ([a, b], t) => `select(${t}(0), ${t}(1), ${a} == ${b})`, (a, b) => +(a === b)),
  ne: def('ne', 2, ([a, b], t) => `select(${t}(0), ${t}(1), ${a} != ${b})`, (a, b) => +(a !== b)),
  lt: def('lt', 2, ([a, b], t) => `select(${t}(0), ${t}(1), ${a} < ${b})`, (a, b) => +(a < b)),
  le: def('le', 2, ([a, b], t) => `select(${t}(0), ${t}(1), ${a} <= ${b})`, (a, b) => +(a <= b)),
  gt: def('gt', 2, ([a, b], t) => `select(${t}(0), ${t}(1), ${a} > ${b})`, (a, b) => +(a > b)),
  ge: def('ge', 2, ([a, b], t) => `select(${t}(0), ${t}(1), ${a} >= ${b})`, (a, b) => +(a >= b)),
  where: def('where', 3, ([c, a, b], t) => `select(${b}, ${a}, ${c} != ${t}(0))`, (c, a, b) => (c !== 0 ? a : b)),
} as const satisfies Record<string, ElementwiseDef>;

export type EwName = keyof typeof DEFS;

/**
 * Runs an elementwise kernel over broadcast operands. Scalars become uniforms (no upload).
 * `outDtype`/`computeDtype` default to the promoted operand type.
 */
export function elementwise(name: EwName, operands: readonly TensorOrScalar[], opts: { outDtype?: DType; computeDtype?: DType } = {}): Tensor {
  const names = operands.length === 3 ? ['condition', 'input', 'other'] : ['input', 'other'];
  operands.forEach((o, i) => argTensorOrNumber(name, names[i], o));
  const tensors = operands.filter(isTensor);
  const device = sameDevice(name, tensors);
  const shape = broadcastShapes(name, ...tensors.map((t) => t.shape));
  const promoted = promoteTypes(...tensors.map((t) => t.dtype), ...operands.filter((o): o is number => !isTensor(o) && !Number.isInteger(o)).map(() => 'float32' as DType));
  const computeDtype = opts.computeDtype ?? promoted;
  const out = empty(device, opts.outDtype ?? computeDtype, shape);
  getBackend(device).elementwise(DEFS[name], operands.map((o) => (isTensor(o) ? broadcastView(o, shape) : { scalar: o })), out, computeDtype);
  return out;
}

/** Float-valued functions of int tensors compute in float32 (float64 stays float64). */
const floatType = (t: Tensor): DType => (isFloat(t.dtype) ? t.dtype : 'float32');

/** `s` is the saved input x, or the output y when `saveOut` is set. */
type UnaryRule = (g: Tensor, s: Tensor) => Tensor;
const UNARY: Record<string, { rule: UnaryRule; float: boolean; saveOut?: boolean }> = {
  neg: { float: false, rule: (g) => g.neg() },
  exp: { float: true, saveOut: true, rule: (g, y) => g.mul(y) },
  log: { float: true, rule: (g, x) => g.div(x) },
  sqrt: { float: true, saveOut: true, rule: (g, y) => g.mul(0.5).div(y) },
  rsqrt: { float: true, saveOut: true, rule: (g, y) => g.mul(y.mul(y).mul(y)).mul(-0.5) },
  abs: { float: false, rule: (g, x) => g.mul(x.sign()) },
  sin: { float: true, rule: (g, x) => g.mul(x.cos()) },
  cos: { float: true, rule: (g, x) => g.mul(x.sin()).neg() },
  tanh: { float: true, saveOut: true, rule: (g, y) => g.mul(y.square().neg().add(1)) },
  sigmoid: { float: true, saveOut: true, rule: (g, y) => g.mul(y.mul(y.neg().add(1))) },
  relu: { float: false, rule: (g, x) => g.mul(x.gt(0).astype(g.dtype)) },
  gelu: { float: true, rule: (g, x) => g.mul(elementwise('geluGrad', [x])) },
  silu: { float: true, rule: (g, x) => g.mul(elementwise('siluGrad', [x])) },
  softplus: { float: true, rule: (g, x) => g.mul(x.sigmoid()) },
  square: { float: false, rule: (g, x) => g.mul(x).mul(2) },
  reciprocal: { float: true, saveOut: true, rule: (g, y) => g.mul(y.square()).neg() },
  sign: { float: false, rule: () => { throw new Error('unreachable'); } },
};

function unary(name: EwName, x: Tensor): Tensor {
  const spec = UNARY[name];
  const y = elementwise(name, [x], spec.float ? { computeDtype: floatType(x) } : {});
  if (name === 'sign' || !isFloat(x.dtype)) return y;
  return record(name, y, [x], (g, [s]) => [spec.rule(g, s)], [spec.saveOut ? y : x]);
}

type BinaryRule = (g: Tensor, a: Tensor, b: Tensor, y: Tensor) => [Tensor | null, Tensor | null];
const BINARY: Record<string, BinaryRule> = {
  add: (g) => [g, g],
  sub: (g) => [g, g.neg()],
  mul: (g, a, b) => [g.mul(b), g.mul(a)],
  div: (g, a, b) => [g.div(b), g.mul(a).div(b.square()).neg()],
  pow: (g, a, b, y) => [g.mul(b).mul(a.pow(b.sub(1))), g.mul(y).mul(a.log())],
  // Ties split the gradient evenly, as PyTorch does.
  maximum: (g, a, b) => {
    const w = a.gt(b).astype(g.dtype).add(a.eq(b).astype(g.dtype).mul(0.5));
    return [g.mul(w), g.mul(w.neg().add(1))];
  },
  minimum: (g, a, b) => {
    const w = a.lt(b).astype(g.dtype).add(a.eq(b).astype(g.dtype).mul(0.5));
    return [g.mul(w), g.mul(w.neg().add(1))];
  },
};

/** Turns a JS number into a 0-d tensor like `like` when a rule needs it as a tensor. */
function scalarLike(v: number, like: Tensor): Tensor {
  return like.fullLike(v, []);
}

function binary(name: EwName, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  const ta = isTensor(a) ? a : null;
  const tb = isTensor(b) ? b : null;
  if (!ta && !tb) throw new OpError(name, 'at least one operand must be a tensor');
  // True division and powers of int tensors give floats, as in PyTorch.
  const intOnly = [a, b].every((o) => !isTensor(o) || !isFloat(o.dtype));
  const y = elementwise(name, [a, b], intOnly && (name === 'div' || name === 'pow') ? { computeDtype: 'float32' } : {});
  if (!isFloat(y.dtype) || !inputsNeedRule(a, b)) return y;
  const inputs = [ta, tb].filter((t): t is Tensor => t !== null);
  const ref = (ta ?? tb) as Tensor;
  return record(name, y, inputs, (g, saved) => {
    const sa = ta ? saved[0] : scalarLike(a as number, ref);
    const sb = tb ? saved[ta ? 1 : 0] : scalarLike(b as number, ref);
    const [ga, gb] = BINARY[name](g, sa, sb, saved[saved.length - 1]);
    const out: (Tensor | null)[] = [];
    if (ta) out.push(ga && sumTo(ga, ta.shape));
    if (tb) out.push(gb && sumTo(gb, tb.shape));
    return out;
  }, [...inputs, y]);
}

const inputsNeedRule = (a: TensorOrScalar, b: TensorOrScalar) => [a, b].some((o) => isTensor(o) && isFloat(o.dtype));

function compare(name: EwName, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  return elementwise(name, [a, b], { outDtype: 'int32' });
}

/** where(cond, a, b): a where cond is nonzero, else b (broadcast). */
export function where(cond: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  const tensors = [a, b].filter(isTensor);
  const valueType = tensors.length ? promoteTypes(...tensors.map((t) => t.dtype)) : 'float32';
  const y = elementwise('where', [cond.astype(valueType), a, b], { computeDtype: valueType });
  if (!isFloat(valueType)) return y;
  const ins = [a, b].filter(isTensor);
  return record('where', y, ins, (g, [c]) => {
    const out: Tensor[] = [];
    if (isTensor(a)) out.push(sumTo(where(c, g, 0), a.shape));
    if (isTensor(b)) out.push(sumTo(where(c, 0, g), b.shape));
    return out;
  }, [cond]);
}

declare module '../core/tensor.js' {
  interface Tensor {
    neg(): Tensor; exp(): Tensor; log(): Tensor; sqrt(): Tensor; rsqrt(): Tensor; abs(): Tensor; sign(): Tensor;
    sin(): Tensor; cos(): Tensor; tanh(): Tensor; sigmoid(): Tensor; relu(): Tensor; gelu(): Tensor;
    silu(): Tensor; softplus(): Tensor; square(): Tensor; reciprocal(): Tensor;
    add(o: TensorOrScalar): Tensor; sub(o: TensorOrScalar): Tensor; mul(o: TensorOrScalar): Tensor;
    div(o: TensorOrScalar): Tensor; pow(o: TensorOrScalar): Tensor; maximum(o: TensorOrScalar): Tensor;
    minimum(o: TensorOrScalar): Tensor;
    eq(o: TensorOrScalar): Tensor; ne(o: TensorOrScalar): Tensor; lt(o: TensorOrScalar): Tensor;
    le(o: TensorOrScalar): Tensor; gt(o: TensorOrScalar): Tensor; ge(o: TensorOrScalar): Tensor;
    /** Converts to another dtype (differentiable between float types). */
    astype(dtype: DType): Tensor;
    cast(dtype: DType): Tensor;
    /** A contiguous copy that stays in the graph. */
    clone(): Tensor;
    zerosLike(): Tensor; onesLike(): Tensor;
    /** A tensor of `shape` (default: this shape) filled with v, with this dtype and device. */
    fullLike(v: number, shape?: readonly number[]): Tensor;
    where(cond: Tensor, other: TensorOrScalar): Tensor;
  }
}

const P = Tensor.prototype;
for (const name of Object.keys(UNARY) as EwName[]) {
  (P as unknown as Record<string, () => Tensor>)[name] = function (this: Tensor) { return unary(name, this); };
}
for (const name of Object.keys(BINARY) as EwName[]) {
  (P as unknown as Record<string, (o: TensorOrScalar) => Tensor>)[name] = function (this: Tensor, o: TensorOrScalar) { return binary(name, this, o); };
}
for (const name of ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as EwName[]) {
  (P as unknown as Record<string, (o: TensorOrScalar) => Tensor>)[name] = function (this: Tensor, o: TensorOrScalar) { return compare(name, this, o); };
}

P.astype = function (this: Tensor, dtype: DType): Tensor {
  if (dtype === this.dtype) return this;
  const y = elementwise('copy', [this], { outDtype: dtype, computeDtype: dtype });
  if (!isFloat(dtype) || !isFloat(this.dtype)) return y;
  const from = this.dtype;
  return record('astype', y, [this], (g) => [g.astype(from)]);
};
P.cast = P.astype;
P.clone = function (this: Tensor): Tensor {
  const y = elementwise('copy', [this]);
  return record('clone', y, [this], (g) => [g]);
};
P.fullLike = function (this: Tensor, v: number, shape: readonly number[] = this.shape): Tensor {
  const out = empty(this.device, this.dtype, shape);
  getBackend(this.device).elementwise(DEFS.copy, [{ scalar: v }], out, this.dtype);
  return out;
};
P.zerosLike = function (this: Tensor): Tensor { return this.fullLike(0); };
P.onesLike = function (this: Tensor): Tensor { return this.fullLike(1); };
P.where = function (this: Tensor, cond: Tensor, other: TensorOrScalar): Tensor { return where(cond, this, other); };

declare module '../core/tensor.js' {
  interface Tensor {
    /**
     * In-place: writes `src` (broadcast, cast to this dtype) into this tensor's memory. Not recorded in the
     * graph; refused on tensors that require grad while grad mode is on (use noGrad, as optimizers do).
     */
    copy_(src: TensorOrScalar): Tensor;
  }
}

P.copy_ = function (this: Tensor, src: TensorOrScalar): Tensor {
  this.assertAlive('copy_');
  if (this.requiresGrad && isGradEnabled()) {
    throw new OpError('copy_', `in-place write to a tensor that requires grad (${this}); wrap it in noGrad(() => ...)`);
  }
  if (isTensor(src)) {
    sameDevice('copy_', [this, src]);
    broadcastShapes('copy_', this.shape, src.shape);
    if (src.rank > this.rank || src.shape.some((d, i) => d !== 1 && d !== this.shape[this.rank - src.rank + i])) {
      throw new OpError('copy_', `source ${shapeStr(src.shape)} does not broadcast to destination ${shapeStr(this.shape)}`);
    }
  }
  getBackend(this.device).elementwise(DEFS.copy, [isTensor(src) ? broadcastView(src, this.shape) : { scalar: src }], this, this.dtype);
  return this;
};
