// nn: modules, layers, initialisers and functional forms (optimizers live in nn/optim, io in nn/io).
export {
  Module,
  Parameter,
  type ParameterRole,
  type StateDict,
  type LoadStateDictOptions,
  type LoadStateDictResult,
  type ModuleToOptions,
} from './module.js';
export {
  Linear,
  Embedding,
  LayerNorm,
  RMSNorm,
  Dropout,
  Tanh,
  ReLU,
  Sigmoid,
  SiLU,
  GELU,
  Identity,
  Sequential,
  ModuleList,
  type LayerOptions,
} from './layers.js';
export * as init from './init.js';
export * as functional from './functional.js';
