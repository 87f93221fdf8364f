// Elementwise ops: one table, one row per op. A row holds the op's WGSL expression, its float64 JS
// reference, its backward rule (written with other differentiable ops) and how the test suites check
// it. The table is keyed by a union of op names, so a name without a row (or a row without a rule or
// check) is a compile error. Activations (gelu-tanh, swiglu) and the kernels of backward rules
// (geluGrad, ...) are rows too. CONTRIBUTING.md walks through adding one.
import { ADD_KERNEL, COPY_KERNEL, type ElementwiseDef } from '../../core/backend.js';
import { fill } from '../../core/primitives.js';
import { isGradEnabled, record } from '../../core/autograd.js';
import { getBackend } from '../../core/device.js';
import { isFloat, promoteTypes, type DType } from '../../core/dtype.js';
import { broadcastShapes, OpError, shapeStr } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { erf, WGSL_ERF } from './erf.js';
import { broadcastView, empty, isTensor, sameDevice, sumTo, type Tolerance, type TensorOrScalar } from '../util.js';
import { argTensorOrNumber } from '../../core/args.js';
import { swigluBackward } from '../swiglu/index.js';

/** Ops that become Tensor methods `x.name()`. */
export const UNARY_OPS = [
  'neg',
  'exp',
  'log',
  'sqrt',
  'rsqrt',
  'abs',
  'sign',
  'sin',
  'cos',
  'tanh',
  'sigmoid',
  'relu',
  'gelu',
  'silu',
  'softplus',
  'square',
  'reciprocal',
] as const;
/** Ops that become Tensor methods `x.name(other)` (other: tensor or number, broadcast). */
export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'] as const;
/** Comparisons: Tensor methods giving int32 0/1. */
export const COMPARE_OPS = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
/** Rows without a Tensor method: called by functions (where, gelu, swiglu, astype) or by backward rules. */
export const KERNEL_OPS = ['copy', 'where', 'geluGrad', 'siluGrad', 'geluTanh', 'geluTanhGrad', 'swiglu'] as const;

export type UnaryOpName = (typeof UNARY_OPS)[number];
export type BinaryOpName = (typeof BINARY_OPS)[number];
export type CompareOpName = (typeof COMPARE_OPS)[number];
export type EwName = UnaryOpName | BinaryOpName | CompareOpName | (typeof KERNEL_OPS)[number];

/** What a backward rule can read: the operands (numbers as 0-d tensors) and the output, as saved. */
export interface Saved {
  readonly x: readonly Tensor[];
  readonly y: Tensor;
  /** Per operand: whether it needs a gradient (rules may skip work for the others). */
  readonly needs: readonly boolean[];
}

/** Gradient per operand (null: none), at the output's shape; broadcast operands are summed back after. */
export type Rule = (g: Tensor, saved: Saved) => readonly (Tensor | null)[];

/** Input values for one operand in the generated tests (default: floats in [-2, 2]). */
export interface ValueRange {
  min?: number;
  max?: number;
  /** Values kept at least 0.05 away from these (kinks). */
  avoid?: number[];
  /** An int32 operand (e.g. where's condition). */
  int?: boolean;
}

/** How the test suites check a row (test/ops-cases.ts, test/ops-elementwise-table.test.ts). */
export interface EwCheck {
  /** Per operand; missing entries use the defaults. */
  readonly ranges?: readonly ValueRange[];
  /** Operands never within 0.05 of each other after broadcasting (maximum/minimum have a kink at ties). */
  readonly untied?: boolean;
  /** Finite-difference gradcheck on cpu float64. */
  readonly cpu?: Tolerance;
  /** webgpu float32 vs cpu float64, forward and gradients. */
  readonly gpu?: Tolerance;
}

