// Matrix multiplication with NumPy semantics: 1-D operands, batch broadcasting. The float64 cpu
// reference and the webgpu launch are here; the WGSL is in kernels.ts (4×4 register-tiled, shared-memory
// tiled) and vec4.ts (the vec4 register-tiled kernel lavapipe uses).
import type { View } from '../../core/backend.js';
import { record } from '../../core/autograd.js';
import { cpuDataOf, forEachOffset } from '../../core/cpu.js';
import { getBackend, gpuRuntime } from '../../core/device.js';
import { broadcastShapes, numel, OpError, shapeStr } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { launch } from '../../core/webgpu/launch.js';
import { MAX_RANK } from '../../core/webgpu/wgsl.js';
import { ELEMENTWISE } from '../elementwise/index.js';
import { broadcastView, empty, sameDevice, sumTo, type Tolerance } from '../util.js';
import { MM, MM_SHARED_TILE, MM_TILE, MM_WG, matmulSharedSource, matmulSource } from './kernels.js';
import { matmulVec4Plan, matmulVec4Source } from './vec4.js';
import { argTensor } from '../../core/args.js';

/** webgpu float32 vs cpu float64 in the gradient checks: K-long dot products round more than elementwise ops. */
export const MATMUL_TOLERANCE: { gpu: Tolerance } = { gpu: { rtol: 3e-4, atol: 3e-5 } };

export const MATMUL_VARIANTS = ['vec4', 'register', 'shared'] as const;
export type MatmulVariant = (typeof MATMUL_VARIANTS)[number];
let chosenVariant: MatmulVariant | null = null;

/**
 * CPU rasterisers (lavapipe) get the barrier-free vec4 register-tiled kernel (8×8 outputs per
 * invocation); real GPUs get the shared-memory tiled one. DAWNGRAD_MATMUL=vec4|register|shared overrides.
 */
export function matmulVariant(): MatmulVariant {
  if (chosenVariant) return chosenVariant;
  const env = process.env.DAWNGRAD_MATMUL;
  if (env && !(MATMUL_VARIANTS as readonly string[]).includes(env)) throw new Error(`DAWNGRAD_MATMUL must be one of ${MATMUL_VARIANTS.join(', ')}, got '${env}'`);
  const rt = gpuRuntime();
  chosenVariant = (env as MatmulVariant | undefined) ?? (!rt || rt.isSoftware ? 'vec4' : 'shared');
  return chosenVariant;
}

/** Forces a kernel variant (tests, benchmarks); null goes back to the automatic choice. */
export function setMatmulVariant(variant: MatmulVariant | null): void {
  chosenVariant = variant;
}


/** out[..., m, n] = Σ_k a[..., m, k] b[..., k, n] in float64; a and b already broadcast over batch dims. */
function matmulCpu(a: View, b: View, out: View): void {
  const r = out.shape.length;
  const [M, N] = [out.shape[r - 2], out.shape[r - 1]];
  const K = a.shape[r - 1];
  const batchShape = out.shape.slice(0, r - 2);
  const A = cpuDataOf(a), B = cpuDataOf(b), C = cpuDataOf(out);
  const [ars, acs, brs, bcs] = [a.strides[r - 2], a.strides[r - 1], b.strides[r - 2], b.strides[r - 1]];
  const [ors, ocs] = [out.strides[r - 2], out.strides[r - 1]];
  forEachOffset(batchShape, [a.strides.slice(0, r - 2), b.strides.slice(0, r - 2), out.strides.slice(0, r - 2)], [a.offset, b.offset, out.offset], ([ao, bo, oo]) => {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += A[ao + m * ars + k * acs] * B[bo + k * brs + n * bcs];
        C[oo + m * ors + n * ocs] = acc;
      }
    }
  });
}

function matmulWebGpu(a: View, b: View, out: View): void {
  const r = out.shape.length;
  if (r > MAX_RANK) throw new OpError('matmul', `tensors of rank ${r} are not supported on webgpu (max ${MAX_RANK})`);
  const [M, N] = [out.shape[r - 2], out.shape[r - 1]];
  const K = a.shape[r - 1];
  const batch = numel(out.shape.slice(0, r - 2));
  if (M * N * batch === 0) return;
  if (batch > 65535) throw new OpError('matmul', `batch of ${batch} matrices exceeds 65535; reshape into fewer, larger matrices`);
  if (K === 0) {
    getBackend('webgpu').elementwise(ELEMENTWISE.copy, [{ scalar: 0 }], out, out.dtype);
    return;
  }
  const p = MM.pack({
    M, N, K, BRANK: r - 2,
    BSHAPE: out.shape.slice(0, r - 2), ABATCH: a.strides.slice(0, r - 2), BBATCH: b.strides.slice(0, r - 2), OBATCH: out.strides.slice(0, r - 2),
    AOFF: a.offset, BOFF: b.offset, OOFF: out.offset,
    ARS: a.strides[r - 2], ACS: a.strides[r - 1], BRS: b.strides[r - 2], BCS: b.strides[r - 1], ORS: out.strides[r - 2], OCS: out.strides[r - 1],
  });
  const variant = matmulVariant();
  if (variant === 'vec4') {
    const { config, groups } = matmulVec4Plan(a, b, out);
    launch('matmul', `matmul:vec4:${config.aLoad}:${config.bLoad}:${config.rows}x${config.cols}:${config.lanes}`, () => matmulVec4Source(config), p, [out, a, b], groups);
    return;
  }
  if (variant === 'shared') {
    const aKFast = a.strides[r - 1] === 1;
    launch('matmul', `matmul:shared:${aKFast ? 'k' : 'm'}`, () => matmulSharedSource(aKFast), p, [out, a, b], [Math.ceil(N / MM_SHARED_TILE), Math.ceil(M / MM_SHARED_TILE), batch]);
    return;
  }
  const per = MM_TILE * MM_WG;
  launch('matmul', 'matmul:f32', matmulSource, p, [out, a, b], [Math.ceil(N / per), Math.ceil(M / per), batch]);
}

