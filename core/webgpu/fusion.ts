// Lazy elementwise fusion on the webgpu backend. An elementwise op whose output is a whole fresh
// storage does not dispatch: it records a pending expression on that storage (the op, and its
// operands as loads of realised buffers, scalars, or the pending expressions of other storages,
// composed through their views). Whatever else touches the storage's memory — another kernel binding
// it, a read, an in-place write — realises it first: one generated kernel per expression, its pipeline
// cached by the expression's structure. A pending storage released before anyone needs it is never
// computed. Expressions stay bounded (nodes, bound buffers, uniform words); past a bound the pending
// operands are realised first.
import {
  COPY_KERNEL,
  isScalarOperand,
  type ElementwiseDef,
  type Operand,
  type Storage,
  type View,
} from '../backend.js';
import { config } from '../config.js';
import type { DType } from '../dtype.js';
import { contiguousStrides, numel } from '../shape.js';
import type { GpuRuntime } from './runtime.js';
import { bitsOf, header, LAYOUT_WORDS, uniformLayout } from './uniforms.js';
import { accType, mainSig, spreadGroups, storageTypeOf, WG, type ComputeType, type WType } from './wgsl.js';

/** A webgpu storage: its buffer, and while it is pending, the expression that will fill it. */
export interface GpuStorage extends Storage {
  buffer: GPUBuffer;
  pending?: Pending;
  /** Pending storages whose expressions load this one (realised before it is written). */
  readers?: Set<GpuStorage>;
  /**
   * Set once anything was assigned to it. Only fresh storages defer: an in-place update of a tensor
   * (an optimizer step written with ops) runs at once, so repeated updates never chain up expressions.
   */
  written?: boolean;
}

/** A strided read of a realised storage, at the consuming expression's linear index (row-major over `shape`). */
interface Load {
  readonly kind: 'load';
  readonly storage: GpuStorage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}
interface Scalar {
  readonly kind: 'scalar';
  readonly value: number;
}
interface Apply {
  readonly kind: 'apply';
  readonly def: ElementwiseDef;
  readonly args: readonly Expr[];
  readonly ctype: ComputeType;
  readonly otype: WType;
}
type Expr = Load | Scalar | Apply;

interface Pending {
  readonly expr: Apply;
  /** Distinct storages the expression loads; each holds one reference from this pending storage. */
  readonly loads: ReadonlySet<GpuStorage>;
  readonly fuser: Fuser;
}

/** Op nodes per expression: bounds the generated kernel (and the work repeated when a pending result is used twice). */
const MAX_NODES = 24;
/** Elements per invocation in the contiguous kernels (vec4s in the vectorised one). */
const PER_THREAD = 4;
const VEC4_PER_THREAD = 2;

/** The fused kernel's params: n, then the words of the out view, the shapes and the loads, in emission order. */
const FUSED = uniformLayout({ N: 'u32', WORDS: ['u32', LAYOUT_WORDS - 1] });

const isContiguousLoad = (l: { shape: readonly number[]; strides: readonly number[] }) =>
  l.shape.length === 1 && l.strides[0] === 1;

/**
 * Merges adjacent dims d, d+1 when every stride set has stride[d] = stride[d+1]·shape[d+1] (and drops
 * size-1 dims), so the same elements are visited in the same order with fewer dims.
 */
function collapseDims(shape: readonly number[], strideSets: (readonly number[])[]): [number[], ...number[][]] {
  const keep = shape.map((_, d) => d).filter((d) => shape[d] !== 1);
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (const d of keep) {
    const last = outShape.length - 1;
    if (last >= 0 && strideSets.every((st, k) => outStrides[k][last] === st[d] * shape[d])) {
      outShape[last] *= shape[d];
      strideSets.forEach((st, k) => {
        outStrides[k][last] = st[d];
      });
    } else {
      outShape.push(shape[d]);
      strideSets.forEach((st, k) => outStrides[k].push(st[d]));
    }
  }
  if (outShape.length === 0) return [[1], ...strideSets.map(() => [1])];
  return [outShape, ...outStrides];
}

