// models/ has no import cycle: modules that need a model (generate, savePretrained, the decoding
// state) take an interface of what they use, so the model classes can offer them as methods without
// being imported back. Type-only imports (`import type`, or braces of `type` names only) are left
// out: TypeScript erases them.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const MODELS = resolve('models');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `import … from`, `export … from`, `import '…'` and `import('…')`, with what they bring in. */
const IMPORT =
  /\b(?:import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g;

/** The files under models/ that `source` (the file at `file`) imports at run time. */
function runtimeImports(file: string, source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT)) {
    const [, typeKeyword, clause, from, bare] = m;
    const spec = from ?? bare;
    const braces = /^\{([^}]*)\}$/.exec(clause?.trim() ?? '');
    const typeNamesOnly =
      braces !== null &&
      braces[1]
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .every((s) => s.startsWith('type '));
    if (typeKeyword || typeNamesOnly || !spec.startsWith('.')) continue;
    const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
    if (!relative(MODELS, target).startsWith('..')) out.push(target);
  }
  return out;
}

/** Every cycle's files (strongly connected components of more than one file, or a file importing itself). */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>(),
    low = new Map<string, number>(),
    stack: string[] = [],
    onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
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
    if (component.length > 1 || graph.get(v)?.includes(v)) found.push(component.map((f) => relative(MODELS, f)).sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('models/ import graph', () => {
  it('the scan keeps run-time imports and drops type-only ones', () => {
    const file = join(MODELS, 'x.ts');
    const source = [
      "import { a } from './a.js';",
      "import type { B } from './b.js';",
      "import { type C, type D } from './c.js';",
      "import { e, type E } from './e.js';",
      "export { f } from './f.js';",
      "export type { G } from './g.js';",
      "import './h.js';",
      "const i = await import('./i.js');",
      "import { j } from '../core/j.js';",
    ].join('\n');
    expect(runtimeImports(file, source).map((f) => relative(MODELS, f))).toEqual([
      'a.ts',
      'e.ts',
      'f.ts',
      'h.ts',
      'i.ts',
    ]);
    const graph = new Map(
      [
        ['a', ['b']],
        ['b', ['c']],
        ['c', ['a']],
        ['d', ['a']],
      ].map(([k, v]) => [join(MODELS, k as string), (v as string[]).map((x) => join(MODELS, x))]),
    );
    expect(cycles(graph)).toEqual([['a', 'b', 'c']]);
  });

  it('has no cycle', () => {
    const files = tsFiles(MODELS);
    expect(files.length).toBeGreaterThan(10);
    const graph = new Map(files.map((f) => [f, runtimeImports(f, readFileSync(f, 'utf8'))]));
    expect(cycles(graph)).toEqual([]);
  });
});
