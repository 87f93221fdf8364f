// Timing and GPU-traffic counting shared by every bench row.
import { memory } from '../index.js';

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median wall time of one call (after two untimed calls that compile kernels and fill pools). */
export async function medianMs(run: () => Promise<void>, reps: number): Promise<number> {
  await run();
  await run();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await run();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** dawngrad's GPU traffic over some span, divided by the number of steps in it. */
export interface TrafficPerStep {
  dispatches: number;
  submits: number;
  readbacks: number;
}

/** Starts counting; the returned function gives the traffic per step since the call. */
export function countTraffic(): (steps: number) => TrafficPerStep {
  const m0 = memory();
  return (steps) => {
    const m1 = memory();
    return {
      dispatches: (m1.dispatches - m0.dispatches) / steps,
      submits: (m1.submits - m0.submits) / steps,
      readbacks: (m1.readbacks - m0.readbacks) / steps,
    };
  };
}
