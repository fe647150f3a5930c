import { describe, it, expect } from 'vitest';
import { IrqLine } from '../../../machine/irq.js';
import { GiB, MiB } from '../../../machine/layout.js';
import { FakeTime, RecordingSink } from '../../testing/fake-clock.js';
import { CmosRtc, REG_A_UIP, REG_C_IRQF, REG_C_PF, REG_C_UF, REG_C_AF } from './rtc.js';

const EPOCH = Date.UTC(2024, 1, 29, 13, 45, 30); // Thursday

function setup(opts: { ramBelow4G?: number; ramAbove4G?: number; onAlarm?: () => void } = {}) {
  const time = new FakeTime();
  const sink = new RecordingSink();
  const rtc = new CmosRtc({ clock: time.clock, timers: time.timers, irq: new IrqLine(sink, 8), epochMs: EPOCH, ...opts });
  const rd = (i: number): number => {
    rtc.write(0, 1, i);
    return rtc.read(1, 1);
  };
  const wr = (i: number, v: number): void => {
    rtc.write(0, 1, i);
    rtc.write(1, 1, v);
  };
  return { time, sink, rtc, rd, wr };
}

describe('CmosRtc (MC146818)', () => {
  it('reads the host time in BCD, 24-hour by default', () => {
    const { rd } = setup();
    expect([rd(0), rd(2), rd(4), rd(6), rd(7), rd(8), rd(9), rd(0x32)]).toEqual([
      0x30, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20,
    ]);
    expect(rd(0x0a)).toBe(0x26);
    expect(rd(0x0b)).toBe(0x02);
    expect(rd(0x0d)).toBe(0x80);
  });

  it('reads binary and 12-hour formats per register B', () => {
    const { rd, wr, time } = setup();
    wr(0x0b, 0x04); // binary, 12-hour
    expect(rd(4)).toBe(0x80 | 1); // 1 PM
    expect(rd(0)).toBe(30);
    expect(rd(9)).toBe(24);
    time.advance(60e9);
    expect(rd(2)).toBe(46);
  });

  it('sets UIP only in the last 244 µs of a second', () => {
    const { rd, time } = setup();
    expect(rd(0x0a) & REG_A_UIP).toBe(0);
    time.set(999_800_000);
    expect(rd(0x0a) & REG_A_UIP).toBe(REG_A_UIP);
    time.set(1_000_000_000);
    expect(rd(0x0a) & REG_A_UIP).toBe(0);
    expect(rd(0)).toBe(0x31);
  });

  it('lets the guest set the time with SET and keeps running from there', () => {
    const { rd, wr, rtc, time } = setup();
    wr(0x0b, 0x82); // SET
    wr(0x09, 0x30); // 2030
    wr(0x04, 0x08);
    expect(rd(0x09)).toBe(0x30); // frozen register reads back
    wr(0x0b, 0x02);
    expect(new Date(rtc.wallMs()).toISOString()).toBe('2030-03-01T08:45:30.000Z'); // Feb 29 2030 does not exist: normalized
    time.advance(2e9);
    expect(rd(0)).toBe(0x32);
  });

  it('writing one field while running changes only that field', () => {
    const { rd, wr } = setup();
    wr(0x02, 0x10);
    expect(rd(0x02)).toBe(0x10);
    expect(rd(0x04)).toBe(0x13);
    expect(rd(0x00)).toBe(0x30);
  });

  it('periodic interrupt on IRQ 8 at the programmed rate, acknowledged by reading C', () => {
    const { rd, wr, sink, time } = setup();
    wr(0x0a, 0x26); // 1024 Hz
    wr(0x0b, 0x42); // PIE
    time.advance(1e9 / 1024 + 1);
    expect(sink.level(8)).toBe(true);
    expect(rd(0x0c) & (REG_C_IRQF | REG_C_PF)).toBe(REG_C_IRQF | REG_C_PF);
    expect(sink.level(8)).toBe(false);
    expect(rd(0x0c)).toBe(0);
    time.advance(10 * (1e9 / 1024));
    expect(sink.risesOf(8)).toBe(2); // stays high until C is read
    wr(0x0b, 0x02);
    rd(0x0c);
    time.advance(1e9);
    expect(sink.risesOf(8)).toBe(2);
  });

  it('update-ended and alarm interrupts', () => {
    const { rd, wr, sink, time } = setup();
    wr(0x01, 0x32); // alarm at hh:mm:32
    wr(0x03, 0xc0);
    wr(0x05, 0xc0);
    wr(0x0b, 0x32); // AIE | UIE
    time.advance(1e9);
    expect(sink.level(8)).toBe(true);
    expect(rd(0x0c)).toBe(REG_C_IRQF | REG_C_UF);
    time.advance(1e9);
    expect(rd(0x0c)).toBe(REG_C_IRQF | REG_C_UF | REG_C_AF);
  });

  it('reports an alarm that asserts the interrupt (AIE) to the chipset (onAlarm: ACPI RTC_STS)', () => {
    let alarms = 0;
    const { rd, wr, time } = setup({ onAlarm: () => alarms++ });
    wr(0x01, 0x32); // alarm at hh:mm:32, AIE off: AF only
    wr(0x03, 0xc0);
    wr(0x05, 0xc0);
    wr(0x0b, 0x12); // UIE
    time.advance(2e9);
    expect(rd(0x0c) & REG_C_AF).toBe(REG_C_AF);
    expect(alarms).toBe(0);
    wr(0x01, 0x34); // hh:mm:34, with AIE
    wr(0x0b, 0x22);
    time.advance(1e9);
    expect(alarms).toBe(0);
    time.advance(1e9);
    expect(alarms).toBe(1);
    expect(rd(0x0c)).toBe(REG_C_IRQF | REG_C_UF | REG_C_AF);
  });

  it('sets UF for guests that poll register C', () => {
    const { rd, time } = setup();
    rd(0x0c);
    time.advance(1.5e9);
    expect(rd(0x0c)).toBe(REG_C_UF);
  });

  it('holds the memory-size bytes and ordinary CMOS RAM', () => {
    const { rd, wr } = setup({ ramBelow4G: 3 * GiB, ramAbove4G: 1 * GiB });
    expect(rd(0x15) | (rd(0x16) << 8)).toBe(640);
    expect(rd(0x30) | (rd(0x31) << 8)).toBe(0xffff);
    expect(rd(0x34) | (rd(0x35) << 8)).toBe((3 * GiB - 16 * MiB) / 65536);
    expect(rd(0x5b) | (rd(0x5c) << 8) | (rd(0x5d) << 16)).toBe(GiB / 65536);
    wr(0x40, 0xab);
    expect(rd(0x40)).toBe(0xab);
  });

  it('masks the index to 7 bits and records the NMI-disable bit', () => {
    const { rtc } = setup();
    rtc.write(0, 1, 0x80 | 0x40);
    rtc.write(1, 1, 0x5a);
    expect(rtc.nmiMasked).toBe(true);
    rtc.write(0, 1, 0x40);
    expect(rtc.read(1, 1)).toBe(0x5a);
    expect(rtc.nmiMasked).toBe(false);
    expect(rtc.read(0, 1)).toBe(0xff);
  });

  it('ignores nonsense times and read-only registers', () => {
    const { rd, wr } = setup();
    wr(0x0d, 0);
    expect(rd(0x0d)).toBe(0x80);
    wr(0x0b, 0x82);
    wr(0x08, 0xff);
    wr(0x0b, 0x02);
    expect(typeof rd(0)).toBe('number');
  });

  it('round-trips its state', () => {
    const { rtc, wr } = setup();
    wr(0x50, 0x11);
    wr(0x02, 0x01);
    const other = setup();
    other.rtc.restore(rtc.save());
    expect(other.rtc.save()).toEqual(rtc.save());
    expect(other.rd(0x02)).toBe(0x01);
  });
});
