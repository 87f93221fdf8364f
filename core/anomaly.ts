// Anomaly mode (off by default): the output of every differentiable op and every gradient a backward
// rule returns is checked for NaN/Inf. Where values are at hand (cpu) the check is immediate (the error
// is thrown at the op call); elsewhere (webgpu) each check queues a one-element flag on the device
// (pending-anomalies.ts) and the flags are read at the next read of any tensor, or when backwardAsync
// finishes — the error then names the FIRST op (in execution order) that produced a non-finite value.
import { getBackend } from './device.js';
import { AnomalyError, anomalyMessage, dropPendingAnomalies, queueAnomalyFlag } from './pending-anomalies.js';
import { allFinite } from './primitives.js';
import { untrackTensor } from './scope.js';
import { OpError, shapeStr } from './shape.js';
import type { Tensor } from './tensor.js';

export { AnomalyError, raisePendingAnomalies } from './pending-anomalies.js';

let enabled = false;
/** > 0 while a backward rule runs: its internal ops are not checked, only the gradients it returns. */
let ruleDepth = 0;

/** Turns anomaly detection on or off (like torch.autograd.set_detect_anomaly). Returns the previous setting. */
export function setDetectAnomaly(on: boolean): boolean {
  if (typeof on !== 'boolean') throw new OpError('setDetectAnomaly', `on must be true or false, got ${typeof on}`);
  const prev = enabled;
  enabled = on;
  if (!on) dropPendingAnomalies();
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
  const flag = allFinite(t);
  const backend = getBackend(t.device);
  if (backend.readSync) {
    // The host holds the values: fail at the op itself.
    const finite = backend.readSync(flag)[0] === 1;
    flag.dispose();
    if (!finite) throw new AnomalyError(anomalyMessage(what()));
    return;
  }
  untrackTensor(flag);
  queueAnomalyFlag(flag, what());
}