/**
 * The strides over `view.shape` that read, at each coordinate, the element of `load` (indexed by the
 * linear position in its own row-major `load.shape`) found at storage position offset + Σ c·strides of
 * `view` — or null when the view's coordinates do not map linearly onto the load's dims (a reshape
 * that merges dims).
 */
function composeLoad(
  load: Load,
  view: { shape: readonly number[]; strides: readonly number[]; offset: number },
): Load | null {
  const cs = contiguousStrides(load.shape);
  const rank = load.shape.length;
  // The view's offset as coordinates in load.shape.
  const base = new Array<number>(rank).fill(0);
  let rem = view.offset;
  for (let d = 0; d < rank; d++) {
    base[d] = Math.floor(rem / cs[d]);
    rem -= base[d] * cs[d];
  }
  if (base.some((c, d) => c >= load.shape[d])) return null;
  const reach = base.slice();
  const strides: number[] = [];
  let offset = load.offset;
  base.forEach((c, d) => {
    offset += c * load.strides[d];
  });
  for (let e = 0; e < view.shape.length; e++) {
    const st = view.strides[e];
    if (view.shape[e] === 1 || st === 0) {
      strides.push(0);
      continue;
    }
    // The outermost load dim whose contiguous stride divides the view's: one step of e is k steps of it.
    const d = cs.findIndex((c, i) => load.shape[i] > 1 && c <= st && st % c === 0);
    if (d < 0) return null;
    const k = st / cs[d];
    reach[d] += k * (view.shape[e] - 1);
    strides.push(k * load.strides[d]);
  }
  if (reach.some((c, d) => c >= load.shape[d])) return null;
  const [shape, collapsed] = collapseDims(view.shape, [strides]);
  return { kind: 'load', storage: load.storage, shape, strides: collapsed, offset };
}

/** The expression `expr` (over a contiguous result) read through `view`; null when a load cannot follow. */
function composeExpr(
  expr: Expr,
  view: { shape: readonly number[]; strides: readonly number[]; offset: number },
  memo = new Map<Expr, Expr>(),
): Expr | null {
  const done = memo.get(expr);
  if (done) return done;
  let out: Expr | null;
  if (expr.kind === 'scalar') out = expr;
  else if (expr.kind === 'load') out = composeLoad(expr, view);
  else {
    const args: Expr[] = [];
    for (const a of expr.args) {
      const c = composeExpr(a, view, memo);
      if (!c) return null;
      args.push(c);
    }
    out = { ...expr, args };
  }
  if (out) memo.set(expr, out);
  return out;
}

/** Distinct op nodes and loaded storages of an expression, and the uniform words its kernel needs. */
function measure(expr: Expr): { nodes: number; storages: Set<GpuStorage>; words: number } {
  const seen = new Set<Expr>();
  const storages = new Set<GpuStorage>();
  const shapes = new Set<string>();
  let nodes = 0,
    words = 0;
  const visit = (e: Expr): void => {
    if (seen.has(e)) return;
    seen.add(e);
    if (e.kind === 'apply') {
      nodes++;
      e.args.forEach(visit);
      return;
    }
    words++;
    if (e.kind === 'load') {
      storages.add(e.storage);
      if (!isContiguousLoad(e)) {
        words += e.strides.length;
        const key = e.shape.join(',');
        if (!shapes.has(key)) {
          shapes.add(key);
          words += e.shape.length;
        }
      }
    }
  };
  visit(expr);
  return { nodes, storages, words };
}

