// Training runs that survive (issue: reliability): a run's live GPU memory stays flat from step to step,
// and SIGKILL at random moments always leaves a checkpoint that loads and a --resume that finishes.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gpuRuntime } from '../core/device.js';
import { io, seededUniform } from '../index.js';
import { readCheckpointInfo, buildModel } from '../examples/lib/checkpoint.js';
import { readMetrics } from '../examples/lib/metrics.js';

const root = await mkdtemp(join(tmpdir(), 'dawngrad-survival-'));
afterAll(() => rm(root, { recursive: true, force: true }));
const TINY = [
  '--layers',
  '1',
  '--hidden',
  '16',
  '--heads',
  '2',
  '--seq-len',
  '16',
  '--batch-size',
  '2',
  '--eval-every',
  '0',
  '--log-every',
  '1',
];

function train(
  args: string[],
  device: 'cpu' | 'webgpu',
  killAfterFirstSaveMs?: number,
): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/train.ts', ...args, '--device', device], {
    env: { ...process.env, DAWNGRAD_DEVICE: device },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  if (killAfterFirstSaveMs !== undefined) {
    const out = args[args.indexOf('--out') + 1];
    const poll = setInterval(() => {
      if (!existsSync(join(out, io.TRAINER_STATE_FILE))) return;
      clearInterval(poll);
      setTimeout(() => child.kill('SIGKILL'), killAfterFirstSaveMs);
    }, 20);
    child.on('exit', () => clearInterval(poll));
  }
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
}

describe('runs that survive', () => {
  it.runIf(gpuRuntime())(
    'live GPU buffers and bytes stay constant over a training run on webgpu',
    async () => {
      const out = join(root, 'flat');
      const r = await train([...TINY, '--steps', '40', '--out', out], 'webgpu');
      expect(r.code, r.stderr).toBe(0);
      const records = readMetrics(join(out, 'metrics.jsonl')).slice(2); // after the first steps' one-time allocations
      expect(records.length).toBe(38);
      expect(new Set(records.map((x) => x.live_buffers)).size).toBe(1);
      expect(new Set(records.map((x) => x.live_bytes)).size).toBe(1);
    },
    180_000,
  );

  const TRIALS = 10;
  it(`${TRIALS} SIGKILLs at random moments: each leaves a checkpoint that loads and a --resume that finishes`, async () => {
    const next = seededUniform(2026);
    const trial = async (i: number) => {
      const out = join(root, `kill-${i}`);
      // 40 steps saving every step take ~0.8 s after the first save on an idle machine (more under load),
      // so a kill within 400 ms of it lands mid-run.
      const args = [...TINY, '--steps', '40', '--save-every', '1', '--seed', String(i), '--out', out];
      const killed = await train(args, 'cpu', Math.floor(next() * 400));
      expect(killed.signal === 'SIGKILL' || killed.code === 0, killed.stderr).toBe(true);
      const info = await readCheckpointInfo('test', out);
      const model = buildModel(info.config);
      const loaded = await io.loadCheckpoint(out, { model, restoreRng: false });
      expect(loaded.step).toBeGreaterThanOrEqual(1);
      model.dispose();
      const resumed = await train([...args, '--resume'], 'cpu');
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(readMetrics(join(out, 'metrics.jsonl')).map((x) => x.step)).toEqual(
        Array.from({ length: 40 }, (_, s) => s + 1),
      );
      return killed.signal === 'SIGKILL';
    };
    const killedMidRun: boolean[] = [];
    for (let i = 0; i < TRIALS; i += 2) killedMidRun.push(...(await Promise.all([trial(i), trial(i + 1)])));
    expect(killedMidRun.filter(Boolean).length).toBeGreaterThanOrEqual(TRIALS / 2); // most kills landed mid-run
  }, 600_000);
});
