// Bundles the library to dist/index.js (esbuild) and emits declarations to dist/types (tsc).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';

await build({
  entryPoints: ['index.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: 'dist/index.js',
  external: ['webgpu', 'fast-check', '@huggingface/tokenizers', 'typed-array-utils'],
  sourcemap: true,
  logLevel: 'warning',
});
execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
