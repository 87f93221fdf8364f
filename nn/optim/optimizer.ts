// The Optimizer base: parameter groups with their own hyperparameters, lazily created per-parameter
// state (owned tensors, same device/dtype as the parameter), and PyTorch-shaped state dicts.
import { noGrad } from '../../core/autograd.js';
import type { DeviceName } from '../../core/backend.js';
import { cpuDataOf } from '../../core/cpu.js';
import { copiesSync } from '../../core/device.js';
import type { TypedArray } from '../../core/dtype.js';
import { defineKernel, dispatch } from '../../core/op.js';
import { untrackTensor } from '../../core/scope.js';
import { OpError, sameShape, shapeStr } from '../../core/shape.js';
import { Tensor } from '../../core/tensor.js';
import { empty } from '../../ops/util.js';
import { copyInto } from '../inplace.js';
import { applyUpdates, type ParamUpdate } from './kernels.js';
import { argNumber, describeValue } from '../../core/args.js';

export interface BaseHyper {
  lr: number;
  weightDecay: number;
}

/** A group as given to the constructor: its params plus any hyperparameters that differ from the defaults. */
export type ParamGroupInput<H> = Partial<H> & { params: Iterable<Tensor> };
export type ParamGroup<H> = H & { params: Tensor[] };

export interface ParamState {
  /** Updates applied to this parameter so far. */
  step: number;
  buffers: Record<string, Tensor>;
}

/** PyTorch's layout: state keyed by the parameter's position across all groups; groups list positions. */
export interface OptimizerStateDict {
  state: Record<string, ParamState>;
  paramGroups: (Record<string, unknown> & { params: number[] })[];
}

/** What an update sees for one parameter: contiguous tensors and, on cpu, their arrays and offsets. */
export interface UpdateArgs<H> {
  param: Tensor;
  grad: Tensor;
  state: ParamState;
  group: ParamGroup<H>;
}

/** A webgpu parameter's update as the multi-tensor kernels take it, less the parameter and gradient. */
export type GpuUpdate = Omit<ParamUpdate, 'param' | 'grad'>;

export abstract class Optimizer<H extends BaseHyper> {
  /**
   * One step's updates on one device: each parameter's float64 loop on cpu; on webgpu, multi-tensor
   * dispatches (as many parameters per dispatch as the adapter's bindings allow). Either way a
   * parameter's first update reads its state as zeros (state is allocated unfilled).
   */
  private static readonly stepKernel = defineKernel<{
    optimizer: Optimizer<BaseHyper>;
    updates: UpdateArgs<BaseHyper>[];
  }>({
    name: 'optimizerStep',
    family: 'optim',
    cpu: ({ optimizer, updates }) => {
      for (const u of updates) {
        if (u.state.step === 1)
          Object.values(u.state.buffers).forEach((b) => cpuDataOf(b).fill(0, b.offset, b.offset + b.size));
        optimizer.updateCpu(u);
      }
    },
    webgpu: [
      {
        name: 'multiTensor',
        run: ({ optimizer, updates }) =>
          applyUpdates(updates.map((u) => ({ param: u.param, grad: u.grad, ...optimizer.updateGpu(u) }))),
      },
    ],
  });

  readonly paramGroups: ParamGroup<H>[] = [];
  protected readonly state = new Map<Tensor, ParamState>();

