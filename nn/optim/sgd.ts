// SGD with momentum, dampening, Nesterov and L2 weight decay, PyTorch semantics:
//   d = g + wd·p;  b ← d (first step) or μ·b + (1−dampening)·d;  d ← d + μ·b (nesterov) or b;  p ← p − lr·d.
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { sgdKernel } from './kernels.js';
import { cpuArray, Optimizer, type BaseHyper, type ParamGroup, type ParamGroupInput, type UpdateArgs } from './optimizer.js';

export interface SgdHyper extends BaseHyper {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

export class SGD extends Optimizer<SgdHyper> {
  constructor(params: Iterable<Tensor> | readonly ParamGroupInput<SgdHyper>[], opts: Partial<SgdHyper> & { lr?: number } = {}) {
    super('SGD', params, { lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0, ...opts });
  }

  protected validate(group: ParamGroup<SgdHyper>): void {
    super.validate(group);
    if (!(group.momentum >= 0)) throw new OpError(this.name, `invalid momentum ${group.momentum}`);
    if (group.nesterov && (group.momentum <= 0 || group.dampening !== 0)) throw new OpError(this.name, 'Nesterov momentum requires a momentum > 0 and zero dampening');
  }

  protected bufferNames(group: ParamGroup<SgdHyper>): string[] {
    return group.momentum !== 0 ? ['momentum_buffer'] : [];
  }

  protected update({ param, grad, state, group }: UpdateArgs<SgdHyper>): void {
    const { lr, weightDecay, momentum, dampening, nesterov } = group;
    const buf = momentum !== 0 ? state.buffers.momentum_buffer : null;
    const first = state.step === 1;
    if (param.device === 'webgpu') {
      sgdKernel(param, grad, buf, { lr, weightDecay, momentum, dampening, nesterov, first });
      return;
    }
    const P = cpuArray(param), G = cpuArray(grad);
    const B = buf ? cpuArray(buf).arr : null;
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
