// `npm run lint` (ESLint with typescript-eslint, and Prettier's check at print width 120) is clean: CI
// runs it through this test.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function run(bin: string, args: string[]): { ok: boolean; output: string } {
  try {
    return {
      ok: true,
      output: execFileSync(`node_modules/.bin/${bin}`, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, output: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

describe('lint', () => {
  it('ESLint finds nothing', () => {
    const { ok, output } = run('eslint', ['.']);
    expect(output).toBe('');
    expect(ok).toBe(true);
  }, 120_000);

  it('every file is formatted as Prettier prints it', () => {
    const { ok, output } = run('prettier', ['--check', '.', '--log-level', 'warn']);
    expect(output).toBe('');
    expect(ok).toBe(true);
  }, 120_000);
});
