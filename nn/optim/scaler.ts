// Dynamic loss scaling for mixed-precision training, as torch.cuda.amp.GradScaler: the loss is multiplied
// by a scale before backward so that small float16 gradients do not flush to zero; the gradients are
// divided by it again before the optimizer step (one multi-tensor multiply in place, which also flags a
// NaN or ±Inf); a step whose gradients overflowed is skipped and the scale backs off, and after
// growthInterval clean steps it grows. The scale lives on the host (a power of two by default, so scaling
// and unscaling are exact); deciding whether to skip reads one 4-byte flag back per step, as PyTorch does.
import { noGrad } from '../../core/autograd.js';
import { argNumber, argObject, argTensor, describeValue } from '../../core/args.js';
import type { DeviceName } from '../../core/backend.js';
import { defineKernel, dispatch } from '../../core/op.js';
import { OpError } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { tensor } from '../../ops/creation.js';
import { scalableGrads } from './clip.js';
import { unscaleGradsKernel } from './kernels.js';
import { cpuArray, type BaseHyper, type Optimizer } from './optimizer.js';

export interface GradScalerOptions {
  /** The first scale (default 2**16). */
  initScale: number;
  /** Multiplies the scale after growthInterval steps without an overflow (default 2). */
  growthFactor: number;
  /** Multiplies the scale after a step whose gradients overflowed (default 0.5). */
  backoffFactor: number;
  /** Consecutive clean steps before the scale grows (default 2000). */
  growthInterval: number;
  /** false: every method passes through (scale 1, no check, the optimizer always steps). Default true. */
  enabled: boolean;
}

/** What a checkpoint keeps of a GradScaler (stateDict / loadStateDict). */
export interface GradScalerState {
  enabled: boolean;
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  /** Clean steps since the scale last changed. */
  growthTracker: number;
  /** Steps skipped so far because their gradients overflowed. */
  skippedSteps: number;
}

interface UnscaleArgs {
  /** Contiguous gradients, multiplied in place. */
  readonly grads: Tensor[];
  readonly invScale: number;
  /** One int32, 0 before; set to 1 where a result is NaN or ±Inf. */
  readonly found: Tensor;
}

const unscaleKernel = defineKernel<UnscaleArgs>({
  name: 'unscaleGrads',
  family: 'optim',
  cpu: ({ grads, invScale, found }) => {
    let overflow = false;
    for (const grad of grads) {
      const { arr, off } = cpuArray(grad);
      for (let i = 0; i < grad.size; i++) {
        arr[off + i] *= invScale;
        if (!Number.isFinite(arr[off + i])) overflow = true;
      }
    }
    if (overflow) cpuArray(found).arr[found.offset] = 1;
  },
  webgpu: [{ name: 'multiTensor', run: ({ grads, invScale, found }) => unscaleGradsKernel(grads, invScale, found) }],
});

/** Where one optimizer is in the current step: unscaled (its overflow flags, one per device), then stepped. */
interface OptimizerStage {
  found: Tensor[];
  /** Set by step(): whether any gradient was NaN or ±Inf (the step was skipped). */
  overflow?: boolean;
}

const DEFAULTS: GradScalerOptions = {
  initScale: 2 ** 16,
  growthFactor: 2,
  backoffFactor: 0.5,
  growthInterval: 2000,
  enabled: true,
};

/**
 * Dynamic loss scaling, as torch.cuda.amp.GradScaler. Per step:
 *
 *     await scaler.scale(loss).backwardAsync();
 *     scaler.unscale(optimizer);            // optional: only to clip (or read) the true gradients
 *     optim.clipGradNorm(params, 1);
 *     await scaler.step(optimizer);         // skipped when a gradient is NaN or ±Inf
 *     scaler.update();
 *
 * Parameters (and so their gradients) stay float32: autocast computes in float16 and hands float32
 * parameters float32 gradients.
 */
export class GradScaler {
  private scaleValue: number;
  private growthTracker = 0;
  private skipped = 0;
  private readonly growthFactor: number;
  private readonly backoffFactor: number;
  private readonly growthInterval: number;
  readonly enabled: boolean;
  private readonly stages = new Map<Optimizer<BaseHyper>, OptimizerStage>();

