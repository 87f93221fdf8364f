// Data types and their promotion rules.
import { OpError } from './shape.js';

export type DType = 'float32' | 'float64' | 'int32';
export const DTYPES: readonly DType[] = ['float32', 'float64', 'int32'];

export type TypedArray = Float32Array | Float64Array | Int32Array;

export function isFloat(dtype: DType): boolean {
  return dtype !== 'int32';
}

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float64' ? 8 : 4;
}

export function typedArrayFor(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
    case 'int32':
      return new Int32Array(n);
  }
}

export function checkDType(op: string, dtype: string): DType {
  if (!(DTYPES as readonly string[]).includes(dtype)) {
    throw new OpError(op, `unknown dtype '${dtype}'; use one of ${DTYPES.join(', ')}`);
  }
  return dtype as DType;
}

const RANK: Record<DType, number> = { int32: 0, float32: 1, float64: 2 };

/** int32 < float32 < float64, as in NumPy/PyTorch for these three types. */
export function promoteTypes(...dtypes: DType[]): DType {
  return dtypes.reduce((a, b) => (RANK[a] >= RANK[b] ? a : b));
}
