// Transformer activations as functions: gelu (exact or tanh approximation), silu, swiglu. Their
// kernels and backward rules are rows of the elementwise table (ops/elementwise); swiglu =
// silu(gate)·up runs as one kernel each way, its backward writing both gradients (ops/swiglu).
import { OpError } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { elementwiseOp } from './elementwise/index.js';

export interface GeluOptions {
  /** 'none' (exact, erf) or 'tanh' (the GPT-2 approximation). */
  approximate?: 'none' | 'tanh';
}

/** gelu(x) = x·Φ(x), or its tanh approximation. */
export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const approximate = opts.approximate ?? 'none';
  if (approximate === 'none') return x.gelu();
  if (approximate !== 'tanh') throw new OpError('gelu', `approximate must be 'none' or 'tanh', got '${approximate}'`);
  return elementwiseOp('geluTanh', [x]);
}

export function silu(x: Tensor): Tensor {
  return x.silu();
}

/** silu(gate)·up in one kernel (broadcasting), with a fused backward (one kernel for both gradients). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  return elementwiseOp('swiglu', [gate, up]);
}
