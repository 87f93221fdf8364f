// CLEX (Chen et al., ICLR 2024): continuous length extrapolation. The log inverse frequencies
// z(t) = log θ(t) follow a learned ODE in the length-scaling factor t (the paper's frequency ODE):
//   dz/dt = act((z + log θ_ntk(t)) · W_up) · W_down + ξ(t),   z(1) = log θ_orig,
// solved with this framework's ode module. One CLEX module per model; every layer shares its table.
// The terms (θ_orig, θ_ntk with α = 2t − 1, the drift ξ, the init) are stated in models/README.md,
// "CLEX", under "The maths clex/ implements".
//
// Design (async): the cpu solve may read device values (parameter readback, adaptive steps), so
// everything that needs frequencies from the ODE is async; the models' forward is async for that reason.
//
// Where the ODE runs (rope_scaling.ode_device): with 'device' (the default) on the weights' device. A
// GPU model solves with the fused solve op (solve.ts: one kernel for the whole solve and one for its
// gradient): no readback, so training and inference both just solve and a plain `loss.backward()`
// works. Where the host reads the weights directly (the cpu backend) the general solver runs instead
// (ode.odeint / odeintAdjoint, honouring ode_method and ode_gradient; its adaptive steps read values).
// With 'cpu' (the reference) the weights are copied to the float64 cpu backend through a differentiable
// transfer, the general solver runs there, and θ(t) comes back through a second differentiable transfer
// whose backward reads the gradient back from a GPU (so training there uses `await loss.backwardAsync()`).
//
// Inference cache (cpu solves): z(t) for every integer t in 1..max_factor is solved in one integration
// over the grid and cached as doubles. The cache is keyed by the exact values of W_up and W_down (a
// snapshot read back from the device, a few hundred floats, compared element by element): any change —
// optimizer step, loadStateDict, manual copy_ — invalidates it, and no optimizer cooperation is
// needed. The check costs one small readback per forward; generate() pins the cache for its duration.
import type { DeviceName } from '../../core/backend.js';
import { isGradEnabled, noGrad, record } from '../../core/autograd.js';
import { copiesSync, getDefaultDevice, readsSync } from '../../core/device.js';
import type { DType } from '../../core/dtype.js';
import { nextUniform } from '../../core/rng.js';
import { scope } from '../../core/scope.js';
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { odeint } from '../../ode/odeint.js';
import { odeintAdjoint } from '../../ode/adjoint.js';
import { tensor } from '../../ops/creation.js';
import { cat } from '../../ops/movement.js';
import { empty } from '../../ops/util.js';
import { Module } from '../../nn/module.js';
import * as init from '../../nn/init.js';
import type { RopeScaling } from '../config.js';
import { clexDynamics, ntkTerms, type Activation, type NtkTerms } from './dynamics.js';
import { solveFrequencies, type ClexSolveSpec } from './solve.js';

/** The reference code always uses this base inside log θ_ntk, whatever the model's rope base. */
const NTK_REFERENCE_BASE = 10000;
/** The finest local error per step the float32 device solve is asked for (z = log θ is O(1..10)). */
const DEVICE_STEP_TOLERANCE = 1e-7;

export interface ClexOptions {
  /** Rotary dim d (even, ≥ 4): the head dim for LLaMA, rotary_ndims for GPT-NeoX. */
  dim: number;
  /** The model's rope base b (z(1) = log θ_orig uses it). */
  base: number;
  /** L0 = max_position_embeddings, the unit of t. */
  maxPositionEmbeddings: number;
  scaling: Required<RopeScaling>;
  device?: DeviceName;
  dtype?: DType;
}

/**
 * The ODE network's weights, with the reference's parameter names (`proj_func.ode_up_proj`,
 * `proj_func.ode_down_proj`). It has no forward: CLEX's solves evaluate act(x·W_up)·W_down in fused ops.
 */
export class ODELinear extends Module<[], never> {
  readonly ode_up_proj: Tensor;
  readonly ode_down_proj: Tensor;

