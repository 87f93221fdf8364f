// CLEX's frequency ODE solved on the GPU in one dispatch, and its gradient in one more.
//
// The state z = log θ has d/2 entries and the network act((z + log θ_ntk(t))·W_up)·W_down has λd hidden
// units, so a solve is thousands of tiny evaluations: as composed ops each would be a dispatch, and on
// the cpu it needs the weights read back (and their gradient read back in backward). Here one workgroup
// integrates the whole ODE with rk4 (Kutta's 3/8 rule) on the reference's fixed grid (steps of time_dt,
// ode/fixed.ts) and writes z at every grid point (the trajectory). The backward kernel walks the
// steps in reverse, recomputes each step's stages from its saved start and applies the transposed
// Runge–Kutta step (the discrete adjoint: exactly the gradient of the computed solution, as backprop
// through the solver). Nothing is read back.
//
// The 'dopri5' setting also runs this fixed-step rk4 at time_dt on the device: the reference's own
// solver at its own step agrees with dopri5 at rtol 1e-7 within 1e-5 relative in θ (test/clex.test.ts),
// the float32 tolerance the device solve is held to anyway, and a fixed grid keeps every loop bound a uniform (an in-kernel adaptive
// loop would also need a trajectory bound it could only report by returning NaN).
//
// Lanes: in the 'group' variant ROW_WG invocations split the hidden units and frequencies and meet at
// barriers; in the 'thread' variant one invocation does everything (barriers are expensive on software
// adapters), chosen by chooseRowVariant with one evaluation's n·m multiply-adds as the row length.
//
// Known problem: lavapipe (Mesa's software Vulkan) is very slow to compile these pipelines. Measured on
// the 2-core machine at load ~20: at d = 16, λ = 2 the forward's first compile took 2–5 minutes and the
// backward did not finish in 5; at d = 4, λ = 1 both compile in under a minute. So
// rope_scaling.ode_device defaults to 'cpu'. Mesa caches compiled shaders on disk (later runs are fast).
// Unrolling the short loops (constant lane, stage loops) made it slower, not faster.
import { record } from '../core/autograd.js';
import { FIXED_TABLEAUX } from '../ode/tableaux.js';
import { fixedGrid } from '../ode/fixed.js';
import { OpError } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { chooseRowVariant, kernelHeader, ROW_WG, type RowVariant } from '../core/webgpu/kernels/common.js';
import { launch } from '../core/webgpu/launch.js';
import { uniformLayout } from '../core/webgpu/uniforms.js';
import { withContiguous } from '../ops/kernelio.js';
import { empty } from '../ops/util.js';

/** What fixes one pair of pipelines: the ODE's sizes, activation and solver. */
export interface ClexKernelSpec {
  /** Rotary dim d (the state has d/2 entries). */
  dim: number;
  act: 'tanh' | 'silu';
  /** rk4 step (time_dt). */
  timeDt: number;
  /** ln b of the model's rope base (z(1) = −(2i/d)·ln b) and of the NTK reference base. */
  logBase: number;
  logNtkBase: number;
}

/** Workgroup memory the backward may spend on dW accumulators (WebGPU guarantees 16 KiB in all). */
const WORKGROUP_ACCUMULATOR_BYTES = 8192;

/** Uniform layout. */
const W = uniformLayout({ T_END: 'f32', STEPS: 'u32', DT: 'f32', LOG_BASE: 'f32', LOG_NTK_BASE: 'f32', UP_OFF: 'u32', DOWN_OFF: 'u32', G_OFF: 'u32' });

/** One Runge–Kutta scheme as the kernels use it: stage times c (c[0] = 0), stage weights a (row s for stage s), b. */
interface Scheme {
  c: readonly number[];
  a: readonly (readonly number[])[];
  b: readonly number[];
}

const RK4: Scheme = { c: FIXED_TABLEAUX.rk4.c, a: [[], ...FIXED_TABLEAUX.rk4.a], b: FIXED_TABLEAUX.rk4.b };
const lit = (v: number): string => {
  const s = String(v);
  return /[.eE]/.test(s) ? s : `${s}.0`;
};

/** h·Σ_j w_j·ks[j] as WGSL for lane-owned index i (zero weights dropped). */
function weighted(weights: readonly number[], array: string): string {
  const terms = weights.map((w, j) => (w === 0 ? '' : `${lit(w)} * ${array}[${j}u * N + i]`)).filter(Boolean);
  return terms.length ? `(${terms.join(' + ')})` : '0.0';
}

