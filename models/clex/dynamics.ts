// The CLEX right-hand side f(t, z) = act((z + log θ_ntk(t))·W_up)·W_down + ξ(t) in float64 on the host.
// The state is a row of d/2 values (W_up [d/2, λd]), so composed ops would spend their time in per-op
// overhead: one evaluation and its vector–Jacobian product are plain loops. From them:
// - clexDynamics, the op the general solver (ode.odeint / odeintAdjoint) steps with;
// - the fixed-step rk4 solve and its discrete adjoint, the float64 cpu kernels of the fused solve (solve.ts).
// The backward rules are first-order only (enough for backprop through a solver and for the adjoint).
import { defineOp } from '../../core/op.js';
import { readNow } from '../../core/device.js';
import type { TypedArray } from '../../core/dtype.js';
import { OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { FIXED_TABLEAUX } from '../../ode/tableaux.js';
import { tensor } from '../../ops/creation.js';

export type Activation = 'tanh' | 'silu';

/** log θ_ntk(t) and the drift ξ(t) = d/dt log θ_ntk(t) of n = d/2 frequencies, NTK base e^logNtkBase. */
export interface NtkTerms {
  logNtk: Float64Array;
  drift: Float64Array;
}

/**
 * log θ_ntk,i(t) = −(2i/d)·logNtkBase − (2i/(d − 2))·ln α with α = max(2t − 1, 1), and its t-derivative.
 * α is clamped to 1 only for t < 1; at t = 1 the drift is the right derivative (RK stages evaluate there).
 */
export function ntkTerms(n: number, logNtkBase: number, t: number): NtkTerms {
  const la = Math.log(Math.max(2 * t - 1, 1));
  const dlog = t >= 1 ? -2 / (2 * t - 1) : 0;
  const logNtk = new Float64Array(n),
    drift = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const bend = (2 * i) / (2 * n - 2);
    logNtk[i] = ((-2 * i) / (2 * n)) * logNtkBase - bend * la;
    drift[i] = bend * dlog;
  }
  return { logNtk, drift };
}

/** W_up [n, m] and W_down [m, n] as host values (row-major from the offsets), and the activation. */
export interface HostWeights {
  readonly up: ArrayLike<number>;
  readonly upOff: number;
  readonly down: ArrayLike<number>;
  readonly downOff: number;
  readonly n: number;
  readonly m: number;
  readonly act: Activation;
}

/** One evaluation: f, and the input x = z + log θ_ntk, act(h) and act'(h) its vector–Jacobian product reads. */
interface Evaluation {
  f: Float64Array;
  x: Float64Array;
  a: Float64Array;
  dact: Float64Array;
}

function evaluate(w: HostWeights, z: ArrayLike<number>, zOff: number, terms: NtkTerms): Evaluation {
  const { up, upOff, down, downOff, n, m } = w;
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = z[zOff + i] + terms.logNtk[i];
  const a = new Float64Array(m),
    dact = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * up[upOff + i * m + j];
    if (w.act === 'tanh') {
      a[j] = Math.tanh(s);
      dact[j] = 1 - a[j] * a[j];
    } else {
      const sg = 1 / (1 + Math.exp(-s));
      a[j] = s * sg;
      dact[j] = sg * (1 + s * (1 - sg));
    }
  }
  const f = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    let s = terms.drift[k];
    for (let j = 0; j < m; j++) s += a[j] * down[downOff + j * n + k];
    f[k] = s;
  }
  return { f, x, a, dact };
}

