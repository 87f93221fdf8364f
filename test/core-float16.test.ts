// float16: binary16 rounding, storage on both backends, the backend primitives, casts and promotion,
// and the clear error where the adapter lacks (or the settings turn off) 'shader-f16'.
import { describe, expect, it } from 'vitest';
import { autocast, autocastDtype, configure, memory, tensor, withConfig } from '../index.js';
import { tinyModel } from './models-helpers.js';
import { float16Bits, float16Value, roundFloat16 } from '../core/dtype.js';

const devices = ['cpu', 'webgpu'] as const;

describe('binary16 rounding', () => {
  it('round-trips every finite bit pattern', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = float16Value(bits);
      if (!Number.isNaN(v)) expect(float16Bits(v)).toBe(bits);
    }
  });

  it('rounds to nearest even, overflows past 65504 and keeps subnormals', () => {
    const next = float16Value(0x3c01); // the float16 after 1
    expect(roundFloat16((1 + next) / 2)).toBe(1); // tie: to the even mantissa
    expect(roundFloat16((1 + next) / 2 + 1e-12)).toBe(next);
    expect(roundFloat16(65519)).toBe(65504);
    expect(roundFloat16(65520)).toBe(Infinity);
    expect(roundFloat16(-1e6)).toBe(-Infinity);
    expect(roundFloat16(2 ** -24)).toBe(2 ** -24); // smallest subnormal
    expect(roundFloat16(2 ** -25)).toBe(0); // the tie below it rounds to even (0)
    expect(Object.is(roundFloat16(-1e-9), -0)).toBe(true);
    expect(roundFloat16(NaN)).toBeNaN();
  });
});

describe.each(devices)('float16 tensors on %s', (device) => {
  const values = [1, 2.0001, -3.14159, 65504, 70000, 1e-8, -0.1, 1000.3];

  it('stores values rounded to float16 and reads them back as numbers, at odd offsets too', async () => {
    const x = tensor(values, { dtype: 'float16', device });
    expect(x.dtype).toBe('float16');
    expect(Array.from(await x.data())).toEqual(values.map(roundFloat16));
    expect(Array.from(await x.slice(0, 1, 6).data())).toEqual(values.slice(1, 6).map(roundFloat16));
    expect(Array.from(await x.slice(0, 3, 8, 2).data())).toEqual([values[3], values[5], values[7]].map(roundFloat16));
  });

  it('rounds each elementwise result to float16 and keeps float16 for numbers (PyTorch promotion)', async () => {
    const x = tensor([1000.3, 3, 0.1], { dtype: 'float16', device });
    const y = x.mul(3).add(0.5);
    expect(y.dtype).toBe('float16');
    const expected = [1000.3, 3, 0.1].map((v) => roundFloat16(roundFloat16(roundFloat16(v) * 3) + 0.5));
    expect(Array.from(await y.data())).toEqual(expected);
    expect(x.add(tensor([1, 1, 1], { device })).dtype).toBe('float32');
    expect(x.add(tensor([1, 1, 1], { dtype: 'int32', device })).dtype).toBe('float16');
    expect(tensor([1, 2], { dtype: 'int32', device }).mul(0.5).dtype).toBe('float32');
  });

  it('reduces with a float32 accumulator and rounds once', async () => {
    // 2048 + 1 + 1 + ... in float16 steps would stay at 2048; summed in f32 it is 2048 + 64.
    const data = [2048, ...new Array<number>(64).fill(1)];
    const x = tensor(data, { dtype: 'float16', device });
    expect(Array.from(await x.sum().data())).toEqual([2112]);
    expect(Array.from(await x.max().data())).toEqual([2048]);
    expect(Array.from(await x.argmax().data())).toEqual([0]);
  });

  it('gathers and scatter-adds float16 rows', async () => {
    const table = tensor(
      [
        [1.5, 2],
        [3, 4.25],
        [5, 6],
      ],
      { dtype: 'float16', device },
    );
    const ids = tensor([2, 0, 2], { dtype: 'int32', device });
    expect(await table.indexSelect(0, ids).toArray()).toEqual([
      [5, 6],
      [1.5, 2],
      [5, 6],
    ]);
    const src = tensor(
      [
        [0.5, 0.5],
        [1, 1],
        [0.25, 0.25],
      ],
      { dtype: 'float16', device },
    );
    // a broadcast index (the index-add kernel) and a dense one (the per-element kernel)
    const rows = ids.unsqueeze(1).expand([3, 2]);
    const expected = [
      [1, 1],
      [0, 0],
      [0.75, 0.75],
    ];
    expect(await table.zerosLike().scatterAdd(0, rows, src).toArray()).toEqual(expected);
    expect(await table.zerosLike().scatterAdd(0, rows.contiguous(), src).toArray()).toEqual(expected);
  });

  it('casts with half(), float() and to({ dtype }), and gradients come back in the source dtype', async () => {
    const w = tensor([0.1, 0.2, 0.3], { device, requiresGrad: true });
    const h = w.half();
    expect(h.dtype).toBe('float16');
    expect(h.float().dtype).toBe('float32');
    expect(w.to({ dtype: 'float16' }).dtype).toBe('float16');
    h.mul(2).sum().backward();
    expect(w.grad!.dtype).toBe('float32');
    expect(Array.from(await w.grad!.data())).toEqual([2, 2, 2]);
    expect(() => w.to({ dtype: 'float8' as never })).toThrow(/unknown dtype 'float8'/);
    expect(() => w.to({ dtpye: 'float16' } as never)).toThrow(/to: unknown option 'dtpye'/);
  });

  it('takes half the bytes of float32', () => {
    const before = memory().liveBytes;
    const f32 = tensor(new Float32Array(1 << 16), { device });
    const f32Bytes = memory().liveBytes - before;
    const f16 = f32.half();
    const f16Bytes = memory().liveBytes - before - f32Bytes;
    expect(f16Bytes).toBe(f32Bytes / 2);
    f32.dispose();
    f16.dispose();
  });
});

