// Tensor basics: creation, seeding, views without copies, zero-size dims, dtypes, devices, scopes.
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  arange,
  cat,
  full,
  keep,
  linspace,
  manualSeed,
  memory,
  ones,
  rand,
  randint,
  randn,
  scope,
  stack,
  tensor,
  where,
  zeros,
} from '../index.js';

const devices = ['cpu', 'webgpu'] as const;

describe.each(devices)('tensors on %s', (device) => {
  it('creates from nested arrays, scalars and typed arrays', async () => {
    const t = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { device },
    );
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(await t.toArray()).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(await tensor(7, { device }).item()).toBe(7);
    expect(tensor(7, { device }).shape).toEqual([]);
    const i = tensor(new Int32Array([1, 2, 3, 4]), { shape: [2, 2], device });
    expect(i.dtype).toBe('int32');
    expect(await i.toArray()).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(() => tensor([[1, 2], [3]], { device })).toThrow(/tensor: ragged/);
  });

  it('fills, ranges and linspace', async () => {
    expect(await full([2], 2.5, { device }).toArray()).toEqual([2.5, 2.5]);
    expect(await zeros([0, 3], { device }).toArray()).toEqual([]);
    expect(await arange(5, undefined, 1, { device }).toArray()).toEqual([0, 1, 2, 3, 4]);
    expect(arange(5, undefined, 1, { device }).dtype).toBe('int32');
    expect(await arange(1, 2, 0.25, { device }).toArray()).toEqual([1, 1.25, 1.5, 1.75]);
    expect(await linspace(0, 1, 5, { device }).toArray()).toEqual([0, 0.25, 0.5, 0.75, 1]);
  });

  it('same seed gives the same random numbers', async () => {
    manualSeed(42);
    const a = [
      await rand([5], { device }).data(),
      await randn([5], { device }).data(),
      await randint(0, 10, [5], { device }).data(),
    ];
    manualSeed(42);
    const b = [
      await rand([5], { device }).data(),
      await randn([5], { device }).data(),
      await randint(0, 10, [5], { device }).data(),
    ];
    expect(a).toEqual(b);
    manualSeed(43);
    expect(await rand([5], { device }).data()).not.toEqual(a[0]);
  });

  it('views share storage; contiguous() copies only when needed', async () => {
    const x = arange(12, undefined, 1, { device }).astype('float32').reshape([3, 4]);
    const t = x.transpose(0, 1);
    expect(t.storage).toBe(x.storage);
    expect(t.isContiguous()).toBe(false);
    expect(await t.toArray()).toEqual([
      [0, 4, 8],
      [1, 5, 9],
      [2, 6, 10],
      [3, 7, 11],
    ]);
    expect(x.slice(1, 1, 3).storage).toBe(x.storage);
    expect(await x.slice(1, 1, 4, 2).toArray()).toEqual([
      [1, 3],
      [5, 7],
      [9, 11],
    ]);
    expect(await x.narrow(0, 1, 1).squeeze(0).toArray()).toEqual([4, 5, 6, 7]);
    expect(x.unsqueeze(1).shape).toEqual([3, 1, 4]);
    expect(x.expand([2, 3, 4]).storage).toBe(x.storage);
    expect(x.contiguous()).toBe(x);
    expect(t.contiguous().storage).not.toBe(x.storage);
    expect(await t.reshape([-1]).toArray()).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
  });

  it('reductions, comparisons, where, cat/stack', async () => {
    const x = tensor(
      [
        [1, 5, 3],
        [4, 2, 6],
      ],
      { device },
    );
    expect(await x.sum().item()).toBe(21);
    expect(await x.sum([0, 1], true).toArray()).toEqual([[21]]);
    expect(await x.max(1).toArray()).toEqual([5, 6]);
    expect(await x.min(0).toArray()).toEqual([1, 2, 3]);
    expect(await x.argmax(1).toArray()).toEqual([1, 2]);
    expect(await x.argmax().item()).toBe(5);
    expect(await x.mean(0).toArray()).toEqual([2.5, 3.5, 4.5]);
    expect(await x.var(1).toArray()).toEqual([4, 4]);
    expect(await x.gt(3).toArray()).toEqual([
      [0, 1, 0],
      [1, 0, 1],
    ]);
    expect(await where(x.gt(3), x, 0).toArray()).toEqual([
      [0, 5, 0],
      [4, 0, 6],
    ]);
    expect(await cat([x, x], 0).shape).toEqual([4, 3]);
    expect(await stack([x, x], 1).toArray()).toEqual([
      [
        [1, 5, 3],
        [1, 5, 3],
      ],
      [
        [4, 2, 6],
        [4, 2, 6],
      ],
    ]);
    expect(await zeros([0, 2], { device }).sum(0).toArray()).toEqual([0, 0]);
  });

  it('integer arithmetic stays int32; true division gives floats', async () => {
    const i = tensor(new Int32Array([7, -7]), { device });
    expect(i.add(1).dtype).toBe('int32');
    expect(await i.mul(2).toArray()).toEqual([14, -14]);
    expect(await i.div(2).toArray()).toEqual([3.5, -3.5]);
    expect(i.add(0.5).dtype).toBe('float32');
    expect(await tensor([1.7, -1.7], { device }).astype('int32').toArray()).toEqual([1, -1]);
  });

  it('moves between devices', async () => {
    const c = tensor([1, 2], { device: 'cpu' });
    const g = c.to('webgpu');
    expect(g.device).toBe('webgpu');
    expect(await (await g.toAsync('cpu')).toArray()).toEqual([1, 2]);
    expect(() => g.to('cpu')).toThrow("to: reading webgpu memory is asynchronous; use `await x.toAsync('cpu')`");
    // float64 narrows to the widest float webgpu has.
    expect(tensor([1, 2], { dtype: 'float64', device: 'cpu' }).to('webgpu').dtype).toBe('float32');
  });

  it('cpu copies and fills into windows of one storage (overlapping, converting, strided) match element-by-element copies', async () => {
    const x = tensor([0, 1, 2, 3], { dtype: 'float64', device: 'cpu' });
    x.narrow(0, 1, 3).copy_(x.narrow(0, 0, 3));
    expect(await x.toArray()).toEqual([0, 0, 1, 2]);
    x.narrow(0, 0, 3).copy_(x.narrow(0, 1, 3));
    expect(await x.toArray()).toEqual([0, 1, 2, 2]);
    const ints = tensor(new Int32Array(3), { device: 'cpu' });
    expect(await ints.copy_(tensor([1.7, -1.7, 2.5], { dtype: 'float64', device: 'cpu' })).toArray()).toEqual([
      1, -1, 2,
    ]);
    expect(await ints.copy_(2.5).toArray()).toEqual([2, 2, 2]);
    const m = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { device: 'cpu' },
    );
    expect(await m.transpose(0, 1).contiguous().toArray()).toEqual([
      [1, 3],
      [2, 4],
    ]);
    m.transpose(0, 1).copy_(
      tensor(
        [
          [5, 6],
          [7, 8],
        ],
        { device: 'cpu' },
      ),
    );
    expect(await m.toArray()).toEqual([
      [5, 7],
      [6, 8],
    ]);
  });
});

/**
 * Live tensors once the garbage collector has freed what earlier tests left unreachable: otherwise it may
 * do so during an await below and change the count (it did, once, in CI).
 */
async function settledLiveTensors(): Promise<number> {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  return memory().liveTensors;
}

describe('scopes', () => {
  it('dispose everything created inside except returned tensors (sync and async)', async () => {
    const before = await settledLiveTensors();
    const kept = scope(() => {
      ones([4]).add(1);
      return { a: ones([2]).mul(3), list: [zeros([1])] };
    });
    expect(memory().liveTensors).toBe(before + 2);
    const val = await scope(async () => {
      const t = ones([3]).mul(2);
      await t.data();
      return t.sum().item();
    });
    expect(val).toBe(6);
    expect(memory().liveTensors).toBe(before + 2);
    let survivor: ReturnType<typeof ones> | null = null;
    scope(() => {
      survivor = keep(ones([1]));
    });
    expect(survivor!.isDisposed).toBe(false);
    kept.a.dispose();
    kept.list[0].dispose();
    survivor!.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  it('Symbol.dispose works with `using`-style disposal', () => {
    const t = ones([2]);
    t[Symbol.dispose]();
    expect(t.isDisposed).toBe(true);
  });
});
