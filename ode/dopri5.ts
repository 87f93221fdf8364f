// Adaptive Dormand–Prince 5(4): FSAL, error-ratio step control, Hairer–Nørsett–Wanner first step,
// quartic dense output. t, h and the error ratio stay JS doubles; each step attempt reads one number.
import { noGrad } from '../core/autograd.js';
import { scope } from '../core/scope.js';
import { OpError } from '../core/shape.js';
import { stack } from '../ops/movement.js';
import type { Tensor } from '../core/tensor.js';
import { axpy, combine, disposeAll, type Dynamics, type Norm, type SolveCounters, type SolverRun } from './common.js';
import { DOPRI5, DOPRI5_ERROR_WEIGHTS } from './tableaux.js';

export interface AdaptiveOptions {
  /** Names the solve in error messages. */
  op: string;
  rtol: number;
  atol: number;
  norm: Norm;
  /** Attempts (accepted + rejected) allowed before giving up. */
  maxNumSteps: number;
  /** Steps are never shorter than this; a step at minStep is accepted whatever its error (as torchdiffeq). */
  minStep: number;
  maxStep: number;
  /** Skips the automatic first-step selection (and its extra evaluation). */
  firstStep?: number;
}

const SAFETY = 0.9;
const MAX_FACTOR = 10;
const MIN_FACTOR = 0.2;
/** Consecutive non-finite error ratios (each shrinking h by 5x) before the solve is declared diverged. */
const MAX_NONFINITE_RETRIES = 12;

/** Hairer–Nørsett–Wanner initial step; costs one evaluation and two reads. */
function* initialStep(fn: Dynamics, t0: number, y0: Tensor, f0: Tensor, o: AdaptiveOptions): SolverRun<number> {
  const scale = noGrad(() => y0.abs().mul(o.rtol).add(o.atol));
  const [d0, d1] = yield noGrad(() => scope(() => stack([o.norm(y0.div(scale)), o.norm(f0.div(scale))])));
  if (!Number.isFinite(d0) || !Number.isFinite(d1)) {
    scale.dispose();
    throw new OpError(
      o.op,
      `non-finite state at t=${t0}: the initial state or f(t0, y0) contains NaN or Infinity (‖y0‖=${d0}, ‖f0‖=${d1}, scaled)`,
    );
  }
  const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : (0.01 * d0) / d1;
  // Only h leaves this function (as a double), so this evaluation needs no graph.
  const f1 = noGrad(() => scope(() => fn(t0 + h0, y0.add(f0.mul(h0)))));
  const [d2raw] = yield noGrad(() => scope(() => o.norm(f1.sub(f0).div(scale))));
  disposeAll([f1, scale]);
  const d2 = d2raw / h0;
  const h1 =
    d1 <= 1e-15 && d2 <= 1e-15 ? Math.max(1e-6, h0 * 1e-3) : Math.pow(0.01 / Math.max(d1, d2), 1 / DOPRI5.order);
  const h = Math.min(100 * h0, h1);
  return Number.isFinite(h) && h > 0 ? h : h0;
}

interface Attempt {
  y1: Tensor;
  /** k2..k7 (k7 = f(t + h, y1), the next step's k1). */
  ks: Tensor[];
  ratio: Tensor;
}

function attemptStep(fn: Dynamics, t: number, y: Tensor, f0: Tensor, h: number, o: AdaptiveOptions): Attempt {
  return scope(() => {
    const ks = [f0];
    let ys = y;
    for (let s = 0; s < 6; s++) {
      ys = axpy(
        y,
        DOPRI5.a[s].map((c) => c * h),
        ks,
      );
      const k = fn(s === 5 ? t + h : t + DOPRI5.c[s] * h, ys);
      ks.push(k);
      // Stage inputs are dead once evaluated (f may return its input itself: keep it then).
      if (s < 5 && k !== ys && ys !== y) ys.dispose();
    }
    const y1 = ys;
    const ratio = noGrad(() => {
      return scope(() => {
        const err = combine(
          DOPRI5_ERROR_WEIGHTS.map((w) => w * h),
          ks,
        );
        const tol = y.abs().maximum(y1.abs()).mul(o.rtol).add(o.atol);
        return o.norm(err.div(tol));
      });
    });
    return { y1, ks: ks.slice(1), ratio };
  });
}

