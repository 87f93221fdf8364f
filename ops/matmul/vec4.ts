// The vec4 register-tiled matmul for CPU rasterisers (lavapipe). Lavapipe runs a workgroup as 8-wide
// SIMD on one CPU thread and loads storage buffers one lane and one component at a time, each with a
// bounds check (~8 instructions), while a multiply-add is one. So the kernel does as few loads per
// multiply-add as registers allow: each invocation accumulates `rows` × `cols` outputs (8×8), and every
// load is a vec4 (one base and bounds lookup per four values) along whichever axis the operand is
// contiguous in. That is also how the backward pass's transposed operands (g·Wᵀ, Xᵀ·g) are read in
// place. No barriers, no workgroup memory.
import type { View } from '../../core/backend.js';
import { header } from '../../core/webgpu/uniforms.js';
import { storageTypeOf, unravel, type WType } from '../../core/webgpu/wgsl.js';
import { matmulBindings, MM } from './kernels.js';

/**
 * How an operand is read:
 * - 'k4': vec4 along k (A row-major, or B a transposed view), four k steps per load;
 * - 'x4': vec4 along the output axis (A a transposed view: along m; B row-major: along n);
 * - 'scalar': one element per load (any strides).
 */
export type OperandLoad = 'k4' | 'x4' | 'scalar';

export interface Vec4TileConfig {
  aLoad: OperandLoad;
  bLoad: OperandLoad;
  /** Output rows per invocation (a multiple of 4 when aLoad is 'x4'). */
  rows: number;
  /** Output columns per invocation (4 or 8). */
  cols: number;
  /** Invocations per workgroup (a multiple of lavapipe's 8 SIMD lanes). */
  lanes: number;
  /** The operands' element type (f16 is widened to f32 on load; accumulation is in f32). */
  t: WType;
}

const range = (n: number) => [...Array(n).keys()];

export function matmulVec4Source({ aLoad, bLoad, rows, cols, lanes, t }: Vec4TileConfig): string {
  const R = range(rows);
  const H = range(cols / 4); // vec4 column groups per invocation
  const step = aLoad === 'k4' || bLoad === 'k4' ? 4 : 1;
  const S = range(step);
  // Per-invocation setup: element (or vec4) offsets of each row of A and each column of B.
  const aSetup =
    aLoad === 'x4'
      ? `let ra = (ao + min(m0, M - ${rows}u) * ars) / 4u; let acs4 = acs / 4u;`
      : R.map(
          (i) =>
            `let ra${i} = ${aLoad === 'k4' ? '(' : ''}ao + min(m0 + ${i}u, M - 1u) * ars${aLoad === 'k4' ? ') / 4u' : ''};`,
        ).join(' ');
  const bSetup =
    bLoad === 'x4'
      ? `${H.map((h) => `let cb${h} = (bo + min(n0 + ${4 * h}u, N - 4u) * bcs) / 4u;`).join(' ')} let brs4 = brs / 4u;`
      : range(cols)
          .map(
            (j) =>
              `let cb${j} = ${bLoad === 'k4' ? '(' : ''}bo + min(n0 + ${j}u, N - 1u) * bcs${bLoad === 'k4' ? ') / 4u' : ''};`,
          )
          .join(' ');
  // Loads for k..k+step-1, defining a{i}_{s} (f32) and b{s} (vec4 over the lane's 4 columns).
  const aLoads =
    aLoad === 'k4'
      ? R.map((i) => `let a${i} = vec4<f32>(A[ra${i} + k / 4u]);`).join(' ') +
        ' ' +
        R.map((i) => S.map((s) => `let a${i}_${s} = a${i}[${s}];`).join(' ')).join(' ')
      : aLoad === 'x4'
        ? S.map(
            (s) =>
              range(rows / 4)
                .map((g) => `let ag${g}_${s} = vec4<f32>(A[ra + (k + ${s}u) * acs4 + ${g}u]);`)
                .join(' ') +
              ' ' +
              R.map((i) => `let a${i}_${s} = ag${i >> 2}_${s}[${i & 3}];`).join(' '),
          ).join(' ')
        : S.map((s) => R.map((i) => `let a${i}_${s} = f32(A[ra${i} + (k + ${s}u) * acs]);`).join(' ')).join(' ');
  const bLoads =
    bLoad === 'k4'
      ? `${range(cols)
          .map((j) => `let q${j} = vec4<f32>(B[cb${j} + k / 4u]);`)
          .join(' ')} ${S.map((s) =>
          H.map(
            (h) =>
              `let b${s}_${h} = vec4<f32>(${range(4)
                .map((j) => `q${4 * h + j}[${s}]`)
                .join(', ')});`,
          ).join(' '),
        ).join(' ')}`
      : bLoad === 'x4'
        ? S.map((s) => H.map((h) => `let b${s}_${h} = vec4<f32>(B[cb${h} + (k + ${s}u) * brs4]);`).join(' ')).join(' ')
        : S.map((s) =>
            H.map(
              (h) =>
                `let b${s}_${h} = vec4<f32>(${range(4)
                  .map((j) => `f32(B[cb${4 * h + j} + (k + ${s}u) * brs])`)
                  .join(', ')});`,
            ).join(' '),
          ).join(' ');
  const fmas = S.map((s) =>
    R.map((i) => H.map((h) => `acc${i}_${h} = fma(vec4<f32>(a${i}_${s}), b${s}_${h}, acc${i}_${h});`).join(' ')).join(
      ' ',
    ),
  ).join('\n    ');
  const elem = (load: OperandLoad) => (load === 'scalar' ? t : `vec4<${t}>`);
  return `${header(matmulBindings(t, elem(aLoad), elem(bLoad)))}
@compute @workgroup_size(${lanes}) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = pu(${MM.M}u); let N = pu(${MM.N}u); let K = pu(${MM.K}u);
  var ao = pu(${MM.AOFF}u); var bo = pu(${MM.BOFF}u); var oo = pu(${MM.OOFF}u);
  ${unravel('wid.z', MM.BRANK, MM.BSHAPE, [
    ['ao', MM.ABATCH],
    ['bo', MM.BBATCH],
    ['oo', MM.OBATCH],
  ])}
  let ars = pu(${MM.ARS}u); let acs = pu(${MM.ACS}u); let brs = pu(${MM.BRS}u); let bcs = pu(${MM.BCS}u);
  let m0 = wid.y * ${rows}u;
  let n0 = wid.x * ${lanes * cols}u + lid.x * ${cols}u;
  // Rows and columns past the edge are clamped for loading and skipped when storing.
  ${aSetup}
  ${bSetup}
  ${R.map((i) => H.map((h) => `var acc${i}_${h} = vec4<f32>(0.0);`).join(' ')).join(' ')}
  for (var k = 0u; k < K; k += ${step}u) {
    ${aLoads}
    ${bLoads}
    ${fmas}
  }
  let ors = pu(${MM.ORS}u); let ocs = pu(${MM.OCS}u);
  // With aLoad 'x4' the last group's rows were clamped as a block: row m0 + i holds row mr + i.
  let mr = ${aLoad === 'x4' ? `min(m0, M - ${rows}u)` : 'm0'};
  let accs = array<vec4<f32>, ${rows * H.length}>(${R.map((i) => H.map((h) => `acc${i}_${h}`).join(', ')).join(', ')});
  for (var i = 0u; i < ${rows}u; i++) {
    let m = mr + i;
    if (m < m0 || m >= M) { continue; }
    for (var h = 0u; h < ${H.length}u; h++) {
      // With bLoad 'x4' a group past the edge was clamped as a block of 4: it holds columns nr..nr+3.
      let nh = n0 + 4u * h;
      let nr = ${bLoad === 'x4' ? 'min(nh, N - 4u)' : 'nh'};
      for (var j = 0u; j < 4u; j++) {
        let n = nr + j;
        if (n >= nh && n < N) { C[oo + m * ors + n * ocs] = ${t}(accs[i * ${H.length}u + h][j]); }
      }
    }
  }
}`;
}

