// Exits 0 when Dawn finds a WebGPU adapter, printing its name; 1 otherwise.
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.error('no WebGPU adapter');
  process.exit(1);
}
console.log(`${adapter.info.vendor} ${adapter.info.device || adapter.info.description} (${adapter.info.architecture})`);
process.exit(0);
