import { describe, it, expect } from 'vitest';
import { FakeTime } from '../../testing/fake-clock.js';
import { TimerQueue, type Clock } from '../../../machine/clock.js';
import { PicPair } from '../pic/pic.js';
import { IoApic, REDIR_TRIGGER_LEVEL } from '../ioapic/ioapic.js';
import {
  LocalApic,
  APIC_EOI,
  APIC_ESR,
  APIC_ICR_HIGH,
  APIC_ICR_LOW,
  APIC_ID,
  APIC_IRR,
  APIC_ISR,
  APIC_LDR,
  APIC_DFR,
  APIC_LVT_LINT0,
  APIC_LVT_TIMER,
  APIC_PPR,
  APIC_SVR,
  APIC_TIMER_CURRENT_COUNT,
  APIC_TIMER_DIVIDE,
  APIC_TIMER_INITIAL_COUNT,
  APIC_TMR,
  APIC_TPR,
  APIC_VERSION,
  LVT_MASKED,
  LVT_TIMER_PERIODIC,
  type Ipi,
} from './lapic.js';

function setup(withPic = false) {
  const time = new FakeTime();
  const pic = withPic ? new PicPair() : undefined;
  const ioapic = new IoApic();
  const ipis: Ipi[] = [];
  const lapic = new LocalApic({
    clock: time.clock,
    timers: time.timers,
    pic,
    onLevelEoi: (v) => ioapic.eoi(v),
    onIpi: (i) => ipis.push(i),
  });
  ioapic.addTarget(lapic);
  return { time, pic, ioapic, lapic, ipis };
}

function enable(lapic: LocalApic): void {
  lapic.write(APIC_SVR, 4, 0x1ff);
}

