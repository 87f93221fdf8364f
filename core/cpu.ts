// Plain-JS reference backend. Computes in float64; float32 storages round on store, float16 ones after
// each op (roundFloat16View).
import type { Backend, ElementwiseDef, Operand, ReduceKind, Storage, View } from './backend.js';
import { COPY_KERNEL, isScalarOperand } from './backend.js';
import { bytesPerElement, roundToFloat16, typedArrayFor, type DType, type TypedArray } from './dtype.js';
import { contiguousStrides, numel } from './shape.js';
import { trackAlloc, trackFree } from './stats.js';

export interface CpuStorage extends Storage {
  readonly data: TypedArray;
}

/** Calls fn(offsets...) for every element of `shape`, in row-major order, tracking one offset per stride set. */
export function forEachOffset(
  shape: readonly number[],
  strideSets: (readonly number[])[],
  bases: number[],
  fn: (offs: number[]) => void,
): void {
  const n = numel(shape);
  if (n === 0) return;
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const offs = bases.slice();
  for (let i = 0; i < n; i++) {
    fn(offs);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      for (let s = 0; s < strideSets.length; s++) offs[s] += strideSets[s][d];
      if (idx[d] < shape[d]) break;
      for (let s = 0; s < strideSets.length; s++) offs[s] -= strideSets[s][d] * shape[d];
      idx[d] = 0;
    }
  }
}

/** Whether the view's elements lie in row-major order with no gaps (size-1 dims may have any stride). */
function isDense(view: View): boolean {
  const strides = contiguousStrides(view.shape);
  return view.shape.every((d, i) => d === 1 || view.strides[i] === strides[i]);
}

/** The typed array behind a cpu tensor or view (element k of a view is at its offset + strides·index). */
export function cpuDataOf(x: { readonly storage: Storage }): TypedArray {
  if (x.storage.device !== 'cpu')
    throw new Error(
      `cpuDataOf: expected a cpu tensor, got one on '${x.storage.device}'; read it with await t.data() or move it with .to('cpu')`,
    );
  return (x.storage as CpuStorage).data;
}

/**
 * Rounds the elements a float16 view spans to float16 (a no-op for other dtypes): float16 values live in
 * a Float32Array on cpu, so every write to one ends here, as the device rounds when it stores.
 */
