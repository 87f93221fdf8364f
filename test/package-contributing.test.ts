// CONTRIBUTING.md's table of op records is the registry's (core/op.ts): every op, its kernels and
// their variant families, and the kernels no op record owns. A new record fails here until listed.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import '../index.js';
import { registeredKernels, registeredOps } from '../core/op.js';

/** The table's rows as the registry gives them. */
function registryRows(): string[] {
  const owned = new Set<string>();
  const family = (names: readonly string[]) => [...new Set(names)].join('; ') || '—';
  const rows = [...registeredOps()].map(([name, op]) => {
    op.kernels.forEach((k) => owned.add(k.name));
    const kernels = op.kernels.map((k) => `\`${k.name}\``).join(', ') || '(none: host maths)';
    return `| \`${name}\` | ${kernels} | ${family(op.kernels.map((k) => `${k.family}: ${k.webgpu.map((v) => v.name).join(', ')}`))} |`;
  });
  for (const [name, k] of registeredKernels()) {
    if (!owned.has(name))
      rows.push(`| (kernel only) | \`${name}\` | ${k.family}: ${k.webgpu.map((v) => v.name).join(', ')} |`);
  }
  return rows;
}

it('CONTRIBUTING.md lists every op record with its kernels and variants', () => {
  const doc = readFileSync('CONTRIBUTING.md', 'utf8');
  const table = doc.slice(doc.indexOf('## The op records'));
  const rows = table.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| op |'));
  expect(rows).toEqual(registryRows());
  expect(rows.length).toBeGreaterThan(10);
});
