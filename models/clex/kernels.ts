// WGSL of CLEX's fused solve (solve.ts): the frequency ODE in one dispatch, and its gradient in one more.
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
// The 'dopri5' setting (a tolerance, not a grid) runs the same rk4 under step control instead
// (adaptiveForwardSource): step doubling against a local error of 1e-7 in z, steps no finer than
// time_dt, each accepted step kept as two plain rk4 steps with their times, so the backward is this
// one walking the recorded grid. The drift 1/(2t − 1) needs short steps only near t = 1: t = 8 takes
// 24–34 steps for the fixed grid's 700, and in float32 it lands closer to the float64 reference than
// the fixed grid does (less rounding accumulates; models/clex/index.ts, solveSpec). The grid lives in
// a buffer, bounded by the fixed grid's rows, so no loop bound needs a readback.
//
// Lanes: the invocations of the one workgroup (solve.ts picks them: the 'clex' variants 'lanes' and
// 'single'); they split each evaluation's loops and meet at barriers.
//
// Compile time on lavapipe (Mesa's software Vulkan, LLVM): the sizes, the stage count and the Butcher
// tableau are uniforms and the stage loop is a runtime loop, so the source has one copy of the
// evaluation and LLVM cannot unroll anything. When they were WGSL constants (stages emitted one by one,
// loops to constant N and M, one invocation) LLVM fully unrolled the nested loops: at d = 16 the
// forward's cold compile took 2 to over 7 minutes and the backward did not finish. Now a cold compile
// takes about 1–2 s of cpu for the forward and 3–4 s for the backward at d = 16 and at d = 64.
import { kernelHeader } from '../../core/webgpu/kernels/common.js';
import { uniformLayout } from '../../core/webgpu/uniforms.js';
import {
  ADAPTIVE_FIRST_STEP,
  ADAPTIVE_GROW,
  ADAPTIVE_SAFETY,
  ADAPTIVE_SHRINK,
  RK4,
  type Activation,
} from './dynamics.js';

/** What fixes one pair of pipelines: the ODE's sizes and activation (the rest are uniforms). */
export interface SourceSpec {
  /** Rotary dim d (the state has d/2 entries). */
  readonly dim: number;
  readonly act: Activation;
}

/** Workgroup memory WebGPU guarantees, and what of it the backward may spend on dW accumulators. */
export const WORKGROUP_BYTES = 16384;
const WORKGROUP_ACCUMULATOR_BYTES = 8192;

/** The most Runge–Kutta stages the kernels hold (their stage arrays are sized by it). */
const MAX_STAGES = 4;

/**
 * Uniform layout. Sizes (N = d/2, M = λd), the stage count and the tableau are uniforms, not WGSL
 * constants: with constant trip counts LLVM unrolls the nested loops into minutes of lavapipe compile.
 * A is the full MAX_STAGES × MAX_STAGES matrix (row s: stage s's weights), row-major.
 */
export const W = uniformLayout({
  T_END: 'f32',
  STEPS: 'u32',
  DT: 'f32',
  LOG_BASE: 'f32',
  LOG_NTK_BASE: 'f32',
  UP_OFF: 'u32',
  DOWN_OFF: 'u32',
  G_OFF: 'u32',
  N: 'u32',
  M: 'u32',
  STAGES: 'u32',
  /** The adaptive solve: its local error tolerance in z, and the rows its trajectory and times hold. */
  TOL: 'f32',
  ROWS: 'u32',
  C: ['f32', MAX_STAGES],
  A: ['f32', MAX_STAGES * MAX_STAGES],
  B: ['f32', MAX_STAGES],
});

/** rk4 (Kutta's 3/8 rule) as the uniform fields STAGES, C, A, B. */
export const RK4_UNIFORMS = (() => {
  const { c, a, b } = RK4;
  const A = new Array<number>(MAX_STAGES * MAX_STAGES).fill(0);
  a.forEach((row, k) =>
    row.forEach((w, j) => {
      A[(k + 1) * MAX_STAGES + j] = w;
    }),
  );
  return { STAGES: c.length, C: [...c], A, B: [...b] };
})();