/**
 * Every offset the operand is read from is a multiple of 4 elements, so it can be bound as vec4s (16
 * bytes of f32, 8 of f16: the same element alignment for both types).
 */
const aligned = (v: View, batchRank: number, ...more: number[]) =>
  [v.offset, ...v.strides.slice(0, batchRank), ...more].every((x) => x % 4 === 0);

/** The configuration and workgroup grid for out = a·b (views already broadcast over batch dims). */
export function matmulVec4Plan(
  a: View,
  b: View,
  out: View,
): { config: Vec4TileConfig; groups: [number, number, number] } {
  const r = out.shape.length;
  const [M, N] = [out.shape[r - 2], out.shape[r - 1]];
  const K = a.shape[r - 1];
  const [ars, acs, brs, bcs] = [a.strides[r - 2], a.strides[r - 1], b.strides[r - 2], b.strides[r - 1]];
  const batch = out.shape.slice(0, r - 2).reduce((x, y) => x * y, 1);
  const rows = M >= 8 ? 8 : M >= 4 ? 4 : M >= 2 ? 2 : 1;
  const aLoad: OperandLoad =
    acs === 1 && aligned(a, r - 2, K, ars)
      ? 'k4'
      : ars === 1 && rows % 4 === 0 && aligned(a, r - 2, M, acs)
        ? 'x4'
        : 'scalar';
  const bLoad: OperandLoad =
    bcs === 1 && aligned(b, r - 2, N, brs) ? 'x4' : brs === 1 && aligned(b, r - 2, K, bcs) ? 'k4' : 'scalar';
  const cols = 8;
  // Small workgroups (one or two 8-lane SIMD batches): more of them spread better over lavapipe's
  // threads, and 32 or 64 lanes measured slower at every probed shape.
  const lanes = N <= 8 * cols ? 8 : 16;
  return {
    config: { aLoad, bLoad, rows, cols, lanes, t: storageTypeOf(out.dtype) },
    groups: [Math.ceil(N / (lanes * cols)), Math.ceil(M / rows), batch],
  };
}
