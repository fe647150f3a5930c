/**
 * Samples a process's resident set size (VmRSS in /proc/PID/status) while a test runs, so a
 * hostile-guest test can bound typevisor's host memory.
 */
import { readFileSync } from 'node:fs';

export class RssSampler {
  /** Largest RSS seen since the last mark, MiB. */
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number, intervalMs = 100) {
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Current RSS in MiB (0 once the process is gone). */
  sample(): number {
    let mib = 0;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      if (m) mib = Number(m[1]) / 1024;
    } catch {
      // the process has exited
    }
    if (mib > this.peak) this.peak = mib;
    return mib;
  }

  /** Start a new peak from now on; returns the current RSS. */
  mark(): number {
    this.peak = 0;
    return this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
