// RMSprop, PyTorch semantics:
//   g += wd·p;  s ← α·s + (1−α)·g²;  [centered: a ← α·a + (1−α)·g, avg = √(s − a²) + eps] else avg = √s + eps;
//   momentum: b ← μ·b + g/avg, p ← p − lr·b;  else p ← p − lr·g/avg.
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { rmspropKernel } from './kernels.js';
import { cpuArray, Optimizer, type BaseHyper, type ParamGroup, type ParamGroupInput, type UpdateArgs } from './optimizer.js';

export interface RmspropHyper extends BaseHyper {
  alpha: number;
  eps: number;
  momentum: number;
  centered: boolean;
}

export class RMSprop extends Optimizer<RmspropHyper> {
  constructor(params: Iterable<Tensor> | readonly ParamGroupInput<RmspropHyper>[], opts: Partial<RmspropHyper> = {}) {
    super('RMSprop', params, { lr: 1e-2, alpha: 0.99, eps: 1e-8, weightDecay: 0, momentum: 0, centered: false, ...opts });
  }

  protected validate(group: ParamGroup<RmspropHyper>): void {
    super.validate(group);
    if (!(group.alpha >= 0 && group.alpha <= 1)) throw new OpError(this.name, `alpha must be in [0, 1], got ${group.alpha}`);
    if (!(group.eps >= 0)) throw new OpError(this.name, `invalid eps ${group.eps}`);
    if (!(group.momentum >= 0)) throw new OpError(this.name, `invalid momentum ${group.momentum}`);
  }

  protected bufferNames(group: ParamGroup<RmspropHyper>): string[] {
    return ['square_avg', ...(group.centered ? ['grad_avg'] : []), ...(group.momentum > 0 ? ['momentum_buffer'] : [])];
  }

  protected update({ param, grad, state, group }: UpdateArgs<RmspropHyper>): void {
    const { lr, weightDecay, alpha, eps, momentum, centered } = group;
    const sq = state.buffers.square_avg;
    const gavg = centered ? state.buffers.grad_avg : null;
    const buf = momentum > 0 ? state.buffers.momentum_buffer : null;
    if (param.device === 'webgpu') {
      rmspropKernel(param, grad, sq, gavg, buf, { lr, weightDecay, alpha, eps, momentum, first: state.step === 1 });
      return;
    }
    const P = cpuArray(param), G = cpuArray(grad), S = cpuArray(sq).arr;
    const A = gavg ? cpuArray(gavg).arr : null;
    const B = buf ? cpuArray(buf).arr : null;
    for (let i = 0; i < param.size; i++) {
      const p0 = P.arr[P.off + i];
      const g = G.arr[G.off + i] + weightDecay * p0;
      const s = alpha * S[i] + (1 - alpha) * g * g;
      S[i] = s;
      let avg: number;
      if (A) {
        const a = alpha * A[i] + (1 - alpha) * g;
        A[i] = a;
        avg = Math.sqrt(s - a * a) + eps;
      } else avg = Math.sqrt(s) + eps;
      if (B) {
        const b = momentum * B[i] + g / avg;
        B[i] = b;
        P.arr[P.off + i] = p0 - lr * b;
      } else P.arr[P.off + i] = p0 - (lr * g) / avg;
    }
  }
}