/** J_zᵀ·g of one evaluation; adds J_Wᵀ·g into dUp [n, m] and dDown [m, n]. */
function evaluationVjp(
  w: HostWeights,
  e: Evaluation,
  g: ArrayLike<number>,
  gOff: number,
  dUp: Float64Array,
  dDown: Float64Array,
): Float64Array {
  const { up, upOff, down, downOff, n, m } = w;
  // dW_down = aᵀ g; dh = (g W_downᵀ) ⊙ act'(h); dz = dh W_upᵀ; dW_up = xᵀ dh.
  const dh = new Float64Array(m),
    dz = new Float64Array(n);
  for (let j = 0; j < m; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) {
      dDown[j * n + k] += e.a[j] * g[gOff + k];
      s += g[gOff + k] * down[downOff + j * n + k];
    }
    dh[j] = s * e.dact[j];
  }
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < m; j++) {
      dUp[i * m + j] += e.x[i] * dh[j];
      s += dh[j] * up[upOff + i * m + j];
    }
    dz[i] = s;
  }
  return dz;
}

/** Host values of a tensor (the whole view, contiguous); only backends whose memory the host holds have them. */
const hostValues = (op: string, name: string, t: Tensor): TypedArray =>
  readNow(op, t, `${name} must be on the cpu backend; move it with await x.toAsync('cpu')`);

/**
 * f(t, z) for a row z [1, n] with W_up [n, m], W_down [m, n] and the NTK terms at t, on the host
 * (the general solver's right-hand side). Differentiable in z, W_up and W_down.
 */
export const clexDynamics = defineOp({
  name: 'clexDynamics',
  check: (z: Tensor, up: Tensor, down: Tensor, terms: NtkTerms, _act: Activation) => {
    const n = terms.logNtk.length,
      m = up.shape[1];
    if (
      z.size !== n ||
      up.rank !== 2 ||
      up.shape[0] !== n ||
      down.rank !== 2 ||
      down.shape[0] !== m ||
      down.shape[1] !== n
    ) {
      throw new OpError(
        'clexDynamics',
        `shapes do not fit: z ${shapeStr(z.shape)}, up ${shapeStr(up.shape)}, down ${shapeStr(down.shape)}, ${n} frequencies`,
      );
    }
  },
  forward: (z: Tensor, up: Tensor, down: Tensor, terms: NtkTerms, act: Activation) => {
    const w: HostWeights = {
      up: hostValues('clexDynamics', 'up', up),
      upOff: 0,
      down: hostValues('clexDynamics', 'down', down),
      downOff: 0,
      n: terms.logNtk.length,
      m: up.shape[1],
      act,
    };
    const e = evaluate(w, hostValues('clexDynamics', 'z', z), 0, terms);
    const out = tensor(e.f, { device: z.device, dtype: z.dtype, shape: z.shape });
    const like = [z, up, down].map(({ device, dtype, shape }) => ({ device, dtype, shape }));
    return { out, inputs: [z, up, down], info: { w, e, like } };
  },
  backward: (g, _saved, { w, e, like }) => {
    const dUp = new Float64Array(w.n * w.m),
      dDown = new Float64Array(w.m * w.n);
    const dz = evaluationVjp(w, e, hostValues('clexDynamics', 'the gradient', g), 0, dUp, dDown);
    return [dz, dUp, dDown].map((values, i) => tensor(values, like[i]));
  },
  kernels: [],
  tolerance: { float64: { rtol: 1e-6, atol: 1e-9 } },
});

/** The fixed-step solve's tableau: rk4, Kutta's 3/8 rule (as ode.odeint's 'rk4'). */
export const RK4 = FIXED_TABLEAUX.rk4;

/** What fixes one fixed-step solve: the weights, ln b of the rope base (z(1) = −(2i/d)·ln b), the NTK base and the grid. */
export interface HostSolve {
  readonly weights: HostWeights;
  readonly logBase: number;
  readonly logNtkBase: number;
  /** 1 = grid[0] < grid[1] < … < grid[last] = t. */
  readonly grid: readonly number[];
}

