// CLEX's fused solve (models/clex/solve.ts): the op record (its float64 cpu kernels against finite
// differences, its webgpu variants against them), the device solve against the general float64 cpu
// solve (θ(t) and the gradients to W_up and W_down, for several t, both activations, the rk4 and dopri5
// settings), and a CLEX training step on webgpu that reads nothing back.
import { describe, expect, it } from 'vitest';
import { manualSeed, memory, models, nn, optim, scope, seededUniform, tensor, testing } from '../index.js';
import { withConfig } from '../core/config.js';
import { registeredOps, variantUsage } from '../core/op.js';
import { adaptiveRows, adaptiveSolveOnHost, solveOnHost, type HostWeights } from '../models/clex/dynamics.js';
import { solveFrequencies, type ClexSolveSpec } from '../models/clex/solve.js';
import { ids, values } from './models-helpers.js';

type Act = 'tanh' | 'silu';
type Method = 'rk4' | 'dopri5';

/**
 * A CLEX module on the given device with seeded weights (W_down random so the learned part matters). W_down's
 * std 0.6/√(λd) gives the learned drift the same size at every d (at d = 16, std 0.3 drives silu's z(8) to
 * ~47, θ ~ 1e20, where float32 steps lose more than the 2e-5 the test asks for).
 */
function clexOn(
  device: 'cpu' | 'webgpu',
  act: Act,
  method: Method,
  dim: number,
  ode_device: 'cpu' | 'device' = 'device',
): models.CLEX {
  manualSeed(5);
  const scaling = models.normalizeRopeScaling('test', {
    type: 'clex',
    max_factor: 8,
    act,
    ode_method: method,
    time_dt: 0.01,
    param_factor: 1,
    ode_device,
  })!;
  const clex = new models.CLEX({
    dim,
    base: 10000,
    maxPositionEmbeddings: 16,
    scaling,
    device,
    dtype: device === 'cpu' ? 'float64' : 'float32',
  });
  nn.init.normal(clex.proj_func.ode_down_proj, 0, 0.6 / Math.sqrt(dim));
  return clex;
}

/** Loads one CLEX module's weights into another (float64 cpu → float32 webgpu). */
async function copyParams(from: models.CLEX, to: models.CLEX): Promise<void> {
  const sd = Object.fromEntries(
    await Promise.all(
      Object.entries(from.stateDict()).map(
        async ([k, p]) =>
          [
            k,
            tensor(Float64Array.from(await p.data()), {
              shape: p.shape,
              device: to.proj_func.ode_up_proj.device,
              dtype: to.proj_func.ode_up_proj.dtype,
            }),
          ] as const,
      ),
    ),
  );
  to.loadStateDict(sd);
  for (const t of Object.values(sd)) t.dispose();
}

/** θ(t), dL/dW_up, dL/dW_down for L = Σ w·log θ (w fixed, mixed signs). */
async function solveWithGrads(
  clex: models.CLEX,
  t: number,
): Promise<{ theta: number[]; up: number[]; down: number[] }> {
  const n = clex.dim / 2;
  const device = clex.proj_func.ode_up_proj.device;
  const w = tensor(
    Float64Array.from({ length: n }, (_, i) => ((i * 7) % 5) - 2 + 0.25),
    { device, dtype: clex.proj_func.ode_up_proj.dtype },
  );
  const theta = await scope(async () => {
    const th = await clex.frequencies(t);
    await th.log().mul(w).sum().backwardAsync();
    return values(th);
  });
  const out = {
    theta,
    up: await values(clex.proj_func.ode_up_proj.grad!),
    down: await values(clex.proj_func.ode_down_proj.grad!),
  };
  clex.zeroGrad();
  return out;
}

