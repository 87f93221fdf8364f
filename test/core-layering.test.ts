// core/ is the bottom layer: it imports nothing from ops/, nn/, models/ or ode/, and its engine (record,
// backward, gradient accumulation, grad(), anomaly checks) works with no ops module loaded.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tsFiles } from './source-scan.js';

const CORE = resolve('core');

/** Static imports and re-exports, side-effect imports, dynamic import() and `declare module` targets. */
const SPECIFIER = /\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]|\bdeclare\s+module\s+['"]([^'"]+)['"]/g;

/** The relative specifiers in `source` (a file at `file`) that resolve outside core/. */
function upwardImports(file: string, source: string): string[] {
  return [...source.matchAll(SPECIFIER)]
    .map((m) => m[1] ?? m[2] ?? m[3])
    .filter((spec) => spec.startsWith('.') && relative(CORE, resolve(dirname(file), spec)).startsWith('..'));
}

describe('core layering', () => {
  it('the import scan sees imports of every form, and flags those leaving core/', () => {
    const file = join(CORE, 'webgpu', 'x.ts');
    const source = `import { a } from '../tensor.js';\nexport * from '../../ops/movement.js';\nimport '../../nn/index.js';\nconst m = await import('../../ode/odeint.js');\nimport {\n  b,\n} from '../../models/clex.js';\ndeclare module '../../ops/util.js' {}\nimport x from 'webgpu';`;
    expect(upwardImports(file, source)).toEqual([
      '../../ops/movement.js',
      '../../nn/index.js',
      '../../ode/odeint.js',
      '../../models/clex.js',
      '../../ops/util.js',
    ]);
  });

  it('no file under core/ imports from ops/, nn/, models/ or ode/', () => {
    const files = tsFiles(CORE);
    expect(files.length).toBeGreaterThan(10);
    const offenders = files.flatMap((f) =>
      upwardImports(f, readFileSync(f, 'utf8')).map((spec) => `${relative(CORE, f)} imports ${spec}`),
    );
    expect(offenders).toEqual([]);
  });

  it('the engine runs with core/ modules alone: record, backward with accumulation, grad, anomaly checks', () => {
    // A child process, so no ops module (which would add the op methods to Tensor) is loaded.
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'test/fixtures/core-only.ts'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const results = JSON.parse(out.trim().split('\n').pop() as string);
    expect(results.opMethodsLoaded).toBe(false);
    expect(results.cpu).toBeDefined();
    for (const device of ['cpu', 'webgpu']) {
      const r = results[device];
      if (!r) continue;
      // y = x·x with x used twice by one node: dy/dx = 2x, and a second backward adds another 2x.
      expect(r.first).toEqual([2, -4, 6]);
      expect(r.second).toEqual([4, -8, 12]);
      expect(r.functional).toEqual([8, 0]);
      expect(r.anomaly).toBe(true);
    }
  }, 60_000);
});
