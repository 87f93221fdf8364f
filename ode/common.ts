// Pieces the solvers and both entry points (odeint, odeintAdjoint) share: argument checks, the
// read-request protocol (solvers are generators that yield the small tensors whose values steer them)
// with its sync (cpu) and async drivers, norms, linear combinations, and the time-gradient formulas.
import { noGrad } from '../core/autograd.js';
import { readNow } from '../core/device.js';
import { scope } from '../core/scope.js';
import { OpError, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { stack } from '../ops/movement.js';

/**
 * Right-hand side f(t, y). odeint passes t as a JS number; odeintAdjoint passes a 0-d tensor when time
 * gradients are requested (write f with ops that accept either, e.g. `w.mul(t).cos()`).
 */
export type OdeFunc = (t: number | Tensor, y: Tensor) => Tensor;

/** Right-hand side as the solvers see it: time is always a JS double. */
export type Dynamics = (t: number, y: Tensor) => Tensor;

/** Maps a (scaled) error-like tensor to a 0-d tensor; the solver reads one number per step attempt. */
export type Norm = (x: Tensor) => Tensor;

/**
 * A solver run: it yields a small tensor whenever it needs values on the host (error ratios, initial-step
 * norms) and is resumed with them. Keeping this explicit lets the same code run synchronously where
 * reads are (cpu: inside a backward rule) and asynchronously elsewhere (webgpu).
 */
export type SolverRun<T> = Generator<Tensor, T, Float64Array>;

export async function driveAsync<T>(run: SolverRun<T>): Promise<T> {
  let step = run.next();
  while (!step.done) {
    const values = Float64Array.from(await step.value.data());
    step.value.dispose();
    step = run.next(values);
  }
  return step.value;
}

/** Drives a run whose tensors live on a device that is read synchronously (cpu). */
export function driveSync<T>(run: SolverRun<T>): T {
  let step = run.next();
  while (!step.done) {
    const values = Float64Array.from(
      readNow(
        'odeint',
        step.value,
        'an internal error: driveSync is only for tensors on a device read synchronously (cpu)',
      ),
    );
    step.value.dispose();
    step = run.next(values);
  }
  return step.value;
}

/** Root-mean-square over all elements, as a 0-d tensor. */
export const rmsNorm: Norm = (x) => x.square().mean().sqrt();

/**
 * The max over parts of each part's RMS, for a flat state made of consecutive parts of the given sizes.
 * Parts listed in `skip` take no part (the adjoint's seminorm drops the parameter channels).
 */
export function mixedNorm(sizes: readonly number[], skip: ReadonlySet<number> = new Set()): Norm {
  return (x) => {
    const flat = x.reshape([-1]);
    let start = 0;
    let best: Tensor | null = null;
    sizes.forEach((n, i) => {
      const from = start;
      start += n;
      if (n === 0 || skip.has(i)) return;
      const ms = flat
        .slice(0, from, from + n)
        .square()
        .mean();
      best = best ? best.maximum(ms) : ms;
    });
    if (!best) return flat.sum().mul(0);
    return (best as Tensor).sqrt();
  };
}

/**
 * Σ coeffs[j]·ks[j] (zero weights skipped; at least one must be nonzero). Partial sums are disposed as
 * soon as they are used, so a stage costs two live temporaries, not 2·stages (the graph, if recorded,
 * keeps what its backward needs on its own).
 */
export function combine(coeffs: readonly number[], ks: readonly Tensor[]): Tensor {
  let acc: Tensor | null = null;
  coeffs.forEach((c, j) => {
    if (c === 0) return;
    const term = ks[j].mul(c);
    if (!acc) {
      acc = term;
      return;
    }
    const next: Tensor = acc.add(term);
    acc.dispose();
    term.dispose();
    acc = next;
  });
  if (!acc) throw new Error('combine: all weights are zero');
  return acc;
}

/** y + Σ coeffs[j]·ks[j]; returns y itself when every weight is zero. */
export function axpy(y: Tensor, coeffs: readonly number[], ks: readonly Tensor[]): Tensor {
  if (coeffs.every((c) => c === 0)) return y;
  const sum = combine(coeffs, ks);
  const out = y.add(sum);
  sum.dispose();
  return out;
}

export function disposeAll(ts: readonly (Tensor | null | undefined)[], keep: readonly Tensor[] = []): void {
  for (const t of ts) if (t && !keep.includes(t)) t.dispose();
}

/** Counters of one solve (see ode.lastStats()). */
export interface SolveCounters {
  nfe: number;
  accepted: number;
  rejected: number;
  /** dopri5: the first step size tried. */
  firstStep?: number;
}

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

/** A t that receives gradients must live where the solve runs. */
export function checkTimeTensor(op: string, t: Tensor, y0: Tensor): void {
  if (t.device !== y0.device)
    throw new OpError(op, `t (on ${t.device}) must be on y0's device (${y0.device}) to receive gradients`);
}

/** Adaptive solves catch NaN/Inf through their error ratios; fixed grids check the solution once, here. */
export async function checkFiniteSolution(
  op: string,
  method: string,
  solution: Tensor,
  times: readonly number[],
): Promise<void> {
  if (method === 'dopri5') return;
  const total = noGrad(() => solution.abs().sum());
  const v = await total.item();
  total.dispose();
  if (!Number.isFinite(v))
    throw new OpError(
      op,
      `non-finite state: the ${method} solution over [${times[0]}, ${times[times.length - 1]}] contains NaN or Infinity (try a smaller stepSize)`,
    );
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
