// CLEX's fused solve as an op record: θ(t) = exp(z(t)) from W_up and W_down by rk4 (Kutta's 3/8 rule)
// from z(1) = log θ_orig, on the time_dt grid or under step control (spec.stepTolerance: the grid is
// chosen in the kernel and recorded), keeping z at every grid point, and its gradient by the discrete
// adjoint through the same steps (exactly the gradient of the computed solution). One
// kernel each way: the cpu ones are dynamics.ts's float64 loops, the webgpu ones (WGSL in kernels.ts)
// run in one workgroup, so on a GPU a solve is one dispatch, its gradient one more, with no readback.
import { noGrad } from '../../core/autograd.js';
import { isFloat } from '../../core/dtype.js';
import { defineKernel, defineOp, dispatch, type Variant } from '../../core/op.js';
import { OpError, shapeStr } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { ROW_WG } from '../../core/webgpu/kernels/common.js';
import { launch } from '../../core/webgpu/launch.js';
import { fixedGrid } from '../../ode/fixed.js';
import { cpuData, outData, withContiguous } from '../../ops/kernelio.js';
import { empty } from '../../ops/util.js';
import { adaptiveRows, adaptiveSolveOnHost, solveBackwardOnHost, solveOnHost, type HostSolve } from './dynamics.js';
import {
  adaptiveForwardSource,
  backwardSource,
  backwardWorkgroupBytes,
  forwardSource,
  RK4_UNIFORMS,
  W,
  WORKGROUP_BYTES,
  type SourceSpec,
} from './kernels.js';

/** What fixes a solve besides the weights and t. */
export interface ClexSolveSpec extends SourceSpec {
  /** The rk4 step (time_dt): the grid's step, or with stepTolerance the finest half step. */
  readonly timeDt: number;
  /**
   * Absent: the fixed grid of timeDt (the reference solver). A number: step control (dynamics.ts,
   * StepControl): each rk4 step's local error in z = log θ at most this, steps no finer than timeDt.
   */
  readonly stepTolerance?: number;
  /** ln b of the model's rope base (z(1) = −(2i/d)·ln b) and of the NTK reference base. */
  readonly logBase: number;
  readonly logNtkBase: number;
}

interface SolveArgs {
  readonly spec: ClexSolveSpec;
  readonly t: number;
  /** The fixed grid 1 = grid[0] < … < grid[last] = t; null under step control (the forward records its times). */
  readonly grid: readonly number[] | null;
  /** Under step control: the trajectory's rows (times has one more entry, the step count). */
  readonly rows: number;
  /** W_up [d/2, λd] and W_down [λd, d/2], contiguous. */
  readonly up: Tensor;
  readonly down: Tensor;
}

/**
 * The automatic choice, 'lanes': one invocation per hidden unit or frequency, whichever are more, rounded
 * up to a power of two (at most ROW_WG; the loops stride past it). Measured on lavapipe it beats one
 * invocation doing everything ('single') despite the barriers (d = 16: 80 against 150 ms of cpu per
 * forward + backward at t = 8; d = 64: 0.8 against 1.5 s). Their own family, 'clex': the row kernels'
 * preference (one invocation on software adapters) is the opposite, and forcing row=thread to benchmark
 * rows should not change the solve. `configure({ variants: { clex: 'single' } })` forces one invocation.
 */
function clexVariants<A extends SolveArgs>(run: (args: A, lanes: number) => void): Variant<A>[] {
  const lanes = ({ spec, up }: A) => Math.min(ROW_WG, 2 ** Math.ceil(Math.log2(Math.max(spec.dim / 2, up.shape[1]))));
  return [
    { name: 'lanes', run: (args) => run(args, lanes(args)) },
    { name: 'single', run: (args) => run(args, 1) },
  ];
}

function hostSolve({ spec, grid, up, down }: SolveArgs, times?: ArrayLike<number>): HostSolve {
  const u = cpuData(up),
    w = cpuData(down);
  return {
    weights: { up: u.data, upOff: u.off, down: w.data, downOff: w.off, n: spec.dim / 2, m: up.shape[1], act: spec.act },
    logBase: spec.logBase,
    logNtkBase: spec.logNtkBase,
    grid: grid ?? (times ? recordedGrid(times) : []),
  };
}