/** |a − b| ≤ tol·max(|b|, floor·max|b|) elementwise (relative, with an absolute floor for tiny entries). */
function expectClose(a: number[], b: number[], tol: number, what: string, floor = 1e-2): void {
  expect(a.length).toBe(b.length);
  const scale = Math.max(...b.map(Math.abs));
  expect(scale, what).toBeGreaterThan(0);
  b.forEach((v, i) =>
    expect(Math.abs(a[i] - v), `${what}[${i}]: ${a[i]} vs ${v}`).toBeLessThanOrEqual(
      tol * Math.max(Math.abs(v), floor * scale),
    ),
  );
}

/** Runs fn with the CLEX kernels forced to a variant, and checks that variant ran (forward and backward). */
async function withVariant<T>(variant: 'lanes' | 'single', fn: () => Promise<T>): Promise<T> {
  const runs = () => ['clexSolve', 'clexSolveBackward'].map((k) => variantUsage().get(`${k}:${variant}`) ?? 0);
  const before = runs();
  const out = await withConfig({ variants: { clex: variant } }, fn);
  runs().forEach((n, i) => expect(n, `${variant} ran`).toBeGreaterThan(before[i]));
  return out;
}

describe('the fused CLEX solve op', () => {
  const spec = (act: Act, dim: number): ClexSolveSpec => ({
    dim,
    act,
    timeDt: 0.25,
    logBase: Math.log(10000),
    logNtkBase: Math.log(10000),
  });
  /** Seeded W_up [d/2, λd], W_down [λd, d/2] (W_down large enough that the learned drift matters). */
  const weights = (dim: number, hidden: number) => {
    manualSeed(3);
    const opts = { device: 'cpu' as const, dtype: 'float64' as const };
    return [
      nn.init.uniform(tensor(new Float64Array((dim / 2) * hidden), { ...opts, shape: [dim / 2, hidden] }), -0.4, 0.4),
      nn.init.normal(tensor(new Float64Array((hidden * dim) / 2), { ...opts, shape: [hidden, dim / 2] }), 0, 0.3),
    ];
  };
  const tolerance = registeredOps().get('clexSolve')!.tolerance;

  it.each(['tanh', 'silu'] as const)(
    '%s: float64 cpu kernels against finite differences (t = 3.1, the last step shorter)',
    (act) => {
      const [up, down] = weights(8, 8);
      const r = testing.gradcheck((u, w) => solveFrequencies(u, w, spec(act, 8), 3.1), [up, down], tolerance.float64);
      expect(r.ok, r.message).toBe(true);
    },
  );

  it.each(['lanes', 'single'] as const)(
    'webgpu variant %s against the float64 cpu kernels (tanh, rotary dim 8, param_factor 2)',
    async (variant) => {
      const [up, down] = weights(8, 16);
      const r = await withVariant(variant, () =>
        testing.gradcheckDevices((u, w) => solveFrequencies(u, w, spec('tanh', 8), 4), [up, down], tolerance.float32),
      );
      expect(r.ok, r.message).toBe(true);
    },
  );

  it.each(['lanes', 'single'] as const)(
    'under step control: webgpu variant %s against the float64 cpu kernels (tanh, rotary dim 8, param_factor 2)',
    async (variant) => {
      const [up, down] = weights(8, 16);
      const controlled = { ...spec('tanh', 8), timeDt: 0.01, stepTolerance: 1e-7 };
      const r = await withVariant(variant, () =>
        testing.gradcheckDevices((u, w) => solveFrequencies(u, w, controlled, 4), [up, down], tolerance.float32),
      );
      expect(r.ok, r.message).toBe(true);
    },
  );

  it('rejects weights that do not fit, naming them', () => {
    const [up, down] = weights(8, 8);
    expect(() => solveFrequencies(up, down.transpose(0, 1), spec('tanh', 8), 2)).toThrow(
      /clexSolve: W_up must be \[4, λd\] and W_down \[λd, 4\]/,
    );
    expect(() => solveFrequencies(up, down, spec('tanh', 8), 0.5)).toThrow(/clexSolve: t must be ≥ 1, got 0.5/);
    expect(() => solveFrequencies(up, down.astype('float32'), spec('tanh', 8), 2)).toThrow(/one dtype on one device/);
  });
});

