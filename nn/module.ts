// Module and Parameter. Registration is explicit and ordered: a subclass calls
// `this.weight = this.param('weight', t)` and `this.q_proj = this.module('q_proj', m)` in its
// constructor; names join with dots into HF-style keys (`layers.0.self_attn.q_proj.weight`).
import type { DeviceName } from '../core/backend.js';
import { alias, noGrad } from '../core/autograd.js';
import { checkDevice, copiesSync, getBackend } from '../core/device.js';
import { checkDType, isFloat, type DType } from '../core/dtype.js';
import { untrackTensor } from '../core/scope.js';
import { OpError, sameShape, shapeStr } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';
import { copyInto } from './inplace.js';
import { argObject } from '../core/args.js';

/**
 * A trainable leaf: a contiguous tensor with its own storage that requires grad. Optimizers update
 * its storage in place, which is why views and shared storages are copied first.
 */
export function Parameter(t: Tensor, opts: { requiresGrad?: boolean } = {}): Tensor {
  t.assertAlive('Parameter');
  if (t.dtype === 'int32') throw new OpError('Parameter', 'parameters must be float tensors, got int32');
  const dense = t.isContiguous() && t.offset === 0 && t.storage.length === t.size;
  // A dense leaf is used as is (like torch, the parameter shares the tensor's data).
  const p = !dense ? noGrad(() => t.clone()) : t.isLeaf ? t : alias(t);
  p.requiresGrad = opts.requiresGrad ?? true;
  return p;
}

/**
 * What a parameter is for, declared by the module that registers it: optimizer groups and initialisers
 * choose by it (no weight decay on biases and norm gains, say) instead of by the parameter's name.
 */
export type ParameterRole = 'weight' | 'bias' | 'norm' | 'embedding';

export type StateDict = Record<string, Tensor>;

export interface LoadStateDictOptions {
  /** When true (default), missing and unexpected keys are errors; shape mismatches always are. */
  strict?: boolean;
}

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

interface BufferEntry {
  tensor: Tensor;
  persistent: boolean;
}

/**
 * Base class of layers and models. Parameters, buffers (non-trainable state such as caches) and
 * submodules are registered by name in declaration order. Modules own their tensors: they are kept
 * out of enclosing scopes and freed by dispose().
 */
/**
 * Any module, whatever its forward's signature (a container's children, a checkpoint's model). `any`
 * because forward's parameters make Module<In, Out> contravariant in In: no narrower type admits them all.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyModule = Module<any, any>;

/** What module.to() takes besides a device name: a device, a float dtype, or both. */
export interface ModuleToOptions {
  device?: DeviceName;
  /** The dtype floating parameters and buffers take (int32 tensors keep theirs). */
  dtype?: DType;
}

export abstract class Module<In extends unknown[] = [Tensor], Out = Tensor> {
  training = true;
  /**
   * When true, this module's tensors (and its submodules') keep their dtype through half(), float() and
   * to({ dtype }), as Hugging Face's _keep_in_fp32_modules: for numerics that need float32 (CLEX's ODE).
   */
  keepsDtype = false;
  private readonly _params = new Map<string, Tensor>();
  private readonly _roles = new Map<string, ParameterRole>();
  private readonly _buffers = new Map<string, BufferEntry>();
  private readonly _modules = new Map<string, AnyModule>();

  abstract forward(...args: In): Out;

  /** Runs forward (the place for hooks later); `m.call(x)` reads like PyTorch's `m(x)`. */
  call(...args: In): Out {
    return this.forward(...args);
  }

  /** Registers a parameter (made a Parameter if it is not one) in its role (default 'weight') and returns it. */
  protected param(name: string, t: Tensor, opts: { requiresGrad?: boolean; role?: ParameterRole } = {}): Tensor {
    this.checkName(name);
    const p = Parameter(t, opts);
    untrackTensor(p);
    this._params.set(name, p);
    this._roles.set(name, opts.role ?? 'weight');
    return p;
  }

  /** Registers a buffer: moved by to(), saved in stateDict when persistent, not trained. */
  protected buffer(name: string, t: Tensor, opts: { persistent?: boolean } = {}): Tensor {
    this.checkName(name);
    untrackTensor(t);
    this._buffers.set(name, { tensor: t, persistent: opts.persistent ?? true });
    return t;
  }

