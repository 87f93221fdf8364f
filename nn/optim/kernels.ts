// Multi-tensor WGSL kernels for optimizer updates and gradient clipping. Parameters stay separate
// tensors, so a dispatch binds each one's buffers: as many parameters as the adapter's
// maxStorageBuffersPerShaderStage allows share one dispatch, which reads a small table in its
// uniform block (per parameter: where its invocations start, its length, its and its gradient's
// offsets) and picks the parameter's bindings with a switch. Every parameter's elements start on a
// workgroup boundary, so a workgroup never straddles two parameters. Hyperparameters, bias corrections
// and the learning rate travel as f32 bits (no readback); parameters whose values differ (other
// groups, other step counts) go in separate dispatches. The per-element maths is the optimizer's
// own (adam.ts, sgd.ts, rmsprop.ts), the same expression whatever the chunking.
import { hardware } from '../../core/op.js';
import { launch } from '../../core/webgpu/launch.js';
import { bitsOf, header, LAYOUT_WORDS, uniformLayout } from '../../core/webgpu/uniforms.js';
import { spreadGroups, WG } from '../../core/webgpu/wgsl.js';
import type { Tensor } from '../../core/tensor.js';

/** Test hook: at most this many tensors per dispatch (1 gives the one-dispatch-per-parameter schedule). */
let tensorsPerDispatchCap = Infinity;
export function setTensorsPerDispatchCap(cap: number | null): void {
  tensorsPerDispatchCap = cap ?? Infinity;
}

/** Uniform words per tensor in the table: BASE, N, OFF, and GOFF for kernels that read a gradient beside. */
const TABLE_WORDS_PER_TENSOR = 4;

/**
 * How many tensors one dispatch takes when each binds `perTensor` storage buffers next to `shared`
 * ones, and the uniform block holds `fixedWords` besides the table (which has one extra BASE word).
 */
function tensorsPerDispatch(
  perTensor: number,
  shared: number,
  fixedWords: number,
  tableWords = TABLE_WORDS_PER_TENSOR,
): number {
  const bindings = hardware().maxStorageBuffersPerShaderStage;
  const byBindings = Math.floor((bindings - shared) / perTensor);
  const byWords = Math.floor((LAYOUT_WORDS - fixedWords - 1) / tableWords);
  return Math.max(1, Math.min(byBindings, byWords, tensorsPerDispatchCap));
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let k = 0; k < items.length; k += size) out.push(items.slice(k, k + size));
  return out;
}

/**
 * The uniform layout of a kernel over `count` tensors: TOTAL workgroups, FIRST, the kernel's f32
 * HYPER and u32 FLAGS, then the table: BASE[0..count] (each tensor's first workgroup; BASE[count] =
 * TOTAL), N (lengths), OFF and, for updates, GOFF (storage offsets of each tensor and of its
 * gradient). Clipping has no GOFF (so more tensors fit a dispatch); there FIRST is the first partials slot.
 */
function tableLayout(count: number, hyper = 0, flags = 0, gradOffsets = true) {
  return uniformLayout({
    TOTAL: 'u32',
    FIRST: 'u32',
    HYPER: ['f32', hyper],
    FLAGS: ['u32', flags],
    BASE: ['u32', count + 1],
    N: ['u32', count],
    OFF: ['u32', count],
    GOFF: ['u32', gradOffsets ? count : 0],
  });
}
type TableLayout = ReturnType<typeof tableLayout>;

/** The table's values for tensors of `sizes` elements at `offsets` (gradients at `gradOffsets`, for updates). */
function tableValues(sizes: number[], offsets: number[], gradOffsets: number[] = []) {
  const base = [0];
  for (const n of sizes) base.push(base[base.length - 1] + Math.ceil(n / WG));
  return { TOTAL: base[base.length - 1], BASE: base, N: sizes, OFF: offsets, GOFF: gradOffsets };
}

/** Entry point with the workgroup id `wg` (2-D grids past 65535 workgroups) and the local index `lid`. */
const entry = `@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let wg = wid.x + wid.y * nwg.x;`;