describe('the fused CLEX solve on webgpu matches the float64 cpu solve', () => {
  it.each([
    ['tanh', 'rk4'],
    ['silu', 'rk4'],
    ['tanh', 'dopri5'],
    ['silu', 'dopri5'],
  ] as const)(
    "%s, %s: θ(t) and dW_up, dW_down at t = 2, 5, 8 (rotary dim 16, the main job's head)",
    async (act, method) => {
      const dim = 16;
      const cpu = clexOn('cpu', act, method, dim);
      const gpu = clexOn('webgpu', act, method, dim);
      await copyParams(cpu, gpu);
      expect(gpu.solvesOnDevice).toBe(true);
      for (const t of [2, 5, 8]) {
        const [ref, dev] = [await solveWithGrads(cpu, t), await solveWithGrads(gpu, t)];
        expectClose(dev.theta, ref.theta, 2e-5, `θ(${t})`);
        expectClose(dev.up, ref.up, 2e-3, `dW_up(${t})`);
        expectClose(dev.down, ref.down, 2e-3, `dW_down(${t})`);
      }
    },
  );

  it('one invocation striding over every loop gives what one lane per unit gives (rotary dim 8, param_factor 2)', async () => {
    const make = () => {
      manualSeed(5);
      const scaling = models.normalizeRopeScaling('test', {
        type: 'clex',
        max_factor: 8,
        act: 'silu',
        ode_method: 'rk4',
        time_dt: 0.01,
        param_factor: 2,
      })!;
      const clex = new models.CLEX({ dim: 8, base: 10000, maxPositionEmbeddings: 16, scaling, device: 'webgpu' });
      nn.init.normal(clex.proj_func.ode_down_proj, 0, 0.3);
      return clex;
    };
    const lanes = await withVariant('lanes', () => solveWithGrads(make(), 6));
    const one = await withVariant('single', () => solveWithGrads(make(), 6));
    expectClose(one.theta, lanes.theta, 1e-6, 'θ(6)');
    expectClose(one.up, lanes.up, 1e-4, 'dW_up(6)');
    expectClose(one.down, lanes.down, 1e-4, 'dW_down(6)');
  });
});

describe('the step-controlled device solve (the dopri5 setting) against the float64 reference', () => {
  it.each(['tanh', 'silu'] as const)(
    '%s: θ(t) within 1e-5 relative and dW within 1e-4 of float64 rk4 at time_dt 0.01, t = 2, 5, 8 (rotary dim 16)',
    async (act) => {
      // Measured: θ within 4e-7–8e-6, where float32 on the reference grid itself is within 1e-6–4e-5.
      const ref = clexOn('cpu', act, 'rk4', 16);
      const gpu = clexOn('webgpu', act, 'dopri5', 16);
      await copyParams(ref, gpu);
      for (const t of [2, 5, 8]) {
        const [r, d] = [await solveWithGrads(ref, t), await solveWithGrads(gpu, t)];
        expectClose(d.theta, r.theta, 1e-5, `θ(${t})`);
        expectClose(d.up, r.up, 1e-4, `dW_up(${t})`);
        expectClose(d.down, r.down, 1e-4, `dW_down(${t})`);
      }
    },
  );

  it('reaches t = 16 in a thirtieth of the reference grid’s 1500 steps, within 1e-6 of it (float64)', () => {
    const n = 8,
      m = 16;
    const next = seededUniform(11);
    const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
    const weights: HostWeights = {
      up: Float64Array.from({ length: n * m }, () => (2 * next() - 1) / Math.sqrt(m)),
      upOff: 0,
      down: Float64Array.from({ length: m * n }, () => 0.15 * normal()),
      downOff: 0,
      n,
      m,
      act: 'tanh',
    };
    const solve = { weights, logBase: Math.log(10000), logNtkBase: Math.log(10000) };
    const grid = [...Array.from({ length: 1500 }, (_, k) => 1 + k * 0.01), 16];
    const ref = new Float64Array(n);
    solveOnHost({ ...solve, grid }, new Float64Array(grid.length * n), ref);
    const rows = adaptiveRows(16, 0.01);
    const [traj, times, theta] = [new Float64Array(rows * n), new Float64Array(rows), new Float64Array(n)];
    const steps = adaptiveSolveOnHost(solve, 16, { tol: 1e-7, hMin: 0.01 }, traj, times, theta);
    expect(steps).toBeLessThanOrEqual(50);
    expect(times[0]).toBe(1);
    expect(times[steps]).toBe(16);
    for (let k = 0; k < steps; k++) expect(times[k + 1] - times[k]).toBeGreaterThan(0);
    theta.forEach((v, i) => expect(Math.abs(v - ref[i]), `θ[${i}]`).toBeLessThanOrEqual(1e-6 * ref[i]));
  });
});

