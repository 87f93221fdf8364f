// Shared pieces of the fused transformer kernels: the param-uniform header (same convention as
// ../wgsl.ts: binding 0 = params, then outputs, then inputs) and the row-kernel templates. Row
// kernels' layouts declare NROWS first (rowKernel reads the row count from word 0).
import type { Variant } from '../../op.js';
import { header, NEG_INF } from '../uniforms.js';
import { spreadGroups } from '../wgsl.js';

export { NAN, NEG_INF } from '../uniforms.js';

/** Invocations per workgroup for one-invocation-per-item kernels. */
export const ITEM_WG = 64;
/** Invocations per workgroup when a whole workgroup cooperates on one row (long rows). */
export const ROW_WG = 256;

export function kernelHeader(bindings: string[]): string {
  return `${header(bindings)}fn is_neg_inf(v: f32) -> bool { return bitcast<u32>(v) == 0xff800000u; }
`;
}

/** Entry point with one invocation per item; `item` is the linear invocation index (2-D grids past 65535 groups). */
export function itemMain(body: string): string {
  return `@compute @workgroup_size(${ITEM_WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let item = gid.x + gid.y * nwg.x * ${ITEM_WG}u;
${body}
}`;
}

/**
 * Row-wise kernels come in three variants. 'thread': one invocation walks a whole row (no barriers,
 * best for short rows on lavapipe). 'group': ROW_WG invocations share a row with tree reductions in
 * workgroup memory (long rows). 'subgroup': as 'group', but each reduction is a subgroup op, one
 * barrier and a subgroup op over the subgroups' partials (needs the 'subgroups' feature). The body
 * sees `row`, `lid`, a strided loop start `j0` and step `js` (rowStride), and calls red_sum(v, lid) /
 * red_max(v, lid), which return the row-wide result to everyone. The body must reach every red_* call
 * in uniform control flow (no early returns before them).
 */
export type RowVariant = 'thread' | 'group' | 'subgroup';

/** A row kernel's whole WGSL module: the params header with `bindings`, and the variant's entry point around `body`. */
export function rowKernel(variant: RowVariant, bindings: string[], body: string): string {
  return `${variant === 'subgroup' ? 'enable subgroups;\n' : ''}${kernelHeader(bindings)}
${rowMain(variant, body)}`;
}

/** Invocations that share a row (the `js` step of its loops). */
export function rowStride(variant: RowVariant): number {
  return variant === 'thread' ? 1 : ROW_WG;
}

function rowMain(variant: RowVariant, body: string): string {
  if (variant === 'thread') {
    return `fn red_sum(v: f32, lid: u32) -> f32 { return v; }
fn red_max(v: f32, lid: u32) -> f32 { return v; }
@compute @workgroup_size(${ITEM_WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * ${ITEM_WG}u;
  if (row >= pu(0u)) { return; }
  let lid = 0u;
  let j0 = 0u;
  let js = 1u;
${body}
}`;
  }
  const sub = variant === 'subgroup';
  return `${sub ? subgroupReductions : treeReductions}
@compute @workgroup_size(${ROW_WG}) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>${sub ? subgroupParams : ''}) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= pu(0u)) { return; }
  let lid = lidv.x;
  let j0 = lid;
  let js = ${ROW_WG}u;${sub ? subgroupInit : ''}
${body}
}`;
}

const tree = (op: string) => `{
  sh[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { sh[lid] = ${op}; }
    workgroupBarrier();
  }
  let r = sh[0];
  workgroupBarrier();
  return r;
}`;
const treeReductions = `var<workgroup> sh: array<f32, ${ROW_WG}>;
fn red_sum(v: f32, lid: u32) -> f32 ${tree('sh[lid] + sh[lid + s]')}
fn red_max(v: f32, lid: u32) -> f32 ${tree('max(sh[lid], sh[lid + s])')}`;

/**
 * The subgroup builtins the reductions read, as private variables (helper functions cannot take
 * builtins). subgroup_id and num_subgroups come with WGSL's subgroup_id language feature (Dawn has it).
 */
