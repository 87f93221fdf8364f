// The user-facing scripts, run as real child processes at tiny sizes on the cpu backend: train (LLaMA
// and GPT-NeoX), eval-length, generate; Ctrl-C during training saves and --resume continues the same
// loss curve; --init-from a plain-RoPE checkpoint with --rope clex; bad input gives one clear line and
// exit code 2 without touching what was saved.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { io, models } from '../index.js';
import { buildModel, type ModelConfigJson } from '../examples/lib/checkpoint.js';
import { readMetrics } from '../examples/lib/metrics.js';

const root = await mkdtemp(join(tmpdir(), 'dawngrad-scripts-'));
afterAll(() => rm(root, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(script: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  // One process (node --import tsx), so a signal reaches the script itself.
  return spawn(process.execPath, ['--import', 'tsx', `examples/${script}.ts`, ...args], {
    env: { ...process.env, DAWNGRAD_DEVICE: 'cpu', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function finish(child: ChildProcess): Promise<Run> {
  return new Promise((resolve, reject) => {
    let stdout = '',
      stderr = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const run = (script: string, args: string[], env: Record<string, string> = {}) => finish(start(script, args, env));
/** The smallest model the scripts train: 1 layer × 16, 2 heads, L0 = 16. */
const TINY_SHAPE = ['--layers', '1', '--hidden', '16', '--heads', '2', '--seq-len', '16'];
const TINY = [...TINY_SHAPE, '--batch-size', '2', '--device', 'cpu', '--eval-tokens', '64'];
const dir = (name: string) => join(root, name);

async function expectCheckpointLoads(path: string): Promise<ModelConfigJson> {
  const config = JSON.parse(readFileSync(join(path, io.CONFIG_FILE), 'utf8')) as ModelConfigJson;
  expect(config).toHaveProperty('rope_scaling');
  const model = buildModel(config);
  const loaded = await io.loadCheckpoint(path, { model, restoreRng: false });
  expect(loaded.trainerState.extra).toMatchObject({ tokenizer: { type: 'byte' } });
  model.dispose();
  return config;
}

describe('train, eval-length, generate on both model kinds', () => {
  it('train writes metrics.jsonl and a loadable checkpoint for llama and neox', async () => {
    const [llama, neox] = await Promise.all(
      ['llama', 'neox'].map((m) =>
        run('train', ['--model', m, ...TINY, '--steps', '4', '--log-every', '2', '--eval-every', '4', '--out', dir(m)]),
      ),
    );
    for (const [name, r] of [
      ['llama', llama],
      ['neox', neox],
    ] as const) {
      expect(r.code, r.stderr).toBe(0);
      const records = readMetrics(join(dir(name), 'metrics.jsonl'));
      expect(records.map((x) => x.step)).toEqual([2, 4]);
      for (const x of records) {
        expect(Number.isFinite(x.loss) && x.lr > 0 && x.tokens_per_s > 0 && x.elapsed_s > 0).toBe(true);
      }
      expect(records[1].val_ppl).toBeGreaterThan(1);
      const config = await expectCheckpointLoads(dir(name));
      expect(config.model_type).toBe(name === 'llama' ? 'llama' : 'gpt_neox');
    }
  });

  it('eval-length scores every length for every row and writes results.json, an SVG and a PNG', async () => {
    const out = dir('eval');
    const r = await run('eval-length', [
      dir('llama'),
      dir('neox'),
      '--lengths',
      '64,128',
      '--rules',
      'ntk',
      '--max-tokens',
      '256',
      '--passkey',
      '--passkey-samples',
      '1',
      '--device',
      'cpu',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('| model | 64 | 128 |');
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      lengths: number[];
      rows: { name: string; ppl: Record<string, number> }[];
      passkey: { accuracy: Record<string, Record<string, number>> }[];
    };
    expect(results.lengths).toEqual([64, 128]);
    expect(results.rows).toHaveLength(4); // 2 checkpoints × (as trained + 1 rule)
    for (const row of results.rows) for (const L of [64, 128]) expect(row.ppl[L]).toBeGreaterThan(1);
    for (const p of results.passkey)
      for (const L of [64, 128]) expect(Object.values(p.accuracy[L]).every((a) => a >= 0 && a <= 1)).toBe(true);
    const svg = readFileSync(join(out, 'chart.svg'), 'utf8');
    expect(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('L0 = 16');
    const png = readFileSync(join(out, 'chart.png'));
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.readUInt32BE(16)).toBeGreaterThan(100); // IHDR width
  });

  it('generate continues the prompt for llama and neox', async () => {
    for (const m of ['llama', 'neox']) {
      const r = await run('generate', [dir(m), '--prompt', 'Chronicle', '--max-new-tokens', '12', '--seed', '3']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.startsWith('Chronicle')).toBe(true);
      expect(r.stderr).toMatch(/12 tokens in/);
    }
  });
});

describe('resume and fine-tuning', () => {
  it('SIGINT saves; --resume continues with the loss curve of an uninterrupted run (CLEX, so the RNG state matters)', async () => {
    const args = [
      ...TINY,
      '--rope',
      'clex',
      '--max-factor',
      '4',
      '--steps',
      '40',
      '--log-every',
      '1',
      '--eval-every',
      '0',
      '--save-every',
      '1000',
    ];
    const straight = await run('train', [...args, '--out', dir('straight')]);
    expect(straight.code, straight.stderr).toBe(0);
    const out = dir('interrupted');
    const child = start('train', [...args, '--out', out]);
    const done = finish(child);
    const metrics = join(out, 'metrics.jsonl');
    while (!(existsSync(metrics) && readMetrics(metrics).length >= 1)) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGINT');
    const stopped = await done;
    expect(stopped.code, stopped.stderr).toBe(130);
    const saved = JSON.parse(readFileSync(join(out, io.TRAINER_STATE_FILE), 'utf8')) as io.TrainerState;
    expect(saved.global_step).toBeGreaterThanOrEqual(1);
    expect(saved.global_step).toBeLessThan(40);
    const resumed = await run('train', [...args, '--out', out, '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    const losses = (p: string) => readMetrics(join(p, 'metrics.jsonl')).map((r) => [r.step, r.loss]);
    expect(losses(out)).toEqual(losses(dir('straight')));
  }, 300_000);

  it('--resume with a larger --steps extends the run, its schedule recomputed from the new total; other changes still refuse', async () => {
    const args = [...TINY, '--log-every', '1', '--eval-every', '0', '--warmup', '1'];
    const out = dir('extended');
    expect((await run('train', [...args, '--steps', '4', '--out', out])).code).toBe(0);
    const fineTune = [...args, '--init-from', out, '--out', dir('extended-ft')];
    expect((await run('train', [...fineTune, '--steps', '2'])).code).toBe(0);
    const extended = await run('train', [...args, '--steps', '8', '--out', out, '--resume']);
    expect(extended.code, extended.stderr).toBe(0);
    const straight = await run('train', [...args, '--steps', '8', '--out', dir('straight-8')]);
    expect(straight.code, straight.stderr).toBe(0);
    const records = readMetrics(join(out, 'metrics.jsonl'));
    expect(records.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Steps 5..8 follow the 8-step cosine, as in a run planned for 8 steps from the start.
    const lrs = (p: string) =>
      readMetrics(join(p, 'metrics.jsonl'))
        .filter((r) => r.step > 4)
        .map((r) => r.lr);
    expect(lrs(out)).toEqual(lrs(dir('straight-8')));
    expect(records[3].lr).not.toBe(readMetrics(join(dir('straight-8'), 'metrics.jsonl'))[3].lr); // steps 1..4 ran the 4-step schedule
    const state = JSON.parse(readFileSync(join(out, io.TRAINER_STATE_FILE), 'utf8')) as io.TrainerState;
    expect(state.global_step).toBe(8);
    const shorter = await run('train', [...args, '--steps', '6', '--out', out, '--resume']);
    expect(shorter.code).toBe(2);
    expect(shorter.stderr).toMatch(
      /--resume: the checkpoint in .* is at step 8, past --steps 6; pass --steps 8 or more/,
    );
    const otherLr = await run('train', [...args, '--steps', '10', '--lr', '1e-3', '--out', out, '--resume']);
    expect(otherLr.code).toBe(2);
    expect(otherLr.stderr).toMatch(
      /other settings \(lr 0\.003 → 0\.001\); pass the same flags \(only --steps may change\)/,
    );
    // A fine-tune made from the 4-step base does not continue from the extended one.
    const stale = await run('train', [...fineTune, '--steps', '3', '--resume']);
    expect(stale.code).toBe(2);
    expect(stale.stderr).toMatch(/other settings \(init_from_step 4 → 8\)/);
  }, 300_000);

  it('--init-from a plain-RoPE checkpoint with --rope clex fine-tunes its weights', async () => {
    const out = dir('clex-ft');
    const r = await run('train', [
      '--init-from',
      dir('llama'),
      '--rope',
      'clex',
      '--max-factor',
      '4',
      '--steps',
      '2',
      '--log-every',
      '1',
      '--eval-every',
      '0',
      '--batch-size',
      '2',
      '--device',
      'cpu',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const config = await expectCheckpointLoads(out);
    expect(config.rope_scaling).toMatchObject({ type: 'clex', max_factor: 4 });
    expect(config.hidden_size).toBe(16);
    const sd = (await io.loadCheckpoint(out, { restoreRng: false })).modelState!;
    expect(Object.keys(sd).some((k) => k.endsWith('ode_down_proj'))).toBe(true);
    // The base's weights came along: the embedding starts where the base ended, not at a fresh init.
    const base = (await io.loadCheckpoint(dir('llama'), { restoreRng: false })).modelState!;
    const a = await base['model.embed_tokens.weight'].data(),
      b = await sd['model.embed_tokens.weight'].data();
    let diff = 0,
      norm = 0;
    for (let i = 0; i < a.length; i++) {
      diff += (a[i] - b[i]) ** 2;
      norm += a[i] ** 2;
    }
    expect(Math.sqrt(diff / norm)).toBeLessThan(0.5);
  });
});

describe('bad input: one clear line, exit code 2, nothing saved is touched', () => {
  it('rejects bad data, flags, numbers, --resume and --init-from', async () => {
    const empty = join(root, 'empty.txt'),
      short = join(root, 'short.txt');
    writeFileSync(empty, '');
    writeFileSync(short, 'too short for a sequence of sixteen bytes\n'.slice(0, 12));
    const emptyDir = join(root, 'no-checkpoint');
    mkdirSync(emptyDir);
    const modelFile = join(dir('llama'), io.MODEL_FILE);
    const before = {
      bytes: readFileSync(modelFile),
      mtime: statSync(modelFile).mtimeMs,
      metrics: readFileSync(join(dir('llama'), 'metrics.jsonl'), 'utf8'),
    };
    const cases: [string[], RegExp][] = [
      [['--data', join(root, 'missing.txt')], /--data .*missing\.txt: no such file/],
      [['--data', empty], /--data .*empty\.txt: the text is empty/],
      [['--data', short, '--val', short], /fewer than one sequence of --seq-len 16/],
      [['--stepz', '3'], /unknown flag '--stepz' \(did you mean --steps\?\)\. Valid flags: .*--steps/],
      [['--frobnicate', '3'], /unknown flag '--frobnicate'\. Valid flags: /], // nothing near: no guess
      [['--lr', '0'], /--lr must be a number > 0, got '0'/],
      [['--val-fraction', 'half'], /--val-fraction must be a number > 0 and ≤ 0.9, got 'half'/],
      [['--steps', '1.5'], /--steps must be an integer ≥ 1, got '1.5'/],
      [['--model', 'gpt2'], /--model must be one of llama, neox, got 'gpt2'/],
      // --rope lists every rope_scaling type of the models (one list), llama3 included.
      [
        ['--rope', 'llama4'],
        new RegExp(`--rope must be one of none, ${models.ROPE_SCALING_TYPES.join(', ')}, got 'llama4'`),
      ],
      [['--hidden', '15'], /hidden_size \(15\) must be divisible by num_attention_heads/],
      [['--init-from', emptyDir], /--init-from .*no-checkpoint: no checkpoint there/],
      [
        ['--resume', '--out', dir('llama'), '--hidden', '32'],
        /--resume: the checkpoint in .* other settings \(config\.hidden_size 16 → 32/,
      ],
      [
        ['--out', dir('llama'), '--steps', '4', '--log-every', '2', '--eval-every', '4'],
        /already holds a checkpoint \(step 4\); pass --resume/,
      ],
    ];
    const results = await Promise.all(cases.map(([args]) => run('train', [...TINY, '--steps', '2', ...args])));
    results.forEach((r, i) => {
      expect(r.code, `${cases[i][0].join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(cases[i][1]);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
    expect(readFileSync(modelFile).equals(before.bytes)).toBe(true);
    expect(statSync(modelFile).mtimeMs).toBe(before.mtime);
    expect(readFileSync(join(dir('llama'), 'metrics.jsonl'), 'utf8')).toBe(before.metrics);
    const evalMissing = await run('eval-length', [emptyDir]);
    expect(evalMissing.code).toBe(2);
    expect(evalMissing.stderr).toMatch(/no checkpoint there/);
  }, 300_000);
});

describe('the main job', () => {
  it('runs the whole recipe (GPT-NeoX, tiny, a few steps) and writes the table, results.json and the chart', async () => {
    const out = dir('main');
    const r = await run('main', [
      '--model',
      'neox',
      ...TINY_SHAPE,
      '--base-steps',
      '2',
      '--finetune-steps',
      '3',
      '--max-tokens',
      '128',
      '--passkey-samples',
      '0',
      '--passkey-share',
      '0',
      '--clex-t1-share',
      '0',
      '--device',
      'cpu',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      lengths: number[];
      rows: { name: string; ppl: Record<string, number> }[];
    };
    expect(results.lengths).toEqual([16, 32, 64, 128]);
    expect(results.rows.map((row) => row.name)).toEqual([
      'base, plain RoPE',
      'base + NTK (s = L/L0), training-free',
      'base + YaRN (s = L/L0), training-free',
      'base + dynamic NTK (s = L/L0), training-free',
      'base + CLEX at init (W_down = 0, i.e. NTK(2t−1)), training-free',
      'fine-tuned plain RoPE (control)',
      'fine-tuned PI (s = 8)',
      'fine-tuned YaRN (s = 8)',
      'fine-tuned CLEX, ODE learned',
      'fine-tuned CLEX, ODE learned, ODE reset to W_down = 0',
      'fine-tuned CLEX, ODE frozen at init',
    ]);
    for (const row of results.rows) for (const L of results.lengths) expect(row.ppl[L]).toBeGreaterThan(1);
    expect(r.stdout).toContain('| fine-tuned CLEX, ODE frozen at init |');
    expect(r.stdout).toMatch(/In one line: best at 4×L0: .*; CLEX with its learned ODE meets \d of 6 targets/);
    for (const stage of ['base', 'clex', 'clex-frozen', 'pi', 'yarn', 'plain', 'evaluation'])
      expect(r.stdout).toMatch(new RegExp(`time: ${stage} \\d+ s`));
    expect(readFileSync(join(out, 'chart.svg'), 'utf8')).toContain('</svg>');
    // The frozen ablation's ODE weights are still their init (W_down = 0); the learned one's were trained.
    const downOf = async (stage: string) => {
      const sd = (await io.loadCheckpoint(join(out, stage), { restoreRng: false })).modelState!;
      return Array.from(await sd[Object.keys(sd).find((k) => k.endsWith('ode_down_proj'))!].data());
    };
    expect((await downOf('clex-frozen')).every((x) => x === 0)).toBe(true);
    expect((await downOf('clex')).some((x) => x !== 0)).toBe(true);
    // The fine-tunes train on chunked positions (recorded in their settings, so --resume checks it); the base does not.
    const runOf = (stage: string) =>
      (JSON.parse(readFileSync(join(out, stage, 'trainer_state.json'), 'utf8')) as { extra: { run: object } }).extra
        .run;
    for (const stage of ['clex', 'yarn', 'pi']) expect(runOf(stage)).toMatchObject({ train_positions: 'chunks' });
    expect(runOf('base')).not.toHaveProperty('train_positions');
  }, 600_000);

  it('with passkey rows, says the passkey results are void when the base fails at 1×L0; a too-short L0 is refused up front', async () => {
    const out = dir('main-passkey');
    const tiny = [
      '--layers',
      '1',
      '--hidden',
      '16',
      '--heads',
      '2',
      '--base-steps',
      '2',
      '--finetune-steps',
      '1',
      '--max-tokens',
      '192',
      '--device',
      'cpu',
      '--out',
      out,
    ];
    const r = await run('main', [...tiny, '--seq-len', '24', '--passkey-samples', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /\| model \(passkey accuracy, mean over depths 0\.1, 0\.5, 0\.9\) \| 24 \| 48 \| 96 \| 192 \|/,
    );
    expect(r.stdout).toMatch(
      /passkey results are VOID: the base retrieves only .* at 1×L0 = 24 \(it must reach 0\.9 at every depth\)/,
    );
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      passkeyCalibration: { passed: boolean };
      recipe: { passkeyShare: number; clexT1Share: number; trainPositions: string };
    };
    expect(results.passkeyCalibration.passed).toBe(false);
    expect(results.recipe).toMatchObject({ passkeyShare: 0.75, clexT1Share: 0.25, trainPositions: 'chunks' });
    expect(readFileSync(join(out, 'chart.svg'), 'utf8')).toContain('passkey void');
    const badShare = await run('main', [
      ...tiny,
      '--seq-len',
      '24',
      '--clex-t1-share',
      'half',
      '--out',
      dir('main-short'),
    ]);
    expect(badShare.code).toBe(2);
    expect(badShare.stderr).toMatch(/--clex-t1-share must be a number in \[0, 1\] or 'uniform', got 'half'/);
    const badPositions = await run('main', [
      ...tiny,
      '--seq-len',
      '24',
      '--train-positions',
      'chunk',
      '--out',
      dir('main-short'),
    ]);
    expect(badPositions.code).toBe(2);
    expect(badPositions.stderr).toMatch(/--train-positions must be one of standard, chunks, got 'chunk'/);
    const badSeed = await run('main', [...tiny, '--seq-len', '24', '--seed', '1.5', '--out', dir('main-short')]);
    expect(badSeed.code).toBe(2);
    expect(badSeed.stderr).toMatch(/--seed must be an integer ≥ 0, got '1.5'/);
    const short = await run('main', [...tiny, '--seq-len', '16', '--out', dir('main-short')]);
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(
      /--passkey-share 0\.75: a passkey context needs at least \d+ tokens, longer than --seq-len 16; raise --seq-len or pass --passkey-share 0/,
    );
    expect(existsSync(dir('main-short'))).toBe(false);
  }, 600_000);
});

describe('mixed precision (--precision f16-mixed)', () => {
  it('logs the loss scale and skipped steps, checkpoints the scaler and --resume restores it; another --precision refuses', async () => {
    // A constant rate (no warm-up, min-lr = lr), so a run extended by --resume follows a straight one step for step.
    const args = [...TINY, '--precision', 'f16-mixed', '--log-every', '1', '--eval-every', '0'];
    const constant = ['--warmup', '0', '--lr', '3e-3', '--min-lr', '3e-3'];
    const out = dir('mixed');
    const [first, straight] = await Promise.all([
      run('train', [...args, ...constant, '--steps', '3', '--out', out]),
      run('train', [...args, ...constant, '--steps', '6', '--out', dir('mixed-straight')]),
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(straight.code, straight.stderr).toBe(0);
    expect(first.stdout).toMatch(/train step 3\/3 .* scale \d+ .* skipped \d+/);
    const saved = JSON.parse(readFileSync(join(out, io.TRAINER_STATE_FILE), 'utf8')) as io.TrainerState;
    const atThree = readMetrics(join(out, 'metrics.jsonl'))[2];
    expect(saved.grad_scaler).toMatchObject({ scale: atThree.loss_scale, skippedSteps: atThree.skipped_steps });
    // A copy whose saved scale and count are edited (valid values no run of 3 steps reaches) tells a restored scaler
    // from a fresh one.
    const edited = dir('mixed-edited');
    cpSync(out, edited, { recursive: true });
    const state = { ...saved, grad_scaler: { ...saved.grad_scaler!, scale: 2 ** 10, skippedSteps: 5 } };
    writeFileSync(join(edited, io.TRAINER_STATE_FILE), JSON.stringify(state));
    const resumed = await Promise.all(
      [out, edited].map((o) => run('train', [...args, ...constant, '--steps', '6', '--out', o, '--resume'])),
    );
    resumed.forEach((r) => expect(r.code, r.stderr).toBe(0));
    const curve = (p: string) =>
      readMetrics(join(p, 'metrics.jsonl')).map((r) => [r.step, r.loss, r.loss_scale, r.skipped_steps]);
    expect(curve(out)).toEqual(curve(dir('mixed-straight')));
    expect(
      curve(edited)
        .slice(3)
        .map((r) => [r[2], r[3]]),
    ).toEqual([
      [2 ** 10, 5],
      [2 ** 10, 5],
      [2 ** 10, 5],
    ]);
    const f32 = await run('train', [
      ...TINY,
      '--log-every',
      '1',
      '--eval-every',
      '0',
      ...constant,
      '--steps',
      '8',
      '--out',
      out,
      '--resume',
    ]);
    expect(f32.code).toBe(2);
    expect(f32.stderr).toMatch(/other settings \(precision "f16-mixed" → "f32"\); pass the same flags/);
  }, 300_000);

  it('--precision: accepted values, a bad value, and a clear error up front where shader-f16 is missing', async () => {
    const noF16 = { DAWNGRAD_DEVICE: 'webgpu', DAWNGRAD_DISABLE_FEATURES: 'shader-f16' };
    const cases: [string, string[], RegExp, Record<string, string>?][] = [
      ['train', [...TINY, '--precision', 'f16'], /--precision must be one of f32, f16-mixed, got 'f16'/],
      ['main', ['--quick', '--precision', 'fp16'], /--precision must be one of f32, f16-mixed, got 'fp16'/],
      ['eval-length', [dir('llama'), '--precision', 'half'], /--precision must be one of f32, f16-mixed, got 'half'/],
      [
        'main',
        ['--quick', '--compare-precision', '--precision', 'f32'],
        /--compare-precision trains the base under both precisions; drop --precision f32/,
      ],
      [
        'train',
        [...TINY, '--device', 'webgpu', '--precision', 'f16-mixed', '--out', dir('no-f16')],
        /--precision f16-mixed needs the WebGPU feature 'shader-f16' \(float16 storage\), which DAWNGRAD_DISABLE_FEATURES turns off; train with --precision f32 \(the default\), or --device cpu/,
        noF16,
      ],
      [
        'main',
        ['--quick', '--device', 'webgpu', '--precision', 'f16-mixed', '--out', dir('no-f16-main')],
        /--precision f16-mixed needs the WebGPU feature 'shader-f16'/,
        noF16,
      ],
      [
        'eval-length',
        [dir('llama'), '--device', 'webgpu', '--precision', 'f16-mixed', '--out', dir('no-f16-eval')],
        /--precision f16-mixed needs the WebGPU feature 'shader-f16'/,
        noF16,
      ],
    ];
    const results = await Promise.all(cases.map(([script, args, , env]) => run(script, args, env)));
    results.forEach((r, i) => {
      expect(r.code, `${cases[i][0]} ${cases[i][1].join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(cases[i][2]);
    });
    for (const name of ['no-f16', 'no-f16-main', 'no-f16-eval']) expect(existsSync(dir(name))).toBe(false);
    // Both values train (f32 is the default; f16-mixed on cpu is the float16 reference).
    const [f32, mixed] = await Promise.all(
      ['f32', 'f16-mixed'].map((p) =>
        run('train', [...TINY, '--precision', p, '--steps', '2', '--eval-every', '2', '--out', dir(`precision-${p}`)]),
      ),
    );
    expect(f32.code, f32.stderr).toBe(0);
    expect(mixed.code, mixed.stderr).toBe(0);
    expect(readMetrics(join(dir('precision-f32'), 'metrics.jsonl'))[0]).not.toHaveProperty('loss_scale');
    expect(readMetrics(join(dir('precision-f16-mixed'), 'metrics.jsonl'))[0].loss_scale).toBeGreaterThan(0);
  }, 300_000);

  it('the main job --compare-precision trains the base under both precisions and the rounded-init control, and charts the loss curves', async () => {
    const out = dir('main-precision');
    const r = await run('main', [
      '--quick',
      '--compare-precision',
      ...TINY_SHAPE,
      '--base-steps',
      '4',
      '--passkey-share',
      '0',
      '--device',
      'cpu',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ {2}f32: \d+\.\d+ \(perplexity [\d.]+\), \d+ ms\/step/);
    expect(r.stdout).toMatch(/ {2}f16-mixed: \d+\.\d+ .* steps skipped, loss scale \d+/);
    expect(r.stdout).toMatch(/f16-mixed vs f32: [+-]\d+\.\d+% \((within|outside) 2%\)/);
    expect(r.stdout).toMatch(/control, f32 from the initial weights rounded to float16 once, vs f32: [+-]\d+\.\d+%/);
    expect(r.stdout).toMatch(/so f16-mixed's gap is (within this stage's own sensitivity|\d+\.\d× the control's)/);
    const report = JSON.parse(readFileSync(join(out, 'precision.json'), 'utf8')) as {
      runs: { name: string; heldOutLoss: number }[];
      gap: number;
      controlGap: number;
    };
    expect(report.runs.map((x) => x.name)).toEqual(['f32', 'f16-mixed', 'f32, init rounded to f16']);
    for (const x of report.runs) expect(x.heldOutLoss).toBeGreaterThan(0);
    const [f32, , control] = report.runs;
    expect(report.controlGap).toBeCloseTo(control.heldOutLoss / f32.heldOutLoss - 1, 12);
    // The control really starts elsewhere: its first logged loss differs from the f32 run's.
    const first = (folder: string) => readMetrics(join(out, 'precision', folder, 'metrics.jsonl'))[0].loss;
    expect(first('f32-init-rounded')).not.toBe(first('f32'));
    expect(readMetrics(join(out, 'precision', 'f32-init-rounded', 'metrics.jsonl'))[0]).not.toHaveProperty(
      'loss_scale',
    );
    expect(readFileSync(join(out, 'precision.svg'), 'utf8')).toContain('</svg>');
    expect(statSync(join(out, 'precision.png')).size).toBeGreaterThan(1000);
    expect(existsSync(join(out, 'precision', 'f16-mixed', io.TRAINER_STATE_FILE))).toBe(true);
  }, 300_000);
});

describe('Hugging Face folders and tokenizers in the scripts', () => {
  it('--init-from a savePretrained folder with --rope clex fine-tunes it with its tokenizer.json; --tokenizer PATH trains from scratch', async () => {
    const { models, setDefaultDevice, getDefaultDevice } = await import('../index.js');
    const { smallBpeTokenizerJson } = await import('./hf-helpers.js');
    const previous = getDefaultDevice();
    setDefaultDevice('cpu');
    const tokenizer = models.Tokenizer.fromJSON(smallBpeTokenizerJson() as never);
    const base = new models.LlamaForCausalLM({
      vocab_size: tokenizer.vocabSize,
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      max_position_embeddings: 16,
    });
    await base.savePretrained(dir('hf-base'), { tokenizer });
    base.dispose();
    setDefaultDevice(previous);

    const tuned = await run('train', [
      '--init-from',
      dir('hf-base'),
      '--rope',
      'clex',
      '--max-factor',
      '2',
      '--batch-size',
      '2',
      '--device',
      'cpu',
      '--steps',
      '2',
      '--eval-every',
      '0',
      '--out',
      dir('hf-clex'),
      '--export-hf',
      dir('hf-clex-export'),
    ]);
    expect(tuned.code, tuned.stderr).toBe(0);
    const exported = await models.fromPretrained(dir('hf-clex-export'), { device: 'cpu' });
    expect(exported.config.rope_scaling).toMatchObject({ type: 'clex', max_factor: 2 });
    expect(existsSync(join(dir('hf-clex-export'), 'tokenizer.json'))).toBe(true);
    exported.dispose();
    const config = JSON.parse(readFileSync(join(dir('hf-clex'), io.CONFIG_FILE), 'utf8')) as ModelConfigJson;
    expect(config.rope_scaling).toMatchObject({ type: 'clex', max_factor: 2 });
    expect(readFileSync(join(dir('hf-clex'), 'tokenizer.json'), 'utf8')).toBe(
      readFileSync(join(dir('hf-base'), 'tokenizer.json'), 'utf8'),
    );
    const sampled = await run('generate', [
      dir('hf-clex'),
      '--prompt',
      'the hello',
      '--max-new-tokens',
      '4',
      '--seed',
      '1',
    ]);
    expect(sampled.code, sampled.stderr).toBe(0);
    expect(sampled.stdout).toContain('the hello');

    writeFileSync(join(root, 'bpe.json'), JSON.stringify(smallBpeTokenizerJson()));
    const scratch = await run('train', [
      ...TINY,
      '--tokenizer',
      join(root, 'bpe.json'),
      '--steps',
      '2',
      '--eval-every',
      '0',
      '--out',
      dir('hf-scratch'),
    ]);
    expect(scratch.code, scratch.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir('hf-scratch'), io.CONFIG_FILE), 'utf8')).vocab_size).toBe(
      tokenizer.vocabSize,
    );
    const typo = await run('train', [...TINY, '--tokenizer', join(root, 'nope.json'), '--out', dir('hf-typo')]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("not 'char' or 'byte', and no tokenizer.json there");
  }, 180_000);
});
