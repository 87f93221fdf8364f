// core/ is the bottom layer: it imports nothing from ops/, nn/, models/ or ode/, and its engine (record,
// backward, gradient accumulation, grad(), anomaly checks) works with no ops module loaded.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const CORE = resolve('core');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Static imports and re-exports, side-effect imports, dynamic import() and `declare module` targets. */
const SPECIFIER = /\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]|\bdeclare\s+module\s+['"]([^'"]+)['"]/g;

/** The relative specifiers in `source` (a file at `file`) that resolve outside core/. */
function upwardImports(file: string, source: string): string[] {
  return [...source.matchAll(SPECIFIER)]
    .map((m) => m[1] ?? m[2] ?? m[3])
    .filter((spec) => spec.startsWith('.') && relative(CORE, resolve(dirname(file), spec)).startsWith('..'));
}

/** Whether an import clause brings in values: `import type {…}` and `import { type A, type B }` do not. */
const importsValues = (clause: string): boolean =>
  !/^type\s/.test(clause) && !/^\{(\s*type\s+[\w\s]+,?)*\s*\}$/.test(clause);

/** The core/ files `file` imports at runtime. */
function runtimeImports(file: string, source: string): string[] {
  return [...source.matchAll(/^(?:import|export)\s+([^;]*?)\s*from\s*['"](\.[^'"]+)['"]/gm)]
    .filter(([, clause]) => importsValues(clause))
    .map(([, , spec]) => resolve(dirname(file), spec.replace(/\.js$/, '.ts')))
    .filter((f) => !relative(CORE, f).startsWith('..'));
}

/** A cycle in the graph (as a list of files, first repeated last), or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string): string[] | null => {
    if (state.get(f) === 'done') return null;
    if (state.get(f) === 'open') return [...path.slice(path.indexOf(f)), f];
    state.set(f, 'open');
    path.push(f);
    for (const g of graph.get(f) ?? []) {
      const cycle = visit(g);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(f, 'done');
    return null;
  };
  for (const f of graph.keys()) {
    const cycle = visit(f);
    if (cycle) return cycle;
  }
  return null;
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

  it('the import scan tells runtime imports from type-only ones', () => {
    const file = join(CORE, 'x.ts');
    const source = `import { a, type B } from './a.js';\nimport type { C } from './c.js';\nimport { type D,\n  type E as F } from './d.js';\nexport { g } from './g.js';\nimport { h } from '../ops/h.js';`;
    expect(runtimeImports(file, source).map((f) => relative(CORE, f))).toEqual(['a.ts', 'g.ts']);
  });

  it('core/ has no runtime import cycle (modules load in one order, none sees another half-initialised)', () => {
    const files = tsFiles(CORE).filter((f) => !f.endsWith('.d.ts'));
    const graph = new Map(files.map((f) => [f, runtimeImports(f, readFileSync(f, 'utf8'))]));
    expect(findCycle(graph)?.map((f) => relative(CORE, f))).toBeUndefined();
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
