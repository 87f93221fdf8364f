// The source tree's structure, as tests: no runtime import cycle anywhere, and no device or variant
// branch outside core/ (ops declare kernels and variants; core/op.ts picks the backend and variant).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve('.');
const SOURCE_DIRS = ['core', 'ops', 'nn', 'models', 'ode', 'testing', 'examples', 'bench', 'scripts'];
/** Library folders: here a device or variant branch is a design error. */
const LIBRARY_DIRS = ['ops', 'nn', 'models', 'ode', 'testing', 'examples'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? tsFiles(join(dir, e.name))
      : /\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

/** Imports that exist at runtime: static imports/re-exports (not `import type`/`export type`), side-effect imports, dynamic import(). */
const RUNTIME_IMPORT =
  /^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\bfrom\s*)?['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/gm;

export function runtimeImports(file: string, source: string): string[] {
  return [...source.matchAll(RUNTIME_IMPORT)]
    .map((m) => m[1] ?? m[2])
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(ROOT, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))));
}

/** Strongly connected components with more than one module (or a self-import): the cycles. */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>(),
    low = new Map<string, number>(),
    onStack = new Set<string>(),
    stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/** A branch on a device name or on the adapter kind: `x.device === 'cpu'`, `'webgpu' !== d`, isSoftware, `device === 'cpu' ? …`. */
const DEVICE_BRANCH =
  /\bdevice\s*[!=]==?\s*['"](?:cpu|webgpu)['"]|['"](?:cpu|webgpu)['"]\s*[!=]==?\s*[\w.]*device\b|\bisSoftware\b|\bgpuRuntime\(\)/gi;

export function deviceBranches(source: string): string[] {
  return source.split('\n').flatMap((line, i) => (line.match(DEVICE_BRANCH) ? [`${i + 1}: ${line.trim()}`] : []));
}

describe('source layering', () => {
  it('the scans see what they look for (and skip type-only imports)', () => {
    const file = join(ROOT, 'ops', 'x.ts');
    const src =
      "import { a } from './a.js';\nimport type { B } from '../core/b.js';\nexport { c } from './c.js';\nexport type { D } from './d.js';\nimport './side.js';\nconst m = await import('../nn/m.js');\nimport {\n  e,\n} from './e.js';";
    expect(runtimeImports(file, src)).toEqual(['ops/a.ts', 'ops/c.ts', 'ops/side.ts', 'nn/m.ts', 'ops/e.ts']);
    expect(
      importCycles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
          ['d', ['a']],
          ['e', ['e']],
        ]),
      ),
    ).toEqual([['a', 'b', 'c'], ['e']]);
    expect(
      deviceBranches(
        "if (x.device === 'cpu') f();\nconst d = t.device !== 'webgpu';\nif ('cpu' === y.device) g();\nrt.isSoftware;\nif (a.device !== b.device) throw e;",
      ),
    ).toHaveLength(4);
  });

  it('no runtime import cycle in the source tree', () => {
    const graph = new Map<string, string[]>();
    for (const dir of SOURCE_DIRS)
      for (const f of tsFiles(join(ROOT, dir)))
        graph.set(relative(ROOT, f), runtimeImports(f, readFileSync(f, 'utf8')));
    graph.set('index.ts', runtimeImports(join(ROOT, 'index.ts'), readFileSync('index.ts', 'utf8')));
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
