// The fused rotary paths: applyRotaryQK (q and k in one dispatch each way, read through strides, table
// gradients reduced inside the backward kernel) and rotaryTables (cos/sin from θ in one dispatch, dθ in
// one), against the float64 cpu definitions, plus the dispatches of a decoder step (CLEX's rotates from θ:
// ops-rotary-frequencies.test.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpuBackend } from '../core/device.js';
import { kernelCounts } from './dispatch-helpers.js';
import { cat, functional as F, manualSeed, memory, randn, scope, tensor, testing, type Tensor } from '../index.js';
import { ids, tinyModel } from './models-helpers.js';
import { rotaryCaseArb } from './rotary-helpers.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);
const flat = (...ts: Tensor[]) =>
  cat(
    ts.map((t) => t.reshape([-1])),
    0,
  );

/** A rotary case with cos and sin tables [T, R]; q and k are rotated as their [B, H, T, D] views. */
const qkArb = rotaryCaseArb(4, (c) => ({ cos: testing.valuesArb([c.T, c.R]), sin: testing.valuesArb([c.T, c.R]) }));

const count = (m: Map<string, number>, op: string) => m.get(op) ?? 0;

describe('applyRotaryQK', () => {
  it('equals applyRotary on q and k (cpu f64); gradcheck for q, k, cos, sin on cpu f64 and webgpu f32 vs cpu f64, strided inputs, GQA, partial rotary', async () => {
    await fc.assert(
      fc.asyncProperty(qkArb, async ({ c, ...v }) => {
        const q = tensor(Float64Array.from(v.q), { ...f64, shape: [c.B, c.T, c.Hq, c.D] });
        const k = tensor(Float64Array.from(v.k), { ...f64, shape: [c.B, c.T, c.Hk, c.D] });
        const cos = tensor(Float64Array.from(v.cos), { ...f64, shape: [c.T, c.R] });
        const sin = tensor(Float64Array.from(v.sin), { ...f64, shape: [c.T, c.R] });
        const opts = { rotaryDim: c.R };
        const fused = (a: Tensor, b: Tensor, co: Tensor, si: Tensor) => {
          const r = F.applyRotaryQK(a.transpose(1, 2), b.transpose(1, 2), co, si, opts);
          return flat(r.q, r.k);
        };
        const separate = flat(
          F.applyRotary(q.transpose(1, 2), cos, sin, opts),
          F.applyRotary(k.transpose(1, 2), cos, sin, opts),
        );
        expect(Array.from(await fused(q, k, cos, sin).data())).toEqual(Array.from(await separate.data()));
        expectOk(testing.gradcheck(fused, [q, k, cos, sin]));
        expectOk(await testing.gradcheckDevices(fused, [q, k, cos, sin]));
      }),
      testing.fcParams(10),
    );
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`gives each input its gradient when only one output is used, and again on a second backward (${device})`, async () => {
      manualSeed(3);
      const dtype = device === 'cpu' ? 'float64' : 'float32';
      const q = randn([1, 2, 3, 4], { device, dtype, requiresGrad: true });
      const k = randn([1, 2, 3, 4], { device, dtype, requiresGrad: true });
      const cos = randn([3, 4], { device, dtype, requiresGrad: true });
      const sin = randn([3, 4], { device, dtype });
      const r = F.applyRotaryQK(q, k, cos, sin);
      r.q.sum().backward(undefined, { retainGraph: true });
      expect(k.grad).toBeNull();
      const dq = await q.grad!.data();
      // d/dq Σ rot(q) = rotᵀ(1): compare with the single-input op.
      const want = await scope(async () => {
        const q2 = q.detach();
        q2.requiresGrad = true;
        F.applyRotary(q2, cos.detach(), sin).sum().backward();
        return q2.grad!.data();
      });
      Array.from(dq).forEach((g, i) => expect(g).toBeCloseTo(want[i], 5));
      r.k.sum().backward();
      expect(k.grad).not.toBeNull();
      expect(Array.from(await q.grad!.data())).toEqual(Array.from(dq)); // q got nothing more
    });
  }
});