/** The grid a step-controlled forward recorded: times [rows + 1] ends with the step count. */
const recordedGrid = (times: ArrayLike<number>): number[] =>
  Array.from({ length: times[times.length - 1] + 1 }, (_, k) => times[k]);

/** The uniforms both kernels read (the fixed grid of ode/fixed.ts: steps of DT from 1, the last one ending at T_END). */
function uniforms({ spec, t, grid, rows, up, down }: SolveArgs) {
  return {
    T_END: t,
    STEPS: grid ? grid.length - 1 : 0,
    DT: spec.timeDt,
    TOL: spec.stepTolerance ?? 0,
    ROWS: rows,
    LOG_BASE: spec.logBase,
    LOG_NTK_BASE: spec.logNtkBase,
    N: spec.dim / 2,
    M: up.shape[1],
    UP_OFF: up.offset,
    DOWN_OFF: down.offset,
    ...RK4_UNIFORMS,
  };
}

const pipelineKey = ({ spec, grid, up }: SolveArgs, lanes: number) =>
  `clex:rk4${grid ? '' : ':adaptive'}:${spec.act}:${spec.dim}:${up.shape[1]}:${lanes}`;

/**
 * z at every grid point into traj (fresh, offset 0; [(steps + 1)·d/2] on the fixed grid, [rows·d/2] under
 * step control, whose grid times go into times [rows + 1]) and θ(t) into theta [d/2].
 */
const solveKernel = defineKernel<
  SolveArgs & { readonly traj: Tensor; readonly theta: Tensor; readonly times: Tensor | null }
>({
  name: 'clexSolve',
  family: 'clex',
  cpu: (args) => {
    if (!args.times) return solveOnHost(hostSolve(args), outData(args.traj), outData(args.theta));
    const times = outData(args.times);
    const control = { tol: args.spec.stepTolerance ?? 0, hMin: args.spec.timeDt };
    times[args.rows] = adaptiveSolveOnHost(
      hostSolve(args),
      args.t,
      control,
      outData(args.traj),
      times,
      outData(args.theta),
    );
  },
  webgpu: clexVariants((args, lanes) => {
    const { spec, up, down, traj, theta, times } = args;
    launch(
      'clexSolve',
      `${pipelineKey(args, lanes)}:forward`,
      () => (times ? adaptiveForwardSource(spec, up.shape[1], lanes) : forwardSource(spec, up.shape[1], lanes)),
      W.pack(uniforms(args)),
      times ? [traj, theta, times, up, down] : [traj, theta, up, down],
      [1, 1, 1],
    );
  }),
});

/** dW_up, dW_down from dL/dθ(t) (g, contiguous) and the forward's trajectory. */
const solveBackwardKernel = defineKernel<
  SolveArgs & {
    readonly g: Tensor;
    readonly traj: Tensor;
    readonly times: Tensor | null;
    readonly dUp: Tensor;
    readonly dDown: Tensor;
  }
>({
  name: 'clexSolveBackward',
  family: 'clex',
  cpu: (args) => {
    const g = cpuData(args.g),
      traj = cpuData(args.traj);
    const times = args.times && cpuData(args.times);
    solveBackwardOnHost(
      hostSolve(args, times?.data.subarray(times.off, times.off + args.rows + 1)),
      traj.data.subarray(traj.off),
      g.data.subarray(g.off),
      outData(args.dUp),
      outData(args.dDown),
    );
  },
  webgpu: clexVariants((args, lanes) => {
    const { spec, up, down, g, traj, times, dUp, dDown } = args;
    const p = W.pack({ ...uniforms(args), G_OFF: g.offset });
    launch(
      'clexSolveBackward',
      `${pipelineKey(args, lanes)}:backward`,
      () => backwardSource(spec, up.shape[1], lanes, times !== null),
      p,
      times ? [dUp, dDown, g, traj, up, down, times] : [dUp, dDown, g, traj, up, down],
      [1, 1, 1],
    );
  }),
});

