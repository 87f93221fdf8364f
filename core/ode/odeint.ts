// ode.odeint: solve an ODE with tensor ops, so ordinary backprop differentiates through the solver.
import { alias, isGradEnabled, noGrad, record } from '../autograd.js';
import { scope } from '../scope.js';
import { OpError, shapeStr } from '../shape.js';
import { Tensor } from '../tensor.js';
import { stack } from '../../ops/movement.js';
import { driveAsync, type SolveCounters } from './common.js';
import { checkedDynamics, solve, type SolverOptions } from './solve.js';
import { setForwardStats } from './stats.js';
import { argFunction } from '../args.js';

/**
 * Right-hand side f(t, y). odeint passes t as a JS number; odeintAdjoint passes a 0-d tensor when time
 * gradients are requested (write f with ops that accept either, e.g. `w.mul(t).cos()`).
 */
export type OdeFunc = (t: number | Tensor, y: Tensor) => Tensor;

export type OdeintOptions = SolverOptions;

/** Output times as doubles; t is a number[] or a 1-D tensor. */
export async function readTimes(op: string, t: readonly number[] | Tensor): Promise<number[]> {
  if (t instanceof Tensor) {
    if (t.rank !== 1) throw new OpError(op, `t must be 1-D, got shape ${shapeStr(t.shape)}`);
    return Array.from(await t.data());
  }
  if (!Array.isArray(t)) throw new OpError(op, 't must be a number[] or a 1-D tensor');
  return [...t];
}

export function checkState(op: string, y0: Tensor): void {
  if (!(y0 instanceof Tensor)) throw new OpError(op, 'y0 must be a Tensor');
  y0.assertAlive(op);
  if (y0.dtype === 'int32') throw new OpError(op, `y0 must be a float tensor, got ${y0.dtype}`);
}

/** Σ g·f(t, y) as a 0-d tensor: the rate at which L changes when the output time t moves. */
export function timeRate(f: OdeFunc, t: number, y: Tensor, g: Tensor): Tensor {
  return scope(() => g.mul(f(t, y)).sum());
}

/** Places the 0-d values (null = 0) into a vector shaped like t. */
export function timeGradVector(parts: readonly (Tensor | null)[], like: Tensor, tTensor: Tensor): Tensor {
  return scope(() => {
    const zero = like.fullLike(0, []);
    return stack(parts.map((p) => p ?? zero)).astype(tTensor.dtype);
  });
}

function checkTimeTensor(op: string, t: Tensor, y0: Tensor): void {
  if (t.device !== y0.device) throw new OpError(op, `t (on ${t.device}) must be on y0's device (${y0.device}) to receive gradients`);
}

/**
 * Solves y' = f(t, y), y(t[0]) = y0, and returns y at every time in t as a tensor [len(t), ...y0.shape].
 * t is increasing or decreasing (number[] or 1-D tensor). Differentiable w.r.t. y0 and anything f uses
 * by ordinary backprop through the solver's ops (memory grows with the number of steps; see
 * odeintAdjoint). When t is a tensor requiring grad, dL/dt is given by the exact formulas
 * dL/dt_i = g_iᵀ f(t_i, y_i) (i ≥ 1) and dL/dt_0 = −(dL/dy0)ᵀ f(t_0, y_0).
 * Async because the adaptive solver reads one error ratio per step attempt.
 */
export async function odeint(f: OdeFunc, y0: Tensor, t: readonly number[] | Tensor, opts: OdeintOptions = {}): Promise<Tensor> {
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
      ? record('odeintTimeStart', alias(y0), [y0, tTensor], (g) => [g, timeGradVector([timeRate(f, times[0], y0, g).neg(), ...times.slice(1).map(() => null)], g, tTensor)])
      : y0;
    const outs = await driveAsync(solve('odeint', fn, start, times, opts, counters));
    // y(t_0) = y0 whatever t_0 is, so the first output bypasses the t_0 node.
    outs[0] = y0;
    const stacked = stack(outs);
    for (const o of outs.slice(1)) o.dispose();
    if (start !== y0) start.dispose();
    if (method !== 'dopri5') {
      // Adaptive solves catch NaN/Inf through their error ratios; fixed grids check once at the end.
      const total = noGrad(() => stacked.abs().sum());
      const v = await total.item();
      total.dispose();
      if (!Number.isFinite(v)) throw new OpError('odeint', `non-finite state: the ${method} solution over [${times[0]}, ${times[times.length - 1]}] contains NaN or Infinity (try a smaller stepSize)`);
    }
    if (!wantT) return stacked;
    return record('odeintTimes', alias(stacked), [stacked, tTensor], (g, [ys]) => {
      const rates = times.map((ti, i) => (i === 0 ? null : timeRate(f, ti, ys.slice(0, i, i + 1).squeeze(0), g.slice(0, i, i + 1).squeeze(0))));
      return [g, timeGradVector(rates, g, tTensor)];
    }, [stacked]);
  });
  setForwardStats(method, counters);
  return Y;
}