export interface EwRow extends ElementwiseDef {
  readonly name: EwName;
  /** Int operands: keep the int type, compute in float32 ('promote': exp, div, ...), or refuse ('reject'). */
  readonly ints: 'keep' | 'promote' | 'reject';
  /** The output is int32 0/1 (comparisons). */
  readonly boolOut: boolean;
  /** The backward rule, or 'none': not differentiable (the output is a constant to autograd). */
  readonly grad: Rule | 'none';
  /** What the rule reads: the operands, the output, both or nothing (kept alive until backward). */
  readonly save: 'input' | 'output' | 'both' | 'none';
  readonly check: EwCheck;
}

type RowSpec = Omit<EwRow, 'name' | 'ints' | 'boolOut' | 'save' | 'scalarOnly'> &
  Partial<Pick<EwRow, 'ints' | 'boolOut' | 'save' | 'scalarOnly'>>;

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
// tanh(±15) is ±1 in f32; clamping avoids inf/inf inside some drivers' tanh.
const wTanh = (a: string, t: string) => `tanh(clamp(${a}, ${t}(-15.0), ${t}(15.0)))`;
const wSigmoid = (a: string) => `(1.0 / (1.0 + exp(-(${a}))))`;
const wGeluTanhInner = (x: string) => `${GELU_C} * (${x} + ${GELU_K} * ${x} * ${x} * ${x})`;
const geluTanhInner = (x: number) => GELU_C * (x + GELU_K * x ** 3);

const POW_HELPER = `
fn pow_signed(x: f32, y: f32) -> f32 {
  if (x >= 0.0) { return pow(x, y); }
  let nan_bits = 0x7fc00000u; // a let, not a constant: WGSL rejects NaN constants
  if (y != floor(y)) { return bitcast<f32>(nan_bits); }
  let m = pow(-x, y);
  return select(m, -m, (abs(y) % 2.0) == 1.0);
}`;

const positive: ValueRange = { min: 0.2, max: 2 };
/** Ties split the gradient evenly, as PyTorch does. `w` is 1 where a wins, ½ at ties. */
const splitTies = (g: Tensor, w: Tensor) => [g.mul(w), g.mul(w.neg().add(1))];
const compare = (wgslOp: string, js: (a: number, b: number) => boolean): RowSpec => ({
  arity: 2,
  boolOut: true,
  wgsl: ([a, b], t) => `select(${t}(0), ${t}(1), ${a} ${wgslOp} ${b})`,
  js: (a, b) => +js(a, b),
  grad: 'none',
  check: {},
});

/**
 * The rows. Expressions must also be valid for vec4 operands (type-generic literals via `t`, the WGSL
 * compute type), or set scalarOnly.
 */
