// Matrix multiplication with NumPy semantics: 1-D operands, batch broadcasting, as an op record: the
// float64 cpu reference and three webgpu variants (family 'matmul'); the WGSL is in kernels.ts (4×4
// register-tiled, shared-memory tiled) and vec4.ts (the vec4 register-tiled kernel lavapipe uses).
import type { View } from '../../core/backend.js';
import { cpuDataOf, forEachOffset } from '../../core/cpu.js';
import { defineKernel, defineOp, dispatch, type Hardware, type Variant } from '../../core/op.js';
import { broadcastShapes, numel, OpError, shapeStr } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { launch } from '../../core/webgpu/launch.js';
import { MAX_RANK, storageTypeOf } from '../../core/webgpu/wgsl.js';
import { full } from '../creation.js';
import { broadcastView, empty, sameDevice, sumTo, type Tolerance } from '../util.js';
import { MM, MM_SHARED_TILE, MM_TILE, MM_WG, matmulSharedSource, matmulSource } from './kernels.js';
import { matmulVec4Plan, matmulVec4Source } from './vec4.js';
import { argTensor } from '../../core/args.js';

/**
 * webgpu vs cpu float64 in the gradient checks: K-long dot products round more than elementwise ops.
 * float16: f32 accumulation of f16 products, the result rounded once to f16 (2^-11 relative), plus
 * cancellation in the sums (hence atol).
 */
export const MATMUL_TOLERANCE: { gpu: Tolerance; float16: Tolerance } = {
  gpu: { rtol: 3e-4, atol: 3e-5 },
  float16: { rtol: 1e-2, atol: 1e-2 },
};

/** out = a·b; a and b already broadcast over out's batch dims. */
interface MatmulArgs {
  readonly a: View;
  readonly b: View;
  readonly out: View;
}

/** out[..., m, n] = Σ_k a[..., m, k] b[..., k, n] in float64. */
function matmulCpu({ a, b, out }: MatmulArgs): void {
  const r = out.shape.length;
  const [M, N] = [out.shape[r - 2], out.shape[r - 1]];
  const K = a.shape[r - 1];
  const batchShape = out.shape.slice(0, r - 2);
  const A = cpuDataOf(a),
    B = cpuDataOf(b),
    C = cpuDataOf(out);
  const [ars, acs, brs, bcs] = [a.strides[r - 2], a.strides[r - 1], b.strides[r - 2], b.strides[r - 1]];
  const [ors, ocs] = [out.strides[r - 2], out.strides[r - 1]];
  forEachOffset(
    batchShape,
    [a.strides.slice(0, r - 2), b.strides.slice(0, r - 2), out.strides.slice(0, r - 2)],
    [a.offset, b.offset, out.offset],
    ([ao, bo, oo]) => {
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += A[ao + m * ars + k * acs] * B[bo + k * brs + n * bcs];
          C[oo + m * ors + n * ocs] = acc;
        }
      }
    },
  );
}

/** The params every matmul kernel reads: sizes, batch dims, each operand's offset and strides. */
function matmulParams({ a, b, out }: MatmulArgs): Uint32Array {
  const r = out.shape.length;
  return MM.pack({
    M: out.shape[r - 2],
    N: out.shape[r - 1],
    K: a.shape[r - 1],
    BRANK: r - 2,
    BSHAPE: out.shape.slice(0, r - 2),
    ABATCH: a.strides.slice(0, r - 2),
    BBATCH: b.strides.slice(0, r - 2),
    OBATCH: out.strides.slice(0, r - 2),
    AOFF: a.offset,
    BOFF: b.offset,
    OOFF: out.offset,
    ARS: a.strides[r - 2],
    ACS: a.strides[r - 1],
    BRS: b.strides[r - 2],
    BCS: b.strides[r - 1],
    ORS: out.strides[r - 2],
    OCS: out.strides[r - 1],
  });
}

/** One variant's pipeline and workgroup grid for these operands. */
interface MatmulPlan {
  key: string;
  source: () => string;
  groups: [number, number, number];
}

/** Output rows, columns and matrices. */
function sizes({ out }: MatmulArgs): { M: number; N: number; batch: number } {
  const r = out.shape.length;
  return { M: out.shape[r - 2], N: out.shape[r - 1], batch: numel(out.shape.slice(0, r - 2)) };
}

/**
 * A webgpu matmul variant: it fits when the batch rank fits the params block and its grid the
 * adapter's workgroup limit (the batch is the grid's z).
 */
function matmulVariant(
  name: string,
  plan: (args: MatmulArgs) => MatmulPlan,
  prefer?: (args: MatmulArgs, hw: Hardware) => boolean,
): Variant<MatmulArgs> {
  // fits and run of one dispatch share its plan (the args object is made per dispatch).
  const plans = new WeakMap<MatmulArgs, MatmulPlan>();
  const planOf = (args: MatmulArgs) => {
    let p = plans.get(args);
    if (!p) plans.set(args, (p = plan(args)));
    return p;
  };
  return {
    name,
    fits: (args, hw) =>
      args.out.shape.length <= MAX_RANK && planOf(args).groups.every((g) => g <= hw.maxWorkgroupsPerDimension),
    prefer,
    run: (args) => {
      const { key, source, groups } = planOf(args);
      launch('matmul', key, source, matmulParams(args), [args.out, args.a, args.b], groups);
    },
  };
}

/**
 * CPU rasterisers (lavapipe, hw.software) get the barrier-free vec4 register-tiled kernel (8×8 outputs
 * per invocation); real GPUs the shared-memory tiled one. 'register', the older 4×4 register-tiled
 * kernel, runs when forced (configure({ variants: { matmul: 'register' } })).
 */