/** The stages of one rk4 step of size h from z at time t: their evaluations (k_s = e_s.f); k1 reused when given. */
function stepStages(
  s: Omit<HostSolve, 'grid'>,
  z: ArrayLike<number>,
  zOff: number,
  t: number,
  h: number,
  k1?: Evaluation,
): Evaluation[] {
  const { n } = s.weights;
  const evals: Evaluation[] = [];
  for (let st = 0; st < RK4.c.length; st++) {
    if (st === 0 && k1) {
      evals.push(k1);
      continue;
    }
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < st; j++) acc += RK4.a[st - 1][j] * evals[j].f[i];
      y[i] = z[zOff + i] + h * acc;
    }
    evals.push(evaluate(s.weights, y, 0, ntkTerms(n, s.logNtkBase, t + RK4.c[st] * h)));
  }
  return evals;
}

/** h·Σ b_s k_s of one step's stages. */
function increment(evals: Evaluation[], h: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let st = 0; st < evals.length; st++) acc += RK4.b[st] * evals[st].f[i];
    out[i] = h * acc;
  }
  return out;
}

/** z from z(1) = log θ_orig along the grid: z at every grid point into traj [(steps + 1)·n], θ = exp(z(t)) into theta [n]. */
export function solveOnHost(s: HostSolve, traj: TypedArray, theta: TypedArray): void {
  const { n } = s.weights;
  const steps = s.grid.length - 1;
  for (let i = 0; i < n; i++) traj[i] = ((-2 * i) / (2 * n)) * s.logBase;
  for (let r = 0; r < steps; r++) {
    const h = s.grid[r + 1] - s.grid[r];
    const inc = increment(stepStages(s, traj, r * n, s.grid[r], h), h, n);
    for (let i = 0; i < n; i++) traj[(r + 1) * n + i] = traj[r * n + i] + inc[i];
  }
  for (let i = 0; i < n; i++) theta[i] = Math.exp(traj[steps * n + i]);
}

/**
 * dL/dW_up and dL/dW_down of the solve from dL/dθ(t) (g [n]) and its trajectory: the transposed rk4
 * steps in reverse (the discrete adjoint, exactly the gradient of the computed solution).
 */
export function solveBackwardOnHost(
  s: HostSolve,
  traj: ArrayLike<number>,
  g: ArrayLike<number>,
  dUp: TypedArray,
  dDown: TypedArray,
): void {
  const { n, m } = s.weights;
  const steps = s.grid.length - 1;
  const stages = RK4.c.length;
  const gUp = new Float64Array(n * m),
    gDown = new Float64Array(m * n);
  // λ = dL/dz(t) = dL/dθ ⊙ θ.
  const lam = Float64Array.from({ length: n }, (_, i) => g[i] * Math.exp(traj[steps * n + i]));
  for (let r = steps - 1; r >= 0; r--) {
    const h = s.grid[r + 1] - s.grid[r];
    const evals = stepStages(s, traj, r * n, s.grid[r], h);
    const mu: Float64Array[] = new Array(stages);
    for (let st = stages - 1; st >= 0; st--) {
      // The gradient reaching stage st's output: h·(b_st·λ + Σ_{l>st} a_l,st·μ_l).
      const gv = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let acc = RK4.b[st] * lam[i];
        for (let l = st + 1; l < stages; l++) acc += RK4.a[l - 1][st] * mu[l][i];
        gv[i] = h * acc;
      }
      mu[st] = evaluationVjp(s.weights, evals[st], gv, 0, gUp, gDown);
    }
    for (let i = 0; i < n; i++) for (let st = 0; st < stages; st++) lam[i] += mu[st][i];
  }
  dUp.set(gUp);
  dDown.set(gDown);
}

/**
 * The error control of the adaptive solve (step doubling of the rk4 step). A step of H from (t, z) is
 * taken as two rk4 steps of H/2 (the trajectory keeps both: each is a plain rk4 step, so the backward is
 * the fixed-grid one on the grid it records); one rk4 step of H beside them estimates their error,
 * |z_halves − z_full|/15 (rk4's local error is O(H⁵): 2⁴ − 1), per entry against tol.
 */
