// Dawn device, buffer pool, uniform arena and the command queue: many dispatches per submit,
// flushed only when data is read (or the arena fills).
//
// Bounded queue. Dawn frees finished work (and Node runs the finalizers of native wrappers) only when
// the event loop turns, which a loop whose awaits are all resolved promises never does. So:
// - bind groups are cached and reused (explicit layouts with a dynamic-offset uniform slot), so a
//   dispatch allocates no native object: a synchronous loop grows only by Dawn's recorded commands;
// - every submit is tracked with onSubmittedWorkDone, and the framework's async boundaries
//   (async scopes, backwardAsync, model forwards) call settleBacklog(), which yields to the event
//   loop until at most MAX_IN_FLIGHT submits are unfinished.
import { create, globals } from 'webgpu';
import { config, OPTIONAL_FEATURES, type Config } from '../config.js';
import { beforeDeviceAlloc } from '../reclaim.js';
import { stats, trackAlloc, trackFree } from '../stats.js';

Object.assign(globalThis, globals);

export const PARAM_WORDS = 64; // u32 words of uniforms per dispatch (256 bytes, the offset alignment)
const ARENA_SLOTS = 2048;
/** Submitted-but-unfinished batches allowed before settleBacklog() waits (keeps the GPU fed meanwhile). */
const MAX_IN_FLIGHT = 3;
/** Cached bind groups kept (least recently used dropped first). */
const BIND_GROUP_CACHE = 4096;

export interface DeviceInfo {
  backend: 'webgpu';
  adapter: string;
  vendor: string;
  architecture: string;
  /** The optional WebGPU features dawngrad enabled on the device (of those it uses: OPTIONAL_FEATURES). */
  features: string[];
  /** Invocations per subgroup (min, max) when 'subgroups' is enabled. */
  subgroupSize: { min: number; max: number } | null;
  limits: {
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupsPerDimension: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBuffersPerShaderStage: number;
  };
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
  get poolLimit(): number {
    return config().poolLimitMB * 2 ** 20;
  }
  private currentOp = '';
  /** Bind group layouts by binding signature ('u' + one 'r'/'w' per storage binding). */
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly layoutOf = new WeakMap<GPUComputePipeline, { layout: GPUBindGroupLayout; signature: string }>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  /** Resolves when the n-th oldest unfinished submit is done; one entry per unfinished submit. */
  private readonly inFlight: Promise<void>[] = [];
  private lost: string | null = null;