/** Whether the backward keeps dW in workgroup memory (else it accumulates in the output buffers). */
const accumulatesInWorkgroup = (n: number, hidden: number): boolean =>
  2 * n * hidden * 4 <= WORKGROUP_ACCUMULATOR_BYTES;

/** Bytes of workgroup memory the backward (the larger kernel) declares. */
export function backwardWorkgroupBytes(n: number, hidden: number): number {
  const common = 3 * n + hidden + MAX_STAGES * n; // zc, ys, xs, hid, ks
  const own = 2 * MAX_STAGES * n + 2 * n + hidden; // stageY, mu, gv, lam, dh
  return 4 * (common + own + (accumulatesInWorkgroup(n, hidden) ? 2 * n * hidden : 0));
}

/** The declarations and helpers both kernels share; `lanes` invocations split every loop. */
function common(spec: SourceSpec, hidden: number, lanes: number): string {
  const activation =
    spec.act === 'tanh'
      ? // tanh saturates to ±1 in f32 long before 15; clamping keeps exp-based implementations finite.
        'fn act(h: f32) -> f32 { return tanh(clamp(h, -15.0, 15.0)); }\nfn dact(h: f32) -> f32 { let a = act(h); return 1.0 - a * a; }'
      : 'fn act(h: f32) -> f32 { return h / (1.0 + exp(-h)); }\nfn dact(h: f32) -> f32 { let s = 1.0 / (1.0 + exp(-h)); return s * (1.0 + h * (1.0 - s)); }';
  // Array capacities only; every loop runs to the uniform n, m or stage count.
  return `
const NCAP = ${spec.dim / 2}u;
const MCAP = ${hidden}u;
const SCAP = ${MAX_STAGES}u;
const WG = ${lanes}u;
var<private> lane: u32;
var<private> n: u32;
var<private> m: u32;
var<private> uo: u32;
var<private> dn: u32;
var<workgroup> zc: array<f32, NCAP>;
var<workgroup> ys: array<f32, NCAP>;
var<workgroup> xs: array<f32, NCAP>;
var<workgroup> hid: array<f32, MCAP>;
var<workgroup> ks: array<f32, SCAP * NCAP>;
fn sync() { ${lanes > 1 ? 'workgroupBarrier();' : ''} }
fn ca(s: u32, j: u32) -> f32 { return ${W.read('A', 's * SCAP + j')}; }
fn cb(s: u32) -> f32 { return ${W.read('B', 's')}; }
fn cc(s: u32) -> f32 { return ${W.read('C', 's')}; }
fn bend(i: u32) -> f32 { return f32(i) / f32(n - 1u); }
fn logNtk(i: u32, t: f32) -> f32 { return -(f32(i) / f32(n)) * pf(${W.LOG_NTK_BASE}u) - bend(i) * log(max(2.0 * t - 1.0, 1.0)); }
fn drift(i: u32, t: f32) -> f32 { return select(0.0, bend(i) * (-2.0 / (2.0 * t - 1.0)), t >= 1.0); }
${activation}
/** ys = zc + h·Σ_{j<s} a_sj·k_j (every lane its own entries: no barrier needed). */
fn stageInput(s: u32, h: f32) {
  for (var i = lane; i < n; i += WG) {
    var acc = 0.0;
    for (var j = 0u; j < s; j++) { acc += ca(s, j) * ks[j * n + i]; }
    ys[i] = zc[i] + h * acc;
  }
}
/** ks[stage] = f(t, ys). */
fn evalF(t: f32, stage: u32) {
  for (var i = lane; i < n; i += WG) { xs[i] = ys[i] + logNtk(i, t); }
  sync();
  for (var j = lane; j < m; j += WG) {
    var s = 0.0;
    for (var i = 0u; i < n; i++) { s += xs[i] * up[uo + i * m + j]; }
    hid[j] = act(s);
  }
  sync();
  for (var i = lane; i < n; i += WG) {
    var s = drift(i, t);
    for (var j = 0u; j < m; j++) { s += hid[j] * down[dn + j * n + i]; }
    ks[stage * n + i] = s;
  }
  sync();
}
`;
}

