// The safetensors format (HF): 8-byte little-endian header length N, N bytes of JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { string: string } } padded with
// spaces to 8-byte alignment, then the tensors' bytes back to back, little-endian, row-major.
// Reading validates the whole file before creating any tensor, so a bad file loads nothing.
import { endianness } from 'node:os';
import { open, readFile } from 'node:fs/promises';
import { bufferSourceToUint8Array, splitUint8Array } from 'typed-array-utils';
import { WIDEST_FLOAT, type DeviceName } from '../../core/backend.js';
import { getDefaultDevice } from '../../core/device.js';
import { FLOAT16_MAX, type DType } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { tensor } from '../../ops/creation.js';
import { writeFileAtomic } from './atomic.js';
import { argObject, argString, argTensor } from '../../core/args.js';

export class SafetensorsError extends Error {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(`safetensors: ${path}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

/** Bytes per element of every dtype the format defines; the supported ones are those with a decoder below. */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};
const READABLE = ['F32', 'F64', 'I32', 'F16', 'BF16'];
const MAX_HEADER = 100 * 1024 * 1024;

if (endianness() !== 'LE') throw new Error('dawngrad io: safetensors support assumes a little-endian host');

export type Metadata = Record<string, string>;

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** How float tensors are stored: 'native' keeps F64 for float64 tensors; the others convert every float tensor. */
export type FloatFormat = 'native' | 'F32' | 'F16' | 'BF16';
const FLOAT_FORMATS: readonly FloatFormat[] = ['native', 'F32', 'F16', 'BF16'];

export interface SerializeOptions {
  /** Storage of float tensors (default 'native': F32, or F64 for float64 tensors). Int32 tensors stay I32. */
  floatFormat?: FloatFormat;
}

function fileDType(t: Tensor, floatFormat: FloatFormat): string {
  if (t.dtype === 'int32') return 'I32';
  if (floatFormat === 'native') return t.dtype === 'float64' ? 'F64' : 'F32';
  return floatFormat;
}

/** float32 bits → float16 bits, rounding to nearest even (overflow → ±Inf, NaN kept). */
function f32ToF16Bits(f32bits: number): number {
  const sign = (f32bits >>> 16) & 0x8000;
  const exp = (f32bits >>> 23) & 0xff;
  const mant = f32bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa into place, rounding to nearest even.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let out = m >>> shift;
    if (rest > half || (rest === half && out & 1)) out++;
    return sign | out;
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && out & 1)) out++; // a carry into the exponent is still correct
  return sign | out;
}

/** float32 bits → bfloat16 bits (the top half), rounding to nearest even; NaN stays NaN. */
function f32ToBF16Bits(f32bits: number): number {
  if ((f32bits & 0x7f800000) === 0x7f800000 && f32bits & 0x7fffff) return ((f32bits >>> 16) | 0x40) & 0xffff;
  const rounded = f32bits + 0x7fff + ((f32bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** A float tensor's values in a 16-bit format (values are first rounded to float32, as torch does). */
function encodeHalf(values: ArrayLike<number>, format: 'F16' | 'BF16'): Uint16Array {
  const f32 = Float32Array.from(values);
  const bits = new Uint32Array(f32.buffer);
  const convert = format === 'F16' ? f32ToF16Bits : f32ToBF16Bits;
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i]);
  return out;
}

/** One tensor's bytes in the file's dtype (little-endian, as the host's typed arrays). */
async function encodeTensor(t: Tensor, dtype: string): Promise<Uint8Array> {
  const data = await t.data();
  if (dtype === 'F16' || dtype === 'BF16') return bufferSourceToUint8Array(encodeHalf(data, dtype));
  if (dtype === 'F32' && !(data instanceof Float32Array)) return bufferSourceToUint8Array(Float32Array.from(data));
  return bufferSourceToUint8Array(data);
}

/** The file's bytes as chunks (header, then each tensor's data). Reads tensor data (async on webgpu). */
export async function serializeSafetensors(
  tensors: Record<string, Tensor>,
  metadata?: Metadata,
  opts: SerializeOptions = {},
): Promise<Uint8Array[]> {
  const floatFormat = opts.floatFormat ?? 'native';
  if (!FLOAT_FORMATS.includes(floatFormat))
    throw new Error(
      `saveSafetensors: floatFormat must be one of ${FLOAT_FORMATS.join(', ')}, got '${String(floatFormat)}'`,
    );
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        throw new Error(`saveSafetensors: metadata value for '${k}' must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__')
      throw new Error("saveSafetensors: '__metadata__' is reserved and cannot name a tensor");
    argTensor('saveSafetensors', `tensors['${name}']`, t);
    const dtype = fileDType(t, floatFormat);
    const bytes = await encodeTensor(t, dtype);
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const lengthBytes = Buffer.alloc(8);
  lengthBytes.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  return [lengthBytes, headerBytes, ...chunks];
}

/**
 * Writes tensors (F32 / I32, F64 for cpu float64 tensors, or every float as F32 / F16 / BF16 with
 * `floatFormat`) atomically: temp file + fsync + rename, so an interrupted save leaves any previous
 * file at `path` intact.
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Metadata,
  opts: SerializeOptions = {},
): Promise<void> {
  argString('saveSafetensors', 'path', path);
  argObject('saveSafetensors', 'tensors', tensors);
  await writeFileAtomic(path, await serializeSafetensors(tensors, metadata, opts));
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The 8-byte header length of a file of `fileSize` bytes whose first bytes are `start`. */
function headerLength(path: string, start: Uint8Array, fileSize: number): number {
  const fail = (problem: string): never => {
    throw new SafetensorsError(path, problem);
  };
  if (fileSize < 8 || start.byteLength < 8) fail(`file is ${fileSize} bytes, too short for the 8-byte header length`);
  const n = new DataView(start.buffer, start.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8))
    fail(`bad header length ${n}: the file has only ${fileSize - 8} bytes after the length field`);
  if (n > BigInt(MAX_HEADER)) fail(`bad header length ${n}: larger than the ${MAX_HEADER}-byte limit`);
  return Number(n);
}

