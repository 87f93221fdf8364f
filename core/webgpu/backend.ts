// The WebGPU backend: float32, float16 (where the adapter has shader-f16) and int32 storages in pooled
// GPU buffers, kernels from wgsl.ts, elementwise ops fused lazily (fusion.ts).
import type { Backend, ElementwiseDef, Operand, ReduceKind, Storage, View } from '../backend.js';
import { COPY_KERNEL, isScalarOperand } from '../backend.js';
import { bytesPerElement, float16Bits, float16Value, type DType, type TypedArray } from '../dtype.js';
import { contiguousStrides, numel, OpError } from '../shape.js';
import type { GpuRuntime } from './runtime.js';
import { Fuser, prepareBinding, type GpuStorage } from './fusion.js';
import {
  GA,
  IA,
  MAX_RANK,
  RD,
  SA,
  grid,
  gatherSource,
  indexAddSource,
  reduceSource,
  scatterAddSource,
  accType,
  storageTypeOf,
  type WType,
} from './wgsl.js';

/** The GPU buffer behind a webgpu tensor or view, computed first if it is a pending fused expression. */
export function gpuBufferOf(x: { readonly storage: Storage }): GPUBuffer {
  const s = ownStorage('gpuBufferOf', x.storage);
  prepareBinding(s, false);
  return s.buffer;
}

function ownStorage(fn: string, s: Storage): GpuStorage {
  if (s.device !== 'webgpu')
    throw new Error(`${fn}: expected a webgpu tensor, got one on '${s.device}'; move it with .to('webgpu')`);
  return s as GpuStorage;
}

/** The WGSL storage type of a dtype on this device, or an error saying why it has none. */
export function storageType(op: string, d: DType, rt: GpuRuntime): WType {
  if (d === 'float64')
    throw new OpError(
      op,
      "float64 is not supported on webgpu (WGSL has no f64); use float32, or device 'cpu' for float64",
    );
  if (d === 'float16' && !rt.hasFeature('shader-f16'))
    throw new OpError(
      op,
      `float16 needs the WebGPU feature 'shader-f16', which ${rt.info.features.includes('shader-f16') ? 'DAWNGRAD_DISABLE_FEATURES turns off' : `adapter '${rt.info.adapter}' does not have`}; use float32, or device 'cpu' for a float16 reference`,
    );
  return storageTypeOf(d);
}

/** Bytes a GPU buffer for `length` elements takes: copies and writes move whole 4-byte words. */
const bufferBytes = (dtype: DType, length: number): number =>
  Math.ceil((Math.max(length, 1) * bytesPerElement(dtype)) / 4) * 4;

function checkRank(op: string, rank: number): void {
  if (rank > MAX_RANK) throw new OpError(op, `tensors of rank ${rank} are not supported on webgpu (max ${MAX_RANK})`);
}

/**
 * When scatterAdd's index is one 1-D index broadcast over the other dims and those dims (as far as the
 * index reaches) collapse to one strided column axis in out and in src, the column count and strides;
 * otherwise null (the per-element kernel handles it).
 */
function indexAddColumns(
  out: View,
  axis: number,
  index: View,
  src: View,
): { count: number; outStride: number; srcStride: number } | null {
  if (!index.strides.every((s, d) => d === axis || s === 0)) return null;
  const dims = index.shape.map((_, d) => d).filter((d) => d !== axis && index.shape[d] > 1);
  const collapsed = (v: View) =>
    dims.every((d, k) => k === 0 || v.strides[dims[k - 1]] === v.strides[d] * index.shape[d]);
  if (!collapsed(out) || !collapsed(src)) return null;
  const last = dims[dims.length - 1];
  return {
    count: numel(dims.map((d) => index.shape[d])),
    outStride: last === undefined ? 0 : out.strides[last],
    srcStride: last === undefined ? 0 : src.strides[last],
  };
}

