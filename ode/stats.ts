// What the last solve cost (ode.lastStats()).
import type { SolveCounters } from './common.js';

export interface OdeStats {
  method: string;
  /** Evaluations of f in the forward solve (dopri5: 2 + 6·(accepted + rejected)). */
  nfeForward: number;
  /** Accepted / rejected steps of the forward solve (fixed grids: steps taken, 0 rejected). */
  accepted: number;
  rejected: number;
  /** dopri5: the first step size of the forward solve (automatic or given); NaN for fixed grids. */
  firstStep: number;
  /**
   * Evaluations in the last adjoint backward (each is one f evaluation plus one vector–Jacobian product,
   * plus one plain f evaluation per output time when time gradients are requested); 0 until one runs.
   */
  nfeBackward: number;
  acceptedBackward: number;
  rejectedBackward: number;
}

let last: OdeStats = {
  method: 'none',
  nfeForward: 0,
  accepted: 0,
  rejected: 0,
  firstStep: NaN,
  nfeBackward: 0,
  acceptedBackward: 0,
  rejectedBackward: 0,
};

/** Counters of the most recent odeint / odeintAdjoint forward and of the most recent adjoint backward. */
export function lastStats(): OdeStats {
  return { ...last };
}

export function setForwardStats(method: string, c: SolveCounters): void {
  last = {
    method,
    nfeForward: c.nfe,
    accepted: c.accepted,
    rejected: c.rejected,
    firstStep: c.firstStep ?? NaN,
    nfeBackward: 0,
    acceptedBackward: 0,
    rejectedBackward: 0,
  };
}

export function setBackwardStats(c: SolveCounters): void {
  last = { ...last, nfeBackward: c.nfe, acceptedBackward: c.accepted, rejectedBackward: c.rejected };
}
