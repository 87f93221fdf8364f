// WGSL kernels for optimizer updates and gradient clipping. Each optimizer update is ONE dispatch
// per parameter that rewrites the parameter and its state buffers in place; hyperparameters, bias
// corrections and the learning rate travel as f32 bits in the uniform params (no readback).
// Param-uniform convention as core/webgpu/wgsl.ts: binding 0 = params, then read_write, then read.
import { launch } from '../../core/webgpu/launch.js';
import { header, uniformLayout, type UniformLayout } from '../../core/webgpu/uniforms.js';
import { grid, MAX_RANK, mainSig, WG } from '../../core/webgpu/wgsl.js';
import type { Tensor } from '../../core/tensor.js';

/**
 * Fields every update kernel starts with: n, the parameter's offset, FIRST = 1 on a parameter's first
 * update (state buffers are then read as zeros: they are allocated unfilled), and the gradient's
 * layout (any strided view, e.g. a transposed weight's gradient).
 */
const GRAD_FIELDS = {
  N: 'u32', POFF: 'u32', FIRST: 'u32', GOFF: 'u32', GRANK: 'u32', GSHAPE: ['u32', MAX_RANK], GSTRIDES: ['u32', MAX_RANK],
} as const;
type GradLayout = UniformLayout<typeof GRAD_FIELDS>;

/** The gradient's layout fields; a contiguous gradient is walked as one flat axis (cheaper index math). */
function gradValues(grad: Tensor): { GOFF: number; GRANK: number; GSHAPE: readonly number[]; GSTRIDES: readonly number[] } {
  if (grad.rank > MAX_RANK) throw new Error(`optim: gradients of rank ${grad.rank} are not supported on webgpu (max ${MAX_RANK})`);
  const flat = grad.isContiguous();
  return { GOFF: grad.offset, GRANK: flat ? 1 : grad.rank, GSHAPE: flat ? [grad.size] : grad.shape, GSTRIDES: flat ? [1] : grad.strides };
}

/** The core params header plus gradIndex(i): storage index of element i of the gradient, row-major over its shape. */
const kernelHeader = (L: GradLayout, bindings: string[]): string => `${header(bindings)}
fn gradIndex(i: u32) -> u32 {
  var off = ${L.read('GOFF')};
  var rem = i;
  for (var d = i32(${L.read('GRANK')}) - 1; d >= 0; d--) {
    let du = u32(d);
    off += (rem % ${L.read('GSHAPE', 'du')}) * ${L.read('GSTRIDES', 'du')};
    rem = rem / ${L.read('GSHAPE', 'du')};
  }
  return off;
}
`;

/** A state buffer's previous value: zero on the first update. */
const prev = (L: GradLayout, buf: string) => `select(${buf}[i], 0.0, ${L.read('FIRST')} != 0u)`;

const elementIndex = (L: GradLayout) => `let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= ${L.read('N')}) { return; }
  let pi = i + ${L.read('POFF')};
  let gi = gradIndex(i);`;

/** The fields of an update over `param` with gradient `grad`. */
const updateValues = (param: Tensor, grad: Tensor, first: boolean) => ({ N: param.size, POFF: param.offset, FIRST: first ? 1 : 0, ...gradValues(grad) });

// ---- Adam / AdamW (stepSize includes the bias correction 1 / (1 - beta1^t))
const ADAM = uniformLayout({
  ...GRAD_FIELDS, L2: 'f32', DECAY: 'f32', BETA1: 'f32', ONE_MINUS_BETA1: 'f32', BETA2: 'f32', ONE_MINUS_BETA2: 'f32', STEP_SIZE: 'f32', INV_SQRT_BC2: 'f32', EPS: 'f32',
});
const r = ADAM.read;
const ADAM_WGSL = () => `${kernelHeader(ADAM, [
  'var<storage, read_write> param: array<f32>',
  'var<storage, read_write> m: array<f32>',
  'var<storage, read_write> v: array<f32>',
  'var<storage, read> grad: array<f32>',
])}
${mainSig} {
  ${elementIndex(ADAM)}
  let p0 = param[pi];
  let g = grad[gi] + ${r('L2')} * p0;
  let mt = ${r('BETA1')} * ${prev(ADAM, 'm')} + ${r('ONE_MINUS_BETA1')} * g;
  let vt = ${r('BETA2')} * ${prev(ADAM, 'v')} + ${r('ONE_MINUS_BETA2')} * g * g;
  m[i] = mt;
  v[i] = vt;
  let denom = sqrt(vt) * ${r('INV_SQRT_BC2')} + ${r('EPS')};
  param[pi] = p0 * ${r('DECAY')} - ${r('STEP_SIZE')} * mt / denom;
}`;

