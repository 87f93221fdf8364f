// `npx tsx bench/matmul-bound.ts`: what bounds matmul on this adapter. It measures the adapter's
// arithmetic ceiling (a kernel of register-only vec4 FMAs, no memory traffic, enough workgroups for
// every core) and, at 256³, 512³ and 1024³, dawngrad's matmul (each variant) and TF.js's WebGPU matmul
// on the same adapter, in GFLOP/s and as a fraction of that ceiling.
import { withConfig } from '../core/config.js';
import { registeredKernels } from '../core/op.js';
import { header } from '../core/webgpu/uniforms.js';
import { launch } from '../core/webgpu/launch.js';
import { deviceInfo, randn, scope, zeros } from '../index.js';
import { medianMs } from './measure.js';
import { bootTfjs } from './tfjs.js';

const REPS = Number(process.env.BENCH_REPS ?? 5);
const SIZES = [256, 512, 1024];
const ITERS = 4096;
const CHAINS = 8;
const WG = 64;
const GROUPS = 256;

/** Each invocation runs CHAINS independent vec4 FMA chains for ITERS steps and writes one value. */
const fmaSource = () => `${header(['var<storage, read_write> out: array<f32>'])}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var acc: array<vec4<f32>, ${CHAINS}>;
  for (var c = 0u; c < ${CHAINS}u; c++) { acc[c] = vec4<f32>(f32(gid.x + c)); }
  let m = vec4<f32>(0.9999);
  let a = vec4<f32>(0.0001);
  for (var i = 0u; i < ${ITERS}u; i++) {
${Array.from({ length: CHAINS }, (_, c) => `    acc[${c}] = fma(acc[${c}], m, a);`).join('\n')}
  }
  var s = vec4<f32>(0.0);
  for (var c = 0u; c < ${CHAINS}u; c++) { s += acc[c]; }
  out[gid.x] = s.x + s.y + s.z + s.w;
}`;

async function fmaCeiling(): Promise<number> {
  const out = zeros([WG * GROUPS]);
  const run = async () => {
    launch('fmaCeiling', 'bench:fmaCeiling', fmaSource, new Uint32Array(64), [out], [GROUPS, 1, 1]);
    await out.data();
  };
  const ms = await medianMs(run, REPS);
  out.dispose();
  return (WG * GROUPS * ITERS * CHAINS * 4 * 2) / (ms * 1e6);
}

const tf = await bootTfjs();
console.log(`adapter: ${JSON.stringify(deviceInfo())}`);
const ceiling = await fmaCeiling();
console.log(`arithmetic ceiling (register-only vec4 FMAs): ${ceiling.toFixed(1)} GFLOP/s\n`);
const variants = registeredKernels()
  .get('matmul')!
  .webgpu.map((v) => v.name);
for (const n of SIZES) {
  const gflop = (2 * n ** 3) / 1e9;
  const cells: string[] = [];
  await scope(async () => {
    const [a, b] = [randn([n, n]), randn([n, n])];
    for (const variant of variants) {
      const ms = await withConfig({ variants: { matmul: variant }, autotune: 'off' }, () =>
        medianMs(() => scope(async () => void (await a.matmul(b).data())), REPS),
      );
      cells.push(
        `${variant} ${(gflop / (ms / 1e3)).toFixed(1)} GFLOP/s (${((100 * gflop) / (ms / 1e3) / ceiling).toFixed(0)}%)`,
      );
    }
  });
  const [ta, tb] = [tf.randomNormal([n, n]), tf.randomNormal([n, n])];
  const tfMs = await medianMs(async () => {
    const c = tf.matMul(ta, tb);
    await c.data();
    c.dispose();
  }, REPS);
  tf.dispose([ta, tb]);
  cells.push(
    `tfjs ${(gflop / (tfMs / 1e3)).toFixed(1)} GFLOP/s (${((100 * gflop) / (tfMs / 1e3) / ceiling).toFixed(0)}%)`,
  );
  console.log(`matmul ${n}³: ${cells.join(', ')}`);
}
process.exit(0);