  constructor(
    readonly dim: number,
    readonly factor: number,
    readonly act: Activation,
    opts: { device?: DeviceName; dtype?: DType },
  ) {
    super();
    const device = opts.device ?? getDefaultDevice();
    const dtype = opts.dtype ?? 'float32';
    const hidden = factor * dim;
    const bound = 1 / Math.sqrt(hidden);
    this.ode_up_proj = this.param('ode_up_proj', init.uniform(empty(device, dtype, [dim / 2, hidden]), -bound, bound));
    this.ode_down_proj = this.param('ode_down_proj', init.zeros(empty(device, dtype, [hidden, dim / 2])));
  }

  forward(): never {
    throw new OpError(
      'ODELinear',
      'has no forward: CLEX.frequencies(t) evaluates act(x·W_up)·W_down inside its ODE solve',
    );
  }
}

/** Training-mode draw: the scale t and the sorted positions the table is built at. */
export interface ClexSample {
  t: number;
  positions: number[];
}

/**
 * A sorted random subset of [0, t·L0) of size L that contains 0 and t·L0 − 1 (L − 2 distinct integers
 * drawn from [1, t·L0 − 2]); with t·L0 ≤ L (no room to spread), simply 0..L−1. `uniform` draws in [0, 1).
 */
export function sampleTrainingPositions(
  L: number,
  t: number,
  L0: number,
  uniform: () => number = nextUniform,
): number[] {
  const span = t * L0;
  if (!Number.isInteger(L) || L < 1)
    throw new OpError('CLEX.sampleTrainingPositions', `length must be a positive integer, got ${L}`);
  if (span <= L) return Array.from({ length: L }, (_, i) => i);
  if (L === 1) return [0];
  // Floyd's algorithm: L − 2 distinct values from [1, span − 2] without materialising the range.
  const chosen = new Set<number>();
  const lo = 1,
    n = span - 2;
  for (let j = n - (L - 2) + 1; j <= n; j++) {
    const r = lo + Math.floor(uniform() * (j - lo + 1));
    chosen.add(chosen.has(r) ? j : r);
  }
  return [0, ...[...chosen].sort((a, b) => a - b), span - 1];
}

/**
 * How training forwards place their L tokens (RotaryEmbedding.trainingPositions). 'standard': the rule's
 * own (0..L−1; CLEX: sampleTrainingPositions over [0, t·L0)). 'chunks': chunkedTrainingPositions over
 * [0, s·L0), s being the rule's factor or CLEX's drawn t (PoSE-style).
 */
export type TrainingPositions = 'standard' | 'chunks';

/**
 * The L tokens cut at a random point into two contiguous chunks, the second shifted by a random gap so
 * the positions stay inside [0, span): neighbouring tokens stay one position apart, as at inference,
 * while the distances across the cut reach up to span − 1 (PoSE, Zhu et al. 2023). With span ≤ L,
 * simply 0..L−1. `uniform` draws in [0, 1).
 */
export function chunkedTrainingPositions(L: number, span: number, uniform: () => number = nextUniform): number[] {
  if (!Number.isInteger(L) || L < 1)
    throw new OpError('chunkedTrainingPositions', `length must be a positive integer, got ${L}`);
  if (!Number.isInteger(span) || span < 1)
    throw new OpError('chunkedTrainingPositions', `span must be a positive integer, got ${span}`);
  if (span <= L || L === 1) return Array.from({ length: L }, (_, i) => i);
  const cut = 1 + Math.floor(uniform() * (L - 1));
  const gap = Math.floor(uniform() * (span - L + 1));
  return Array.from({ length: L }, (_, i) => (i < cut ? i : i + gap));
}

/**
 * A differentiable move to `device` and `dtype`: forward copies (nothing where x is there already),
 * backward moves the gradient back: synchronously where the host holds it (readSync), else by a readback
 * (asynchronous: it needs loss.backwardAsync()).
 */