const ROWS: { readonly [N in EwName]: RowSpec } = {
  neg: { arity: 1, wgsl: ([a]) => `-${a}`, js: (a) => -a, grad: (g) => [g.neg()], save: 'none', check: {} },
  exp: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `exp(${a})`,
    js: Math.exp,
    save: 'output',
    grad: (g, { y }) => [g.mul(y)],
    check: {},
  },
  log: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `log(${a})`,
    js: Math.log,
    grad: (g, { x: [x] }) => [g.div(x)],
    check: { ranges: [positive] },
  },
  sqrt: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `sqrt(${a})`,
    js: Math.sqrt,
    save: 'output',
    grad: (g, { y }) => [g.mul(0.5).div(y)],
    check: { ranges: [positive] },
  },
  rsqrt: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `inverseSqrt(${a})`,
    js: (a) => 1 / Math.sqrt(a),
    save: 'output',
    grad: (g, { y }) => [g.mul(y.mul(y).mul(y)).mul(-0.5)],
    check: { ranges: [positive] },
  },
  abs: {
    arity: 1,
    wgsl: ([a]) => `abs(${a})`,
    js: Math.abs,
    grad: (g, { x: [x] }) => [g.mul(x.sign())],
    check: { ranges: [{ avoid: [0] }] },
  },
  sign: { arity: 1, wgsl: ([a]) => `sign(${a})`, js: Math.sign, grad: 'none', check: {} },
  sin: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `sin(${a})`,
    js: Math.sin,
    grad: (g, { x: [x] }) => [g.mul(x.cos())],
    check: {},
  },
  cos: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `cos(${a})`,
    js: Math.cos,
    grad: (g, { x: [x] }) => [g.mul(x.sin()).neg()],
    check: {},
  },
  tanh: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a], t) => wTanh(a, t),
    js: Math.tanh,
    save: 'output',
    grad: (g, { y }) => [g.mul(y.square().neg().add(1))],
    check: {},
  },
  sigmoid: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `1.0 / (1.0 + exp(-${a}))`,
    js: sigmoid,
    save: 'output',
    grad: (g, { y }) => [g.mul(y.mul(y.neg().add(1)))],
    check: {},
  },
  relu: {
    arity: 1,
    wgsl: ([a], t) => `max(${a}, ${t}(0))`,
    js: (a) => Math.max(a, 0),
    grad: (g, { x: [x] }) => [g.mul(x.gt(0).astype(g.dtype))],
    check: { ranges: [{ avoid: [0] }] },
  },
  gelu: {
    arity: 1,
    ints: 'promote',
    scalarOnly: true,
    wgslHelpers: WGSL_ERF,
    wgsl: ([a]) => `0.5 * ${a} * (1.0 + erf_f32(${a} * ${SQRT1_2}))`,
    js: (a) => 0.5 * a * (1 + erf(a * SQRT1_2)),
    grad: (g, { x: [x] }) => [g.mul(runKernel('geluGrad', [x]))],
    check: {},
  },
  silu: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `${a} / (1.0 + exp(-${a}))`,
    js: (a) => a * sigmoid(a),
    grad: (g, { x: [x] }) => [g.mul(runKernel('siluGrad', [x]))],
    check: {},
  },
  softplus: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a], t) => `max(${a}, ${t}(0)) + log(1.0 + exp(-abs(${a})))`,
    js: (a) => Math.max(a, 0) + Math.log1p(Math.exp(-Math.abs(a))),
    grad: (g, { x: [x] }) => [g.mul(x.sigmoid())],
    check: {},
  },
  square: {
    arity: 1,
    wgsl: ([a]) => `${a} * ${a}`,
    js: (a) => a * a,
    grad: (g, { x: [x] }) => [g.mul(x).mul(2)],
    check: {},
  },
  reciprocal: {
    arity: 1,
    ints: 'promote',
    wgsl: ([a]) => `1.0 / ${a}`,
    js: (a) => 1 / a,
    save: 'output',
    grad: (g, { y }) => [g.mul(y.square()).neg()],
    check: { ranges: [positive] },
  },

  add: { arity: 2, wgsl: ADD_KERNEL.wgsl, js: ADD_KERNEL.js, save: 'none', grad: (g) => [g, g], check: {} },
  sub: {
    arity: 2,
    wgsl: ([a, b]) => `${a} - ${b}`,
    js: (a, b) => a - b,
    save: 'none',
    grad: (g) => [g, g.neg()],
    check: {},
  },
  mul: {
    arity: 2,
    wgsl: ([a, b]) => `${a} * ${b}`,
    js: (a, b) => a * b,
    grad: (g, { x: [a, b] }) => [g.mul(b), g.mul(a)],
    check: {},
  },
  div: {
    arity: 2,
    ints: 'promote',
    wgsl: ([a, b]) => `${a} / ${b}`,
    js: (a, b) => a / b,
    grad: (g, { x: [a, b] }) => [g.div(b), g.mul(a).div(b.square()).neg()],
    check: { ranges: [{}, { min: 0.3, max: 2 }] },
  },
  pow: {
    arity: 2,
    ints: 'promote',
    scalarOnly: true,
    wgslHelpers: POW_HELPER,
    wgsl: ([a, b]) => `pow_signed(${a}, ${b})`,
    js: Math.pow,
    save: 'both',
    grad: (g, { x: [a, b], y }) => [g.mul(b).mul(a.pow(b.sub(1))), g.mul(y).mul(a.log())],
    check: {
      ranges: [
        { min: 0.3, max: 2 },
        { min: -2, max: 2 },
      ],
    },
  },
  maximum: {
    arity: 2,
    wgsl: ([a, b]) => `max(${a}, ${b})`,
    js: Math.max,
    grad: (g, { x: [a, b] }) => splitTies(g, a.gt(b).astype(g.dtype).add(a.eq(b).astype(g.dtype).mul(0.5))),
    check: { untied: true },
  },
  minimum: {
    arity: 2,
    wgsl: ([a, b]) => `min(${a}, ${b})`,
    js: Math.min,
    grad: (g, { x: [a, b] }) => splitTies(g, a.lt(b).astype(g.dtype).add(a.eq(b).astype(g.dtype).mul(0.5))),
    check: { untied: true },
  },

  eq: compare('==', (a, b) => a === b),
  ne: compare('!=', (a, b) => a !== b),
  lt: compare('<', (a, b) => a < b),
  le: compare('<=', (a, b) => a <= b),
  gt: compare('>', (a, b) => a > b),
  ge: compare('>=', (a, b) => a >= b),

  copy: { arity: 1, wgsl: COPY_KERNEL.wgsl, js: COPY_KERNEL.js, grad: 'none', check: {} },
  where: {
    arity: 3,
    wgsl: ([c, a, b], t) => `select(${b}, ${a}, ${c} != ${t}(0))`,
    js: (c, a, b) => (c !== 0 ? a : b),
    grad: (g, { x: [c], needs }) => [null, needs[1] ? where(c, g, 0) : null, needs[2] ? where(c, 0, g) : null],
    check: { ranges: [{ int: true, min: 0, max: 1 }] },
  },
  geluGrad: {
    arity: 1,
    scalarOnly: true,
    wgslHelpers: WGSL_ERF,
    grad: 'none',
    check: {},
    wgsl: ([a]) => `0.5 * (1.0 + erf_f32(${a} * ${SQRT1_2})) + ${a} * exp(-0.5 * ${a} * ${a}) * ${INV_SQRT_2PI}`,
    js: (a) => 0.5 * (1 + erf(a * SQRT1_2)) + a * Math.exp(-0.5 * a * a) * INV_SQRT_2PI,
  },
  siluGrad: {
    arity: 1,
    grad: 'none',
    check: {},
    wgsl: ([a]) => `(1.0 / (1.0 + exp(-${a}))) * (1.0 + ${a} * (1.0 - 1.0 / (1.0 + exp(-${a}))))`,
    js: (a) => sigmoid(a) * (1 + a * (1 - sigmoid(a))),
  },
  // gelu's tanh approximation (GPT-2).
  geluTanh: {
    arity: 1,
    ints: 'reject',
    wgsl: ([x], t) => `0.5 * ${x} * (1.0 + ${wTanh(wGeluTanhInner(x), t)})`,
    js: (x) => 0.5 * x * (1 + Math.tanh(geluTanhInner(x))),
    grad: (g, { x: [x] }) => [runKernel('geluTanhGrad', [g, x])],
    check: {},
  },
  /** d/dx of the tanh approximation, times the incoming gradient g. */
  geluTanhGrad: {
    arity: 2,
    grad: 'none',
    check: {},
    wgsl: ([g, x], type) => {
      const t = wTanh(wGeluTanhInner(x), type);
      return `${g} * (0.5 * (1.0 + ${t}) + 0.5 * ${x} * (1.0 - ${t} * ${t}) * ${GELU_C} * (1.0 + ${3 * GELU_K} * ${x} * ${x}))`;
    },
    js: (g, x) => {
      const t = Math.tanh(geluTanhInner(x));
      return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * GELU_K * x * x));
    },
  },
  /** silu(gate)·up in one kernel each way (the backward writes both gradients: ops/swiglu). */
  swiglu: {
    arity: 2,
    ints: 'reject',
    wgsl: ([a, b]) => `${a} * ${wSigmoid(a)} * ${b}`,
    js: (a, b) => a * sigmoid(a) * b,
    check: {},
    grad: (g, { x: [a, b], needs }) => swigluBackward(g, a, b, [needs[0], needs[1]]),
  },
};

