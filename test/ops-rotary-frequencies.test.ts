// applyRotaryFrequencies / applyRotaryQKFrequencies: the rotation with cos/sin computed from
// frequencies θ and positions inside the kernels, dθ reduced over every row in the backward kernel.
// Against the float64 definitions (the tables of rotaryTables fed to applyRotary), gradchecks on cpu
// float64 and webgpu float32 vs cpu float64, and their dispatches.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gpuBackend } from '../core/device.js';
import { registeredOps } from '../core/op.js';
import { kernelCounts } from './dispatch-helpers.js';
import { rotaryCaseArb } from './rotary-helpers.js';
import { cat, functional as F, manualSeed, memory, randn, scope, tensor, testing, type Tensor } from '../index.js';

const f64 = { dtype: 'float64' as const, device: 'cpu' as const };
const expectOk = (r: testing.GradcheckReport) => expect(r.ok, r.message).toBe(true);
const flat = (...ts: Tensor[]) =>
  cat(
    ts.map((t) => t.reshape([-1])),
    0,
  );
const tolerance = registeredOps().get('applyRotaryQKFrequencies')!.tolerance.float32!;

/** A rotary case with θ [R/2], distinct positions [T] (sorted where used) and a YaRN-style mscale. */
const caseArb = rotaryCaseArb(5, (c) => ({
  theta: fc.array(fc.double({ min: 0.01, max: 1.5, noNaN: true }), { minLength: c.R / 2, maxLength: c.R / 2 }),
  positions: fc.uniqueArray(fc.integer({ min: 0, max: 40 }), { minLength: c.T, maxLength: c.T }),
  mscale: fc.double({ min: 0.5, max: 2, noNaN: true }),
}));

