// odeint on the cpu float64 backend: fixed-step exact values, dopri5 internals (stability polynomial,
// first step, NFE accounting, dense output), closed-form oracles by backprop through the solver, errors.
import { describe, expect, it } from 'vitest';
import { ode, OpError, tensor, type Tensor } from '../index.js';
import {
  AFFINE,
  EXPONENTIAL,
  expectClose,
  LOGISTIC,
  MULTI_TIME,
  NON_AUTONOMOUS,
  OSCILLATOR,
  solveAndGrad,
} from './ode-helpers.js';

const f64 = (v: number | number[]) => tensor(v, { dtype: 'float64', device: 'cpu' });
const values = async (Y: Tensor) => Array.from(await Y.data());
const TIGHT = { rtol: 1e-10, atol: 1e-12 };

describe('fixed-step methods', () => {
  it.each([
    ['euler', 1.1 ** 10],
    ['midpoint', 1.105 ** 10],
    ['rk4', (1 + 0.1 + 0.1 ** 2 / 2 + 0.1 ** 3 / 6 + 0.1 ** 4 / 24) ** 10],
  ] as const)("%s on y' = y, h = 0.1, 10 steps", async (method, exact) => {
    const Y = await ode.odeint((_t, y) => y, f64([1]), [0, 1], { method, stepSize: 0.1 });
    expectClose((await values(Y))[1], exact, 1e-12);
    expect(ode.lastStats()).toMatchObject({ method, accepted: 10, rejected: 0 });
    expect(ode.lastStats().nfeForward).toBe(10 * { euler: 1, midpoint: 2, rk4: 4 }[method]);
  });

  it('interpolates linearly between grid points and forces the last grid point to t1', async () => {
    const Y = await ode.odeint((_t, y) => y, f64([1]), [0, 0.25, 0.37], { method: 'euler', stepSize: 0.1 });
    const [, y25, y37] = await values(Y);
    expectClose(y25, 1.1 ** 2 + 0.5 * (1.1 ** 3 - 1.1 ** 2), 1e-12);
    // Grid 0, 0.1, 0.2, 0.3, 0.37: the last step is 0.07 long.
    expectClose(y37, 1.1 ** 3 * 1.07, 1e-12);
  });

  it('steps between the output times when no stepSize is given', async () => {
    const Y = await ode.odeint((_t, y) => y, f64([1]), [0, 0.5, 1], { method: 'euler' });
    expectClose(await values(Y), [1, 1.5, 2.25], 1e-14);
  });
});

describe('dopri5', () => {
  it("one step multiplies y' = λy by its stability polynomial", async () => {
    for (const z of [-2.5, -0.7, 0.3, 1.2]) {
      const h = 0.5;
      const Y = await ode.odeint((_t, y) => y.mul(z / h), f64([1]), [0, h], { firstStep: h, rtol: 1e3, atol: 1e3 });
      expect(ode.lastStats()).toMatchObject({ accepted: 1, rejected: 0, nfeForward: 7 });
      const p = 1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 24 + z ** 5 / 120 + z ** 6 / 600;
      expectClose((await values(Y))[1], p, 1e-13);
    }
  });

  it('rk4 one step gives the 4th-order Taylor polynomial', async () => {
    const z = -1.3;
    const Y = await ode.odeint((_t, y) => y.mul(z), f64([1]), [0, 1], { method: 'rk4' });
    expectClose((await values(Y))[1], 1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 24, 1e-14);
  });

  it('picks the Hairer–Nørsett–Wanner first step and needs 2 + 6·steps evaluations', async () => {
    const Y = await ode.odeint((_t, y) => y.mul(0.5), f64([1]), [0, 1]);
    const s = ode.lastStats();
    expectClose(s.firstStep, 0.01824191, 1e-6);
    expect(s).toMatchObject({ accepted: 5, rejected: 0, nfeForward: 32 });
    expectClose((await values(Y))[1], Math.exp(0.5), 1e-7);
  });

  it('counts rejected attempts in the NFE (2 + 6·(accepted + rejected))', async () => {
    await ode.odeint((_t, y) => y.mul(-40), f64([1]), [0, 1], { firstStep: 0.5, rtol: 1e-6, atol: 1e-9 });
    const s = ode.lastStats();
    expect(s.rejected).toBeGreaterThan(0);
    // firstStep given: no selection evaluation, so 1 + 6·attempts.
    expect(s.nfeForward).toBe(1 + 6 * (s.accepted + s.rejected));
    await ode.odeint((_t, y) => y.mul(y).neg(), f64([3]), [0, 0.001, 5], { rtol: 1e-4, atol: 1e-6 });
    const s2 = ode.lastStats();
    expect(s2.nfeForward).toBe(2 + 6 * (s2.accepted + s2.rejected));
  });

  it('reads intermediate outputs from the dense output (4th-order accurate between steps)', async () => {
    const t = Array.from({ length: 161 }, (_, i) => i / 40);
    const Y = await ode.odeint((_t, y) => y.mul(-0.7), f64([1.5]), t, { rtol: 1e-9, atol: 1e-12 });
    const nSteps = ode.lastStats().accepted;
    expect(nSteps).toBeLessThan(80); // most outputs fall strictly inside steps
    expectClose(
      await values(Y),
      t.map((s) => 1.5 * Math.exp(-0.7 * s)),
      1e-8,
    );
  });

  it('integrates backwards in time when t decreases', async () => {
    const Y = await ode.odeint((_t, y) => y.mul(0.5), f64([2]), [1, 0.5, -1], TIGHT);
    expectClose(await values(Y), [2, 2 * Math.exp(-0.25), 2 * Math.exp(-1)], 1e-9);
  });

  it('keeps any state shape and takes t as a 1-D tensor', async () => {
    const y0 = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { dtype: 'float64', device: 'cpu' },
    );
    const Y = await ode.odeint((_t, y) => y.neg(), y0, f64([0, 1]), TIGHT);
    expect(Y.shape).toEqual([2, 2, 2]);
    expectClose(
      (await values(Y)).slice(4),
      [1, 2, 3, 4].map((v) => v * Math.exp(-1)),
      1e-9,
    );
  });
});

