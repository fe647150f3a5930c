/**
 * The machine's notion of time, and timers for devices.
 *
 * Time is host monotonic time in nanoseconds since the machine was created (a plain number:
 * exact for 104 days). Devices compute counters lazily from `nowNs()` and schedule callbacks
 * for deadlines; the engine calls `runDue()` between slices of guest execution and sleeps
 * until `nextDeadline()` when every vCPU is halted.
 */

export interface Clock {
  nowNs(): number;
}

export class HostClock implements Clock {
  private readonly origin = performance.now();
  nowNs(): number {
    return (performance.now() - this.origin) * 1e6;
  }
}

export interface Timer {
  readonly deadlineNs: number;
  cancelled: boolean;
}

interface TimerEntry extends Timer {
  deadlineNs: number;
  callback: (nowNs: number) => void;
}

export class TimerQueue {
  private entries: TimerEntry[] = [];
  /** Bound on live timers: a device that leaks timers is a bug, not a reason to grow forever. */
  static readonly MAX_TIMERS = 4096;

  constructor(readonly clock: Clock) {}

  /** Call `callback` once at or after `deadlineNs`. */
  schedule(deadlineNs: number, callback: (nowNs: number) => void): Timer {
    if (this.entries.length >= TimerQueue.MAX_TIMERS) throw new RangeError('too many pending timers');
    const e: TimerEntry = { deadlineNs, callback, cancelled: false };
    // keep sorted by deadline; queues are short (a handful of devices)
    let i = this.entries.length;
    while (i > 0 && this.entries[i - 1]!.deadlineNs > deadlineNs) i--;
    this.entries.splice(i, 0, e);
    return e;
  }

  cancel(t: Timer | undefined): void {
    if (!t) return;
    t.cancelled = true;
    const i = this.entries.indexOf(t as TimerEntry);
    if (i >= 0) this.entries.splice(i, 1);
  }

  /** Deadline of the earliest pending timer, or Infinity. */
  nextDeadline(): number {
    return this.entries.length ? this.entries[0]!.deadlineNs : Infinity;
  }

  /** Run every timer whose deadline has passed. Returns how many ran. */
  runDue(nowNs: number = this.clock.nowNs()): number {
    let n = 0;
    while (this.entries.length && this.entries[0]!.deadlineNs <= nowNs) {
      const e = this.entries.shift()!;
      if (e.cancelled) continue;
      e.cancelled = true;
      e.callback(nowNs);
      n++;
    }
    return n;
  }
}