  constructor(opts: Partial<GradScalerOptions> = {}) {
    const op = 'GradScaler';
    argObject(op, 'options', opts);
    const o = { ...DEFAULTS, ...opts };
    this.scaleValue = argNumber(op, 'initScale', o.initScale, { above: 0 });
    this.growthFactor = argNumber(op, 'growthFactor', o.growthFactor, { above: 1 });
    this.backoffFactor = argNumber(op, 'backoffFactor', o.backoffFactor, { above: 0 });
    if (this.backoffFactor >= 1) throw new OpError(op, `backoffFactor must be < 1, got ${o.backoffFactor}`);
    this.growthInterval = argNumber(op, 'growthInterval', o.growthInterval, { integer: true, min: 1 });
    if (typeof o.enabled !== 'boolean')
      throw new OpError(op, `enabled must be true or false, got ${describeValue(o.enabled)}`);
    this.enabled = o.enabled;
  }

  /** The current scale (1 when disabled). */
  getScale(): number {
    return this.enabled ? this.scaleValue : 1;
  }

  /** Steps skipped so far because their gradients overflowed (kept in the state dict). */
  get skippedSteps(): number {
    return this.skipped;
  }

  /** loss × scale, in float32 at least (a float16 loss is cast up first, so the product cannot overflow it). */
  scale(loss: Tensor): Tensor {
    argTensor('GradScaler.scale', 'loss', loss);
    if (loss.dtype === 'int32') throw new OpError('GradScaler.scale', 'loss must be a float tensor, got int32');
    if (!this.enabled) return loss;
    return (loss.dtype === 'float16' ? loss.float() : loss).mul(this.scaleValue);
  }

  /**
   * Divides the gradients of the optimizer's parameters by the scale, in place, and notes whether any
   * is NaN or ±Inf (on the device: nothing is read back here). Call it at most once per step, after
   * backward, to clip or inspect the true gradients; step() calls it when you did not.
   */
  unscale(optimizer: Optimizer<BaseHyper>): void {
    const op = 'GradScaler.unscale';
    checkOptimizer(op, optimizer);
    if (!this.enabled) return;
    if (this.stages.has(optimizer))
      throw new OpError(
        op,
        `${this.stages.get(optimizer)!.overflow === undefined ? 'unscale' : 'step'}() was already called for this ${optimizer.name} since the last update(); unscale once per step, between backward and step, and call update() after the step`,
      );
    const params = optimizer.paramGroups.flatMap((g) => g.params).filter((p) => p.grad);
    params.forEach((p, i) => {
      if (p.grad!.dtype === 'float16')
        throw new OpError(
          op,
          `parameter ${i} of the ${optimizer.name} has a float16 gradient; keep the parameters in float32 (master weights) and run the forward under autocast('float16', …), which gives float32 parameters float32 gradients`,
        );
    });
    const byDevice = new Map<DeviceName, Tensor[]>();
    for (const p of params) {
      if (!byDevice.has(p.device)) byDevice.set(p.device, []);
      byDevice.get(p.device)!.push(p);
    }
    const found: Tensor[] = [];
    noGrad(() => {
      for (const [device, onDevice] of byDevice) {
        // Gradients that share storage with something else are replaced by private copies first (as clipping does).
        const { grads, views } = scalableGrads(onDevice);
        const flag = tensor(new Int32Array(1), { device, shape: [] }); // an upload, no dispatch
        dispatch(unscaleKernel, device, { grads, invScale: 1 / this.scaleValue, found: flag });
        views.forEach((v) => v.dispose());
        found.push(flag);
      }
    });
    this.stages.set(optimizer, { found });
  }