describe('an adapter without shader-f16', () => {
  it('gets an error that names the feature, the setting and what to do', async () => {
    const x = tensor([1, 2], { device: 'webgpu' });
    await withConfig({ disableFeatures: ['shader-f16'] }, () => {
      expect(() => tensor([1, 2], { dtype: 'float16', device: 'webgpu' })).toThrow(
        /float16 needs the WebGPU feature 'shader-f16'.*DAWNGRAD_DISABLE_FEATURES.*use float32, or device 'cpu'/,
      );
      expect(() => x.half()).toThrow(/shader-f16/);
      // cpu keeps its float16 reference
      expect(tensor([1, 2], { dtype: 'float16', device: 'cpu' }).dtype).toBe('float16');
    });
    expect(x.half().dtype).toBe('float16');
  });

  it('rejects an unknown feature name in the setting', () => {
    expect(() => configure({ disableFeatures: ['shader-f61'] })).toThrow(/disableFeatures.*shader-f16/);
  });
});

describe('autocast', () => {
  it('runs matmuls, norms and attention in float16 and the loss in float32; float32 parameters get float32 gradients', async () => {
    const model = tinyModel('llama', null, { device: 'webgpu', L0: 16 });
    const ids = tensor(
      Array.from({ length: 32 }, (_, i) => (i * 5) % 11),
      { dtype: 'int32', device: 'webgpu', shape: [2, 16] },
    );
    const full = await model.forward(ids, { labels: ids });
    const half = await autocast('float16', () => model.forward(ids, { labels: ids }));
    expect(autocastDtype()).toBe(null); // restored when the async forward settled
    expect(half.logits.dtype).toBe('float16');
    expect(half.loss!.dtype).toBe('float32');
    const [l32, l16] = [(await full.loss!.data())[0], (await half.loss!.data())[0]];
    expect(Math.abs(l16 - l32) / l32).toBeLessThan(1e-2);
    expect(l16).not.toBe(l32); // it did compute in half precision
    half.loss!.backward();
    for (const p of model.parameters()) expect(p.grad?.dtype).toBe('float32');
  });

  it('nests, turns off with null, and refuses other dtypes', () => {
    const a = tensor([[1, 2]], { device: 'webgpu' });
    const b = tensor([[3], [4]], { device: 'webgpu' });
    expect(autocast('float16', () => a.matmul(b)).dtype).toBe('float16');
    expect(autocast('float16', () => autocast(null, () => a.matmul(b))).dtype).toBe('float32');
    expect(a.matmul(b).dtype).toBe('float32');
    expect(() => autocast('bfloat16' as never, () => 0)).toThrow(/autocast: dtype must be 'float16'/);
  });
});
