// Lazy elementwise fusion on webgpu (core/webgpu/fusion.ts): chains of elementwise ops run as one
// kernel, and fused and unfused execution agree — forward and gradients — on random programs and on a
// decoder training step; pending results are computed before anything reads or overwrites their inputs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpuBackend } from '../core/device.js';
import { memory, noGrad, optim, scope, tensor, testing, type Tensor } from '../index.js';
import {
  fuzzMismatch,
  fuzzProgram,
  POINTWISE_FUZZ_OPS,
  runFuzzProgram,
  type FuzzOp,
  type FuzzProgram,
} from '../testing/fuzz.js';
import { ids, tinyModel } from './models-helpers.js';

const backend = gpuBackend();

/** Runs `fn` with fusion on or off, restoring the default after. */
async function withFusion<T>(on: boolean, fn: () => Promise<T>): Promise<T> {
  const before = backend!.fuser.enabled;
  backend!.fuser.enabled = on;
  try {
    return await fn();
  } finally {
    backend!.fuser.enabled = before;
  }
}

/** Dispatches recorded while `fn` runs (reads included). */
async function dispatchesOf(fn: () => Promise<unknown>): Promise<number> {
  const d0 = memory().dispatches;
  await fn();
  return memory().dispatches - d0;
}

/** The elementwise and view steps of the fuzz programs: long chains of them exercise composition through views. */
const ELEMENTWISE_AND_VIEWS: FuzzOp[] = [
  ...POINTWISE_FUZZ_OPS,
  'transpose',
  'flatten',
  'unsqueeze',
  'narrow',
  'expand',
  'permute',
];
const elementwiseProgram = fc.record({
  shape: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
  seed: fc.nat(),
  steps: fc.array(fc.record({ op: fc.constantFrom(...ELEMENTWISE_AND_VIEWS), seed: fc.nat() }), {
    minLength: 2,
    maxLength: 10,
  }),
});

/** Fused and unfused runs of a program agree in values and in every input's gradient. */
async function expectFusedMatchesUnfused(p: FuzzProgram): Promise<void> {
  const fused = await withFusion(true, () => runFuzzProgram(p, 'webgpu'));
  const unfused = await withFusion(false, () => runFuzzProgram(p, 'webgpu'));
  const where = `program ${JSON.stringify(p)} (${fused.trace.join(' ')})`;
  expect(fused.outShape, where).toEqual(unfused.outShape);
  // Same f32 operations in the same order; only the compiler's contraction (a·b + c as one fma) may differ.
  expect(fuzzMismatch(fused.out, unfused.out, 1e-5, 1e-6), `${where}: values`).toBeLessThanOrEqual(1);
  unfused.grads.forEach((g, i) =>
    expect(fuzzMismatch(fused.grads[i], g, 1e-5, 1e-6), `${where}: gradient of input ${i}`).toBeLessThanOrEqual(1),
  );
}

