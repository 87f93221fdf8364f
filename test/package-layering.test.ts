// The source tree's structure, as tests: no runtime import cycle anywhere, and no device or variant
// branch outside core/ (ops declare kernels and variants; core/op.ts picks the backend and variant).
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceBranches, importCycles, ROOT, runtimeImports, tsFiles } from './source-scan.js';

const SOURCE_DIRS = ['core', 'ops', 'nn', 'models', 'ode', 'testing', 'examples', 'bench', 'scripts'];
/** Library folders: here a device or variant branch is a design error. */
const LIBRARY_DIRS = ['ops', 'nn', 'models', 'ode', 'testing', 'examples'];

describe('source layering', () => {
  it('the scans see what they look for (and skip type-only imports)', () => {
    const file = join(ROOT, 'ops', 'x.ts');
    const src = [
      "import { a } from './a.js';",
      "import type { B } from '../core/b.js';",
      "import { type C, type D as E } from './c.js';",
      "import { f, type G } from './f.js';",
      "export { h } from './h.js';",
      "export type { I } from './i.js';",
      "import './side.js';",
      "const m = await import('../nn/m.js');",
      'import {\n  n,\n} from "./n.js";',
    ].join('\n');
    expect(runtimeImports(file, src)).toEqual([
      'ops/a.ts',
      'ops/f.ts',
      'ops/h.ts',
      'ops/side.ts',
      'nn/m.ts',
      'ops/n.ts',
    ]);
    const graph = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['a']],
      ['e', ['e']],
    ]);
    expect(importCycles(graph)).toEqual([['a', 'b', 'c'], ['e']]);
    const branches =
      "if (x.device === 'cpu') f();\nconst d = t.device !== 'webgpu';\nif ('cpu' === y.device) g();\nrt.isSoftware;\nif (a.device !== b.device) throw e;";
    expect(deviceBranches(branches)).toHaveLength(4);
  });

  it('no runtime import cycle in the source tree', () => {
    const graph = new Map<string, string[]>();
    const files = [...SOURCE_DIRS.flatMap((dir) => tsFiles(join(ROOT, dir))), join(ROOT, 'index.ts')];
    for (const f of files) graph.set(relative(ROOT, f), runtimeImports(f, readFileSync(f, 'utf8')));
    expect(graph.size).toBeGreaterThan(100);
    expect(importCycles(graph)).toEqual([]);
  });

  it('no device or variant branch outside core/', () => {
    const offenders = LIBRARY_DIRS.flatMap((dir) =>
      tsFiles(join(ROOT, dir)).flatMap((f) =>
        deviceBranches(readFileSync(f, 'utf8')).map((line) => `${relative(ROOT, f)}:${line}`),
      ),
    );
    expect(offenders).toEqual([]);
  });
});
