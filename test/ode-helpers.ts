// Shared problem definitions and a mode-agnostic "solve, then differentiate" helper for the ODE tests.
import { cat, ode, scope, tensor, type Tensor } from '../index.js';

export type Mode = 'backprop' | 'adjoint';
type Device = 'cpu' | 'webgpu';

export function scalars(device: Device) {
  const dtype = device === 'cpu' ? ('float64' as const) : ('float32' as const);
  return {
    dtype,
    leaf: (v: number | number[] | number[][]) => tensor(v, { dtype, device, requiresGrad: true }),
    plain: (v: number | number[] | number[][]) => tensor(v, { dtype, device }),
  };
}

export interface Problem {
  name: string;
  /** Builds fresh leaves: y0, params, and f. */
  make(device: Device): { y0: Tensor; params: Tensor[]; f: ode.OdeFunc };
  t: number[];
  /** Loss from the solution [len(t), ...]. */
  loss(Y: Tensor): Tensor;
}

/** Solves with odeint (backprop through the solver) or odeintAdjoint and returns the loss and all gradients. */
export function solveAndGrad(mode: Mode, pb: Problem, device: Device, opts: ode.AdjointOptions = {}, timeGrad = false) {
  return scope(() => solveAndGradUnscoped(mode, pb, device, opts, timeGrad));
}

async function solveAndGradUnscoped(
  mode: Mode,
  pb: Problem,
  device: Device,
  opts: ode.AdjointOptions,
  timeGrad: boolean,
) {
  const { y0, params, f } = pb.make(device);
  const { leaf, plain } = scalars(device);
  const t = timeGrad ? leaf(pb.t) : plain(pb.t);
  const Y =
    mode === 'backprop' ? await ode.odeint(f, y0, t, opts) : await ode.odeintAdjoint(f, y0, t, { ...opts, params });
  const L = pb.loss(Y);
  if (device === 'cpu' && mode === 'adjoint') L.backward();
  else await L.backwardAsync();
  const read = async (x: Tensor) => (x.grad ? Array.from(await x.grad.data()) : null);
  const out = {
    loss: Array.from(await L.data())[0],
    y: Array.from(await Y.data()),
    gy0: await read(y0),
    gParams: await Promise.all(params.map(read)),
    gt: timeGrad ? await read(t) : null,
    stats: ode.lastStats(),
  };
  return out;
}

const last = (Y: Tensor) => Y.slice(0, Y.shape[0] - 1, Y.shape[0]).sum();

export const EXPONENTIAL: Problem = {
  name: 'exponential',
  make: (d) => {
    const { leaf } = scalars(d);
    const a = leaf([0.5]);
    return { y0: leaf([1]), params: [a], f: (_t, y) => y.mul(a) };
  },
  t: [0, 1],
  loss: last,
};

export const MULTI_TIME: Problem = {
  name: 'multi-time',
  make: (d) => {
    const { leaf } = scalars(d);
    const a = leaf([-0.5]);
    return { y0: leaf([2]), params: [a], f: (_t, y) => y.mul(a) };
  },
  t: [0, 0.5, 1, 1.5, 2, 2.5, 3],
  loss: (Y) =>
    Y.reshape([7])
      .mul(tensor([1, 7 / 6, 8 / 6, 9 / 6, 10 / 6, 11 / 6, 2], { dtype: Y.dtype, device: Y.device }))
      .sum(),
};

export const AFFINE: Problem = {
  name: 'affine',
  make: (d) => {
    const { leaf } = scalars(d);
    const k = leaf([0.8]);
    const b = leaf([2]);
    return { y0: leaf([0.1]), params: [k, b], f: (_t, y) => y.mul(k).neg().add(b) };
  },
  t: [0, 1.7],
  loss: last,
};

export const LOGISTIC: Problem = {
  name: 'logistic',
  make: (d) => {
    const { leaf } = scalars(d);
    const r = leaf([1.5]);
    const K = leaf([10]);
    return { y0: leaf([0.5]), params: [r, K], f: (_t, y) => y.mul(r).mul(y.div(K).neg().add(1)) };
  },
  t: [0, 4],
  loss: last,
};

