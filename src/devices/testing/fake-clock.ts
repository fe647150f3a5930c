/**
 * Test helpers for device unit tests: a Clock whose time only moves when the test says so, and
 * an InterruptSink that records line levels and edges. Never real time in tests.
 */
import { TimerQueue, type Clock } from '../../machine/clock.js';
import type { InterruptSink } from '../../machine/irq.js';

export class FakeClock implements Clock {
  constructor(public now = 0) {}
  nowNs(): number {
    return this.now;
  }
  /** SettableClock: a restored machine continues from its saved time. */
  setNowNs(ns: number): void {
    this.now = ns;
  }
}

/** A fake clock and a timer queue over it; `advance` moves time and runs what became due. */
export class FakeTime {
  readonly clock = new FakeClock();
  readonly timers = new TimerQueue(this.clock);

  advance(ns: number): void {
    this.set(this.clock.now + ns);
  }

  /** Move to `ns`, running due timers in deadline order (each sees its own deadline as "now"). */
  set(ns: number): void {
    for (;;) {
      const d = this.timers.nextDeadline();
      if (d > ns) break;
      this.clock.now = Math.max(this.clock.now, d);
      this.timers.runDue(this.clock.now);
    }
    this.clock.now = ns;
  }
}

/** Records every setIrq call: current levels and the count of rising edges per GSI. */
export class RecordingSink implements InterruptSink {
  readonly levels = new Map<number, boolean>();
  readonly rises = new Map<number, number>();
  setIrq(gsi: number, level: boolean): void {
    if (level && !this.levels.get(gsi)) this.rises.set(gsi, (this.rises.get(gsi) ?? 0) + 1);
    this.levels.set(gsi, level);
  }
  level(gsi: number): boolean {
    return this.levels.get(gsi) ?? false;
  }
  risesOf(gsi: number): number {
    return this.rises.get(gsi) ?? 0;
  }
}
