// ode.odeintAdjoint: gradients by solving the adjoint ODE backwards (Chen et al. 2018), so memory does
// not grow with the number of solver steps. It is not faster: the backward usually needs more
// evaluations than the forward, and its gradients carry the reverse solve's error (odeint under
// autograd differentiates the discrete forward solve exactly and remains the more exact option).
import { canAwaitInBackward, noGrad, record, vjp } from '../core/autograd.js';
import { readsSync } from '../core/device.js';
import { scope } from '../core/scope.js';
import { OpError, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { cat, stack } from '../ops/movement.js';
import {
  checkFiniteSolution,
  checkState,
  checkTimeTensor,
  disposeAll,
  driveAsync,
  driveSync,
  mixedNorm,
  readTimes,
  timeGradVector,
  timeRate,
  type Dynamics,
  type OdeFunc,
  type SolveCounters,
  type SolverRun,
} from './common.js';
import { checkedDynamics, solve, type Method, type SolverOptions } from './solve.js';
import { setBackwardStats, setForwardStats } from './stats.js';
import { argFunction } from '../core/args.js';

export interface AdjointOptions extends SolverOptions {
  /** Every tensor f reads that needs a gradient (a list, or an object with parameters()). Others get none. */
  params?: readonly Tensor[] | { parameters(): Iterable<Tensor> };
  /** Tolerances of the reverse solves (default: the forward ones). */
  adjointRtol?: number;
  adjointAtol?: number;
  /** Method of the reverse solves (default: the forward method). */
  adjointMethod?: Method;
  /** Other solver options for the reverse solves (default: the forward ones). */
  adjointOptions?: Omit<SolverOptions, 'method' | 'rtol' | 'atol'>;
  /** Leave the parameter channels out of the reverse solves' error control (fewer evaluations, as torchdiffeq's seminorm). */
  seminorm?: boolean;
}

function resolveParams(p: AdjointOptions['params']): Tensor[] {
  if (p === undefined) return [];
  const list = Array.isArray(p)
    ? [...p]
    : typeof (p as { parameters?: unknown }).parameters === 'function'
      ? Array.from((p as { parameters(): Iterable<Tensor> }).parameters())
      : null;
  if (!list) throw new OpError('odeintAdjoint', 'params must be a list of tensors or an object with parameters()');
  list.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new OpError('odeintAdjoint', `params[${i}] is not a Tensor`);
  });
  return list;
}

interface Problem {
  f: OdeFunc;
  y0: Tensor;
  times: number[];
  /** Params that require grad, and where each sits in the node's inputs. */
  params: Tensor[];
  /** t, when it requires grad. */
  tTensor: Tensor | null;
  opts: AdjointOptions;
}

/**
 * The reverse sweep. Augmented state z = [s_t?, y, a, a_θ…] (flattened, concatenated), dynamics
 * [−aᵀ∂f/∂t, f, −aᵀ∂f/∂y, −aᵀ∂f/∂θ]: one evaluation of f plus one vjp with cotangent −a.
 * One reverse solve per output interval; after each, y is reset to the stored forward value and the
 * loss gradient at that time is added to a.
 */
function* reverseSweep(
  pb: Problem,
  G: Tensor,
  Ys: Tensor,
  counters: SolveCounters,
): SolverRun<{ gy0: Tensor; gParams: Tensor[]; gTime: Tensor | null }> {
  const { f, y0, times, params, tTensor, opts } = pb;
  const withTime = tTensor !== null;
  const shape = y0.shape;
  const n = y0.size;
  const N = times.length;
  const nt = withTime ? 1 : 0;
  const sizes = [nt, n, n, ...params.map((p) => p.size)];
  const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((s, v) => s + v, 0));
  const norm = mixedNorm(sizes, new Set(opts.seminorm ? params.map((_, k) => 3 + k) : []));
  const part = (z: Tensor, i: number) => z.slice(0, offsets[i], offsets[i] + sizes[i]);
  const at = (x: Tensor, i: number) => x.slice(0, i, i + 1).reshape(shape);

  const aug: Dynamics = (tau, z) =>
    scope(() => {
      counters.nfe++;
      const y = part(z, 1).reshape(shape);
      const minusA = part(z, 2).reshape(shape).neg();
      const tIn = withTime ? y0.fullLike(tau, []) : null;
      const res = tIn
        ? vjp((yy, tt) => f(tt, yy), [y, tIn], minusA, { params })
        : vjp((yy) => f(tau, yy), [y], minusA, { params });
      const pieces = [
        ...(tIn ? [res.grads[1].reshape([1])] : []),
        res.output.reshape([-1]),
        res.grads[0].reshape([-1]),
        ...res.paramGrads.map((g) => g.reshape([-1])),
      ];
      const dz = cat(pieces);
      // vjp's gradients are not owned by any scope; free them here.
      disposeAll([res.output, ...res.grads, ...res.paramGrads]);
      return dz;
    });

  const adjOpts: SolverOptions = {
    ...opts,
    firstStep: undefined,
    ...opts.adjointOptions,
    method: opts.adjointMethod ?? opts.method,
    rtol: opts.adjointRtol ?? opts.rtol,
    atol: opts.adjointAtol ?? opts.atol,
  };

  let s: Tensor | null = withTime ? y0.fullLike(0, [1]) : null;
  let a = scope(() =>
    at(G, N - 1)
      .reshape([-1])
      .contiguous(),
  );
  let aTheta = params.map((p) => p.fullLike(0, [p.size]));
  const rates: (Tensor | null)[] = times.map(() => null);
  for (let i = N - 1; i >= 1; i--) {
    if (s) {
      // The output time t_i moves y(t_i) along f: dL/dt_i = g_iᵀ f(t_i, y_i), and s_t starts from −that.
      counters.nfe++;
      const rate = timeRate(f, times[i], at(Ys, i), at(G, i));
      rates[i] = rate;
      const s1 = s.sub(rate.reshape([1]));
      s.dispose();
      s = s1;
    }
    const z = cat([...(s ? [s] : []), scope(() => at(Ys, i).reshape([-1])), a, ...aTheta]);
    const outs = yield* solve(
      'odeintAdjoint (reverse solve)',
      aug,
      z,
      [times[i], times[i - 1]],
      adjOpts,
      counters,
      norm,
    );
    const zEnd = outs[1];
    disposeAll([z, s, a, ...aTheta]);
    s = s ? part(zEnd, 0) : null;
    // Reset y to the stored forward value (it is not read back) and add the loss gradient at t_{i−1}.
    a = scope(() => part(zEnd, 2).add(at(G, i - 1).reshape([-1])));
    aTheta = params.map((_, k) => scope(() => part(zEnd, 3 + k).contiguous()));
    zEnd.dispose();
  }
  if (s) rates[0] = s.reshape([]);
  const gTime = tTensor ? timeGradVector(rates, y0, tTensor) : null;
  const gy0 = a.reshape(shape);
  const gParams = aTheta.map((g, k) => g.reshape(params[k].shape));
  disposeAll([s, ...rates]);
  return { gy0, gParams, gTime };
}

