// Backend registry and the default device. The Dawn device is created once, at import (ops are
// synchronous, adapter creation is not); DAWNGRAD_DEVICE=cpu skips it entirely.
import type { Backend, DeviceName, View } from './backend.js';
import { config, configure } from './config.js';
import type { TypedArray } from './dtype.js';
import { CpuBackend } from './cpu.js';
import { defaultGcThreshold, pendingReclaim } from './reclaim.js';
import { setAsyncBoundary } from './scope.js';
import { OpError } from './shape.js';
import { WebGpuBackend } from './webgpu/backend.js';
import { createRuntime, type DeviceInfo, type GpuRuntime } from './webgpu/runtime.js';

export const cpu = new CpuBackend();
let gpu: WebGpuBackend | null = null;
let gpuError: Error | null = null;

async function initGpu(): Promise<void> {
  try {
    const rt = await createRuntime(config());
    gpu = new WebGpuBackend(rt);
    defaultGcThreshold(rt.info.limits.maxStorageBufferBindingSize);
    setAsyncBoundary(() => pendingReclaim() ?? rt.settleBacklog());
  } catch (e) {
    gpuError = e as Error;
  }
}
if (config().device === 'webgpu') await initGpu();

export function checkDevice(op: string, device: string): DeviceName {
  if (device !== 'cpu' && device !== 'webgpu')
    throw new OpError(op, `unknown device '${device}'; use 'webgpu' or 'cpu'`);
  return device;
}

export function getBackend(device: DeviceName): Backend {
  if (device === 'cpu') return cpu;
  if (gpu) return gpu;
  if (gpuError) throw gpuError;
  throw new Error(
    "webgpu was not initialised because DAWNGRAD_DEVICE=cpu; unset it (or call `await initWebGpu()`) to use device 'webgpu'",
  );
}

/** Whether tensors on `device` can be read synchronously: the host holds their memory (cpu), not a GPU queue. */
export function readsSync(device: DeviceName): boolean {
  return getBackend(device).readSync !== undefined;
}

/** Whether a tensor on `from` can be copied to `to` without awaiting a read. */
export function copiesSync(from: DeviceName, to: DeviceName): boolean {
  return from === to || readsSync(from);
}

/** The view's elements now (a contiguous copy); an OpError naming `op`, with `advice`, where its device is read asynchronously. */
export function readNow(op: string, view: View, advice: string): TypedArray {
  const backend = getBackend(view.storage.device);
  if (!backend.readSync) throw new OpError(op, `reading ${backend.name} memory is asynchronous; ${advice}`);
  return backend.readSync(view);
}

/** The backend when it is running, else null (after disposeRuntime its buffers went with the device). */
export function liveBackend(device: DeviceName): Backend | null {
  return device === 'cpu' ? cpu : gpu;
}

/** Creates the Dawn device on demand when it was skipped at import (DAWNGRAD_DEVICE=cpu). */
export async function initWebGpu(): Promise<void> {
  if (!gpu) await initGpu();
  if (gpuError) throw gpuError;
}

export function gpuRuntime(): GpuRuntime | null {
  return gpu?.rt ?? null;
}

/** The webgpu backend, when it was created. */
export function gpuBackend(): WebGpuBackend | null {
  return gpu;
}

/** The device of new tensors: config().device (DAWNGRAD_DEVICE, configure, setDefaultDevice). */
export function getDefaultDevice(): DeviceName {
  return config().device;
}

export function setDefaultDevice(device: DeviceName): void {
  configure({ device: checkDevice('setDefaultDevice', device) });
}

export type { DeviceInfo };

/** What the default device is and, on webgpu, which adapter and limits are in use. */
export function deviceInfo(): DeviceInfo | { backend: 'cpu'; webgpuError?: string } {
  if (config().device === 'webgpu' && gpu) return gpu.rt.info;
  return gpuError ? { backend: 'cpu', webgpuError: gpuError.message } : { backend: 'cpu' };
}

/** Returns every pooled (free) GPU buffer to the driver; live tensors are untouched. */
export function emptyCache(): void {
  gpu?.rt.emptyCache();
}

/** Releases the GPU (pool, device) so Node can exit; the next webgpu op fails until initWebGpu(). */
export function disposeRuntime(): void {
  gpu?.rt.destroy();
  gpu = null;
  gpuError = new Error('webgpu: the runtime was disposed; call `await initWebGpu()` to create it again');
}