/** Out view of a fused kernel: contiguous from 0 when realising a pending storage, any view when eager. */
interface OutView {
  readonly storage: GpuStorage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

/** Generates the kernel for `expr` written to `out`: the pipeline key (its structure), source and params. */
function compile(
  expr: Apply,
  out: OutView,
  n: number,
): { key: string; source: () => string; params: Uint32Array; bound: GpuStorage[]; groups: [number, number, number] } {
  const [outShape, outStrides] = collapseDims(out.shape, [out.strides]);
  const outLoad = { shape: outShape, strides: outStrides };
  const words: number[] = [];
  const slot = (value: number): number => {
    words.push(value);
    return FUSED.WORDS + words.length - 1;
  };
  const bound: GpuStorage[] = [];
  const bindingOf = (s: GpuStorage): number => {
    let b = bound.indexOf(s);
    if (b < 0) b = bound.push(s) - 1;
    return b;
  };
  const loads: Load[] = [];
  const applies: Apply[] = [];
  const order: Expr[] = [];
  const seen = new Set<Expr>();
  const walk = (e: Expr): void => {
    if (seen.has(e)) return;
    seen.add(e);
    if (e.kind === 'apply') {
      e.args.forEach(walk);
      applies.push(e);
    } else if (e.kind === 'load') loads.push(e);
    order.push(e);
  };
  walk(expr);
  // The vec4 kernel: every view contiguous and 4-aligned, n a multiple of 4, no scalar-only function.
  const contiguous = isContiguousLoad(outLoad) && loads.every(isContiguousLoad);
  const vec =
    contiguous &&
    n % 4 === 0 &&
    out.offset % 4 === 0 &&
    loads.every((l) => l.offset % 4 === 0) &&
    applies.every((a) => !a.def.scalarOnly);
  const vt = (t: WType) => (vec ? `vec4<${t}>` : t);
  const keyParts: string[] = [vec ? 'v' : contiguous ? 'c' : 's'];
  const body: string[] = [];
  // Row-major coordinates of the linear index `e` over each distinct shape, shared by the views that use it.
  const shapeNames = new Map<string, string>();
  const coords = (shape: readonly number[]): string => {
    const k = shape.join(',');
    let name = shapeNames.get(k);
    if (!name) {
      name = `c${shapeNames.size}`;
      shapeNames.set(k, name);
      const at = shape.map((d) => slot(d));
      const lines = [`var ${name}: array<u32, ${shape.length}>;`, `{ var rem = e;`];
      for (let d = shape.length - 1; d >= 0; d--)
        lines.push(`  ${name}[${d}] = rem % pu(${at[d]}u); rem = rem / pu(${at[d]}u);`);
      lines.push('}');
      body.push(lines.join('\n    '));
    }
    return name;
  };
  /** WGSL index into a view's buffer for the element at linear index `e`. */
  const index = (v: { shape: readonly number[]; strides: readonly number[]; offset: number }): string => {
    const off = slot(v.offset);
    if (isContiguousLoad(v)) {
      keyParts.push('c');
      return vec ? `pu(${off}u) / 4u + e` : `pu(${off}u) + e`;
    }
    const c = coords(v.shape);
    const terms = v.strides.map((st, d) => `${c}[${d}] * pu(${slot(st)}u)`);
    keyParts.push(`${c}:${v.strides.length}`);
    return `pu(${off}u) + ${terms.join(' + ')}`;
  };
  // A scalar's bits are in its consumer's compute type.
  const scalarType = new Map<Expr, ComputeType>();
  for (const a of applies) for (const arg of a.args) if (arg.kind === 'scalar') scalarType.set(arg, a.ctype);
  const names = new Map<Expr, string>();
  const helpers = new Set<string>();
  for (const e of order) {
    const name = `v${names.size}`;
    names.set(e, name);
    if (e.kind === 'load') {
      const b = bindingOf(e.storage);
      keyParts.push(`L${b}`);
      body.push(`let ${name} = in${b}[${index(e)}];`);
    } else if (e.kind === 'scalar') {
      const t = scalarType.get(e)!;
      keyParts.push('s');
      body.push(`let ${name} = ${vt(t)}(bitcast<${t}>(pu(${slot(bitsOf(e.value, t))}u)));`);
    } else {
      const args = e.args.map((a) => `${vt(e.ctype)}(${names.get(a)})`);
      if (e.def.wgslHelpers) helpers.add(e.def.wgslHelpers);
      keyParts.push(`A${e.def.name}:${e.ctype}:${e.otype}(${e.args.map((a) => order.indexOf(a)).join(',')})`);
      body.push(`let ${name} = ${vt(e.otype)}(${e.def.wgsl(args, vt(e.ctype))});`);
    }
  }
  const outIndex = index({ shape: outShape, strides: outStrides, offset: out.offset });
  const dtypeOf = (s: Storage): WType => storageTypeOf(s.dtype);
  // Named after the op that produces the result (what errors and profiles show), then the structure.
  const key = `ew:${expr.def.name}:${keyParts.join(' ')}:${dtypeOf(out.storage)}:${bound.map(dtypeOf).join(',')}`;
  const perInvocation = vec ? 4 * VEC4_PER_THREAD : contiguous ? PER_THREAD : 1;
  const source = () => {
    const bindings = [
      `var<storage, read_write> out: array<${vt(dtypeOf(out.storage))}>`,
      ...bound.map((s, b) => `var<storage, read> in${b}: array<${vt(dtypeOf(s))}>`),
    ];
    const units = vec ? `${FUSED.read('N')} / 4u` : FUSED.read('N');
    const per = vec ? VEC4_PER_THREAD : contiguous ? PER_THREAD : 1;
    return `${header(bindings)}
${[...helpers].join('\n')}
${mainSig} {
  let first = (gid.x + gid.y * nwg.x * ${WG}u) * ${per}u;
  for (var j = 0u; j < ${per}u; j++) {
    let e = first + j;
    if (e >= ${units}) { return; }
    ${body.join('\n    ')}
    out[${outIndex}] = ${names.get(expr)};
  }
}`;
  };
  return {
    key,
    source,
    params: FUSED.pack({ N: n, WORDS: words }),
    bound,
    groups: spreadGroups(Math.ceil(n / perInvocation / WG)),
  };
}

/** What the fuser needs from its backend. */
export interface FusionHost {
  readonly rt: GpuRuntime;
  alloc(dtype: DType, length: number): GpuStorage;
  release(storage: Storage): void;
  /** Records one kernel over `bound` (out first), realising and guarding them as every launch does. */
  launchKernel(
    op: string,
    key: string,
    source: () => string,
    params: Uint32Array,
    bound: readonly { storage: Storage }[],
    groups: [number, number, number],
  ): void;
}

type ViewLike = {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
};
const isWholeStorage = (v: ViewLike): boolean => {
  const cs = contiguousStrides(v.shape);
  return (
    v.offset === 0 && numel(v.shape) === v.storage.length && v.shape.every((d, i) => d === 1 || v.strides[i] === cs[i])
  );
};

/** Records and realises the pending elementwise expressions of one backend's storages. */
export class Fuser {
  /**
   * On by default on hardware GPUs; off on software adapters (lavapipe), where each new expression shape
   * costs seconds of shader compilation (an ODE test went from 5 s to over 120 s on a cold shader cache)
   * to save ~0.3 ms per dispatch. DAWNGRAD_FUSION=1 / 0 forces it on / off.
   */
  enabled: boolean;
  private readonly maxStorages: number;

