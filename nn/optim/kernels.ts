// WGSL kernels for optimizer updates and gradient clipping. Each optimizer update is ONE dispatch
// per parameter that rewrites the parameter and its state buffers in place; hyperparameters, bias
// corrections and the learning rate travel as f32 bits in the uniform params (no readback).
// Param-uniform convention as core/webgpu/wgsl.ts: binding 0 = params, then read_write, then read.
import { gpuRuntime } from '../../core/device.js';
import type { GpuStorage } from '../../core/webgpu/backend.js';
import { PARAM_WORDS, type GpuRuntime } from '../../core/webgpu/runtime.js';
import { grid, header as coreHeader, mainSig, WG } from '../../core/webgpu/wgsl.js';
import type { Tensor } from '../../core/tensor.js';

function runtime(): GpuRuntime {
  const rt = gpuRuntime();
  if (!rt) throw new Error('optim: the webgpu runtime is not available');
  return rt;
}

export const gpuBuffer = (t: Tensor): GPUBuffer => (t.storage as GpuStorage).buffer;

/** The core params header plus the strided-gradient index helper. */
const header = (bindings: string[]): string => `${coreHeader(bindings)}${GRAD_INDEX}
`;

/** Word holding 1 on a parameter's first update: state buffers are then read as zeros (they are allocated unfilled). */
const FIRST = 15;
/** A state buffer's previous value: zero on the first update. */
const prev = (buf: string) => `select(${buf}[i], 0.0, pu(${FIRST}u) != 0u)`;

/** Gradient layout words: the gradient may be any strided view (e.g. a transposed weight's gradient). */
const G_RANK = 16, G_SHAPE = 17, G_STRIDES = 25, MAX_RANK = 8;

/** Storage index of element i of the (possibly strided) gradient, row-major over its shape. */
const GRAD_INDEX = `
fn gradIndex(i: u32) -> u32 {
  var off = pu(2u);
  var rem = i;
  for (var d = i32(pu(${G_RANK}u)) - 1; d >= 0; d--) {
    let du = u32(d);
    off += (rem % pu(${G_SHAPE}u + du)) * pu(${G_STRIDES}u + du);
    rem = rem / pu(${G_SHAPE}u + du);
  }
  return off;
}`;

const elementIndex = `let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= pu(0u)) { return; }
  let pi = i + pu(1u);
  let gi = gradIndex(i);`;


const f32Bits = new DataView(new ArrayBuffer(4));
function bitsOf(v: number): number {
  f32Bits.setFloat32(0, v, true);
  return f32Bits.getUint32(0, true);
}

/** Uniform block: [n, paramOffset, gradOffset, ...f32 values, ...u32 values], gradient layout at G_*. */
function uniforms(n: number, paramOffset: number, grad: Tensor | null, floats: number[], extraU32: number[] = [], first = false): Uint32Array {
  const p = new Uint32Array(PARAM_WORDS);
  p[0] = n;
  p[1] = paramOffset;
  p[FIRST] = first ? 1 : 0;
  if (grad) {
    if (grad.rank > MAX_RANK) throw new Error(`optim: gradients of rank ${grad.rank} are not supported on webgpu (max ${MAX_RANK})`);
    p[2] = grad.offset;
    // A contiguous gradient is walked as one flat axis (cheaper index math).
    const flat = grad.isContiguous();
    p[G_RANK] = flat ? 1 : grad.rank;
    p.set(flat ? [grad.size] : grad.shape, G_SHAPE);
    p.set(flat ? [1] : grad.strides, G_STRIDES);
  }
  floats.forEach((v, k) => { p[3 + k] = bitsOf(v); });
  extraU32.forEach((v, k) => { p[3 + floats.length + k] = v; });
  return p;
}