/**
 * Like odeint (same forward result, computed without recording a graph; only the outputs are kept), but
 * gradients w.r.t. y0, `params` and t (when t is a tensor requiring grad) come from the adjoint method:
 * peak memory of the backward does not depend on the number of solver steps.
 * On cpu, loss.backward() works; on webgpu the reverse solve reads device values, so use
 * `await loss.backwardAsync()`. Requesting time gradients passes t to f as a 0-d tensor.
 */
export async function odeintAdjoint(
  f: OdeFunc,
  y0: Tensor,
  t: readonly number[] | Tensor,
  opts: AdjointOptions = {},
): Promise<Tensor> {
  argFunction('odeintAdjoint', 'f', f);
  checkState('odeintAdjoint', y0);
  const times = await readTimes('odeintAdjoint', t);
  const allParams = resolveParams(opts.params);
  for (const p of allParams) {
    if (p.device !== y0.device || p.dtype !== y0.dtype) {
      throw new OpError(
        'odeintAdjoint',
        `params must match y0 (${y0.dtype} on ${y0.device}); got ${shapeStr(p.shape)} ${p.dtype} on ${p.device}`,
      );
    }
  }
  const tTensor = t instanceof Tensor && t.requiresGrad ? t : null;
  if (tTensor) checkTimeTensor('odeintAdjoint', tTensor, y0);
  const counters: SolveCounters = { nfe: 0, accepted: 0, rejected: 0 };
  const fn = checkedDynamics('odeintAdjoint', f, y0, counters);
  const method = opts.method ?? 'dopri5';
  const Y = await noGrad(() =>
    scope(async () => {
      const outs = await driveAsync(solve('odeintAdjoint', fn, y0, times, opts, counters));
      const stacked = stack(outs);
      await checkFiniteSolution('odeintAdjoint', method, stacked, times);
      return stacked;
    }),
  );
  setForwardStats(method, counters);

  const params = allParams.filter((p) => p.requiresGrad);
  const inputs = [y0, ...allParams, ...(tTensor ? [tTensor] : [])];
  const pb: Problem = { f, y0, times, params, tTensor, opts };
  return record(
    'odeintAdjoint',
    Y,
    inputs,
    (g, [Ys]) => {
      const back = { nfe: 0, accepted: 0, rejected: 0 };
      const finish = (r: { gy0: Tensor; gParams: Tensor[]; gTime: Tensor | null }): (Tensor | null)[] => {
        setBackwardStats(back);
        let k = 0;
        return [
          r.gy0,
          ...allParams.map((p) => (p.requiresGrad ? r.gParams[k++] : null)),
          ...(tTensor ? [r.gTime] : []),
        ];
      };
      if (readsSync(y0.device)) return finish(scope(() => driveSync(reverseSweep(pb, g, Ys, back))));
      if (!canAwaitInBackward()) {
        throw new OpError(
          'odeintAdjoint',
          `the adjoint backward on ${y0.device} reads device values between steps; call \`await loss.backwardAsync()\` instead of loss.backward()`,
        );
      }
      return scope(async () => driveAsync(reverseSweep(pb, g, Ys, back))).then(finish);
    },
    [Y],
  );
}