describe('LocalApic', () => {
  it('has the reset register values of the SDM', () => {
    const { lapic } = setup();
    expect(lapic.read(APIC_VERSION, 4)).toBe(0x0005_0014);
    expect(lapic.read(APIC_SVR, 4)).toBe(0xff);
    expect(lapic.read(APIC_DFR, 4)).toBe(0xffff_ffff);
    expect(lapic.read(APIC_LVT_TIMER, 4)).toBe(LVT_MASKED);
    expect(lapic.read(APIC_LVT_LINT0, 4)).toBe(0x700); // ExtINT, as a BIOS leaves it
    expect(lapic.apicBaseMsr).toBe(0xfee0_0900);
    lapic.write(APIC_ID, 4, 0x0300_0000);
    expect(lapic.read(APIC_ID, 4)).toBe(0x0300_0000);
  });

  it('delivers the highest IRR vector, nests by priority class, and EOIs the highest ISR', () => {
    const { lapic } = setup();
    enable(lapic);
    lapic.acceptInterrupt(0x41, 0, false);
    lapic.acceptInterrupt(0x52, 0, false);
    expect(lapic.hasInterrupt()).toBe(true);
    expect(lapic.acknowledge()).toBe(0x52);
    expect(lapic.read(APIC_ISR + 0x20, 4)).toBe(1 << (0x52 - 64));
    expect(lapic.read(APIC_PPR, 4)).toBe(0x50);
    // 0x41 is in a lower class than the in-service 0x52
    expect(lapic.hasInterrupt()).toBe(false);
    lapic.acceptInterrupt(0x58, 0, false); // same class: also blocked
    expect(lapic.hasInterrupt()).toBe(false);
    lapic.write(APIC_EOI, 4, 0);
    expect(lapic.acknowledge()).toBe(0x58);
    lapic.write(APIC_EOI, 4, 0);
    expect(lapic.acknowledge()).toBe(0x41);
    lapic.write(APIC_EOI, 4, 0);
    expect(lapic.hasInterrupt()).toBe(false);
    expect(lapic.read(APIC_ISR + 0x20, 4)).toBe(0);
  });

  it('TPR blocks lower classes', () => {
    const { lapic } = setup();
    enable(lapic);
    lapic.write(APIC_TPR, 4, 0x60);
    lapic.acceptInterrupt(0x61, 0, false);
    expect(lapic.hasInterrupt()).toBe(false);
    expect(lapic.read(APIC_IRR + 0x30, 4)).toBe(1 << 1);
    lapic.acceptInterrupt(0x71, 0, false);
    expect(lapic.acknowledge()).toBe(0x71);
    lapic.write(APIC_TPR, 4, 0);
    lapic.write(APIC_EOI, 4, 0);
    expect(lapic.acknowledge()).toBe(0x61);
  });

  it('globally disabled: its page reads all-ones and ignores writes; a new base asks to move the page', () => {
    const { time } = setup();
    const moves: [number, number][] = [];
    const lapic = new LocalApic({ clock: time.clock, timers: time.timers, onRelocate: (o, b) => moves.push([o, b]) > 0 });
    enable(lapic);
    lapic.write(APIC_TPR, 4, 0x20);
    lapic.apicBaseChanged(0xfee0_0000); // EN clear
    expect(lapic.read(APIC_VERSION, 4)).toBe(0xffff_ffff);
    expect(lapic.read(APIC_TPR, 1)).toBe(0xff);
    lapic.write(APIC_TPR, 4, 0x30);
    lapic.apicBaseChanged(0xfed4_0800); // enabled again, elsewhere
    expect(moves).toEqual([[0xfee0_0000, 0xfed4_0000]]);
    expect(lapic.apicBaseMsr).toBe(0xfed4_0900);
    expect(lapic.read(APIC_TPR, 4)).toBe(0x20); // the write while disabled went nowhere
    expect(lapic.read(APIC_SVR, 4) & 0x100).toBe(0); // software-disabled by the global disable
  });

  it('holds interrupts while software-disabled and rejects illegal vectors', () => {
    const { lapic } = setup();
    lapic.acceptInterrupt(0x40, 0, false);
    expect(lapic.hasInterrupt()).toBe(false);
    enable(lapic);
    expect(lapic.hasInterrupt()).toBe(true);
    lapic.acceptInterrupt(5, 0, false);
    lapic.write(APIC_ESR, 4, 0);
    expect(lapic.read(APIC_ESR, 4)).toBe(0x40);
  });

  it('routes level EOIs to the IOAPIC, which redelivers while asserted', () => {
    const { lapic, ioapic } = setup();
    enable(lapic);
    ioapic.write(0, 4, 0x10 + 2 * 9);
    ioapic.write(0x10, 4, 0x49 | REDIR_TRIGGER_LEVEL);
    ioapic.setIrq(9, true);
    expect(lapic.read(APIC_TMR + 0x20, 4)).toBe(1 << (0x49 - 64));
    expect(lapic.acknowledge()).toBe(0x49);
    lapic.write(APIC_EOI, 4, 0);
    expect(lapic.acknowledge()).toBe(0x49); // redelivered: line still high
    ioapic.setIrq(9, false);
    lapic.write(APIC_EOI, 4, 0);
    expect(lapic.hasInterrupt()).toBe(false);
  });

  it('passes the PIC through LINT0 ExtINT and stops when LINT0 is masked', () => {
    const { lapic, pic } = setup(true);
    pic!.master.write(0, 1, 0x11);
    pic!.master.write(1, 1, 0x20);
    pic!.master.write(1, 1, 0x04);
    pic!.master.write(1, 1, 0x01);
    pic!.master.write(1, 1, 0x00);
    pic!.setIrq(0, true);
    // software-disabled APIC: virtual wire
    expect(lapic.hasInterrupt()).toBe(true);
    expect(lapic.acknowledge()).toBe(0x20);
    expect(lapic.hasInterrupt()).toBe(false);
    pic!.master.write(0, 1, 0x20);
    enable(lapic);
    lapic.write(APIC_LVT_LINT0, 4, 0x700);
    pic!.setIrq(0, false);
    pic!.setIrq(0, true);
    expect(lapic.hasInterrupt()).toBe(true);
    lapic.write(APIC_LVT_LINT0, 4, 0x700 | LVT_MASKED);
    expect(lapic.hasInterrupt()).toBe(false);
    lapic.write(APIC_LVT_LINT0, 4, 0x700);
    expect(lapic.hasInterrupt()).toBe(true);
    // APIC interrupts come before the PIC's
    lapic.acceptInterrupt(0xec, 0, false);
    expect(lapic.acknowledge()).toBe(0xec);
    expect(lapic.acknowledge()).toBe(0x20);
  });

  it('one-shot timer counts down with the divider and fires once', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_TIMER_DIVIDE, 4, 0x3); // divide by 16
    lapic.write(APIC_LVT_TIMER, 4, 0xef);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 1000);
    expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(1000);
    expect(lapic.nextEventNs()).toBe(16_000);
    time.advance(8_000);
    expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(500);
    expect(lapic.hasInterrupt()).toBe(false);
    time.advance(8_000);
    expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(0);
    expect(lapic.acknowledge()).toBe(0xef);
    lapic.write(APIC_EOI, 4, 0);
    time.advance(100_000);
    expect(lapic.hasInterrupt()).toBe(false);
    expect(lapic.nextEventNs()).toBe(Infinity);
  });

  it('a one-shot count that ran out stays 0 when the mode turns periodic, until the next initial count', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_TIMER_DIVIDE, 4, 0xb); // divide by 1
    for (const expire of ['timer', 'read'] as const) {
      lapic.write(APIC_LVT_TIMER, 4, 0xef); // one-shot
      lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 1000);
      if (expire === 'timer') time.advance(2_000); // the expiry ran
      else time.clock.now += 2_000; // the clock moved, the expiry not yet run
      expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(0);
      lapic.write(APIC_LVT_TIMER, 4, 0xef | LVT_TIMER_PERIODIC);
      expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(0);
      time.advance(700);
      expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(0);
      while (lapic.hasInterrupt()) lapic.write(APIC_EOI, 4, lapic.acknowledge() & 0);
      time.advance(10_000);
      expect(lapic.hasInterrupt()).toBe(false); // stopped: no periodic ticks either
      lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 1000); // a new count starts it, periodic now
      time.advance(300);
      expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(700);
      lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 0);
    }
  });

  it('a one-shot count that ends before the write returns still fires (host time moves between clock reads)', () => {
    // like the host clock: every read is a little later than the previous one
    class MovingClock implements Clock {
      now = 0;
      nowNs(): number {
        this.now += 2_000;
        return this.now;
      }
    }
    const clock = new MovingClock();
    const timers = new TimerQueue(clock);
    const lapic = new LocalApic({ clock, timers });
    enable(lapic);
    lapic.write(APIC_TIMER_DIVIDE, 4, 0x3); // divide by 16
    lapic.write(APIC_LVT_TIMER, 4, 0xec); // one-shot
    // Linux's tickless idle programs counts this small (62 x 16 ns = 992 ns < one clock step)
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 62);
    expect(timers.nextDeadline()).toBeLessThan(Infinity);
    timers.runDue();
    expect(lapic.hasInterrupt()).toBe(true);
    expect(lapic.acknowledge()).toBe(0xec);
    lapic.write(APIC_EOI, 4, 0);
    // fired once, not again
    timers.runDue(clock.now + 1e9);
    expect(lapic.hasInterrupt()).toBe(false);
  });

  it('a one-shot expiry still pending when the divider or mode is rewritten is not lost', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_TIMER_DIVIDE, 4, 0xb); // divide by 1
    lapic.write(APIC_LVT_TIMER, 4, 0xec);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 1000);
    // time passes the deadline but the engine has not run the timer queue yet (mid-slice)
    time.clock.now = 5_000;
    lapic.write(APIC_LVT_TIMER, 4, 0xec | LVT_TIMER_PERIODIC);
    lapic.write(APIC_LVT_TIMER, 4, 0xec); // back to one-shot: re-evaluated while pending
    expect(lapic.hasInterrupt()).toBe(false);
    time.advance(0);
    expect(lapic.hasInterrupt()).toBe(true);
    expect(lapic.acknowledge()).toBe(0xec);
    lapic.write(APIC_EOI, 4, 0);
    // delivered: rewriting the divider or the vector does not fire the old count again
    lapic.write(APIC_TIMER_DIVIDE, 4, 0x3);
    lapic.write(APIC_LVT_TIMER, 4, 0xed);
    time.advance(1_000_000);
    expect(lapic.hasInterrupt()).toBe(false);
  });

  it('periodic timer reloads and fires every period; writing 0 stops it', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_TIMER_DIVIDE, 4, 0xb); // divide by 1
    lapic.write(APIC_LVT_TIMER, 4, 0xef | LVT_TIMER_PERIODIC);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 100_000); // 100 µs
    let fired = 0;
    for (let i = 0; i < 5; i++) {
      time.advance(100_000);
      if (lapic.hasInterrupt()) {
        fired++;
        lapic.acknowledge();
        lapic.write(APIC_EOI, 4, 0);
      }
    }
    expect(fired).toBe(5);
    time.advance(30_000);
    expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(70_000);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 0);
    time.advance(1_000_000);
    expect(lapic.hasInterrupt()).toBe(false);
    expect(lapic.read(APIC_TIMER_CURRENT_COUNT, 4)).toBe(0);
  });

  it('coalesces periodic expiries below the minimum period', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_TIMER_DIVIDE, 4, 0xb);
    lapic.write(APIC_LVT_TIMER, 4, 0xef | LVT_TIMER_PERIODIC);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 10); // 10 ns period
    expect(lapic.nextEventNs()).toBe(50_000);
    time.advance(1_000_000);
    expect(time.timers.nextDeadline()).toBeGreaterThan(1_000_000);
  });

  it('masked timer does not interrupt', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_LVT_TIMER, 4, 0xef | LVT_MASKED);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 10);
    time.advance(1000);
    expect(lapic.hasInterrupt()).toBe(false);
  });

  it('self-IPIs by shorthand and by destination; INIT/SIPI go to the hook', () => {
    const { lapic, ipis } = setup();
    enable(lapic);
    lapic.write(APIC_ICR_LOW, 4, (1 << 18) | 0x80);
    expect(lapic.acknowledge()).toBe(0x80);
    lapic.write(APIC_ICR_HIGH, 4, 0);
    lapic.write(APIC_ICR_LOW, 4, 0x90);
    expect(lapic.read(APIC_IRR + 0x40, 4)).toBe(1 << 16);
    lapic.write(APIC_ICR_HIGH, 4, 0x0100_0000);
    lapic.write(APIC_ICR_LOW, 4, 0x500 | (1 << 14));
    lapic.write(APIC_ICR_LOW, 4, 0x600 | 0x9a);
    expect(ipis.map((i) => [i.deliveryMode, i.vector, i.destination])).toEqual([
      [5, 0, 1],
      [6, 0x9a, 1],
    ]);
    lapic.write(APIC_ICR_LOW, 4, (1 << 18) | 0x400); // NMI to self
    expect(lapic.takeNmi()).toBe(true);
    expect(lapic.takeNmi()).toBe(false);
  });

  it('matches logical flat destinations through LDR', () => {
    const { lapic } = setup();
    lapic.write(APIC_LDR, 4, 0x0100_0000);
    expect(lapic.matchesDestination(0x01, true)).toBe(true);
    expect(lapic.matchesDestination(0x02, true)).toBe(false);
    expect(lapic.matchesDestination(0x00, false)).toBe(true);
    expect(lapic.matchesDestination(0x01, false)).toBe(false);
  });

  it('gives the spurious vector when nothing is pending and ignores bad accesses', () => {
    const { lapic } = setup();
    enable(lapic);
    expect(lapic.acknowledge()).toBe(0xff);
    lapic.write(APIC_VERSION, 4, 0);
    lapic.write(APIC_TPR, 2, 0xff);
    lapic.write(0xff0, 4, 1);
    expect(lapic.read(APIC_TPR, 4)).toBe(0);
    expect(lapic.read(0xfff, 1)).toBe(0);
    expect(lapic.badAccessCount).toBeGreaterThan(0);
  });

  it('round-trips its state including a running timer', () => {
    const { lapic, time } = setup();
    enable(lapic);
    lapic.write(APIC_LVT_TIMER, 4, 0x33);
    lapic.write(APIC_TIMER_INITIAL_COUNT, 4, 5000);
    lapic.acceptInterrupt(0x44, 0, true);
    const s = lapic.save();
    const other = setup();
    other.lapic.restore(s);
    expect(other.lapic.save()).toEqual(s);
    expect(other.lapic.hasInterrupt()).toBe(true);
    void time;
  });
});