function entry(lanes: number, body: string): string {
  return `@compute @workgroup_size(${lanes}) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  lane = lid.x;
  n = pu(${W.N}u);
  m = pu(${W.M}u);
  uo = pu(${W.UP_OFF}u);
  dn = pu(${W.DOWN_OFF}u);
  // The grid of ode/fixed.ts: steps of dt from 1, the last one ending at t_end.
  let steps = pu(${W.STEPS}u);
  let stages = pu(${W.STAGES}u);
  let dt = pf(${W.DT}u);
  let tEnd = pf(${W.T_END}u);
${body}
}`;
}

/** Forward: z from z(1) = log θ_orig to t_end; writes z at every grid point (the trajectory) and θ = exp(z(t_end)). */
export function forwardSource(spec: SourceSpec, hidden: number, lanes: number): string {
  const bindings = [
    'var<storage, read_write> traj: array<f32>',
    'var<storage, read_write> theta: array<f32>',
    'var<storage, read> up: array<f32>',
    'var<storage, read> down: array<f32>',
  ];
  return `${kernelHeader(bindings)}${common(spec, hidden, lanes)}
${entry(
  lanes,
  `  for (var i = lane; i < n; i += WG) { zc[i] = -(f32(i) / f32(n)) * pf(${W.LOG_BASE}u); }
  for (var r = 0u; r < steps; r++) {
    let t = 1.0 + f32(r) * dt;
    let h = select(dt, tEnd - t, r + 1u == steps);
    for (var i = lane; i < n; i += WG) { traj[r * n + i] = zc[i]; }
    for (var s = 0u; s < stages; s++) {
      stageInput(s, h);
      evalF(t + cc(s) * h, s);
    }
    for (var i = lane; i < n; i += WG) {
      var acc = 0.0;
      for (var s = 0u; s < stages; s++) { acc += cb(s) * ks[s * n + i]; }
      zc[i] += h * acc;
    }
  }
  for (var i = lane; i < n; i += WG) { traj[steps * n + i] = zc[i]; theta[i] = exp(zc[i]); }`,
)}`;
}

/**
 * Backward: from dL/dθ(t_end), the transposed steps in reverse. Per step: recompute the stage inputs
 * Y_s from the saved start, then for s = last..0: g_s = h·(b_s·λ + Σ_{l>s} a_ls·μ_l), μ_s = J_z f(Y_s)ᵀ g_s,
 * dW += J_W f(Y_s)ᵀ g_s; finally λ += Σ μ_s. dW_up and dW_down are owned column/row-wise by lanes.
 */
