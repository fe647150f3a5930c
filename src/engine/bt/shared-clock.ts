/**
 * The machine clock when vCPUs run on several threads: every thread reads the same host
 * monotonic clock (CLOCK_MONOTONIC, coherent across host CPUs) against one shared origin, so a
 * TSC read on one vCPU never lies behind one read earlier on another (Linux checks that
 * between its CPUs). HostClock's performance.now() counts from each thread's own start.
 */
import type { Clock } from '../../machine/clock.js';

const hrNs = (): number => Number(process.hrtime.bigint());

export class SharedClock implements Clock {
  /** [0] the origin (host ns), [1] the time it stopped at while paused, NaN while running. */
  private readonly f: Float64Array;

  /** A new clock at 0, or (`buffer`) another thread's. */
  constructor(buffer?: SharedArrayBuffer) {
    this.f = new Float64Array(buffer ?? new SharedArrayBuffer(16));
    if (buffer === undefined) {
      this.f[0] = hrNs();
      this.f[1] = NaN;
    }
  }

  get buffer(): SharedArrayBuffer {
    return this.f.buffer as SharedArrayBuffer;
  }

  nowNs(): number {
    const frozen = this.f[1]!;
    return frozen === frozen ? frozen : hrNs() - this.f[0]!;
  }

  /** Stop time (a paused VM). */
  pause(): void {
    if (Number.isNaN(this.f[1])) this.f[1] = hrNs() - this.f[0]!;
  }

  resume(): void {
    const frozen = this.f[1]!;
    if (Number.isNaN(frozen)) return;
    this.f[0] = hrNs() - frozen;
    this.f[1] = NaN;
  }

  /** Continue from `ns` (a restored snapshot's time), paused or not. */
  setNowNs(ns: number): void {
    if (Number.isNaN(this.f[1])) this.f[0] = hrNs() - ns;
    else this.f[1] = ns;
  }
}
