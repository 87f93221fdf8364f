// Transformer activations: gelu (exact or tanh approximation), silu, swiglu = silu(gate)·up fused
// into one kernel each way, and dropout with a counter-based RNG (same mask on cpu and webgpu).
import type { ElementwiseDef } from '../core/backend.js';
import { record } from '../core/autograd.js';
import { getBackend } from '../core/device.js';
import { isFloat, promoteTypes } from '../core/dtype.js';
import { nextUint32 } from '../core/rng.js';
import { broadcastShapes, OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { itemGrid } from '../core/webgpu/kernels/common.js';
import { launch } from '../core/webgpu/launch.js';
import { counterUniform } from '../core/webgpu/kernels/counter-rng.js';
import { DO, dropoutSource } from '../core/webgpu/kernels/dropout.js';
import { cpuData, outData, withContiguous } from './kernelio.js';
import { broadcastView, empty, sameDevice, sumTo } from './util.js';

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
// tanh(±15) is ±1 in f32; clamping keeps drivers' tanh away from inf/inf.
const wTanh = (a: string, t: string) => `tanh(clamp(${a}, ${t}(-15.0), ${t}(15.0)))`;
const wSig = (a: string) => `(1.0 / (1.0 + exp(-(${a}))))`;

const GELU_TANH: ElementwiseDef = {
  name: 'geluTanh', arity: 1,
  wgsl: ([x], t) => `0.5 * ${x} * (1.0 + ${wTanh(`${GELU_C} * (${x} + ${GELU_K} * ${x} * ${x} * ${x})`, t)})`,
  js: (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + GELU_K * x ** 3))),
};

/** d/dx of the tanh approximation, times the incoming gradient g. */
const GELU_TANH_GRAD: ElementwiseDef = {
  name: 'geluTanhGrad', arity: 2,
  wgsl: ([g, x], type) => {
    const t = wTanh(`${GELU_C} * (${x} + ${GELU_K} * ${x} * ${x} * ${x})`, type);
    return `${g} * (0.5 * (1.0 + ${t}) + 0.5 * ${x} * (1.0 - ${t} * ${t}) * ${GELU_C} * (1.0 + ${3 * GELU_K} * ${x} * ${x}))`;
  },
  js: (g, x) => {
    const t = Math.tanh(GELU_C * (x + GELU_K * x ** 3));
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * GELU_K * x * x));
  },
};

const SWIGLU: ElementwiseDef = {
  name: 'swiglu', arity: 2,
  wgsl: ([a, b]) => `${a} * ${wSig(a)} * ${b}`,
  js: (a, b) => a * sigmoid(a) * b,
};

/** ∂/∂gate of silu(gate)·up, times g. */
const SWIGLU_GRAD_GATE: ElementwiseDef = {
  name: 'swigluGradGate', arity: 3,
  wgsl: ([g, a, b]) => `${g} * ${b} * ${wSig(a)} * (1.0 + ${a} * (1.0 - ${wSig(a)}))`,
  js: (g, a, b) => g * b * sigmoid(a) * (1 + a * (1 - sigmoid(a))),
};

/** ∂/∂up of silu(gate)·up, times g. */
const SWIGLU_GRAD_UP: ElementwiseDef = {
  name: 'swigluGradUp', arity: 2,
  wgsl: ([g, a]) => `${g} * ${a} * ${wSig(a)}`,
  js: (g, a) => g * a * sigmoid(a),
};

/** Runs one elementwise definition over broadcast tensor operands. */
function apply(def: ElementwiseDef, operands: Tensor[]): Tensor {
  const device = sameDevice(def.name, operands);
  for (const t of operands) {
    if (!isFloat(t.dtype)) throw new OpError(def.name, `needs float tensors, got ${t.dtype} ${shapeStr(t.shape)}`);
  }
  const shape = broadcastShapes(def.name, ...operands.map((t) => t.shape));
  const dtype = promoteTypes(...operands.map((t) => t.dtype));
  const out = empty(device, dtype, shape);
  getBackend(device).elementwise(def, operands.map((t) => broadcastView(t, shape)), out, dtype);
  return out;
}

export interface GeluOptions {
  /** 'none' (exact, erf) or 'tanh' (the GPT-2 approximation). */
  approximate?: 'none' | 'tanh';
}

/** gelu(x) = x·Φ(x), or its tanh approximation. */
export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const approximate = opts.approximate ?? 'none';
  if (approximate === 'none') return x.gelu();
  if (approximate !== 'tanh') throw new OpError('gelu', `approximate must be 'none' or 'tanh', got '${approximate}'`);
  const y = apply(GELU_TANH, [x]);
  return record('geluTanh', y, [x], (g, [xs]) => [apply(GELU_TANH_GRAD, [g, xs])], [x]);
}

export function silu(x: Tensor): Tensor {
  return x.silu();
}

/** silu(gate)·up in one kernel (broadcasting), with a fused backward. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const y = apply(SWIGLU, [gate, up]);
  return record('swiglu', y, [gate, up], (g, [a, b]) => [
    gate.requiresGrad ? sumTo(apply(SWIGLU_GRAD_GATE, [g, a, b]), gate.shape) : null,
    up.requiresGrad ? sumTo(apply(SWIGLU_GRAD_UP, [g, a]), up.shape) : null,
  ], [gate, up]);
}

/** Zeroes elements where counter_uniform(seed, i) < p and scales the rest by 1/(1 − p). */
function dropoutMask(x: Tensor, p: number, seed: number): Tensor {
  return withContiguous([x], ([xc]) => {
    const out = empty(x.device, x.dtype, x.shape);
    const scale = p >= 1 ? 0 : 1 / (1 - p);
    const n = x.size;
    if (x.device === 'cpu') {
      const { data, off } = cpuData(xc);
      const o = outData(out);
      for (let i = 0; i < n; i++) o[i] = counterUniform(seed, i) >= p ? data[off + i] * scale : 0;
    } else if (n > 0) {
      const prm = DO.pack({ N: n, XOFF: xc.offset, SEED: seed, P: p, SCALE: scale });
      launch('dropout', 'fused:dropout', dropoutSource, prm, [out, xc], itemGrid(n));
    }
    return out;
  });
}

/**
 * Inverted dropout: in training, each element is zeroed with probability p and the rest scaled by
 * 1/(1 − p); identity otherwise. The mask comes from a seed drawn from the global generator
 * (reproducible after manualSeed) hashed with each element's index, so cpu and webgpu agree and
 * the backward recomputes it instead of storing it.
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  x.assertAlive('dropout');
  if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `p must be in [0, 1], got ${p}`);
  if (!isFloat(x.dtype)) throw new OpError('dropout', `needs a float tensor, got ${x.dtype}`);
  if (!training || p === 0) return x;
  const seed = nextUint32();
  const y = dropoutMask(x, p, seed);
  return record('dropout', y, [x], (g) => [dropoutMask(g, p, seed)]);
}
