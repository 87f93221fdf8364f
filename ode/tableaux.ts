// Butcher tableaux of the solvers (Dormand–Prince 5(4) with Shampine's dense output; Kutta's 3/8 rule).

/** Dormand–Prince 5(4), FSAL: the 7th stage is f(t + h, y1), reused as the next step's first stage. */
export const DOPRI5 = {
  c: [1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
  /** Row s gives the weights of k1..k(s+1) for stage s+2. The last row equals b (so y1 is that stage's input). */
  a: [
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
  ],
  /** 5th-order weights of k1..k7. */
  b: [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
  /** Shampine's embedded 4th-order weights. */
  bHat: [1951 / 21600, 0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60],
  /** Weights of k1..k7 giving y(t + h/2) for the quartic dense output. */
  cMid: [
    6025192743 / 30085553152 / 2,
    0,
    51252292925 / 65400821598 / 2,
    -2691868925 / 45128329728 / 2,
    187940372067 / 1594534317056 / 2,
    -1776094331 / 19743644256 / 2,
    11237099 / 235043384 / 2,
  ],
  order: 5,
} as const;

/** b − b̂: the local error estimate is h·Σ errW_i k_i. */
export const DOPRI5_ERROR_WEIGHTS = DOPRI5.b.map((b, i) => b - DOPRI5.bHat[i]);

/** Explicit fixed-step tableaux: c, a (lower-triangular rows), b. */
export interface FixedTableau {
  c: readonly number[];
  a: readonly (readonly number[])[];
  b: readonly number[];
}

export const FIXED_TABLEAUX: Record<'euler' | 'midpoint' | 'rk4', FixedTableau> = {
  euler: { c: [0], a: [], b: [1] },
  midpoint: { c: [0, 1 / 2], a: [[1 / 2]], b: [0, 1] },
  // Kutta's 3/8 rule (as torchdiffeq's rk4).
  rk4: { c: [0, 1 / 3, 2 / 3, 1], a: [[1 / 3], [-1 / 3, 1], [1, -1, 1]], b: [1 / 8, 3 / 8, 3 / 8, 1 / 8] },
};