/**
 * WGSL prologue: which tensor k the workgroup belongs to, and the invocation's element i of that
 * tensor; `pi` / `gi` are the storage indices in the tensor and its gradient. k derives from the
 * workgroup id only (uniform across the workgroup, so a GPU branches once per workgroup); lavapipe
 * still pays for the switch (measured: see the README's nn section).
 */
function locate(L: TableLayout, count: number, gradOffsets = true): string {
  return `if (wg >= ${L.read('TOTAL')}) { return; }
  var k = 0u;
  for (; k + 1u < ${count}u; k++) { if (wg < ${L.read('BASE', 'k + 1u')}) { break; } }
  let i = (wg - ${L.read('BASE', 'k')}) * ${WG}u + lid;
  if (i >= ${L.read('N', 'k')}) { return; }
  let pi = i + ${L.read('OFF', 'k')};${
    gradOffsets
      ? `
  let gi = i + ${L.read('GOFF', 'k')};`
      : ''
  }`;
}

const cases = (count: number, body: (k: number) => string): string =>
  `switch k {
${Array.from(
  { length: count },
  (_, k) => `    case ${k}u: {
      ${body(k)}
    }`,
).join('\n')}
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

function updateSource(kernel: UpdateKernel, L: TableLayout, count: number): () => string {
  const hyper = (name: string) => L.read('HYPER', `${kernel.hyper.indexOf(name)}u`);
  const flag = (name: string) => L.read('FLAGS', `${kernel.flags.indexOf(name)}u`);
  const first = `${L.read('FIRST')} != 0u`;
  const bindings = Array.from({ length: count }, (_, k) => [
    `var<storage, read_write> param${k}: array<f32>`,
    ...kernel.state.map((s) => `var<storage, read_write> ${s}${k}: array<f32>`),
    `var<storage, read> grad${k}: array<f32>`,
  ]).flat();
  return () => `${header(bindings)}
${entry}
  ${locate(L, count)}
  ${cases(count, (k) =>
    kernel.body({
      param: `param${k}`,
      grad: `grad${k}`,
      state: Object.fromEntries(kernel.state.map((s) => [s, `${s}${k}`])),
      hyper,
      flag,
      first,
      prev: (buffer) => `select(${buffer}[i], 0.0, ${first})`,
    }),
  )}
}`;
}

/** Applies every update, one dispatch per chunk of parameters that share a kernel and uniforms. */
export function applyUpdates(updates: ParamUpdate[]): void {
  const batches = new Map<string, ParamUpdate[]>();
  for (const u of updates) {
    const key = `${u.kernel.name}|${u.first ? 1 : 0}|${u.hyper.map((v) => bitsOf(v, 'f32')).join(',')}|${u.flags.join(',')}`;
    const list = batches.get(key);
    if (list) list.push(u);
    else batches.set(key, [u]);
  }
  for (const batch of batches.values()) {
    const { kernel, hyper, flags, first } = batch[0];
    const size = tensorsPerDispatch(2 + kernel.state.length, 0, 2 + hyper.length + flags.length);
    for (const chunk of chunks(batch, size)) {
      const L = tableLayout(chunk.length, hyper.length, flags.length);
      const table = tableValues(
        chunk.map((u) => u.param.size),
        chunk.map((u) => u.param.offset),
        chunk.map((u) => u.grad.offset),
      );
      const params = L.pack({ ...table, FIRST: first ? 1 : 0, HYPER: hyper, FLAGS: flags });
      const bound = chunk.flatMap((u) => [u.param, ...u.state, u.grad]);
      launch(
        `optim.${kernel.name}`,
        `optim:${kernel.name}:${chunk.length}`,
        updateSource(kernel, L, chunk.length),
        params,
        bound,
        spreadGroups(table.TOTAL),
      );
    }
  }
}

// ---- Gradient clipping: partial sums of squares per gradient, one finalise, an in-place scale.
/** Partial sums per gradient: each of CLIP_LANES invocations sums a strided subset (no barriers). */
export const CLIP_LANES = 1024;

/** Gradients per clip dispatch: each binds one buffer next to the shared partials / coefficients. */
const clipChunk = () => tensorsPerDispatch(1, 1, 2, TABLE_WORDS_PER_TENSOR - 1);

const SUMSQ_WGSL =
  (L: TableLayout, count: number) =>
  () => `${header(['var<storage, read_write> partials: array<f32>', ...Array.from({ length: count }, (_, k) => `var<storage, read> grad${k}: array<f32>`)])}