async function transfer(x: Tensor, device: DeviceName, dtype: DType): Promise<Tensor> {
  const moved = await x.detach().toAsync(device);
  const out = moved.dtype === dtype ? moved : moved.astype(dtype);
  if (out !== moved) moved.dispose();
  out.requiresGrad = false;
  return record('clexTransfer', out, [x], (g) => {
    const cast = (c: Tensor) => {
      const r = c.astype(x.dtype);
      if (r !== c && c !== g) c.dispose();
      return [r];
    };
    return copiesSync(g.device, x.device) ? cast(g.to(x.device)) : g.toAsync(x.device).then(cast);
  });
}

/**
 * The CLEX frequency ODE for one model. `await frequencies(t)` gives θ(t) = exp(z(t)) as a tensor on
 * the model's device (recording a graph to the ODE parameters when grad is on); `await cached(t)`
 * gives it as doubles for inference.
 */
export class CLEX extends Module<[number], Promise<Tensor>> {
  readonly proj_func: ODELinear;
  readonly dim: number;
  readonly base: number;
  readonly L0: number;
  readonly maxFactor: number;
  readonly scaling: Required<RopeScaling>;
  /** log θ_orig_i = −(2i/d)·ln b. */
  readonly logFreqOrig: Float64Array;
  /** Cached z(t) rows for t = 1..max_factor, valid for `snapshot`. */
  private grid: Float64Array[] | null = null;
  private snapshot: Float64Array | null = null;
  /** Increments each time the cache is recomputed (rotary tables built from it are keyed by it). */
  version = 0;
  /**
   * Training draws: the probability of t = 1 (dense positions, plain RoPE), the rest spread uniformly
   * over the other admissible t. null: t uniform over all of them, as in the paper.
   */
  trainingT1Share: number | null = null;
  /** While > 0, cached() trusts the cache without re-reading the parameters (generate() sets it). */
  private pinned = 0;

  constructor(opts: ClexOptions) {
    super();
    const d = opts.dim;
    if (!Number.isInteger(d) || d < 4 || d % 2 !== 0)
      throw new OpError('CLEX', `rotary dim must be an even integer ≥ 4, got ${d}`);
    this.dim = d;
    this.base = opts.base;
    this.L0 = opts.maxPositionEmbeddings;
    this.scaling = opts.scaling;
    this.maxFactor = opts.scaling.max_factor;
    this.proj_func = this.module('proj_func', new ODELinear(d, opts.scaling.param_factor, opts.scaling.act, opts));
    const half = d / 2;
    this.logFreqOrig = Float64Array.from({ length: half }, (_, i) => ((-2 * i) / d) * Math.log(this.base));
  }

  /** θ(t) for training/gradients; same as frequencies(t). */
  forward(t: number): Promise<Tensor> {
    return this.frequencies(t);
  }

  /** The scale used for a sequence of total length L: t = max(1, ceil(L / L0)); beyond max_factor·L0 is an error. */
  scaleFor(length: number): number {
    if (length > this.maxFactor * this.L0) {
      throw new OpError(
        'CLEX',
        `sequence length ${length} exceeds the longest CLEX context max_factor·L0 = ${this.maxFactor}·${this.L0} = ${this.maxFactor * this.L0}; raise rope_scaling.max_factor or shorten the input`,
      );
    }
    return Math.max(1, Math.ceil(length / this.L0));
  }

  /**
   * Training draw for a sequence of length L: t ~ Uniform{t_min..max_factor} (or trainingT1Share) and
   * positions in [0, t·L0): a sorted random subset ('standard', the paper's) or two chunks ('chunks').
   */
  sample(L: number, uniform: () => number = nextUniform, placement: TrainingPositions = 'standard'): ClexSample {
    const tMin = this.scaleFor(L);
    const share = this.trainingT1Share;
    if (share !== null && !(share >= 0 && share <= 1))
      throw new OpError('CLEX.sample', `trainingT1Share must be null or a probability in [0, 1], got ${String(share)}`);
    const t =
      share !== null && tMin === 1 && this.maxFactor > 1
        ? uniform() < share
          ? 1
          : 2 + Math.floor(uniform() * (this.maxFactor - 1))
        : tMin + Math.floor(uniform() * (this.maxFactor - tMin + 1));
    return {
      t,
      positions:
        t === 1
          ? Array.from({ length: L }, (_, i) => i)
          : placement === 'chunks'
            ? chunkedTrainingPositions(L, t * this.L0, uniform)
            : sampleTrainingPositions(L, t, this.L0, uniform),
    };
  }

