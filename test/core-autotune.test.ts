// Autotuning (core/autotune.ts): the first use of a kernel bucket with several fitting variants times
// them with GPU timestamps and caches the fastest per adapter; later uses take it; the outputs are the
// chosen variant's; a corrupt or old cache is rebuilt with a warning; 'off' keeps the heuristics.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AUTOTUNE_CACHE_VERSION, resetAutotune, shapeBucket, tunedChoices } from '../core/autotune.js';
import { withConfig } from '../core/config.js';
import { gpuBackend, gpuRuntime } from '../core/device.js';
import { chooseVariant, registeredKernels } from '../core/op.js';
import { cat, functional as F, grad, manualSeed, randn, split, tensor, type Tensor } from '../index.js';

const cacheFile = (dir: string) => join(dir, `autotune-v${AUTOTUNE_CACHE_VERSION}.json`);
/** Lets the timestamp readbacks resolve and the cache write run. */
const settle = async () => {
  await gpuBackend()!.sync();
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
};

describe.runIf(gpuBackend()?.rt.info.features.includes('timestamp-query'))('autotuning', () => {
  afterEach(() => resetAutotune());

  it('buckets shapes by powers of two and keeps flags', () => {
    const t = { storage: {}, shape: [3, 100], dtype: 'float32' };
    expect(shapeBucket({ x: t, nRows: 3, C: 100, eps: 1e-5, mode: 'softmax', flag: true, grid: [1, 2, 3] })).toBe(
      'x=float32[4,128] nRows=4 C=128 mode=softmax flag=true grid=#4',
    );
  });

  it('times every fitting variant once per bucket, caches the fastest, and uses it after', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dawngrad-tune-'));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    manualSeed(1);
    const x = randn([6, 300]);
    const heuristic = await withConfig({ autotune: 'off' }, () => F.softmax(x).data());
    const tuned = await withConfig({ autotune: 'on', cacheDir: dir }, async () => {
      const y = await F.softmax(x).data(); // tunes softmaxRows for this bucket
      await settle();
      return y;
    });
    // The chosen (heuristic) variant ran last: the same outputs, bit for bit.
    expect(Array.from(tuned)).toEqual(Array.from(heuristic));
    expect(log.mock.calls.filter(([m]) => String(m).includes('autotuning kernel variants'))).toHaveLength(1);
    log.mockRestore();
    const saved = JSON.parse(readFileSync(cacheFile(dir), 'utf8'));
    expect(saved.version).toBe(AUTOTUNE_CACHE_VERSION);
    const choices = await withConfig({ cacheDir: dir }, () => tunedChoices(gpuRuntime()!));
    const entries = Object.entries(choices).filter(([k]) => k.startsWith('softmaxRows|'));
    expect(entries).toHaveLength(1);
    const [[key, choice]] = entries;
    expect(Object.keys(choice.ms).sort()).toEqual(
      registeredKernels()
        .get('softmaxRows')!
        .webgpu.map((v) => v.name)
        .sort(),
    );
    expect(Object.values(choice.ms).every((ms) => ms >= 0)).toBe(true);
    // The heuristic's choice ('thread' here) stays unless another is faster by more than 10%.
    const fastest = Math.min(...Object.values(choice.ms));
    expect(choice.ms[choice.variant] === fastest || choice.ms.thread <= fastest / 0.9).toBe(true);
    expect(choice.variant === 'thread' || choice.ms[choice.variant] < 0.9 * choice.ms.thread).toBe(true);
    // Later uses of the bucket take the measured winner; the file is what a new process reads.
    const bucket = key.slice('softmaxRows|'.length);
    const args = { mode: 'softmax', x, out: x, nRows: 6, C: 300 };
    expect(shapeBucket(args)).toBe(bucket);
    await withConfig({ autotune: 'on', cacheDir: dir }, () =>
      expect(chooseVariant(registeredKernels().get('softmaxRows')!, args as never).name).toBe(choice.variant),
    );
    expect(Object.keys(saved.adapters[Object.keys(saved.adapters)[0]])).toContain(key);
  });

  it('a tuning run gives exactly the heuristics’ gradients, and a tuned run the same within tolerance', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dawngrad-tune-'));
    vi.spyOn(console, 'log').mockImplementation(() => {});
    manualSeed(3);
    const inputs = [[64, 96], [96], [96], [64, 96], [1, 2, 70, 16], [1, 2, 70, 16], [1, 2, 70, 16], [40, 33]].map((s) =>
      randn(s),
    );
    // Norms (forward and backward, with a residual), attention, matmul, cat/split, softmax rows.
    const f = (x: Tensor, w: Tensor, b: Tensor, r: Tensor, q: Tensor, k: Tensor, v: Tensor, t: Tensor) => {
      const { sum, normed } = F.addLayerNorm(x, r, w, b);
      const y = F.rmsNorm(normed.add(sum), w);
      const a = F.scaledDotProductAttention(q, k, v, { causal: true });
      const m = t.matmul(t.transpose(0, 1));
      const [u, z] = split(cat([m, m.square()], 1), [40, 40], 1);
      return y.square().sum().add(a.square().sum()).add(F.logSoftmax(u).sum()).add(z.mean());
    };
    const gradients = () => Promise.all(grad(f as (...xs: Tensor[]) => Tensor, inputs).map((g) => g.data()));
    const heuristic = await withConfig({ autotune: 'off' }, gradients);
    const tuning = await withConfig({ autotune: 'on', cacheDir: dir }, gradients);
    await settle();
    const tuned = await withConfig({ autotune: 'on', cacheDir: dir }, gradients);
    vi.restoreAllMocks();
    expect(tuning.map((g) => Array.from(g))).toEqual(heuristic.map((g) => Array.from(g)));
    tuned.forEach((g, i) =>
      g.forEach((value, j) =>
        expect(Math.abs(value - heuristic[i][j])).toBeLessThanOrEqual(1e-4 + 1e-3 * Math.abs(heuristic[i][j])),
      ),
    );
  });

  it("with autotune 'off' nothing is timed or written", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dawngrad-tune-'));
    await withConfig({ autotune: 'off', cacheDir: dir }, async () => {
      await F.softmax(randn([6, 300])).data();
      await settle();
    });
    expect(existsSync(cacheFile(dir))).toBe(false);
  });

  it.each([
    ['corrupt', '{"version": 1, "adap'],
    ['old', JSON.stringify({ version: 0, adapters: {} })],
  ])('a %s cache is rebuilt with a one-line warning', async (_, contents) => {
    const dir = mkdtempSync(join(tmpdir(), 'dawngrad-tune-'));
    writeFileSync(cacheFile(dir), contents);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    vi.spyOn(console, 'log').mockImplementation(() => {});
    await withConfig({ autotune: 'on', cacheDir: dir }, async () => {
      await F.logSoftmax(
        tensor(
          Array.from({ length: 5 * 70 }, (_, i) => Math.sin(i)),
          { shape: [5, 70] },
        ),
      ).data();
      await settle();
    });
    expect(warn.mock.calls.map(([m]) => String(m))).toEqual([
      expect.stringMatching(/autotune cache .* is unreadable .*; rebuilding it/),
    ]);
    vi.restoreAllMocks();
    expect(JSON.parse(readFileSync(cacheFile(dir), 'utf8')).version).toBe(AUTOTUNE_CACHE_VERSION);
  });
});