export interface AdamUniforms {
  l2: number; decay: number; beta1: number; beta2: number; stepSize: number; invSqrtBc2: number; eps: number; first: boolean;
}

export function adamKernel(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, u: AdamUniforms): void {
  const p = ADAM.pack({
    ...updateValues(param, grad, u.first), L2: u.l2, DECAY: u.decay, BETA1: u.beta1, ONE_MINUS_BETA1: 1 - u.beta1, BETA2: u.beta2, ONE_MINUS_BETA2: 1 - u.beta2,
    STEP_SIZE: u.stepSize, INV_SQRT_BC2: u.invSqrtBc2, EPS: u.eps,
  });
  launch('optim.adam', 'optim:adam', ADAM_WGSL, p, [param, m, v, grad], grid(param.size));
}

// ---- SGD (the first step sets buf = d)
const SGD = uniformLayout({ ...GRAD_FIELDS, LR: 'f32', WEIGHT_DECAY: 'f32', MOMENTUM: 'f32', ONE_MINUS_DAMPENING: 'f32', NESTEROV: 'u32' });
const SGD_WGSL = (withMomentum: boolean) => () => `${kernelHeader(SGD, [
  'var<storage, read_write> param: array<f32>',
  ...(withMomentum ? ['var<storage, read_write> buf: array<f32>'] : []),
  'var<storage, read> grad: array<f32>',
])}
${mainSig} {
  ${elementIndex(SGD)}
  let p0 = param[pi];
  var d = grad[gi] + ${SGD.read('WEIGHT_DECAY')} * p0;
  ${withMomentum ? `var b = d;
  if (${SGD.read('FIRST')} == 0u) { b = ${SGD.read('MOMENTUM')} * buf[i] + ${SGD.read('ONE_MINUS_DAMPENING')} * d; }
  buf[i] = b;
  if (${SGD.read('NESTEROV')} != 0u) { d = d + ${SGD.read('MOMENTUM')} * b; } else { d = b; }` : ''}
  param[pi] = p0 - ${SGD.read('LR')} * d;
}`;

export interface SgdUniforms {
  lr: number; weightDecay: number; momentum: number; dampening: number; nesterov: boolean; first: boolean;
}

export function sgdKernel(param: Tensor, grad: Tensor, buf: Tensor | null, u: SgdUniforms): void {
  const p = SGD.pack({ ...updateValues(param, grad, u.first), LR: u.lr, WEIGHT_DECAY: u.weightDecay, MOMENTUM: u.momentum, ONE_MINUS_DAMPENING: 1 - u.dampening, NESTEROV: u.nesterov ? 1 : 0 });
  launch('optim.sgd', `optim:sgd:${buf ? 'momentum' : 'plain'}`, SGD_WGSL(buf !== null), p, [param, ...(buf ? [buf] : []), grad], grid(param.size));
}

// ---- RMSprop
const RMSPROP = uniformLayout({ ...GRAD_FIELDS, LR: 'f32', WEIGHT_DECAY: 'f32', ALPHA: 'f32', ONE_MINUS_ALPHA: 'f32', EPS: 'f32', MOMENTUM: 'f32' });
const RMSPROP_WGSL = (centered: boolean, withMomentum: boolean) => () => {
  const rr = RMSPROP.read;
  return `${kernelHeader(RMSPROP, [
    'var<storage, read_write> param: array<f32>',
    'var<storage, read_write> sq: array<f32>',
    ...(centered ? ['var<storage, read_write> gavg: array<f32>'] : []),
    ...(withMomentum ? ['var<storage, read_write> buf: array<f32>'] : []),
    'var<storage, read> grad: array<f32>',
  ])}
${mainSig} {
  ${elementIndex(RMSPROP)}
  let p0 = param[pi];
  let g = grad[gi] + ${rr('WEIGHT_DECAY')} * p0;
  let s = ${rr('ALPHA')} * ${prev(RMSPROP, 'sq')} + ${rr('ONE_MINUS_ALPHA')} * g * g;
  sq[i] = s;
  ${centered ? `let ga = ${rr('ALPHA')} * ${prev(RMSPROP, 'gavg')} + ${rr('ONE_MINUS_ALPHA')} * g;
  gavg[i] = ga;
  let avg = sqrt(s - ga * ga) + ${rr('EPS')};` : `let avg = sqrt(s) + ${rr('EPS')};`}
  ${withMomentum ? `let b = ${rr('MOMENTUM')} * ${prev(RMSPROP, 'buf')} + g / avg;
  buf[i] = b;
  param[pi] = p0 - ${rr('LR')} * b;` : `param[pi] = p0 - ${rr('LR')} * g / avg;`}
}`;
};