export const OSCILLATOR: Problem = {
  name: 'oscillator',
  make: (d) => {
    const { leaf } = scalars(d);
    const w = leaf([2]);
    return {
      y0: leaf([1, 0.5]),
      params: [w],
      f: (_t, y) => cat([y.slice(0, 1, 2), y.slice(0, 0, 1).mul(w.square()).neg()]),
    };
  },
  t: [0, 3],
  loss: (Y) => Y.slice(0, 1, 2).slice(1, 0, 1).sum(),
};

export const NON_AUTONOMOUS: Problem = {
  name: 'non-autonomous',
  make: (d) => {
    const { leaf } = scalars(d);
    const w = leaf([3]);
    return { y0: leaf([0.2]), params: [w], f: (t, _y) => w.mul(t).cos() };
  },
  t: [0.5, 2],
  loss: last,
};

/** A = R·diag(−1, −30)·Rᵀ, R a rotation by 0.3 rad. */
export function stiffMatrix(): number[][] {
  const [c, s] = [Math.cos(0.3), Math.sin(0.3)];
  const R = [
    [c, -s],
    [s, c],
  ];
  const D = [-1, -30];
  return [0, 1].map((i) => [0, 1].map((j) => R[i][0] * D[0] * R[j][0] + R[i][1] * D[1] * R[j][1]));
}

/** Exact dL/dA for L = Σ y(1), y' = A y, y0 = (1, 1): ∫₀¹ e^{Aᵀ(1−s)}·1 · y(s)ᵀ ds (A symmetric; fine quadrature). */
export function stiffExactGrad(): number[][] {
  const [c, s] = [Math.cos(0.3), Math.sin(0.3)];
  const R = [
    [c, -s],
    [s, c],
  ];
  const D = [-1, -30];
  const expAv = (t: number, v: number[]) => {
    const e = [Math.exp(D[0] * t), Math.exp(D[1] * t)];
    return [0, 1].map((i) =>
      [0, 1].reduce((acc, j) => acc + (R[i][0] * e[0] * R[j][0] + R[i][1] * e[1] * R[j][1]) * v[j], 0),
    );
  };
  const n = 20000;
  const G = [
    [0, 0],
    [0, 0],
  ];
  for (let k = 0; k < n; k++) {
    // Gauss–Legendre 2-point per cell keeps the quadrature error far below the solver's.
    for (const q of [-1 / Math.sqrt(3), 1 / Math.sqrt(3)]) {
      const sm = (k + 0.5 + q / 2) / n;
      const lam = expAv(1 - sm, [1, 1]);
      const y = expAv(sm, [1, 1]);
      for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) G[i][j] += (lam[i] * y[j]) / (2 * n);
    }
  }
  return G;
}

export const STIFF: Problem = {
  name: 'stiff linear, 11 output times',
  make: (d) => {
    const { leaf, plain } = scalars(d);
    const A = leaf(stiffMatrix());
    return { y0: plain([1, 1]), params: [A], f: (_t, y) => y.reshape([1, 2]).matmul(A.transpose(0, 1)).reshape([2]) };
  },
  t: Array.from({ length: 11 }, (_, i) => i / 10),
  loss: last,
};

export function expectClose(
  actual: readonly number[] | number,
  expected: readonly number[] | number,
  rel: number,
  abs = 0,
): void {
  const a = typeof actual === 'number' ? [actual] : actual;
  const e = typeof expected === 'number' ? [expected] : expected;
  if (a.length !== e.length) throw new Error(`length ${a.length} != ${e.length}`);
  a.forEach((v, i) => {
    const tol = abs + rel * Math.abs(e[i]);
    if (!(Math.abs(v - e[i]) <= tol))
      throw new Error(
        `element ${i}: got ${v}, expected ${e[i]} (|diff| ${Math.abs(v - e[i]).toExponential(2)} > tol ${tol.toExponential(2)})`,
      );
  });
}