  /** `gpu` (the Dawn instance) must stay referenced: if it is collected, pending maps never resolve. */
  constructor(
    readonly gpu: GPU,
    readonly device: GPUDevice,
    readonly info: DeviceInfo,
  ) {
    this.arena = device.createBuffer({
      size: ARENA_SLOTS * PARAM_WORDS * 4,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'dawngrad-uniforms',
    });
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      const kind = e instanceof GPUOutOfMemoryError ? 'out of GPU memory' : 'WebGPU error';
      const hint =
        e instanceof GPUOutOfMemoryError
          ? '; free tensors (scope/dispose), call emptyCache(), or use smaller shapes'
          : '';
      this.pendingError ??= new Error(
        `webgpu: ${kind} in op '${this.currentOp}': ${e.message} (adapter '${info.adapter}')${hint}`,
      );
    });
    void device.lost.then((lost) => {
      // destroy() of our own (process exit, tests) is not an error anyone should see.
      this.lost = `${lost.reason}: ${lost.message || 'no message'}`;
    });
  }

  /** Raises if the device was lost: every later op or read says so instead of crashing in Dawn. */
  private checkAlive(op: string): void {
    if (this.lost !== null) {
      throw new Error(
        `webgpu: the device on adapter '${this.info.adapter}' was lost (${this.lost}); op '${op}' cannot run. Tensors on it are gone: restart the process (or use device 'cpu')`,
      );
    }
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
    this.checkAlive('alloc');
    const size = GpuRuntime.sizeClass(bytes);
    beforeDeviceAlloc(size);
    if (size > this.info.limits.maxStorageBufferBindingSize) {
      throw new Error(
        `webgpu: a buffer of ${bytes} bytes exceeds this adapter's maxStorageBufferBindingSize (${this.info.limits.maxStorageBufferBindingSize}); use smaller tensors or device 'cpu'`,
      );
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
    return this.device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
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
    const destroyed = new Set<number>();
    for (const size of sizes) {
      const list = this.pool.get(size)!;
      while (list.length && stats.pooledBytes > keepBytes) {
        const { buffer } = list.pop()!;
        const id = this.bufferIds.get(buffer);
        if (id !== undefined) destroyed.add(id);
        buffer.destroy();
        stats.pooledBytes -= size;
      }
      if (!list.length) this.pool.delete(size);
    }
    this.forgetBindGroups(destroyed);
  }

  upload(buffer: GPUBuffer, data: ArrayBufferView): void {
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  pipeline(key: string, source: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      this.checkAlive(key);
      this.currentOp = key;
      const text = source();
      // half floats must be enabled in each shader that names them
      const code = /\bf16\b/.test(text) ? `enable f16;\n${text}` : text;
      const signature = bindingSignature(code, key);
      const layout = this.bindGroupLayout(signature);
      const module = this.device.createShaderModule({ code, label: key });
      p = this.device.createComputePipeline({
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: 'main' },
        label: key,
      });
      this.throwPending(); // Dawn reports shader errors synchronously: raise them at the op call.
      this.pipelines.set(key, p);
      this.layoutOf.set(p, { layout, signature });
    }
    return p;
  }

  /** One layout per binding signature, so kernels with the same bindings share bind groups. */
  private bindGroupLayout(signature: string): GPUBindGroupLayout {
    let layout = this.layouts.get(signature);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [...signature].map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer:
          kind === 'u'
            ? { type: 'uniform', hasDynamicOffset: true }
            : { type: kind === 'r' ? 'read-only-storage' : 'storage' },
      }));
      layout = this.device.createBindGroupLayout({ entries, label: `dawngrad-${signature}` });
      this.layouts.set(signature, layout);
    }
    return layout;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) this.bufferIds.set(buffer, (id = this.nextBufferId++));
    return id;
  }

  /** The cached bind group for (layout, buffers); the params slot is chosen by a dynamic offset. */
  private bindGroup(op: string, pipeline: GPUComputePipeline, buffers: GPUBuffer[]): GPUBindGroup {
    const { layout, signature } = this.layoutOf.get(pipeline)!;
    let key = signature;
    for (const b of buffers) key += `:${this.bufferId(b)}`;
    let group = this.bindGroups.get(key);
    if (group) {
      this.bindGroups.delete(key); // re-insert: Map order is the LRU order
    } else {
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: this.arena, offset: 0, size: PARAM_WORDS * 4 } },
      ];
      buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer } }));
      group = this.device.createBindGroup({ layout, entries, label: op });
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.delete(this.bindGroups.keys().next().value!);
    }
    this.bindGroups.set(key, group);
    return group;
  }

  /** Drops cached bind groups that reference any of the destroyed buffers (one pass over the cache). */
  private forgetBindGroups(destroyedIds: ReadonlySet<number>): void {
    if (!destroyedIds.size) return;
    for (const key of this.bindGroups.keys()) {
      if (
        key
          .split(':')
          .slice(1)
          .some((id) => destroyedIds.has(Number(id)))
      )
        this.bindGroups.delete(key);
    }
  }

  /**
   * CPU emulations of WebGPU (lavapipe/llvmpipe, SwiftShader): barriers and shared memory are
   * expensive there, so kernels that have variants pick the barrier-free ones. config().profile
   * overrides what the adapter's name says.
   */
  /** Whether an optional feature is enabled on the device and not turned off by config().disableFeatures. */
  hasFeature(name: string): boolean {
    return this.info.features.includes(name) && !config().disableFeatures.includes(name);
  }

  get isSoftware(): boolean {
    const profile = config().profile;
    if (profile !== 'auto') return profile === 'software';
    return this.info.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(this.info.adapter);
  }

  /** The kernel `key`'s binding kinds (see bindingSignature), compiling it once. */
  bindingKinds(key: string, source: () => string): string {
    return this.layoutOf.get(this.pipeline(key, source))!.signature;
  }

  /**
   * Records one dispatch: binding 0 is the uniform params slot, then `buffers` in order
   * (the kernel declares which are read-only). `groups` is [x, y, z] workgroups.
   */
  dispatch(
    op: string,
    pipeline: GPUComputePipeline,
    params: Uint32Array,
    buffers: GPUBuffer[],
    groups: [number, number, number],
  ): void {
    if (groups[0] * groups[1] * groups[2] === 0) return;
    this.checkAlive(op);
    if (this.arenaUsed === ARENA_SLOTS) this.flush();
    const slot = this.arenaUsed++;
    this.arenaData.set(params.subarray(0, PARAM_WORDS), slot * PARAM_WORDS);
    this.currentOp = op;
    const bindGroup = this.bindGroup(op, pipeline, buffers);
    if (!this.pass) {
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup, [slot * PARAM_WORDS * 4]);
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

  /**
   * Records what `run` dispatches in a compute pass of its own between two GPU timestamps, submits, and
   * resolves to that pass's GPU time in ms once the GPU has run it, without blocking; null without the
   * 'timestamp-query' feature (autotuning times its candidates this way). NaN when `run` could not stay
   * in one pass (a buffer copy ends it): such work cannot be timed this way.
   */
  timePass(run: () => void): Promise<number> | null {
    if (!this.device.features.has('timestamp-query')) return null;
    if (this.arenaUsed > ARENA_SLOTS - 64) this.flush(); // so no flush ends the timed pass early
    this.encoder ??= this.device.createCommandEncoder();
    this.pass?.end();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 });
    const timed = this.encoder.beginComputePass({
      timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
    this.pass = timed;
    run();
    const split = this.pass !== timed;
    this.pass?.end();
    this.pass = null;
    const usage = GPUBufferUsage;
    const resolved = this.device.createBuffer({ size: 16, usage: usage.QUERY_RESOLVE | usage.COPY_SRC });
    const readback = this.device.createBuffer({ size: 16, usage: usage.MAP_READ | usage.COPY_DST });
    this.encoder ??= this.device.createCommandEncoder();
    this.encoder.resolveQuerySet(querySet, 0, 2, resolved, 0);
    this.encoder.copyBufferToBuffer(resolved, 0, readback, 0, 16);
    this.flush();
    const release = () => [querySet, resolved, readback].forEach((r) => r.destroy());
    return readback.mapAsync(GPUMapMode.READ).then(
      () => {
        const [start, end] = new BigInt64Array(readback.getMappedRange());
        readback.unmap();
        release();
        return split ? NaN : Math.max(0, Number(end - start) / 1e6);
      },
      (e: unknown) => {
        release();
        throw e;
      },
    );
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.arenaUsed)
      this.device.queue.writeBuffer(this.arena, 0, this.arenaData.buffer, 0, this.arenaUsed * PARAM_WORDS * 4);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.arenaUsed = 0;
    this.batch++;
    stats.submits++;
    // Also makes Dawn process its events whenever the loop next turns (it polls only while a wait is pending).
    const done = this.device.queue.onSubmittedWorkDone().then(
      () => {
        this.inFlight.shift();
      },
      () => {
        this.inFlight.shift();
      },
    );
    this.inFlight.push(done);
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

  /** Submitted batches the GPU has not finished yet. */
  get unfinishedSubmits(): number {
    return this.inFlight.length;
  }

  /**
   * Null when at most MAX_IN_FLIGHT submits are unfinished; otherwise a promise that yields to the event
   * loop (Dawn then processes completions and frees finished work) until that bound holds again.
   */
  settleBacklog(): Promise<void> | null {
    if (this.inFlight.length <= MAX_IN_FLIGHT) return null;
    return this.inFlight[this.inFlight.length - MAX_IN_FLIGHT - 1].then(() => this.throwPending());
  }

  /** Copies `bytes` from `src` at `offset` to the host (flushes the queue). */
  async read(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.checkAlive('read');
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.copy(src, offset, staging, 0, size);
    this.flush();
    stats.readbacks++;
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      this.checkAlive('read');
      throw new Error(
        `webgpu: reading a result back failed on adapter '${this.info.adapter}' (last op '${this.currentOp}'): ${(e as Error).message}`,
        { cause: e },
      );
    }
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

/**
 * The binding kinds of a kernel, read from its declarations: 'u' for the params uniform (binding 0),
 * then 'r' (read-only storage) or 'w' (read_write storage) per binding, in order.
 */
export function bindingSignature(code: string, key: string): string {
  const kinds: string[] = [];
  for (const m of code.matchAll(/@binding\((\d+)\)\s*var<(uniform|storage,\s*read_write|storage,\s*read|storage)>/g)) {
    kinds[Number(m[1])] = m[2] === 'uniform' ? 'u' : m[2].endsWith('read_write') ? 'w' : 'r';
  }
  const signature = Array.from(kinds, (k) => k ?? '?').join('');
  if (!/^u[rw]*$/.test(signature))
    throw new Error(
      `webgpu: kernel '${key}' must declare binding 0 as the params uniform and bindings 1..n as storage buffers (got '${signature}')`,
    );
  return signature;
}

export class NoAdapterError extends Error {}

const setupHint =
  "run `bash scripts/setup.sh` (installs Mesa's lavapipe Vulkan driver on Debian 12), or use the CPU backend: DAWNGRAD_DEVICE=cpu or { device: 'cpu' }";

/** Creates the Dawn instance, adapter and device. Options come from DAWNGRAD_ADAPTER / DAWNGRAD_BACKEND. */
export async function createRuntime(settings: Pick<Config, 'adapter' | 'backend'>): Promise<GpuRuntime> {
  const flags: string[] = [];
  if (settings.adapter) flags.push(`adapter=${settings.adapter}`);
  if (settings.backend) flags.push(`backend=${settings.backend}`);
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const gpu = create(flags);
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    throw new NoAdapterError(
      `webgpu: Dawn found no WebGPU adapter (flags: ${flags.join(' ') || 'none'}: ${(e as Error).message}); ${setupHint}`,
    );
  }
  if (!adapter)
    throw new NoAdapterError(
      `webgpu: Dawn found no WebGPU adapter (flags: ${flags.join(' ') || 'none'}); ${setupHint}`,
    );
  const L = adapter.limits;
  const requiredLimits = {
    maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
    maxBufferSize: L.maxBufferSize,
    maxComputeInvocationsPerWorkgroup: Math.min(L.maxComputeInvocationsPerWorkgroup, 1024),
    maxComputeWorkgroupSizeX: Math.min(L.maxComputeWorkgroupSizeX, 1024),
    maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
    // All the adapter has: the multi-tensor optimizer and clip kernels bind several tensors per dispatch.
    maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
  };
  // Optional features the adapter has (subgroup reductions, GPU timestamps for autotuning, half floats).
  const requiredFeatures = OPTIONAL_FEATURES.filter(
    (f) => adapter.features.has(f) && !config().disableFeatures.includes(f),
  ) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const i = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  return new GpuRuntime(gpu, device, {
    backend: 'webgpu',
    adapter: i.description || i.device || 'unknown',
    vendor: i.vendor,
    architecture: i.architecture,
    features: requiredFeatures.filter((f) => device.features.has(f)),
    subgroupSize:
      device.features.has('subgroups') && i.subgroupMinSize
        ? { min: i.subgroupMinSize, max: i.subgroupMaxSize ?? i.subgroupMinSize }
        : null,
    limits: {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    },
  });
}