describe('applyRotaryQK arguments', () => {
  it('rejects q and k that differ in rank or head dim, tables that do not fit k, and too many dims on webgpu', () => {
    const q = randn([1, 2, 3, 4], f64);
    const [cos, sin] = [randn([3, 4], f64), randn([3, 4], f64)];
    expect(() => F.applyRotaryQK(q, randn([1, 2, 3, 6], f64), cos, sin)).toThrow(
      /applyRotaryQK: k float64 \[1, 2, 3, 6\] on cpu must match q float64 \[1, 2, 3, 4\]/,
    );
    expect(() => F.applyRotaryQK(q, randn([2, 3, 4], f64), cos, sin)).toThrow(
      /applyRotaryQK: k .* must match q .* in rank/,
    );
    expect(() => F.applyRotaryQK(q, randn([1, 2, 5, 4], f64), cos, sin)).toThrow(
      /applyRotaryQK: cos \[3, 4\] must broadcast to \[1, 2, 5, 4\] \(k \[1, 2, 5, 4\] with rotaryDim 4\)/,
    );
    if (gpuBackend()) {
      const deep = randn([1, 1, 1, 1, 1, 1, 4]);
      expect(() => F.applyRotary(deep, randn([1, 4]), randn([1, 4]))).toThrow(
        /applyRotary: no webgpu variant fits these arguments .*item: tensors of rank 7 exceed its maximum of 6; merge leading dims with reshape/,
      );
    }
  });
});

describe('rotaryTables', () => {
  const positions = [0, 3, 1, 7, 12];

  it('is mscale·cos/sin(pos·θ) in the HF layout (cpu f64), with gradcheck for θ on cpu f64 and webgpu f32 vs cpu f64', async () => {
    const theta = tensor([1, 0.3, 0.05], f64);
    const { cos, sin } = F.rotaryTables(theta, positions, { mscale: 1.5 });
    const [cd, sd] = [await cos.data(), await sin.data()];
    expect(cos.shape).toEqual([5, 6]);
    positions.forEach((p, t) =>
      [1, 0.3, 0.05].forEach((th, i) => {
        for (const j of [i, i + 3]) {
          expect(cd[t * 6 + j]).toBeCloseTo(1.5 * Math.cos(p * th), 12);
          expect(sd[t * 6 + j]).toBeCloseTo(1.5 * Math.sin(p * th), 12);
        }
      }),
    );
    const both = (th: Tensor) => {
      const r = F.rotaryTables(th, positions, { mscale: 1.5 });
      return flat(r.cos, r.sin);
    };
    expectOk(testing.gradcheck(both, [theta]));
    expectOk(await testing.gradcheckDevices(both, [theta]));
    expectOk(testing.gradcheck((th) => F.rotaryTables(th, positions).sin, [theta])); // one output unused
  });

  it('rejects bad frequencies, positions and mscale', () => {
    expect(() => F.rotaryTables(tensor([[1, 2]], f64), [0])).toThrow(
      /rotaryTables: theta must be a non-empty 1-D float tensor/,
    );
    expect(() => F.rotaryTables(tensor([1], f64), [0, NaN])).toThrow(/rotaryTables: positions\[1\] is NaN/);
    expect(() => F.rotaryTables(tensor([1], f64), [0], { mscale: Infinity })).toThrow(/mscale must be a finite number/);
  });
});

