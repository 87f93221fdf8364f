// Anomaly mode (off by default): the output of every differentiable op and every gradient a backward
// rule returns is checked for NaN/Inf. On cpu the check is immediate (the error is thrown at the op
// call); on webgpu values cannot be read synchronously, so each check queues a one-element flag on the
// device and the flags are read at the next read of any tensor, or when backwardAsync finishes — the
// error then names the FIRST op (in execution order) that produced a non-finite value.
import { cpuDataOf } from './cpu.js';
import { getBackend } from './device.js';
import { scope, untrackTensor } from './scope.js';
import { OpError, shapeStr } from './shape.js';
import type { ElementwiseDef } from './backend.js';
import { Tensor } from './tensor.js';

let enabled = false;
/** > 0 while a backward rule runs: its internal ops are not checked, only the gradients it returns. */
let ruleDepth = 0;
/** Flags queued on the device: 1 when the checked tensor was all finite. */
const pending: { flag: Tensor; what: string }[] = [];

export class AnomalyError extends Error {}

/** Turns anomaly detection on or off (like torch.autograd.set_detect_anomaly). Returns the previous setting. */
export function setDetectAnomaly(on: boolean): boolean {
  if (typeof on !== 'boolean') throw new OpError('setDetectAnomaly', `on must be true or false, got ${typeof on}`);
  const prev = enabled;
  enabled = on;
  if (!on) for (const p of pending.splice(0)) p.flag.dispose();
  return prev;
}

export function isAnomalyDetectionEnabled(): boolean {
  return enabled;
}

/** What produced a tensor, for the error: "forward of 'op' (inputs [2, 3], [3])" or a backward. */
export function describeForward(op: string, inputs: readonly Tensor[]): string {
  return `forward of '${op}' (inputs ${inputs.map((t) => shapeStr(t.shape)).join(', ') || 'none'})`;
}

export function describeBackward(op: string, inputIndex: number, grad: Tensor): string {
  return `backward of '${op}' (the gradient for its input ${inputIndex}, shape ${shapeStr(grad.shape)})`;
}

/**
 * 1 where x is finite, else 0, from its exponent bits: x − x == 0 would do, but a compiler may fold
 * it to true when x is computed in the same (fused) kernel.
 */
const IS_FINITE: ElementwiseDef = {
  name: 'isFinite', arity: 1, scalarOnly: true,
  wgsl: ([a], t) => `select(${t}(0), ${t}(1), (bitcast<u32>(${a}) & 0x7f800000u) != 0x7f800000u)`,
  js: (a) => +Number.isFinite(a),
};

const message = (what: string) => `anomaly detected: the ${what} produced NaN or Inf (setDetectAnomaly(true) is on; turn it off to skip these checks)`;

/** Runs a backward rule; the ops it is written with are not checked themselves. */
export function insideRule<T>(fn: () => T): T {
  ruleDepth++;
  try {
    return fn();
  } finally {
    ruleDepth--;
  }
}

/** Checks an op's output when anomaly mode is on. `what` is only built when needed. */
export function checkForward(t: Tensor, op: string, inputs: readonly Tensor[]): void {
  if (enabled && ruleDepth === 0) checkFinite(t, () => describeForward(op, inputs));
}

/** Checks `t` when anomaly mode is on. `what` is only built when needed. */
export function checkFinite(t: Tensor, what: () => string): void {
  if (!enabled || t.dtype === 'int32' || t.size === 0) return;
  if (t.device === 'cpu') {
    const data = cpuDataOf(t);
    const idx = new Array<number>(t.rank).fill(0);
    for (let n = 0; n < t.size; n++) {
      let at = t.offset;
      for (let d = 0; d < t.rank; d++) at += idx[d] * t.strides[d];
      if (!Number.isFinite(data[at])) throw new AnomalyError(message(what()));
      for (let d = t.rank - 1; d >= 0 && ++idx[d] === t.shape[d]; d--) idx[d] = 0;
    }
    return;
  }
  const prev = enabled;
  enabled = false; // the check's own ops are not checked
  try {
    const flag = scope(() => {
      const backend = getBackend(t.device);
      const finite = new Tensor(backend.alloc('float32', t.size), t.shape);
      backend.elementwise(IS_FINITE, [t], finite, 'float32');
      return finite.min();
    });
    untrackTensor(flag);
    pending.push({ flag, what: what() });
  } finally {
    enabled = prev;
  }
}

/** Reads the queued device flags; throws for the first op that produced a non-finite value. */
export async function raisePendingAnomalies(): Promise<void> {
  if (!pending.length) return;
  const checks = pending.splice(0);
  let first: string | null = null;
  try {
    const flags = await Promise.all(checks.map(({ flag }) => getBackend(flag.device).read(flag)));
    const bad = flags.findIndex((f) => f[0] === 0);
    if (bad >= 0) first = checks[bad].what;
  } finally {
    for (const { flag } of checks) flag.dispose();
  }
  if (first !== null) throw new AnomalyError(message(first));
}
