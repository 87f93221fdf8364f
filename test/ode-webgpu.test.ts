// The same ODE problems on webgpu float32 (default f32 tolerances rtol 1e-5, atol 1e-8) against the
// cpu float64 results: solutions and gradients agree to 3e-4 relative (documented f32 accuracy of the
// solves; the adjoint on webgpu runs through `await loss.backwardAsync()`).
import { describe, expect, it } from 'vitest';
import { ode, tensor } from '../index.js';
import {
  EXPONENTIAL,
  expectClose,
  LOGISTIC,
  MULTI_TIME,
  NON_AUTONOMOUS,
  OSCILLATOR,
  solveAndGrad,
  type Mode,
  type Problem,
} from './ode-helpers.js';

const REL = 3e-4;
const ABS = 1e-5;
// dL/dt0 comes out of the adjoint's time channel by cancellation (here −0.07 against dL/dT ≈ 0.96), so
// in f32 it carries the solve's absolute error: 5.4e-5 was seen on an NVIDIA H200 (2.6e-5 on lavapipe).
const TIME_ABS = 1e-4;

describe('webgpu float32 vs cpu float64', () => {
  const cases: [Mode, Problem, boolean][] = [
    ['backprop', MULTI_TIME, true],
    ['adjoint', MULTI_TIME, true],
    ['adjoint', NON_AUTONOMOUS, true],
    ['adjoint', LOGISTIC, false],
    ['backprop', OSCILLATOR, false],
    ['adjoint', OSCILLATOR, false],
  ];
  it.each(cases.map(([mode, pb, timeGrad]) => ({ name: `${mode}: ${pb.name}`, mode, pb, timeGrad })))(
    '$name',
    async ({ mode, pb, timeGrad }) => {
      const ref = await solveAndGrad(mode, pb, 'cpu', { rtol: 1e-9, atol: 1e-12 }, timeGrad);
      const gpu = await solveAndGrad(mode, pb, 'webgpu', {}, timeGrad);
      expectClose(gpu.y, ref.y, REL, ABS);
      if (ref.gy0) expectClose(gpu.gy0!, ref.gy0, REL, ABS);
      ref.gParams.forEach((g, k) => expectClose(gpu.gParams[k]!, g!, REL, ABS));
      if (timeGrad) expectClose(gpu.gt!, ref.gt!, REL, TIME_ABS);
    },
  );

  it('fixed-step rk4 on webgpu matches cpu to f32 rounding', async () => {
    const ref = await solveAndGrad('backprop', EXPONENTIAL, 'cpu', { method: 'rk4', stepSize: 0.05 });
    const gpu = await solveAndGrad('backprop', EXPONENTIAL, 'webgpu', { method: 'rk4', stepSize: 0.05 });
    expectClose([gpu.loss, gpu.gy0![0], gpu.gParams[0]![0]], [ref.loss, ref.gy0![0], ref.gParams[0]![0]], 1e-5);
  });

  it('loss.backward() on a webgpu adjoint explains that backwardAsync is needed', async () => {
    const a = tensor([0.5], { device: 'webgpu', requiresGrad: true });
    const Y = await ode.odeintAdjoint((_t, y) => y.mul(a), tensor([1], { device: 'webgpu' }), [0, 1], { params: [a] });
    expect(() => Y.sum().backward()).toThrow(/backwardAsync/);
  });
});
