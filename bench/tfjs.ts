// TensorFlow.js's WebGPU backend booted on dawngrad's Dawn instance and adapter, so both frameworks
// are timed on the same device side by side.
import type * as TF from '@tensorflow/tfjs-core';
import { pathToFileURL } from 'node:url';
import { gpuRuntime } from '../core/device.js';

let booted: Promise<typeof TF> | null = null;

async function boot(): Promise<typeof TF> {
  const rt = gpuRuntime();
  if (!rt) throw new Error('bench: TF.js is compared on the webgpu backend; unset DAWNGRAD_DEVICE=cpu');
  (globalThis as { navigator?: unknown }).navigator = { gpu: rt.gpu };
  const tf: typeof TF = await import('@tensorflow/tfjs-core');
  // tfjs-core's node bundle ships no gradients; its ESM gradient registrations use directory imports
  // Node cannot load, so bundle them once (they register into tfjs's global registry).
  const gradsFile = 'bench/.tmp/tf-gradients.mjs';
  await (
    await import('esbuild')
  ).build({
    stdin: { contents: "import '@tensorflow/tfjs-core/dist/register_all_gradients';", resolveDir: process.cwd() },
    bundle: true,
    format: 'esm',
    platform: 'node',
    outfile: gradsFile,
    logLevel: 'error',
  });
  await import(pathToFileURL(gradsFile).href);
  await import('@tensorflow/tfjs-backend-webgpu');
  await tf.setBackend('webgpu');
  await tf.ready();
  return tf;
}

/** tfjs-core with its WebGPU backend active on dawngrad's adapter (booted once per process). */
export function bootTfjs(): Promise<typeof TF> {
  booted ??= boot();
  return booted;
}
