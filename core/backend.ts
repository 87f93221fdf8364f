// The contract every backend implements. Ops are written once against it; kernels differ per backend.
import type { DType, TypedArray } from './dtype.js';

/** A backend's buffer, reference-counted by the tensors (and saved graph values) that view it. */
export interface Storage {
  readonly device: DeviceName;
  readonly dtype: DType;
  readonly length: number; // elements
  readonly bytes: number; // bytes actually held (size class on webgpu)
  refs: number;
  /** For int32 storages uploaded from JS: value range, so index ops can validate without a readback. */
  hostRange?: { min: number; max: number };
}

export type DeviceName = 'cpu' | 'webgpu';

/** The widest float each backend computes in: the dtype for reference runs and tolerances per device. */
export const WIDEST_FLOAT: { readonly [D in DeviceName]: 'float64' | 'float32' } = {
  cpu: 'float64',
  webgpu: 'float32',
};

/** The dtype values of `dtype` take on `device`: float64 narrows to the device's widest float. */
export function dtypeOn(device: DeviceName, dtype: DType): DType {
  return dtype === 'float64' ? WIDEST_FLOAT[device] : dtype;
}

/** A strided window on a storage. Broadcast dims have stride 0. */
export interface View {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
}

export type Operand = View | { readonly scalar: number };

export function isScalarOperand(o: Operand): o is { readonly scalar: number } {
  return (o as { scalar?: number }).scalar !== undefined;
}

/** An elementwise function known to every backend: WGSL source and a JS reference. */
export interface ElementwiseDef {
  readonly name: string;
  readonly arity: number;
  /**
   * WGSL expression over the operand expressions, typed in `t` (the compute type: f32 or i32, or
   * vec4<f32>/vec4<i32> in the vectorised kernel unless `scalarOnly`).
   */
  readonly wgsl: (args: string[], t: string) => string;
  /** The expression (or a helper it calls) works on scalars only: never use the vec4 kernel. */
  readonly scalarOnly?: boolean;
  /** JS reference (float64 arithmetic). */
  readonly js: (...args: number[]) => number;
  /** Extra WGSL helper functions the expression needs. */
  readonly wgslHelpers?: string;
}

/** The two kernels every backend and the engine itself need (copies, fills, gradient accumulation). */
export const COPY_KERNEL: ElementwiseDef = { name: 'copy', arity: 1, wgsl: ([a]) => a, js: (a) => a };
export const ADD_KERNEL: ElementwiseDef = {
  name: 'add',
  arity: 2,
  wgsl: ([a, b]) => `${a} + ${b}`,
  js: (a, b) => a + b,
};

export type ReduceKind = 'sum' | 'max' | 'min' | 'argmax' | 'argmin';

export interface Backend {
  readonly name: DeviceName;
  alloc(dtype: DType, length: number): Storage;
  upload(dtype: DType, data: ArrayLike<number>): Storage;
  release(storage: Storage): void;
  /** Contiguous copy of the view's elements, in its dtype. */
  read(view: View): Promise<TypedArray>;
  /** The same, synchronously: only backends whose memory the host holds (cpu) have it. */
  readSync?(view: View): TypedArray;
  /** out[i] = def(operands[i]) over out's shape; operands are already broadcast to out.shape. */
  elementwise(def: ElementwiseDef, operands: Operand[], out: View, computeType: DType): void;
  /** Reduce `input` over its trailing `reducedRank` axes (callers permute first); out is contiguous. */
  reduce(kind: ReduceKind, input: View, reducedRank: number, out: View): void;
  /** out[c] = input[c with c[axis] := index[c]]; index has out's shape (it may be a broadcast view). */
  gather(input: View, axis: number, index: View, out: View): void;
  /**
   * out (already a copy of self) += src scattered along axis by index (same shape as src). Deterministic.
   * With `intoZeros`, out's previous contents are ignored: the result is src scattered into zeros.
   */
  scatterAdd(out: View, axis: number, index: View, src: View, intoZeros?: boolean): void;
  /** Blocks until queued work is done (no-op on cpu). */
  sync(): Promise<void>;
  /**
   * Computes now any work deferred for `storage` (fused elementwise on webgpu; a no-op on cpu), so it
   * stops holding the storages it is computed from: for long-lived results such as gradients.
   */
  materialize(storage: Storage): void;
}