/** The table, by name. */
export const ELEMENTWISE: { readonly [N in EwName]: EwRow } = Object.fromEntries(
  Object.entries(ROWS).map(([name, spec]) => [
    name,
    { ints: 'keep', boolOut: false, save: 'input', scalarOnly: false, ...spec, name },
  ]),
) as { [N in EwName]: EwRow };

export interface KernelOptions {
  outDtype?: DType;
  computeDtype?: DType;
}

/**
 * Runs a row's kernel over broadcast operands, outside autograd. Numbers become uniforms (no upload).
 * The compute type is the promoted operand type (float32 for int operands of 'promote' rows); the
 * output has the compute type, or int32 for comparisons.
 */
export function runKernel(name: EwName, operands: readonly TensorOrScalar[], opts: KernelOptions = {}): Tensor {
  const row = ELEMENTWISE[name];
  const names = operands.length === 3 ? ['condition', 'input', 'other'] : ['input', 'other'];
  operands.forEach((o, i) => argTensorOrNumber(name, names[i], o));
  const tensors = operands.filter(isTensor);
  if (tensors.length === 0) throw new OpError(name, 'at least one operand must be a tensor');
  const device = sameDevice(name, tensors);
  if (row.ints === 'reject') {
    for (const t of tensors)
      if (!isFloat(t.dtype)) throw new OpError(name, `needs float tensors, got ${t.dtype} ${shapeStr(t.shape)}`);
  }
  const shape = broadcastShapes(name, ...tensors.map((t) => t.shape));
  // As in PyTorch, a number does not widen a float tensor (x16 * 0.5 stays float16); a fractional one
  // makes an int op float32.
  const tensorType = promoteTypes(...tensors.map((t) => t.dtype));
  const fractional = operands.some((o) => !isTensor(o) && !Number.isInteger(o));
  const promoted = !isFloat(tensorType) && fractional ? 'float32' : tensorType;
  const computeDtype = opts.computeDtype ?? (row.ints === 'promote' && !isFloat(promoted) ? 'float32' : promoted);
  const out = empty(device, opts.outDtype ?? (row.boolOut ? 'int32' : computeDtype), shape);
  getBackend(device).elementwise(
    row,
    operands.map((o) => (isTensor(o) ? broadcastView(o, shape) : { scalar: o })),
    out,
    computeDtype,
  );
  return out;
}