/** Fills ys with stage s's input z + h·Σ a[s][j]·k_j (every lane its own entries: no barrier needed). */
function stageInput(scheme: Scheme, s: number, h: string): string {
  const sum = s === 0 ? '' : ` + ${h} * ${weighted(scheme.a[s], 'ks')}`;
  return `for (var i = lane; i < N; i += WG) { ys[i] = zc[i]${sum}; }`;
}

/** The declarations and helpers both kernels share. */
function common(spec: ClexKernelSpec, hidden: number, variant: RowVariant, stages: number): string {
  const n = spec.dim / 2;
  const group = variant === 'group';
  const activation = spec.act === 'tanh'
    // tanh saturates to ±1 in f32 long before 15; clamping keeps exp-based implementations finite.
    ? 'fn act(h: f32) -> f32 { return tanh(clamp(h, -15.0, 15.0)); }\nfn dact(h: f32) -> f32 { let a = act(h); return 1.0 - a * a; }'
    : 'fn act(h: f32) -> f32 { return h / (1.0 + exp(-h)); }\nfn dact(h: f32) -> f32 { let s = 1.0 / (1.0 + exp(-h)); return s * (1.0 + h * (1.0 - s)); }';
  return `
const N = ${n}u;
const M = ${hidden}u;
const D = ${spec.dim}u;
const WG = ${group ? ROW_WG : 1}u;
var<private> lane: u32;
var<private> uo: u32;
var<private> dn: u32;
var<workgroup> zc: array<f32, N>;
var<workgroup> ys: array<f32, N>;
var<workgroup> xs: array<f32, N>;
var<workgroup> hid: array<f32, M>;
var<workgroup> ks: array<f32, ${stages * n}>;
fn sync() { ${group ? 'workgroupBarrier();' : ''} }
fn bend(i: u32) -> f32 { return f32(2u * i) / f32(D - 2u); }
fn logNtk(i: u32, t: f32) -> f32 { return -(f32(2u * i) / f32(D)) * pf(${W.LOG_NTK_BASE}u) - bend(i) * log(max(2.0 * t - 1.0, 1.0)); }
fn drift(i: u32, t: f32) -> f32 { return select(0.0, bend(i) * (-2.0 / (2.0 * t - 1.0)), t >= 1.0); }
${activation}
/** ks[stage] = f(t, ys). */
fn evalF(t: f32, stage: u32) {
  for (var i = lane; i < N; i += WG) { xs[i] = ys[i] + logNtk(i, t); }
  sync();
  for (var j = lane; j < M; j += WG) {
    var s = 0.0;
    for (var i = 0u; i < N; i++) { s += xs[i] * up[uo + i * M + j]; }
    hid[j] = act(s);
  }
  sync();
  for (var i = lane; i < N; i += WG) {
    var s = drift(i, t);
    for (var j = 0u; j < M; j++) { s += hid[j] * down[dn + j * N + i]; }
    ks[stage * N + i] = s;
  }
  sync();
}
`;
}

function entry(variant: RowVariant, body: string): string {
  return `@compute @workgroup_size(${variant === 'group' ? ROW_WG : 1}) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  lane = lid.x;
  uo = pu(${W.UP_OFF}u);
  dn = pu(${W.DOWN_OFF}u);
  // The grid of ode/fixed.ts: steps of dt from 1, the last one ending at t_end.
  let steps = pu(${W.STEPS}u);
  let dt = pf(${W.DT}u);
  let tEnd = pf(${W.T_END}u);
${body}
}`;
}