/** Dense output at fraction x of the accepted step: the quartic through y0, y1, y(t+h/2), f0, f1, expanded into one linear combination. */
function interpolate(y0: Tensor, y1: Tensor, k: readonly Tensor[], h: number, x: number): Tensor {
  const x2 = x * x,
    x3 = x2 * x,
    x4 = x3 * x;
  const wY0 = -8 * x4 + 18 * x3 - 11 * x2 + 1;
  const wY1 = -8 * x4 + 14 * x3 - 5 * x2;
  const wMid = 16 * x4 - 32 * x3 + 16 * x2;
  const wF0 = (-2 * x4 + 5 * x3 - 4 * x2 + x) * h;
  const wF1 = (2 * x4 - 3 * x3 + x2) * h;
  // y_mid = y0 + h·Σ cMid_j k_j; fold it in.
  const wk = DOPRI5.cMid.map((c) => wMid * h * c);
  wk[0] += wF0;
  wk[6] += wF1;
  return scope(() =>
    y0
      .mul(wY0 + wMid)
      .add(y1.mul(wY1))
      .add(combine(wk, k)),
  );
}

/**
 * Solves over strictly increasing `times`; returns the state at each (the first is y0 itself).
 * `fn` counts its own evaluations (NFE); the accepted/rejected counters are kept here.
 */
export function* solveDopri5(
  fn: Dynamics,
  y0: Tensor,
  times: readonly number[],
  o: AdaptiveOptions,
  counters: SolveCounters,
): SolverRun<Tensor[]> {
  const outs: Tensor[] = [y0];
  if (times.length === 1) return outs;
  let t = times[0];
  let y = y0;
  let f0 = fn(t, y);
  let h: number;
  if (o.firstStep !== undefined) h = o.firstStep;
  else {
    h = yield* initialStep(fn, t, y, f0, o);
  }
  counters.firstStep = h;
  let i = 1;
  let nonFinite = 0;
  try {
    while (i < times.length) {
      h = Math.min(h, o.maxStep);
      if (h < o.minStep) h = o.minStep;
      if (t + h === t) {
        throw new OpError(
          o.op,
          `step size underflow at t=${t}: h=${h} no longer changes t (the solution may blow up or the problem is too stiff for rtol=${o.rtol}, atol=${o.atol})`,
        );
      }
      if (counters.accepted + counters.rejected >= o.maxNumSteps) {
        throw new OpError(
          o.op,
          `maxNumSteps=${o.maxNumSteps} exceeded at t=${t} (h=${h}, next output at ${times[i]}); raise maxNumSteps or loosen rtol/atol`,
        );
      }
      const att = attemptStep(fn, t, y, f0, h, o);
      const [r] = yield att.ratio;
      if (!Number.isFinite(r)) {
        counters.rejected++;
        disposeAll([att.y1, ...att.ks]);
        if (++nonFinite > MAX_NONFINITE_RETRIES || h <= o.minStep) {
          throw new OpError(
            o.op,
            `non-finite state: every step from t=${t} gives NaN or Infinity (last h=${h}); check f for overflow or division by zero`,
          );
        }
        h *= MIN_FACTOR;
        continue;
      }
      nonFinite = 0;
      const accept = r <= 1 || h <= o.minStep;
      const factor =
        r === 0
          ? MAX_FACTOR
          : Math.min(MAX_FACTOR, Math.max(SAFETY * Math.pow(r, -1 / DOPRI5.order), accept ? 1 : MIN_FACTOR));
      if (!accept) {
        counters.rejected++;
        disposeAll([att.y1, ...att.ks]);
        h *= factor;
        continue;
      }
      counters.accepted++;
      const tNew = t + h;
      for (; i < times.length && times[i] <= tNew; i++) {
        outs.push(times[i] === tNew ? att.y1 : interpolate(y, att.y1, [f0, ...att.ks], h, (times[i] - t) / h));
      }
      // k7 becomes the next k1 (FSAL); the rest of this step is no longer needed.
      disposeAll([y, f0, ...att.ks.slice(0, 5)], outs);
      t = tNew;
      y = att.y1;
      f0 = att.ks[5];
      h *= factor;
    }
  } catch (e) {
    disposeAll(outs.slice(1));
    throw e;
  } finally {
    disposeAll([y, f0], outs);
  }
  return outs;
}
