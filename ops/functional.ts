// The `functional` namespace: every transformer op, plus the existing activations, as plain functions.
export { softmax, logSoftmax, logsumexp, crossEntropy, type CrossEntropyOptions } from './softmax.js';
export { layerNorm, rmsNorm } from './norm.js';
export { applyRotary, type RotaryOptions } from './rotary.js';
export { scaledDotProductAttention, type AttentionOptions } from './attention.js';