describe.runIf(backend)('elementwise fusion', () => {
  it('runs a chain of k elementwise ops (broadcasts, scalars, views of pending results) as one dispatch', () =>
    withFusion(true, async () => {
      const x = tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3] });
      const b = tensor([0.5, -1, 2]);
      for (let k = 1; k <= 12; k++) {
        let y: Tensor | null = null;
        const n = await dispatchesOf(async () => {
          y = scope(() => {
            let t = x.mul(0.5);
            for (let i = 1; i < k; i++)
              t =
                i % 3 === 0 ? t.add(b).tanh() : i % 3 === 1 ? t.transpose(0, 1).mul(2).transpose(0, 1) : t.sub(x).exp();
            return t;
          });
          await y.data();
        });
        expect(n, `chain of ${k}`).toBe(1);
        y!.dispose();
      }
      x.dispose();
      b.dispose();
    }));

  it('never computes a pending result that is released before anything needs it', () =>
    withFusion(true, async () => {
      const x = tensor([1, 2, 3, 4]);
      expect(
        await dispatchesOf(async () =>
          scope(() => {
            x.exp().mul(2).add(1);
          }),
        ),
      ).toBe(0);
      x.dispose();
    }));

  it('agrees with unfused execution on random chains of elementwise ops and views, forward and gradients', async () => {
    await fc.assert(fc.asyncProperty(elementwiseProgram, expectFusedMatchesUnfused), testing.fcParams(6));
  }, 300_000);

  it('agrees with unfused execution on random programs mixing in reductions, matmuls and fused ops', async () => {
    await fc.assert(fc.asyncProperty(fuzzProgram(8), expectFusedMatchesUnfused), testing.fcParams(8));
  }, 300_000);

  it('fuses int32 chains, comparisons and casts', async () => {
    const a = tensor([3, -2, 7, 0, 5], { dtype: 'int32' });
    const f = () => a.mul(3).sub(1).gt(4).astype('float32').mul(0.5).add(a.astype('float32'));
    const fused = await withFusion(true, async () => Array.from(await f().data()));
    const unfused = await withFusion(false, async () => Array.from(await f().data()));
    expect(fused).toEqual([3.5, -2, 7.5, 0, 5.5]);
    expect(unfused).toEqual(fused);
    a.dispose();
  });

  it('fuses float16 chains in one dispatch, within one float16 step of unfused and of the cpu reference (vec4 and scalar paths)', async () => {
    for (const n of [8, 7]) {
      const a = tensor(
        Array.from({ length: n }, (_, i) => 0.37 * i - 1.1),
        { dtype: 'float16' },
      );
      const f = () => a.mul(3.3).add(0.71).exp().sub(a);
      let dispatches = 0;
      const fused = await withFusion(true, async () => {
        let out: number[] = [];
        dispatches = await dispatchesOf(async () => (out = Array.from(await f().data())));
        return out;
      });
      const unfused = await withFusion(false, async () => Array.from(await f().data()));
      const onCpu = await a.toAsync('cpu');
      const reference = Array.from(await onCpu.mul(3.3).add(0.71).exp().sub(onCpu).data());
      expect(dispatches).toBe(1);
      expect(f().dtype).toBe('float16');
      // The shader compiler may keep a fused chain's intermediates in f32 (dropping the f16 rounding in
      // between), and WGSL's exp is not correctly rounded: within one float16 step (2^-10 relative).
      const oneStep = (got: number[], want: number[]) =>
        got.forEach((v, k) => expect(Math.abs(v - want[k])).toBeLessThanOrEqual(Math.abs(want[k]) * 2 ** -10));
      oneStep(fused, unfused);
      oneStep(fused, reference);
      oneStep(unfused, reference);
      a.dispose();
    }
  });

  it('computes pending readers of a tensor before an in-place write replaces its values', async () => {
    const x = tensor([1, 2, 3, 4]);
    const y = x.mul(2).add(1); // pending: reads x
    noGrad(() => x.copy_(10));
    const z = x.add(y); // y must still see the old x
    expect(Array.from(await y.data())).toEqual([3, 5, 7, 9]);
    expect(Array.from(await z.data())).toEqual([13, 15, 17, 19]);
    // A pending storage overwritten in place through a window keeps its other elements.
    const w = x.mul(3); // pending, then half of it written
    noGrad(() => w.narrow(0, 0, 2).copy_(tensor([-1, -2])));
    expect(Array.from(await w.data())).toEqual([-1, -2, 30, 30]);
    [x, y, z, w].forEach((t) => t.dispose());
  });

  it('computes pending readers of a parameter before an optimizer kernel updates it in place', async () => {
    const p = tensor([1, 2, 3], { requiresGrad: true });
    p.grad = tensor([1, 1, 1]);
    const seen = noGrad(() => p.mul(10)); // pending: reads p
    new optim.SGD([p], { lr: 0.5 }).step();
    expect(Array.from(await seen.data())).toEqual([10, 20, 30]);
    expect(Array.from(await p.data())).toEqual([0.5, 1.5, 2.5]);
    seen.dispose();
    p.dispose();
  });

  it('agrees with unfused execution on a decoder training step (loss and every gradient), with fewer dispatches', async () => {
    // Everything counted, from building the model (its init ops defer too) to reading every gradient.
    const step = async () => {
      let loss = 0;
      let grads: number[][] = [];
      const dispatches = await dispatchesOf(() =>
        scope(async () => {
          const model = tinyModel('llama', null, { device: 'webgpu' });
          const batch = ids(
            [
              [1, 2, 3, 4, 5, 6, 7, 8],
              [8, 7, 6, 5, 4, 3, 2, 1],
            ],
            'webgpu',
          );
          const out = await model.forward(batch, { labels: batch });
          await out.loss!.backwardAsync();
          loss = await out.loss!.item();
          grads = await Promise.all(model.parameters().map(async (q) => Array.from(await q.grad!.data())));
          model.dispose();
        }),
      );
      return { loss, grads, dispatches };
    };
    const fused = await withFusion(true, step);
    const unfused = await withFusion(false, step);
    expect(Math.abs(fused.loss - unfused.loss)).toBeLessThan(1e-6 * Math.abs(unfused.loss) + 1e-7);
    unfused.grads.forEach((g, i) =>
      expect(fuzzMismatch(fused.grads[i], g, 1e-5, 1e-6), `gradient ${i}`).toBeLessThanOrEqual(1),
    );
    expect(fused.dispatches).toBeLessThan(unfused.dispatches);
  });
});