// ---- Adam / AdamW: uniforms l2, decay, beta1, 1-beta1, beta2, 1-beta2, stepSize, 1/sqrt(bc2), eps
const ADAM_WGSL = () => `${header([
  'var<storage, read_write> param: array<f32>',
  'var<storage, read_write> m: array<f32>',
  'var<storage, read_write> v: array<f32>',
  'var<storage, read> grad: array<f32>',
])}
${mainSig} {
  ${elementIndex}
  let p0 = param[pi];
  let g = grad[gi] + pf(3u) * p0;
  let mt = pf(5u) * ${prev('m')} + pf(6u) * g;
  let vt = pf(7u) * ${prev('v')} + pf(8u) * g * g;
  m[i] = mt;
  v[i] = vt;
  let denom = sqrt(vt) * pf(10u) + pf(11u);
  param[pi] = p0 * pf(4u) - pf(9u) * mt / denom;
}`;

export interface AdamUniforms {
  l2: number; decay: number; beta1: number; beta2: number; stepSize: number; invSqrtBc2: number; eps: number; first: boolean;
}

export function adamKernel(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, u: AdamUniforms): void {
  const rt = runtime();
  const pipeline = rt.pipeline('optim:adam', ADAM_WGSL);
  const p = uniforms(param.size, param.offset, grad, [u.l2, u.decay, u.beta1, 1 - u.beta1, u.beta2, 1 - u.beta2, u.stepSize, u.invSqrtBc2, u.eps], [], u.first);
  rt.dispatch('optim.adam', pipeline, p, [gpuBuffer(param), gpuBuffer(m), gpuBuffer(v), gpuBuffer(grad)], grid(param.size));
}

// ---- SGD: uniforms lr, weightDecay, momentum, 1-dampening; u32 nesterov (the first step sets buf = d)
const SGD_WGSL = (withMomentum: boolean) => () => `${header([
  'var<storage, read_write> param: array<f32>',
  ...(withMomentum ? ['var<storage, read_write> buf: array<f32>'] : []),
  'var<storage, read> grad: array<f32>',
])}
${mainSig} {
  ${elementIndex}
  let p0 = param[pi];
  var d = grad[gi] + pf(4u) * p0;
  ${withMomentum ? `var b = d;
  if (pu(${FIRST}u) == 0u) { b = pf(5u) * buf[i] + pf(6u) * d; }
  buf[i] = b;
  if (pu(7u) != 0u) { d = d + pf(5u) * b; } else { d = b; }` : ''}
  param[pi] = p0 - pf(3u) * d;
}`;

export interface SgdUniforms {
  lr: number; weightDecay: number; momentum: number; dampening: number; nesterov: boolean; first: boolean;
}

export function sgdKernel(param: Tensor, grad: Tensor, buf: Tensor | null, u: SgdUniforms): void {
  const rt = runtime();
  const pipeline = rt.pipeline(`optim:sgd:${buf ? 'momentum' : 'plain'}`, SGD_WGSL(buf !== null));
  const p = uniforms(param.size, param.offset, grad, [u.lr, u.weightDecay, u.momentum, 1 - u.dampening], [u.nesterov ? 1 : 0], u.first);
  const buffers = [gpuBuffer(param), ...(buf ? [gpuBuffer(buf)] : []), gpuBuffer(grad)];
  rt.dispatch('optim.sgd', pipeline, p, buffers, grid(param.size));
}

// ---- RMSprop: uniforms lr, weightDecay, alpha, 1-alpha, eps, momentum
const RMSPROP_WGSL = (centered: boolean, withMomentum: boolean) => () => `${header([
  'var<storage, read_write> param: array<f32>',
  'var<storage, read_write> sq: array<f32>',
  ...(centered ? ['var<storage, read_write> gavg: array<f32>'] : []),
  ...(withMomentum ? ['var<storage, read_write> buf: array<f32>'] : []),
  'var<storage, read> grad: array<f32>',
])}
${mainSig} {
  ${elementIndex}
  let p0 = param[pi];
  let g = grad[gi] + pf(4u) * p0;
  let s = pf(5u) * ${prev('sq')} + pf(6u) * g * g;
  sq[i] = s;
  ${centered ? `let ga = pf(5u) * ${prev('gavg')} + pf(6u) * g;
  gavg[i] = ga;
  let avg = sqrt(s - ga * ga) + pf(7u);` : 'let avg = sqrt(s) + pf(7u);'}
  ${withMomentum ? `let b = pf(8u) * ${prev('buf')} + g / avg;
  buf[i] = b;
  param[pi] = p0 - pf(3u) * b;` : 'param[pi] = p0 - pf(3u) * g / avg;'}
}`;