export function roundFloat16View(view: View): void {
  if (view.dtype !== 'float16' || view.storage.device !== 'cpu' || numel(view.shape) === 0) return;
  let end = view.offset + 1;
  view.shape.forEach((d, i) => (end += (d - 1) * Math.max(view.strides[i], 0)));
  roundToFloat16(cpuDataOf(view), view.offset, end);
}

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;

  alloc(dtype: DType, length: number): CpuStorage {
    const bytes = Math.max(length, 1) * bytesPerElement(dtype);
    trackAlloc(bytes);
    return { device: 'cpu', dtype, length, bytes, refs: 0, data: typedArrayFor(dtype, length) };
  }

  upload(dtype: DType, values: ArrayLike<number>): CpuStorage {
    const s = this.alloc(dtype, values.length);
    s.data.set(values as ArrayLike<number>);
    if (dtype === 'float16') roundToFloat16(s.data);
    return s;
  }

  release(storage: Storage): void {
    trackFree(storage.bytes);
  }

  async read(view: View): Promise<TypedArray> {
    return this.readSync(view);
  }

  readSync(view: View): TypedArray {
    const n = numel(view.shape);
    const src = cpuDataOf(view);
    if (isDense(view)) return src.slice(view.offset, view.offset + n); // a native copy (checkpoints of large tensors)
    const out = typedArrayFor(view.dtype, n);
    let i = 0;
    forEachOffset(view.shape, [view.strides], [view.offset], (o) => {
      out[i++] = src[o[0]];
    });
    return out;
  }

  elementwise(def: ElementwiseDef, operands: Operand[], out: View): void {
    this.computeInto(def, operands, out);
    roundFloat16View(out);
  }

  private computeInto(def: ElementwiseDef, operands: Operand[], out: View): void {
    if (def.js === COPY_KERNEL.js && this.copyDense(operands[0], out)) return;
    const views = operands.filter((o): o is View => !isScalarOperand(o));
    const srcs = views.map(cpuDataOf);
    const dst = cpuDataOf(out);
    // Results go to a temp first, so the output may alias an input (in-place updates).
    const n = numel(out.shape);
    const results = new Float64Array(n);
    const args = new Array<number>(operands.length);
    let i = 0;
    forEachOffset(
      out.shape,
      views.map((v) => v.strides),
      views.map((v) => v.offset),
      (offs) => {
        let k = 0;
        for (let a = 0; a < operands.length; a++) {
          const o = operands[a];
          args[a] = isScalarOperand(o) ? o.scalar : srcs[k][offs[k++]];
        }
        results[i++] = def.js(...args);
      },
    );
    i = 0;
    forEachOffset(out.shape, [out.strides], [out.offset], (o) => {
      dst[o[0]] = results[i++];
    });
  }

  /** A copy or fill into a dense window as one native call (parameter init, clones, fills); false when either side is strided. */
  private copyDense(src: Operand, out: View): boolean {
    if (!isDense(out)) return false;
    const dst = cpuDataOf(out);
    const end = out.offset + numel(out.shape);
    if (isScalarOperand(src)) dst.fill(src.scalar, out.offset, end);
    else if (isDense(src))
      dst.set(cpuDataOf(src).subarray(src.offset, src.offset + end - out.offset), out.offset); // set() copies overlapping ranges correctly
    else return false;
    return true;
  }

  reduce(kind: ReduceKind, input: View, reducedRank: number, out: View): void {
    const keptShape = input.shape.slice(0, input.shape.length - reducedRank);
    const redShape = input.shape.slice(input.shape.length - reducedRank);
    const keptStrides = input.strides.slice(0, keptShape.length);
    const redStrides = input.strides.slice(keptShape.length);
    const src = cpuDataOf(input);
    const dst = cpuDataOf(out);
    let i = 0;
    forEachOffset(keptShape, [keptStrides], [input.offset], (base) => {
      let acc = kind === 'sum' ? 0 : kind === 'max' || kind === 'argmax' ? -Infinity : Infinity;
      let best = 0;
      let j = 0;
      forEachOffset(redShape, [redStrides], [base[0]], (o) => {
        const v = src[o[0]];
        if (kind === 'sum') acc += v;
        else if (kind === 'max' || kind === 'argmax') {
          if (v > acc || Number.isNaN(v)) {
            if (!Number.isNaN(acc)) {
              acc = v;
              best = j;
            }
          }
        } else if (!(v >= acc)) {
          if (!Number.isNaN(acc)) {
            acc = v;
            best = j;
          }
        }
        j++;
      });
      dst[out.offset + i++] = kind === 'argmax' || kind === 'argmin' ? best : acc;
    });
    roundFloat16View(out);
  }

  gather(input: View, axis: number, index: View, out: View): void {
    const src = cpuDataOf(input),
      idx = cpuDataOf(index),
      dst = cpuDataOf(out);
    const inStrides = input.strides.map((s, d) => (d === axis ? 0 : s));
    forEachOffset(
      out.shape,
      [inStrides, index.strides, out.strides],
      [input.offset, index.offset, out.offset],
      ([io, xo, oo]) => {
        dst[oo] = src[io + idx[xo] * input.strides[axis]];
      },
    );
  }

  scatterAdd(out: View, axis: number, index: View, src: View, intoZeros = false): void {
    if (intoZeros) this.elementwise(COPY_KERNEL, [{ scalar: 0 }], out);
    const s = cpuDataOf(src),
      idx = cpuDataOf(index),
      dst = cpuDataOf(out);
    const outStrides = out.strides.map((st, d) => (d === axis ? 0 : st));
    forEachOffset(
      index.shape,
      [outStrides, index.strides, src.strides],
      [out.offset, index.offset, src.offset],
      ([oo, xo, so]) => {
        dst[oo + idx[xo] * out.strides[axis]] += s[so];
      },
    );
    roundFloat16View(out);
  }

  async sync(): Promise<void> {}

  materialize(): void {}
}
