// Every ```js block of the README runs verbatim as a plain Node ESM script importing the built package,
// and prints what its comments claim.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';

const blocks = [...readFileSync('README.md', 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);

function run(code: string, name: string): string[] {
  mkdirSync('test/.tmp', { recursive: true });
  // Inside the package directory, 'dawngrad' resolves to this package through its "exports".
  const file = `test/.tmp/readme-${name}.mjs`;
  writeFileSync(file, code);
  const out = execFileSync('node', [file], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
  return out.trim().split('\n');
}

describe('README code blocks', () => {
  beforeAll(() => {
    if (!existsSync('dist/index.js')) execFileSync('node', ['scripts/build.mjs'], { stdio: 'inherit' });
  });

  it('has the eight documented blocks', () => {
    expect(blocks.length).toBe(8);
  });

  it('API tour', () => {
    const lines = run(blocks[0], 'tour');
    expect(lines[0]).toBe('webgpu');
    expect(lines.slice(-4)).toEqual(['false 6', 'true true', 'true', 'true']);
  });

  it('neural ODE: the adjoint gradient of y(1) = e^a', () => {
    const [value, grad, nfe] = run(blocks[1], 'ode')[0].split(' ').map(Number);
    expect(value).toBeCloseTo(Math.exp(0.5), 6);
    expect(grad).toBeCloseTo(Math.exp(0.5), 6);
    expect(nfe).toBe(32);
  });

  it('nn + optim + io: trains, names parameters, checkpoints', () => {
    expect(run(blocks[2], 'nn')).toEqual(['true 0.weight 0.bias 2.weight 2.bias', '200']);
  });

  it('mixed precision: autocast and GradScaler train float32 weights; the scale halves per skipped step', () => {
    expect(run(blocks[3], 'mixed-precision')).toEqual(['true 65536 float32']);
  });

  it('models: a CLEX LLaMA trains a step and generates past L0', () => {
    expect(run(blocks[4], 'models')).toEqual(['44 true']);
  });

  it('HF folders: a bf16 sharded folder loads with CLEX, trains a step and saves back', () => {
    expect(run(blocks[5], 'hf')).toEqual(['LlamaForCausalLM clex rk4']);
  });

  it('float16: binary16 values, gradients back in float32, PyTorch promotion, the missing-feature error', () => {
    expect(run(blocks[6], 'float16')).toEqual([
      '[ 1000.5, 0.0999755859375, Infinity ]',
      'float32 float16 float32',
      "webgpu: float16 needs the WebGPU feature 'shader-f16', which DAWNGRAD_DISABLE_FEATURES turns off",
    ]);
  });

  it('settings: configure, withConfig, and a bad value', () => {
    expect(run(blocks[7], 'settings')).toEqual([
      'group',
      'true',
      `configure: fusion = "yes" is not valid; use '1' or '0' (true or false in code)`,
    ]);
  });
});
