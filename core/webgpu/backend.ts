// The WebGPU backend: float32 and int32 storages in pooled GPU buffers, kernels from wgsl.ts.
import type { Backend, ElementwiseDef, Operand, ReduceKind, Storage, View } from '../backend.js';
import { isScalarOperand } from '../backend.js';
import { type DType, type TypedArray } from '../dtype.js';
import { contiguousStrides, numel, OpError } from '../shape.js';
import { GpuRuntime, PARAM_WORDS } from './runtime.js';
import { EW, EW_PER_THREAD, EW_VEC4_PER_THREAD, type EwLayout, GA, MAX_RANK, RD, SA, elementwiseSource, grid, gatherSource, reduceSource, scatterAddSource, type WType } from './wgsl.js';

export interface GpuStorage extends Storage {
  buffer: GPUBuffer;
}

/**
 * Merges adjacent dims d, d+1 when every stride set has stride[d] = stride[d+1]·shape[d+1] (and drops
 * size-1 dims), so the same elements are visited in the same order with fewer dims.
 */
export function collapseDims(shape: readonly number[], strideSets: (readonly number[])[]): [number[], ...number[][]] {
  const keep = shape.map((_, d) => d).filter((d) => shape[d] !== 1);
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (const d of keep) {
    const last = outShape.length - 1;
    if (last >= 0 && strideSets.every((st, k) => outStrides[k][last] === st[d] * shape[d])) {
      outShape[last] *= shape[d];
      strideSets.forEach((st, k) => { outStrides[k][last] = st[d]; });
    } else {
      outShape.push(shape[d]);
      strideSets.forEach((st, k) => outStrides[k].push(st[d]));
    }
  }
  if (outShape.length === 0) return [[1], ...strideSets.map(() => [1])];
  return [outShape, ...outStrides];
}

const wtype = (op: string, d: DType): WType => {
  if (d === 'float64') throw new OpError(op, "float64 is not supported on webgpu (WGSL has no f64); use float32, or device 'cpu' for float64");
  return d === 'int32' ? 'i32' : 'f32';
};

const buf = (v: View): GPUBuffer => (v.storage as GpuStorage).buffer;

function checkRank(op: string, rank: number): void {
  if (rank > MAX_RANK) throw new OpError(op, `tensors of rank ${rank} are not supported on webgpu (max ${MAX_RANK})`);
}

/** Workgroup grid for `n` invocations of WG-wide groups, 2-D past the per-dimension limit. */

