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

/** The stages of the rk4 step from z at grid point r: their evaluations (k_s = e_s.f). */
function stepStages(s: HostSolve, z: ArrayLike<number>, zOff: number, r: number): { evals: Evaluation[]; h: number } {
  const { n } = s.weights;
  const t = s.grid[r],
    h = s.grid[r + 1] - t;
  const evals: Evaluation[] = [];
  for (let st = 0; st < RK4.c.length; st++) {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < st; j++) acc += RK4.a[st - 1][j] * evals[j].f[i];
      y[i] = z[zOff + i] + h * acc;
    }
    evals.push(evaluate(s.weights, y, 0, ntkTerms(n, s.logNtkBase, t + RK4.c[st] * h)));
  }
  return { evals, h };
}

/** z from z(1) = log θ_orig along the grid: z at every grid point into traj [(steps + 1)·n], θ = exp(z(t)) into theta [n]. */
export function solveOnHost(s: HostSolve, traj: TypedArray, theta: TypedArray): void {
  const { n } = s.weights;
  const steps = s.grid.length - 1;
  for (let i = 0; i < n; i++) traj[i] = ((-2 * i) / (2 * n)) * s.logBase;
  for (let r = 0; r < steps; r++) {
    const { evals, h } = stepStages(s, traj, r * n, r);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let st = 0; st < evals.length; st++) acc += RK4.b[st] * evals[st].f[i];
      traj[(r + 1) * n + i] = traj[r * n + i] + h * acc;
    }
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
    const { evals, h } = stepStages(s, traj, r * n, r);
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
