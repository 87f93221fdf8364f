// The neural-ODE "spiral" (Chen et al. 2018; torchdiffeq's ode_demo): learn dy/dt = (y³)·A from
// random 10-step windows of one trajectory, with gradients from the adjoint method, then draw the
// learned trajectory against the truth in out/ode-spiral.svg.
//
//   npx tsx examples/ode-spiral.ts [device] [iterations]      (defaults: the default device (DAWNGRAD_DEVICE, else webgpu), 2000)
//   options: --test-freq=N (full-trajectory evaluation every N iterations, default 100), --seed=N,
//            --rtol=X --atol=X (solver tolerances; defaults 1e-7/1e-9 in float64 (cpu), 1e-5/1e-7 in float32 (webgpu))
import { mkdirSync, writeFileSync } from 'node:fs';
import {
  disposeRuntime,
  getDefaultDevice,
  manualSeed,
  noGrad,
  ode,
  randn,
  scope,
  seededUniform,
  tensor,
  WIDEST_FLOAT,
  type DeviceName,
  type Tensor,
} from '../index.js';

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flag = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const device = positional.find((a): a is DeviceName => ['webgpu', 'cpu'].includes(a)) ?? getDefaultDevice();
const iterations = Number(positional.find((a) => /^\d+$/.test(a)) ?? 2000);
const testFreq = Number(flag('test-freq') ?? 100);
const seed = Number(flag('seed') ?? 0);
// The widest float the device computes in (float64 on the cpu reference backend), and solver tolerances it can meet.
const dtype = WIDEST_FLOAT[device];
const SOLVER_TOLERANCE = { float64: { rtol: 1e-7, atol: 1e-9 }, float32: { rtol: 1e-5, atol: 1e-7 } } as const;
const rtol = Number(flag('rtol') ?? SOLVER_TOLERANCE[dtype].rtol);
const atol = Number(flag('atol') ?? SOLVER_TOLERANCE[dtype].atol);

const DATA_SIZE = 1000;
const BATCH_TIME = 10;
const BATCH_SIZE = 20;
const T_END = 25;
const TRUE_A = [
  [-0.1, 2.0],
  [-2.0, -0.1],
];

const opts = { dtype, device } as const;
const ts = Array.from({ length: DATA_SIZE }, (_, i) => (T_END * i) / (DATA_SIZE - 1));

/** The true trajectory [DATA_SIZE, 1, 2], solved once in float64 on cpu (kept on the host). */
async function trueTrajectory(): Promise<Float64Array> {
  const A = tensor(TRUE_A, { dtype: 'float64', device: 'cpu' });
  const y0 = tensor([[2, 0]], { dtype: 'float64', device: 'cpu' });
  const Y = await ode.odeint((_t, y) => y.pow(3).matmul(A), y0, ts, { rtol: 1e-9, atol: 1e-11 });
  const out = Float64Array.from(await Y.data());
  [A, y0, Y].forEach((x) => x.dispose());
  return out;
}

/** Linear(2,50) → tanh → Linear(50,2) applied to y³; weights ~ N(0, 0.1²), biases 0 (as the demo). */
function makeModel(): Tensor[] {
  manualSeed(seed);
  const params = scope(() => [
    randn([2, 50], opts).mul(0.1),
    tensor(new Float64Array(50), { ...opts, shape: [50] }),
    randn([50, 2], opts).mul(0.1),
    tensor(new Float64Array(2), { ...opts, shape: [2] }),
  ]);
  params.forEach((p) => {
    p.requiresGrad = true;
  });
  return params;
}

function odeFunc(params: Tensor[]): ode.OdeFunc {
  const [w1, b1, w2, b2] = params;
  return (_t, y) => y.pow(3).matmul(w1).add(b1).tanh().matmul(w2).add(b2);
}

/** torch.optim.RMSprop defaults (alpha 0.99, eps 1e-8, no momentum), updating parameters in place. */
function rmsprop(params: Tensor[], lr: number, alpha = 0.99, eps = 1e-8): { step(): void; dispose(): void } {
  const sq = params.map((p) => noGrad(() => p.zerosLike()));
  return {
    step: () =>
      noGrad(() =>
        scope(() =>
          params.forEach((p, i) => {
            const g = p.grad;
            if (!g) return;
            sq[i].copy_(sq[i].mul(alpha).add(g.square().mul(1 - alpha)));
            p.copy_(p.sub(g.div(sq[i].sqrt().add(eps)).mul(lr)));
            p.grad = null;
          }),
        ),
      ),
    dispose: () => sq.forEach((s) => s.dispose()),
  };
}

function rows(flat: Float64Array | Float32Array, idx: readonly number[]): number[] {
  return idx.flatMap((i) => [flat[2 * i], flat[2 * i + 1]]);
}