/** Forward: z from z(1) = log θ_orig to t_end; writes z at every grid point (the trajectory) and θ = exp(z(t_end)). */
function forwardSource(spec: ClexKernelSpec, hidden: number, variant: RowVariant): string {
  const bindings = ['var<storage, read_write> traj: array<f32>', 'var<storage, read_write> theta: array<f32>', 'var<storage, read> up: array<f32>', 'var<storage, read> down: array<f32>'];
  const stages = RK4.c.map((c, s) => `    ${stageInput(RK4, s, 'h')}\n    evalF(t + ${lit(c)} * h, ${s}u);`).join('\n');
  return `${kernelHeader(bindings)}${common(spec, hidden, variant, RK4.c.length)}
${entry(variant, `  for (var i = lane; i < N; i += WG) { zc[i] = -(f32(2u * i) / f32(D)) * pf(${W.LOG_BASE}u); }
  for (var r = 0u; r < steps; r++) {
    let t = 1.0 + f32(r) * dt;
    let h = select(dt, tEnd - t, r + 1u == steps);
    for (var i = lane; i < N; i += WG) { traj[r * N + i] = zc[i]; }
${stages}
    for (var i = lane; i < N; i += WG) { zc[i] += h * ${weighted(RK4.b, 'ks')}; }
  }
  for (var i = lane; i < N; i += WG) { traj[steps * N + i] = zc[i]; theta[i] = exp(zc[i]); }`)}`;
}

/**
 * Backward: from dL/dθ(t_end), the transposed steps in reverse. Per step: recompute the stage inputs
 * Y_s from the saved start, then for s = last..0: g_s = h·(b_s·λ + Σ_{l>s} a_ls·μ_l), μ_s = J_z f(Y_s)ᵀ g_s,
 * dW += J_W f(Y_s)ᵀ g_s; finally λ += Σ μ_s. dW_up and dW_down are owned column/row-wise by lanes.
 */
function backwardSource(spec: ClexKernelSpec, hidden: number, variant: RowVariant): string {
  const stages = RK4.c.length;
  // dW accumulate in workgroup memory when it fits (cheaper than storage read-modify-writes).
  const inWorkgroup = 2 * (spec.dim / 2) * hidden * 4 <= WORKGROUP_ACCUMULATOR_BYTES;
  const [accUp, accDown] = inWorkgroup ? ['accUp', 'accDown'] : ['dUp', 'dDown'];
  const bindings = ['var<storage, read_write> dUp: array<f32>', 'var<storage, read_write> dDown: array<f32>', 'var<storage, read> g: array<f32>', 'var<storage, read> traj: array<f32>', 'var<storage, read> up: array<f32>', 'var<storage, read> down: array<f32>'];
  const recompute = Array.from({ length: stages }, (_, s) => `    ${stageInput(RK4, s, 'h')}
    for (var i = lane; i < N; i += WG) { stageY[${s}u * N + i] = ys[i]; }${s < stages - 1 ? `\n    evalF(t + ${lit(RK4.c[s])} * h, ${s}u);` : ''}`).join('\n');
  const reverse = Array.from({ length: stages }, (_, k) => stages - 1 - k).map((s) => {
    const later = Array.from({ length: stages - 1 - s }, (_, k) => s + 1 + k).map((l) => [RK4.a[l][s] ?? 0, l] as const).filter(([w]) => w !== 0);
    const terms = [RK4.b[s] !== 0 ? `${lit(RK4.b[s])} * lam[i]` : '', ...later.map(([w, l]) => `${lit(w)} * mu[${l}u * N + i]`)].filter(Boolean);
    return `    for (var i = lane; i < N; i += WG) { gv[i] = h * (${terms.length ? terms.join(' + ') : '0.0'}); }
    vjp(t + ${lit(RK4.c[s])} * h, ${s}u);`;
  }).join('\n');
  return `${kernelHeader(bindings)}${common(spec, hidden, variant, stages)}
var<workgroup> stageY: array<f32, ${stages}u * N>;
var<workgroup> mu: array<f32, ${stages}u * N>;
var<workgroup> gv: array<f32, N>;
var<workgroup> lam: array<f32, N>;
var<workgroup> dh: array<f32, M>;
${inWorkgroup ? 'var<workgroup> accUp: array<f32, N * M>;\nvar<workgroup> accDown: array<f32, N * M>;' : ''}
/** mu[s] = J_z f(stageY[s])ᵀ gv; dW_up += xᵀ·dh, dW_down += act(h)ᵀ·gv. */
fn vjp(t: f32, s: u32) {
  for (var i = lane; i < N; i += WG) { xs[i] = stageY[s * N + i] + logNtk(i, t); }
  sync();
  for (var j = lane; j < M; j += WG) {
    var pre = 0.0;
    for (var i = 0u; i < N; i++) { pre += xs[i] * up[uo + i * M + j]; }
    let a = act(pre);
    var back = 0.0;
    for (var k = 0u; k < N; k++) {
      back += gv[k] * down[dn + j * N + k];
      ${accDown}[j * N + k] += a * gv[k];
    }
    let d = back * dact(pre);
    for (var i = 0u; i < N; i++) { ${accUp}[i * M + j] += xs[i] * d; }
    dh[j] = d;
  }
  sync();
  for (var i = lane; i < N; i += WG) {
    var m = 0.0;
    for (var j = 0u; j < M; j++) { m += dh[j] * up[uo + i * M + j]; }
    mu[s * N + i] = m;
  }
  sync();
}
${entry(variant, `  for (var j = lane; j < M; j += WG) {
    for (var i = 0u; i < N; i++) { ${accUp}[i * M + j] = 0.0; ${accDown}[j * N + i] = 0.0; }
  }
  // λ = dL/dz(t_end) = dL/dθ ⊙ θ.
  for (var i = lane; i < N; i += WG) { lam[i] = g[pu(${W.G_OFF}u) + i] * exp(traj[steps * N + i]); }
  for (var q = 0u; q < steps; q++) {
    let r = steps - 1u - q;
    let t = 1.0 + f32(r) * dt;
    let h = select(dt, tEnd - t, r + 1u == steps);
    for (var i = lane; i < N; i += WG) { zc[i] = traj[r * N + i]; }
${recompute}
${reverse}
    for (var i = lane; i < N; i += WG) { lam[i] += ${Array.from({ length: stages }, (_, s) => `mu[${s}u * N + i]`).join(' + ')}; }
  }
  sync();
  for (var j = lane; j < M; j += WG) {
    for (var i = 0u; i < N; i++) { dUp[i * M + j] = ${accUp}[i * M + j]; dDown[j * N + i] = ${accDown}[j * N + i]; }
  }`)}`;
}

