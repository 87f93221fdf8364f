// optim: optimizers (fused in-place updates), gradient clipping, loss scaling and learning-rate schedules.
export {
  Optimizer,
  type BaseHyper,
  type ParamGroup,
  type ParamGroupInput,
  type ParamState,
  type OptimizerStateDict,
} from './optimizer.js';
export { SGD, type SgdHyper } from './sgd.js';
export { Adam, AdamW, type AdamHyper } from './adam.js';
export { RMSprop, type RmspropHyper } from './rmsprop.js';
export { clipGradNorm, clipGradNormGroups } from './clip.js';
export { GradScaler, type GradScalerOptions, type GradScalerState } from './scaler.js';
export { weightDecayGroups, NO_DECAY_ROLES } from './groups.js';
export * as lr from './schedules.js';
export { LRScheduler, type SchedulerState } from './schedules.js';
