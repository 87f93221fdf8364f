// The `functional` namespace: every transformer op, plus the existing activations, as plain functions.
import type { Tensor } from '../core/tensor.js';

export { softmax, logSoftmax, logsumexp, crossEntropy, type CrossEntropyOptions } from './softmax/index.js';
export { layerNorm, rmsNorm, addLayerNorm, addRmsNorm, type AddNormResult } from './norm/index.js';
export {
  applyRotary,
  applyRotaryQK,
  applyRotaryFrequencies,
  applyRotaryQKFrequencies,
  rotaryTables,
  type RotaryOptions,
  type RotaryTableOptions,
} from './rotary/index.js';
export { scaledDotProductAttention, type AttentionOptions } from './attention/index.js';
export { gelu, silu, swiglu, type GeluOptions } from './activation.js';
export { dropout } from './dropout/index.js';
export { embedding } from './embedding.js';

export const relu = (x: Tensor): Tensor => x.relu();
export const sigmoid = (x: Tensor): Tensor => x.sigmoid();
export const tanh = (x: Tensor): Tensor => x.tanh();
export const softplus = (x: Tensor): Tensor => x.softplus();
