// Reading the source tree as text, for the structure tests (package-layering, core-layering): which
// modules a file imports at run time, the import cycles of a module graph, and device branches.
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export const ROOT = resolve('.');

/** The .ts sources under dir (declaration files excluded). */
export function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? tsFiles(join(dir, e.name))
      : /\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

/** `import … from`, `export … from`, `import '…'` and `import('…')`, with what they bring in. */
const IMPORT =
  /\b(?:import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g;

/**
 * The files (relative to the repository root) that `source`, the file at `file`, imports at run time:
 * relative specifiers only; `import type …` and braces of `type` names only are left out (TypeScript
 * erases them).
 */
export function runtimeImports(file: string, source: string): string[] {
  const out: string[] = [];
  for (const [, typeKeyword, clause, from, bare] of source.matchAll(IMPORT)) {
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
    out.push(relative(ROOT, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))));
  }
  return out;
}

/** Strongly connected components of more than one module, or a module importing itself: the cycles. */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
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

/** A branch on a device name or on the adapter kind: `x.device === 'cpu'`, `'webgpu' !== d`, isSoftware, gpuRuntime(). */
const DEVICE_BRANCH =
  /\bdevice\s*[!=]==?\s*['"](?:cpu|webgpu)['"]|['"](?:cpu|webgpu)['"]\s*[!=]==?\s*[\w.]*device\b|\bisSoftware\b|\bgpuRuntime\(\)/gi;

/** The lines of `source` that branch on a device or the adapter, as 'line: text'. */
export function deviceBranches(source: string): string[] {
  return source.split('\n').flatMap((line, i) => (line.match(DEVICE_BRANCH) ? [`${i + 1}: ${line.trim()}`] : []));
}
