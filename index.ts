// dawngrad: tensors and reverse-mode autodiff on WebGPU (Dawn) with a float64 CPU reference backend.
import './ops/elementwise/index.js';
import './ops/reduce.js';
import './ops/matmul/index.js';
import './ops/movement.js';
import './ops/indexing.js';
import './ops/functional.js';

export { Tensor, type NestedArray } from './core/tensor.js';
export type { DType } from './core/dtype.js';
export { WIDEST_FLOAT, type DeviceName } from './core/backend.js';
export {
  tensor,
  zeros,
  ones,
  full,
  zerosLike,
  onesLike,
  fullLike,
  arange,
  linspace,
  rand,
  randn,
  randint,
  type TensorOptions,
} from './ops/creation.js';
export { where } from './ops/elementwise/index.js';
export { cat, split, stack } from './ops/movement.js';
export { matmul } from './ops/matmul/index.js';
export { manualSeed, getRngState, setRngState, seededUniform } from './core/rng.js';
export { noGrad, grad, vjp, isGradEnabled, type VjpResult } from './core/autograd.js';
export { setDetectAnomaly, isAnomalyDetectionEnabled, AnomalyError } from './core/anomaly.js';
export { scope, keep } from './core/scope.js';
export { autocast, autocastDtype, type AutocastDType } from './core/autocast.js';
export { memory, resetPeak, type MemoryStats } from './core/stats.js';
export { setGcThreshold, gcThreshold } from './core/reclaim.js';
export {
  deviceInfo,
  setDefaultDevice,
  getDefaultDevice,
  initWebGpu,
  disposeRuntime,
  emptyCache,
} from './core/device.js';
export { OpError } from './core/shape.js';
export { config, configure, withConfig, type Config } from './core/config.js';
export * as testing from './testing/index.js';
export * as functional from './ops/functional.js';
export * as ode from './ode/index.js';
export * as nn from './nn/index.js';
export * as optim from './nn/optim/index.js';
export * as io from './nn/io/index.js';
export * as models from './models/index.js';
