// Acceptance, with real child processes:
// 1. Resume is exact: N steps straight == k steps, save, load in a new process, N−k steps (bit-identical
//    parameters on the same backend; the run uses dropout, so the RNG state must be restored too).
// 2. A save killed with SIGKILL at a random moment leaves a loadable, self-consistent checkpoint.
import { spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { io } from '../index.js';
import { makeTrainer, type Device } from './fixtures/train-mlp.js';

const root = await mkdtemp(join(tmpdir(), 'dawngrad-resume-'));
afterAll(() => rm(root, { recursive: true, force: true }));

// `node --import tsx` runs the TypeScript child in ONE process (the tsx CLI would fork a grandchild that
// survives a SIGKILL sent to the CLI, leaving two writers).
const NODE_ARGS = ['--import', 'tsx'];

function runChild(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

const N = 24;
const K = 11;

async function paramBytes(
  sd: Record<string, { data(): Promise<ArrayLike<number>> }>,
): Promise<Record<string, number[]>> {
  return Object.fromEntries(
    await Promise.all(Object.entries(sd).map(async ([k, t]) => [k, Array.from(await t.data())])),
  );
}

describe('resume in a new process is exact', () => {
  for (const device of ['cpu', 'webgpu'] as Device[]) {
    it(`${device}: ${N} steps straight == ${K} steps + checkpoint + ${N - K} steps in a child process`, async () => {
      const straight = makeTrainer(device, N, { dropout: 0.1 });
      for (let s = 0; s < N; s++) await straight.step();
      const expected = await paramBytes(straight.model.stateDict());

      const first = makeTrainer(device, N, { dropout: 0.1 });
      for (let s = 0; s < K; s++) await first.step();
      const dir = join(root, `ckpt-${device}`);
      await io.saveCheckpoint(dir, {
        model: first.model,
        optimizer: first.optimizer,
        scheduler: first.scheduler,
        step: K,
        config: { device },
      });

      const out = join(root, `final-${device}.safetensors`);
      const env: Record<string, string> = device === 'cpu' ? { DAWNGRAD_DEVICE: 'cpu' } : {};
      const { code, stderr } = await runChild('test/fixtures/resume-child.ts', [dir, device, String(N), out], env);
      expect(code, stderr).toBe(0);
      const resumed = await io.readSafetensors(out, { device });
      expect(resumed.metadata.resumed_from).toBe(String(K));
      const got = await paramBytes(resumed.tensors);
      expect(Object.keys(got)).toEqual(Object.keys(expected));
      for (const k of Object.keys(expected)) {
        // Bit-identical: compare exact values (Object.is distinguishes -0 and treats NaN equal).
        expect(
          got[k].every((v, i) => Object.is(v, expected[k][i])),
          `parameter ${k} differs`,
        ).toBe(true);
      }
      // The comparison is not vacuous: training after step K still changed the parameters.
      const atK = await paramBytes(first.model.stateDict());
      expect(Object.keys(expected).some((k) => expected[k].some((v, i) => v !== atK[k][i]))).toBe(true);
      [straight, first].forEach((t) => {
        t.optimizer.dispose();
        t.model.dispose();
      });
    });
  }
});

describe('a save killed mid-write leaves the previous checkpoint loadable', () => {
  it('SIGKILL at random moments during repeated large saves', async () => {
    const dir = join(root, 'killed');
    const ELEMENTS = 1_500_000; // two 6 MB tensors per save
    let nextStep = 1;
    const interrupted: boolean[] = [];
    for (let round = 0; round < 4; round++) {
      const child = spawn(
        process.execPath,
        [...NODE_ARGS, 'test/fixtures/save-loop-child.ts', dir, String(nextStep), String(ELEMENTS)],
        {
          env: { ...process.env, DAWNGRAD_DEVICE: 'cpu' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      let lastSaved = 0;
      const firstSave = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          const m = [...d.toString().matchAll(/saved (\d+)/g)];
          if (m.length) {
            lastSaved = Number(m[m.length - 1][1]);
            resolve();
          }
        });
        child.on('exit', (code) => reject(new Error(`save loop exited early (${code}): ${stderr}`)));
      });
      await firstSave;
      // Kill at a random moment: even rounds after a random delay (the loop does little but save), odd
      // rounds a few ms after a temp file of the next save appears, so some kills surely land mid-write.
      let delay = Math.floor(Math.random() * 300);
      let how = `after ${delay} ms`;
      if (round % 2 === 1) {
        await new Promise<void>((resolve) => {
          const watcher = watch(dir, (_event, name) => {
            if (name && String(name).includes('.tmp-')) {
              watcher.close();
              resolve();
            }
          });
        });
        delay = Math.floor(Math.random() * 15);
        how = `${delay} ms after a temp file appeared`;
      }
      await new Promise((r) => setTimeout(r, delay));
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await exited;
      const leftovers = (await readdir(dir)).filter((f) => f.includes('.tmp-') || f.includes('commit'));
      interrupted.push(leftovers.length > 0);

      const loaded = await io.loadCheckpoint(dir, { device: 'cpu', restoreRng: false });
      expect(loaded.step, `round ${round}, killed ${how}`).toBeGreaterThanOrEqual(lastSaved);
      expect(loaded.config).toEqual({ step: loaded.step });
      const w = await loaded.modelState!.w.data();
      const v = await loaded.modelState!.v.data();
      expect(w.length).toBe(ELEMENTS);
      expect(
        w.every((x) => x === loaded.step) && v.every((x) => x === -loaded.step),
        'tensors belong to the recorded step',
      ).toBe(true);
      Object.values(loaded.modelState!).forEach((t) => t.dispose());
      nextStep = loaded.step + 1;
    }
    console.log(
      `kill test: interrupted mid-save in ${interrupted.filter(Boolean).length} of ${interrupted.length} rounds`,
    );
    expect(interrupted.some(Boolean), 'at least one kill left an unfinished save behind').toBe(true);
  });
});
