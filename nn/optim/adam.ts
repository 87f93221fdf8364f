// Adam (L2 penalty added to the gradient) and AdamW (decoupled weight decay), PyTorch semantics:
//   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,
//   p ← p·(1 − lr·wd [AdamW only]) − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps).
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import type { UpdateKernel } from './kernels.js';
import {
  cpuArray,
  Optimizer,
  type BaseHyper,
  type GpuUpdate,
  type ParamGroup,
  type ParamGroupInput,
  type ParamState,
  type UpdateArgs,
} from './optimizer.js';

export interface AdamHyper extends BaseHyper {
  betas: [number, number];
  eps: number;
}

/**
 * The same update in f32 on webgpu (1/√bc2 multiplies instead of dividing). The terms of the learning
 * rate, weight decay and step count are per parameter, so every group shares the dispatches.
 */
const ADAM_KERNEL: UpdateKernel = {
  name: 'adam',
  state: ['m', 'v'],
  hyper: ['beta1', 'oneMinusBeta1', 'beta2', 'oneMinusBeta2', 'eps'],
  perParam: ['l2', 'decay', 'stepSize', 'invSqrtBc2'],
  flags: [],
  body: ({ param, grad, state: { m, v }, hyper: h, prev }) => `let p0 = ${param}[pi];
      let g = ${grad}[gi] + ${h('l2')} * p0;
      let mt = ${h('beta1')} * ${prev(m)} + ${h('oneMinusBeta1')} * g;
      let vt = ${h('beta2')} * ${prev(v)} + ${h('oneMinusBeta2')} * g * g;
      ${m}[i] = mt;
      ${v}[i] = vt;
      let denom = sqrt(vt) * ${h('invSqrtBc2')} + ${h('eps')};
      ${param}[pi] = p0 * ${h('decay')} - ${h('stepSize')} * mt / denom;`,
};

abstract class AdamBase extends Optimizer<AdamHyper> {
  protected abstract readonly decoupled: boolean;

  protected validate(group: ParamGroup<AdamHyper>): void {
    super.validate(group);
    const [b1, b2] = group.betas;
    if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1))
      throw new OpError(this.name, `betas must be in [0, 1), got [${group.betas.join(', ')}]`);
    if (!(group.eps >= 0)) throw new OpError(this.name, `invalid eps ${group.eps}`);
  }

  protected bufferNames(): string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }

  /** The update's host-side terms (bias corrections folded into stepSize and invSqrtBc2). */
  private terms(state: ParamState, group: ParamGroup<AdamHyper>) {
    const [beta1, beta2] = group.betas;
    const { lr, eps, weightDecay } = group;
    const t = state.step;
    return {
      beta1,
      beta2,
      eps,
      l2: this.decoupled ? 0 : weightDecay,
      decay: this.decoupled ? 1 - lr * weightDecay : 1,
      stepSize: lr / (1 - beta1 ** t),
      sqrtBc2: Math.sqrt(1 - beta2 ** t),
    };
  }

  protected updateGpu({ state, group }: UpdateArgs<AdamHyper>): GpuUpdate {
    const { beta1, beta2, eps, l2, decay, stepSize, sqrtBc2 } = this.terms(state, group);
    return {
      kernel: ADAM_KERNEL,
      state: [state.buffers.exp_avg, state.buffers.exp_avg_sq],
      hyper: [beta1, 1 - beta1, beta2, 1 - beta2, eps],
      perParam: [l2, decay, stepSize, 1 / sqrtBc2],
      flags: [],
      first: state.step === 1,
    };
  }

  protected updateCpu({ param, grad, state, group }: UpdateArgs<AdamHyper>): void {
    const { beta1, beta2, eps, l2, decay, stepSize, sqrtBc2 } = this.terms(state, group);
    const P = cpuArray(param),
      G = cpuArray(grad),
      M = cpuArray(state.buffers.exp_avg),
      V = cpuArray(state.buffers.exp_avg_sq);
    for (let i = 0; i < param.size; i++) {
      const p0 = P.arr[P.off + i];
      const g = G.arr[G.off + i] + l2 * p0;
      const mt = beta1 * M.arr[i] + (1 - beta1) * g;
      const vt = beta2 * V.arr[i] + (1 - beta2) * g * g;
      M.arr[i] = mt;
      V.arr[i] = vt;
      P.arr[P.off + i] = p0 * decay - (stepSize * mt) / (Math.sqrt(vt) / sqrtBc2 + eps);
    }
  }
}

const ADAM_DEFAULTS: AdamHyper = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 };

/** Adam with an L2 penalty (weightDecay·p added to the gradient), as torch.optim.Adam. */
export class Adam extends AdamBase {
  protected readonly decoupled = false;
  constructor(params: Iterable<Tensor> | readonly ParamGroupInput<AdamHyper>[], opts: Partial<AdamHyper> = {}) {
    super('Adam', params, { ...ADAM_DEFAULTS, ...opts });
  }
}

/** Adam with decoupled weight decay (p ← p·(1 − lr·wd) before the Adam step), as torch.optim.AdamW. */
export class AdamW extends AdamBase {
  protected readonly decoupled = true;
  constructor(params: Iterable<Tensor> | readonly ParamGroupInput<AdamHyper>[], opts: Partial<AdamHyper> = {}) {
    super('AdamW', params, { ...ADAM_DEFAULTS, weightDecay: 1e-2, ...opts });
  }
}
