// The quick-start job: fits a small MLP to y = sin(3x)·x on webgpu and on the cpu reference backend,
// printing a progress bar, the loss curve and how fast each backend ran.
import { deviceInfo, manualSeed, memory, noGrad, randn, scope, tensor, type DeviceName, type Tensor } from '../index.js';
import { Progress } from './progress.js';

const STEPS = Number(process.argv[2] ?? 300);
const HIDDEN = 64;

function data(device: DeviceName): { x: Tensor; y: Tensor } {
  const xs = Array.from({ length: 256 }, (_, i) => -2 + (4 * i) / 255);
  const x = tensor(xs.map((v) => [v]), { device });
  return { x, y: tensor(xs.map((v) => [Math.sin(3 * v) * v]), { device }) };
}

async function train(device: DeviceName): Promise<{ losses: number[]; ms: number }> {
  manualSeed(0);
  const { x, y } = data(device);
  const params = scope(() => [randn([1, HIDDEN], { device }), randn([HIDDEN], { device }), randn([HIDDEN, HIDDEN], { device }).mul(1 / Math.sqrt(HIDDEN)), randn([HIDDEN], { device }).mul(0), randn([HIDDEN, 1], { device }).mul(1 / Math.sqrt(HIDDEN)), randn([1], { device }).mul(0)]);
  params.forEach((p) => { p.requiresGrad = true; });
  // Adam state, updated in place.
  const m = params.map((p) => p.zerosLike());
  const v = params.map((p) => p.zerosLike());
  const [lr, b1, b2] = [0.01, 0.9, 0.999];
  const losses: number[] = [];
  const bar = new Progress(STEPS, `  ${device.padEnd(6)}`);
  const t0 = performance.now();
  for (let step = 1; step <= STEPS; step++) {
    const loss = await scope(async () => {
      const [w1, b1_, w2, b2_, w3, b3] = params;
      const pred = x.matmul(w1).add(b1_).tanh().matmul(w2).add(b2_).tanh().matmul(w3).add(b3);
      const l = pred.sub(y).square().mean();
      l.backward();
      noGrad(() => params.forEach((p, i) => {
        const g = p.grad!;
        m[i].copy_(m[i].mul(b1).add(g.mul(1 - b1)));
        v[i].copy_(v[i].mul(b2).add(g.square().mul(1 - b2)));
        const mh = m[i].div(1 - b1 ** step);
        const vh = v[i].div(1 - b2 ** step);
        p.copy_(p.sub(mh.div(vh.sqrt().add(1e-8)).mul(lr)));
        p.grad = null;
      }));
      // Read the loss only every 25 steps: reading flushes the GPU queue.
      return step % 25 === 0 || step === 1 ? l.item() : NaN;
    });
    if (!Number.isNaN(loss)) losses.push(loss);
    bar.update(step, Number.isNaN(loss) ? {} : { loss });
  }
  return { losses, ms: performance.now() - t0 };
}

console.log('dawngrad demo: a 1→64→64→1 MLP fits sin(3x)·x with Adam (hand-written, in-place updates)');
console.log('device:', JSON.stringify(deviceInfo()));
const gpu = await train('webgpu');
const cpu = await train('cpu');
console.log('\n step | loss (webgpu f32) | loss (cpu f32)');
gpu.losses.forEach((l, i) => {
  if (i % 2 === 0 || i === gpu.losses.length - 1) console.log(`${String(i === 0 ? 1 : i * 25).padStart(5)} | ${l.toFixed(6).padStart(17)} | ${cpu.losses[i].toFixed(6).padStart(14)}`);
});
const mem = memory();
console.log(`\nwebgpu: ${(gpu.ms / STEPS).toFixed(2)} ms/step, cpu: ${(cpu.ms / STEPS).toFixed(2)} ms/step; ${mem.dispatches} dispatches in ${mem.submits} submits; peak ${(mem.peakBytes / 1024).toFixed(0)} KiB`);
