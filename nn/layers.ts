// Standard layers and containers, built on Module and the functional forms.
import { getDefaultDevice } from '../core/device.js';
import type { DeviceName } from '../core/backend.js';
import type { DType } from '../core/dtype.js';
import { OpError, shapeStr } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { empty } from '../ops/util.js';
import * as F from './functional.js';
import * as init from './init.js';
import { Module, type AnyModule } from './module.js';
import { argNumber, argTensor } from '../core/args.js';

export interface LayerOptions {
  device?: DeviceName;
  dtype?: DType;
}

const blank = (shape: number[], opts: LayerOptions): Tensor =>
  empty(opts.device ?? getDefaultDevice(), opts.dtype ?? 'float32', shape);

/** y = x Wᵀ + b; weight [out, in], init as torch (kaiming-uniform a=√5, i.e. U(±1/√in)). */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    argNumber('Linear', 'inFeatures', inFeatures, { integer: true, min: 0 });
    argNumber('Linear', 'outFeatures', outFeatures, { integer: true, min: 0 });
    this.weight = this.param(
      'weight',
      init.kaimingUniform(blank([outFeatures, inFeatures], opts), { a: Math.sqrt(5) }),
    );
    const bound = inFeatures > 0 ? 1 / Math.sqrt(inFeatures) : 0;
    this.bias =
      (opts.bias ?? true)
        ? this.param('bias', init.uniform(blank([outFeatures], opts), -bound, bound), { role: 'bias' })
        : null;
  }

  forward(x: Tensor): Tensor {
    return F.linear(argTensor('Linear', 'input', x), this.weight, this.bias);
  }
}

/** A lookup table [num, dim] initialised N(0, 1); forward(ids int32 of any shape) → [...ids.shape, dim]. */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: LayerOptions = {},
  ) {
    super();
    argNumber('Embedding', 'numEmbeddings', numEmbeddings, { integer: true, min: 1 });
    argNumber('Embedding', 'embeddingDim', embeddingDim, { integer: true, min: 1 });
    this.weight = this.param('weight', init.normal(blank([numEmbeddings, embeddingDim], opts)), { role: 'embedding' });
  }

  forward(ids: Tensor): Tensor {
    return F.embedding(ids, this.weight);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];

  constructor(
    normalizedShape: number | readonly number[],
    readonly opts: LayerOptions & { eps?: number; elementwiseAffine?: boolean; bias?: boolean } = {},
  ) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? this.param('weight', init.ones(blank(this.normalizedShape, opts)), { role: 'norm' }) : null;
    this.bias =
      affine && (opts.bias ?? true)
        ? this.param('bias', init.zeros(blank(this.normalizedShape, opts)), { role: 'bias' })
        : null;
  }

  forward(x: Tensor): Tensor {
    const eps = this.opts.eps ?? 1e-5;
    const shape = this.normalizedShape;
    if (shape.length === 1) return F.layerNorm(x, this.weight, this.bias, eps);
    // Normalising over several trailing dims is normalising over them flattened into one.
    const k = shape.length;
    if (x.rank < k || shape.some((d, i) => x.shape[x.rank - k + i] !== d)) {
      throw new OpError(
        'LayerNorm',
        `input ${shapeStr(x.shape)} does not end with normalized shape ${shapeStr(shape)}`,
      );
    }
    const flat = x.reshape([...x.shape.slice(0, x.rank - k), -1]);
    const y = F.layerNorm(flat, this.weight?.reshape([-1]), this.bias?.reshape([-1]), eps);
    return y.reshape(x.shape);
  }
}

/** LLaMA-style RMSNorm over the last dim (weight initialised to ones, eps 1e-6 as HF). */
export class RMSNorm extends Module {
  readonly weight: Tensor;

  constructor(
    readonly dim: number,
    readonly opts: LayerOptions & { eps?: number } = {},
  ) {
    super();
    this.weight = this.param('weight', init.ones(blank([dim], opts)), { role: 'norm' });
  }

  forward(x: Tensor): Tensor {
    return F.rmsNorm(x, this.weight, this.opts.eps ?? 1e-6);
  }
}

/** Inverted dropout in training mode, identity in eval mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new OpError('Dropout', `p must be in [0, 1], got ${p}`);
  }

  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
}

export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return x.tanh();
  }
}
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}
export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return x.silu();
  }
}
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.gelu(x, { approximate: this.approximate });
  }
}
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** Submodules in order, named '0', '1', … as torch's containers name them; indexable and iterable. */
abstract class IndexedModules<M extends AnyModule, In extends unknown[], Out>
  extends Module<In, Out>
  implements Iterable<M>
{
  private readonly items: M[] = [];

  constructor(modules: Iterable<M>) {
    super();
    for (const m of modules) this.append(m);
  }

  append(m: M): this {
    this.items.push(this.module(String(this.items.length), m));
    return this;
  }

  /** The i-th module; negative i counts from the end. */
  at(i: number): M {
    const m = this.items[i < 0 ? i + this.items.length : i];
    if (!m)
      throw new OpError(`${this.constructor.name}.at`, `index ${i} is out of range for ${this.items.length} modules`);
    return m;
  }

  get length(): number {
    return this.items.length;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** Single-tensor modules applied in order. */
export class Sequential extends IndexedModules<Module, [Tensor], Tensor> {
  constructor(...layers: Module[]) {
    super(layers);
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (const layer of this) h = layer.call(h);
    return h;
  }
}

/** An indexable list of submodules (as torch.nn.ModuleList); it has no forward. */
export class ModuleList<M extends AnyModule = AnyModule> extends IndexedModules<M, [], never> {
  constructor(modules: Iterable<M> = []) {
    super(modules);
  }

  forward(): never {
    throw new OpError('ModuleList', 'a ModuleList has no forward; iterate over its modules instead');
  }
}
