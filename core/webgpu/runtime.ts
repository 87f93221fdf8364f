// Dawn device, buffer pool, uniform arena and the command queue: many dispatches per submit,
// flushed only when data is read (or the arena fills).
import { create, globals } from 'webgpu';
import { stats, trackAlloc, trackFree } from '../stats.js';

Object.assign(globalThis, globals);

export const PARAM_WORDS = 64; // u32 words of uniforms per dispatch (256 bytes, the offset alignment)
const ARENA_SLOTS = 2048;

export interface DeviceInfo {
  backend: 'webgpu';
  adapter: string;
  vendor: string;
  architecture: string;
  limits: { maxStorageBufferBindingSize: number; maxComputeWorkgroupsPerDimension: number; maxComputeInvocationsPerWorkgroup: number; maxStorageBuffersPerShaderStage: number };
}

interface PooledBuffer {
  buffer: GPUBuffer;
  bytes: number;
  /** Batch in which it was last released; uploads must not reuse a buffer still read by unsubmitted work. */
  releasedInBatch: number;
}

export class GpuRuntime {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly arena: GPUBuffer;
  private readonly arenaData = new Uint32Array(ARENA_SLOTS * PARAM_WORDS);
  private arenaUsed = 0;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pool = new Map<number, PooledBuffer[]>();
  private batch = 1;
  private pendingError: Error | null = null;
  /** Pooled (free) bytes kept for reuse before trimming; DAWNGRAD_POOL_LIMIT_MB, default 1024. */
  readonly poolLimit = Number(process.env.DAWNGRAD_POOL_LIMIT_MB ?? 1024) * 2 ** 20;
  private currentOp = '';

  /** `gpu` (the Dawn instance) must stay referenced: if it is collected, pending maps never resolve. */
  constructor(readonly gpu: GPU, readonly device: GPUDevice, readonly info: DeviceInfo) {
    this.arena = device.createBuffer({ size: ARENA_SLOTS * PARAM_WORDS * 4, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'dawngrad-uniforms' });
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.pendingError ??= new Error(`WebGPU error in op '${this.currentOp}': ${e.message}`);
    });
  }

  /** Size classes: powers of two and 1.5× powers of two, at least 256 bytes. */
  static sizeClass(bytes: number): number {
    let c = 256;
    while (c < bytes) {
      if (c * 1.5 >= bytes && Number.isInteger(c * 1.5)) return c * 1.5;
      c *= 2;
    }
    return c;
  }

  acquire(bytes: number, forUpload = false): GPUBuffer {
    const size = GpuRuntime.sizeClass(bytes);
    if (size > this.info.limits.maxStorageBufferBindingSize) {
      throw new Error(`webgpu: a buffer of ${bytes} bytes exceeds this adapter's maxStorageBufferBindingSize (${this.info.limits.maxStorageBufferBindingSize}); use smaller tensors or device 'cpu'`);
    }
    const free = this.pool.get(size);
    if (free && free.length) {
      const i = forUpload ? free.findIndex((b) => b.releasedInBatch < this.batch) : free.length - 1;
      if (i >= 0) {
        const [b] = free.splice(i, 1);
        stats.pooledBytes -= size;
        trackAlloc(size);
        return b.buffer;
      }
    }
    trackAlloc(size);
    return this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  }

  /** Returns a buffer to the pool. Reuse within the same batch is safe for dispatches (queue order). */
  releaseBuffer(buffer: GPUBuffer): void {
    const size = buffer.size;
    trackFree(size);
    stats.pooledBytes += size;
    let list = this.pool.get(size);
    if (!list) this.pool.set(size, (list = []));
    list.push({ buffer, bytes: size, releasedInBatch: this.batch });
  }

  /**
   * Frees pooled buffers back to the driver, largest size classes first, until at most `keepBytes` stay
   * pooled. Only called with no unsubmitted commands (destroy is safe for work already submitted).
   */
  trimPool(keepBytes = 0): void {
    const sizes = [...this.pool.keys()].sort((a, b) => b - a);
    for (const size of sizes) {
      const list = this.pool.get(size)!;
      while (list.length && stats.pooledBytes > keepBytes) {
        list.pop()!.buffer.destroy();
        stats.pooledBytes -= size;
      }
      if (!list.length) this.pool.delete(size);
    }
  }

  upload(buffer: GPUBuffer, data: ArrayBufferView): void {
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  pipeline(key: string, source: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      this.currentOp = key;
      const code = source();
      const module = this.device.createShaderModule({ code, label: key });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
      this.throwPending(); // Dawn reports shader errors synchronously: raise them at the op call.
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Records one dispatch: binding 0 is the uniform params slot, then `buffers` in order
   * (the kernel declares which are read-only). `groups` is [x, y, z] workgroups.
   */
  dispatch(op: string, pipeline: GPUComputePipeline, params: Uint32Array, buffers: GPUBuffer[], groups: [number, number, number]): void {
    if (groups[0] * groups[1] * groups[2] === 0) return;
    if (this.arenaUsed === ARENA_SLOTS) this.flush();
    const slot = this.arenaUsed++;
    this.arenaData.set(params.subarray(0, PARAM_WORDS), slot * PARAM_WORDS);
    this.currentOp = op;
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.arena, offset: slot * PARAM_WORDS * 4, size: PARAM_WORDS * 4 } }];
    buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer } }));
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: op });
    if (!this.pass) {
      this.encoder = this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    stats.dispatches++;
  }

  /** Records a buffer copy (ends the current compute pass). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.pass?.end();
    this.pass = null;
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.arenaUsed) this.device.queue.writeBuffer(this.arena, 0, this.arenaData.buffer, 0, this.arenaUsed * PARAM_WORDS * 4);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.arenaUsed = 0;
    this.batch++;
    stats.submits++;
    // Keep the pool bounded: past the limit, give half of it back to the driver.
    if (stats.pooledBytes > this.poolLimit) this.trimPool(this.poolLimit / 2);
    this.throwPending();
  }

  throwPending(): void {
    if (this.pendingError) {
      const e = this.pendingError;
      this.pendingError = null;
      throw e;
    }
  }

  /** Copies `bytes` from `src` at `offset` to the host (flushes the queue). */
  async read(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.copy(src, offset, staging, 0, size);
    this.flush();
    stats.readbacks++;
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    this.throwPending();
    return out;
  }

  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwPending();
  }

  /** Submits pending work and frees every pooled buffer (like torch.cuda.empty_cache). */
  emptyCache(): void {
    this.flush();
    this.trimPool(0);
  }

  destroy(): void {
    this.flush();
    this.trimPool(0);
    this.arena.destroy();
    this.device.destroy();
  }
}