/** Host values as the words a buffer of `dtype` holds (float16: binary16 bits, padded to whole words). */
function hostBits(dtype: DType, data: ArrayLike<number>): ArrayBufferView {
  if (dtype === 'int32') return Int32Array.from(data);
  if (dtype === 'float32') return Float32Array.from(data);
  const bits = new Uint16Array(data.length + (data.length % 2));
  for (let i = 0; i < data.length; i++) bits[i] = float16Bits(data[i]);
  return bits;
}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  /** Lazy elementwise fusion (DAWNGRAD_FUSION=0, or fuser.enabled = false, dispatches every op at once). */
  readonly fuser: Fuser;

  constructor(readonly rt: GpuRuntime) {
    this.fuser = new Fuser(this);
  }

  alloc(dtype: DType, length: number): GpuStorage {
    storageType('webgpu', dtype, this.rt); // named after the device: many ops allocate
    const buffer = this.rt.acquire(bufferBytes(dtype, length));
    return { device: 'webgpu', dtype, length, bytes: buffer.size, refs: 0, buffer };
  }

  upload(dtype: DType, data: ArrayLike<number>): GpuStorage {
    storageType('tensor', dtype, this.rt);
    const buffer = this.rt.acquire(bufferBytes(dtype, data.length), true);
    this.rt.upload(buffer, hostBits(dtype, data));
    return { device: 'webgpu', dtype, length: data.length, bytes: buffer.size, refs: 0, buffer, written: true };
  }

  release(storage: Storage): void {
    const s = ownStorage('release', storage);
    this.fuser.drop(s);
    this.rt.releaseBuffer(s.buffer);
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
    const size = bytesPerElement(view.dtype);
    // Copies start on a 4-byte boundary: an odd float16 offset reads from the element before.
    const skip = (src.offset * size) % 4;
    const bytes = await this.rt.read(gpuBufferOf(src), src.offset * size - skip, n * size + skip);
    if (temp) this.release(temp);
    if (view.dtype === 'float16') return Float32Array.from(new Uint16Array(bytes, skip, n), float16Value);
    return view.dtype === 'int32' ? new Int32Array(bytes) : new Float32Array(bytes);
  }

  elementwise(def: ElementwiseDef, operands: Operand[], out: View, computeType: DType): void {
    if (numel(out.shape) === 0) return;
    checkRank(def.name, out.shape.length);
    operands.forEach((o) => {
      if (!isScalarOperand(o)) storageType(def.name, o.dtype, this.rt);
    });
    storageType(def.name, out.dtype, this.rt);
    this.fuser.elementwise(def, operands, out, accType(storageType(def.name, computeType, this.rt)));
  }

  reduce(kind: ReduceKind, input: View, reducedRank: number, out: View): void {
    const rank = input.shape.length;
    checkRank(kind, rank);
    const kept = rank - reducedRank;
    const nOut = numel(input.shape.slice(0, kept));
    const R = numel(input.shape.slice(kept));
    if (nOut === 0) return;
    const inType = storageType(kind, input.dtype, this.rt);
    const outType = storageType(kind, out.dtype, this.rt);
    const isArg = kind === 'argmax' || kind === 'argmin';
    // Few long rows: split each row into chunks, reduce chunks in parallel, then reduce the partials.
    const chunks = !isArg && R >= 4096 && nOut < 2048 ? Math.min(256, Math.ceil(R / 1024)) : 1;
    const chunkLen = Math.ceil(Math.max(R, 1) / chunks);
    const lowest = kind === 'max' || kind === 'argmax';
    const p = RD.pack({
      NOUT: nOut,
      KRANK: kept,
      RRANK: reducedRank,
      R,
      CHUNKS: chunks,
      CHUNKLEN: chunkLen,
      OFF: input.offset,
      INIT:
        kind === 'sum'
          ? 0
          : accType(inType) === 'f32'
            ? lowest
              ? 0xff800000
              : 0x7f800000
            : lowest
              ? 0x80000000
              : 0x7fffffff,
      KSHAPE: input.shape.slice(0, kept),
      KSTRIDES: input.strides.slice(0, kept),
      RSHAPE: input.shape.slice(kept),
      RSTRIDES: input.strides.slice(kept),
    });
    const reduceKernel = (target: View, groups: number) =>
      this.launchKernel(
        kind,
        `reduce:${kind}:${inType}:${outType}`,
        () => reduceSource(kind, inType, outType),
        p,
        [target, input],
        grid(groups),
      );
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
    const t = storageType('gather', input.dtype, this.rt);
    const p = GA.pack({
      N: n,
      RANK: out.shape.length,
      SHAPE: out.shape,
      INS: input.strides.map((s, d) => (d === axis ? 0 : s)),
      IDXS: index.strides,
      OUTS: out.strides,
      INOFF: input.offset,
      IDXOFF: index.offset,
      OUTOFF: out.offset,
      AXSTRIDE: input.strides[axis],
      AXLEN: input.shape[axis],
    });
    this.launchKernel('gather', `gather:${t}`, () => gatherSource(t), p, [out, input, index], grid(n));
  }

  scatterAdd(out: View, axis: number, index: View, src: View, intoZeros = false): void {
    const n = numel(out.shape);
    if (n === 0) return;
    checkRank('scatterAdd', out.shape.length);
    const t = storageType('scatterAdd', out.dtype, this.rt);
    const columns = indexAddColumns(out, axis, index, src);
    // The scanning kernel zeroes the rows it owns: enough when its columns cover out's other dims.
    const zeroesAll = !!columns && columns.count * out.shape[axis] === n;
    if (intoZeros && !zeroesAll) this.elementwise(COPY_KERNEL, [{ scalar: 0 }], out, out.dtype);
    if (numel(index.shape) === 0) return;
    if (columns) {
      const q = IA.pack({
        COLS: columns.count,
        V: out.shape[axis],
        LEN: index.shape[axis],
        OCOL: columns.outStride,
        SCOL: columns.srcStride,
        OOFF: out.offset,
        XOFF: index.offset,
        SOFF: src.offset,
        OAX: out.strides[axis],
        XAX: index.strides[axis],
        SAX: src.strides[axis],
        ZERO: intoZeros && zeroesAll ? 1 : 0,
      });
      this.launchKernel(
        'scatterAdd',
        `indexAdd:${t}`,
        () => indexAddSource(t),
        q,
        [out, src, index],
        grid(out.shape[axis]),
      );
      return;
    }
    const p = SA.pack({
      N: n,
      RANK: out.shape.length,
      OSHAPE: out.shape,
      OSTR: out.strides,
      XSHAPE: index.shape,
      XSTR: index.strides,
      SSTR: src.strides,
      OOFF: out.offset,
      XOFF: index.offset,
      SOFF: src.offset,
      AXIS: axis,
    });
    this.launchKernel('scatterAdd', `scatterAdd:${t}`, () => scatterAddSource(t), p, [out, src, index], grid(n));
  }

  sync(): Promise<void> {
    return this.rt.sync();
  }

  materialize(storage: Storage): void {
    prepareBinding(ownStorage('materialize', storage), false);
  }

  /**
   * Records one kernel (compiled once per `key`) over `bound`, in binding order after the params: each
   * pending storage is computed first, and the pending expressions that read a storage the kernel
   * writes. Every kernel reaches the GPU here (launch() in ./launch.ts for the fused ops and optimizers).
   */
  launchKernel(
    op: string,
    key: string,
    source: () => string,
    params: Uint32Array,
    bound: readonly { storage: Storage }[],
    groups: [number, number, number],
  ): void {
    const kinds = this.rt.bindingKinds(key, source);
    const storages = bound.map((b, i) => {
      const s = ownStorage(op, b.storage);
      const writable = kinds[i + 1] === 'w';
      prepareBinding(s, writable);
      if (writable) s.written = true;
      return s;
    });
    this.rt.dispatch(
      op,
      this.rt.pipeline(key, source),
      params,
      storages.map((s) => s.buffer),
      groups,
    );
  }
}