/**
 * θ(t) = exp(z(t)) [d/2] solved on the GPU from W_up [d/2, λd] and W_down [λd, d/2] (float32, webgpu),
 * recording one op whose backward gives dW_up and dW_down (one dispatch each way, no readback).
 */
export function solveFrequenciesOnDevice(spec: ClexKernelSpec, up: Tensor, down: Tensor, t: number): Tensor {
  const n = spec.dim / 2;
  const hidden = up.shape[1];
  if (up.device !== 'webgpu' || up.dtype !== 'float32' || down.device !== 'webgpu' || down.dtype !== 'float32') {
    throw new OpError('CLEX.solveFrequenciesOnDevice', `W_up and W_down must be float32 on webgpu, got ${up.dtype} on ${up.device} and ${down.dtype} on ${down.device}; use rope_scaling.ode_device 'cpu' otherwise`);
  }
  if (!(t >= 1)) throw new OpError('CLEX.solveFrequenciesOnDevice', `t must be ≥ 1, got ${t}`);
  const variant = chooseRowVariant(1, n * hidden);
  const key = `clex:rk4:${spec.act}:${spec.dim}:${hidden}:${variant}`;
  const steps = fixedGrid([1, t], spec.timeDt, Number.MAX_SAFE_INTEGER).length - 1;
  const fixed = { T_END: t, STEPS: steps, DT: spec.timeDt, LOG_BASE: spec.logBase, LOG_NTK_BASE: spec.logNtkBase };
  return withContiguous([up, down], ([u, w]) => {
    const traj = empty('webgpu', 'float32', [(steps + 1) * n]);
    const theta = empty('webgpu', 'float32', [n]);
    const p = W.pack({ ...fixed, UP_OFF: u.offset, DOWN_OFF: w.offset });
    launch('clexSolve', `${key}:forward`, () => forwardSource(spec, hidden, variant), p, [traj, theta, u, w], [1, 1, 1]);
    const out = record('clexSolve', theta, [up, down], (g, [trajS, uS, wS]) => withContiguous([g], ([gc]) => {
      const dUp = empty('webgpu', 'float32', up.shape);
      const dDown = empty('webgpu', 'float32', down.shape);
      const pb = W.pack({ ...fixed, UP_OFF: uS.offset, DOWN_OFF: wS.offset, G_OFF: gc.offset });
      launch('clexSolveBackward', `${key}:backward`, () => backwardSource(spec, hidden, variant), pb, [dUp, dDown, gc, trajS, uS, wS], [1, 1, 1]);
      return [dUp, dDown];
    }), [traj, u, w]);
    // The saved alias keeps the trajectory's storage for backward; this handle is not needed.
    traj.dispose();
    return out;
  });
}
