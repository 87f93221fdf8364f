// odeintAdjoint on the cpu float64 backend: closed-form oracles, agreement with backprop through the
// same dopri5 solve, the stiff 11-output-time check, unused params, seminorm, and memory that does not
// grow with the number of solver steps (while backprop's does).
import { describe, expect, it } from 'vitest';
import { memory, ode, randn, manualSeed, resetPeak, scope, tensor, type Tensor } from '../index.js';
import {
  AFFINE,
  EXPONENTIAL,
  expectClose,
  LOGISTIC,
  MULTI_TIME,
  NON_AUTONOMOUS,
  OSCILLATOR,
  solveAndGrad,
  STIFF,
  stiffExactGrad,
  type Problem,
} from './ode-helpers.js';

const TIGHT = { rtol: 1e-10, atol: 1e-12 };
const f64 = (v: number[] | number[][], requiresGrad = false) =>
  tensor(v, { dtype: 'float64', device: 'cpu', requiresGrad });

describe('odeintAdjoint matches the closed forms', () => {
  it("y' = a·y: dy/dy0, dy/da, dL/dT, dL/dt0", async () => {
    const r = await solveAndGrad('adjoint', EXPONENTIAL, 'cpu', TIGHT, true);
    const e = Math.exp(0.5);
    expectClose(r.loss, e, 1e-9);
    expectClose([r.gy0![0], r.gParams[0]![0]], [e, e], 1e-8);
    expectClose(r.gt!, [-0.5 * e, 0.5 * e], 1e-8);
    expect(r.stats.nfeBackward).toBeGreaterThan(0);
  });

  it('multiple output times', async () => {
    const r = await solveAndGrad('adjoint', MULTI_TIME, 'cpu', TIGHT, true);
    expectClose(r.gy0!, [5.010509805], 1e-8);
    expectClose(r.gParams[0]!, [12.408050994], 1e-8);
    expect(Math.abs(r.gt!.reduce((s, v) => s + v, 0))).toBeLessThan(1e-8);
  });

  it('affine, logistic, oscillator', async () => {
    const aff = await solveAndGrad('adjoint', AFFINE, 'cpu', TIGHT);
    expectClose([aff.gParams[0]![0], aff.gParams[1]![0]], [-1.2757591, 0.92917403], 1e-7);
    const log = await solveAndGrad('adjoint', LOGISTIC, 'cpu', TIGHT);
    expectClose([log.gy0![0], log.gParams[0]![0], log.gParams[1]![0]], [0.904315255, 1.718198985, 0.909806243], 1e-7);
    const osc = await solveAndGrad('adjoint', OSCILLATOR, 'cpu', TIGHT);
    expectClose(osc.gParams[0]!, [1.593301147], 1e-7);
  });

  it('non-autonomous: the ∂f/∂t channel gives dL/dt0', async () => {
    const r = await solveAndGrad('adjoint', NON_AUTONOMOUS, 'cpu', TIGHT, true);
    expectClose(r.gParams[0]!, [0.770202934], 1e-7);
    expectClose(r.gt!, [-0.070737202, 0.960170287], 1e-7);
  });

  it("stiff y' = A y with 11 output times gives the exact dL/dA", async () => {
    const r = await solveAndGrad('adjoint', STIFF, 'cpu', { rtol: 1e-9, atol: 1e-12 });
    const exact = stiffExactGrad().flat();
    expect(Math.abs(exact[0])).toBeGreaterThan(0.4);
    expectClose(r.gParams[0]!, exact, 0, 1e-7);
  });
});

describe('adjoint vs backprop through the same dopri5 solve (rtol 1e-9, atol 1e-12)', () => {
  const opts = { rtol: 1e-9, atol: 1e-12 };
  const cases: [Problem, number, boolean][] = [
    [EXPONENTIAL, 1e-8, true],
    [MULTI_TIME, 1e-8, true],
    [NON_AUTONOMOUS, 1e-7, true],
    [LOGISTIC, 1e-6, false],
    [OSCILLATOR, 1e-6, false],
    [STIFF, 1e-5, false],
    [{ ...MULTI_TIME, name: 'multi-time, decreasing t', t: [...MULTI_TIME.t].reverse() }, 1e-8, true],
  ];
  it.each(cases.map(([pb, tol, timeGrad]) => ({ name: pb.name, pb, tol, timeGrad })))(
    '$name',
    async ({ pb, tol, timeGrad }) => {
      const bp = await solveAndGrad('backprop', pb, 'cpu', opts, timeGrad);
      const adj = await solveAndGrad('adjoint', pb, 'cpu', opts, timeGrad);
      expect(adj.y).toEqual(bp.y); // the same forward solve
      if (bp.gy0) expectClose(adj.gy0!, bp.gy0, tol, tol);
      bp.gParams.forEach((g, k) => expectClose(adj.gParams[k]!, g!, tol, tol));
      if (timeGrad) expectClose(adj.gt!, bp.gt!, tol, tol);
    },
  );

  it('also with fixed-step rk4 forward and backward solves', async () => {
    const o = { method: 'rk4' as const, stepSize: 0.01 };
    const bp = await solveAndGrad('backprop', LOGISTIC, 'cpu', o);
    const adj = await solveAndGrad('adjoint', LOGISTIC, 'cpu', o);
    expectClose(
      [adj.gy0![0], adj.gParams[0]![0], adj.gParams[1]![0]],
      [bp.gy0![0], bp.gParams[0]![0], bp.gParams[1]![0]],
      1e-6,
    );
  });
});

