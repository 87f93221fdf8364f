// `npm run bench`: dawngrad vs TensorFlow.js's WebGPU backend on the same Dawn instance and adapter,
// reported as ratios measured side by side in this run (never as absolute targets).
import type * as TF from '@tensorflow/tfjs-core';
import { pathToFileURL } from 'node:url';
import { gpuRuntime } from '../core/device.js';
import { deviceInfo, functional as F, manualSeed, memory, noGrad, randn, resetPeak, scope, type Tensor } from '../index.js';

const rt = gpuRuntime();
if (!rt) throw new Error('bench needs the webgpu backend (unset DAWNGRAD_DEVICE=cpu)');
(globalThis as { navigator?: unknown }).navigator = { gpu: rt.gpu };
const tf: typeof TF = await import('@tensorflow/tfjs-core');
// tfjs-core's node bundle ships no gradients; its ESM gradient registrations use directory imports
// Node cannot load, so bundle them once (they register into tfjs's global registry).
const gradsFile = 'bench/.tmp/tf-gradients.mjs';
await (await import('esbuild')).build({ stdin: { contents: "import '@tensorflow/tfjs-core/dist/register_all_gradients';", resolveDir: process.cwd() }, bundle: true, format: 'esm', platform: 'node', outfile: gradsFile, logLevel: 'error' });
await import(pathToFileURL(gradsFile).href);
await import('@tensorflow/tfjs-backend-webgpu');
await tf.setBackend('webgpu');
await tf.ready();

const REPS = Number(process.env.BENCH_REPS ?? 10);

/** Median wall time of one call including the read that makes the work complete. */
async function time(run: () => Promise<void>): Promise<number> {
  await run();
  await run();
  const ms: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    await run();
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
}

const ours = (f: () => Tensor) => () => scope(async () => { await f().data(); });
const theirs = (f: () => TF.Tensor) => async () => { const t = tf.tidy(f); await t.data(); t.dispose(); };

interface Row { name: string; ours: number; theirs: number; note?: string }
const rows: Row[] = [];
/** BENCH_ONLY=regex runs only the matching comparisons. */
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : null;
async function compare(name: string, o: () => Promise<void>, t: () => Promise<void>, note?: string): Promise<void> {
  if (only && !only.test(name)) return;
  const a = await time(o);
  const b = await time(t);
  rows.push({ name, ours: a, theirs: b, note });
  console.log(`${name.padEnd(34)} dawngrad ${a.toFixed(2).padStart(8)} ms   tfjs ${b.toFixed(2).padStart(8)} ms   speedup ×${(b / a).toFixed(2)}${note ? `   (${note})` : ''}`);
}

/** BENCH_SIZE=large uses shapes where a real GPU is compute-bound rather than latency-bound. */
const large = process.env.BENCH_SIZE === 'large';
const MM = large ? [1024, 2048] : [256, 512];
const EW_N = large ? 1 << 24 : 1 << 20;
const [ROWS, COLS] = large ? [4096, 4096] : [256, 1024];
const [B, H, T, D] = large ? [1, 8, 1024, 64] : [1, 4, 256, 64];
const [BATCH, WIDTH] = large ? [1024, 2048] : [128, 512];

manualSeed(0);
console.log(`adapter: ${JSON.stringify(deviceInfo())}\nmedian of ${REPS} runs, each ending in a readback; sizes: ${large ? 'large' : 'small'}\n`);