  /** log θ_ntk(t) (base 10000) and ξ(t) = d/dt log θ_ntk(t), as doubles. */
  ntkTerms(t: number): NtkTerms {
    return ntkTerms(this.dim / 2, Math.log(NTK_REFERENCE_BASE), t);
  }

  /** dz/dt for the general solver with the given host-readable weights, one fused op per evaluation. */
  private dynamics(up: Tensor, down: Tensor): (t: number | Tensor, z: Tensor) => Tensor {
    return (t, z) => {
      if (typeof t !== 'number') throw new OpError('CLEX', 'internal error: the CLEX dynamics expects a numeric time');
      return clexDynamics(z, up, down, this.ntkTerms(t), this.proj_func.act);
    };
  }

  /**
   * True when θ(t) comes from the fused solve op (ode_device 'device' with weights the host cannot read
   * synchronously, i.e. on a GPU): no readback, no cache. Where the host reads them (the cpu backend) the
   * general solver runs instead: its adaptive steps and adjoint read values, which cost nothing there.
   */
  get solvesOnDevice(): boolean {
    return this.scaling.ode_device === 'device' && !readsSync(this.proj_func.ode_up_proj.device);
  }

  /**
   * The fused solve's settings. 'rk4': the reference, rk4 on the time_dt grid. 'dopri5' (a tolerance,
   * not a grid): rk4 under step control (solve.ts), each step's local error in z = log θ (relative
   * error in θ) at most ode_rtol but no finer than float32 resolves (DEVICE_STEP_TOLERANCE), steps no
   * finer than time_dt. Measured against the float64 rk4 at time_dt (d = 8, 16, 64, tanh and silu,
   * t = 2..16): θ within 4e-7–8e-6 where float32 on the reference grid is within 1e-6–4e-5 (its rounding
   * accumulates over 100–1500 steps), the gradients as close or closer; t = 8 takes 24–34 steps for 700.
   */
  private solveSpec(): ClexSolveSpec {
    const s = this.scaling;
    return {
      dim: this.dim,
      act: this.proj_func.act,
      timeDt: s.time_dt,
      ...(s.ode_method === 'dopri5' ? { stepTolerance: Math.max(s.ode_rtol, DEVICE_STEP_TOLERANCE) } : {}),
      logBase: Math.log(this.base),
      logNtkBase: Math.log(NTK_REFERENCE_BASE),
    };
  }

  private solverOptions() {
    const s = this.scaling;
    return s.ode_method === 'rk4'
      ? { method: 'rk4' as const, stepSize: s.time_dt }
      : { method: 'dopri5' as const, rtol: s.ode_rtol, atol: s.ode_atol };
  }

  /** z at the given increasing times ≥ 1 (first must be 1), as [times, d/2], by the general solver (host-readable weights). */
  private async solve(times: number[], up: Tensor, down: Tensor): Promise<Tensor> {
    // The state is a row [1, d/2].
    const z0 = tensor(this.logFreqOrig, { device: up.device, dtype: up.dtype, shape: [1, this.dim / 2] });
    const f = this.dynamics(up, down);
    const useAdjoint =
      this.scaling.ode_gradient === 'adjoint' && isGradEnabled() && (up.requiresGrad || down.requiresGrad);
    const Y = useAdjoint
      ? await odeintAdjoint(f, z0, times, { ...this.solverOptions(), params: [up, down] })
      : await odeint(f, z0, times, this.solverOptions());
    z0.dispose();
    return Y;
  }

