// Multi-tensor WGSL kernels for optimizer updates and gradient clipping. Parameters stay separate
// tensors, so a dispatch binds each one's buffers: as many parameters as the adapter's
// maxStorageBuffersPerShaderStage allows share one dispatch, which reads a small table in its
// uniform block (per parameter: where its invocations start, its length, its and its gradient's
// offsets) and picks the parameter's bindings with a switch. Every parameter's elements start on a
// workgroup boundary, so a workgroup never straddles two parameters. Hyperparameters, bias corrections
// and the learning rate travel as f32 bits (no readback); parameters whose values differ (other
// groups, other step counts) go in separate dispatches. The per-element maths is the optimizer's
// own (adam.ts, sgd.ts, rmsprop.ts), the same expression whatever the chunking.
import { gpuRuntime } from '../../core/device.js';
import type { GpuStorage } from '../../core/webgpu/backend.js';
import { PARAM_WORDS, type GpuRuntime } from '../../core/webgpu/runtime.js';
import { header, mainSig, spreadGroups, WG } from '../../core/webgpu/wgsl.js';
import type { Tensor } from '../../core/tensor.js';

function runtime(): GpuRuntime {
  const rt = gpuRuntime();
  if (!rt) throw new Error('optim: the webgpu runtime is not available');
  return rt;
}

const gpuBuffer = (t: Tensor): GPUBuffer => (t.storage as GpuStorage).buffer;

const f32Bits = new DataView(new ArrayBuffer(4));
function bitsOf(v: number): number {
  f32Bits.setFloat32(0, v, true);
  return f32Bits.getUint32(0, true);
}

/** Words of the uniform block a kernel may use (the last two stay free for core's constants). */
const USABLE_WORDS = PARAM_WORDS - 2;

/** Test hook: at most this many tensors per dispatch (1 gives the one-dispatch-per-parameter schedule). */
let tensorsPerDispatchCap = Infinity;
export function setTensorsPerDispatchCap(cap: number | null): void {
  tensorsPerDispatchCap = cap ?? Infinity;
}

/**
 * How many tensors one dispatch takes when each binds `perTensor` storage buffers next to `shared`
 * ones and needs `wordsPerTensor` uniform words next to `fixedWords`.
 */
function tensorsPerDispatch(perTensor: number, shared: number, wordsPerTensor: number, fixedWords: number): number {
  const bindings = runtime().info.limits.maxStorageBuffersPerShaderStage;
  const byBindings = Math.floor((bindings - shared) / perTensor);
  const byWords = Math.floor((USABLE_WORDS - fixedWords) / wordsPerTensor);
  return Math.max(1, Math.min(byBindings, byWords, tensorsPerDispatchCap));
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let k = 0; k < items.length; k += size) out.push(items.slice(k, k + size));
  return out;
}

/**
 * The per-tensor table: BASE[0..k] (first invocation of each tensor, workgroup-aligned; BASE[k] = the
 * total), N[k], OFF[k] and GOFF[k] (storage offsets of the tensor and, for updates, its gradient).
 */
interface Table {
  base: number;
  n: number;
  off: number;
  goff: number;
}

function tableLayout(fixedWords: number, count: number): Table {
  return { base: fixedWords, n: fixedWords + count + 1, off: fixedWords + 2 * count + 1, goff: fixedWords + 3 * count + 1 };
}
const TABLE_WORDS_PER_TENSOR = 4;

/** Fills the table for `sizes` (tensor element counts); returns the invocation count. */
function packTable(p: Uint32Array, at: Table, sizes: number[], offsets: number[], gradOffsets: number[]): number {
  let base = 0;
  sizes.forEach((n, k) => {
    p[at.base + k] = base;
    p[at.n + k] = n;
    p[at.off + k] = offsets[k];
    p[at.goff + k] = gradOffsets[k];
    base += Math.ceil(n / WG) * WG;
  });
  p[at.base + sizes.length] = base;
  return base;
}

/**
 * WGSL prologue: the linear invocation id, which tensor k it belongs to, and its element i of that
 * tensor; `pi` / `gi` are the storage indices in the tensor and its gradient.
 */
function locate(at: Table, count: number, total: string): string {
  return `let id = gid.x + gid.y * nwg.x * ${WG}u;
  if (id >= ${total}) { return; }
  var k = 0u;
  for (; k + 1u < ${count}u; k++) { if (id < pu(${at.base}u + k + 1u)) { break; } }
  let i = id - pu(${at.base}u + k);
  if (i >= pu(${at.n}u + k)) { return; }
  let pi = i + pu(${at.off}u + k);
  let gi = i + pu(${at.goff}u + k);`;
}

