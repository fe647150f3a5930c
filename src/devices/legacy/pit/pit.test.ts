import { describe, it, expect } from 'vitest';
import { IrqLine } from '../../../machine/irq.js';
import { FakeTime, RecordingSink } from '../../testing/fake-clock.js';
import { Pit8254, pitTicks, pitTicksToNs, PIT_MIN_PERIOD_NS, PORTB_OUT2 } from './pit.js';

function setup() {
  const time = new FakeTime();
  const sink = new RecordingSink();
  const pit = new Pit8254({ clock: time.clock, timers: time.timers, irq: new IrqLine(sink, 0) });
  return { time, sink, pit };
}

function program(pit: Pit8254, channel: number, control: number, count: number): void {
  pit.write(3, 1, control);
  pit.write(channel, 1, count & 0xff);
  pit.write(channel, 1, count >> 8);
}

function readCount(pit: Pit8254, channel: number): number {
  const lo = pit.read(channel, 1);
  return lo | (pit.read(channel, 1) << 8);
}

describe('Pit8254', () => {
  it('converts between nanoseconds and PIT ticks exactly', () => {
    expect(pitTicks(1e9)).toBe(1_193_182);
    expect(pitTicks(3600e9 + 500_000_000)).toBe(3600 * 1_193_182 + 596_591);
    expect(pitTicks(pitTicksToNs(1193))).toBe(1193);
  });

  it('mode 2 pulses IRQ0 once per period', () => {
    const { time, sink, pit } = setup();
    program(pit, 0, 0x34, 11932); // ~10 ms, rate generator
    time.advance(pitTicksToNs(11932) * 10 + 1000);
    expect(sink.risesOf(0)).toBe(10);
    expect(sink.level(0)).toBe(false);
  });

  it('mode 3 square wave: OUT high for the first half, count decrements by two', () => {
    const { time, pit } = setup();
    program(pit, 0, 0x36, 1000);
    time.advance(pitTicksToNs(100));
    expect(pit.output(0)).toBe(true);
    expect(readCount(pit, 0)).toBe(800);
    time.advance(pitTicksToNs(500));
    expect(pit.output(0)).toBe(false);
  });

  it('latches the count with the counter-latch command', () => {
    const { time, pit } = setup();
    program(pit, 0, 0x34, 1000);
    time.advance(pitTicksToNs(100));
    pit.write(3, 1, 0x00); // latch counter 0
    time.advance(pitTicksToNs(300)); // the latch holds
    expect(readCount(pit, 0)).toBe(900);
    expect(readCount(pit, 0)).toBe(600); // live again
  });

  it('read-back latches status and count', () => {
    const { time, pit } = setup();
    program(pit, 2, 0xb0, 5000); // counter 2, LSB/MSB, mode 0
    pit.systemControl.write(0, 1, 0x01);
    time.advance(pitTicksToNs(1000));
    pit.write(3, 1, 0xc8); // read-back count+status of counter 2
    expect(pit.read(2, 1)).toBe(0x30); // OUT low, count valid, rw=3, mode 0, binary
    expect(readCount(pit, 2)).toBe(4000);
    pit.write(3, 1, 0xe8); // status only
    pit.write(3, 1, 0x34); // counter 0: control word without a count yet
    pit.write(3, 1, 0xe2);
    expect(pit.read(0, 1)).toBe(0x80 | 0x40 | 0x30 | 0x04); // OUT high, null count, rw=3, mode 2
  });

  it('mode 0 on counter 2 raises OUT2 on port 0x61 at terminal count (TSC calibration)', () => {
    const { time, pit } = setup();
    pit.systemControl.write(0, 1, (pit.systemControl.read(0, 1) & ~0x02) | 0x01);
    const latch = Math.floor(1_193_182 / 20); // 50 ms
    program(pit, 2, 0xb0, latch);
    expect(pit.systemControl.read(0, 1) & PORTB_OUT2).toBe(0);
    time.advance(49_000_000);
    expect(pit.systemControl.read(0, 1) & PORTB_OUT2).toBe(0);
    time.advance(1_000_000);
    expect(pit.systemControl.read(0, 1) & PORTB_OUT2).toBe(PORTB_OUT2);
    expect(pit.systemControl.read(0, 1) & 0x0f).toBe(0x01);
  });

  it('mode 0 counts through zero and the gate pauses it', () => {
    const { time, pit } = setup();
    pit.systemControl.write(0, 1, 0x01);
    program(pit, 2, 0xb0, 0xffff);
    time.advance(pitTicksToNs(0x100));
    expect(readCount(pit, 2)).toBe(0xfeff);
    pit.systemControl.write(0, 1, 0x00); // gate low: hold
    time.advance(pitTicksToNs(0x1000));
    expect(readCount(pit, 2)).toBe(0xfeff);
    pit.systemControl.write(0, 1, 0x01);
    time.advance(pitTicksToNs(0xff00));
    expect(readCount(pit, 2)).toBe(0xffff); // wrapped
    expect(pit.output(2)).toBe(true);
  });

  it('mode 0 on counter 0 raises IRQ0 once at terminal count and keeps it high', () => {
    const { time, sink, pit } = setup();
    program(pit, 0, 0x30, 1193);
    time.advance(pitTicksToNs(1192));
    expect(sink.level(0)).toBe(false);
    time.advance(pitTicksToNs(2));
    expect(sink.level(0)).toBe(true);
    time.advance(100_000_000);
    expect(sink.risesOf(0)).toBe(1);
    program(pit, 0, 0x30, 1193); // rewriting lowers OUT
    expect(sink.level(0)).toBe(false);
  });

  it('mode 4 (Linux one-shot clockevent) strobes IRQ0 once', () => {
    const { time, sink, pit } = setup();
    program(pit, 0, 0x38, 2000);
    time.advance(pitTicksToNs(3000) * 10);
    expect(sink.risesOf(0)).toBe(1);
  });

  it('coalesces tiny periods to the minimum host period', () => {
    const { time, sink, pit } = setup();
    program(pit, 0, 0x34, 2); // 1.7 µs period
    time.advance(PIT_MIN_PERIOD_NS * 10);
    expect(sink.risesOf(0)).toBe(10);
  });

  it('LSB-only and MSB-only access modes', () => {
    const { time, pit } = setup();
    pit.write(3, 1, 0x14); // counter 0 LSB only, mode 2
    pit.write(0, 1, 200);
    time.advance(pitTicksToNs(50));
    expect(pit.read(0, 1)).toBe(150);
    pit.write(3, 1, 0x24); // MSB only
    pit.write(0, 1, 0x10);
    time.advance(pitTicksToNs(0x100));
    expect(pit.read(0, 1)).toBe(0x0f);
  });

  it('BCD counting', () => {
    const { time, pit } = setup();
    program(pit, 1, 0x75, 0x1000); // counter 1, mode 2, BCD, count 1000
    time.advance(pitTicksToNs(1));
    expect(readCount(pit, 1)).toBe(0x0999);
  });

  it('ignores writes to bad ports and reads of the control port', () => {
    const { pit } = setup();
    pit.write(9, 1, 0xff);
    expect(pit.read(3, 1)).toBe(0xff);
  });

  it('round-trips its state', () => {
    const { time, pit } = setup();
    program(pit, 0, 0x34, 1193);
    time.advance(12345);
    const s = pit.save();
    const other = setup();
    other.time.set(12345);
    other.pit.restore(s);
    expect(other.pit.save()).toEqual(s);
    expect(readCount(other.pit, 0)).toBe(readCount(pit, 0));
  });
});
