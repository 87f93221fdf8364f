// Every webgpu variant of every kernel runs in CI: for each kernel family and each of its variants, the
// exercises below run with that variant forced and must agree with the float64 cpu kernels (values and
// gradients, at the op record's float32 tolerance); at the end, every kernel:variant pair declared in
// the registry must have run. A new kernel or variant without an exercise fails the last test.
import { describe, expect, it } from 'vitest';
import { withConfig } from '../core/config.js';
import { gpuBackend } from '../core/device.js';
import { hardware, registeredKernels, variantUsage } from '../core/op.js';
import { manualSeed, optim, tensor, testing, WIDEST_FLOAT, type DeviceName } from '../index.js';
import { exerciseTolerance, EXERCISES, families } from './ops-exercises.js';

/** Kernels outside autograd (optimizer updates, gradient clipping): final values on a device. */
interface Update {
  name: string;
  values: (device: DeviceName) => Promise<number[]>;
}

const UPDATES: Update[] = [
  {
    name: 'clipGradNorm + AdamW step (two parameters)',
    values: async (device) => {
      const opts = { device, dtype: WIDEST_FLOAT[device], requiresGrad: true };
      const params = [
        tensor([0.5, -1, 2, 0.25], opts),
        tensor(
          [
            [1.5, -0.5],
            [0.75, 3],
          ],
          opts,
        ),
      ];
      params[0].square().sum().add(params[1].mul(params[1].sum()).sum()).backward();
      const norm = optim.clipGradNorm(params, 1);
      const opt = new optim.AdamW(params, { lr: 0.1, weightDecay: 0.01 });
      opt.step();
      opt.step();
      return [...(await norm.data()), ...(await params[0].data()), ...(await params[1].data())];
    },
  },
  {
    name: 'clipGradNormGroups + AdamW step (two groups, their own lr and weight decay, a large gradient)',
    values: async (device) => {
      const opts = { device, dtype: WIDEST_FLOAT[device], requiresGrad: true };
      const big = tensor(
        Array.from({ length: 20000 }, (_, i) => Math.sin(i)),
        opts,
      );
      const small = tensor([0.5, -1, 2], opts);
      big.square().sum().mul(0.01).add(small.exp().sum()).backward();
      const norms = optim.clipGradNormGroups([[big], [small]], 1);
      const opt = new optim.AdamW(
        [
          { params: [big], weightDecay: 0.1 },
          { params: [small], lr: 0.02, weightDecay: 0 },
        ],
        { lr: 0.1 },
      );
      opt.step();
      return [
        ...(await Promise.all(norms.map((n) => n.item()))),
        ...(await big.data()).slice(0, 50),
        ...(await small.data()),
      ];
    },
  },
];

describe.runIf(gpuBackend())('every kernel variant', () => {
  const before = new Map(variantUsage());
  /** family:variant pairs that need a feature this adapter lacks (e.g. 'needs the subgroups feature'): they cannot run here. */
  const unavailable = new Set<string>();
  const cases = [...families()].flatMap(([family, variants]) => variants.map((variant) => [family, variant] as const));

  it.each(cases)(
    'family %s, variant %s: every exercise agrees with the float64 cpu kernels',
    async (family, variant) => {
      manualSeed(5);
      for (const ex of EXERCISES) {
        const inputs = ex.inputs();
        // A forced variant that does not fit an exercise is an error naming it; those exercises skip it.
        const report = await withConfig({ variants: { [family]: variant } }, () =>
          testing.gradcheckDevices(ex.f, inputs, exerciseTolerance(ex, 'float32')),
        ).catch((e: Error) => {
          if (!/the forced variant .* does not fit/.test(e.message)) throw e;
          const feature = /needs the (\S+) feature/.exec(e.message)?.[1];
          if (feature && !hardware().features.has(feature)) unavailable.add(`${family}:${variant}`);
          return null;
        });
        if (report) expect(report.ok, `${ex.name}: ${report.message}`).toBe(true);
      }
      for (const update of UPDATES) {
        const [gpu, ref] = await withConfig({ variants: { [family]: variant } }, async () => [
          await update.values('webgpu'),
          await update.values('cpu'),
        ]);
        expect(
          gpu.map((v, i) => Math.abs(v - ref[i]) <= 1e-5 + 1e-4 * Math.abs(ref[i])),
          update.name,
        ).not.toContain(false);
      }
    },
  );

  it('every declared kernel:variant pair ran', () => {
    const missing: string[] = [];
    for (const k of registeredKernels().values()) {
      for (const v of k.webgpu) {
        const key = `${k.name}:${v.name}`;
        if (unavailable.has(`${k.family}:${v.name}`)) continue;
        if ((variantUsage().get(key) ?? 0) <= (before.get(key) ?? 0)) missing.push(key);
      }
    }
    expect(missing).toEqual([]);
  });
});
