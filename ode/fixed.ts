// Fixed-grid explicit Runge–Kutta (euler, midpoint, rk4 3/8 rule). The grid is t0 + k·h with the last
// point forced to the final time (or the output times themselves when no stepSize is given); outputs
// between grid points are linearly interpolated. No host reads are needed while stepping.
import { scope } from '../core/scope.js';
import { OpError } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { axpy, type Dynamics, type SolveCounters } from './common.js';
import type { FixedTableau } from './tableaux.js';

function rkStep(tab: FixedTableau, fn: Dynamics, t: number, y: Tensor, h: number): Tensor {
  return scope(() => {
    const ks: Tensor[] = [];
    for (let s = 0; s < tab.c.length; s++) {
      const ys =
        s === 0
          ? y
          : axpy(
              y,
              tab.a[s - 1].map((c) => c * h),
              ks,
            );
      ks.push(fn(t + tab.c[s] * h, ys));
    }
    return axpy(
      y,
      tab.b.map((b) => b * h),
      ks,
    );
  });
}

/** The step grid over increasing `times`: explicit stepSize, or the output times themselves. */
export function fixedGrid(times: readonly number[], stepSize: number | undefined, maxNumSteps: number): number[] {
  const t0 = times[0];
  const tEnd = times[times.length - 1];
  if (stepSize === undefined) return [...times];
  if (!(stepSize > 0) || !Number.isFinite(stepSize))
    throw new OpError('odeint', `stepSize must be a positive finite number, got ${stepSize}`);
  // The small slack keeps (1 - 0)/0.1 from becoming 11 steps through rounding.
  const n = Math.max(1, Math.ceil((tEnd - t0) / stepSize - 1e-9));
  if (n > maxNumSteps)
    throw new OpError(
      'odeint',
      `stepSize ${stepSize} over [${t0}, ${tEnd}] needs ${n} steps, more than maxNumSteps=${maxNumSteps}`,
    );
  const grid = Array.from({ length: n }, (_, k) => t0 + k * stepSize);
  grid.push(tEnd);
  return grid;
}

/** Solves over increasing `times`; returns the state at each of them (the first is y0 itself). */
export function solveFixed(
  tab: FixedTableau,
  fn: Dynamics,
  y0: Tensor,
  times: readonly number[],
  stepSize: number | undefined,
  maxNumSteps: number,
  counters: SolveCounters,
): Tensor[] {
  const grid = fixedGrid(times, stepSize, maxNumSteps);
  const outs: Tensor[] = [y0];
  let i = 1;
  let t = grid[0];
  let y = y0;
  for (let k = 1; k < grid.length && i < times.length; k++) {
    const t1 = grid[k];
    const h = t1 - t;
    if (h <= 0) continue;
    const y1 = rkStep(tab, fn, t, y, h);
    counters.accepted++;
    for (; i < times.length && times[i] <= t1; i++) {
      if (times[i] === t1) outs.push(y1);
      else {
        const w = (times[i] - t) / h;
        outs.push(scope(() => y.add(y1.sub(y).mul(w))));
      }
    }
    if (!outs.includes(y)) y.dispose();
    t = t1;
    y = y1;
  }
  if (!outs.includes(y)) y.dispose();
  return outs;
}
