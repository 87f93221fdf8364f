// Optimizer settings for fine-tuning CLEX's ODE weights (W_up, W_down).
//
// Why they need their own learning rate: along the ODE's path the hidden units act((z + log θ_ntk)·W_up)
// are saturated (|z + log θ_ntk| reaches ~20, so tanh sits at ±1) and barely change with t, so the
// learned part of dz/dt is nearly a constant vector c = act(·)·W_down and z(t) ≈ z_ntk(t) + c·(t − 1).
// Adam moves every weight by about its learning rate per step whatever the gradient's size, and all
// λd hidden units push c the same way: one step moves log θ(t) by up to lr·λd·(t − 1), 112·lr for a
// head of 16 at max_factor 8. At the transformer's rate (1e-3) log θ(8) moved by up to ±2 within 150
// steps of a measured fine-tune (the highest frequency to ≈ θ/8, which suits the spread training
// positions and breaks dense ones) while |W_down| stayed ≤ 0.02. Dividing the rate by
// λd·(max_factor − 1) bounds one step's change of any log-frequency, at any t, by lr.
// No weight decay: decay pulls W_up toward 0 for no benefit (the reference trains the ODE without it).
//
// Why their gradient is clipped on its own: θ(t) multiplies positions up to t·L0 in every angle, so the
// ODE weights' gradient is large (norm ~10 to ~100 against ~5 for the rest of a small LLaMA at t > 1).
// Inside one global norm it would set the clip factor on every CLEX step and shrink the transformer's
// gradient 10–100×: the model would barely learn the spread positions it is fine-tuned on.
import { OpError } from '../../core/shape.js';
import { clipGradNorm, clipGradNormGroups } from '../../nn/optim/clip.js';
import { weightDecayGroups } from '../../nn/optim/groups.js';
import type { Tensor } from '../../core/tensor.js';
import type { CausalLM } from '../causal-lm.js';
import type { CLEX } from './index.js';

/** An optimizer parameter group (fits `optim.AdamW(groups, defaults)` and the other optimizers). */
export interface ClexParamGroup {
  params: Tensor[];
  lr?: number;
  weightDecay?: number;
}

function checkRate(fn: string, name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw new OpError(fn, `${name} must be a finite number ≥ 0, got ${String(v)}`);
}

/**
 * The learning rate for CLEX's ODE weights given the rate of the rest of the model:
 * lr / (param_factor · d · (max_factor − 1)), so that one Adam step changes no log-frequency at any t
 * by more than about lr (see the file comment). With max_factor 1 the ODE is never solved: lr / (λd).
 */
export function clexOdeLearningRate(clex: CLEX, lr: number): number {
  checkRate('models.clexOdeLearningRate', 'lr', lr);
  const hidden = clex.scaling.param_factor * clex.dim;
  return lr / (hidden * Math.max(1, clex.maxFactor - 1));
}

/**
 * The optimizer group for a model's CLEX ODE weights, `{ params: [W_up, W_down], lr: clexOdeLearningRate(lr),
 * weightDecay: 0 }`, or null when the model does not use CLEX. Leave these parameters out of the other groups.
 */
export function clexOdeParamGroup(model: CausalLM, lr: number): ClexParamGroup | null {
  checkRate('models.clexOdeParamGroup', 'lr', lr);
  if (!model.clex) return null;
  return { params: model.clex.parameters(), lr: clexOdeLearningRate(model.clex, lr), weightDecay: 0 };
}

/**
 * Every parameter of the model in optimizer groups: the CLEX ODE weights in their own group
 * (clexOdeParamGroup), the others as `optim.weightDecayGroups` splits them (weightDecay, default 0, on
 * weight matrices and embeddings; none on biases and norm gains), each group at lr. The optimizer's
 * defaults should carry the same lr: `new optim.AdamW(models.clexParamGroups(m, { lr, weightDecay }), { lr })`.
 * Schedulers scale each group's rate by the same factor, so the ratio holds through warmup and decay.
 */
export function clexParamGroups(model: CausalLM, opts: { lr: number; weightDecay?: number }): ClexParamGroup[] {
  const weightDecay = opts.weightDecay ?? 0;
  checkRate('models.clexParamGroups', 'lr', opts.lr);
  checkRate('models.clexParamGroups', 'weightDecay', weightDecay);
  const ode = clexOdeParamGroup(model, opts.lr);
  const rest = weightDecayGroups(model, weightDecay, { exclude: ode?.params }).map((g) => ({ ...g, lr: opts.lr }));
  return ode ? [...rest, ode] : rest;
}

/**
 * Gradient clipping for CLEX fine-tuning: the ODE weights' gradient and every other parameter's gradient
 * are each clipped to a global L2 norm of maxNorm (one `optim.clipGradNorm` over all of them would let
 * the ODE's large gradient shrink everyone else's), in one pass (`optim.clipGradNormGroups`). Returns
 * both norms before clipping, as 0-d tensors (no readback); `ode` is null when the model does not use
 * CLEX (then this is `optim.clipGradNorm`).
 */
export function clipClexGradNorm(model: CausalLM, maxNorm: number): { rest: Tensor; ode: Tensor | null } {
  if (!(maxNorm >= 0))
    throw new OpError('models.clipClexGradNorm', `maxNorm must be a number ≥ 0, got ${String(maxNorm)}`);
  const odeParams = model.clex?.parameters() ?? [];
  const odeSet = new Set(odeParams);
  const rest = model.parameters().filter((p) => !odeSet.has(p));
  if (!model.clex) return { rest: clipGradNorm(rest, maxNorm), ode: null };
  const [restNorm, odeNorm] = clipGradNormGroups([rest, odeParams], maxNorm);
  return { rest: restNorm, ode: odeNorm };
}