export function backwardSource(spec: SourceSpec, hidden: number, lanes: number, adaptive: boolean): string {
  // dW accumulate in workgroup memory when it fits (cheaper than storage read-modify-writes).
  const inWorkgroup = accumulatesInWorkgroup(spec.dim / 2, hidden);
  const [accUp, accDown] = inWorkgroup ? ['accUp', 'accDown'] : ['dUp', 'dDown'];
  const bindings = [
    'var<storage, read_write> dUp: array<f32>',
    'var<storage, read_write> dDown: array<f32>',
    'var<storage, read> g: array<f32>',
    'var<storage, read> traj: array<f32>',
    'var<storage, read> up: array<f32>',
    'var<storage, read> down: array<f32>',
    // The adaptive solve's grid: its times, and the step count after the last row.
    ...(adaptive ? ['var<storage, read> times: array<f32>'] : []),
  ];
  // The grid: the fixed one (steps of dt from 1, the last ending at t_end) or the times the adaptive forward recorded.
  const stepCount = adaptive ? `u32(times[pu(${W.ROWS}u)])` : 'steps';
  const stepAt = adaptive
    ? `let t = times[r];
    let h = times[r + 1u] - t;`
    : `let t = 1.0 + f32(r) * dt;
    let h = select(dt, tEnd - t, r + 1u == steps);`;
  return `${kernelHeader(bindings)}${common(spec, hidden, lanes)}
var<workgroup> stageY: array<f32, SCAP * NCAP>;
var<workgroup> mu: array<f32, SCAP * NCAP>;
var<workgroup> gv: array<f32, NCAP>;
var<workgroup> lam: array<f32, NCAP>;
var<workgroup> dh: array<f32, MCAP>;
${inWorkgroup ? 'var<workgroup> accUp: array<f32, NCAP * MCAP>;\nvar<workgroup> accDown: array<f32, NCAP * MCAP>;' : ''}
/** mu[s] = J_z f(stageY[s])ᵀ gv; dW_up += xᵀ·dh, dW_down += act(h)ᵀ·gv. */
fn vjp(t: f32, s: u32) {
  for (var i = lane; i < n; i += WG) { xs[i] = stageY[s * n + i] + logNtk(i, t); }
  sync();
  for (var j = lane; j < m; j += WG) {
    var pre = 0.0;
    for (var i = 0u; i < n; i++) { pre += xs[i] * up[uo + i * m + j]; }
    let a = act(pre);
    var back = 0.0;
    for (var k = 0u; k < n; k++) {
      back += gv[k] * down[dn + j * n + k];
      ${accDown}[j * n + k] += a * gv[k];
    }
    let d = back * dact(pre);
    for (var i = 0u; i < n; i++) { ${accUp}[i * m + j] += xs[i] * d; }
    dh[j] = d;
  }
  sync();
  for (var i = lane; i < n; i += WG) {
    var mi = 0.0;
    for (var j = 0u; j < m; j++) { mi += dh[j] * up[uo + i * m + j]; }
    mu[s * n + i] = mi;
  }
  sync();
}
${entry(
  lanes,
  `  for (var j = lane; j < m; j += WG) {
    for (var i = 0u; i < n; i++) { ${accUp}[i * m + j] = 0.0; ${accDown}[j * n + i] = 0.0; }
  }
  let count = ${stepCount};
  // λ = dL/dz(t_end) = dL/dθ ⊙ θ.
  for (var i = lane; i < n; i += WG) { lam[i] = g[pu(${W.G_OFF}u) + i] * exp(traj[count * n + i]); }
  for (var q = 0u; q < count; q++) {
    let r = count - 1u - q;
    ${stepAt}
    for (var i = lane; i < n; i += WG) { zc[i] = traj[r * n + i]; }
    // The stage inputs Y_s, and the k_s later inputs need (the last stage's k is not needed).
    for (var s = 0u; s < stages; s++) {
      stageInput(s, h);
      for (var i = lane; i < n; i += WG) { stageY[s * n + i] = ys[i]; }
      if (s + 1u < stages) { evalF(t + cc(s) * h, s); }
    }
    for (var k = 0u; k < stages; k++) {
      let s = stages - 1u - k;
      for (var i = lane; i < n; i += WG) {
        var acc = cb(s) * lam[i];
        for (var l = s + 1u; l < stages; l++) { acc += ca(l, s) * mu[l * n + i]; }
        gv[i] = h * acc;
      }
      vjp(t + cc(s) * h, s);
    }
    for (var i = lane; i < n; i += WG) {
      var acc = 0.0;
      for (var s = 0u; s < stages; s++) { acc += mu[s * n + i]; }
      lam[i] += acc;
    }
  }
  sync();
  for (var j = lane; j < m; j += WG) {
    for (var i = 0u; i < n; i++) { dUp[i * m + j] = ${accUp}[i * m + j]; dDown[j * n + i] = ${accDown}[j * n + i]; }
  }`,
)}`;
}

/**
 * Forward under step control (dynamics.ts, adaptiveSolveOnHost, is the float64 twin): each try from
 * (t, z) takes one rk4 step of H and two of H/2; the halves' error estimate |halves − full|/15 against
 * TOL decides (workgroup max, read uniformly), the halves are kept (trajectory rows and their times), H
 * follows the usual controller, and a step of 2·DT (the reference's time_dt) is taken whatever its
 * estimate, so the loop ends and the trajectory fits ROWS. Writes the step count after the last row of times.
 */
