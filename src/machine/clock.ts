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
  private origin = performance.now();
  /** While paused: the time it stopped at (ms since origin); NaN while running. */
  private frozenMs = NaN;

  nowNs(): number {
    const ms = Number.isNaN(this.frozenMs) ? performance.now() - this.origin : this.frozenMs;
    return ms * 1e6;
  }

  /** Stop time (a paused VM): the guest does not see the time it spends paused. */
  pause(): void {
    if (Number.isNaN(this.frozenMs)) this.frozenMs = performance.now() - this.origin;
  }

  /** Let time run again from where it stopped. */
  resume(): void {
    if (Number.isNaN(this.frozenMs)) return;
    this.origin = performance.now() - this.frozenMs;
    this.frozenMs = NaN;
  }

  /** Continue from `ns` (a restored snapshot's time), paused or not. */
  setNowNs(ns: number): void {
    if (Number.isNaN(this.frozenMs)) this.origin = performance.now() - ns / 1e6;
    else this.frozenMs = ns / 1e6;
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