describe.runIf(gpuBackend())('rotary dispatches (webgpu)', () => {
  it('rotates strided q and k in 1 dispatch and back in 1, table gradients included at no extra dispatch', async () => {
    manualSeed(4);
    const q = randn([2, 5, 4, 8]),
      k = randn([2, 5, 2, 8]);
    const step = (tablesNeedGrad: boolean) =>
      kernelCounts(() =>
        scope(async () => {
          const cos = randn([5, 8], { requiresGrad: tablesNeedGrad }),
            sin = randn([5, 8], { requiresGrad: tablesNeedGrad });
          const [ql, kl] = [q.detach(), k.detach()];
          ql.requiresGrad = kl.requiresGrad = true;
          const before = memory().dispatches;
          const r = F.applyRotaryQK(ql.transpose(1, 2), kl.transpose(1, 2), cos, sin);
          expect(memory().dispatches - before).toBe(1);
          r.q.sum().add(r.k.sum()).backward();
          await ql.grad!.data();
        }),
      );
    const withTables = await step(true),
      without = await step(false);
    expect(count(withTables, 'applyRotary')).toBe(1);
    expect(count(withTables, 'applyRotaryBackward')).toBe(1);
    expect([...withTables.values()].reduce((a, b) => a + b, 0)).toBe([...without.values()].reduce((a, b) => a + b, 0));
  });

  for (const device of ['cpu', 'webgpu'] as const) {
    it(`keeps heads split from a projection in [B, T, H, D] memory, so neither the rotated heads nor their gradients need a copy to merge (${device})`, async () => {
      manualSeed(5);
      const [B, T, H, D] = [2, 3, 2, 4];
      const dtype = device === 'cpu' ? 'float64' : 'float32';
      const projQ = randn([B, T, H * D], { device, dtype, requiresGrad: true }),
        projK = randn([B, T, H * D], { device, dtype, requiresGrad: true });
      const heads = (p: Tensor) => p.reshape([B, T, H, D]).transpose(1, 2);
      // HF tables (columns j and j + D/2 share a frequency), whose backward is the rotation by −sin.
      const half = () => randn([T, D / 2], { device, dtype });
      const [cos, sin] = [half(), half()].map((t) => cat([t, t], 1));
      const r = F.applyRotaryQK(heads(projQ), heads(projK), cos, sin);
      for (const out of [r.q, r.k]) expect(out.transpose(1, 2).isContiguous()).toBe(true);
      const [gq, gk] = [0, 1].map(() => randn([B, H, T, D], { device, dtype }));
      const loss = () => r.q.mul(gq).sum().add(r.k.mul(gk).sum());
      if (device === 'cpu') {
        loss().backward();
        // The gradient handed back through the transpose is dense, so merging the heads is a view.
        const expected = (g: Tensor) =>
          F.applyRotary(g, cos, sin.neg())
            .transpose(1, 2)
            .reshape([B, T, H * D]);
        expect(projQ.grad!.isContiguous()).toBe(true);
        expect(Array.from(await projQ.grad!.data())).toEqual(Array.from(await expected(gq).data()));
        expect(Array.from(await projK.grad!.data())).toEqual(Array.from(await expected(gk).data()));
        return;
      }
      const kernels = await kernelCounts(async () => {
        loss().backward();
        await projQ.grad!.data();
      });
      expect(count(kernels, 'applyRotaryBackward')).toBe(1);
      expect(count(kernels, 'copy')).toBe(1); // the seed of backward() only
    });
  }

  it('a CLEX step rotates from θ with as many rotary kernels as a plain one, no table kernel, and one add per extra layer (dθ)', async () => {
    const stepKernels = (scaling: Parameters<typeof tinyModel>[1]) => {
      const m = tinyModel('llama', scaling, { device: 'webgpu' });
      m.eval(); // CLEX at t = ceil(16 / 8) = 2, solved with a graph to its parameters (no sampling)
      const x = ids([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6]], 'webgpu');
      return kernelCounts(() =>
        scope(async () => {
          const { loss } = await m.forward(x, { labels: x });
          await loss!.backwardAsync();
        }),
      );
    };
    const plain = await stepKernels(null),
      clex = await stepKernels({ type: 'clex', max_factor: 4 });
    const layers = 2;
    expect([count(plain, 'applyRotary'), count(plain, 'applyRotaryBackward')]).toEqual([layers, layers]);
    expect([count(clex, 'applyRotaryFrequencies'), count(clex, 'applyRotaryFrequenciesBackward')]).toEqual([
      layers,
      layers,
    ]);
    expect([count(clex, 'applyRotary'), count(clex, 'applyRotaryBackward')]).toEqual([0, 0]);
    expect([count(clex, 'rotaryTables'), count(clex, 'rotaryTablesBackward')]).toEqual([0, 0]);
    for (const op of ['cos', 'sin', 'neg', 'mul', 'sum']) expect(count(clex, op), op).toBe(count(plain, op));
    // The layers' dθ are summed by autograd.
    expect(count(clex, 'add') - count(plain, 'add')).toBe(layers - 1);
  });
});
