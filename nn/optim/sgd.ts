// SGD with momentum, dampening, Nesterov and L2 weight decay, PyTorch semantics:
//   d = g + wd·p;  b ← d (first step) or μ·b + (1−dampening)·d;  d ← d + μ·b (nesterov) or b;  p ← p − lr·d.
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
  type UpdateArgs,
} from './optimizer.js';

export interface SgdHyper extends BaseHyper {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

/** The same update in f32 on webgpu; the momentum buffer starts as d on the first update. lr and weight decay are per parameter (groups share dispatches). */
function sgdKernel(withMomentum: boolean): UpdateKernel {
  return {
    name: withMomentum ? 'sgd-momentum' : 'sgd',
    state: withMomentum ? ['buf'] : [],
    hyper: ['momentum', 'oneMinusDampening'],
    perParam: ['lr', 'weightDecay'],
    flags: withMomentum ? ['nesterov'] : [],
    body: ({ param, grad, state: { buf }, hyper: h, flag, first }) => `let p0 = ${param}[pi];
      var d = ${grad}[gi] + ${h('weightDecay')} * p0;
      ${
        withMomentum
          ? `var b = d;
      if (!(${first})) { b = ${h('momentum')} * ${buf}[i] + ${h('oneMinusDampening')} * d; }
      ${buf}[i] = b;
      if (${flag('nesterov')} != 0u) { d = d + ${h('momentum')} * b; } else { d = b; }`
          : ''
      }
      ${param}[pi] = p0 - ${h('lr')} * d;`,
  };
}
const SGD_KERNEL = sgdKernel(false);
const SGD_MOMENTUM_KERNEL = sgdKernel(true);

export class SGD extends Optimizer<SgdHyper> {
  constructor(
    params: Iterable<Tensor> | readonly ParamGroupInput<SgdHyper>[],
    opts: Partial<SgdHyper> & { lr?: number } = {},
  ) {
    super('SGD', params, { lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0, ...opts });
  }

  protected validate(group: ParamGroup<SgdHyper>): void {
    super.validate(group);
    if (!(group.momentum >= 0)) throw new OpError(this.name, `invalid momentum ${group.momentum}`);
    if (group.nesterov && (group.momentum <= 0 || group.dampening !== 0))
      throw new OpError(this.name, 'Nesterov momentum requires a momentum > 0 and zero dampening');
  }

  protected bufferNames(group: ParamGroup<SgdHyper>): string[] {
    return group.momentum !== 0 ? ['momentum_buffer'] : [];
  }

  protected updateGpu({ state, group }: UpdateArgs<SgdHyper>): GpuUpdate {
    const { lr, weightDecay, momentum, dampening, nesterov } = group;
    const withMomentum = momentum !== 0;
    return {
      kernel: withMomentum ? SGD_MOMENTUM_KERNEL : SGD_KERNEL,
      state: withMomentum ? [state.buffers.momentum_buffer] : [],
      hyper: [momentum, 1 - dampening],
      perParam: [lr, weightDecay],
      flags: withMomentum ? [nesterov ? 1 : 0] : [],
      first: state.step === 1,
    };
  }

  protected updateCpu({ param, grad, state, group }: UpdateArgs<SgdHyper>): void {
    const { lr, weightDecay, momentum, dampening, nesterov } = group;
    const first = state.step === 1;
    const P = cpuArray(param),
      G = cpuArray(grad);
    const B = momentum !== 0 ? cpuArray(state.buffers.momentum_buffer).arr : null;
    for (let i = 0; i < param.size; i++) {
      const p0 = P.arr[P.off + i];
      let d = G.arr[G.off + i] + weightDecay * p0;
      if (B) {
        const b = first ? d : momentum * B[i] + (1 - dampening) * d;
        B[i] = b;
        d = nesterov ? d + momentum * b : b;
      }
      P.arr[P.off + i] = p0 - lr * d;
    }
  }
}