function matmul2(a: Tensor, b: Tensor): Tensor {
  const [M, K] = a.shape.slice(-2);
  const [K2, N] = b.shape.slice(-2);
  if (K !== K2) {
    throw new OpError('matmul', `inner dimensions differ: ${shapeStr(a.shape)} @ ${shapeStr(b.shape)} (${K} vs ${K2}); the last dim of the first must equal the second-to-last of the second`);
  }
  if (a.dtype === 'int32' || b.dtype === 'int32') throw new OpError('matmul', `float tensors only, got ${a.dtype} @ ${b.dtype}; cast with .astype('float32')`);
  if (a.dtype !== b.dtype) throw new OpError('matmul', `dtypes differ: ${a.dtype} @ ${b.dtype}; cast one with .astype()`);
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = empty(a.device, a.dtype, [...batch, M, N]);
  (a.device === 'cpu' ? matmulCpu : matmulWebGpu)(broadcastView(a, [...batch, M, K]), broadcastView(b, [...batch, K, N]), out);
  return record('matmul', out, [a, b], (g, [sa, sb]) => [
    sumTo(inLayoutOf(sa, () => g.matmul(sb.transpose(-1, -2)), () => sb.matmul(g.transpose(-1, -2))), a.shape),
    b.rank === 2
      ? inLayoutOf(sb, () => matrixGradOfBatched(sa, g), () => matrixGradOfBatched(g, sa))
      : sumTo(inLayoutOf(sb, () => sa.transpose(-1, -2).matmul(g), () => g.transpose(-1, -2).matmul(sa)), b.shape),
  ], [a, b]);
}

/** The last two dims of t are stored column-major: t is a transposed view of a dense matrix. */
function isColumnMajor(t: Tensor): boolean {
  const r = t.rank;
  return t.shape[r - 2] > 1 && t.shape[r - 1] > 1 && t.strides[r - 2] === 1 && t.strides[r - 1] === t.shape[r - 2];
}

/**
 * An operand's gradient in the operand's memory order. For a transposed view (a linear layer's Wᵀ) the
 * transposed product is computed dense and handed back as its transpose, so the view's own backward
 * yields a dense gradient of the stored matrix and autograd need not copy it (the kernels read
 * transposed operands in place).
 */
function inLayoutOf(operand: Tensor, direct: () => Tensor, transposed: () => Tensor): Tensor {
  return isColumnMajor(operand) ? transposed().transpose(-1, -2) : direct();
}

/**
 * The gradient of a matrix b [K, N] shared by every batch of a [..., M, K]: Σ_batch aᵀ·g is one
 * matmul over the flattened rows, [K, rows] @ [rows, N], instead of a batched matmul and a sum over
 * the batch (a linear layer's weight gradient: one dispatch instead of two, no batch × K × N buffer).
 * With the arguments swapped it is that gradient transposed, [N, K].
 */
function matrixGradOfBatched(a: Tensor, g: Tensor): Tensor {
  const rows = (t: Tensor) => t.reshape([-1, t.shape[t.rank - 1]]);
  return rows(a).transpose(0, 1).matmul(rows(g));
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  argTensor('matmul', 'input', a);
  argTensor('matmul', 'other', b);
  sameDevice('matmul', [a, b]);
  if (a.rank === 0 || b.rank === 0) throw new OpError('matmul', `both operands need at least one dimension, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}; use mul for scalars`);
  const a2 = a.rank === 1 ? a.unsqueeze(0) : a;
  const b2 = b.rank === 1 ? b.unsqueeze(1) : b;
  let y = matmul2(a2, b2);
  if (a.rank === 1) y = y.squeeze(-2);
  if (b.rank === 1) y = y.squeeze(-1);
  return y;
}

declare module '../../core/tensor.js' {
  interface Tensor {
    matmul(other: Tensor): Tensor;
  }
}
Tensor.prototype.matmul = function (other: Tensor) { return matmul(this, other); };