${entry}
  let k = wg / ${CLIP_LANES / WG}u;
  let lane = (wg % ${CLIP_LANES / WG}u) * ${WG}u + lid;
  let n = ${L.read('N', 'k')};
  let off = ${L.read('OFF', 'k')};
  var acc = 0.0;
  ${cases(
    count,
    (k) => `for (var e = lane; e < n; e += ${CLIP_LANES}u) {
        let g = grad${k}[off + e];
        acc += g * g;
      }`,
  )}
  partials[(${L.read('FIRST')} + k) * ${CLIP_LANES}u + lane] = acc;
}`;

/** partials[k·LANES .. +LANES) = partial Σ g² of grads[k] (each contiguous). */
export function sumSquaresKernel(partials: Tensor, grads: Tensor[]): void {
  let slot = 0;
  for (const chunk of chunks(grads, clipChunk())) {
    const L = tableLayout(chunk.length, 0, 0, false);
    const params = L.pack({
      ...tableValues(
        chunk.map((g) => g.size),
        chunk.map((g) => g.offset),
      ),
      FIRST: slot,
    });
    launch(
      'optim.clipGradNorm',
      `optim:clip:sumsq:${chunk.length}`,
      SUMSQ_WGSL(L, chunk.length),
      params,
      [partials, ...chunk],
      [(chunk.length * CLIP_LANES) / WG, 1, 1],
    );
    slot += chunk.length;
  }
}

const FINALIZE = uniformLayout({ COUNT: 'u32', MAX_NORM: 'f32' });
const FINALIZE_WGSL =
  () => `${header(['var<storage, read_write> out: array<f32>', 'var<storage, read> partials: array<f32>'])}
var<workgroup> lanes: array<f32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var k = lid.x; k < ${FINALIZE.read('COUNT')}; k += ${WG}u) { acc += partials[k]; }
  lanes[lid.x] = acc;
  workgroupBarrier();
  if (lid.x == 0u) {
    var total = 0.0;
    for (var k = 0u; k < ${WG}u; k++) { total += lanes[k]; }
    let norm = sqrt(total);
    out[0] = norm;
    out[1] = min(${FINALIZE.read('MAX_NORM')} / (norm + 1e-6), 1.0);
  }
}`;

/** out[0] = sqrt(Σ partials), out[1] = min(maxNorm / (norm + 1e-6), 1). */
export function clipFinalizeKernel(out: Tensor, partials: Tensor, count: number, maxNorm: number): void {
  launch(
    'optim.clipGradNorm',
    'optim:clip:finalize',
    FINALIZE_WGSL,
    FINALIZE.pack({ COUNT: count, MAX_NORM: maxNorm }),
    [out, partials],
    [1, 1, 1],
  );
}

const SCALE_WGSL =
  (L: TableLayout, count: number) =>
  () => `${header(['var<storage, read> coef: array<f32>', ...Array.from({ length: count }, (_, k) => `var<storage, read_write> grad${k}: array<f32>`)])}
${entry}
  ${locate(L, count, false)}
  ${cases(count, (k) => `grad${k}[pi] = grad${k}[pi] * coef[1];`)}
}`;

/** grads[k] *= coef[1], in place (each gradient contiguous). */
export function scaleByKernel(grads: Tensor[], coef: Tensor): void {
  for (const chunk of chunks(grads, clipChunk())) {
    const L = tableLayout(chunk.length, 0, 0, false);
    const table = tableValues(
      chunk.map((g) => g.size),
      chunk.map((g) => g.offset),
    );
    launch(
      'optim.clipGradNorm',
      `optim:clip:scale:${chunk.length}`,
      SCALE_WGSL(L, chunk.length),
      L.pack(table),
      [coef, ...chunk],
      spreadGroups(table.TOTAL),
    );
  }
}
