// One entry point for all methods: option defaults, time validation, decreasing time, f checks, counters.
import { OpError, sameShape, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { rmsNorm, type Dynamics, type Norm, type SolveCounters, type SolverRun } from './common.js';
import { solveDopri5 } from './dopri5.js';
import { solveFixed } from './fixed.js';
import { FIXED_TABLEAUX } from './tableaux.js';

export type Method = 'dopri5' | 'euler' | 'midpoint' | 'rk4';
export const METHODS: readonly Method[] = ['dopri5', 'euler', 'midpoint', 'rk4'];

export interface SolverOptions {
  /** Default 'dopri5'. */
  method?: Method;
  /** Relative tolerance (dopri5). Default 1e-7 for float64 states, 1e-5 for float32. */
  rtol?: number;
  /** Absolute tolerance (dopri5). Default 1e-9 for float64 states, 1e-8 for float32. */
  atol?: number;
  /** Grid spacing for the fixed-step methods (default: step between the output times). */
  stepSize?: number;
  /** First step of dopri5 (default: chosen automatically, one extra evaluation). */
  firstStep?: number;
  /** Step attempts allowed per solve (default 100000). */
  maxNumSteps?: number;
  /** dopri5 steps are at least this long; steps at minStep are accepted whatever their error. */
  minStep?: number;
  /** dopri5 steps are at most this long. */
  maxStep?: number;
}

export function defaultTolerances(y: Tensor): { rtol: number; atol: number } {
  return y.dtype === 'float64' ? { rtol: 1e-7, atol: 1e-9 } : { rtol: 1e-5, atol: 1e-8 };
}

export function checkTimes(op: string, times: readonly number[]): 1 | -1 {
  if (times.length === 0) throw new OpError(op, 't must hold at least one time');
  for (const v of times) if (!Number.isFinite(v)) throw new OpError(op, `t must be finite, got ${v}`);
  if (times.length === 1) return 1;
  const dir = times[1] > times[0] ? 1 : -1;
  for (let i = 1; i < times.length; i++) {
    if (!((times[i] - times[i - 1]) * dir > 0)) {
      throw new OpError(
        op,
        `t must be strictly increasing or strictly decreasing, but t[${i - 1}]=${times[i - 1]} and t[${i}]=${times[i]} break the order`,
      );
    }
  }
  return dir;
}

/** Wraps user dynamics: checks what f returns and counts evaluations. */
export function checkedDynamics(
  op: string,
  f: (t: number, y: Tensor) => Tensor,
  y0: Tensor,
  counters: SolveCounters,
): Dynamics {
  return (t, y) => {
    counters.nfe++;
    const out = f(t, y);
    if (!(out instanceof Tensor)) throw new OpError(op, `f(t, y) must return a Tensor, got ${typeof out}`);
    if (!sameShape(out.shape, y.shape))
      throw new OpError(
        op,
        `f(t, y) returned shape ${shapeStr(out.shape)} but the state has shape ${shapeStr(y.shape)}`,
      );
    if (out.dtype !== y0.dtype || out.device !== y0.device) {
      throw new OpError(
        op,
        `f(t, y) returned a ${out.dtype} tensor on ${out.device}, but the state is ${y0.dtype} on ${y0.device}`,
      );
    }
    return out;
  };
}

function positive(op: string, name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!(v > 0)) throw new OpError(op, `${name} must be positive, got ${v}`);
  return v;
}

/**
 * Solves y' = fn(t, y) from times[0] through every time in `times` (monotone, either direction) and
 * returns the states there. `fn` must already count its own evaluations; the step counters are added here.
 */
export function* solve(
  op: string,
  fn: Dynamics,
  y0: Tensor,
  times: readonly number[],
  opts: SolverOptions,
  counters: SolveCounters,
  norm: Norm = rmsNorm,
): SolverRun<Tensor[]> {
  const method = opts.method ?? 'dopri5';
  if (!METHODS.includes(method)) throw new OpError(op, `unknown method '${method}'; use one of ${METHODS.join(', ')}`);
  const dir = checkTimes(op, times);
  // Decreasing time: integrate s ↦ −f(−s, y) forward in s = −t.
  const tt = dir === 1 ? times : times.map((v) => -v);
  const g: Dynamics = dir === 1 ? fn : (s, y) => fn(-s, y).neg();
  const maxNumSteps = Math.floor(positive(op, 'maxNumSteps', opts.maxNumSteps, 100000));
  if (method !== 'dopri5') return solveFixed(FIXED_TABLEAUX[method], g, y0, tt, opts.stepSize, maxNumSteps, counters);
  const defaults = defaultTolerances(y0);
  return yield* solveDopri5(
    g,
    y0,
    tt,
    {
      op,
      rtol: positive(op, 'rtol', opts.rtol, defaults.rtol),
      atol: positive(op, 'atol', opts.atol, defaults.atol),
      norm,
      maxNumSteps,
      minStep: opts.minStep === undefined ? 0 : positive(op, 'minStep', opts.minStep, 0),
      maxStep: positive(op, 'maxStep', opts.maxStep, Infinity),
      firstStep: opts.firstStep === undefined ? undefined : positive(op, 'firstStep', opts.firstStep, 0),
    },
    counters,
  );
}
