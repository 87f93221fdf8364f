// Multi-tensor WGSL kernels for optimizer updates and gradient clipping. Parameters stay separate
// tensors, so a dispatch binds each one's buffers: as many parameters as the adapter's
// maxStorageBuffersPerShaderStage allows share one dispatch, which reads a small table in its
// uniform block (per parameter: where its invocations start, its length, its and its gradient's
// offsets) and picks the parameter's bindings with a switch. Every parameter's elements start on a
// workgroup boundary, so a workgroup never straddles two parameters. Hyperparameters, bias corrections
// and the learning rate travel as f32 bits (no readback). What differs between parameter groups or
// step counts (the learning rate and weight decay, the bias corrections, the first-update flag) is
// per parameter in the table, as PyTorch's param groups, so groups share dispatches; only parameters
// whose shared hyperparameters differ (other betas, say) go in separate dispatches. The per-element
// maths is the optimizer's own (adam.ts, sgd.ts, rmsprop.ts), the same expression whatever the chunking.
import { hardware } from '../../core/op.js';
import { launch } from '../../core/webgpu/launch.js';
import { bitsOf, header, LAYOUT_WORDS, uniformLayout } from '../../core/webgpu/uniforms.js';
import { spreadGroups, WG } from '../../core/webgpu/wgsl.js';
import type { Tensor } from '../../core/tensor.js';
import { empty } from '../../ops/util.js';

/** Test hook: at most this many tensors per dispatch (1 gives the one-dispatch-per-parameter schedule). */
let tensorsPerDispatchCap = Infinity;
export function setTensorsPerDispatchCap(cap: number | null): void {
  tensorsPerDispatchCap = cap ?? Infinity;
}

/**
 * How many tensors one dispatch takes when each binds `perTensor` storage buffers next to `shared`
 * ones, and the uniform block holds `fixedWords` besides the table of `tableWords` per tensor (and
 * one extra BASE word).
 */
