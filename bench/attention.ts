// `npx tsx bench/attention.ts [--json FILE]`: scaled-dot-product attention forward + backward on webgpu,
// the tiled kernels vs the row kernels (one invocation per query row) vs composed matmul + softmax,
// at T = 256, 512, 1024 (B 1, H 4, D 64), causal and not. Minimum and median of BENCH_REPS runs
// (the three paths take turns), each ending in a readback of the three gradients. BENCH_T=256,512 and
// BENCH_D=16 pick other sizes, BENCH_FWD=1 times the forward alone.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { config, withConfig } from '../core/config.js';
import { gpuRuntime } from '../core/device.js';
import { deviceInfo, functional as F, manualSeed, randn, scope, tensor, type Tensor } from '../index.js';

if (!gpuRuntime()) throw new Error('bench/attention.ts needs the webgpu backend (unset DAWNGRAD_DEVICE=cpu)');
const { values } = parseArgs({ options: { json: { type: 'string' } } });
const REPS = Number(process.env.BENCH_REPS ?? 5);
const Ts = (process.env.BENCH_T ?? '256,512,1024').split(',').map(Number);
const [B, H, D] = [1, 4, Number(process.env.BENCH_D ?? 64)];
const forwardOnly = process.env.BENCH_FWD === '1';

type Path = 'tiled' | 'row' | 'composed';
/** Wall ms (min, median) and the median process cpu ms (all threads: lavapipe runs in-process), robust to other load. */
interface Stat {
  min: number;
  median: number;
  cpu: number;
}

/** softmax(q kᵀ·scale + causal mask) v from matmul and softmax, as a framework without fused attention would run it. */
function composed(q: Tensor, k: Tensor, v: Tensor, causalMask: Tensor | null): Tensor {
  let s = q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(D));
  if (causalMask) s = s.add(causalMask);
  return F.softmax(s, -1).matmul(v);
}

const paths: Path[] = ['tiled', 'row', 'composed'];

/** Per path, the minimum and median over REPS of one forward + backward; the paths take turns in each rep, so load changes hit them alike. */
async function measure(T: number, causal: boolean): Promise<Record<Path, Stat>> {
  return scope(async () => {
    manualSeed(0);
    const [q, k, v] = [0, 1, 2].map(() => randn([B, H, T, D], { requiresGrad: true }));
    const causalMask = causal
      ? tensor(
          Float32Array.from({ length: T * T }, (_, n) => (n % T > Math.floor(n / T) ? -Infinity : 0)),
          { shape: [T, T] },
        )
      : null;
    const step = (path: Path) =>
      scope(async () => {
        const t0 = performance.now(),
          c0 = process.cpuUsage();
        const run = async () => {
          const out =
            path === 'composed' ? composed(q, k, v, causalMask) : F.scaledDotProductAttention(q, k, v, { causal });
          if (forwardOnly) await out.data();
          else {
            out.sum().backward();
            await Promise.all([q.grad!.data(), k.grad!.data(), v.grad!.data()]);
            [q, k, v].forEach((t) => {
              t.grad = null;
            });
          }
        };
        // The fused paths force their attention variant.
        await (path === 'composed' ? run() : withConfig({ variants: { ...config().variants, attention: path } }, run));
        const c = process.cpuUsage(c0);
        return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
      });
    const ms: Record<Path, { wall: number; cpu: number }[]> = { tiled: [], row: [], composed: [] };
    for (let r = -1; r < REPS; r++) {
      for (const path of paths) {
        const t = await step(path);
        if (r >= 0) ms[path].push(t); // rep -1 compiles the pipelines
      }
    }
    const stat = (xs: { wall: number; cpu: number }[]) => {
      const wall = xs.map((x) => x.wall).sort((a, b) => a - b),
        cpu = xs.map((x) => x.cpu).sort((a, b) => a - b);
      return { min: wall[0], median: wall[Math.floor(wall.length / 2)], cpu: cpu[Math.floor(cpu.length / 2)] };
    };
    return { tiled: stat(ms.tiled), row: stat(ms.row), composed: stat(ms.composed) };
  });
}

console.log(
  `adapter: ${JSON.stringify(deviceInfo())}; B ${B}, H ${H}, D ${D}; ${forwardOnly ? 'forward only' : 'forward + backward'}, wall min (median; median process cpu) of ${REPS} interleaved runs, ms`,
);
const rows: { T: number; causal: boolean; ms: Record<Path, Stat> }[] = [];
for (const T of Ts) {
  for (const causal of [false, true]) {
    const ms = await measure(T, causal);
    rows.push({ T, causal, ms });
    const cell = (p: Path) =>
      `${p} ${ms[p].min.toFixed(1).padStart(7)} (${ms[p].median.toFixed(1)}; cpu ${ms[p].cpu.toFixed(0)})`;
    const ratio = (p: Path, k: 'min' | 'cpu') => (ms[p][k] / ms.tiled[k]).toFixed(2);
    console.log(
      `T ${String(T).padStart(4)} ${causal ? 'causal    ' : 'non-causal'}  ${paths.map(cell).join('  ')}  tiled vs composed ×${ratio('composed', 'min')} (cpu ×${ratio('composed', 'cpu')}), vs row ×${ratio('row', 'min')} (cpu ×${ratio('row', 'cpu')})`,
    );
  }
}
if (values.json)
  writeFileSync(values.json, JSON.stringify({ adapter: deviceInfo(), B, H, D, reps: REPS, rows }, null, 2));
process.exit(0);