export class NoAdapterError extends Error {}

const setupHint = "run `bash scripts/setup.sh` (installs Mesa's lavapipe Vulkan driver on Debian 12), or use the CPU backend: DAWNGRAD_DEVICE=cpu or { device: 'cpu' }";

/** Creates the Dawn instance, adapter and device. Options come from DAWNGRAD_ADAPTER / DAWNGRAD_BACKEND. */
export async function createRuntime(env: NodeJS.ProcessEnv = process.env): Promise<GpuRuntime> {
  const flags: string[] = [];
  if (env.DAWNGRAD_ADAPTER) flags.push(`adapter=${env.DAWNGRAD_ADAPTER}`);
  if (env.DAWNGRAD_BACKEND) flags.push(`backend=${env.DAWNGRAD_BACKEND}`);
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = create(flags);
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    throw new NoAdapterError(`webgpu: Dawn found no WebGPU adapter (flags: ${flags.join(' ') || 'none'}: ${(e as Error).message}); ${setupHint}`);
  }
  if (!adapter) throw new NoAdapterError(`webgpu: Dawn found no WebGPU adapter (flags: ${flags.join(' ') || 'none'}); ${setupHint}`);
  const L = adapter.limits;
  const requiredLimits = {
    maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
    maxBufferSize: L.maxBufferSize,
    maxComputeInvocationsPerWorkgroup: Math.min(L.maxComputeInvocationsPerWorkgroup, 1024),
    maxComputeWorkgroupSizeX: Math.min(L.maxComputeWorkgroupSizeX, 1024),
    maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
    maxStorageBuffersPerShaderStage: Math.min(L.maxStorageBuffersPerShaderStage, 10),
  };
  const device = await adapter.requestDevice({ requiredLimits });
  const i = adapter.info;
  return new GpuRuntime(gpu, device, {
    backend: 'webgpu',
    adapter: i.description || i.device || 'unknown',
    vendor: i.vendor,
    architecture: i.architecture,
    limits: {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    },
  });
}