export interface StepControl {
  /** The local error allowed per step, absolute in z = log θ (so relative in θ). */
  readonly tol: number;
  /** The finest half step (the reference's time_dt): a step of 2·hMin is accepted whatever its estimate. */
  readonly hMin: number;
}

/** The first step tried (both solves, so the cpu and webgpu kernels walk the same grid up to rounding). */
export const ADAPTIVE_FIRST_STEP = 0.1;
/** The controller: H ← H·clamp(SAFETY·e^(−1/5), SHRINK, GROW) after each try (e = the scaled error). */
export const ADAPTIVE_SAFETY = 0.9;
export const ADAPTIVE_SHRINK = 0.2;
export const ADAPTIVE_GROW = 4;

/** Trajectory rows the adaptive solve to tEnd can write: half steps are ≥ hMin except the last two, plus the end point and slack for float32 rounding. */
export const adaptiveRows = (tEnd: number, hMin: number): number => Math.ceil((tEnd - 1) / hMin - 1e-9) + 5;

/**
 * z from z(1) = log θ_orig to tEnd under step control: z at every grid point into traj
 * [adaptiveRows·n], the grid times into times [adaptiveRows] (the last used row's time is tEnd),
 * θ = exp(z(tEnd)) into theta. Returns the number of rk4 steps (grid points − 1).
 */
export function adaptiveSolveOnHost(
  s: Omit<HostSolve, 'grid'>,
  tEnd: number,
  ctl: StepControl,
  traj: TypedArray,
  times: TypedArray,
  theta: TypedArray,
): number {
  const { n } = s.weights;
  for (let i = 0; i < n; i++) traj[i] = ((-2 * i) / (2 * n)) * s.logBase;
  let t = 1,
    H = Math.max(ADAPTIVE_FIRST_STEP, 2 * ctl.hMin),
    r = 0;
  let k1: Evaluation | undefined;
  while (t < tEnd) {
    const last = t + H >= tEnd;
    const tNew = last ? tEnd : t + H;
    const tMid = t + (tNew - t) / 2;
    const z = traj.subarray(r * n, (r + 1) * n);
    k1 ??= evaluate(s.weights, z, 0, ntkTerms(n, s.logNtkBase, t));
    const full = increment(stepStages(s, z, 0, t, tNew - t, k1), tNew - t, n);
    const inc1 = increment(stepStages(s, z, 0, t, tMid - t, k1), tMid - t, n);
    const zMid = z.map((v, i) => v + inc1[i]);
    const inc2 = increment(stepStages(s, zMid, 0, tMid, tNew - tMid), tNew - tMid, n);
    let e = 0;
    for (let i = 0; i < n; i++) {
      const err = Math.abs(inc1[i] + inc2[i] - full[i]) / (15 * ctl.tol);
      e = Math.max(e, err);
      if (Number.isNaN(err)) e = NaN;
    }
    const floor = tNew - t <= 2 * ctl.hMin * (1 + 1e-6);
    const fac = Number.isNaN(e)
      ? ADAPTIVE_SHRINK
      : Math.min(ADAPTIVE_GROW, Math.max(ADAPTIVE_SHRINK, ADAPTIVE_SAFETY * Math.pow(e, -0.2)));
    const tried = tNew - t;
    if (e <= 1 || floor) {
      times[r] = t;
      times[r + 1] = tMid;
      for (let i = 0; i < n; i++) {
        traj[(r + 1) * n + i] = zMid[i];
        traj[(r + 2) * n + i] = zMid[i] + inc2[i];
      }
      r += 2;
      t = tNew;
      k1 = undefined;
    }
    H = Math.max(2 * ctl.hMin, tried * fac);
  }
  times[r] = tEnd;
  for (let i = 0; i < n; i++) theta[i] = Math.exp(traj[r * n + i]);
  return r;
}