const scalarBits = new DataView(new ArrayBuffer(4));
function bits(value: number, t: WType): number {
  if (t === 'f32') scalarBits.setFloat32(0, value, true);
  else scalarBits.setInt32(0, value, true);
  return scalarBits.getUint32(0, true);
}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  constructor(readonly rt: GpuRuntime) {}

  alloc(dtype: DType, length: number): GpuStorage {
    wtype('alloc', dtype);
    const buffer = this.rt.acquire(Math.max(length, 1) * 4);
    return { device: 'webgpu', dtype, length, bytes: buffer.size, refs: 0, buffer };
  }

  upload(dtype: DType, data: ArrayLike<number>): GpuStorage {
    wtype('tensor', dtype);
    const buffer = this.rt.acquire(Math.max(data.length, 1) * 4, true);
    const arr = dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data);
    this.rt.upload(buffer, arr);
    return { device: 'webgpu', dtype, length: data.length, bytes: buffer.size, refs: 0, buffer };
  }

  release(storage: Storage): void {
    this.rt.releaseBuffer((storage as GpuStorage).buffer);
  }

  async read(view: View): Promise<TypedArray> {
    const n = numel(view.shape);
    let src = view;
    const contiguous = contiguousStrides(view.shape).every((s, d) => view.shape[d] === 1 || s === view.strides[d]);
    let temp: GpuStorage | null = null;
    if (!contiguous) {
      temp = this.alloc(view.dtype, n);
      src = { storage: temp, shape: view.shape, strides: contiguousStrides(view.shape), offset: 0, dtype: view.dtype };
      this.elementwise(IDENTITY, [view], src, view.dtype);
    }
    const bytes = await this.rt.read(buf(src), src.offset * 4, n * 4);
    if (temp) this.release(temp);
    return view.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
  }

  elementwise(def: ElementwiseDef, operands: Operand[], out: View, computeType: DType): void {
    const n = numel(out.shape);
    if (n === 0) return;
    checkRank(def.name, out.shape.length);
    const ctype = wtype(def.name, computeType);
    const otype = wtype(def.name, out.dtype);
    const views = operands.filter((o): o is View => !isScalarOperand(o));
    // A buffer cannot be bound read-only and read-write at once: compute into a temp if aliased.
    if (views.some((v) => v.storage === out.storage)) {
      const temp = this.alloc(out.dtype, n);
      const tv: View = { storage: temp, shape: out.shape, strides: contiguousStrides(out.shape), offset: 0, dtype: out.dtype };
      this.elementwise(def, operands, tv, computeType);
      this.elementwise(IDENTITY, [tv], out, out.dtype);
      this.release(temp);
      return;
    }
    // Merge dims that are laid out alike in every operand: fewer index divisions, and often a
    // contiguous or rank-1 kernel where the views were merely reshaped or broadcast.
    const [shape, outStrides, ...inStrides] = collapseDims(out.shape, [out.strides, ...views.map((v) => v.strides)]);
    const cstr = contiguousStrides(shape);
    const isContig = (strides: readonly number[]) => strides.every((st, i) => shape[i] === 1 || st === cstr[i]);
    const contiguous = isContig(outStrides) && inStrides.every(isContig);
    const types = operands.map((o) => (isScalarOperand(o) ? 'scalar' : wtype(def.name, o.dtype)));
    const aligned = n % 4 === 0 && out.offset % 4 === 0 && views.every((v) => v.offset % 4 === 0);
    const layout: EwLayout = !contiguous ? shape.length : aligned && !def.scalarOnly ? 'vec4' : 'contiguous';
    const key = `ew:${def.name}:${types.join(',')}:${otype}:${ctype}:${layout}`;
    const pipeline = this.rt.pipeline(key, () => elementwiseSource(def, types, otype, ctype, layout));
    const p = new Uint32Array(PARAM_WORDS);
    p[EW.N] = n;
    p.set(shape, EW.SHAPE);
    p.set(outStrides, EW.OSTRIDES);
    p[EW.OOFF] = out.offset;
    views.forEach((v, k) => {
      p.set(inStrides[k], EW.IN0 + EW.IN_STRIDE * k);
      p[EW.IN0 + EW.IN_STRIDE * k + 8] = v.offset;
    });
    let s = EW.IN0 + EW.IN_STRIDE * views.length;
    for (const o of operands) if (isScalarOperand(o)) p[s++] = bits(o.scalar, ctype);
    this.rt.dispatch(def.name, pipeline, p, [buf(out), ...views.map(buf)], grid(Math.ceil(n / (layout === 'vec4' ? 4 * EW_VEC4_PER_THREAD : layout === 'contiguous' ? EW_PER_THREAD : 1))));
  }

  reduce(kind: ReduceKind, input: View, reducedRank: number, out: View): void {
    const rank = input.shape.length;
    checkRank(kind, rank);
    const kept = rank - reducedRank;
    const nOut = numel(input.shape.slice(0, kept));
    const R = numel(input.shape.slice(kept));
    if (nOut === 0) return;
    const inType = wtype(kind, input.dtype);
    const outType = wtype(kind, out.dtype);
    const isArg = kind === 'argmax' || kind === 'argmin';
    // Few long rows: split each row into chunks, reduce chunks in parallel, then reduce the partials.
    const chunks = !isArg && R >= 4096 && nOut < 2048 ? Math.min(256, Math.ceil(R / 1024)) : 1;
    const chunkLen = Math.ceil(Math.max(R, 1) / chunks);
    const p = new Uint32Array(PARAM_WORDS);
    p[RD.NOUT] = nOut;
    p[RD.KRANK] = kept;
    p[RD.RRANK] = reducedRank;
    p[RD.R] = R;
    p[RD.CHUNKS] = chunks;
    p[RD.CHUNKLEN] = chunkLen;
    p[RD.OFF] = input.offset;
    const lowest = kind === 'max' || kind === 'argmax';
    p[RD.INIT] = kind === 'sum' ? 0 : inType === 'f32' ? (lowest ? 0xff800000 : 0x7f800000) : lowest ? 0x80000000 : 0x7fffffff;
    p.set(input.shape.slice(0, kept), RD.KSHAPE);
    p.set(input.strides.slice(0, kept), RD.KSTRIDES);
    p.set(input.shape.slice(kept), RD.RSHAPE);
    p.set(input.strides.slice(kept), RD.RSTRIDES);
    const pipeline = this.rt.pipeline(`reduce:${kind}:${inType}:${outType}`, () => reduceSource(kind, inType, outType));
    if (chunks === 1) {
      if (out.offset !== 0) throw new OpError(kind, 'internal: reduce output must start at offset 0');
      this.rt.dispatch(kind, pipeline, p, [buf(out), buf(input)], grid(nOut));
      return;
    }
    const partial = this.alloc(input.dtype, nOut * chunks);
    this.rt.dispatch(kind, pipeline, p, [partial.buffer, buf(input)], grid(nOut * chunks));
    const pv: View = { storage: partial, shape: [nOut, chunks], strides: [chunks, 1], offset: 0, dtype: input.dtype };
    this.reduce(kind, pv, 1, out);
    this.release(partial);
  }

  gather(input: View, axis: number, index: View, out: View): void {
    const n = numel(out.shape);
    if (n === 0) return;
    checkRank('gather', out.shape.length);
    const t = wtype('gather', input.dtype);
    const p = new Uint32Array(PARAM_WORDS);
    p[GA.N] = n; p[GA.RANK] = out.shape.length;
    p.set(out.shape, GA.SHAPE);
    p.set(input.strides.map((s, d) => (d === axis ? 0 : s)), GA.INS);
    p.set(index.strides, GA.IDXS);
    p.set(out.strides, GA.OUTS);
    p[GA.INOFF] = input.offset; p[GA.IDXOFF] = index.offset; p[GA.OUTOFF] = out.offset;
    p[GA.AXSTRIDE] = input.strides[axis]; p[GA.AXLEN] = input.shape[axis];
    const pipeline = this.rt.pipeline(`gather:${t}`, () => gatherSource(t));
    this.rt.dispatch('gather', pipeline, p, [buf(out), buf(input), buf(index)], grid(n));
  }

  scatterAdd(out: View, axis: number, index: View, src: View): void {
    const n = numel(out.shape);
    if (n === 0 || numel(index.shape) === 0) return;
    checkRank('scatterAdd', out.shape.length);
    const t = wtype('scatterAdd', out.dtype);
    const p = new Uint32Array(PARAM_WORDS);
    p[SA.N] = n; p[SA.RANK] = out.shape.length;
    p.set(out.shape, SA.OSHAPE); p.set(out.strides, SA.OSTR);
    p.set(index.shape, SA.XSHAPE); p.set(index.strides, SA.XSTR); p.set(src.strides, SA.SSTR);
    p[SA.OOFF] = out.offset; p[SA.XOFF] = index.offset; p[SA.SOFF] = src.offset; p[SA.AXIS] = axis;
    const pipeline = this.rt.pipeline(`scatterAdd:${t}`, () => scatterAddSource(t));
    this.rt.dispatch('scatterAdd', pipeline, p, [buf(out), buf(src), buf(index)], grid(n));
  }

  sync(): Promise<void> {
    return this.rt.sync();
  }
}

const IDENTITY: ElementwiseDef = { name: 'copy', arity: 1, wgsl: ([a]) => a, js: (a) => a };
