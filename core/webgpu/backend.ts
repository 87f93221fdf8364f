// The WebGPU backend: float32 and int32 storages in pooled GPU buffers, kernels from wgsl.ts.
import type { Backend, ElementwiseDef, Operand, ReduceKind, Storage, View } from '../backend.js';
import { COPY_KERNEL, isScalarOperand } from '../backend.js';
import { type DType, type TypedArray } from '../dtype.js';
import { contiguousStrides, numel, OpError } from '../shape.js';
import type { GpuRuntime } from './runtime.js';
import { bitsOf } from './uniforms.js';
import { EW, EW_OPERAND_WORDS, EW_PER_THREAD, EW_VEC4_PER_THREAD, type EwLayout, GA, MAX_RANK, RD, SA, elementwiseSource, grid, gatherSource, reduceSource, scatterAddSource, type WType } from './wgsl.js';

export interface GpuStorage extends Storage {
  buffer: GPUBuffer;
}

/** The GPU buffer behind a webgpu tensor or view; a clear error for any other device. */
export function gpuBufferOf(x: { readonly storage: Storage }): GPUBuffer {
  if (x.storage.device !== 'webgpu') throw new Error(`gpuBufferOf: expected a webgpu tensor, got one on '${x.storage.device}'; move it with .to('webgpu')`);
  return (x.storage as GpuStorage).buffer;
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

function checkRank(op: string, rank: number): void {
  if (rank > MAX_RANK) throw new OpError(op, `tensors of rank ${rank} are not supported on webgpu (max ${MAX_RANK})`);
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
    this.rt.releaseBuffer(gpuBufferOf({ storage }));
  }

  async read(view: View): Promise<TypedArray> {
    const n = numel(view.shape);
    let src = view;
    const contiguous = contiguousStrides(view.shape).every((s, d) => view.shape[d] === 1 || s === view.strides[d]);
    let temp: GpuStorage | null = null;
    if (!contiguous) {
      temp = this.alloc(view.dtype, n);
      src = { storage: temp, shape: view.shape, strides: contiguousStrides(view.shape), offset: 0, dtype: view.dtype };
      this.elementwise(COPY_KERNEL, [view], src, view.dtype);
    }
    const bytes = await this.rt.read(gpuBufferOf(src), src.offset * 4, n * 4);
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
      this.elementwise(COPY_KERNEL, [tv], out, out.dtype);
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
    // Per tensor operand its strides (padded to MAX_RANK) and offset, then the scalars' bits.
    const operandWords = views.flatMap((v, k) => {
      const words = new Array<number>(EW_OPERAND_WORDS).fill(0);
      inStrides[k].forEach((st, d) => { words[d] = st; });
      words[MAX_RANK] = v.offset;
      return words;
    });
    for (const o of operands) if (isScalarOperand(o)) operandWords.push(bitsOf(o.scalar, ctype));
    const p = EW.pack({ N: n, SHAPE: shape, OSTRIDES: outStrides, OOFF: out.offset, OPERANDS: operandWords });
    const perInvocation = layout === 'vec4' ? 4 * EW_VEC4_PER_THREAD : layout === 'contiguous' ? EW_PER_THREAD : 1;
    this.launch(def.name, key, () => elementwiseSource(def, types, otype, ctype, layout), p, [out, ...views], grid(Math.ceil(n / perInvocation)));
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
    const lowest = kind === 'max' || kind === 'argmax';
    const p = RD.pack({
      NOUT: nOut, KRANK: kept, RRANK: reducedRank, R, CHUNKS: chunks, CHUNKLEN: chunkLen, OFF: input.offset,
      INIT: kind === 'sum' ? 0 : inType === 'f32' ? (lowest ? 0xff800000 : 0x7f800000) : lowest ? 0x80000000 : 0x7fffffff,
      KSHAPE: input.shape.slice(0, kept), KSTRIDES: input.strides.slice(0, kept), RSHAPE: input.shape.slice(kept), RSTRIDES: input.strides.slice(kept),
    });
    const reduceKernel = (target: View, groups: number) => this.launch(kind, `reduce:${kind}:${inType}:${outType}`, () => reduceSource(kind, inType, outType), p, [target, input], grid(groups));
    if (chunks === 1) {
      if (out.offset !== 0) throw new OpError(kind, 'internal: reduce output must start at offset 0');
      reduceKernel(out, nOut);
      return;
    }
    const partial = this.alloc(input.dtype, nOut * chunks);
    const pv: View = { storage: partial, shape: [nOut, chunks], strides: [chunks, 1], offset: 0, dtype: input.dtype };
    reduceKernel(pv, nOut * chunks);
    this.reduce(kind, pv, 1, out);
    this.release(partial);
  }

  gather(input: View, axis: number, index: View, out: View): void {
    const n = numel(out.shape);
    if (n === 0) return;
    checkRank('gather', out.shape.length);
    const t = wtype('gather', input.dtype);
    const p = GA.pack({
      N: n, RANK: out.shape.length, SHAPE: out.shape, INS: input.strides.map((s, d) => (d === axis ? 0 : s)), IDXS: index.strides, OUTS: out.strides,
      INOFF: input.offset, IDXOFF: index.offset, OUTOFF: out.offset, AXSTRIDE: input.strides[axis], AXLEN: input.shape[axis],
    });
    this.launch('gather', `gather:${t}`, () => gatherSource(t), p, [out, input, index], grid(n));
  }

  scatterAdd(out: View, axis: number, index: View, src: View): void {
    const n = numel(out.shape);
    if (n === 0 || numel(index.shape) === 0) return;
    checkRank('scatterAdd', out.shape.length);
    const t = wtype('scatterAdd', out.dtype);
    const p = SA.pack({
      N: n, RANK: out.shape.length, OSHAPE: out.shape, OSTR: out.strides, XSHAPE: index.shape, XSTR: index.strides, SSTR: src.strides,
      OOFF: out.offset, XOFF: index.offset, SOFF: src.offset, AXIS: axis,
    });
    this.launch('scatterAdd', `scatterAdd:${t}`, () => scatterAddSource(t), p, [out, src, index], grid(n));
  }

  sync(): Promise<void> {
    return this.rt.sync();
  }

  /** Records one kernel over `bound` (out first); the same path as launch() in ./launch.ts, on this backend's runtime. */
  private launch(op: string, key: string, source: () => string, params: Uint32Array, bound: View[], groups: [number, number, number]): void {
    this.rt.launch(op, key, source, params, bound.map(gpuBufferOf), groups);
  }
}