function tensorsPerDispatch(perTensor: number, shared: number, fixedWords: number, tableWords: number): number {
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

/** Table words per tensor in every multi-tensor layout: BASE, N, OFF (BASE has one more, the total). */
const TABLE_WORDS = 3;

/** What `locate` reads of a table layout. */
interface TableReads {
  read(field: 'TOTAL' | 'BASE' | 'N' | 'OFF', index?: string): string;
}

/** The table's values for tensors of `sizes` elements at `offsets`. */
function tableValues(sizes: number[], offsets: number[]) {
  const base = [0];
  for (const n of sizes) base.push(base[base.length - 1] + Math.ceil(n / WG));
  return { TOTAL: base[base.length - 1], BASE: base, N: sizes, OFF: offsets };
}

/** Entry point with the workgroup id `wg` (2-D grids past 65535 workgroups) and the local index `lid`. */
const entry = `@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let wg = wid.x + wid.y * nwg.x;`;

/**
 * WGSL prologue: which tensor k the workgroup belongs to, and the invocation's element i of that
 * tensor; `pi` is its storage index. k derives from the workgroup id only (uniform across the
 * workgroup, so a GPU branches once per workgroup); lavapipe still pays for the switch (measured: see
 * the README's nn section).
 */
function locate(L: TableReads, count: number): string {
  return `if (wg >= ${L.read('TOTAL')}) { return; }
  var k = 0u;
  for (; k + 1u < ${count}u; k++) { if (wg < ${L.read('BASE', 'k + 1u')}) { break; } }
  let i = (wg - ${L.read('BASE', 'k')}) * ${WG}u + lid;
  if (i >= ${L.read('N', 'k')}) { return; }
  let pi = i + ${L.read('OFF', 'k')};`;
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
  /** f32 hyperparameter by name (shared or per parameter). */
  hyper: (name: string) => string;
  /** u32 flag by name. */
  flag: (name: string) => string;
  /** WGSL bool: this is the parameter's first update. */
  first: string;
  /** A state buffer's previous value at element i: zero on the first update (state is allocated unfilled). */
  prev: (buffer: string) => string;
}

/**
 * An optimizer's element-wise update: its state buffers, uniforms and WGSL body (p0 = param[pi];
 * writes param[pi]). `hyper` are shared by the parameters of a dispatch; `perParam` are each
 * parameter's own (in the table), so parameters whose values differ there still share dispatches.
 */
export interface UpdateKernel {
  name: string;
  state: readonly string[];
  hyper: readonly string[];
  perParam: readonly string[];
  flags: readonly string[];
  body: (n: UpdateNames) => string;
}

/** One parameter's update: its tensors (gradient contiguous) and the uniforms computed on the host. */
export interface ParamUpdate {
  kernel: UpdateKernel;
  param: Tensor;
  grad: Tensor;
  state: Tensor[];
  /** Values of kernel.hyper, kernel.perParam and kernel.flags. */
  hyper: number[];
  perParam: number[];
  flags: number[];
  first: boolean;
}

/**
 * The update's uniforms over `count` parameters: TOTAL workgroups, the shared HYPER and FLAGS, the
 * table (BASE, N, OFF), each gradient's offset GOFF, each parameter's FIRST flag and its own
 * hyperparameters PER[k·perParam.length + h].
 */
function updateLayout(kernel: UpdateKernel, count: number) {
  return uniformLayout({
    TOTAL: 'u32',
    HYPER: ['f32', kernel.hyper.length],
    FLAGS: ['u32', kernel.flags.length],
    BASE: ['u32', count + 1],
    N: ['u32', count],
    OFF: ['u32', count],
    GOFF: ['u32', count],
    FIRST: ['u32', count],
    PER: ['f32', count * kernel.perParam.length],
  });
}

function updateSource(kernel: UpdateKernel, count: number): () => string {
  const L = updateLayout(kernel, count);
  const bindings = Array.from({ length: count }, (_, k) => [
    `var<storage, read_write> param${k}: array<f32>`,
    ...kernel.state.map((s) => `var<storage, read_write> ${s}${k}: array<f32>`),
    `var<storage, read> grad${k}: array<f32>`,
  ]).flat();
  const names = (k: number): UpdateNames => {
    const first = `${L.read('FIRST', `${k}u`)} != 0u`;
    return {
      param: `param${k}`,
      grad: `grad${k}`,
      state: Object.fromEntries(kernel.state.map((s) => [s, `${s}${k}`])),
      hyper: (name) => {
        const own = kernel.perParam.indexOf(name);
        if (own >= 0) return L.read('PER', `${k * kernel.perParam.length + own}u`);
        const shared = kernel.hyper.indexOf(name);
        if (shared < 0) throw new Error(`optimizer kernel '${kernel.name}' has no hyperparameter '${name}'`);
        return L.read('HYPER', `${shared}u`);
      },
      flag: (name) => L.read('FLAGS', `${kernel.flags.indexOf(name)}u`),
      first,
      prev: (buffer) => `select(${buffer}[i], 0.0, ${first})`,
    };
  };
  return () => `${header(bindings)}
${entry}
  ${locate(L, count)}
  let gi = i + ${L.read('GOFF', 'k')};
  ${cases(count, (k) => kernel.body(names(k)))}
}`;
}

/** Applies every update, one dispatch per chunk of parameters that share a kernel and its shared uniforms. */
export function applyUpdates(updates: ParamUpdate[]): void {
  const batches = new Map<string, ParamUpdate[]>();
  for (const u of updates) {
    const key = `${u.kernel.name}|${u.hyper.map((v) => bitsOf(v, 'f32')).join(',')}|${u.flags.join(',')}`;
    const list = batches.get(key);
    if (list) list.push(u);
    else batches.set(key, [u]);
  }
  for (const batch of batches.values()) {
    const { kernel, hyper, flags } = batch[0];
    // Per parameter: its buffers; in the table BASE, N, OFF, GOFF, FIRST and its own hyperparameters.
    const size = tensorsPerDispatch(
      2 + kernel.state.length,
      0,
      1 + hyper.length + flags.length,
      TABLE_WORDS + 2 + kernel.perParam.length,
    );
    for (const chunk of chunks(batch, size)) {
      const table = tableValues(
        chunk.map((u) => u.param.size),
        chunk.map((u) => u.param.offset),
      );
      const params = updateLayout(kernel, chunk.length).pack({
        ...table,
        HYPER: hyper,
        FLAGS: flags,
        GOFF: chunk.map((u) => u.grad.offset),
        FIRST: chunk.map((u) => (u.first ? 1 : 0)),
        PER: chunk.flatMap((u) => u.perParam),
      });
      launch(
        `optim.${kernel.name}`,
        `optim:${kernel.name}:${chunk.length}`,
        updateSource(kernel, chunk.length),
        params,
        chunk.flatMap((u) => [u.param, ...u.state, u.grad]),
        spreadGroups(table.TOTAL),
      );
    }
  }
}

// ---- Gradient clipping by groups: each group's global L2 norm and factor min(maxNorm / (‖g‖ + 1e-6), 1),
// each gradient scaled in place by its group's factor, in three dispatches for typical models. Large
// gradients get partial sums of squares (CLIP_LANES per gradient, as many gradients per dispatch as the
// bindings allow) and are scaled in a last pass; the smallest ones (norm gains, biases, CLEX's ODE
// weights: up to FINALIZE_ELEMENTS in all) are summed and scaled by the finalise's one workgroup itself,
// so they take no binding in the chunked passes.

/** Partial sums per large gradient: each of CLIP_LANES invocations sums a strided subset (no barriers). */
export const CLIP_LANES = 1024;
/** Elements the finalise's workgroup sums and scales itself (each invocation about 256). */
const FINALIZE_ELEMENTS = 16384;
/** Groups one finalise serves (their sums and factors live in its invocations' arrays). */
export const MAX_CLIP_GROUPS = 16;

/** A gradient to clip (contiguous, scaled in place) and the index of its group. */
export interface GroupedGrad {
  grad: Tensor;
  group: number;
}

const SUMSQ = (count: number) => uniformLayout({ FIRST: 'u32', N: ['u32', count], OFF: ['u32', count] });

const SUMSQ_WGSL = (count: number) => () => {
  const L = SUMSQ(count);
  return `${header(['var<storage, read_write> partials: array<f32>', ...Array.from({ length: count }, (_, k) => `var<storage, read> grad${k}: array<f32>`)])}
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
};

/** partials[slot·LANES .. +LANES) = partial Σ g² of grads[slot] (each contiguous). */
function sumSquares(partials: Tensor, grads: Tensor[]): void {
  let slot = 0;
  for (const chunk of chunks(grads, tensorsPerDispatch(1, 1, 1, 2))) {
    const params = SUMSQ(chunk.length).pack({
      FIRST: slot,
      N: chunk.map((g) => g.size),
      OFF: chunk.map((g) => g.offset),
    });
    launch(
      'optim.clipGradNorm',
      `optim:clip:sumsq:${chunk.length}`,
      SUMSQ_WGSL(chunk.length),
      params,
      [partials, ...chunk],
      [(chunk.length * CLIP_LANES) / WG, 1, 1],
    );
    slot += chunk.length;
  }
}

/**
 * The finalise over `groups` groups whose large gradients' partial slots are PSTART[g]..PSTART[g+1], and
 * `small` gradients it reads and scales itself (SN, SOFF, SGROUP each).
 */
const FINALIZE = (groups: number, small: number) =>
  uniformLayout({
    MAX_NORM: 'f32',
    PSTART: ['u32', groups + 1],
    SN: ['u32', small],
    SOFF: ['u32', small],
    SGROUP: ['u32', small],
  });

/** Small gradients a finalise over `groups` groups can take: its bindings (out, partials) and its uniform words. */
function finalizeCapacity(groups: number): number {
  const byBindings = hardware().maxStorageBuffersPerShaderStage - 2;
  const byWords = Math.floor((LAYOUT_WORDS - 2 - groups) / 3);
  return Math.max(0, Math.min(byBindings, byWords));
}

const FINALIZE_WGSL = (groups: number, small: number) => () => {
  const L = FINALIZE(groups, small);
  const smalls = Array.from({ length: small }, (_, s) => s);
  const strided = (s: number, body: string) =>
    `for (var e = lid.x; e < ${L.read('SN', `${s}u`)}; e += ${WG}u) { let at = ${L.read('SOFF', `${s}u`)} + e; ${body} }`;
  return `${header([
    'var<storage, read_write> out: array<f32>',
    'var<storage, read> partials: array<f32>',
    ...smalls.map((s) => `var<storage, read_write> small${s}: array<f32>`),
  ])}
var<workgroup> lanes: array<f32, ${WG}>;
var<workgroup> coefs: array<f32, ${groups}>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc: array<f32, ${groups}>;
  for (var g = 0u; g < ${groups}u; g++) {
    let end = ${L.read('PSTART', 'g + 1u')} * ${CLIP_LANES}u;
    for (var k = ${L.read('PSTART', 'g')} * ${CLIP_LANES}u + lid.x; k < end; k += ${WG}u) { acc[g] += partials[k]; }
  }
  ${smalls
    .map(
      (s) => `{
    var sq = 0.0;
    ${strided(s, `let v = small${s}[at]; sq += v * v;`)}
    acc[${L.read('SGROUP', `${s}u`)}] += sq;
  }`,
    )
    .join('\n  ')}
  for (var g = 0u; g < ${groups}u; g++) {
    lanes[lid.x] = acc[g];
    workgroupBarrier();
    if (lid.x == 0u) {
      var total = 0.0;
      for (var k = 0u; k < ${WG}u; k++) { total += lanes[k]; }
      let norm = sqrt(total);
      let coef = min(${L.read('MAX_NORM')} / (norm + 1e-6), 1.0);
      out[2u * g] = norm;
      out[2u * g + 1u] = coef;
      coefs[g] = coef;
    }
    workgroupBarrier();
  }
  ${smalls
    .map(
      (s) => `{
    let c = coefs[${L.read('SGROUP', `${s}u`)}];
    ${strided(s, `small${s}[at] = small${s}[at] * c;`)}
  }`,
    )
    .join('\n  ')}
}`;
};

const SCALE = (count: number) =>
  uniformLayout({
    TOTAL: 'u32',
    BASE: ['u32', count + 1],
    N: ['u32', count],
    OFF: ['u32', count],
    GROUP: ['u32', count],
  });

const SCALE_WGSL = (count: number) => () => {
  const L = SCALE(count);
  return `${header(['var<storage, read> coef: array<f32>', ...Array.from({ length: count }, (_, k) => `var<storage, read_write> grad${k}: array<f32>`)])}
${entry}
  ${locate(L, count)}
  let c = coef[2u * ${L.read('GROUP', 'k')} + 1u];
  ${cases(count, (k) => `grad${k}[pi] = grad${k}[pi] * c;`)}
}`;
};

/**
 * One in-place pass over contiguous tensors, as many per dispatch as the bindings allow: `shared` bound
 * first, then the chunk's tensors; the chunk's uniforms are its table (TOTAL, BASE, N, OFF) and what
 * `params` adds (`words`: the uniform words it adds in all and per tensor).
 */
function inPlacePass<T>(
  op: string,
  key: string,
  items: T[],
  tensorOf: (item: T) => Tensor,
  shared: Tensor,
  words: [fixed: number, perTensor: number],
  source: (count: number) => () => string,
  params: (chunk: T[], table: ReturnType<typeof tableValues>) => Uint32Array,
): void {
  for (const chunk of chunks(items, tensorsPerDispatch(1, 1, words[0], TABLE_WORDS + words[1]))) {
    const tensors = chunk.map(tensorOf);
    const table = tableValues(
      tensors.map((t) => t.size),
      tensors.map((t) => t.offset),
    );
    launch(
      op,
      `${key}:${chunk.length}`,
      source(chunk.length),
      params(chunk, table),
      [shared, ...tensors],
      spreadGroups(table.TOTAL),
    );
  }
}

/** grads[k] *= coef[2·group + 1], in place (each gradient contiguous). */
function scaleByGroup(grads: GroupedGrad[], coef: Tensor): void {
  inPlacePass(
    'optim.clipGradNorm',
    'optim:clip:scale',
    grads,
    (g) => g.grad,
    coef,
    [1, 1],
    SCALE_WGSL,
    (chunk, table) => SCALE(chunk.length).pack({ ...table, GROUP: chunk.map((g) => g.group) }),
  );
}

/**
 * Clips `grads` in `groups` groups (at most MAX_CLIP_GROUPS, each gradient bound once): result [2·groups]
 * receives each group's norm and factor. The finalise takes the smallest gradients (up to
 * FINALIZE_ELEMENTS in all, as many as it binds), the others are summed in chunks, in group order so
 * that each group's partial slots are contiguous, and scaled after the finalise.
 */
export function clipGroupsKernel(grads: GroupedGrad[], groups: number, maxNorm: number, result: Tensor): void {
  const bySize = [...grads].sort((a, b) => a.grad.size - b.grad.size);
  const small: GroupedGrad[] = [];
  let elements = 0;
  for (const g of bySize) {
    if (small.length === finalizeCapacity(groups) || elements + g.grad.size > FINALIZE_ELEMENTS) break;
    small.push(g);
    elements += g.grad.size;
  }
  const large = grads.filter((g) => !small.includes(g)).sort((a, b) => a.group - b.group);
  const pstart = Array.from({ length: groups + 1 }, (_, g) => large.filter((l) => l.group < g).length);
  // The partials are fully written (no zero fill); one element at least, to bind.
  const partials = empty(result.device, 'float32', [Math.max(1, large.length * CLIP_LANES)]);
  sumSquares(
    partials,
    large.map((g) => g.grad),
  );
  launch(
    'optim.clipGradNorm',
    `optim:clip:finalize:${groups}:${small.length}`,
    FINALIZE_WGSL(groups, small.length),
    FINALIZE(groups, small.length).pack({
      MAX_NORM: maxNorm,
      PSTART: pstart,
      SN: small.map((g) => g.grad.size),
      SOFF: small.map((g) => g.grad.offset),
      SGROUP: small.map((g) => g.group),
    }),
    [result, partials, ...small.map((g) => g.grad)],
    [1, 1, 1],
  );
  scaleByGroup(large, result);
  partials.dispose();
}

// ---- Unscaling for dynamic loss scaling (GradScaler): every gradient multiplied in place by 1/scale, as
// many per dispatch as the bindings allow, and found[0] set where any result is NaN or ±Inf (tested on the
// exponent bits: a driver that assumes finite maths may fold `g != g`).

const UNSCALE = (count: number) =>
  uniformLayout({
    TOTAL: 'u32',
    INV_SCALE: 'f32',
    BASE: ['u32', count + 1],
    N: ['u32', count],
    OFF: ['u32', count],
  });

const UNSCALE_WGSL = (count: number) => () => {
  const L = UNSCALE(count);
  return `${header(['var<storage, read_write> found: array<atomic<u32>>', ...Array.from({ length: count }, (_, k) => `var<storage, read_write> grad${k}: array<f32>`)])}
${entry}
  ${locate(L, count)}
  let inv = ${L.read('INV_SCALE')};
  ${cases(
    count,
    (k) => `let g = grad${k}[pi] * inv;
      grad${k}[pi] = g;
      if ((bitcast<u32>(g) & 0x7f800000u) == 0x7f800000u) { atomicOr(&found[0], 1u); }`,
  )}
}`;
};

/** grads[k] *= invScale in place (each contiguous float32); found (one int32, zero before) becomes 1 on a NaN or ±Inf. */
export function unscaleGradsKernel(grads: Tensor[], invScale: number, found: Tensor): void {
  inPlacePass(
    'optim.unscale',
    'optim:unscale',
    grads,
    (g) => g,
    found,
    [2, 0],
    UNSCALE_WGSL,
    (chunk, table) => UNSCALE(chunk.length).pack({ ...table, INV_SCALE: invScale }),
  );
}