// Each block runs in a scope so its inputs are freed before the next one.
for (const n of MM) {
  await scope(async () => {
    const a = randn([n, n]); const b = randn([n, n]);
    const ta = tf.randomNormal([n, n]); const tb = tf.randomNormal([n, n]);
    await compare(`matmul ${n}×${n}×${n}`, ours(() => a.matmul(b)), theirs(() => tf.matMul(ta, tb)));
    tf.dispose([ta, tb]);
  });
}
await scope(async () => {
  const a = randn([EW_N]); const b = randn([EW_N]);
  const ta = tf.randomNormal([EW_N]); const tb = tf.randomNormal([EW_N]);
  await compare(`elementwise a·b+a (${EW_N >> 20}M)`, ours(() => a.mul(b).add(a)), theirs(() => tf.add(tf.mul(ta, tb), ta)));
  tf.dispose([ta, tb]);
});
await scope(async () => {
  const x = randn([ROWS, COLS]); const tx = tf.randomNormal([ROWS, COLS]);
  await compare(`softmax ${ROWS}×${COLS}`, ours(() => F.softmax(x, -1)), theirs(() => tf.softmax(tx)));
  await compare(`layer norm ${ROWS}×${COLS}`, ours(() => F.layerNorm(x)), theirs(() => { const m = tf.moments(tx, -1, true); return tf.mul(tf.sub(tx, m.mean), tf.rsqrt(tf.add(m.variance, 1e-5))); }));
  tx.dispose();
});
await scope(async () => {
  const q = randn([B, H, T, D]); const k = randn([B, H, T, D]); const v = randn([B, H, T, D]);
  const tq = tf.randomNormal([B, H, T, D]); const tk = tf.randomNormal([B, H, T, D]); const tv = tf.randomNormal([B, H, T, D]);
  const composed = () => { const s = q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(D)); const e = s.sub(s.max(-1, true)).exp(); return e.div(e.sum(-1, true)).matmul(v); };
  const tfAttn = theirs(() => tf.matMul(tf.softmax(tf.div(tf.matMul(tq, tk, false, true), Math.sqrt(D))), tv));
  const shape = `${B}×${H}×${T}×${D}`;
  await compare(`attention ${shape} (fused)`, ours(() => F.scaledDotProductAttention(q, k, v)), tfAttn, 'online softmax');
  await compare(`attention ${shape} (composed)`, ours(composed), tfAttn, 'matmul+softmax');
  tf.dispose([tq, tk, tv]);
});
await scope(async () => {
  // One SGD training step of a 256→W→W→10 MLP.
  const dims = [256, WIDTH, WIDTH, 10];
  const ws = dims.slice(1).map((d, i) => { const w = randn([dims[i], d]).mul(1 / Math.sqrt(dims[i])); w.requiresGrad = true; return w; });
  const x = randn([BATCH, 256]); const y = randn([BATCH, 10]);
  const step = () => scope(async () => {
    let h: Tensor = x;
    ws.forEach((w, i) => { h = h.matmul(w); if (i < ws.length - 1) h = h.relu(); });
    const loss = h.sub(y).square().mean();
    loss.backward();
    noGrad(() => ws.forEach((w) => { w.copy_(w.sub(w.grad!.mul(0.01))); w.grad = null; }));
    await loss.data();
  });
  const tws = dims.slice(1).map((d, i) => tf.variable(tf.mul(tf.randomNormal([dims[i], d]), 1 / Math.sqrt(dims[i]))));
  const tx = tf.randomNormal([BATCH, 256]); const ty = tf.randomNormal([BATCH, 10]);
  const opt = tf.train.sgd(0.01);
  const tstep = async () => {
    const loss = opt.minimize(() => { let h: TF.Tensor = tx; tws.forEach((w, i) => { h = tf.matMul(h, w); if (i < tws.length - 1) h = tf.relu(h); }); return tf.mean(tf.square(tf.sub(h, ty))) as TF.Scalar; }, true)!;
    await loss.data();
    loss.dispose();
  };
  await step();
  const m0 = memory();
  resetPeak();
  await step();
  const m1 = memory();
  await compare(`training step MLP 256-${WIDTH}-${WIDTH}-10 b${BATCH}`, step, tstep);
  console.log(`\ndawngrad training step: ${m1.dispatches - m0.dispatches} dispatches, ${m1.submits - m0.submits} submit(s), ${m1.readbacks - m0.readbacks} readback(s), peak ${(m1.peakBytes / 2 ** 20).toFixed(2)} MiB live GPU memory`);
});
const geo = Math.exp(rows.reduce((s, r) => s + Math.log(r.theirs / r.ours), 0) / rows.length);
console.log(`geometric-mean speedup over tfjs-webgpu: ×${geo.toFixed(2)}`);
process.exit(0);
