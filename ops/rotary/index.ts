// Rotary position embeddings (HF rotate_half layout) with partial rotary, fused forward and backward
// (WGSL in kernels.ts; the cpu path is the same maths in float64):
// - applyRotary / applyRotaryQK: one dispatch rotates x (or q and k together) read through strides,
//   one dispatch gives the input gradients and, when the tables need them, the cos/sin gradients
//   reduced over the dims the tables broadcast across;
// - applyRotaryFrequencies / applyRotaryQKFrequencies: the same from frequencies θ and positions (CLEX,
//   whose θ the ODE gives each step): the kernels compute cos/sin themselves and the backward one
//   reduces dθ over every row, so no table is built or differentiated;
// - rotaryTables: cos/sin from a frequency vector θ in one dispatch, dθ in one.
import type { View } from '../../core/backend.js';
import { recordJoint } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { defineJointOp, defineKernel, dispatch, type Variant } from '../../core/op.js';
import { numel, OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { itemGrid } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { storageTypeOf } from '../../core/webgpu/wgsl.js';
import { MAX_LEAD, RO, rotarySource, TB, tableSource, type AngleSource, type RotaryVariant } from './kernels.js';
import { full, tensor } from '../creation.js';
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

/** The shape and memory layout of a view: an op input (which its output and its gradient copy), or a table. */
type Layout = Pick<View, 'shape' | 'strides'>;

/** Strides of a table [..., R] broadcast against leading dims `lead` (0 where it broadcasts), and of its last axis. */
function tableStrides(t: Layout, lead: readonly number[]): number[] {
  const extra = lead.length + 1 - t.shape.length;
  return [...lead, 1].map((_, d) => (d < extra || t.shape[d - extra] === 1 ? 0 : t.strides[d - extra]));
}

function plan(xs: readonly View[], cos: Layout, sin: Layout, R: number, reduceTables: boolean): Plan {
  const lead = xs[0].shape.length - 1;
  const grid = Array.from({ length: lead }, (_, d) => Math.max(...xs.map((x) => x.shape[d])));
  const cosStrides = tableStrides(cos, grid),
    sinStrides = tableStrides(sin, grid);
  const extent = (t: Layout, d: number) => t.shape[d - (lead + 1 - t.shape.length)] ?? 1;
  const parallel = grid.map((_, d) => !reduceTables || extent(cos, d) > 1 || extent(sin, d) > 1);
  return { D: xs[0].shape[lead], R, grid: grid.map((e, d) => (parallel[d] ? e : 1)), parallel, cosStrides, sinStrides };
}

/** OORDER's word for a dense output: each lead dim's memory position (0 = outermost) in 3 bits. */
function packedOrder(o: Tensor): number {
  const lead = Array.from({ length: o.rank - 1 }, (_, d) => d).sort((a, b) => o.strides[b] - o.strides[a] || a - b);
  return lead.reduce((word, dim, position) => word | (position << (3 * dim)), 0);
}

/**
 * Where a rotation's angles come from: tables cos/sin [..., R] (contiguous), or frequencies θ [R/2] and
 * positions [T] (contiguous; T = the inputs' second-to-last dim), cos/sin = mscale·cos/sin(pos_t·θ_i).
 */
type Angles =
  | { readonly source: 'tables'; readonly cos: Tensor; readonly sin: Tensor }
  | { readonly source: 'frequencies'; readonly theta: Tensor; readonly positions: Tensor; readonly mscale: number };

/** The angles' gradients a backward pass writes: dcos/dsin over the plan's grid × R, or dθ [R/2]. */
type AngleGrads = { readonly dcos: Tensor; readonly dsin: Tensor } | { readonly dtheta: Tensor };

/** The positions as the table [T, R] they stand for (strides 0 along R), read through the same plan as cos/sin. */
const positionTable = (positions: Tensor, R: number): Layout => ({ shape: [positions.size, R], strides: [1, 0] });

/** The tables' layouts, or the positions' virtual table for both. */
function angleLayouts(angles: Angles, R: number): [Layout, Layout] {
  if (angles.source === 'tables') return [angles.cos, angles.sin];
  const t = positionTable(angles.positions, R);
  return [t, t];
}

/**
 * One rotary pass: 'forward' rotates xs into outs; 'backward' rotates the gradients gs back into outs
 * and, when `grads` is given, also writes the angles' gradients (xs are then the forward's inputs, else
 * the gradients again): dcos/dsin over the plan's grid × R (summed over the looped dims), or dθ
 * (summed over every row).
 */
interface RotateArgs {
  readonly direction: 'forward' | 'backward';
  readonly xs: readonly Tensor[];
  readonly gs: readonly Tensor[] | null;
  readonly angles: Angles;
  readonly plan: Plan;
  readonly outs: readonly Tensor[];
  readonly grads: AngleGrads | null;
}

/**
 * cos and sin of element j of the row at table offsets co, so (along the plan's cos and sin strides),
 * and where the gradients go: add(cell, co, so, j, dc, ds) takes dL/dcos_j and dL/dsin_j of that row.
 */
function cpuAngles(
  angles: Angles,
  grads: AngleGrads | null,
  p: Plan,
): {
  cos: (co: number, so: number, j: number) => number;
  sin: (co: number, so: number, j: number) => number;
  add: ((cell: number, co: number, so: number, j: number, dc: number, ds: number) => void) | null;
} {
  const lead = p.grid.length,
    R = p.R,
    h = R / 2;
  if (angles.source === 'tables') {
    const cd = cpuData(angles.cos).data,
      sd = cpuData(angles.sin).data;
    const cl = p.cosStrides[lead],
      sl = p.sinStrides[lead];
    const [dc, ds] = grads && 'dcos' in grads ? [outData(grads.dcos), outData(grads.dsin)] : [null, null];
    dc?.fill(0);
    ds?.fill(0);
    return {
      cos: (co, _so, j) => cd[co + j * cl],
      sin: (_co, so, j) => sd[so + j * sl],
      add:
        dc && ds
          ? (cell, _co, _so, j, gc, gs) => {
              dc[cell * R + j] += gc;
              ds[cell * R + j] += gs;
            }
          : null,
    };
  }
  const { data: pd } = cpuData(angles.positions),
    { data: td, off: toff } = cpuData(angles.theta);
  const m = angles.mscale;
  // co walks the positions' virtual table, so co is the position's storage index.
  const angle = (co: number, j: number) => pd[co] * td[toff + (j % h)];
  const dth = grads && 'dtheta' in grads ? outData(grads.dtheta) : null;
  dth?.fill(0);
  return {
    cos: (co, _so, j) => m * Math.cos(angle(co, j)),
    sin: (co, _so, j) => m * Math.sin(angle(co, j)),
    add: dth
      ? (_cell, co, _so, j, gc, gs) => {
          const a = angle(co, j);
          dth[j % h] += pd[co] * m * (Math.cos(a) * gs - Math.sin(a) * gc);
        }
      : null,
  };
}

function rotateCpu({ direction, xs, gs, angles, plan: p, outs, grads }: RotateArgs): void {
  const { D, R } = p;
  const lead = p.grid.length;
  const reads = gs ?? xs;
  const { cos, sin, add } = cpuAngles(angles, grads, p);
  const h = R / 2;
  const [cosOff, sinOff] =
    angles.source === 'tables' ? [angles.cos.offset, angles.sin.offset] : [angles.positions.offset, 0];
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
        co = cosOff,
        so = sinOff,
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
            ? v * cos(co, so, j) + (j < h ? -partner : partner) * sin(co, so, j)
            : v * cos(co, so, j) + (j < h ? partner : -partner) * sin(co, so, pj);
        if (add) {
          const xv = xd[xo + j * xl],
            xp = xd[xo + pj * xl];
          add(cell, co, so, j, v * xv, v * (j < h ? -xp : xp));
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
  run: ({ direction, xs, gs, angles, plan: p, outs, grads }) => {
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
      COFF: angles.source === 'tables' ? angles.cos.offset : angles.positions.offset,
      SOFF: angles.source === 'tables' ? angles.sin.offset : angles.theta.offset,
      MSCALE: angles.source === 'tables' ? 1 : angles.mscale,
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
    const [a0, a1] = angles.source === 'tables' ? [angles.cos, angles.sin] : [angles.theta, angles.positions];
    const types = { x: storageTypeOf(xs[0].dtype), angles: storageTypeOf(a0.dtype), pos: storageTypeOf(a1.dtype) };
    const v: RotaryVariant = { direction, inputs: xs.length, angles: angles.source, angleGrads: grads !== null, types };
    const bound = [
      ...outs,
      ...(grads === null ? [] : 'dcos' in grads ? [grads.dcos, grads.dsin] : [grads.dtheta]),
      ...(direction === 'forward' || grads ? xs : []),
      ...(gs ?? []),
      ...(angles.source === 'tables' ? [angles.cos, angles.sin] : [angles.positions, angles.theta]),
    ];
    // dθ: a workgroup per slot reduces over every cell.
    const reduce = angles.source === 'frequencies' && grads !== null;
    launch(
      kernelName(angles.source, direction),
      `fused:rotary:${angles.source}:${direction}:${xs.length}:${grads !== null}:${types.x}:${types.angles}:${types.pos}`,
      () => rotarySource(v),
      params,
      bound,
      reduce ? [slots, 1, 1] : itemGrid(cells * slots),
    );
  },
};

/** The kernels' names: applyRotary[Frequencies][Backward]. */
function kernelName(source: AngleSource, direction: 'forward' | 'backward'): string {
  return `applyRotary${source === 'frequencies' ? 'Frequencies' : ''}${direction === 'backward' ? 'Backward' : ''}`;
}

/** The four rotary kernels (angles from tables or from frequencies, each way): one cpu function, one variant. */
const KERNELS = Object.fromEntries(
  (['tables', 'frequencies'] as const).flatMap((source) =>
    (['forward', 'backward'] as const).map((direction) => {
      const name = kernelName(source, direction);
      return [
        name,
        defineKernel<RotateArgs>({ name, family: 'rotary', cpu: rotateCpu, webgpu: [rotateVariant], float16: true }),
      ];
    }),
  ),
);
const kernelsOf = (source: AngleSource) => [
  KERNELS[kernelName(source, 'forward')],
  KERNELS[kernelName(source, 'backward')],
];

/**
 * One rotary pass over `xs`, each output dense in the memory order of `layouts[i]` (the op's input,
 * so its gradient flows back through the input's view without a copy): 'forward' rotates xs;
 * 'backward' rotates the gradients `gs` back and, with `withGrads`, also returns the angles' gradients
 * (AngleGrads: dcos/dsin over the plan's grid × R, or dθ).
 */
function rotate(
  direction: 'forward' | 'backward',
  xs: readonly Tensor[],
  gs: readonly Tensor[] | null,
  angles: Angles,
  R: number,
  withGrads: boolean,
  layouts: readonly Layout[],
): { outs: Tensor[]; grads: AngleGrads | null } {
  const [cosLayout, sinLayout] = angleLayouts(angles, R);
  const p = plan(xs, cosLayout, sinLayout, R, withGrads);
  const outs = xs.map((x, i) =>
    emptyLike({ device: x.device, dtype: x.dtype, shape: layouts[i].shape, strides: layouts[i].strides }),
  );
  const { device } = xs[0];
  // The angles' gradients take the angles' dtype (float32 tables or θ with float16 inputs).
  const dtype = angles.source === 'tables' ? angles.cos.dtype : angles.theta.dtype;
  const gridShape = [...p.grid, R];
  const rows = numel(p.grid);
  const grads: AngleGrads | null = !withGrads
    ? null
    : angles.source === 'tables'
      ? { dcos: empty(device, dtype, gridShape), dsin: empty(device, dtype, gridShape) }
      : { dtheta: rows > 0 ? empty(device, dtype, [R / 2]) : full([R / 2], 0, { device, dtype }) };
  if (rows > 0)
    dispatch(KERNELS[kernelName(angles.source, direction)], device, {
      direction,
      xs,
      gs,
      angles,
      plan: p,
      outs,
      grads,
    });
  return { outs, grads };
}

/** The rotary dim: opts.rotaryDim, else the tables' last dim. */
const rotaryDim = (cos: Tensor, opts: RotaryOptions): number => opts.rotaryDim ?? cos.shape[cos.rank - 1];

/** The inputs' checks shared by every rotary op: float tensors of one rank, last dim, dtype and device. */
function checkInputs(op: string, xs: readonly [string, Tensor][], minRank: number): void {
  const [, x0] = xs[0];
  for (const [name, x] of xs) {
    x.assertAlive(op);
    if (!isFloat(x.dtype) || x.rank < minRank)
      throw new OpError(op, `${name} must be a float tensor of rank ≥ ${minRank}, got ${x.dtype} ${shapeStr(x.shape)}`);
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
}

/** The rotary dim R must be a positive even integer ≤ the inputs' last dim. */
function checkRotaryDim(op: string, x: Tensor, R: number, what: string): void {
  const D = x.shape[x.rank - 1];
  if (!Number.isInteger(R) || R % 2 !== 0 || R <= 0 || R > D)
    throw new OpError(op, `${what} must be a positive even integer ≤ head dim ${D}, got ${R}`);
}

/**
 * A table or frequency tensor lives where the inputs do, with their dtype, or float32 with float16
 * inputs (the angles kept in float32, as a float16 model's rotary tables or CLEX's θ are).
 */
function checkPlacement(op: string, name: string, t: Tensor, xname: string, x: Tensor): void {
  const dtypeFits = t.dtype === x.dtype || (x.dtype === 'float16' && t.dtype === 'float32');
  if (t.device !== x.device || !dtypeFits)
    throw new OpError(
      op,
      `${name} is ${t.dtype} on ${t.device} but ${xname} is ${x.dtype} on ${x.device}; it needs ${xname}'s device and dtype (or float32 with float16 ${xname})`,
    );
}

/** The argument checks shared by applyRotary and applyRotaryQK. */
function checkTableArgs(
  op: string,
  xs: readonly [string, Tensor][],
  cos: Tensor,
  sin: Tensor,
  opts: RotaryOptions,
): void {
  cos.assertAlive(op);
  sin.assertAlive(op);
  checkInputs(op, xs, 1);
  const R = rotaryDim(cos, opts);
  checkRotaryDim(op, xs[0][1], R, 'rotaryDim');
  for (const [xname, x] of xs) {
    const tableShape = [...x.shape.slice(0, -1), R];
    for (const [name, t] of [
      ['cos', cos],
      ['sin', sin],
    ] as const) {
      checkPlacement(op, name, t, xname, x);
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

/** The argument checks shared by applyRotaryFrequencies and applyRotaryQKFrequencies. */
function checkFrequencyArgs(
  op: string,
  xs: readonly [string, Tensor][],
  theta: Tensor,
  positions: Tensor,
  opts: RotaryTableOptions,
): void {
  theta.assertAlive(op);
  positions.assertAlive(op);
  checkInputs(op, xs, 2);
  if (theta.rank !== 1)
    throw new OpError(op, `theta must be a 1-D tensor of R/2 frequencies, got ${shapeStr(theta.shape)}`);
  checkRotaryDim(op, xs[0][1], 2 * theta.size, 'twice theta.size (the rotary dim)');
  const mscale = opts.mscale ?? 1;
  if (!Number.isFinite(mscale)) throw new OpError(op, `mscale must be a finite number, got ${mscale}`);
  for (const [xname, x] of xs) {
    checkPlacement(op, 'theta', theta, xname, x);
    checkPlacement(op, 'positions', positions, xname, x);
    const T = x.shape[x.rank - 2];
    if (positions.rank !== 1 || positions.size !== T)
      throw new OpError(
        op,
        `positions ${shapeStr(positions.shape)} must be 1-D with one position per row of ${xname} ${shapeStr(x.shape)} (its second-to-last dim, ${T})`,
      );
  }
}

/** A table gradient over the plan's grid, as the table's shape (a view when no dims were left to sum). */
function toTableShape(g: Tensor, table: Tensor): Tensor {
  return numel(table.shape) === g.size
    ? g.reshape(table.shape)
    : sumTo(g, [...new Array<number>(g.rank - table.rank).fill(1), ...table.shape]).reshape(table.shape);
}

/** The tensors an angle source is made of, in the order the op records them. */
const angleTensors = (a: Angles): Tensor[] => (a.source === 'tables' ? [a.cos, a.sin] : [a.theta, a.positions]);

/** The same source over other tensors (the contiguous or saved ones, in angleTensors order). */
function withTensors(a: Angles, [t0, t1]: readonly Tensor[]): Angles {
  return a.source === 'tables'
    ? { source: 'tables', cos: t0, sin: t1 }
    : { source: 'frequencies', theta: t0, positions: t1, mscale: a.mscale };
}

/**
 * Rotates xs (one forward dispatch) and records one joint node whose backward is one dispatch too; its
 * gradients are the inputs', then those of the angle tensors (cos, sin; or θ, and none for positions).
 */
function rotaryOp(op: string, xs: readonly Tensor[], angles: Angles, R: number): Tensor[] {
  const sources = angleTensors(angles);
  const needAngles = sources.some((t) => t.requiresGrad);
  const layouts: Layout[] = xs.map((x) => ({ shape: x.shape, strides: x.strides }));
  return withContiguous(
    [...xs, ...sources],
    (cs) => {
      const xc = cs.slice(0, xs.length),
        ac = cs.slice(xs.length);
      const { outs } = rotate('forward', xc, null, withTensors(angles, ac), R, false, layouts);
      return recordJoint(
        op,
        outs,
        [...xs, ...sources],
        (gs, saved) => {
          const savedAngles = withTensors(angles, saved);
          const xSaved = saved.slice(2);
          const present = gs.flatMap((g, i) => (g ? [i] : []));
          return withContiguous(
            present.map((i) => gs[i] as Tensor),
            (gc) => {
              const { outs: dxs, grads } = rotate(
                'backward',
                needAngles ? present.map((i) => xSaved[i]) : gc,
                gc,
                savedAngles,
                R,
                needAngles,
                present.map((i) => layouts[i]),
              );
              const dx: (Tensor | null)[] = xs.map(() => null);
              present.forEach((i, k) => {
                dx[i] = dxs[k];
              });
              if (grads === null) return [...dx, null, null];
              if ('dtheta' in grads) return [...dx, grads.dtheta, null];
              return [...dx, toTableShape(grads.dcos, sources[0]), toTableShape(grads.dsin, sources[1])];
            },
            { lastAxisOnly: true },
          );
        },
        needAngles ? [...ac, ...xc] : ac,
      );
    },
    { lastAxisOnly: true },
  );
}

/**
 * float32: webgpu vs cpu float64, the gradcheckDevices defaults the rotary tests pass at. float16: each
 * output is one f32 rotation of f16 inputs rounded once to f16 (2^-11 relative); the table and θ
 * gradients are f32 sums over the broadcast dims, rounded to their dtype.
 */
const ROTARY_TOLERANCE = { float32: { atol: 1e-5, rtol: 1e-4 }, float16: { atol: 5e-3, rtol: 1e-2 } };

const tables = (cos: Tensor, sin: Tensor): Angles => ({ source: 'tables', cos, sin });

const applyRotaryOp = defineJointOp({
  name: 'applyRotary',
  check: (x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    checkTableArgs('applyRotary', [['x', x]], cos, sin, opts),
  forward: (x: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    rotaryOp('applyRotary', [x], tables(cos, sin), rotaryDim(cos, opts)),
  kernels: kernelsOf('tables'),
  tolerance: ROTARY_TOLERANCE,
});

const applyRotaryQKOp = defineJointOp({
  name: 'applyRotaryQK',
  check: (q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, opts: RotaryOptions) =>
    checkTableArgs(
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
    rotaryOp('applyRotaryQK', [q, k], tables(cos, sin), rotaryDim(cos, opts)),
  kernels: kernelsOf('tables'),
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

/** Options of the ops that take frequencies (applyRotary*Frequencies, rotaryTables). */
export interface RotaryTableOptions {
  /** Multiplier of cos and sin (YaRN's attention scaling); default 1. */
  mscale?: number;
}

const frequencies = (theta: Tensor, positions: Tensor, opts: RotaryTableOptions): Angles => ({
  source: 'frequencies',
  theta,
  positions,
  mscale: opts.mscale ?? 1,
});

const applyRotaryFrequenciesOp = defineJointOp({
  name: 'applyRotaryFrequencies',
  check: (x: Tensor, theta: Tensor, positions: Tensor, opts: RotaryTableOptions) =>
    checkFrequencyArgs('applyRotaryFrequencies', [['x', x]], theta, positions, opts),
  forward: (x: Tensor, theta: Tensor, positions: Tensor, opts: RotaryTableOptions) =>
    rotaryOp('applyRotaryFrequencies', [x], frequencies(theta, positions, opts), 2 * theta.size),
  kernels: kernelsOf('frequencies'),
  tolerance: ROTARY_TOLERANCE,
});

const applyRotaryQKFrequenciesOp = defineJointOp({
  name: 'applyRotaryQKFrequencies',
  check: (q: Tensor, k: Tensor, theta: Tensor, positions: Tensor, opts: RotaryTableOptions) =>
    checkFrequencyArgs(
      'applyRotaryQKFrequencies',
      [
        ['q', q],
        ['k', k],
      ],
      theta,
      positions,
      opts,
    ),
  forward: (q: Tensor, k: Tensor, theta: Tensor, positions: Tensor, opts: RotaryTableOptions) =>
    rotaryOp('applyRotaryQKFrequencies', [q, k], frequencies(theta, positions, opts), 2 * theta.size),
  kernels: kernelsOf('frequencies'),
  tolerance: ROTARY_TOLERANCE,
});

/**
 * applyRotary with the tables given by frequencies: cos/sin[t, j] = mscale·cos/sin(positions[t]·θ[j mod
 * R/2]), R = 2·θ.size, for x [..., T, D] (positions [T]: one per row of x's second-to-last dim). The
 * kernels compute the angles themselves, so no table is built; differentiable in x and θ (dθ is reduced
 * over every row inside the backward kernel), not in the positions.
 */
export function applyRotaryFrequencies(
  x: Tensor,
  theta: Tensor,
  positions: Tensor,
  opts: RotaryTableOptions = {},
): Tensor {
  return applyRotaryFrequenciesOp(x, theta, positions, opts)[0];
}

/**
 * applyRotaryQK with the tables given by frequencies (see applyRotaryFrequencies): one dispatch forward,
 * one backward for q, k and dθ together.
 */
export function applyRotaryQKFrequencies(
  q: Tensor,
  k: Tensor,
  theta: Tensor,
  positions: Tensor,
  opts: RotaryTableOptions = {},
): { q: Tensor; k: Tensor } {
  const [qr, kr] = applyRotaryQKFrequenciesOp(q, k, theta, positions, opts);
  return { q: qr, k: kr };
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
