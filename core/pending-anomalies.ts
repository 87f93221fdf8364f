// Anomaly checks waiting on a device whose values are read asynchronously (webgpu): one-element flags,
// read at the next read of any tensor (Tensor.data) or when backwardAsync finishes. Kept apart from
// anomaly.ts, which computes the flags, so that reading a tensor needs no tensor computation (and
// tensor.ts no import of the modules that create tensors).
import { getBackend } from './device.js';
import type { Tensor } from './tensor.js';

export class AnomalyError extends Error {}

export const anomalyMessage = (what: string) =>
  `anomaly detected: the ${what} produced NaN or Inf (setDetectAnomaly(true) is on; turn it off to skip these checks)`;

/** Flags queued on the device: 1 when the checked tensor was all finite. */
const pending: { flag: Tensor; what: string }[] = [];

/** Queues a flag (owned from now on) that says whether the tensor `what` describes was all finite. */
export function queueAnomalyFlag(flag: Tensor, what: string): void {
  pending.push({ flag, what });
}

/** Forgets the queued flags unread (anomaly mode was turned off). */
export function dropPendingAnomalies(): void {
  for (const p of pending.splice(0)) p.flag.dispose();
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
  if (first !== null) throw new AnomalyError(anomalyMessage(first));
}