  constructor(private readonly host: FusionHost) {
    this.enabled = config().fusion ?? !host.rt.isSoftware;
    // Out plus the loads must fit the adapter's storage-buffer bindings.
    this.maxStorages = Math.min(8, host.rt.info.limits.maxStorageBuffersPerShaderStage - 1);
  }

  /**
   * out = def(operands) (operands already broadcast to out.shape). Deferred when fusion is on and out is
   * a whole fresh storage (see GpuStorage.written) the expression does not read; otherwise dispatched now.
   */
  elementwise(
    def: ElementwiseDef,
    operands: readonly Operand[],
    out: ViewLike & { dtype: DType },
    ctype: ComputeType,
  ): void {
    const views = operands.filter((o): o is View => !isScalarOperand(o));
    const build = (): Apply => {
      // Operands are read at out's linear index: collapse their dims jointly with out's (shared index math).
      const [shape, , ...strides] = collapseDims(out.shape, [out.strides, ...views.map((v) => v.strides)]);
      let k = 0;
      const args = operands.map((o): Expr =>
        isScalarOperand(o) ? { kind: 'scalar', value: o.scalar } : this.operand(o, shape, strides[k++]),
      );
      return { kind: 'apply', def, args, ctype, otype: storageTypeOf(out.dtype) };
    };
    let expr = build();
    let m = measure(expr);
    if (m.nodes > MAX_NODES || m.storages.size > this.maxStorages || m.words > LAYOUT_WORDS - 1) {
      // Too big to fuse further: realise the pending operands and read them as loads.
      views.forEach((v) => this.realise(v.storage as GpuStorage));
      expr = build();
      m = measure(expr);
    }
    const s = out.storage as GpuStorage;
    const whole = isWholeStorage(out);
    const fresh = !s.written;
    s.written = true;
    // Hold the loads before the expression `s` had (which may share them) lets go of its own.
    for (const l of m.storages) l.refs++;
    this.beforeWrite(s, whole);
    if (this.enabled && fresh && whole && !m.storages.has(s)) {
      for (const l of m.storages) (l.readers ??= new Set()).add(s);
      s.pending = { expr, loads: m.storages, fuser: this };
      return;
    }
    const n = numel(out.shape);
    if (!m.storages.has(s)) {
      this.run(expr, out, n);
    } else {
      // A buffer cannot be bound read-only and read-write at once: compute into a temp, then copy.
      const temp = this.host.alloc(out.dtype, n);
      this.run(expr, { storage: temp, shape: [n], strides: [1], offset: 0 }, n);
      const otype = expr.otype;
      this.run(
        {
          kind: 'apply',
          def: COPY_KERNEL,
          args: [{ kind: 'load', storage: temp, shape: [n], strides: [1], offset: 0 }],
          ctype: accType(otype),
          otype,
        },
        out,
        n,
      );
      this.host.release(temp);
    }
    for (const l of m.storages) this.unref(l);
  }