function svg(truth: Float64Array, learned: Float32Array | Float64Array, title: string): string {
  const W = 1000,
    H = 480;
  const pts = (flat: Float64Array | Float32Array, f: (i: number) => [number, number]) =>
    Array.from({ length: flat.length / 2 }, (_, i) =>
      f(i)
        .map((v) => v.toFixed(1))
        .join(','),
    ).join(' ');
  // Left: phase portrait (x, y) in [-2.2, 2.2]²; right: x(t), y(t).
  const px = (v: number) => 20 + ((v + 2.2) / 4.4) * 440;
  const py = (v: number) => 40 + ((2.2 - v) / 4.4) * 420;
  const tx = (i: number) => 500 + (i / (DATA_SIZE - 1)) * 480;
  const phase = (flat: Float64Array | Float32Array) => pts(flat, (i) => [px(flat[2 * i]), py(flat[2 * i + 1])]);
  const series = (flat: Float64Array | Float32Array, c: number) => pts(flat, (i) => [tx(i), py(flat[2 * i + c])]);
  const line = (p: string, color: string, dash = '') =>
    `<polyline fill="none" stroke="${color}" stroke-width="1.5"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${p}"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="22" font-size="15">${title}</text>
<text x="20" y="475">phase portrait (y₁, y₂)</text><text x="500" y="475">y₁(t), y₂(t), t ∈ [0, ${T_END}]</text>
<rect x="20" y="40" width="440" height="420" fill="none" stroke="#ccc"/><rect x="500" y="40" width="480" height="420" fill="none" stroke="#ccc"/>
${line(phase(truth), '#2a9d8f')}${line(phase(learned), '#e76f51', '5,3')}
${line(series(truth, 0), '#2a9d8f')}${line(series(learned, 0), '#e76f51', '5,3')}
${line(series(truth, 1), '#264653')}${line(series(learned, 1), '#f4a261', '5,3')}
<text x="760" y="60" fill="#2a9d8f">— true</text><text x="840" y="60" fill="#e76f51">- - learned</text>
</svg>
`;
}

async function main(): Promise<void> {
  console.log(
    `ode-spiral: device ${device} (${dtype}), ${iterations} iterations, batch ${BATCH_SIZE}×${BATCH_TIME}, rtol ${rtol}, atol ${atol}, odeintAdjoint`,
  );
  const truthFlat = await trueTrajectory();
  const params = makeModel();
  const f = odeFunc(params);
  const optimizer = rmsprop(params, 1e-3);
  const batchT = ts.slice(0, BATCH_TIME);
  const random = seededUniform(seed + 1);
  const solverOpts = { rtol, atol, params };

  // The learned model from the true y0 over all 1000 times (no graph), and its L1 distance to the truth.
  const evaluate = (): Promise<{ loss: number; traj: Float32Array | Float64Array }> =>
    scope(async () => {
      const y0 = tensor([[2, 0]], opts);
      const truth = tensor(truthFlat, { ...opts, shape: [DATA_SIZE, 1, 2] });
      const pred = await noGrad(() => ode.odeintAdjoint(f, y0, ts, solverOpts));
      const loss = await pred.sub(truth).abs().mean().item();
      const traj = (await pred.data()) as Float32Array | Float64Array;
      return { loss, traj };
    });

  const t0 = performance.now();
  let batchLoss: number;
  let nfeF = 0,
    nfeB = 0;
  for (let itr = 1; itr <= iterations; itr++) {
    // 20 distinct window starts s; y0 = truth[s], targets truth[s + i], i < 10.
    const starts = new Set<number>();
    while (starts.size < BATCH_SIZE) starts.add(Math.floor(random() * (DATA_SIZE - BATCH_TIME)));
    const s = [...starts];
    batchLoss = await scope(async () => {
      const y0 = tensor(rows(truthFlat, s), { ...opts, shape: [BATCH_SIZE, 1, 2] });
      const target = tensor(
        Array.from({ length: BATCH_TIME }, (_, i) =>
          rows(
            truthFlat,
            s.map((v) => v + i),
          ),
        ).flat(),
        { ...opts, shape: [BATCH_TIME, BATCH_SIZE, 1, 2] },
      );
      const pred = await ode.odeintAdjoint(f, y0, batchT, solverOpts);
      const loss = pred.sub(target).abs().mean();
      nfeF += ode.lastStats().nfeForward;
      await loss.backwardAsync();
      nfeB += ode.lastStats().nfeBackward;
      optimizer.step();
      return loss.item();
    });
    if (itr % testFreq === 0 || itr === iterations) {
      const { loss } = await evaluate();
      const sec = (performance.now() - t0) / 1000;
      console.log(
        `iter ${String(itr).padStart(5)} | batch L1 ${batchLoss.toFixed(6)} | trajectory L1 ${loss.toFixed(6)} | NFE/iter fwd ${(nfeF / itr).toFixed(1)} bwd ${(nfeB / itr).toFixed(1)} | ${sec.toFixed(1)} s`,
      );
    }
  }
  const wall = (performance.now() - t0) / 1000;
  const final = await evaluate();
  console.log(
    `final: trajectory L1 ${final.loss.toFixed(6)} after ${iterations} iterations, ${wall.toFixed(1)} s training on ${device}`,
  );
  mkdirSync('out', { recursive: true });
  writeFileSync(
    'out/ode-spiral.svg',
    svg(
      truthFlat,
      final.traj,
      `neural ODE spiral: ${iterations} iterations on ${device}, trajectory L1 ${final.loss.toFixed(4)}`,
    ),
  );
  console.log('wrote out/ode-spiral.svg');
  optimizer.dispose();
  params.forEach((p) => p.dispose());
}

try {
  await main();
} finally {
  disposeRuntime();
}
