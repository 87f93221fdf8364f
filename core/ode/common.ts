// Pieces every solver shares: the read-request protocol (solvers are generators that yield the small
// tensors whose values steer them), its sync (cpu) and async drivers, norms, and linear combinations.
import { cpu } from '../device.js';
import { OpError } from '../shape.js';
import type { Tensor } from '../tensor.js';

/** Right-hand side as the solvers see it: time is always a JS double. */
export type Dynamics = (t: number, y: Tensor) => Tensor;

/** Maps a (scaled) error-like tensor to a 0-d tensor; the solver reads one number per step attempt. */
export type Norm = (x: Tensor) => Tensor;

/**
 * A solver run: it yields a small tensor whenever it needs values on the host (error ratios, initial-step
 * norms) and is resumed with them. Keeping this explicit lets the same code run synchronously on cpu
 * (inside a backward rule) and asynchronously on webgpu.
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

/** Drives a run whose tensors all live on cpu (reads are then synchronous). */
export function driveSync<T>(run: SolverRun<T>): T {
  let step = run.next();
  while (!step.done) {
    if (step.value.device !== 'cpu') {
      throw new OpError('odeint', `internal error: a synchronous solve needs cpu tensors, got one on ${step.value.device}`);
    }
    const values = Float64Array.from(cpu.readSync(step.value));
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
      const ms = flat.slice(0, from, from + n).square().mean();
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