const cases = (count: number, body: (k: number) => string): string =>
  `switch k {
${Array.from({ length: count }, (_, k) => `    case ${k}u: {
      ${body(k)}
    }`).join('\n')}
    default: {}
  }`;

// ---- Optimizer updates

/** The names a kernel body uses for tensor k's buffers, the hyperparameters and the first-update flag. */
export interface UpdateNames {
  param: string;
  grad: string;
  /** State buffers by name, in the kernel's `state` order. */
  state: Record<string, string>;
  /** f32 hyperparameter by name. */
  hyper: (name: string) => string;
  /** u32 flag by name. */
  flag: (name: string) => string;
  /** WGSL bool: this is the parameters' first update. */
  first: string;
  /** A state buffer's previous value at element i: zero on the first update (state is allocated unfilled). */
  prev: (buffer: string) => string;
}

/** An optimizer's element-wise update: its state buffers, uniforms and WGSL body (p0 = param[pi]; writes param[pi]). */
export interface UpdateKernel {
  name: string;
  state: readonly string[];
  hyper: readonly string[];
  flags: readonly string[];
  body: (n: UpdateNames) => string;
}

/** One parameter's update: its tensors (gradient contiguous) and the uniforms computed on the host. */
export interface ParamUpdate {
  kernel: UpdateKernel;
  param: Tensor;
  grad: Tensor;
  state: Tensor[];
  hyper: number[];
  flags: number[];
  first: boolean;
}

function updateSource(kernel: UpdateKernel, count: number): () => string {
  const fixed = 2 + kernel.hyper.length + kernel.flags.length;
  const at = tableLayout(fixed, count);
  const hyper = (name: string) => `pf(${2 + kernel.hyper.indexOf(name)}u)`;
  const flag = (name: string) => `pu(${2 + kernel.hyper.length + kernel.flags.indexOf(name)}u)`;
  const bindings = Array.from({ length: count }, (_, k) => [
    `var<storage, read_write> param${k}: array<f32>`,
    ...kernel.state.map((s) => `var<storage, read_write> ${s}${k}: array<f32>`),
    `var<storage, read> grad${k}: array<f32>`,
  ]).flat();
  return () => `${header(bindings)}
${mainSig} {
  ${locate(at, count, 'pu(0u)')}
  ${cases(count, (k) => kernel.body({
    param: `param${k}`,
    grad: `grad${k}`,
    state: Object.fromEntries(kernel.state.map((s) => [s, `${s}${k}`])),
    hyper,
    flag,
    first: 'pu(1u) != 0u',
    prev: (buffer) => `select(${buffer}[i], 0.0, pu(1u) != 0u)`,
  }))}
}`;
}

/**
 * Applies every update, one dispatch per chunk of parameters that share a kernel and uniforms.
 * Uniform block: [invocations, first, ...hyper (f32), ...flags (u32), table].
 */
export function applyUpdates(updates: ParamUpdate[]): void {
  const batches = new Map<string, ParamUpdate[]>();
  for (const u of updates) {
    const key = `${u.kernel.name}|${u.first ? 1 : 0}|${u.hyper.map(bitsOf).join(',')}|${u.flags.join(',')}`;
    const list = batches.get(key);
    if (list) list.push(u);
    else batches.set(key, [u]);
  }
  const rt = runtime();
  for (const batch of batches.values()) {
    const { kernel, hyper, flags, first } = batch[0];
    const fixed = 2 + hyper.length + flags.length;
    const size = tensorsPerDispatch(2 + kernel.state.length, 0, TABLE_WORDS_PER_TENSOR, fixed + 1);
    for (const chunk of chunks(batch, size)) {
      const p = new Uint32Array(PARAM_WORDS);
      p[1] = first ? 1 : 0;
      hyper.forEach((v, k) => { p[2 + k] = bitsOf(v); });
      flags.forEach((v, k) => { p[2 + hyper.length + k] = v; });
      p[0] = packTable(p, tableLayout(fixed, chunk.length), chunk.map((u) => u.param.size), chunk.map((u) => u.param.offset), chunk.map((u) => u.grad.offset));
      const pipeline = rt.pipeline(`optim:${kernel.name}:${chunk.length}`, updateSource(kernel, chunk.length));
      const buffers = chunk.flatMap((u) => [u.param, ...u.state, u.grad].map(gpuBuffer));
      rt.dispatch(`optim.${kernel.name}`, pipeline, p, buffers, spreadGroups(p[0] / WG));
    }
  }
}

// ---- Gradient clipping: partial sums of squares per gradient, one finalise, an in-place scale.
/** Partial sums per gradient: each of CLIP_LANES invocations sums a strided subset (no barriers). */
export const CLIP_LANES = 1024;