/** Runs a row and records its backward rule when the row is differentiable and a float operand needs it. */
export function elementwiseOp(name: EwName, operands: readonly TensorOrScalar[], opts: KernelOptions = {}): Tensor {
  const row = ELEMENTWISE[name];
  const y = runKernel(name, operands, opts);
  const rule = row.grad;
  const tensors = operands.filter(isTensor);
  if (rule === 'none' || !isFloat(y.dtype) || !tensors.some((t) => isFloat(t.dtype))) return y;
  const saveInputs = row.save === 'input' || row.save === 'both';
  const saveOutput = row.save === 'output' || row.save === 'both';
  const needs = operands.map((o) => isTensor(o) && o.requiresGrad);
  return record(
    name,
    y,
    tensors,
    (g, saved) => {
      let next = 0;
      const x = saveInputs ? operands.map((o) => (isTensor(o) ? saved[next++] : g.fullLike(o, []))) : [];
      const output = saveOutput ? saved[next] : null;
      const grads = rule(g, {
        x,
        needs,
        get y(): Tensor {
          if (!output)
            throw new Error(
              `elementwise '${name}': its rule reads the output, but the row saves '${row.save}'; set save: 'output' or 'both'`,
            );
          return output;
        },
      });
      return operands.flatMap((o, i) => (isTensor(o) ? [grads[i] ? sumTo(grads[i] as Tensor, o.shape) : null] : []));
    },
    [...(saveInputs ? tensors : []), ...(saveOutput ? [y] : [])],
  );
}