export interface RmspropUniforms {
  lr: number; weightDecay: number; alpha: number; eps: number; momentum: number; first: boolean;
}

export function rmspropKernel(param: Tensor, grad: Tensor, sq: Tensor, gavg: Tensor | null, buf: Tensor | null, u: RmspropUniforms): void {
  const rt = runtime();
  const pipeline = rt.pipeline(`optim:rmsprop:${gavg ? 'c' : 'u'}:${buf ? 'm' : 'p'}`, RMSPROP_WGSL(gavg !== null, buf !== null));
  const p = uniforms(param.size, param.offset, grad, [u.lr, u.weightDecay, u.alpha, 1 - u.alpha, u.eps, u.momentum], [], u.first);
  const buffers = [gpuBuffer(param), gpuBuffer(sq), ...(gavg ? [gpuBuffer(gavg)] : []), ...(buf ? [gpuBuffer(buf)] : []), gpuBuffer(grad)];
  rt.dispatch('optim.rmsprop', pipeline, p, buffers, grid(param.size));
}

// ---- Gradient clipping: per-gradient partial sums of squares, one finalise, per-gradient scaling.
/** Partial sums per gradient: each of CLIP_LANES invocations sums a strided subset (no barriers). */
export const CLIP_LANES = 1024;

const SUMSQ_WGSL = () => `${header(['var<storage, read_write> partials: array<f32>', 'var<storage, read> grad: array<f32>'])}
${mainSig} {
  let t = gid.x;
  var acc = 0.0;
  for (var k = t; k < pu(0u); k += ${CLIP_LANES}u) {
    let g = grad[gradIndex(k)];
    acc += g * g;
  }
  partials[pu(1u) * ${CLIP_LANES}u + t] = acc;
}`;

/** partials[slot·LANES .. +LANES) = partial Σ g² of `grad` (contiguous). */
export function sumSquaresKernel(partials: Tensor, slot: number, grad: Tensor): void {
  const rt = runtime();
  const pipeline = rt.pipeline('optim:clip:sumsq', SUMSQ_WGSL);
  const p = uniforms(grad.size, slot, grad, []);
  rt.dispatch('optim.clipGradNorm', pipeline, p, [gpuBuffer(partials), gpuBuffer(grad)], [CLIP_LANES / WG, 1, 1]);
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
    out[1] = min(pf(3u) / (norm + 1e-6), 1.0);
  }
}`;

/** out[0] = sqrt(Σ partials), out[1] = min(maxNorm / (norm + 1e-6), 1). */
export function clipFinalizeKernel(out: Tensor, partials: Tensor, count: number, maxNorm: number): void {
  const rt = runtime();
  const pipeline = rt.pipeline('optim:clip:finalize', FINALIZE_WGSL);
  rt.dispatch('optim.clipGradNorm', pipeline, uniforms(count, 0, null, [maxNorm]), [gpuBuffer(out), gpuBuffer(partials)], [1, 1, 1]);
}

const SCALE_WGSL = () => `${header(['var<storage, read_write> grad: array<f32>', 'var<storage, read> coef: array<f32>'])}
${mainSig} {
  ${elementIndex}
  grad[gi] = grad[gi] * coef[1];
}`;

/** grad *= coef[1], in place (grad must not overlap itself: no broadcast strides). */
export function scaleByKernel(grad: Tensor, coef: Tensor): void {
  const rt = runtime();
  const pipeline = rt.pipeline('optim:clip:scale', SCALE_WGSL);
  rt.dispatch('optim.clipGradNorm', pipeline, uniforms(grad.size, 0, grad, []), [gpuBuffer(grad), gpuBuffer(coef)], grid(grad.size));
}
