// metrics.jsonl: one JSON object per logged step. A resumed run first drops the lines past the
// checkpoint's step, so the file reads as one uninterrupted run.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

export interface MetricsRecord {
  step: number;
  loss: number;
  lr: number;
  tokens_per_s: number;
  elapsed_s: number;
  /** Live device buffers and bytes after the step (memory()): flat over a healthy run. */
  live_buffers?: number;
  live_bytes?: number;
  val_ppl?: number;
  /** --precision f16-mixed: the loss scale for the next step and the steps skipped so far (gradient overflow). */
  loss_scale?: number;
  skipped_steps?: number;
}

export function readMetrics(path: string): MetricsRecord[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as MetricsRecord);
}

export class MetricsLog {
  constructor(readonly path: string) {}

  /** Starts the file afresh (step 1) or keeps only the records up to `step` (resume). */
  startAt(step: number): void {
    const kept = step === 0 ? [] : readMetrics(this.path).filter((r) => r.step <= step);
    writeFileSync(this.path, kept.map((r) => JSON.stringify(r) + '\n').join(''));
  }

  append(r: MetricsRecord): void {
    appendFileSync(this.path, JSON.stringify(r) + '\n');
  }
}