  constructor(
    readonly name: string,
    params: Iterable<Tensor> | readonly ParamGroupInput<H>[],
    readonly defaults: H,
  ) {
    if (params === null || typeof params !== 'object' || !(Symbol.iterator in params) || params instanceof Tensor) {
      throw new OpError(
        name,
        `params must be an array of tensors (e.g. model.parameters()) or of groups { params, ...hyperparameters }, got ${describeValue(params)}`,
      );
    }
    const list = [...(params as Iterable<Tensor | ParamGroupInput<H>>)];
    const groups: ParamGroupInput<H>[] =
      list.length && !(list[0] instanceof Tensor)
        ? (list as ParamGroupInput<H>[])
        : [{ params: list as Tensor[] } as unknown as ParamGroupInput<H>];
    const seen = new Set<Tensor>();
    for (const g of groups) {
      const ps = [...g.params];
      for (const p of ps) {
        if (!(p instanceof Tensor))
          throw new OpError(this.name, 'params must be Tensors (or groups { params, ...hyperparameters })');
        if (seen.has(p))
          throw new OpError(
            this.name,
            `a parameter ${shapeStr(p.shape)} appears in more than one place; each may be optimized once`,
          );
        if (!p.isContiguous())
          throw new OpError(
            this.name,
            `parameter ${shapeStr(p.shape)} is not contiguous; optimizers update parameters in place (use nn.Parameter)`,
          );
        if (p.dtype === 'int32') throw new OpError(this.name, 'parameters must be float tensors, got int32');
        seen.add(p);
      }
      const group = { ...defaults, ...g, params: ps } as ParamGroup<H>;
      this.validate(group);
      this.paramGroups.push(group);
    }
  }

  /** Checks a group's hyperparameters (throws OpError naming the optimizer). */
  protected validate(group: ParamGroup<H>): void {
    argNumber(this.name, 'lr', group.lr, { min: 0 });
    if (!(group.weightDecay >= 0)) throw new OpError(this.name, `invalid weightDecay ${group.weightDecay}`);
  }

  /** Names of the state buffers this parameter needs under this group's settings. */
  protected abstract bufferNames(group: ParamGroup<H>): string[];

  /** Applies one update in place on cpu (a JS loop). */
  protected abstract updateCpu(args: UpdateArgs<H>): void;

  /** The kernel and uniforms of one update on webgpu (applied with the others in few dispatches). */
  protected abstract updateGpu(args: UpdateArgs<H>): GpuUpdate;

  /** One optimization step over every parameter that has a gradient (one stepKernel dispatch per device). */
  step(): void {
    noGrad(() => {
      const byDevice = new Map<DeviceName, UpdateArgs<H>[]>();
      const copies: Tensor[] = [];
      for (const group of this.paramGroups) {
        for (const param of group.params) {
          const g = param.grad;
          if (!g) continue;
          param.assertAlive(`${this.name}.step`);
          if (g.device !== param.device || !sameShape(g.shape, param.shape)) {
            throw new OpError(
              `${this.name}.step`,
              `gradient ${shapeStr(g.shape)} on ${g.device} does not match parameter ${shapeStr(param.shape)} on ${param.device}`,
            );
          }
          const state = this.stateFor(param, group);
          state.step++;
          const grad = denseGrad(g, param);
          if (grad !== g) copies.push(grad);
          if (!byDevice.has(param.device)) byDevice.set(param.device, []);
          byDevice.get(param.device)!.push({ param, grad, state, group });
        }
      }
      for (const [device, updates] of byDevice) dispatch(Optimizer.stepKernel, device, { optimizer: this, updates });
      for (const c of copies) c.dispose();
    });
  }

  private stateFor(param: Tensor, group: ParamGroup<H>): ParamState {
    let st = this.state.get(param);
    if (!st) {
      st = { step: 0, buffers: {} };
      // The first update reads state as zeros (stepKernel), so no fill is needed.
      for (const name of this.bufferNames(group)) st.buffers[name] = ownedEmpty(param);
      this.state.set(param, st);
    }
    return st;
  }

