// `npm run gpu-report` as a child process at its smallest: --smoke --skip-tests and the bench cut to one op
// row and the main job's decoder step against TF.js (the training rows in f32 and f16-mixed), checking that report.json has every part and report.md every section; and the clear error when
// there is no WebGPU device.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const out = await mkdtemp(join(tmpdir(), 'dawngrad-gpu-report-'));
afterAll(() => rm(out, { recursive: true, force: true }));

const report = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'scripts/gpu-report.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 300_000,
  });

describe('gpu-report', () => {
  it('--smoke --skip-tests writes report.json and report.md with every part', () => {
    // Autotuning on, into an empty cache: the report lists what it chose for the training step's kernels.
    const env = {
      BENCH_ONLY: '^(matmul 256|decoder step 2×64)',
      DAWNGRAD_AUTOTUNE: 'on',
      DAWNGRAD_CACHE_DIR: join(out, 'cache'),
    };
    const run = report(['--smoke', '--skip-tests', '--out', out], env);
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.status).toBe(0);
    const r = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(Object.keys(r)).toEqual([
      'date',
      'commit',
      'smoke',
      'adapter',
      'tests',
      'bench',
      'training',
      'variants',
      'autotune',
      'seconds',
    ]);
    expect(r.smoke).toBe(true);
    expect(r.adapter.deviceInfo.backend).toBe('webgpu');
    expect(r.adapter.hardware.features).toEqual(expect.any(Array));
    expect(r.tests).toEqual({ status: 'skipped', reason: '--skip-tests' });
    expect(r.bench.status).toBe('ok');
    expect(r.bench.rows.map((row: { name: string }) => row.name)).toEqual([
      'matmul 256×256×256',
      'decoder step 2×64 b8×64',
    ]);
    expect(r.bench.rows.every((row: { speedup: number }) => row.speedup > 0)).toBe(true);
    // --smoke: the main job's decoder only, one block of steps, in float32 and in f16-mixed precision.
    expect(r.training).toHaveLength(2);
    const [step, mixed] = r.training;
    expect(step).toMatchObject({ status: 'ok', label: "main job's decoder", precision: 'f32', timedSteps: 10 });
    expect(step.vsFloat32).toBeNull();
    expect(mixed).toMatchObject({ status: 'ok', label: "main job's decoder", precision: 'f16-mixed', timedSteps: 10 });
    expect(mixed.parameters).toBe(step.parameters);
    expect(mixed.vsFloat32.memory).toBeCloseTo(mixed.peakBytes / step.peakBytes, 10);
    expect(mixed.vsFloat32.time).toBeGreaterThan(0);
    expect(Object.keys(mixed.variants)).toContain('matmul');
    expect(step.parameters).toBeGreaterThan(100_000);
    expect(step.tokensPerSecond).toBeGreaterThan(0);
    expect(step.dispatchesPerStep).toBeGreaterThan(10);
    expect(step.peakBytes).toBeGreaterThan(4 * step.parameters); // float32 weights at least
    expect(Object.keys(step.variants)).toEqual(expect.arrayContaining(['matmul', 'scaledDotProductAttention']));
    expect(Object.keys(r.variants)).toEqual(expect.arrayContaining(Object.keys(step.variants)));
    expect(r.autotune.settings).toMatchObject({ autotune: 'on', profile: 'auto' });
    const tuned = Object.entries(r.autotune.choices as Record<string, { variant: string; ms: Record<string, number> }>);
    expect(tuned.some(([key]) => key.startsWith('matmul|'))).toBe(true);
    for (const [, choice] of tuned) expect(Object.keys(choice.ms)).toContain(choice.variant);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    for (const section of [
      'Adapter',
      'Tests',
      'Bench against TF.js',
      'LLaMA training step',
      'Kernel variants',
      'Autotune',
    ])
      expect(md).toContain(`## ${section}`);
  });

  it('without a WebGPU device, says what to do and exits with code 2', () => {
    const run = report(['--smoke', '--out', out], { DAWNGRAD_DEVICE: 'cpu' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('gpu-report: no WebGPU device. DAWNGRAD_DEVICE=cpu is set');
    const bad = report(['--outt', out]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("gpu-report: unexpected argument '--outt'");
  });
});
