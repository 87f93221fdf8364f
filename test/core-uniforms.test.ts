// The one path to the GPU: named uniform layouts (slots, packing, typed WGSL reads) and the typed
// storage accessors of each backend.
import { describe, expect, it } from 'vitest';
import { cpuDataOf } from '../core/cpu.js';
import { gpuRuntime } from '../core/device.js';
import { gpuBufferOf } from '../core/webgpu/backend.js';
import { LAYOUT_WORDS, uniformLayout } from '../core/webgpu/uniforms.js';
import { tensor } from '../index.js';

describe('uniformLayout', () => {
  const L = uniformLayout({ N: 'u32', SHAPE: ['u32', 3], EPS: 'f32', IGNORE: 'i32' });

  it('assigns words in declaration order, arrays taking their length', () => {
    expect([L.N, L.SHAPE, L.EPS, L.IGNORE]).toEqual([0, 1, 4, 5]);
  });

  it('packs each field as its type, leaves unset fields 0 and carries -Infinity / NaN in the reserved words', () => {
    const words = L.pack({ N: 7, SHAPE: [2, 3], EPS: 0.5, IGNORE: -100 });
    const f32 = new Float32Array(words.buffer),
      i32 = new Int32Array(words.buffer);
    expect([words[0], words[1], words[2], words[3]]).toEqual([7, 2, 3, 0]);
    expect(f32[L.EPS]).toBe(0.5);
    expect(i32[L.IGNORE]).toBe(-100);
    expect(f32[LAYOUT_WORDS + 1]).toBe(-Infinity);
    expect(f32[LAYOUT_WORDS]).toBeNaN();
  });

  it('reads a field in WGSL with the accessor of its type', () => {
    expect(L.read('EPS')).toBe('pf(4u)');
    expect(L.read('IGNORE')).toBe('pi(5u)');
    expect(L.read('SHAPE', 'd')).toBe('pu(1u + d)');
  });

  it('rejects layouts past the params block, too many values, unknown fields and reserved names', () => {
    expect(() => uniformLayout({ A: ['u32', LAYOUT_WORDS], B: 'u32' })).toThrow(
      `uniformLayout: fields need ${LAYOUT_WORDS + 1} words, more than the ${LAYOUT_WORDS}`,
    );
    expect(() => L.pack({ SHAPE: [1, 2, 3, 4] })).toThrow(
      "uniformLayout.pack: field 'SHAPE' holds 3 words, got 4 values",
    );
    expect(() => L.pack({ NOPE: 1 } as never)).toThrow(
      "uniformLayout.pack: unknown field 'NOPE' (fields: N, SHAPE, EPS, IGNORE)",
    );
    expect(() => uniformLayout({ pack: 'u32' })).toThrow("uniformLayout: field name 'pack' is reserved");
  });
});

describe('storage accessors', () => {
  it('cpuDataOf gives a cpu tensor its typed array', () => {
    const t = tensor([1, 2, 3], { device: 'cpu' });
    expect(Array.from(cpuDataOf(t))).toEqual([1, 2, 3]);
    t.dispose();
  });

  it.runIf(gpuRuntime())('each accessor names the device it got and how to get the right one', () => {
    const g = tensor([1, 2, 3], { device: 'webgpu' });
    const c = tensor([1, 2, 3], { device: 'cpu' });
    expect(gpuBufferOf(g).size).toBeGreaterThanOrEqual(12);
    expect(() => cpuDataOf(g)).toThrow("cpuDataOf: expected a cpu tensor, got one on 'webgpu'");
    expect(() => gpuBufferOf(c)).toThrow("gpuBufferOf: expected a webgpu tensor, got one on 'cpu'");
    g.dispose();
    c.dispose();
  });
});
