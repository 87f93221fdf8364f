// The `functional` namespace: every transformer op, plus the existing activations, as plain functions.
import type { Tensor } from '../core/tensor.js';

export { softmax, logSoftmax, logsumexp, crossEntropy, type CrossEntropyOptions } from './softmax.js';
export { layerNorm, rmsNorm } from './norm.js';
export { applyRotary, type RotaryOptions } from './rotary.js';
export { scaledDotProductAttention, type AttentionOptions } from './attention.js';
export { gelu, silu, swiglu, dropout, type GeluOptions } from './activation.js';
export { embedding } from './embedding.js';

export const relu = (x: Tensor): Tensor => x.relu();
export const sigmoid = (x: Tensor): Tensor => x.sigmoid();
export const tanh = (x: Tensor): Tensor => x.tanh();
export const softplus = (x: Tensor): Tensor => x.softplus();
