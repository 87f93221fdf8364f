// Training progress: a live cli-progress bar on a terminal (step, loss, lr, tokens/s, ETA; under mixed
// precision the loss scale and the skipped steps), plain log lines otherwise (CI, pipes, the tests), at most one every `plainEverySeconds` plus the last step.
import cliProgress from 'cli-progress';

export interface ProgressFields {
  loss: number;
  lr: number;
  tokensPerSecond: number;
  /** Mixed precision: the loss scale and the steps skipped so far. */
  lossScale?: number;
  skippedSteps?: number;
}

export class TrainingProgress {
  private readonly bar: cliProgress.SingleBar | null;
  private lastLine = -Infinity;
  private readonly started = performance.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly first: number,
    private readonly plainEverySeconds = 5,
  ) {
    this.bar = process.stdout.isTTY
      ? new cliProgress.SingleBar(
          {
            format: `${label} {bar} {value}/{total} | loss {loss} | lr {lr}{scaler} | {tps} tok/s | ETA {eta_formatted}`,
            barsize: 24,
            hideCursor: true,
            etaBuffer: 50,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
    this.bar?.start(total, first - 1, { loss: '-', lr: '-', scaler: '', tps: '-' });
  }

  update(step: number, f: ProgressFields): void {
    const fields = {
      loss: f.loss.toFixed(4),
      lr: f.lr.toExponential(2),
      scaler: f.lossScale === undefined ? '' : ` | scale ${f.lossScale} | skipped ${f.skippedSteps ?? 0}`,
      tps: Math.round(f.tokensPerSecond),
    };
    if (this.bar) {
      this.bar.update(step, fields);
      return;
    }
    const now = performance.now() / 1000;
    if (step < this.total && now - this.lastLine < this.plainEverySeconds) return;
    this.lastLine = now;
    const elapsed = now - this.started / 1000;
    const eta = step >= this.total ? 0 : (elapsed / Math.max(step - this.first + 1, 1)) * (this.total - step);
    console.log(
      `${this.label} step ${step}/${this.total}  loss ${fields.loss}  lr ${fields.lr}${fields.scaler.replaceAll(' |', ' ')}  ${fields.tps} tok/s  ETA ${eta.toFixed(0)}s`,
    );
  }

  stop(): void {
    this.bar?.stop();
  }
}
