// ode.odeint: solve an ODE with tensor ops, so ordinary backprop differentiates through the solver.
import { alias, isGradEnabled, record } from '../core/autograd.js';
import { scope } from '../core/scope.js';
import { Tensor } from '../core/tensor.js';
import { stack } from '../ops/movement.js';
import {
  checkFiniteSolution,
  checkState,
  checkTimeTensor,
  driveAsync,
  readTimes,
  timeGradVector,
  timeRate,
  type OdeFunc,
  type SolveCounters,
} from './common.js';
import { checkedDynamics, solve, type SolverOptions } from './solve.js';
import { setForwardStats } from './stats.js';
import { argFunction } from '../core/args.js';

export type OdeintOptions = SolverOptions;

/**
 * Solves y' = f(t, y), y(t[0]) = y0, and returns y at every time in t as a tensor [len(t), ...y0.shape].
 * t is increasing or decreasing (number[] or 1-D tensor). Differentiable w.r.t. y0 and anything f uses
 * by ordinary backprop through the solver's ops (memory grows with the number of steps; see
 * odeintAdjoint). When t is a tensor requiring grad, dL/dt is given by the exact formulas
 * dL/dt_i = g_iᵀ f(t_i, y_i) (i ≥ 1) and dL/dt_0 = −(dL/dy0)ᵀ f(t_0, y_0).
 * Async because the adaptive solver reads one error ratio per step attempt.
 */
export async function odeint(
  f: OdeFunc,
  y0: Tensor,
  t: readonly number[] | Tensor,
  opts: OdeintOptions = {},
): Promise<Tensor> {
  argFunction('odeint', 'f', f);
  checkState('odeint', y0);
  const times = await readTimes('odeint', t);
  const tTensor = t instanceof Tensor ? t : null;
  const wantT = tTensor !== null && tTensor.requiresGrad && isGradEnabled();
  if (wantT) checkTimeTensor('odeint', tTensor, y0);
  const counters: SolveCounters = { nfe: 0, accepted: 0, rejected: 0 };
  const fn = checkedDynamics('odeint', f, y0, counters);
  const method = opts.method ?? 'dopri5';
  const Y = await scope(async () => {
    // dL/dt_0 needs the total gradient reaching y0 through the solver: a pass-through node collects it.
    const start = wantT
      ? record('odeintTimeStart', alias(y0), [y0, tTensor], (g) => [
          g,
          timeGradVector([timeRate(f, times[0], y0, g).neg(), ...times.slice(1).map(() => null)], g, tTensor),
        ])
      : y0;
    const outs = await driveAsync(solve('odeint', fn, start, times, opts, counters));
    // y(t_0) = y0 whatever t_0 is, so the first output bypasses the t_0 node.
    outs[0] = y0;
    const stacked = stack(outs);
    for (const o of outs.slice(1)) o.dispose();
    if (start !== y0) start.dispose();
    await checkFiniteSolution('odeint', method, stacked, times);
    if (!wantT) return stacked;
    return record(
      'odeintTimes',
      alias(stacked),
      [stacked, tTensor],
      (g, [ys]) => {
        const rates = times.map((ti, i) =>
          i === 0 ? null : timeRate(f, ti, ys.slice(0, i, i + 1).squeeze(0), g.slice(0, i, i + 1).squeeze(0)),
        );
        return [g, timeGradVector(rates, g, tTensor)];
      },
      [stacked],
    );
  });
  setForwardStats(method, counters);
  return Y;
}