  /** Sets every parameter's gradient to null. */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.grad = null;
  }

  /** State tensors are the optimizer's own (not copies): read them, do not dispose them. */
  stateDict(): OptimizerStateDict {
    const state: Record<string, ParamState> = {};
    const paramGroups: OptimizerStateDict['paramGroups'] = [];
    let index = 0;
    for (const group of this.paramGroups) {
      const ids: number[] = [];
      for (const p of group.params) {
        const st = this.state.get(p);
        if (st) state[String(index)] = { step: st.step, buffers: { ...st.buffers } };
        ids.push(index++);
      }
      const { params: _params, ...hyper } = group;
      paramGroups.push({ ...(JSON.parse(JSON.stringify(hyper)) as Record<string, unknown>), params: ids });
    }
    return { state, paramGroups };
  }

  /**
   * Restores hyperparameters and state (copied onto each parameter's device and dtype). Everything is
   * validated first: on error nothing changes.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const op = `${this.name}.loadStateDict`;
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new OpError(
        op,
        `state has ${sd.paramGroups.length} parameter groups, optimizer has ${this.paramGroups.length}`,
      );
    }
    const byIndex: Tensor[] = [];
    sd.paramGroups.forEach((g, i) => {
      if (g.params.length !== this.paramGroups[i].params.length) {
        throw new OpError(
          op,
          `group ${i} has ${g.params.length} parameters in the state but ${this.paramGroups[i].params.length} in the optimizer`,
        );
      }
      g.params.forEach((id, k) => {
        byIndex[id] = this.paramGroups[i].params[k];
      });
    });
    const groupOf = (p: Tensor) => this.paramGroups.find((g) => g.params.includes(p)) as ParamGroup<H>;
    for (const [id, st] of Object.entries(sd.state)) {
      const p = byIndex[Number(id)];
      if (!p) throw new OpError(op, `state for parameter ${id}, which no group lists`);
      const want = this.bufferNames({
        ...groupOf(p),
        ...sd.paramGroups.find((g) => g.params.includes(Number(id))),
      } as ParamGroup<H>);
      for (const name of want) {
        const t = st.buffers[name];
        if (!t) throw new OpError(op, `parameter ${id}: missing state buffer '${name}'`);
        if (!sameShape(t.shape, p.shape))
          throw new OpError(
            op,
            `parameter ${id}: state '${name}' has shape ${shapeStr(t.shape)}, parameter has ${shapeStr(p.shape)}`,
          );
        if (!copiesSync(t.device, p.device))
          throw new OpError(
            op,
            `parameter ${id}: state '${name}' is on ${t.device}, which is read asynchronously, but the parameter is on ${p.device}; load the state on ${p.device}`,
          );
      }
      if (!Number.isInteger(st.step) || st.step < 0) throw new OpError(op, `parameter ${id}: invalid step ${st.step}`);
    }
    // Validated: apply.
    sd.paramGroups.forEach((g, i) => {
      const { params: _ids, ...hyper } = g;
      Object.assign(this.paramGroups[i], hyper);
    });
    for (const st of this.state.values()) Object.values(st.buffers).forEach((t) => t.dispose());
    this.state.clear();
    noGrad(() => {
      for (const [id, st] of Object.entries(sd.state)) {
        const p = byIndex[Number(id)];
        const buffers: Record<string, Tensor> = {};
        for (const name of this.bufferNames(groupOf(p))) {
          const t = ownedEmpty(p);
          copyInto(op, t, st.buffers[name]);
          buffers[name] = t;
        }
        this.state.set(p, { step: st.step, buffers });
      }
    });
  }

  /** Frees the state buffers (parameters belong to their module). */
  dispose(): void {
    for (const st of this.state.values()) Object.values(st.buffers).forEach((t) => t.dispose());
    this.state.clear();
  }
}

/** g itself when contiguous with the parameter's dtype, else a contiguous converted copy. */
function denseGrad(g: Tensor, param: Tensor): Tensor {
  let out = g.isContiguous() ? g : g.contiguous();
  if (out.dtype !== param.dtype) {
    const cast = out.astype(param.dtype);
    if (out !== g) out.dispose();
    out = cast;
  }
  return out;
}

/** An unfilled tensor like p that no enclosing scope frees (the optimizer owns it). */
function ownedEmpty(p: Tensor): Tensor {
  const t = empty(p.device, p.dtype, p.shape);
  untrackTensor(t);
  return t;
}

/** The elements of a contiguous cpu tensor: arr[off + k] is element k. */
export function cpuArray(t: Tensor): { arr: TypedArray; off: number } {
  return { arr: cpuDataOf(t), off: t.offset };
}
