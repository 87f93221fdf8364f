// Rotary position embeddings (HF rotate_half layout) with partial rotary, fused forward and backward
// (WGSL in kernels.ts; the cpu path is the same maths in float64):
// - applyRotary / applyRotaryQK: one dispatch rotates x (or q and k together) read through strides,
//   one dispatch gives the input gradients and, when the tables need them, the cos/sin gradients
//   reduced over the dims the tables broadcast across;
// - rotaryTables: cos/sin from a frequency vector θ (CLEX) in one dispatch, dθ in one.
import type { View } from '../../core/backend.js';
import { recordJoint } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { defineJointOp, defineKernel, dispatch, type Variant } from '../../core/op.js';
import { numel, OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { MAX_LEAD, RO, rotarySource, TB, tableSource, type RotaryVariant } from './kernels.js';
import { tensor } from '../creation.js';
import { cpuData, emptyLike, outData, withContiguous } from '../kernelio.js';
import { empty, sumTo } from '../util.js';

export interface RotaryOptions {
  /** How many leading dims of the last axis rotate (even, ≤ head dim); default cos.shape[-1]. */
  rotaryDim?: number;
}

/**
 * How one rotary dispatch walks its inputs: `grid` (per leading dim) is split over invocations where
 * `parallel`, the other dims are looped inside an invocation (the dims the tables broadcast across,
 * when their gradients are summed there). Table strides are 0 where they broadcast.
 */
interface Plan {
  D: number;
  R: number;
  grid: number[];
  parallel: boolean[];
  cosStrides: number[];
  sinStrides: number[];
}

/** Strides of a table [..., R] broadcast against leading dims `lead` (0 where it broadcasts), and of its last axis. */
function tableStrides(t: View, lead: readonly number[]): number[] {
  const extra = lead.length + 1 - t.shape.length;
  return [...lead, 1].map((_, d) => (d < extra || t.shape[d - extra] === 1 ? 0 : t.strides[d - extra]));
}

function plan(xs: readonly View[], cos: View, sin: View, R: number, reduceTables: boolean): Plan {
  const lead = xs[0].shape.length - 1;
  const grid = Array.from({ length: lead }, (_, d) => Math.max(...xs.map((x) => x.shape[d])));
  const cosStrides = tableStrides(cos, grid),
    sinStrides = tableStrides(sin, grid);
  const extent = (t: View, d: number) => t.shape[d - (lead + 1 - t.shape.length)] ?? 1;
  const parallel = grid.map((_, d) => !reduceTables || extent(cos, d) > 1 || extent(sin, d) > 1);
  return { D: xs[0].shape[lead], R, grid: grid.map((e, d) => (parallel[d] ? e : 1)), parallel, cosStrides, sinStrides };
}

/** The shape and memory layout of an op input, which its output and its gradient copy. */
type Layout = Pick<View, 'shape' | 'strides'>;

/** OORDER's word for a dense output: each lead dim's memory position (0 = outermost) in 3 bits. */
function packedOrder(o: Tensor): number {
  const lead = Array.from({ length: o.rank - 1 }, (_, d) => d).sort((a, b) => o.strides[b] - o.strides[a] || a - b);
  return lead.reduce((word, dim, position) => word | (position << (3 * dim)), 0);
}

/**
 * One rotary pass: 'forward' rotates xs into outs; 'backward' rotates the gradients gs back into outs
 * and, when dcos/dsin are given, also writes the table gradients over the plan's grid × R (summed over
 * the looped dims; xs are then the forward's inputs, else the gradients again).
 */
interface RotateArgs {
  readonly direction: 'forward' | 'backward';
  readonly xs: readonly Tensor[];
  readonly gs: readonly Tensor[] | null;
  readonly cos: Tensor;
  readonly sin: Tensor;
  readonly plan: Plan;
  readonly outs: readonly Tensor[];
  readonly dcos: Tensor | null;
  readonly dsin: Tensor | null;
}

function rotateCpu({ direction, xs, gs, cos, sin, plan: p, outs, dcos, dsin }: RotateArgs): void {
  const { D, R } = p;
  const lead = p.grid.length;
  const reads = gs ?? xs;
  const cd = cpuData(cos).data,
    sd = cpuData(sin).data;
  const [dc, ds] = [dcos && outData(dcos), dsin && outData(dsin)];
  dc?.fill(0);
  ds?.fill(0);
  const cl = p.cosStrides[lead],
    sl = p.sinStrides[lead],
    h = R / 2;
  xs.forEach((x, i) => {
    const rd = cpuData(reads[i]).data,
      xd = cpuData(x).data,
      o = outData(outs[i]),
      os = outs[i].strides;
    const shape = x.shape.slice(0, lead),
      rows = numel(shape);
    const idx = new Array<number>(lead).fill(0);
    for (let row = 0; row < rows; row++) {
      let ro = reads[i].offset,
        xo = x.offset,
        co = cos.offset,
        so = sin.offset,
        ob = 0,
        cell = 0;
      for (let d = 0; d < lead; d++) {
        ob += idx[d] * os[d];
        ro += idx[d] * reads[i].strides[d];
        xo += idx[d] * x.strides[d];
        co += idx[d] * p.cosStrides[d];
        so += idx[d] * p.sinStrides[d];
        cell = cell * p.grid[d] + (p.parallel[d] ? idx[d] : 0);
      }
      const rl = reads[i].strides[lead],
        xl = x.strides[lead];
      for (let j = 0; j < D; j++) {
        const v = rd[ro + j * rl];
        if (j >= R) {
          o[ob + j] = v;
          continue;
        }
        const pj = j < h ? j + h : j - h;
        const partner = rd[ro + pj * rl];
        // forward: y_j = x_j c_j ∓ x_p s_j; backward: dx_j = g_j c_j ± g_p s_p (minus on the first half).
        o[ob + j] =
          direction === 'forward'
            ? v * cd[co + j * cl] + (j < h ? -partner : partner) * sd[so + j * sl]
            : v * cd[co + j * cl] + (j < h ? partner : -partner) * sd[so + pj * sl];
        if (dc && ds) {
          const xv = xd[xo + j * xl],
            xp = xd[xo + pj * xl];
          dc[cell * R + j] += v * xv;
          ds[cell * R + j] += v * (j < h ? -xp : xp);
        }
      }
      for (let d = lead - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  });
}

/** One invocation per rotary pair (or pass-through element) of a grid cell; up to MAX_LEAD leading dims (the params' arrays). */
const rotateVariant: Variant<RotateArgs> = {
  name: 'item',
  fits: ({ plan }) =>
    plan.grid.length <= MAX_LEAD ||
    `tensors of rank ${plan.grid.length + 1} exceed its maximum of ${MAX_LEAD + 1}; merge leading dims with reshape`,
  run: ({ direction, xs, gs, cos, sin, plan: p, outs, dcos, dsin }) => {
    const { D, R } = p;
    const lead = p.grid.length;
    const reads = gs ?? xs;
    const cells = numel(p.grid);
    const slots = R / 2 + (D - R);
    const perInput = (vs: readonly View[], of: (v: View) => readonly number[]) =>
      vs.flatMap((v) => Array.from({ length: MAX_LEAD }, (_, d) => (d < lead ? of(v)[d] : 0)));
    const params = RO.pack({
      N: cells * slots,
      D,
      R,
      LEAD: lead,
      SLOTS: slots,
      PAR: p.parallel.reduce((m, par, d) => (par ? m | (1 << d) : m), 0),
      GRID: p.grid,
      COFF: cos.offset,
      SOFF: sin.offset,
      CLAST: p.cosStrides[lead],
      SLAST: p.sinStrides[lead],
      CSTR: p.cosStrides.slice(0, lead),
      SSTR: p.sinStrides.slice(0, lead),
      XOFF: xs.map((x) => x.offset),
      GOFF: reads.map((g) => g.offset),
      OORDER: outs.map(packedOrder),
      SHAPE: perInput(xs, (x) => x.shape),
      XSTR: perInput(xs, (x) => x.strides),
      GSTR: perInput(reads, (g) => g.strides),
    });
    const tables = dcos !== null && dsin !== null;
    const v: RotaryVariant = { direction, inputs: xs.length, tableGrads: tables };
    const bound = [
      ...outs,
      ...(tables ? [dcos, dsin] : []),
      ...(direction === 'forward' || tables ? xs : []),
      ...(gs ?? []),
      cos,
      sin,
    ];
    launch(
      direction === 'forward' ? 'applyRotary' : 'applyRotaryBackward',
      `fused:rotary:${direction}:${xs.length}:${tables}`,
      () => rotarySource(v),
      params,
      bound,
      itemGrid(cells * slots),
    );
  },
};

const rotaryKernel = defineKernel<RotateArgs>({
  name: 'applyRotary',
  family: 'rotary',
  cpu: rotateCpu,
  webgpu: [rotateVariant],
});
const rotaryBackwardKernel = defineKernel<RotateArgs>({
  name: 'applyRotaryBackward',
  family: 'rotary',
  cpu: rotateCpu,
  webgpu: [rotateVariant],
});

/**
 * One rotary pass over `xs`, each output dense in the memory order of `layouts[i]` (the op's input,
 * so its gradient flows back through the input's view without a copy): 'forward' rotates xs;
 * 'backward' rotates the gradients `gs` back and, when `tables` is set, also returns dcos/dsin over
 * the plan's grid × R (summed over the looped dims).
 */
function rotate(
  direction: 'forward' | 'backward',
  xs: readonly Tensor[],
  gs: readonly Tensor[] | null,
  cos: Tensor,
  sin: Tensor,
  R: number,
  tables: boolean,
  layouts: readonly Layout[],
): { outs: Tensor[]; dcos: Tensor | null; dsin: Tensor | null } {
  const p = plan(xs, cos, sin, R, tables);
  const outs = xs.map((x, i) =>
    emptyLike({ device: x.device, dtype: x.dtype, shape: layouts[i].shape, strides: layouts[i].strides }),
  );
  const gridShape = [...p.grid, R];
  const dcos = tables ? empty(cos.device, cos.dtype, gridShape) : null;
  const dsin = tables ? empty(sin.device, sin.dtype, gridShape) : null;
  if (numel(p.grid) > 0)
    dispatch(direction === 'forward' ? rotaryKernel : rotaryBackwardKernel, xs[0].device, {
      direction,
      xs,
      gs,
      cos,
      sin,
      plan: p,
      outs,
      dcos,
      dsin,
    });
  return { outs, dcos, dsin };
}

/** The rotary dim: opts.rotaryDim, else the tables' last dim. */
const rotaryDim = (cos: Tensor, opts: RotaryOptions): number => opts.rotaryDim ?? cos.shape[cos.rank - 1];

/** The argument checks shared by applyRotary and applyRotaryQK. */
function checkArgs(op: string, xs: readonly [string, Tensor][], cos: Tensor, sin: Tensor, opts: RotaryOptions): void {
  for (const t of [...xs.map(([, x]) => x), cos, sin]) t.assertAlive(op);
  const [, x0] = xs[0];
  for (const [name, x] of xs) {
    if (!isFloat(x.dtype) || x.rank < 1)
      throw new OpError(op, `${name} must be a float tensor of rank ≥ 1, got ${x.dtype} ${shapeStr(x.shape)}`);
    if (
      x.rank !== x0.rank ||
      x.shape[x.rank - 1] !== x0.shape[x0.rank - 1] ||
      x.device !== x0.device ||
      x.dtype !== x0.dtype
    ) {
      throw new OpError(
        op,
        `${name} ${x.dtype} ${shapeStr(x.shape)} on ${x.device} must match ${xs[0][0]} ${x0.dtype} ${shapeStr(x0.shape)} on ${x0.device} in rank, last dim, dtype and device`,
      );
    }
  }
  const D = x0.shape[x0.rank - 1];
  const R = rotaryDim(cos, opts);
  if (!Number.isInteger(R) || R % 2 !== 0 || R <= 0 || R > D)
    throw new OpError(op, `rotaryDim must be a positive even integer ≤ head dim ${D}, got ${R}`);
  for (const [xname, x] of xs) {
    const tableShape = [...x.shape.slice(0, -1), R];
    for (const [name, t] of [
      ['cos', cos],
      ['sin', sin],
    ] as const) {
      if (t.device !== x.device || t.dtype !== x.dtype)
        throw new OpError(op, `${name} is ${t.dtype} on ${t.device} but ${xname} is ${x.dtype} on ${x.device}`);
      const fits =
        t.rank >= 1 &&
        t.rank <= tableShape.length &&
        t.shape.every((d, i) => d === 1 || d === tableShape[tableShape.length - t.rank + i]);
      if (!fits || t.shape[t.rank - 1] !== R) {
        throw new OpError(
          op,
          `${name} ${shapeStr(t.shape)} must broadcast to ${shapeStr(tableShape)} (${xname} ${shapeStr(x.shape)} with rotaryDim ${R})`,
        );
      }
    }
  }
}

/** A table gradient over the plan's grid, as the table's shape (a view when no dims were left to sum). */
function toTableShape(g: Tensor, table: Tensor): Tensor {
  return numel(table.shape) === g.size
    ? g.reshape(table.shape)
    : sumTo(g, [...new Array<number>(g.rank - table.rank).fill(1), ...table.shape]).reshape(table.shape);
}

/** Rotates xs (one forward dispatch) and records one joint node whose backward is one dispatch too. */
function rotaryOp(op: string, xs: readonly Tensor[], cos: Tensor, sin: Tensor, R: number): Tensor[] {
  const needTables = cos.requiresGrad || sin.requiresGrad;
  const layouts: Layout[] = xs.map((x) => ({ shape: x.shape, strides: x.strides }));
  return withContiguous(
    [...xs, cos, sin],
    (cs) => {
      const xc = cs.slice(0, xs.length),
        [cc, sc] = cs.slice(xs.length);
      const { outs } = rotate('forward', xc, null, cc, sc, R, false, layouts);
      return recordJoint(
        op,
        outs,
        [...xs, cos, sin],
        (gs, saved) => {
          const [cSaved, sSaved, ...xSaved] = saved;
          const present = gs.flatMap((g, i) => (g ? [i] : []));
          return withContiguous(
            present.map((i) => gs[i] as Tensor),
            (gc) => {
              const {
                outs: dxs,
                dcos,
                dsin,
              } = rotate(
                'backward',
                needTables ? present.map((i) => xSaved[i]) : gc,
                gc,
                cSaved,
                sSaved,
                R,
                needTables,
                present.map((i) => layouts[i]),
              );
              const dx: (Tensor | null)[] = xs.map(() => null);
              present.forEach((i, k) => {
                dx[i] = dxs[k];
              });
              return [...dx, dcos ? toTableShape(dcos, cos) : null, dsin ? toTableShape(dsin, sin) : null];
            },
            { lastAxisOnly: true },
          );
        },
        needTables ? [cc, sc, ...xc] : [cc, sc],
      );
    },
    { lastAxisOnly: true },
  );
}

/** webgpu float32 vs cpu float64: the gradcheckDevices defaults the rotary tests pass at. */
const ROTARY_TOLERANCE = { float32: { atol: 1e-5, rtol: 1e-4 } };

const applyRotaryOp = defineJointOp({
  name: 'applyRotary',
  check: (x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    checkArgs('applyRotary', [['x', x]], cos, sin, opts),
  forward: (x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    rotaryOp('applyRotary', [x], cos, sin, rotaryDim(cos, opts)),
  kernels: [rotaryKernel, rotaryBackwardKernel],
  tolerance: ROTARY_TOLERANCE,
});

const applyRotaryQKOp = defineJointOp({
  name: 'applyRotaryQK',
  check: (q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    checkArgs(
      'applyRotaryQK',
      [
        ['q', q],
        ['k', k],
      ],
      cos,
      sin,
      opts,
    ),
  forward: (q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    rotaryOp('applyRotaryQK', [q, k], cos, sin, rotaryDim(cos, opts)),
  kernels: [rotaryKernel, rotaryBackwardKernel],
  tolerance: ROTARY_TOLERANCE,
});

/**
 * x' = x·cos + rotate_half(x)·sin on the first rotaryDim dims of x's last axis (the rest pass
 * through). cos/sin are [..., rotaryDim] broadcastable to x.shape[:-1] (e.g. [T, R] for x [B, H, T, D]:
 * one row per position). Differentiable in x, cos and sin. x may be a strided view (read in place);
 * the output and x's gradient are dense in x's memory order (no copy to undo the view that made x).
 */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions = {}): Tensor {
  return applyRotaryOp(x, cos, sin, opts)[0];
}

/**
 * applyRotary on the queries and keys of one attention call at once (one dispatch forward, one
 * backward for both, table gradients included): q [..., Hq, T, D] and k [..., Hk, T, D] share the
 * tables (their rows are the same positions). Each output (and each input gradient) is dense in its
 * input's memory order, e.g. [B, T, H, D] for heads split by a transpose.
 */
export function applyRotaryQK(
  q: Tensor,
  k: Tensor,
  cos: Tensor,
  sin: Tensor,
  opts: RotaryOptions = {},
): { q: Tensor; k: Tensor } {
  const [qr, kr] = applyRotaryQKOp(q, k, cos, sin, opts);
  return { q: qr, k: kr };
}

export interface RotaryTableOptions {
  /** Multiplier of cos and sin (YaRN's attention scaling); default 1. */
  mscale?: number;
}

/** Tables at `positions` from the frequencies θ [R/2] (contiguous); `pos` holds the positions on θ's device. */
interface TableArgs {
  readonly theta: Tensor;
  readonly positions: readonly number[];
  readonly pos: Tensor;
  readonly mscale: number;
}

/** cos/sin [T, R] = mscale·cos/sin(pos_t·θ[j mod R/2]). */
const rotaryTablesKernel = defineKernel<TableArgs & { readonly cos: Tensor; readonly sin: Tensor }>({
  name: 'rotaryTables',
  family: 'rotary',
  cpu: ({ theta, positions, mscale, cos, sin }) => {
    const { data: td, off } = cpuData(theta);
    const [c, s] = [outData(cos), outData(sin)];
    const [T, R] = cos.shape,
      h = theta.size;
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < R; j++) {
        const a = positions[t] * td[off + (j % h)];
        c[t * R + j] = mscale * Math.cos(a);
        s[t * R + j] = mscale * Math.sin(a);
      }
    }
  },
  webgpu: [
    {
      name: 'item',
      run: ({ theta, pos, mscale, cos, sin }) => {
        const [T, R] = cos.shape;
        launch(
          'rotaryTables',
          'fused:rotaryTables:forward',
          () => tableSource('forward'),
          TB.pack({ T, R, MSCALE: mscale, THOFF: theta.offset }),
          [cos, sin, theta, pos],
          itemGrid(T * R),
        );
      },
    },
  ],
});

/** dθ[i] = mscale·Σ_t pos_t·Σ_{j ∈ {i, i+R/2}} (cos(a)·dsin[t, j] − sin(a)·dcos[t, j]), a = pos_t·θ[i] (dc, ds contiguous [T, R]). */
const rotaryTablesBackwardKernel = defineKernel<
  TableArgs & { readonly dc: Tensor; readonly ds: Tensor; readonly dtheta: Tensor }
>({
  name: 'rotaryTablesBackward',
  family: 'rotary',
  cpu: ({ theta, positions, mscale, dc, ds, dtheta }) => {
    const { data: td, off } = cpuData(theta);
    const [dcd, dsd, out] = [cpuData(dc), cpuData(ds), outData(dtheta)];
    const h = theta.size,
      R = 2 * h;
    for (let i = 0; i < h; i++) {
      let acc = 0;
      positions.forEach((p, t) => {
        const a = p * td[off + i];
        const r = t * R + i;
        const dsSum = dsd.data[dsd.off + r] + dsd.data[dsd.off + r + h],
          dcSum = dcd.data[dcd.off + r] + dcd.data[dcd.off + r + h];
        acc += p * (Math.cos(a) * dsSum - Math.sin(a) * dcSum);
      });
      out[i] = mscale * acc;
    }
  },
  webgpu: [
    {
      name: 'item',
      run: ({ theta, pos, positions, mscale, dc, ds, dtheta }) => {
        const params = TB.pack({
          T: positions.length,
          R: 2 * theta.size,
          MSCALE: mscale,
          THOFF: theta.offset,
          DCOFF: dc.offset,
          DSOFF: ds.offset,
        });
        launch(
          'rotaryTablesBackward',
          'fused:rotaryTables:backward',
          () => tableSource('backward'),
          params,
          [dtheta, theta, pos, dc, ds],
          itemGrid(theta.size),
        );
      },
    },
  ],
});

const rotaryTablesOp = defineJointOp({
  name: 'rotaryTables',
  check: (theta: Tensor, positions: readonly number[], opts: RotaryTableOptions) => {
    theta.assertAlive('rotaryTables');
    if (!isFloat(theta.dtype) || theta.rank !== 1 || theta.size < 1)
      throw new OpError(
        'rotaryTables',
        `theta must be a non-empty 1-D float tensor of frequencies, got ${theta.dtype} ${shapeStr(theta.shape)}`,
      );
    const bad = positions.findIndex((p) => !Number.isFinite(p));
    if (bad >= 0)
      throw new OpError('rotaryTables', `positions[${bad}] is ${positions[bad]}; positions must be finite numbers`);
    const mscale = opts.mscale ?? 1;
    if (!Number.isFinite(mscale)) throw new OpError('rotaryTables', `mscale must be a finite number, got ${mscale}`);
  },
  forward: (theta: Tensor, positions: readonly number[], opts: RotaryTableOptions) => {
    const mscale = opts.mscale ?? 1;
    const T = positions.length,
      R = 2 * theta.size;
    const pos = tensor(Float64Array.from(positions), { device: theta.device, dtype: theta.dtype, shape: [T] });
    const [cos, sin] = [0, 1].map(() => empty(theta.device, theta.dtype, [T, R]));
    withContiguous([theta], ([th]) => {
      if (T > 0) dispatch(rotaryTablesKernel, theta.device, { theta: th, positions, pos, mscale, cos, sin });
    });
    const outs = recordJoint(
      'rotaryTables',
      [cos, sin],
      [theta],
      (gs, [th, ps]) => {
        const [dc, ds] = gs.map((g) => g ?? th.fullLike(0, [T, R]));
        return withContiguous([th, dc, ds], ([thc, dcc, dsc]) => {
          const dtheta = empty(theta.device, theta.dtype, [theta.size]);
          dispatch(rotaryTablesBackwardKernel, theta.device, {
            theta: thc,
            positions,
            pos: ps,
            mscale,
            dc: dcc,
            ds: dsc,
            dtheta,
          });
          return [dtheta];
        });
      },
      [theta, pos],
    );
    pos.dispose();
    return outs;
  },
  kernels: [rotaryTablesKernel, rotaryTablesBackwardKernel],
  tolerance: ROTARY_TOLERANCE,
});

/**
 * cos/sin [T, R] (HF layout, R = 2·θ.size: columns i and i + R/2 share frequency θ[i]) at the given
 * positions: mscale·cos(pos_t·θ_i), mscale·sin(pos_t·θ_i). Differentiable in θ; one dispatch forward
 * and one backward on webgpu.
 */
export function rotaryTables(
  theta: Tensor,
  positions: readonly number[],
  opts: RotaryTableOptions = {},
): { cos: Tensor; sin: Tensor } {
  const [cos, sin] = rotaryTablesOp(theta, positions, opts);
  return { cos, sin };
}
