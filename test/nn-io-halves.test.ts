// safetensors F16 / BF16 storage: every float32 rounds to the nearest representable 16-bit value (ties
// to even), specials survive, and the header-only reader validates like the full one.
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { io, tensor } from '../index.js';

const dir = mkdtempSync(join(tmpdir(), 'dawngrad-halves-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Stores `values` as one tensor in `format`; returns the 16-bit patterns and the values read back. */
async function roundTrip(values: number[], format: 'F16' | 'BF16'): Promise<{ bits: Uint16Array; back: Float32Array }> {
  const t = tensor(values, { device: 'cpu', dtype: 'float32' });
  const chunks = await io.serializeSafetensors({ x: t }, undefined, { floatFormat: format });
  const data = chunks[chunks.length - 1];
  const bits = new Uint16Array(new Uint8Array(data).buffer);
  const file = Buffer.concat(chunks);
  const { tensors } = io.parseSafetensors(file, 'mem', { device: 'cpu', floatDType: 'float32' });
  const back = Float32Array.from(await tensors.x.data());
  t.dispose();
  tensors.x.dispose();
  return { bits, back };
}

/** The value of 16-bit pattern b (decoded by storing and reading it back). */
async function valuesOf(patterns: number[], format: 'F16' | 'BF16'): Promise<number[]> {
  const header = JSON.stringify({
    x: { dtype: format, shape: [patterns.length], data_offsets: [0, 2 * patterns.length] },
  });
  const padded = header + ' '.repeat((8 - (header.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(padded.length));
  const file = Buffer.concat([len, Buffer.from(padded), Buffer.from(Uint16Array.from(patterns).buffer)]);
  const { tensors } = io.parseSafetensors(file, 'mem', { device: 'cpu', floatDType: 'float32' });
  const out = Array.from(await tensors.x.data());
  tensors.x.dispose();
  return out;
}

describe('16-bit float storage', () => {
  for (const [format, max] of [
    ['F16', 65504],
    ['BF16', Math.fround(3.3e38)],
  ] as const) {
    it(`${format}: nearest representable value, ties to even`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.float({ min: -max, max, noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 20 }),
          async (xs) => {
            const { bits, back } = await roundTrip(xs, format);
            // Neighbours of each stored pattern (one unit in the last place either way, same sign).
            const lower = Array.from(bits, (b) => ((b & 0x7fff) === 0 ? b : b - 1));
            const upper = Array.from(bits, (b) => b + 1);
            const [lo, hi] = [await valuesOf(lower, format), await valuesOf(upper, format)];
            xs.forEach((x0, i) => {
              const x = Math.fround(x0);
              const err = Math.abs(back[i] - x);
              for (const n of [lo[i], hi[i]]) {
                if (!Number.isFinite(n)) continue;
                const other = Math.abs(n - x);
                expect(err).toBeLessThanOrEqual(other);
                if (err === other && n !== back[i]) expect(bits[i] & 1).toBe(0); // a tie goes to the even pattern
              }
            });
          },
        ),
        { numRuns: 60 },
      );
    });
  }

  it('keeps zeros, infinities and NaN; F16 overflows to infinity and underflows to (signed) zero', async () => {
    const specials = [0, -0, Infinity, -Infinity, NaN, 1e6, -1e6, 1e-9, -1e-9, 2 ** -24, 65504];
    const f16 = (await roundTrip(specials, 'F16')).back;
    expect(Array.from(f16)).toEqual([0, -0, Infinity, -Infinity, NaN, Infinity, -Infinity, 0, -0, 2 ** -24, 65504]);
    const bf16 = (await roundTrip(specials, 'BF16')).back;
    expect(Array.from(bf16.slice(0, 7))).toEqual([0, -0, Infinity, -Infinity, NaN, 999424, -999424]);
  });

  it('exact ties round to the even pattern', async () => {
    // Halfway between 1 and the next value rounds down to 1 (even); halfway above an odd pattern rounds up.
    expect(Array.from((await roundTrip([1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11)], 'F16')).back)).toEqual([
      1,
      1 + 2 ** -9,
      -1,
    ]);
    expect(Array.from((await roundTrip([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 3 * 2 ** -8)], 'BF16')).back)).toEqual([
      1,
      1 + 2 ** -6,
      -(1 + 2 ** -6),
    ]);
  });

  it('readSafetensorsHeader reads names, dtypes and shapes, and rejects a truncated file', async () => {
    const path = join(dir, 'h.safetensors');
    await io.saveSafetensors(
      path,
      { a: tensor([1, 2, 3], { device: 'cpu' }), b: tensor([[1, 2]], { device: 'cpu', dtype: 'int32' }) },
      undefined,
      { floatFormat: 'BF16' },
    );
    expect((await io.readSafetensorsHeader(path)).tensors).toEqual({
      a: { dtype: 'BF16', shape: [3] },
      b: { dtype: 'I32', shape: [1, 2] },
    });
    const bytes = (await import('node:fs')).readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 2));
    await expect(io.readSafetensorsHeader(path)).rejects.toThrow(
      /safetensors: .*h\.safetensors: .*(out of range|size mismatch)/,
    );
    await expect(io.readSafetensorsHeader(join(dir, 'none.safetensors'))).rejects.toThrow(/cannot read the file/);
  });
});
