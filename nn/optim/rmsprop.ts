// RMSprop, PyTorch semantics:
//   g += wd·p;  s ← α·s + (1−α)·g²;  [centered: a ← α·a + (1−α)·g, avg = √(s − a²) + eps] else avg = √s + eps;
//   momentum: b ← μ·b + g/avg, p ← p − lr·b;  else p ← p − lr·g/avg.
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

export interface RmspropHyper extends BaseHyper {
  alpha: number;
  eps: number;
  momentum: number;
  centered: boolean;
}

/**
 * The same update in f32 on webgpu; state buffers in bufferNames order (square_avg, grad_avg?,
 * momentum_buffer?). lr and weight decay are per parameter (groups share dispatches).
 */
function rmspropKernel(centered: boolean, withMomentum: boolean): UpdateKernel {
  return {
    name: `rmsprop-${centered ? 'centered' : 'plain'}-${withMomentum ? 'momentum' : 'direct'}`,
    state: ['sq', ...(centered ? ['gavg'] : []), ...(withMomentum ? ['buf'] : [])],
    hyper: ['alpha', 'oneMinusAlpha', 'eps', 'momentum'],
    perParam: ['lr', 'weightDecay'],
    flags: [],
    body: ({ param, grad, state: { sq, gavg, buf }, hyper: h, prev }) => `let p0 = ${param}[pi];
      let g = ${grad}[gi] + ${h('weightDecay')} * p0;
      let s = ${h('alpha')} * ${prev(sq)} + ${h('oneMinusAlpha')} * g * g;
      ${sq}[i] = s;
      ${
        centered
          ? `let ga = ${h('alpha')} * ${prev(gavg)} + ${h('oneMinusAlpha')} * g;
      ${gavg}[i] = ga;
      let avg = sqrt(s - ga * ga) + ${h('eps')};`
          : `let avg = sqrt(s) + ${h('eps')};`
      }
      ${
        withMomentum
          ? `let b = ${h('momentum')} * ${prev(buf)} + g / avg;
      ${buf}[i] = b;
      ${param}[pi] = p0 - ${h('lr')} * b;`
          : `${param}[pi] = p0 - ${h('lr')} * g / avg;`
      }`,
  };
}
const RMSPROP_KERNELS: Record<string, UpdateKernel> = {
  up: rmspropKernel(false, false),
  um: rmspropKernel(false, true),
  cp: rmspropKernel(true, false),
  cm: rmspropKernel(true, true),
};

export class RMSprop extends Optimizer<RmspropHyper> {
  constructor(params: Iterable<Tensor> | readonly ParamGroupInput<RmspropHyper>[], opts: Partial<RmspropHyper> = {}) {
    super('RMSprop', params, {
      lr: 1e-2,
      alpha: 0.99,
      eps: 1e-8,
      weightDecay: 0,
      momentum: 0,
      centered: false,
      ...opts,
    });
  }

  protected validate(group: ParamGroup<RmspropHyper>): void {
    super.validate(group);
    if (!(group.alpha >= 0 && group.alpha <= 1))
      throw new OpError(this.name, `alpha must be in [0, 1], got ${group.alpha}`);
    if (!(group.eps >= 0)) throw new OpError(this.name, `invalid eps ${group.eps}`);
    if (!(group.momentum >= 0)) throw new OpError(this.name, `invalid momentum ${group.momentum}`);
  }

  protected bufferNames(group: ParamGroup<RmspropHyper>): string[] {
    return ['square_avg', ...(group.centered ? ['grad_avg'] : []), ...(group.momentum > 0 ? ['momentum_buffer'] : [])];
  }

  protected updateGpu({ state, group }: UpdateArgs<RmspropHyper>): GpuUpdate {
    const { lr, weightDecay, alpha, eps, momentum, centered } = group;
    return {
      kernel: RMSPROP_KERNELS[`${centered ? 'c' : 'u'}${momentum > 0 ? 'm' : 'p'}`],
      state: this.bufferNames(group).map((name) => state.buffers[name]),
      hyper: [alpha, 1 - alpha, eps, momentum],
      perParam: [lr, weightDecay],
      flags: [],
      first: state.step === 1,
    };
  }

  protected updateCpu({ param, grad, state, group }: UpdateArgs<RmspropHyper>): void {
    const { lr, weightDecay, alpha, eps, momentum, centered } = group;
    const P = cpuArray(param),
      G = cpuArray(grad),
      S = cpuArray(state.buffers.square_avg).arr;
    const A = centered ? cpuArray(state.buffers.grad_avg).arr : null;
    const B = momentum > 0 ? cpuArray(state.buffers.momentum_buffer).arr : null;
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