describe('odeint backprop through the solver matches the closed forms', () => {
  it("y' = a·y: y(T), dy/dy0, dy/da, dL/dT", async () => {
    const r = await solveAndGrad('backprop', EXPONENTIAL, 'cpu', TIGHT, true);
    const e = Math.exp(0.5);
    expectClose(r.loss, e, 1e-9);
    expectClose(r.gy0!, [e], 1e-9);
    expectClose(r.gParams[0]!, [e], 1e-9);
    expectClose(r.gt!, [-0.5 * e, 0.5 * e], 1e-9);
  });

  it('multiple output times: dL/dy0, dL/da, and Σ dL/dt_i = 0 for autonomous f', async () => {
    const r = await solveAndGrad('backprop', MULTI_TIME, 'cpu', TIGHT, true);
    expectClose(r.gy0!, [5.010509805], 1e-9);
    expectClose(r.gParams[0]!, [12.408050994], 1e-9);
    expect(Math.abs(r.gt!.reduce((s, v) => s + v, 0))).toBeLessThan(1e-9);
  });

  it("affine y' = −k y + b", async () => {
    const r = await solveAndGrad('backprop', AFFINE, 'cpu', TIGHT);
    expectClose([r.gParams[0]![0], r.gParams[1]![0]], [-1.2757591, 0.92917403], 1e-8);
  });

  it('logistic growth', async () => {
    const r = await solveAndGrad('backprop', LOGISTIC, 'cpu', TIGHT);
    expectClose(r.loss, 9.550220054, 1e-9);
    expectClose([r.gy0![0], r.gParams[0]![0], r.gParams[1]![0]], [0.904315255, 1.718198985, 0.909806243], 1e-8);
  });

  it('harmonic oscillator', async () => {
    const r = await solveAndGrad('backprop', OSCILLATOR, 'cpu', TIGHT);
    expectClose(r.loss, 0.890316412, 1e-8);
    expectClose(r.gParams[0]!, [1.593301147], 1e-8);
  });

  it("non-autonomous y' = cos(ωt) with time gradients", async () => {
    const r = await solveAndGrad('backprop', NON_AUTONOMOUS, 'cpu', TIGHT, true);
    expectClose(r.gParams[0]!, [0.770202934], 1e-8);
    expectClose(r.gt!, [-0.070737202, 0.960170287], 1e-8);
  });
});

describe('odeint errors', () => {
  const y0 = () => f64([1]);
  it('rejects non-monotone t', async () => {
    await expect(ode.odeint((_t, y) => y, y0(), [0, 1, 0.5])).rejects.toThrow(
      /strictly increasing or strictly decreasing.*t\[1\]=1 and t\[2\]=0.5/,
    );
    await expect(ode.odeint((_t, y) => y, y0(), [0, 0])).rejects.toThrow(OpError);
  });
  it('rejects f returning the wrong shape', async () => {
    await expect(ode.odeint((_t, y) => y.reshape([1, 1]), y0(), [0, 1])).rejects.toThrow(
      /returned shape \[1, 1\] but the state has shape \[1\]/,
    );
  });
  it('reports maxNumSteps exceeded', async () => {
    await expect(ode.odeint((_t, y) => y.mul(-1), y0(), [0, 100], { maxNumSteps: 5 })).rejects.toThrow(
      /maxNumSteps=5 exceeded/,
    );
  });
  it('reports step-size underflow at a blow-up', async () => {
    // y' = y², y(0) = 1 blows up at t = 1.
    await expect(ode.odeint((_t, y) => y.square(), y0(), [0, 2])).rejects.toThrow(
      /step size underflow|non-finite state/,
    );
  });
  it('reports a non-finite state', async () => {
    await expect(ode.odeint((_t, y) => y.log(), f64([-1]), [0, 1])).rejects.toThrow(/non-finite state/);
    await expect(ode.odeint((_t, y) => y.log(), f64([-1]), [0, 1], { method: 'rk4' })).rejects.toThrow(
      /non-finite state/,
    );
  });
  it('rejects unknown methods and bad options', async () => {
    await expect(ode.odeint((_t, y) => y, y0(), [0, 1], { method: 'rk45' as 'rk4' })).rejects.toThrow(
      /unknown method 'rk45'/,
    );
    await expect(ode.odeint((_t, y) => y, y0(), [0, 1], { rtol: -1 })).rejects.toThrow(/rtol must be positive/);
  });
});
