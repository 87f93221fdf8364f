// Ctrl-C / SIGTERM during training: the first asks the loop to stop after the current step and save;
// a second exits at once (the checkpoint files are written atomically, so that is safe too).
export class StopRequest {
  requested = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.requested) {
      console.error(`\n${signal} again: exiting without waiting for the save`);
      process.exit(130);
    }
    this.requested = true;
    console.error(`\n${signal}: stopping after this step and saving a checkpoint (press Ctrl-C again to exit at once)`);
  };

  install(): this {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    return this;
  }

  uninstall(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}
