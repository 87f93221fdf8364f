// Neural ODEs: odeint (backprop through the solver) and odeintAdjoint (constant-memory adjoint gradients).
//
// Usage (`import { ode } from 'dawngrad'`):
//   const Y = await ode.odeint(f, y0, t, { method: 'dopri5', rtol, atol });   // Y: [len(t), ...y0.shape]
//   const Y = await ode.odeintAdjoint(f, y0, t, { params: [W, b], ... });     // same forward values
//   loss.backward();               // cpu; on webgpu the adjoint needs `await loss.backwardAsync()`
//
// - f(t, y) returns dy/dt with y's shape, dtype and device. odeint passes t as a JS number; the adjoint
//   passes a 0-d tensor when t is a tensor that requires grad (so ∂f/∂t can be taken).
// - Both functions are async for every method (uniform API): dopri5 reads one error-ratio number per step
//   attempt (computed on the device; t, h and ratios stay JS doubles), the fixed-grid methods read one
//   number at the end to reject NaN/Inf.
// - Methods: 'dopri5' (default; adaptive Dormand–Prince 5(4), FSAL, dense output), 'euler', 'midpoint',
//   'rk4' (3/8 rule) on the grid t0 + k·stepSize (or the output times when stepSize is omitted).
// - Tolerances: default rtol 1e-7 / atol 1e-9 for float64 states, 1e-5 / 1e-8 for float32 (float32 cannot
//   honour rtol much below 1e-6). Measured float32 (webgpu) vs float64 agreement on the test problems:
//   values and gradients within 3e-4 relative (test/ode-webgpu.test.ts).
// - odeint is differentiated by ordinary backprop through its tensor ops: exact for the discrete solve,
//   memory grows with the number of steps. odeintAdjoint solves the adjoint ODE backwards, one reverse
//   solve per output interval with the state reset to the stored forward value: peak memory independent
//   of the step count, but it is not faster (backward NFE is usually 2–5x the forward's) and its
//   gradients carry the reverse solve's error (adjointRtol/adjointAtol/adjointMethod/adjointOptions,
//   seminorm to leave parameter channels out of error control). List every tensor f reads that needs a
//   gradient in `params`; unused ones get exact zeros.
// - Errors (OpError): non-monotone t, f returning a wrong shape/dtype/device, step-size underflow,
//   non-finite state, maxNumSteps exceeded, unknown method, non-positive tolerances.
// - ode.lastStats(): { method, nfeForward, accepted, rejected, firstStep, nfeBackward, acceptedBackward,
//   rejectedBackward } of the latest solve (dopri5: nfeForward = 2 + 6·(accepted + rejected)).
export { odeint, type OdeintOptions } from './odeint.js';
export type { OdeFunc } from './common.js';
export { odeintAdjoint, type AdjointOptions } from './adjoint.js';
export { lastStats, type OdeStats } from './stats.js';
export type { Method, SolverOptions } from './solve.js';