/**
 * Validates the header against the file size; returns entries in file order. `buf` holds at least the
 * length field and the header (the whole file when reading tensors); `fileSize` is the file's size.
 */
function parseHeader(
  path: string,
  buf: Uint8Array,
  fileSize = buf.byteLength,
): { entries: Entry[]; metadata: Metadata; dataStart: number } {
  const fail = (problem: string): never => {
    throw new SafetensorsError(path, problem);
  };
  const headerLen = headerLength(path, buf, fileSize);
  if (buf.byteLength < 8 + headerLen)
    fail(`internal error: only ${buf.byteLength} bytes given for a ${headerLen}-byte header`);
  const [, headerBytes] = splitUint8Array(buf, 8, 8 + headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  let metadata: Metadata = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Object.values(raw).some((v) => typeof v !== 'string'))
        fail('__metadata__ must be an object of strings');
      metadata = raw as Metadata;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(`tensor '${name}': entry is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES))
      fail(`tensor '${name}': unknown dtype ${JSON.stringify(e.dtype)}`);
    const dtype = e.dtype as string;
    if (!READABLE.includes(dtype))
      fail(`tensor '${name}': dtype ${dtype} is not supported (readable: ${READABLE.join(', ')})`);
    if (!Array.isArray(e.shape) || !e.shape.every(isNonNegInt))
      fail(`tensor '${name}': shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isNonNegInt))
      fail(`tensor '${name}': data_offsets ${JSON.stringify(offs)} must be two non-negative integers`);
    const [begin, end] = offs as number[];
    if (begin > end || end > dataLen)
      fail(`tensor '${name}': data_offsets [${begin}, ${end}] out of range (the data section has ${dataLen} bytes)`);
    const shape = e.shape as number[];
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expected)
      fail(
        `tensor '${name}': size mismatch: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes but data_offsets span ${end - begin}`,
      );
    entries.push({ name, dtype, shape, begin, end });
  }
  // The tensors must tile the data section exactly (as the reference implementation requires).
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos)
      fail(
        `tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (which ends at ${pos})`,
      );
    if (e.begin > pos) fail(`gap in the data section: bytes [${pos}, ${e.begin}) belong to no tensor`);
    pos = e.end;
  }
  if (pos !== dataLen)
    fail(
      `size mismatch: the tensors cover ${pos} bytes but the data section has ${dataLen} (truncated or trailing bytes)`,
    );
  return { entries, metadata, dataStart };
}

function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Decodes one tensor's bytes into a typed array (copied, so it is aligned and owned). */
function decode(dtype: string, bytes: Uint8Array): Float32Array | Float64Array | Int32Array {
  const copy = new Uint8Array(bytes).buffer; // a copy: aligned, and independent of the file buffer
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy);
    case 'F64':
      return new Float64Array(copy);
    case 'I32':
      return new Int32Array(copy);
    case 'F16':
      return Float32Array.from(new Uint16Array(copy), f16ToF32);
    case 'BF16': {
      const src = new Uint16Array(copy);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    default:
      throw new Error(`unreachable dtype ${dtype}`);
  }
}