describe('odeintAdjoint details', () => {
  it('gives unused params exact zeros and params that need no grad nothing', async () => {
    const a = f64([0.3], true);
    const unused = f64(
      [
        [1, 2],
        [3, 4],
      ],
      true,
    );
    const frozen = f64([5]);
    const y0 = f64([1], true);
    const Y = await ode.odeintAdjoint((_t, y) => y.mul(a), y0, [0, 1], { params: [a, unused, frozen] });
    Y.sum().backward();
    expect(Array.from(await unused.grad!.data())).toEqual([0, 0, 0, 0]);
    expect(frozen.grad).toBeNull();
    expectClose(Array.from(await a.grad!.data()), [Math.exp(0.3)], 1e-6);
  });

  it('accepts an object with parameters()', async () => {
    const w = f64([-0.4], true);
    const model = { parameters: () => [w] };
    const Y = await ode.odeintAdjoint((_t, y) => y.mul(w), f64([2]), [0, 2], { ...TIGHT, params: model });
    Y.slice(0, 1, 2).sum().backward();
    expectClose(Array.from(await w.grad!.data()), [2 * 2 * Math.exp(-0.8)], 1e-8);
  });

  it('seminorm needs fewer backward evaluations and stays accurate', async () => {
    const o = { rtol: 1e-7, atol: 1e-9 };
    const full = await solveAndGrad('adjoint', LOGISTIC, 'cpu', o);
    const semi = await solveAndGrad('adjoint', LOGISTIC, 'cpu', { ...o, seminorm: true });
    expect(semi.stats.nfeBackward).toBeLessThan(full.stats.nfeBackward);
    expectClose([semi.gParams[0]![0], semi.gParams[1]![0]], [1.718198985, 0.909806243], 1e-5);
  });

  it('adjoint tolerances and method are separate options', async () => {
    const loose = await solveAndGrad('adjoint', LOGISTIC, 'cpu', { ...TIGHT, adjointRtol: 1e-4, adjointAtol: 1e-6 });
    const tight = await solveAndGrad('adjoint', LOGISTIC, 'cpu', TIGHT);
    expect(loose.stats.nfeForward).toBe(tight.stats.nfeForward);
    expect(loose.stats.nfeBackward).toBeLessThan(tight.stats.nfeBackward / 3);
    const rk = await solveAndGrad('adjoint', LOGISTIC, 'cpu', {
      ...TIGHT,
      adjointMethod: 'rk4',
      adjointOptions: { stepSize: 0.01 },
    });
    expect(rk.stats.nfeBackward).toBe(400 * 4);
    expectClose(rk.gParams[0]!, [1.718198985], 1e-6);
  });

  it('frees everything it allocates', async () => {
    const before = memory();
    await scope(async () => {
      const r = await solveAndGrad('adjoint', OSCILLATOR, 'cpu', { rtol: 1e-6, atol: 1e-8 }, true);
      expect(r.gParams[0]![0]).toBeCloseTo(1.593301147, 4);
    });
    const after = memory();
    expect(after.liveTensors).toBe(before.liveTensors);
    expect(after.liveBytes).toBe(before.liveBytes);
  });
});

describe('memory', () => {
  // y' = tanh(y·W) on a batch of 64 two-dimensional states.
  function setup() {
    manualSeed(7);
    const W = randn([8, 8], { dtype: 'float64', device: 'cpu' }).mul(0.5).detach();
    W.requiresGrad = true;
    const y0 = randn([64, 8], { dtype: 'float64', device: 'cpu' });
    return { W, y0, f: (_t: number | Tensor, y: Tensor) => y.matmul(W).tanh() };
  }
  const t = [0, 1, 2];

  async function adjointBackwardPeak(tol: number) {
    const { W, y0, f } = setup();
    const Y = await ode.odeintAdjoint(f, y0, t, { rtol: tol, atol: tol, params: [W] });
    const L = Y.square().sum();
    resetPeak();
    const base = memory().liveBytes;
    L.backward();
    const peak = memory().peakBytes - base;
    const nfe = ode.lastStats().nfeBackward;
    console.log(`adjoint tol ${tol}: backward NFE ${nfe}, backward peak ${peak} B`);
    for (const x of [W, y0, Y, L]) x.dispose();
    return { peak, nfe };
  }

  async function backpropGraphBytes(tol: number) {
    const { W, y0, f } = setup();
    const base = memory().liveBytes;
    const Y = await ode.odeint(f, y0, t, { rtol: tol, atol: tol });
    const held = memory().liveBytes - base;
    const nfe = ode.lastStats().nfeForward;
    console.log(`backprop tol ${tol}: forward NFE ${nfe}, graph holds ${held} B`);
    const L = Y.square().sum();
    L.backward();
    for (const x of [W, y0, Y, L]) x.dispose();
    return { held, nfe };
  }

  it("adjoint backward peak does not grow with the number of steps; backprop's graph does", async () => {
    const loose = await adjointBackwardPeak(1e-3);
    const tight = await adjointBackwardPeak(1e-9);
    expect(tight.nfe).toBeGreaterThan(5 * loose.nfe);
    expect(Math.abs(tight.peak - loose.peak) / loose.peak).toBeLessThan(0.1);

    const bpLoose = await backpropGraphBytes(1e-3);
    const bpTight = await backpropGraphBytes(1e-9);
    expect(bpTight.nfe).toBeGreaterThan(5 * bpLoose.nfe);
    expect(bpTight.held).toBeGreaterThan(5 * bpLoose.held);
    // And at the tight tolerance backprop holds far more than the adjoint ever needs (4.3× since add/sub
    // rules save nothing: backprop's graph went from 5.0 MB to 1.3 MB here; the adjoint peak is 0.3 MB).
    expect(bpTight.held).toBeGreaterThan(4 * tight.peak);
  });
});
