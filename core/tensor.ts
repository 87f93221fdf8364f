// The Tensor: a strided view on a reference-counted storage, plus its autograd links.
// Op methods are attached by the ops/ modules (one file per op family); core itself never calls them
// (it uses core/primitives.ts), so the engine works before any ops module has loaded.
import type { DeviceName, Storage, View } from './backend.js';
import { config } from './config.js';
import { getBackend, liveBackend } from './device.js';
import type { DType, TypedArray } from './dtype.js';
import type { Node } from './node.js';
import { raisePendingAnomalies } from './pending-anomalies.js';
import { trackTensor, untrackTensor } from './scope.js';
import { contiguousStrides, numel, OpError, shapeStr } from './shape.js';
import { stats } from './stats.js';

export type NestedArray = number | NestedArray[];

export function retainStorage(s: Storage): void {
  s.refs++;
}

export function releaseStorage(s: Storage): void {
  // A tensor collected after disposeRuntime() has nothing left to free: its buffer went with the device.
  if (--s.refs === 0) liveBackend(s.device)?.release(s);
}

let leakWarned = false;
/** A tensor collected without dispose() frees its storage here (see core/reclaim.ts); says so once. */
const leakRegistry = new FinalizationRegistry<{ storage: Storage; node: Node | null }>(({ storage, node }) => {
  stats.liveTensors--;
  releaseStorage(storage);
  node?.release();
  if (!leakWarned && !config().silenceLeaks) {
    leakWarned = true;
    console.warn(
      'dawngrad: tensors are being freed by the garbage collector (no scope/dispose); memory stays bounded, but scope() frees GPU memory sooner and cheaper (DAWNGRAD_SILENCE_LEAKS=1 hides this note)',
    );
  }
});

export class Tensor implements View {
  requiresGrad = false;
  /** The node that produced this tensor (null for leaves and tensors made without grad). */
  gradFn: Node | null = null;
  private _grad: Tensor | null = null;
  private _disposed = false;
  private _storage: Storage;
  private _strides: readonly number[];
  private _offset: number;

  constructor(
    storage: Storage,
    readonly shape: readonly number[],
    strides: readonly number[] = contiguousStrides(shape),
    offset = 0,
  ) {
    this._storage = storage;
    this._strides = strides;
    this._offset = offset;
    retainStorage(storage);
    stats.liveTensors++;
    trackTensor(this);
    leakRegistry.register(this, { storage, node: null }, this);
  }

  get storage(): Storage {
    return this._storage;
  }
  get strides(): readonly number[] {
    return this._strides;
  }
  get offset(): number {
    return this._offset;
  }

  /**
   * Makes this leaf view `source`'s data instead of its own (same shape; dtype may differ), as torch's
   * `p.data = …`: module.half() converts parameters in place this way, so every holder of the tensor
   * (modules, fields, user code) sees the new dtype. Views taken before keep the old data.
   */
  setData(source: Tensor): void {
    this.assertAlive('setData');
    source.assertAlive('setData');
    if (!this.isLeaf) throw new OpError('setData', 'only a leaf tensor (a parameter or buffer) can take new data');
    if (this.shape.length !== source.shape.length || this.shape.some((d, i) => d !== source.shape[i]))
      throw new OpError('setData', `shape ${shapeStr(source.shape)} does not match ${shapeStr(this.shape)}`);
    const old = this._storage;
    retainStorage(source.storage);
    this._storage = source.storage;
    this._strides = source.strides;
    this._offset = source.offset;
    leakRegistry.unregister(this);
    leakRegistry.register(this, { storage: this._storage, node: null }, this);
    releaseStorage(old);
  }

  get dtype(): DType {
    return this.storage.dtype;
  }

  get device(): DeviceName {
    return this.storage.device;
  }

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return numel(this.shape);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  isContiguous(): boolean {
    const c = contiguousStrides(this.shape);
    return this.shape.every((d, i) => d === 1 || this.strides[i] === c[i]);
  }

  /** Accumulated gradient of a leaf; owned by the tensor (not freed by enclosing scopes). */
  get grad(): Tensor | null {
    return this._grad;
  }

  set grad(g: Tensor | null) {
    if (g === this._grad) return;
    this._grad?.dispose();
    if (g) untrackTensor(g);
    this._grad = g;
  }

  /** Links this tensor to the node that made it (called by the autograd recorder). */
  setGradFn(node: Node): void {
    this.gradFn = node;
    this.requiresGrad = true;
    node.retain();
    leakRegistry.unregister(this);
    leakRegistry.register(this, { storage: this._storage, node }, this);
  }

  assertAlive(op: string): void {
    if (this._disposed)
      throw new OpError(op, `tensor ${shapeStr(this.shape)} (${this.dtype}, ${this.device}) was already disposed`);
  }

  /** Frees this tensor's hold on its storage and graph now (idempotent). */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    leakRegistry.unregister(this);
    untrackTensor(this);
    stats.liveTensors--;
    releaseStorage(this.storage);
    this.gradFn?.release();
    this._grad?.dispose();
    this._grad = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Elements as a flat TypedArray (Float32Array/Float64Array/Int32Array); flushes queued GPU work. */
  async data(): Promise<TypedArray> {
    this.assertAlive('data');
    await raisePendingAnomalies();
    return getBackend(this.device).read(this);
  }

  /** Elements as nested JS arrays (a number for a 0-d tensor). */
  async toArray(): Promise<NestedArray> {
    const flat = await this.data();
    const build = (dim: number, start: number): NestedArray => {
      if (dim === this.shape.length) return flat[start];
      const inner = numel(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim] }, (_, i) => build(dim + 1, start + i * inner));
    };
    return build(0, 0);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1)
      throw new OpError(
        'item',
        `only one-element tensors can be converted to a number, got shape ${shapeStr(this.shape)}`,
      );
    return (await this.data())[0];
  }

  toString(): string {
    return `Tensor(shape=${shapeStr(this.shape)}, dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