  /** An operand view as an expression: a load, or a pending storage's expression composed through the view. */
  private operand(view: View, shape: readonly number[], strides: readonly number[]): Expr {
    const s = view.storage as GpuStorage;
    if (s.pending) {
      if (isWholeStorage(view)) return s.pending.expr;
      const composed = composeExpr(s.pending.expr, view);
      if (composed) return composed;
      this.realise(s);
    }
    return { kind: 'load', storage: s, shape, strides, offset: view.offset };
  }

  /** Dispatches a pending storage's expression into it. */
  realise(s: GpuStorage): void {
    const p = s.pending;
    if (!p) return;
    s.pending = undefined;
    this.run(p.expr, { storage: s, shape: [s.length], strides: [1], offset: 0 }, s.length);
    this.unlink(s, p);
  }

  /** Forgets a pending expression without computing it (its storage is released or overwritten whole). */
  drop(s: GpuStorage): void {
    const p = s.pending;
    if (!p) return;
    s.pending = undefined;
    this.unlink(s, p);
  }

  /** Before `s` is written: realise the expressions that read it, and its own unless it is overwritten whole. */
  beforeWrite(s: GpuStorage, whole: boolean): void {
    if (s.readers?.size) for (const r of [...s.readers]) this.realise(r);
    if (whole) this.drop(s);
    else this.realise(s);
  }

  private unlink(s: GpuStorage, p: Pending): void {
    for (const l of p.loads) {
      l.readers?.delete(s);
      this.unref(l);
    }
  }

  private unref(s: GpuStorage): void {
    if (--s.refs === 0) this.host.release(s);
  }

  private run(expr: Apply, out: ViewLike, n: number): void {
    if (n === 0) return;
    const k = compile(expr, out as OutView, n);
    this.host.launchKernel(
      expr.def.name,
      k.key,
      k.source,
      k.params,
      [out, ...k.bound.map((storage) => ({ storage }))],
      k.groups,
    );
  }
}

/** Before a kernel binds `s`: realise it if pending, and if the kernel writes it, the expressions that read it. */
export function prepareBinding(s: GpuStorage, writable: boolean): void {
  if (writable && s.readers?.size) for (const r of [...s.readers]) r.pending?.fuser.realise(r);
  s.pending?.fuser.realise(s);
}