describe('applyRotaryQKFrequencies', () => {
  it('equals applyRotaryQK with the tables of rotaryTables (cpu f64); gradcheck for q, k and θ on cpu f64 and webgpu f32 vs cpu f64, strided inputs, GQA, partial rotary', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ c, ...v }) => {
        const q = tensor(Float64Array.from(v.q), { ...f64, shape: [c.B, c.T, c.Hq, c.D] });
        const k = tensor(Float64Array.from(v.k), { ...f64, shape: [c.B, c.T, c.Hk, c.D] });
        const theta = tensor(Float64Array.from(v.theta), f64);
        const positions = [...v.positions].sort((a, b) => a - b);
        const pos = tensor(Float64Array.from(positions), f64);
        const opts = { mscale: v.mscale };
        const fused = (a: Tensor, b: Tensor, th: Tensor, ps: Tensor) => {
          const r = F.applyRotaryQKFrequencies(a.transpose(1, 2), b.transpose(1, 2), th, ps, opts);
          return flat(r.q, r.k);
        };
        const viaTables = (a: Tensor, b: Tensor, th: Tensor) => {
          const { cos, sin } = F.rotaryTables(th, positions, opts);
          const r = F.applyRotaryQK(a.transpose(1, 2), b.transpose(1, 2), cos, sin, { rotaryDim: c.R });
          return flat(r.q, r.k);
        };
        const [got, want] = [await fused(q, k, theta, pos).data(), await viaTables(q, k, theta).data()];
        Array.from(got).forEach((g, i) => expect(g).toBeCloseTo(want[i], 12));
        // The same gradients as the tables' route (dθ through rotaryTables' backward).
        const grads = (f: (a: Tensor, b: Tensor, th: Tensor) => Tensor) =>
          scope(async () => {
            const ws = [q, k, theta].map((t) => {
              const l = t.detach();
              l.requiresGrad = true;
              return l;
            });
            f(ws[0], ws[1], ws[2]).mul(flat(q, k).cos()).sum().backward();
            return Promise.all(ws.map(async (w) => Array.from(await w.grad!.data())));
          });
        const [gFused, gTables] = [await grads((a, b, th) => fused(a, b, th, pos)), await grads(viaTables)];
        gFused.forEach((g, n) => g.forEach((x, i) => expect(x).toBeCloseTo(gTables[n][i], 10)));
        expectOk(testing.gradcheck(fused, [q, k, theta, pos], { wrt: [0, 1, 2] }));
        expectOk(await testing.gradcheckDevices(fused, [q, k, theta, pos], { ...tolerance, wrt: [0, 1, 2] }));
      }),
      testing.fcParams(10),
    );
  });

  it('applyRotaryFrequencies on x alone, at a narrowed run of positions (a view with an offset), on cpu f64 and webgpu f32 vs cpu f64', async () => {
    manualSeed(7);
    const x = randn([2, 3, 4, 6], f64);
    const theta = tensor([0.9, 0.2], f64);
    const all = tensor([0, 2, 5, 6, 9, 13, 20], f64);
    const f = (a: Tensor, th: Tensor, ps: Tensor) => F.applyRotaryFrequencies(a, th, ps.narrow(0, 2, 4));
    const { cos, sin } = F.rotaryTables(theta, [5, 6, 9, 13]);
    const want = await F.applyRotary(x, cos, sin).data();
    Array.from(await f(x, theta, all).data()).forEach((g, i) => expect(g).toBeCloseTo(want[i], 12));
    expectOk(testing.gradcheck(f, [x, theta, all], { wrt: [0, 1] }));
    expectOk(await testing.gradcheckDevices(f, [x, theta, all], { ...tolerance, wrt: [0, 1] }));
    // More rows than a workgroup has invocations: each strides over several in the dθ reduction.
    const long = randn([1, 2, 150, 4], f64);
    const ramp = tensor(
      Float64Array.from({ length: 150 }, (_, i) => 2 * i),
      f64,
    );
    const g = (a: Tensor, th: Tensor, ps: Tensor) => F.applyRotaryFrequencies(a, th, ps);
    expectOk(
      await testing.gradcheckDevices(g, [long, tensor([0.05, 0.003], f64), ramp], { ...tolerance, wrt: [0, 1] }),
    );
  });

  it('rejects positions that do not match the rows, θ of the wrong size, and a bad mscale', () => {
    const q = randn([1, 2, 3, 4], f64);
    const theta = tensor([1, 0.5], f64);
    expect(() => F.applyRotaryQKFrequencies(q, q, theta, tensor([0, 1], f64))).toThrow(
      /applyRotaryQKFrequencies: positions \[2\] must be 1-D with one position per row of q \[1, 2, 3, 4\] \(its second-to-last dim, 3\)/,
    );
    expect(() => F.applyRotaryFrequencies(q, tensor([1, 0.5, 0.2], f64), tensor([0, 1, 2], f64))).toThrow(
      /applyRotaryFrequencies: twice theta.size \(the rotary dim\) must be a positive even integer ≤ head dim 4, got 6/,
    );
    expect(() => F.applyRotaryFrequencies(q, theta, tensor([0, 1, 2], f64), { mscale: NaN })).toThrow(
      /applyRotaryFrequencies: mscale must be a finite number/,
    );
    expect(() => F.applyRotaryFrequencies(randn([4], f64), theta, tensor([0], f64))).toThrow(
      /applyRotaryFrequencies: x must be a float tensor of rank ≥ 2/,
    );
  });
});

describe.runIf(gpuBackend())('applyRotaryQKFrequencies dispatches (webgpu)', () => {
  it('rotates q and k in 1 dispatch and back in 1 with dθ, no table kernel either way', async () => {
    manualSeed(4);
    const q = randn([2, 70, 4, 8]),
      k = randn([2, 70, 2, 8]);
    const positions = tensor(Float32Array.from({ length: 70 }, (_, i) => 3 * i));
    const counts = await kernelCounts(() =>
      scope(async () => {
        const theta = randn([4]).abs();
        theta.requiresGrad = true;
        const [ql, kl] = [q.detach(), k.detach()];
        ql.requiresGrad = kl.requiresGrad = true;
        const before = memory().dispatches;
        const r = F.applyRotaryQKFrequencies(ql.transpose(1, 2), kl.transpose(1, 2), theta, positions);
        expect(memory().dispatches - before).toBe(1);
        r.q.sum().add(r.k.sum()).backward();
        await theta.grad!.data();
      }),
    );
    expect(counts.get('applyRotaryFrequencies')).toBe(1);
    expect(counts.get('applyRotaryFrequenciesBackward')).toBe(1);
    expect(counts.get('rotaryTables') ?? 0).toBe(0);
    expect(counts.get('rotaryTablesBackward') ?? 0).toBe(0);
  });
});