const matmulKernel = defineKernel<MatmulArgs>({
  name: 'matmul',
  family: 'matmul',
  cpu: matmulCpu,
  float16: true,
  webgpu: [
    matmulVariant(
      'vec4',
      ({ a, b, out }) => {
        const { config, groups } = matmulVec4Plan(a, b, out);
        return {
          key: `matmul:vec4:${config.t}:${config.aLoad}:${config.bLoad}:${config.rows}x${config.cols}:${config.lanes}`,
          source: () => matmulVec4Source(config),
          groups,
        };
      },
      (_, hw) => hw.software,
    ),
    matmulVariant(
      'register',
      (args) => {
        const { M, N, batch } = sizes(args);
        const per = MM_TILE * MM_WG;
        const t = storageTypeOf(args.out.dtype);
        return {
          key: `matmul:register:${t}`,
          source: () => matmulSource(t),
          groups: [Math.ceil(N / per), Math.ceil(M / per), batch],
        };
      },
      () => false,
    ),
    matmulVariant('shared', (args) => {
      const { M, N, batch } = sizes(args);
      const aKFast = args.a.strides[args.a.shape.length - 1] === 1;
      const t = storageTypeOf(args.out.dtype);
      return {
        key: `matmul:shared:${t}:${aKFast ? 'k' : 'm'}`,
        source: () => matmulSharedSource(aKFast, t),
        groups: [Math.ceil(N / MM_SHARED_TILE), Math.ceil(M / MM_SHARED_TILE), batch],
      };
    }),
  ],
});

/** A 1-D operand as a matrix: a row vector on the left, a column vector on the right. */
const asMatrices = (a: Tensor, b: Tensor): [Tensor, Tensor] => [
  a.rank === 1 ? a.unsqueeze(0) : a,
  b.rank === 1 ? b.unsqueeze(1) : b,
];
const matrixShape = (t: Tensor, side: 'left' | 'right'): readonly number[] =>
  t.rank !== 1 ? t.shape : side === 'left' ? [1, t.shape[0]] : [t.shape[0], 1];

const matmulOp = defineOp({
  name: 'matmul',
  autocast: 'lower',
  check: (a: Tensor, b: Tensor) => {
    argTensor('matmul', 'input', a);
    argTensor('matmul', 'other', b);
    sameDevice('matmul', [a, b]);
    if (a.rank === 0 || b.rank === 0)
      throw new OpError(
        'matmul',
        `both operands need at least one dimension, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}; use mul for scalars`,
      );
    const [as, bs] = [matrixShape(a, 'left'), matrixShape(b, 'right')];
    const [K, K2] = [as[as.length - 1], bs[bs.length - 2]];
    if (K !== K2) {
      throw new OpError(
        'matmul',
        `inner dimensions differ: ${shapeStr(as)} @ ${shapeStr(bs)} (${K} vs ${K2}); the last dim of the first must equal the second-to-last of the second`,
      );
    }
    if (a.dtype === 'int32' || b.dtype === 'int32')
      throw new OpError('matmul', `float tensors only, got ${a.dtype} @ ${b.dtype}; cast with .astype('float32')`);
    if (a.dtype !== b.dtype)
      throw new OpError('matmul', `dtypes differ: ${a.dtype} @ ${b.dtype}; cast one with .astype()`);
    broadcastShapes('matmul', as.slice(0, -2), bs.slice(0, -2));
  },
  forward: (a: Tensor, b: Tensor) => {
    const [a2, b2] = asMatrices(a, b);
    const [M, K] = a2.shape.slice(-2);
    const N = b2.shape[b2.rank - 1];
    const batch = broadcastShapes('matmul', a2.shape.slice(0, -2), b2.shape.slice(0, -2));
    const shape = [...batch, M, N];
    // An empty sum (K = 0) is 0.
    const out = K === 0 ? full(shape, 0, { device: a.device, dtype: a.dtype }) : empty(a.device, a.dtype, shape);
    if (K > 0 && out.size > 0)
      dispatch(matmulKernel, a.device, {
        a: broadcastView(a2, [...batch, M, K]),
        b: broadcastView(b2, [...batch, K, N]),
        out,
      });
    return {
      out,
      inputs: [a2, b2],
      saved: [a2, b2],
      after: (y) => {
        const rows = a.rank === 1 ? y.squeeze(-2) : y;
        return b.rank === 1 ? rows.squeeze(-1) : rows;
      },
    };
  },
  backward: (g, [sa, sb]) => [
    sumTo(
      inLayoutOf(
        sa,
        () => g.matmul(sb.transpose(-1, -2)),
        () => sb.matmul(g.transpose(-1, -2)),
      ),
      sa.shape,
    ),
    sb.rank === 2
      ? inLayoutOf(
          sb,
          () => matrixGradOfBatched(sa, g),
          () => matrixGradOfBatched(g, sa),
        )
      : sumTo(
          inLayoutOf(
            sb,
            () => sa.transpose(-1, -2).matmul(g),
            () => g.transpose(-1, -2).matmul(sa),
          ),
          sb.shape,
        ),
  ],
  kernels: [matmulKernel],
  tolerance: { float32: MATMUL_TOLERANCE.gpu, float16: MATMUL_TOLERANCE.float16 },
});

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

/** a·b with NumPy semantics: a 1-D operand is a vector (its dim dropped from the result), batch dims broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return matmulOp(a, b);
}

declare module '../../core/tensor.js' {
  interface Tensor {
    matmul(other: Tensor): Tensor;
  }
}
Tensor.prototype.matmul = function (other: Tensor) {
  return matmul(this, other);
};
