// Data types, their promotion rules and float16 rounding.
import { OpError } from './shape.js';

export type DType = 'float16' | 'float32' | 'float64' | 'int32';
export const DTYPES: readonly DType[] = ['float16', 'float32', 'float64', 'int32'];

/** Values as the host sees them. float16 elements are held as their (exactly representable) float32 values. */
export type TypedArray = Float32Array | Float64Array | Int32Array;

export function isFloat(dtype: DType): boolean {
  return dtype !== 'int32';
}

/** Bytes one element takes on a device (float16: 2, whatever the host array holding its values). */
export function bytesPerElement(dtype: DType): number {
  return dtype === 'float64' ? 8 : dtype === 'float16' ? 2 : 4;
}

export function typedArrayFor(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float16':
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

const RANK: Record<DType, number> = { int32: 0, float16: 1, float32: 2, float64: 3 };

/** int32 < float16 < float32 < float64: the wider type wins, as in PyTorch for tensors of these types. */
export function promoteTypes(...dtypes: DType[]): DType {
  return dtypes.reduce((a, b) => (RANK[a] >= RANK[b] ? a : b));
}

// float16 (IEEE binary16) conversions: round to nearest even straight from float64, overflow to ±Infinity,
// subnormals kept. Every step is a float64 product or quotient by a power of two, so exact.
function roundHalfEven(v: number): number {
  const r = Math.floor(v);
  const rest = v - r;
  return rest > 0.5 || (rest === 0.5 && r % 2 === 1) ? r + 1 : r;
}

/** The binary16 bits of x (rounded to nearest even). */
export function float16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65520 lies halfway to 2^16 and rounds to it: ±Infinity
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal (1024 is the smallest normal's bits)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven((a / 2 ** e) * 1024);
  if (m === 2048) {
    m = 1024;
    e++;
  }
  return sign | ((e + 15) << 10) | (m - 1024);
}

/** The value of binary16 bits. */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** x rounded to the nearest float16. */
export function roundFloat16(x: number): number {
  return float16Value(float16Bits(x));
}

/** Rounds a host array's elements [start, end) to float16 in place. */
export function roundToFloat16(data: TypedArray, start = 0, end = data.length): void {
  for (let i = start; i < end; i++) data[i] = float16Value(float16Bits(data[i]));
}

/** The largest finite float16 (65504). */
export const FLOAT16_MAX = 65504;