/** where(cond, a, b): a where cond is nonzero, else b (broadcast). */
export function where(cond: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  const tensors = [a, b].filter(isTensor);
  const valueType = tensors.length ? promoteTypes(...tensors.map((t) => t.dtype)) : 'float32';
  return elementwiseOp('where', [cond.astype(valueType), a, b], { computeDtype: valueType });
}

type UnaryMethods = { [N in UnaryOpName]: () => Tensor };
type BinaryMethods = { [N in BinaryOpName | CompareOpName]: (other: TensorOrScalar) => Tensor };

declare module '../../core/tensor.js' {
  interface Tensor extends UnaryMethods, BinaryMethods {
    /** Converts to another dtype (differentiable between float types). */
    astype(dtype: DType): Tensor;
    cast(dtype: DType): Tensor;
    /** astype('float16'), as torch's x.half(). */
    half(): Tensor;
    /** astype('float32'), as torch's x.float(). */
    float(): Tensor;
    /** A contiguous copy that stays in the graph. */
    clone(): Tensor;
    zerosLike(): Tensor;
    onesLike(): Tensor;
    /** A tensor of `shape` (default: this shape) filled with v, with this dtype and device. */
    fullLike(v: number, shape?: readonly number[]): Tensor;
    where(cond: Tensor, other: TensorOrScalar): Tensor;
  }
}

const P = Tensor.prototype;
for (const name of UNARY_OPS)
  P[name] = function (this: Tensor) {
    return elementwiseOp(name, [this]);
  };
for (const name of [...BINARY_OPS, ...COMPARE_OPS])
  P[name] = function (this: Tensor, o: TensorOrScalar) {
    return elementwiseOp(name, [this, o]);
  };

P.astype = function (this: Tensor, dtype: DType): Tensor {
  if (dtype === this.dtype) return this;
  const y = runKernel('copy', [this], { outDtype: dtype, computeDtype: dtype });
  if (!isFloat(dtype) || !isFloat(this.dtype)) return y;
  const from = this.dtype;
  return record('astype', y, [this], (g) => [g.astype(from)]);
};
P.cast = P.astype;
P.half = function (this: Tensor): Tensor {
  return this.astype('float16');
};
P.float = function (this: Tensor): Tensor {
  return this.astype('float32');
};
P.clone = function (this: Tensor): Tensor {
  const y = runKernel('copy', [this]);
  return record('clone', y, [this], (g) => [g]);
};
P.fullLike = function (this: Tensor, v: number, shape: readonly number[] = this.shape): Tensor {
  return fill(this, v, shape);
};
P.zerosLike = function (this: Tensor): Tensor {
  return this.fullLike(0);
};
P.onesLike = function (this: Tensor): Tensor {
  return this.fullLike(1);
};
P.where = function (this: Tensor, cond: Tensor, other: TensorOrScalar): Tensor {
  return where(cond, this, other);
};

/** astype's round trip through float32 needs a coarser finite-difference step (test/ops-cases.ts). */
export const ASTYPE_CHECK: EwCheck = { cpu: { eps: 1e-2, atol: 1e-4, rtol: 1e-3 } };

declare module '../../core/tensor.js' {
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
      throw new OpError(
        'copy_',
        `source ${shapeStr(src.shape)} does not broadcast to destination ${shapeStr(this.shape)}`,
      );
    }
  }
  getBackend(this.device).elementwise(
    ELEMENTWISE.copy,
    [isTensor(src) ? broadcastView(src, this.shape) : { scalar: src }],
    this,
    this.dtype,
  );
  return this;
};