  /** Registers a submodule and returns it. */
  protected module<M extends AnyModule>(name: string, m: M): M {
    this.checkName(name);
    if (!(m instanceof Module)) throw new OpError('Module.module', `'${name}' is not a Module`);
    this._modules.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (!name || name.includes('.'))
      throw new OpError('Module', `invalid name '${name}': names must be non-empty and contain no '.'`);
    if (this._params.has(name) || this._buffers.has(name) || this._modules.has(name)) {
      throw new OpError('Module', `'${name}' is already registered in ${this.constructor.name}`);
    }
  }

  /** Direct children, in registration order. */
  children(): AnyModule[] {
    return [...this._modules.values()];
  }

  /** This module and all submodules with dotted names ('' for this one). */
  *namedModules(prefix = ''): Generator<[string, AnyModule]> {
    yield [prefix, this];
    for (const [name, m] of this._modules) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  /** Parameters with dotted names; a tensor shared by two modules is listed once (first name). */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, p] of m._params) {
        if (seen.has(p)) continue;
        seen.add(p);
        out.push([prefix ? `${prefix}.${name}` : name, p]);
      }
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Every parameter with the role its module declared, in namedParameters order (a shared one under its first name). */
  parameterRoles(): Map<Tensor, ParameterRole> {
    const roles = new Map<Tensor, ParameterRole>();
    for (const [, m] of this.namedModules()) {
      for (const [name, p] of m._params) if (!roles.has(p)) roles.set(p, m._roles.get(name) as ParameterRole);
    }
    return roles;
  }

  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, b] of m._buffers) out.push([prefix ? `${prefix}.${name}` : name, b.tensor]);
    }
    return out;
  }

  numParameters(opts: { trainableOnly?: boolean } = {}): number {
    return this.parameters()
      .filter((p) => !opts.trainableOnly || p.requiresGrad)
      .reduce((n, p) => n + p.size, 0);
  }

  /** Sets training mode here and in every submodule (Dropout etc. read `training`). */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Drops every parameter's gradient (set to null, as PyTorch's default set_to_none). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /**
   * Parameters and persistent buffers by dotted name. The tensors are the module's own (not copies):
   * read them, do not dispose them.
   */
  stateDict(): StateDict {
    const sd: StateDict = {};
    for (const [prefix, m] of this.namedModules()) {
      const key = (n: string) => (prefix ? `${prefix}.${n}` : n);
      for (const [name, p] of m._params) sd[key(name)] = p;
      for (const [name, b] of m._buffers) if (b.persistent) sd[key(name)] = b.tensor;
    }
    return sd;
  }

  /**
   * Copies values into the registered tensors in place (optimizers holding them stay valid).
   * Everything is checked before anything is written, so a failed load changes nothing.
   */
  loadStateDict(sd: StateDict, opts: LoadStateDictOptions = {}): LoadStateDictResult {
    argObject(`${this.constructor.name}.loadStateDict`, 'stateDict', sd);
    const strict = opts.strict ?? true;
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !(k in sd));
    const unexpectedKeys = Object.keys(sd).filter((k) => !(k in own));
    const wrongShape = Object.keys(own)
      .filter((k) => k in sd && !sameShape(own[k].shape, sd[k].shape))
      .map((k) => `${k}: checkpoint ${shapeStr(sd[k].shape)} vs model ${shapeStr(own[k].shape)}`);
    const wrongDevice = Object.keys(own)
      .filter((k) => k in sd && !copiesSync(sd[k].device, own[k].device))
      .map((k) => `${k} (${sd[k].device} → ${own[k].device})`);
    const problems: string[] = [];
    if (strict && missingKeys.length) problems.push(`missing keys: ${missingKeys.join(', ')}`);
    if (strict && unexpectedKeys.length) problems.push(`unexpected keys: ${unexpectedKeys.join(', ')}`);
    if (wrongShape.length) problems.push(`wrong shapes: ${wrongShape.join('; ')}`);
    if (wrongDevice.length)
      problems.push(
        `tensors read asynchronously, for parameters on another device (move them there with toAsync(device) first): ${wrongDevice.join(', ')}`,
      );
    if (problems.length) throw new OpError('loadStateDict', `${this.constructor.name}: ${problems.join(' | ')}`);
    noGrad(() => {
      for (const k of Object.keys(own)) if (k in sd) copyInto('loadStateDict', own[k], sd[k]);
    });
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Moves parameters and buffers to `device` (cpu → webgpu is synchronous; for webgpu → cpu use
   * toAsync). Tensors are replaced: any property of a module holding the old tensor is updated too,
   * but an optimizer created before must be created again.
   *
   * With `{ dtype }` (as torch's module.to(dtype=…)), floating parameters, their gradients and floating
   * buffers are converted in place: the same tensor objects, requiresGrad kept, int32 tensors untouched,
   * modules with keepsDtype skipped. An optimizer's state keeps its dtype; create optimizers after.
   */
  to(target: DeviceName | ModuleToOptions): this {
    const op = `${this.constructor.name}.to`;
    if (typeof target === 'string') return this.moveAll(checkDevice(op, target), (t) => t.to(target)) as this;
    argObject(op, 'target', target);
    const { device, dtype, ...rest } = target;
    const unknown = Object.keys(rest);
    if (unknown.length)
      throw new OpError(op, `unknown option '${unknown[0]}'; module.to() takes a device name or { device, dtype }`);
    if (device !== undefined) this.to(device);
    if (dtype !== undefined) this.convertFloats(op, checkDType(op, dtype));
    return this;
  }

  /** Floating parameters and buffers to float16, in place (see to({ dtype })); returns this module. */
  half(): this {
    return this.to({ dtype: 'float16' });
  }

  /** Floating parameters and buffers to float32, in place (see to({ dtype })); returns this module. */
  float(): this {
    return this.to({ dtype: 'float32' });
  }

  private convertFloats(op: string, dtype: DType): void {
    if (!isFloat(dtype))
      throw new OpError(op, `dtype must be a float dtype (float16, float32, float64), got '${dtype}'`);
    const kept = new Set<AnyModule>();
    for (const [, m] of this.namedModules()) if (m.keepsDtype) for (const [, sub] of m.namedModules()) kept.add(sub);
    const converted = new Set<Tensor>();
    const convert = (t: Tensor | null): void => {
      if (!t || converted.has(t) || !isFloat(t.dtype) || t.dtype === dtype) return;
      converted.add(t);
      const cast = noGrad(() => t.astype(dtype));
      getBackend(cast.device).materialize(cast.storage); // a long-lived result: compute it now
      t.setData(cast);
      cast.dispose();
    };
    for (const [, m] of this.namedModules()) {
      if (kept.has(m)) continue;
      for (const p of m._params.values()) {
        convert(p);
        convert(p.grad);
      }
      for (const b of m._buffers.values()) convert(b.tensor);
    }
  }

  async toAsync(device: DeviceName): Promise<this> {
    const moved = new Map<Tensor, Tensor>();
    for (const t of this.allTensors()) if (t.device !== device) moved.set(t, await t.toAsync(device));
    return this.moveAll(device, (t) => moved.get(t) as Tensor) as this;
  }

  private allTensors(): Tensor[] {
    const out = new Set<Tensor>();
    for (const [, m] of this.namedModules()) {
      m._params.forEach((p) => out.add(p));
      m._buffers.forEach((b) => out.add(b.tensor));
    }
    return [...out];
  }

  private moveAll(device: DeviceName, move: (t: Tensor) => Tensor): this {
    const replaced = new Map<Tensor, Tensor>();
    const swap = (t: Tensor): Tensor => {
      if (t.device === device) return t;
      let n = replaced.get(t);
      if (!n) {
        n = move(t);
        n.requiresGrad = t.requiresGrad;
        untrackTensor(n);
        replaced.set(t, n);
      }
      return n;
    };
    for (const [, m] of this.namedModules()) {
      for (const [name, p] of m._params) m._params.set(name, swap(p));
      for (const b of m._buffers.values()) b.tensor = swap(b.tensor);
      // Keep fields that point at registered tensors in step with the registry.
      const fields = m as unknown as Record<string, unknown>;
      for (const key of Object.keys(fields)) {
        const v = fields[key];
        if (v instanceof Tensor && replaced.has(v)) fields[key] = replaced.get(v);
      }
    }
    for (const old of replaced.keys()) old.dispose();
    return this;
  }

  /** Frees every parameter and buffer of this module tree. */
  dispose(): void {
    for (const t of this.allTensors()) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