describe('the fused CLEX solve rejects', () => {
  it('sizes whose workgroup arrays exceed what WebGPU guarantees, naming the size and the cpu option', async () => {
    const scaling = models.normalizeRopeScaling('test', { type: 'clex', max_factor: 4, param_factor: 4 })!;
    const clex = new models.CLEX({ dim: 256, base: 10000, maxPositionEmbeddings: 16, scaling, device: 'webgpu' });
    await expect(clex.frequencies(2)).rejects.toThrow(
      /clexSolve: rotary dim 256 with 1024 hidden units needs \d+ bytes of workgroup memory.*ode_device 'cpu'/,
    );
    clex.dispose();
  });
});

describe('CLEX training on webgpu with the device solve', () => {
  it('is the default: θ(t) is one dispatch, its gradient one more, with no readback or submit', async () => {
    const scaling = models.normalizeRopeScaling('test', { type: 'clex', max_factor: 8 })!;
    expect(scaling.ode_device).toBe('device');
    manualSeed(2);
    const clex = new models.CLEX({ dim: 16, base: 10000, maxPositionEmbeddings: 16, scaling, device: 'webgpu' });
    expect(clex.solvesOnDevice).toBe(true);
    const g = tensor(
      Float32Array.from({ length: 8 }, (_, i) => i - 3.5),
      { device: 'webgpu' },
    );
    await scope(async () => (await clex.frequencies(7)).backward(g)); // compiles the pipelines
    clex.zeroGrad();
    await scope(async () => {
      const before = memory();
      const theta = await clex.frequencies(7);
      const solved = memory();
      theta.backward(g);
      const after = memory();
      expect([solved.dispatches - before.dispatches, after.dispatches - solved.dispatches]).toEqual([1, 1]);
      expect([after.readbacks - before.readbacks, after.submits - before.submits]).toEqual([0, 0]);
    });
    expect(clex.proj_func.ode_up_proj.grad).toBeTruthy();
    expect(clex.proj_func.ode_down_proj.grad).toBeTruthy();
    g.dispose();
    clex.dispose();
  });

  it('a training step at t > 1 reads nothing back, submits nothing, needs no backwardAsync, and trains the ODE weights', async () => {
    manualSeed(1);
    const model = new models.LlamaForCausalLM(
      {
        vocab_size: 11,
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        max_position_embeddings: 8,
        rope_scaling: { type: 'clex', max_factor: 4, ode_method: 'rk4', time_dt: 0.1 },
      },
      { device: 'webgpu' },
    );
    expect(model.clex!.solvesOnDevice).toBe(true);
    const x = ids([Array.from({ length: 8 }, (_, i) => (i * 3 + 1) % 11)], 'webgpu');
    const opt = new optim.AdamW(models.clexParamGroups(model, { lr: 1e-2 }), { lr: 1e-2 });
    // A seed whose draw has t > 1 (the ODE takes part).
    let seed = 0;
    while ((manualSeed(seed), model.clex!.sample(8).t) === 1) seed++;
    const step = () =>
      scope(async () => {
        manualSeed(seed);
        const { loss } = await model.forward(x, { labels: x });
        loss!.backward(); // synchronous: nothing in the graph reads device values
        models.clipClexGradNorm(model, 1.0);
        opt.step();
        opt.zeroGrad();
      });
    await step(); // compiles the pipelines
    const before = memory();
    await step();
    await step();
    const after = memory();
    expect(after.readbacks - before.readbacks).toBe(0);
    expect(after.submits - before.submits).toBe(0);
    console.log(
      `CLEX step on the device solve: ${(after.dispatches - before.dispatches) / 2} dispatches, ${(after.submits - before.submits) / 2} submits, 0 readbacks per step`,
    );
    expect(Math.max(...(await values(model.clex!.proj_func.ode_down_proj)).map(Math.abs))).toBeGreaterThan(0);
    opt.dispose();
    model.dispose();
  });
});