/** The dtypes float tensors can be read as. */
export type FloatDType = 'float16' | 'float32' | 'float64';

export interface LoadSafetensorsOptions {
  device?: DeviceName;
  /**
   * Convert every float tensor to this dtype, or to the dtype this function gives for its name (default:
   * F64 → float64 on cpu / float32 on webgpu, others float32). Reading as float16 refuses finite values
   * beyond its range (Float16OverflowError names every such tensor).
   */
  floatDType?: FloatDType | ((name: string) => FloatDType);
}

/** Reading as float16 found finite values beyond ±65504 (they would become ±Infinity) in these tensors. */
export class Float16OverflowError extends SafetensorsError {
  constructor(
    path: string,
    readonly tensors: string[],
  ) {
    super(path, `values beyond float16's range (|x| > ${FLOAT16_MAX}) in ${tensors.join(', ')}: read them as float32`);
    this.name = 'Float16OverflowError';
  }
}

const overflowsFloat16 = (values: ArrayLike<number>): boolean =>
  Array.prototype.some.call(values, (v: number) => Math.abs(v) > FLOAT16_MAX && Number.isFinite(v));

/** Parses a whole safetensors file held in memory. `path` only names it in errors. */
export function parseSafetensors(
  buf: Uint8Array,
  path: string,
  opts: LoadSafetensorsOptions = {},
): { tensors: Record<string, Tensor>; metadata: Metadata } {
  const device = opts.device ?? getDefaultDevice();
  const { entries, metadata, dataStart } = parseHeader(path, buf);
  const decoded = entries.map((e) => decode(e.dtype, buf.subarray(dataStart + e.begin, dataStart + e.end)));
  const asked = opts.floatDType;
  const dtypes = entries.map((e): DType => {
    if (e.dtype === 'I32') return 'int32';
    const d = typeof asked === 'function' ? asked(e.name) : asked;
    if (d === 'float64' && WIDEST_FLOAT[device] !== 'float64')
      throw new SafetensorsError(path, `floatDType 'float64' is not available on ${device}`);
    return d ?? (e.dtype === 'F64' ? WIDEST_FLOAT[device] : 'float32');
  });
  const overflowing = entries.filter((e, i) => dtypes[i] === 'float16' && overflowsFloat16(decoded[i]));
  if (overflowing.length)
    throw new Float16OverflowError(
      path,
      overflowing.map((e) => e.name),
    );
  const tensors: Record<string, Tensor> = {};
  try {
    entries.forEach((e, i) => {
      tensors[e.name] = tensor(decoded[i], { shape: e.shape, dtype: dtypes[i], device });
    });
  } catch (err) {
    Object.values(tensors).forEach((t) => t.dispose());
    throw err;
  }
  return { tensors, metadata };
}

/** Reads a safetensors file: tensors by name plus the `__metadata__` string map. */
export async function readSafetensors(
  path: string,
  opts: LoadSafetensorsOptions = {},
): Promise<{ tensors: Record<string, Tensor>; metadata: Metadata }> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new SafetensorsError(path, `cannot read the file (${(e as Error).message})`);
  }
  return parseSafetensors(buf, path, opts);
}

/** What a safetensors header says about one tensor. */
export interface TensorInfo {
  dtype: string;
  shape: number[];
}

/**
 * Reads and validates only a file's header (names, dtypes, shapes, offsets against the file size):
 * cheap even for multi-gigabyte shards.
 */
export async function readSafetensorsHeader(
  path: string,
): Promise<{ tensors: Record<string, TensorInfo>; metadata: Metadata }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new SafetensorsError(path, `cannot read the file (${(e as Error).message})`);
  }
  try {
    const { size } = await fh.stat();
    const start = new Uint8Array(Math.min(8, size));
    await fh.read(start, 0, start.byteLength, 0);
    const headerLen = headerLength(path, start, size);
    const buf = new Uint8Array(8 + headerLen);
    await fh.read(buf, 0, buf.byteLength, 0);
    const { entries, metadata } = parseHeader(path, buf, size);
    const tensors: Record<string, TensorInfo> = {};
    for (const e of entries) tensors[e.name] = { dtype: e.dtype, shape: e.shape };
    return { tensors, metadata };
  } finally {
    await fh.close();
  }
}

/** Reads a safetensors file's tensors by name onto `device` (default: the default device). */
export async function loadSafetensors(
  path: string,
  opts: LoadSafetensorsOptions = {},
): Promise<Record<string, Tensor>> {
  return (await readSafetensors(path, opts)).tensors;
}
