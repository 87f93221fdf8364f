// A one-line terminal progress bar for training loops (plain log lines when not a TTY, e.g. in CI).
export class Progress {
  private readonly start = performance.now();
  private lastPrint = 0;

  constructor(private readonly total: number, private readonly label = '') {}

  update(step: number, info: Record<string, string | number> = {}): void {
    const now = performance.now();
    const done = step >= this.total;
    const tty = process.stdout.isTTY;
    if (!done && now - this.lastPrint < (tty ? 100 : 5000)) return;
    this.lastPrint = now;
    const frac = Math.min(step / this.total, 1);
    const elapsed = (now - this.start) / 1000;
    const eta = frac > 0 ? elapsed / frac - elapsed : 0;
    const width = 24;
    const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '·');
    const fields = Object.entries(info).map(([k, v]) => `${k} ${typeof v === 'number' ? v.toPrecision(4) : v}`).join('  ');
    const line = `${this.label} ${bar} ${step}/${this.total}  ${elapsed.toFixed(1)}s elapsed, ${eta.toFixed(1)}s left  ${fields}`;
    if (tty) process.stdout.write(`\r${line}\x1b[K${done ? '\n' : ''}`);
    else console.log(line);
  }
}