  /**
   * θ(t) = exp(z(t)) [d/2] on the model's device and dtype, recording a graph to the ODE parameters when
   * grad is enabled (t = 1 gives the original frequencies, no ODE, no graph).
   */
  async frequencies(t: number): Promise<Tensor> {
    const up = this.proj_func.ode_up_proj,
      down = this.proj_func.ode_down_proj;
    if (!Number.isInteger(t) || t < 1 || t > this.maxFactor)
      throw new OpError('CLEX', `t must be an integer in [1, ${this.maxFactor}], got ${t}`);
    if (t === 1) return tensor(this.logFreqOrig.map(Math.exp), { device: up.device, dtype: up.dtype });
    if (this.solvesOnDevice) return solveFrequencies(up, down, this.solveSpec(), t);
    const onCpu = this.scaling.ode_device === 'cpu';
    let u = up,
      w = down;
    if (onCpu) {
      // One readback for both matrices: move them as one flat vector and split it on the cpu.
      const flat = await transfer(cat([up.reshape([-1]), down.reshape([-1])]), 'cpu', 'float64');
      u = flat.narrow(0, 0, up.size).reshape(up.shape);
      w = flat.narrow(0, up.size, down.size).reshape(down.shape);
    }
    const Y = await this.solve([1, t], u, w);
    const z = Y.slice(0, 1, 2).reshape([this.dim / 2]);
    const theta = z.exp();
    return onCpu ? transfer(theta, up.device, up.dtype) : theta;
  }

  /** Reads W_up and W_down (one small readback) as one flat array. */
  private async readParams(): Promise<Float64Array> {
    const flat = scope(() =>
      noGrad(() => cat([this.proj_func.ode_up_proj.reshape([-1]), this.proj_func.ode_down_proj.reshape([-1])])),
    );
    const data = Float64Array.from(await flat.data());
    flat.dispose();
    return data;
  }

  /**
   * θ(t) as doubles from the inference cache (solved once over t = 1..max_factor, recomputed whenever
   * the parameters' values differ from those the cache was solved with).
   */
  async cached(t: number): Promise<Float64Array> {
    if (!Number.isInteger(t) || t < 1 || t > this.maxFactor)
      throw new OpError('CLEX', `t must be an integer in [1, ${this.maxFactor}], got ${t}`);
    if (t === 1) return this.logFreqOrig.map(Math.exp);
    await this.refresh();
    return (this.grid as Float64Array[])[t - 1].map(Math.exp);
  }

  /** Re-solves the cached grid when the parameters changed (unless pinned). Returns the cache version. */
  async refresh(): Promise<number> {
    if (this.grid && this.pinned > 0) return this.version;
    const values = await this.readParams();
    if (this.grid && this.snapshot && sameValues(values, this.snapshot)) return this.version;
    const upShape = this.proj_func.ode_up_proj.shape,
      downShape = this.proj_func.ode_down_proj.shape;
    const nUp = upShape[0] * upShape[1];
    const times = Array.from({ length: this.maxFactor }, (_, i) => i + 1);
    let rows: Float64Array;
    if (this.maxFactor === 1) rows = Float64Array.from(this.logFreqOrig);
    else {
      // The values are on the host already: solve the grid in float64 on the cpu.
      rows = await noGrad(async () => {
        const opts = { device: 'cpu' as const, dtype: 'float64' as const };
        const u = tensor(values.subarray(0, nUp), { ...opts, shape: upShape });
        const w = tensor(values.subarray(nUp), { ...opts, shape: downShape });
        const Y = await this.solve(times, u, w);
        const out = Float64Array.from(await Y.data());
        for (const x of [u, w, Y]) x.dispose();
        return out;
      });
    }
    const half = this.dim / 2;
    this.grid = times.map((_, i) => rows.slice(i * half, (i + 1) * half));
    this.snapshot = values;
    this.version++;
    return this.version;
  }

  /** Runs fn with the cache trusted as is (no parameter read per call); for decoding loops. Device solves use no cache. */
  async pinCache<T>(fn: () => Promise<T>): Promise<T> {
    if (this.solvesOnDevice) return fn();
    await this.refresh();
    this.pinned++;
    try {
      return await fn();
    } finally {
      this.pinned--;
    }
  }
}

function sameValues(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}