/**
 * θ(t) = exp(z(t)) [d/2] from W_up [d/2, λd] and W_down [λd, d/2] (same device and float dtype) by the
 * fused rk4 solve at spec.timeDt, differentiable in both weights.
 */
export const solveFrequencies = defineOp({
  name: 'clexSolve',
  check: (up: Tensor, down: Tensor, spec: ClexSolveSpec, t: number) => {
    const n = spec.dim / 2;
    up.assertAlive('clexSolve');
    down.assertAlive('clexSolve');
    if (!isFloat(up.dtype) || up.dtype !== down.dtype || up.device !== down.device) {
      throw new OpError(
        'clexSolve',
        `W_up and W_down must be float tensors of one dtype on one device, got ${up.dtype} on ${up.device} and ${down.dtype} on ${down.device}`,
      );
    }
    const m = up.shape[1];
    if (up.rank !== 2 || up.shape[0] !== n || down.rank !== 2 || down.shape[0] !== m || down.shape[1] !== n) {
      throw new OpError(
        'clexSolve',
        `W_up must be [${n}, λd] and W_down [λd, ${n}] for rotary dim ${spec.dim}, got ${shapeStr(up.shape)} and ${shapeStr(down.shape)}`,
      );
    }
    if (!(t >= 1)) throw new OpError('clexSolve', `t must be ≥ 1, got ${t}`);
    // The solve keeps its state in one workgroup's memory; the limit holds on every device, so a cpu run predicts a GPU one.
    if (backwardWorkgroupBytes(n, m) > WORKGROUP_BYTES) {
      throw new OpError(
        'clexSolve',
        `rotary dim ${spec.dim} with ${m} hidden units needs ${backwardWorkgroupBytes(n, m)} bytes of workgroup memory, more than the ${WORKGROUP_BYTES} WebGPU guarantees; use rope_scaling.ode_device 'cpu' (or a smaller param_factor)`,
      );
    }
  },
  forward: (up: Tensor, down: Tensor, spec: ClexSolveSpec, t: number) => {
    const n = spec.dim / 2;
    const adaptive = spec.stepTolerance !== undefined;
    const grid = adaptive ? null : fixedGrid([1, t], spec.timeDt, Number.MAX_SAFE_INTEGER);
    const rows = grid ? grid.length : adaptiveRows(t, spec.timeDt);
    const [u, w] = noGrad(() => [up, down].map((p) => (p.isContiguous() ? p : p.contiguous())));
    const traj = empty(up.device, up.dtype, [rows * n]);
    const times = adaptive ? empty(up.device, up.dtype, [rows + 1]) : null;
    const theta = empty(up.device, up.dtype, [n]);
    const args = { spec, t, grid, rows, up: u, down: w };
    dispatch(solveKernel, up.device, { ...args, traj, theta, times });
    return {
      out: theta,
      inputs: [up, down],
      saved: times ? [traj, u, w, times] : [traj, u, w],
      info: { spec, t, grid, rows },
      // The graph holds its own references to what it saved.
      after: (y: Tensor) => {
        traj.dispose();
        times?.dispose();
        if (u !== up) u.dispose();
        if (w !== down) w.dispose();
        return y;
      },
    };
  },
  backward: (g, [traj, up, down, times], { spec, t, grid, rows }) =>
    withContiguous([g], ([gc]) => {
      const dUp = empty(up.device, up.dtype, up.shape);
      const dDown = empty(down.device, down.dtype, down.shape);
      const args = { spec, t, grid, rows, up, down, g: gc, traj, times: times ?? null, dUp, dDown };
      dispatch(solveBackwardKernel, gc.device, args);
      return [dUp, dDown];
    }),
  kernels: [solveKernel, solveBackwardKernel],
  // float32: the webgpu variants against the float64 cpu kernels (θ to ~2e-5 relative; the gradients
  // carry a trajectory's float32 rounding through every step back).
  tolerance: { float64: { rtol: 1e-5, atol: 1e-7, eps: 1e-6 }, float32: { rtol: 2e-3, atol: 1e-5 } },
});
