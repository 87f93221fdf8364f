// `npx tsx bench/attention.ts [--json FILE]`: scaled-dot-product attention forward + backward on webgpu,
// the tiled kernels vs the row kernels (one invocation per query row) vs composed matmul + softmax,
// at T = 256, 512, 1024 (B 1, H 4, D 64), causal and not. Median of BENCH_REPS runs, each ending in
// a readback of the three gradients. BENCH_T=256,512 and BENCH_D=16 pick other sizes.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { gpuRuntime } from '../core/device.js';
import { deviceInfo, functional as F, manualSeed, randn, scope, tensor, type Tensor } from '../index.js';

if (!gpuRuntime()) throw new Error('bench/attention.ts needs the webgpu backend (unset DAWNGRAD_DEVICE=cpu)');
const { values } = parseArgs({ options: { json: { type: 'string' } } });
const REPS = Number(process.env.BENCH_REPS ?? 5);
const Ts = (process.env.BENCH_T ?? '256,512,1024').split(',').map(Number);
const [B, H, D] = [1, 4, Number(process.env.BENCH_D ?? 64)];

type Path = 'tiled' | 'row' | 'composed';

/** softmax(q kᵀ·scale + causal mask) v from matmul and softmax, as a framework without fused attention would run it. */
function composed(q: Tensor, k: Tensor, v: Tensor, causalMask: Tensor | null): Tensor {
  let s = q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(D));
  if (causalMask) s = s.add(causalMask);
  return F.softmax(s, -1).matmul(v);
}

async function fwdBwd(path: Path, T: number, causal: boolean): Promise<number> {
  return scope(async () => {
    manualSeed(0);
    const [q, k, v] = [0, 1, 2].map(() => randn([B, H, T, D], { requiresGrad: true }));
    const causalMask = causal ? tensor(Float32Array.from({ length: T * T }, (_, n) => (n % T > Math.floor(n / T) ? -Infinity : 0)), { shape: [T, T] }) : null;
    const step = () => scope(async () => {
      if (path !== 'composed') process.env.DAWNGRAD_ATTENTION = path;
      const out = path === 'composed' ? composed(q, k, v, causalMask) : F.scaledDotProductAttention(q, k, v, { causal });
      out.sum().backward();
      await Promise.all([q.grad!.data(), k.grad!.data(), v.grad!.data()]);
      [q, k, v].forEach((t) => { t.grad = null; });
    });
    await step();
    await step();
    const ms: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = performance.now();
      await step();
      ms.push(performance.now() - t0);
    }
    return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
  });
}

console.log(`adapter: ${JSON.stringify(deviceInfo())}; B ${B}, H ${H}, D ${D}; forward + backward, median of ${REPS} runs (ms)`);
const rows: { T: number; causal: boolean; tiled: number; row: number; composed: number }[] = [];
for (const T of Ts) {
  for (const causal of [false, true]) {
    const r = { T, causal, tiled: await fwdBwd('tiled', T, causal), row: await fwdBwd('row', T, causal), composed: await fwdBwd('composed', T, causal) };
    rows.push(r);
    console.log(`T ${String(T).padStart(5)} ${causal ? 'causal    ' : 'non-causal'}  tiled ${r.tiled.toFixed(1).padStart(8)}  row ${r.row.toFixed(1).padStart(8)}  composed ${r.composed.toFixed(1).padStart(8)}  tiled vs composed ×${(r.composed / r.tiled).toFixed(2)}  vs row ×${(r.row / r.tiled).toFixed(2)}`);
  }
}
if (values.json) writeFileSync(values.json, JSON.stringify({ adapter: deviceInfo(), B, H, D, reps: REPS, rows }, null, 2));
process.exit(0);