  /**
   * Unscales the gradients if unscale() was not called this step, then runs optimizer.step() unless a
   * gradient is NaN or ±Inf: then the parameters and the optimizer's state stay as they were. Reads the
   * overflow flag back (4 bytes per device). Resolves to whether the update was applied.
   */
  async step(optimizer: Optimizer<BaseHyper>): Promise<boolean> {
    const op = 'GradScaler.step';
    checkOptimizer(op, optimizer);
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    if (this.stages.get(optimizer)?.overflow !== undefined)
      throw new OpError(
        op,
        `step() was already called for this ${optimizer.name} since the last update(); call update() once per step, after step()`,
      );
    if (!this.stages.has(optimizer)) this.unscale(optimizer);
    const stage = this.stages.get(optimizer)!;
    const flags = await Promise.all(stage.found.map((f) => f.item()));
    stage.found.forEach((f) => f.dispose());
    stage.found = [];
    stage.overflow = flags.some((f) => f !== 0);
    if (!stage.overflow) optimizer.step();
    return !stage.overflow;
  }

  /**
   * Adjusts the scale for the next step: × backoffFactor when any optimizer stepped through this scaler
   * skipped its update, × growthFactor after growthInterval consecutive clean steps. Call once per step,
   * after step().
   */
  update(): void {
    if (!this.enabled) return;
    const stages = [...this.stages.values()];
    if (!stages.some((s) => s.overflow !== undefined))
      throw new OpError(
        'GradScaler.update',
        'no optimizer was stepped through this scaler since the last update(); call await scaler.step(optimizer) first',
      );
    for (const s of stages) s.found.forEach((f) => f.dispose());
    this.stages.clear();
    if (stages.some((s) => s.overflow)) {
      this.scaleValue *= this.backoffFactor;
      this.growthTracker = 0;
      this.skipped++;
      return;
    }
    this.growthTracker++;
    if (this.growthTracker === this.growthInterval) {
      this.growthTracker = 0;
      const grown = this.scaleValue * this.growthFactor;
      // The scale multiplies a float32 loss: it grows while it stays a finite float32.
      if (Number.isFinite(Math.fround(grown))) this.scaleValue = grown;
    }
  }

  stateDict(): GradScalerState {
    return {
      enabled: this.enabled,
      scale: this.scaleValue,
      growthFactor: this.growthFactor,
      backoffFactor: this.backoffFactor,
      growthInterval: this.growthInterval,
      growthTracker: this.growthTracker,
      skippedSteps: this.skipped,
    };
  }

  /**
   * Restores the scale and its counters. The state must come from a scaler with the same enabled flag and
   * the same factors and interval (they are settings, not state); everything is checked before anything
   * changes.
   */
  loadStateDict(state: GradScalerState): void {
    const op = 'GradScaler.loadStateDict';
    argObject(op, 'state', state);
    if (state.enabled !== this.enabled)
      throw new OpError(
        op,
        `the state comes from a scaler with enabled = ${describeValue(state.enabled)}, this one has enabled = ${this.enabled}; load it into a scaler made with the same setting`,
      );
    for (const key of ['growthFactor', 'backoffFactor', 'growthInterval'] as const) {
      if (state[key] !== this[key])
        throw new OpError(
          op,
          `the state's ${key} is ${describeValue(state[key])}, this scaler's is ${this[key]}; make the scaler with the options the state was saved with`,
        );
    }
    const scale = argNumber(op, 'state.scale', state.scale, { above: 0 });
    const tracker = argNumber(op, 'state.growthTracker', state.growthTracker, { integer: true, min: 0 });
    if (tracker >= this.growthInterval)
      throw new OpError(op, `state.growthTracker must be < growthInterval ${this.growthInterval}, got ${tracker}`);
    const skipped = argNumber(op, 'state.skippedSteps', state.skippedSteps ?? 0, { integer: true, min: 0 });
    if (this.stages.size)
      throw new OpError(op, 'a step is in progress (unscale or step was called); load the state between steps');
    this.scaleValue = scale;
    this.growthTracker = tracker;
    this.skipped = skipped;
  }
}

function checkOptimizer(op: string, optimizer: unknown): void {
  if (
    optimizer === null ||
    typeof optimizer !== 'object' ||
    !Array.isArray((optimizer as Optimizer<BaseHyper>).paramGroups) ||
    typeof (optimizer as Optimizer<BaseHyper>).step !== 'function'
  )
    throw new OpError(
      op,
      `optimizer must be an optimizer (e.g. new optim.AdamW(...)), got ${describeValue(optimizer)}`,
    );
}
