// The README's API tour must run verbatim as a plain Node ESM script importing the built package.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('README API tour', () => {
  it('runs against the built package and prints what it claims', () => {
    if (!existsSync('dist/index.js')) execFileSync('node', ['scripts/build.mjs'], { stdio: 'inherit' });
    const readme = readFileSync('README.md', 'utf8');
    const tour = readme.split('## API tour')[1].match(/```js\n([\s\S]*?)```/)?.[1];
    expect(tour, 'README has a ```js block after "## API tour"').toBeTruthy();
    mkdirSync('test/.tmp', { recursive: true });
    // Inside the package directory, 'dawngrad' resolves to this package through its "exports".
    writeFileSync('test/.tmp/readme-tour.mjs', tour!);
    const out = execFileSync('node', ['test/.tmp/readme-tour.mjs'], { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('webgpu');
    expect(lines.slice(-4)).toEqual(['false 6', 'true true', 'true', 'true']);
  });
});