export interface RmspropUniforms {
  lr: number; weightDecay: number; alpha: number; eps: number; momentum: number; first: boolean;
}

export function rmspropKernel(param: Tensor, grad: Tensor, sq: Tensor, gavg: Tensor | null, buf: Tensor | null, u: RmspropUniforms): void {
  const p = RMSPROP.pack({ ...updateValues(param, grad, u.first), LR: u.lr, WEIGHT_DECAY: u.weightDecay, ALPHA: u.alpha, ONE_MINUS_ALPHA: 1 - u.alpha, EPS: u.eps, MOMENTUM: u.momentum });
  const bound = [param, sq, ...(gavg ? [gavg] : []), ...(buf ? [buf] : []), grad];
  launch('optim.rmsprop', `optim:rmsprop:${gavg ? 'c' : 'u'}:${buf ? 'm' : 'p'}`, RMSPROP_WGSL(gavg !== null, buf !== null), p, bound, grid(param.size));
}

// ---- Gradient clipping: per-gradient partial sums of squares, one finalise, per-gradient scaling.
/** Partial sums per gradient: each of CLIP_LANES invocations sums a strided subset (no barriers). */
export const CLIP_LANES = 1024;

/** SLOT: which CLIP_LANES-long row of the partials this gradient fills. */
const SUMSQ = uniformLayout({ ...GRAD_FIELDS, SLOT: 'u32' });
const SUMSQ_WGSL = () => `${kernelHeader(SUMSQ, ['var<storage, read_write> partials: array<f32>', 'var<storage, read> grad: array<f32>'])}
${mainSig} {
  let t = gid.x;
  var acc = 0.0;
  for (var k = t; k < ${SUMSQ.read('N')}; k += ${CLIP_LANES}u) {
    let g = grad[gradIndex(k)];
    acc += g * g;
  }
  partials[${SUMSQ.read('SLOT')} * ${CLIP_LANES}u + t] = acc;
}`;

/** partials[slot·LANES .. +LANES) = partial Σ g² of `grad`. */
export function sumSquaresKernel(partials: Tensor, slot: number, grad: Tensor): void {
  const p = SUMSQ.pack({ N: grad.size, ...gradValues(grad), SLOT: slot });
  launch('optim.clipGradNorm', 'optim:clip:sumsq', SUMSQ_WGSL, p, [partials, grad], [CLIP_LANES / WG, 1, 1]);
}

const FINALIZE = uniformLayout({ COUNT: 'u32', MAX_NORM: 'f32' });
const FINALIZE_WGSL = () => `${header(['var<storage, read_write> out: array<f32>', 'var<storage, read> partials: array<f32>'])}
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
  launch('optim.clipGradNorm', 'optim:clip:finalize', FINALIZE_WGSL, FINALIZE.pack({ COUNT: count, MAX_NORM: maxNorm }), [out, partials], [1, 1, 1]);
}

const SCALE = uniformLayout(GRAD_FIELDS);
const SCALE_WGSL = () => `${kernelHeader(SCALE, ['var<storage, read_write> grad: array<f32>', 'var<storage, read> coef: array<f32>'])}
${mainSig} {
  ${elementIndex(SCALE)}
  grad[gi] = grad[gi] * coef[1];
}`;

/** grad *= coef[1], in place (grad must not overlap itself: no broadcast strides). */
export function scaleByKernel(grad: Tensor, coef: Tensor): void {
  launch('optim.clipGradNorm', 'optim:clip:scale', SCALE_WGSL, SCALE.pack({ N: grad.size, ...gradValues(grad) }), [grad, coef], grid(grad.size));
}
