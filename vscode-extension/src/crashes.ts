/**
 * When to restart a language server that stopped: a server that dies again and again must not become a
 * crash loop of notifications. No `vscode` import: unit-tested directly.
 */

/** Allows at most `maxRestarts` automatic restarts within a sliding window of `windowMs`. */
export class RestartPolicy {
  private readonly crashes: number[] = [];

  constructor(
    private readonly maxRestarts = 2,
    private readonly windowMs = 3 * 60_000,
  ) {}

  /** Record a crash at `now` (ms); true when one more automatic restart is allowed. */
  shouldRestart(now: number): boolean {
    while (this.crashes.length && now - this.crashes[0] > this.windowMs) this.crashes.shift();
    this.crashes.push(now);
    return this.crashes.length <= this.maxRestarts;
  }

  /** Forget past crashes (after the user fixed the settings and restarted by hand). */
  reset(): void {
    this.crashes.length = 0;
  }
}