/** Uniform block of the clip kernels: [invocations, first partials slot, table]. */
const CLIP_FIXED = 2;

const SUMSQ_WGSL = (count: number) => () => {
  const at = tableLayout(CLIP_FIXED, count);
  return `${header(['var<storage, read_write> partials: array<f32>', ...Array.from({ length: count }, (_, k) => `var<storage, read> grad${k}: array<f32>`)])}
${mainSig} {
  let t = gid.x;
  let k = t / ${CLIP_LANES}u;
  let lane = t % ${CLIP_LANES}u;
  let n = pu(${at.n}u + k);
  let off = pu(${at.off}u + k);
  var acc = 0.0;
  ${cases(count, (k) => `for (var e = lane; e < n; e += ${CLIP_LANES}u) {
        let g = grad${k}[off + e];
        acc += g * g;
      }`)}
  partials[(pu(1u) + k) * ${CLIP_LANES}u + lane] = acc;
}`;
};

/**
 * partials[(slot + k)·LANES .. +LANES) = partial Σ g² of grads[k] (contiguous), for slots
 * 0..grads.length − 1 of `partials`.
 */
export function sumSquaresKernel(partials: Tensor, grads: Tensor[]): void {
  const rt = runtime();
  const size = tensorsPerDispatch(1, 1, TABLE_WORDS_PER_TENSOR, CLIP_FIXED + 1);
  let slot = 0;
  for (const chunk of chunks(grads, size)) {
    const p = new Uint32Array(PARAM_WORDS);
    p[1] = slot;
    packTable(p, tableLayout(CLIP_FIXED, chunk.length), chunk.map((g) => g.size), chunk.map((g) => g.offset), chunk.map(() => 0));
    const pipeline = rt.pipeline(`optim:clip:sumsq:${chunk.length}`, SUMSQ_WGSL(chunk.length));
    rt.dispatch('optim.clipGradNorm', pipeline, p, [gpuBuffer(partials), ...chunk.map(gpuBuffer)], [(chunk.length * CLIP_LANES) / WG, 1, 1]);
    slot += chunk.length;
  }
}

const FINALIZE_WGSL = () => `${header(['var<storage, read_write> out: array<f32>', 'var<storage, read> partials: array<f32>'])}
var<workgroup> lanes: array<f32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var k = lid.x; k < pu(0u); k += ${WG}u) { acc += partials[k]; }
  lanes[lid.x] = acc;
  workgroupBarrier();
  if (lid.x == 0u) {
    var total = 0.0;
    for (var k = 0u; k < ${WG}u; k++) { total += lanes[k]; }
    let norm = sqrt(total);
    out[0] = norm;
    out[1] = min(pf(1u) / (norm + 1e-6), 1.0);
  }
}`;

/** out[0] = sqrt(Σ partials), out[1] = min(maxNorm / (norm + 1e-6), 1). */
export function clipFinalizeKernel(out: Tensor, partials: Tensor, count: number, maxNorm: number): void {
  const rt = runtime();
  const p = new Uint32Array(PARAM_WORDS);
  p[0] = count;
  p[1] = bitsOf(maxNorm);
  rt.dispatch('optim.clipGradNorm', rt.pipeline('optim:clip:finalize', FINALIZE_WGSL), p, [gpuBuffer(out), gpuBuffer(partials)], [1, 1, 1]);
}

const SCALE_WGSL = (count: number) => () => {
  const at = tableLayout(CLIP_FIXED, count);
  return `${header(['var<storage, read> coef: array<f32>', ...Array.from({ length: count }, (_, k) => `var<storage, read_write> grad${k}: array<f32>`)])}
${mainSig} {
  ${locate(at, count, 'pu(0u)')}
  ${cases(count, (k) => `grad${k}[pi] = grad${k}[pi] * coef[1];`)}
}`;
};

/** grads[k] *= coef[1], in place (each gradient contiguous). */
export function scaleByKernel(grads: Tensor[], coef: Tensor): void {
  const rt = runtime();
  const size = tensorsPerDispatch(1, 1, TABLE_WORDS_PER_TENSOR, CLIP_FIXED + 1);
  for (const chunk of chunks(grads, size)) {
    const p = new Uint32Array(PARAM_WORDS);
    p[0] = packTable(p, tableLayout(CLIP_FIXED, chunk.length), chunk.map((g) => g.size), chunk.map((g) => g.offset), chunk.map(() => 0));
    const pipeline = rt.pipeline(`optim:clip:scale:${chunk.length}`, SCALE_WGSL(chunk.length));
    rt.dispatch('optim.clipGradNorm', pipeline, p, [gpuBuffer(coef), ...chunk.map(gpuBuffer)], spreadGroups(p[0] / WG));
  }
}