export function adaptiveForwardSource(spec: SourceSpec, hidden: number, lanes: number): string {
  const bindings = [
    'var<storage, read_write> traj: array<f32>',
    'var<storage, read_write> theta: array<f32>',
    'var<storage, read_write> times: array<f32>',
    'var<storage, read> up: array<f32>',
    'var<storage, read> down: array<f32>',
  ];
  const f = (x: number) => (Number.isInteger(x) ? `${x}.0` : `${x}`);
  return `${kernelHeader(bindings)}${common(spec, hidden, lanes)}
var<workgroup> incF: array<f32, NCAP>;
var<workgroup> inc1: array<f32, NCAP>;
var<workgroup> red: array<f32, WG>;
var<workgroup> verdict: f32;
/** The stages of one rk4 step of h from zc at t (stage 0 from s0 on: 1 reuses k1 in ks[0]). */
fn runStages(t: f32, h: f32, s0: u32, count: u32) {
  for (var s = s0; s < count; s++) {
    stageInput(s, h);
    evalF(t + cc(s) * h, s);
  }
}
fn incr(i: u32, h: f32, count: u32) -> f32 {
  var acc = 0.0;
  for (var s = 0u; s < count; s++) { acc += cb(s) * ks[s * n + i]; }
  return h * acc;
}
${entry(
  lanes,
  `  let tol = pf(${W.TOL}u);
  let rows = pu(${W.ROWS}u);
  let hMin = dt;
  for (var i = lane; i < n; i += WG) { zc[i] = -(f32(i) / f32(n)) * pf(${W.LOG_BASE}u); }
  var t = 1.0;
  var H = max(${f(ADAPTIVE_FIRST_STEP)}, 2.0 * hMin);
  var r = 0u;
  loop {
    if (t >= tEnd || r + 2u >= rows) { break; }
    let tNew = select(t + H, tEnd, t + H >= tEnd);
    let tMid = t + (tNew - t) * 0.5;
    let hF = tNew - t;
    let h1 = tMid - t;
    let h2 = tNew - tMid;
    for (var i = lane; i < n; i += WG) { traj[r * n + i] = zc[i]; }
    runStages(t, hF, 0u, stages);
    for (var i = lane; i < n; i += WG) { incF[i] = incr(i, hF, stages); }
    runStages(t, h1, 1u, stages);
    for (var i = lane; i < n; i += WG) {
      inc1[i] = incr(i, h1, stages);
      zc[i] += inc1[i];
      traj[(r + 1u) * n + i] = zc[i];
    }
    runStages(tMid, h2, 0u, stages);
    var e = 0.0;
    for (var i = lane; i < n; i += WG) {
      let inc2 = incr(i, h2, stages);
      e = max(e, abs(inc1[i] + inc2 - incF[i]) / (15.0 * tol));
      // NaN compares false: such a step counts as failed.
      e = select(3.4e38, e, e <= 3.4e38);
      zc[i] += inc2;
    }
    red[lane] = e;
    sync();
    if (lane == 0u) {
      var m = 0.0;
      for (var l = 0u; l < WG; l++) { m = max(m, red[l]); }
      verdict = m;
    }
    let err = workgroupUniformLoad(&verdict);
    let fac = clamp(${f(ADAPTIVE_SAFETY)} * pow(max(err, 1e-30), -0.2), ${f(ADAPTIVE_SHRINK)}, ${f(ADAPTIVE_GROW)});
    if (err <= 1.0 || hF <= 2.0 * hMin * 1.000001) {
      if (lane == 0u) { times[r] = t; times[r + 1u] = tMid; }
      r += 2u;
      t = tNew;
    } else {
      for (var i = lane; i < n; i += WG) { zc[i] = traj[r * n + i]; }
    }
    H = max(2.0 * hMin, hF * fac);
  }
  for (var i = lane; i < n; i += WG) { traj[r * n + i] = zc[i]; theta[i] = exp(zc[i]); }
  if (lane == 0u) { times[r] = tEnd; times[rows] = f32(r); }`,
)}`;
}