const SUBGROUP_BUILTINS = {
  sg_lane: 'subgroup_invocation_id',
  sg_size: 'subgroup_size',
  sg_id: 'subgroup_id',
  sg_count: 'num_subgroups',
};
const subgroupParams = Object.entries(SUBGROUP_BUILTINS)
  .map(([v, b]) => `, @builtin(${b}) ${v}_in: u32`)
  .join('');
const subgroupInit = Object.keys(SUBGROUP_BUILTINS)
  .map((v) => `\n  ${v} = ${v}_in;`)
  .join('');

/**
 * Each subgroup's partial goes to its slot (subgroup_id), then every subgroup reduces the slots. The
 * slots alternate between two halves of `sh`, so one barrier per reduction suffices: a reduction's
 * writes reuse the half read two reductions before, whose reads all precede the barrier of the
 * reduction in between. Any subgroup size works (at most ROW_WG subgroups of one invocation).
 */
const subgroupReduction = (
  name: string,
  op: string,
  combine: string,
  identity: string,
) => `fn ${name}(v: f32, lid: u32) -> f32 {
  let half = (red_round & 1u) * ${ROW_WG}u;
  red_round += 1u;
  let p = subgroup${op}(v);
  if (sg_lane == 0u) { sh[half + sg_id] = p; }
  workgroupBarrier();
  var a = ${identity};
  for (var i = sg_lane; i < sg_count; i += sg_size) { a = ${combine}; }
  return subgroup${op}(a);
}`;
const subgroupReductions = `var<workgroup> sh: array<f32, ${2 * ROW_WG}>;
${Object.keys(SUBGROUP_BUILTINS)
  .map((v) => `var<private> ${v}: u32;\n`)
  .join('')}var<private> red_round: u32;
${subgroupReduction('red_sum', 'Add', 'a + sh[half + i]', '0.0')}
${subgroupReduction('red_max', 'Max', 'max(a, sh[half + i])', NEG_INF)}`;

/**
 * A row kernel's variants ('thread': one invocation per row; 'group' and 'subgroup': a workgroup per
 * row), with the measured preference below. `rows` reads the row count and length off the kernel's arguments.
 */
export function rowVariants<A>(
  rows: (args: NoInfer<A>) => { nRows: number; rowLen: number },
  run: (args: A, variant: RowVariant) => void,
): Variant<A>[] {
  return [
    {
      name: 'thread',
      prefer: (args, hw) => preferThreadPerRow(rows(args), hw.software),
      run: (args) => run(args, 'thread'),
    },
    { name: 'group', run: (args) => run(args, 'group') },
    {
      name: 'subgroup',
      fits: (_args, hw) => hw.features.has('subgroups') || 'needs the subgroups feature',
      run: (args) => run(args, 'subgroup'),
    },
  ];
}

/**
 * Measured on lavapipe (2 cores): one invocation per row wins by 3-30x (barriers are expensive),
 * except for a handful of very long rows ([1, 50304]: 0.4 vs 1.1 ms). Measured on an NVIDIA H200
 * (Dawn/Vulkan): a workgroup per row wins from rows of 256 up (softmax fwd+bwd [16384, 256]
 * 0.42 vs 0.64 ms, [256, 8192] 0.84 vs 7.4 ms; crossEntropy [2048, 50304] 9 vs 38 ms).
 * 'subgroup' is never the automatic choice: on lavapipe (subgroups of 8) it beats 'group' 2-3x
 * where the reductions dominate (softmax [1024, 256] 43 vs 134 ms) but never 'thread' there, and it
 * ties 'group' on the few long rows 'group' takes ([1..4, 50304], 0.4-2 ms); it is not measured on
 * a real GPU yet. DAWNGRAD_VARIANTS=row=thread|group|subgroup forces one variant (for benchmarking).
 */
function preferThreadPerRow({ nRows, rowLen }: { nRows: number; rowLen: number }, software: boolean): boolean {
  return software ? !(nRows <= 4 && rowLen >= 4096) : rowLen < 128;
}

/** Workgroup grid for `n` items (itemMain) or `n` rows of the given variant (rowKernel). */
export function itemGrid(n: number): [number, number, number] {
  return spreadGroups(Math.ceil(n / ITEM_WG));
}

export function rowGrid(variant: RowVariant, nRows: number): [number, number, number] {
  return variant === 'thread' ? itemGrid(nRows) : spreadGroups(nRows);
}
