// Learning-rate schedules. Each sets every group's lr to baseLr · factor(step), a closed form of the
// step count, so a restored scheduler gives bit-identical rates. As torch's LambdaLR, construction
// applies factor(0); call scheduler.step() after each optimizer.step().
import { OpError } from '../../core/shape.js';
import type { BaseHyper, Optimizer } from './optimizer.js';

export interface SchedulerState {
  kind: string;
  lastStep: number;
  baseLrs: number[];
}

export abstract class LRScheduler {
  lastStep = 0;
  baseLrs: number[];

  constructor(readonly optimizer: Optimizer<BaseHyper>) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
  }

  abstract readonly kind: string;

  /** Multiplier of the base learning rate at `step`. */
  abstract factor(step: number): number;

  protected apply(): void {
    const f = this.factor(this.lastStep);
    this.optimizer.paramGroups.forEach((g, i) => {
      g.lr = this.baseLrs[i] * f;
    });
  }

  /** Advances one step and updates the optimizer's learning rates. */
  step(): void {
    this.lastStep++;
    this.apply();
  }

  /** The current learning rate of each group. */
  getLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  stateDict(): SchedulerState {
    return { kind: this.kind, lastStep: this.lastStep, baseLrs: [...this.baseLrs] };
  }

  loadStateDict(sd: SchedulerState): void {
    if (sd.kind !== this.kind)
      throw new OpError(
        'LRScheduler.loadStateDict',
        `state is for a '${sd.kind}' schedule, this one is '${this.kind}'`,
      );
    if (sd.baseLrs.length !== this.optimizer.paramGroups.length) {
      throw new OpError(
        'LRScheduler.loadStateDict',
        `state has ${sd.baseLrs.length} groups, optimizer has ${this.optimizer.paramGroups.length}`,
      );
    }
    this.lastStep = sd.lastStep;
    this.baseLrs = [...sd.baseLrs];
    this.apply();
  }
}

class FactorSchedule extends LRScheduler {
  constructor(
    optimizer: Optimizer<BaseHyper>,
    readonly kind: string,
    private readonly f: (step: number) => number,
  ) {
    super(optimizer);
    this.apply();
  }

  factor(step: number): number {
    return this.f(step);
  }
}

function checkSteps(op: string, name: string, v: number, min = 0): void {
  if (!Number.isInteger(v) || v < min) throw new OpError(op, `${name} must be an integer >= ${min}, got ${v}`);
}

/** The base learning rate at every step. */
export function constant(optimizer: Optimizer<BaseHyper>): LRScheduler {
  return new FactorSchedule(optimizer, 'constant', () => 1);
}

/**
 * Linear warm-up from 0 over warmupSteps, then constant; with totalSteps, a linear decay to 0 at
 * totalSteps (HF get_linear_schedule_with_warmup).
 */
export function linearWarmup(
  optimizer: Optimizer<BaseHyper>,
  opts: { warmupSteps: number; totalSteps?: number },
): LRScheduler {
  const { warmupSteps, totalSteps } = opts;
  checkSteps('lr.linearWarmup', 'warmupSteps', warmupSteps);
  if (totalSteps !== undefined) checkSteps('lr.linearWarmup', 'totalSteps', totalSteps, warmupSteps);
  return new FactorSchedule(optimizer, 'linearWarmup', (s) => {
    if (s < warmupSteps) return s / Math.max(1, warmupSteps);
    if (totalSteps === undefined) return 1;
    return Math.max(0, (totalSteps - s) / Math.max(1, totalSteps - warmupSteps));
  });
}

/**
 * Linear warm-up, then cosine decay to minLrRatio·base at totalSteps (HF get_cosine_schedule_with_warmup
 * with numCycles = 0.5 when minLrRatio = 0).
 */
export function cosineWithWarmup(
  optimizer: Optimizer<BaseHyper>,
  opts: { warmupSteps: number; totalSteps: number; minLrRatio?: number; numCycles?: number },
): LRScheduler {
  const { warmupSteps, totalSteps } = opts;
  const minRatio = opts.minLrRatio ?? 0;
  const cycles = opts.numCycles ?? 0.5;
  checkSteps('lr.cosineWithWarmup', 'warmupSteps', warmupSteps);
  checkSteps('lr.cosineWithWarmup', 'totalSteps', totalSteps, warmupSteps);
  return new FactorSchedule(optimizer, 'cosineWithWarmup', (s) => {
    if (s < warmupSteps) return s / Math.max(1, warmupSteps);
    const progress = Math.min(1, (s - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
    const cosine = Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    return minRatio + (1 - minRatio) * cosine;
  });
}

/** Multiplies the rate by gamma every stepSize steps (torch StepLR). */
export function step(optimizer: Optimizer<BaseHyper>, opts: { stepSize: number; gamma?: number }): LRScheduler {
  checkSteps('lr.step', 'stepSize', opts.stepSize, 1);
  const gamma = opts.gamma ?? 0.1;
  return new FactorSchedule(optimizer, 'step', (s) => gamma ** Math.floor(s / opts.stepSize));
}