describe('the dispatches a CLEX training step adds (webgpu)', () => {
  it('at most 4 over plain RoPE: the solve and its gradient, one add per extra layer (dθ); none for the ODE group in clipping or AdamW', async () => {
    const layers = 2;
    const config = (scaling: models.LlamaConfigInput['rope_scaling']): models.LlamaConfigInput => ({
      vocab_size: 32,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: layers,
      num_attention_heads: 2,
      max_position_embeddings: 16,
      rope_scaling: scaling,
    });
    /** The main job's step (examples/lib/trainer.ts): decay groups, CLEX's ODE group and its own clip, AdamW. */
    const trainer = (scaling: models.LlamaConfigInput['rope_scaling']) => {
      manualSeed(3);
      const model = new models.LlamaForCausalLM(config(scaling), { device: 'webgpu' }).train();
      const ode = models.clexOdeParamGroup(model, 1e-3);
      const groups = [...optim.weightDecayGroups(model, 0.01, { exclude: ode?.params }), ...(ode ? [ode] : [])];
      const opt = new optim.AdamW(groups, { lr: 1e-3 });
      const x = ids([Array.from({ length: 16 }, (_, i) => (i * 5 + 2) % 32)], 'webgpu');
      const step = async (seed: number) => {
        manualSeed(seed);
        await scope(async () => {
          const { loss } = await model.forward(x, { labels: x });
          loss!.backward();
        });
        scope(() => {
          if (model.clex) models.clipClexGradNorm(model, 1);
          else optim.clipGradNorm(model.parameters(), 1);
          opt.step();
          model.zeroGrad();
        });
      };
      return { model, opt, step };
    };
    const dispatches = async (t: ReturnType<typeof trainer>, seed: number) => {
      await t.step(seed); // compiles the pipelines, allocates the optimizer state
      const d0 = memory().dispatches;
      await t.step(seed);
      return memory().dispatches - d0;
    };
    const plain = trainer(null);
    const clex = trainer({ type: 'clex', max_factor: 4, ode_method: 'rk4', time_dt: 0.1 });
    const draw = (t1: boolean) => {
      let seed = 0;
      while ((manualSeed(seed), clex.model.clex!.sample(16).t === 1) !== t1) seed++;
      return seed;
    };
    const base = await dispatches(plain, 0);
    const solved = await dispatches(clex, draw(false));
    const original = await dispatches(clex, draw(true));
    console.log(`dispatches per step: plain ${base}, CLEX at t > 1 ${solved}, CLEX at t = 1 ${original}`);
    expect(solved - base).toBeLessThanOrEqual(4);
    expect(solved - base).toBe(2 + (layers - 1));
    expect(original).toBe(base);
    for (const t of [plain, clex]) {
      t.opt.dispose();
      t.model.dispose();
    }
  });
});
