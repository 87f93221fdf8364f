// Neural ODEs: odeint (backprop through the solver) and odeintAdjoint (constant-memory adjoint gradients).
export { odeint, type OdeFunc, type OdeintOptions } from './odeint.js';
export { lastStats, type OdeStats } from './stats.js';
export type { Method, SolverOptions } from './solve.js';
export { odeintAdjoint, type AdjointOptions } from './adjoint.js';
