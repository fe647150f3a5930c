import { describe, it, expect } from 'vitest';
import { Bus } from '../../machine/bus.js';
import { IrqLine } from '../../machine/irq.js';
import {
  ACPI_S3_SLP_TYP,
  ACPI_S5_SLP_TYP,
  PORT_ACPI_GPE0,
  PORT_ACPI_PM1A_CNT,
  PORT_ACPI_PM1A_EVT,
  PORT_ACPI_PM_TMR,
  PORT_RESET_CONTROL,
} from '../../machine/layout.js';
import { FakeTime, RecordingSink } from '../testing/fake-clock.js';
import {
  AcpiPm,
  GPE0_BLK_LEN,
  PM1_CNT_LEN,
  PM1_EVT_LEN,
  PM1_PWRBTN_EN,
  PM1_PWRBTN_STS,
  PM1_RTC_EN,
  PM1_RTC_STS,
  PM1_SCI_EN,
  PM1_SLP_EN,
  PM1_TMR_EN,
  PM1_TMR_STS,
  PM1_WAK_STS,
  PM_TMR_LEN,
  ResetControl,
} from './pm.js';

function setup(opts: { s3?: boolean } = {}) {
  const time = new FakeTime();
  const sink = new RecordingSink();
  const events: string[] = [];
  const pm = new AcpiPm({
    clock: time.clock,
    timers: time.timers,
    sci: new IrqLine(sink, 9),
    onPowerOff: () => events.push('off'),
    onSleep: (t) => events.push(`sleep${t}`),
    s3: opts.s3 ? { onSuspend: () => events.push('suspend'), onWake: () => events.push('wake') } : undefined,
  });
  const pio = new Bus('pio');
  pio.insert(PORT_ACPI_PM1A_EVT, PM1_EVT_LEN, pm.event, 'pm1a_evt');
  pio.insert(PORT_ACPI_PM1A_CNT, PM1_CNT_LEN, pm.control, 'pm1a_cnt');
  pio.insert(PORT_ACPI_PM_TMR, PM_TMR_LEN, pm.timer, 'pm_tmr');
  pio.insert(PORT_ACPI_GPE0, GPE0_BLK_LEN, pm.gpe0, 'gpe0');
  return { time, sink, events, pm, pio };
}

describe('AcpiPm', () => {
  it('powers off on SLP_EN with SLP_TYP = S5, and reports other sleep types', () => {
    const { pio, events } = setup();
    expect(pio.read(PORT_ACPI_PM1A_CNT, 2) & PM1_SCI_EN).toBe(PM1_SCI_EN);
    pio.write(PORT_ACPI_PM1A_CNT, 2, (ACPI_S5_SLP_TYP << 10) | PM1_SCI_EN); // SLP_TYP alone: nothing
    expect(events).toEqual([]);
    pio.write(PORT_ACPI_PM1A_CNT, 2, (ACPI_S5_SLP_TYP << 10) | PM1_SLP_EN);
    expect(events).toEqual(['off']);
    expect(pio.read(PORT_ACPI_PM1A_CNT, 2) & PM1_SLP_EN).toBe(0); // write-only
    pio.write(PORT_ACPI_PM1A_CNT, 2, (3 << 10) | PM1_SLP_EN);
    expect(events).toEqual(['off', 'sleep3']);
  });

  it('S3 is an unsupported sleep type without the s3 hooks', () => {
    const { pio, events, pm } = setup();
    pio.write(PORT_ACPI_PM1A_CNT, 2, (ACPI_S3_SLP_TYP << 10) | PM1_SLP_EN);
    expect(events).toEqual([`sleep${ACPI_S3_SLP_TYP}`]);
    expect(pm.suspended).toBe(false);
  });

  describe('S3', () => {
    const S3 = (ACPI_S3_SLP_TYP << 10) | PM1_SLP_EN;
    const sts = (pio: Bus): number => pio.read(PORT_ACPI_PM1A_EVT, 2);

    it('SLP_TYP(S3) | SLP_EN suspends; the power button wakes it whatever PWRBTN_EN says, with WAK_STS and PWRBTN_STS', () => {
      const { pio, pm, events, sink } = setup({ s3: true });
      pio.write(PORT_ACPI_PM1A_CNT, 2, ACPI_S3_SLP_TYP << 10); // SLP_TYP alone: nothing
      expect(events).toEqual([]);
      pio.write(PORT_ACPI_PM1A_CNT, 2, S3);
      expect(events).toEqual(['suspend']);
      expect(pm.suspended).toBe(true);
      expect(pm.unsupportedSleepCount).toBe(0);
      pio.write(PORT_ACPI_PM1A_CNT, 2, S3); // already asleep (no CPU runs; a stray write changes nothing)
      expect(events).toEqual(['suspend']);
      pm.wakeEvent(); // console input
      expect(events).toEqual(['suspend', 'wake']);
      expect(sts(pio) & (PM1_WAK_STS | PM1_PWRBTN_STS)).toBe(PM1_WAK_STS);
      pio.write(PORT_ACPI_PM1A_EVT, 2, PM1_WAK_STS); // write 1 to clear
      expect(sts(pio) & PM1_WAK_STS).toBe(0);
      pio.write(PORT_ACPI_PM1A_CNT, 2, S3);
      pm.pressPowerButton(); // PWRBTN_EN clear: still a wake event in a sleeping state
      expect(events).toEqual(['suspend', 'wake', 'suspend', 'wake']);
      expect(sts(pio) & (PM1_WAK_STS | PM1_PWRBTN_STS)).toBe(PM1_WAK_STS | PM1_PWRBTN_STS);
      expect(sink.level(9)).toBe(false); // WAK_STS has no enable: no SCI for it
      pm.wakeEvent(); // awake: nothing
      expect(events.length).toBe(4);
    });

    it('the RTC alarm sets RTC_STS, and wakes from S3 only while RTC_EN', () => {
      const { pio, pm, events, sink } = setup({ s3: true });
      pio.write(PORT_ACPI_PM1A_CNT, 2, S3);
      pm.rtcAlarm();
      expect(pm.suspended).toBe(true); // RTC_EN clear: not a wake event
      expect(sts(pio) & PM1_RTC_STS).toBe(PM1_RTC_STS);
      pio.write(PORT_ACPI_PM1A_EVT, 2, PM1_RTC_STS);
      pio.write(PORT_ACPI_PM1A_EVT + 2, 2, PM1_RTC_EN);
      pm.rtcAlarm();
      expect(events).toEqual(['suspend', 'wake']);
      expect(sts(pio) & (PM1_WAK_STS | PM1_RTC_STS)).toBe(PM1_WAK_STS | PM1_RTC_STS);
      expect(sink.level(9)).toBe(true); // RTC_STS & RTC_EN: the SCI, once the OS runs
      pio.write(PORT_ACPI_PM1A_EVT, 2, PM1_RTC_STS | PM1_WAK_STS);
      expect(sink.level(9)).toBe(false);
    });

    it('an enabled RTC_STS already pending wakes at once', () => {
      const { pio, pm, events } = setup({ s3: true });
      pio.write(PORT_ACPI_PM1A_EVT + 2, 2, PM1_RTC_EN);
      pm.rtcAlarm();
      pio.write(PORT_ACPI_PM1A_CNT, 2, S3);
      expect(events).toEqual(['suspend', 'wake']);
      expect(pm.suspended).toBe(false);
    });
  });

  it('PM timer counts at 3.579545 MHz and wraps at 24 bits', () => {
    const { pio, time } = setup();
    expect(pio.read(PORT_ACPI_PM_TMR, 4)).toBe(0);
    time.set(1e9);
    expect(pio.read(PORT_ACPI_PM_TMR, 4)).toBe(3_579_545);
    time.set(5e9);
    expect(pio.read(PORT_ACPI_PM_TMR, 4)).toBe((5 * 3_579_545) & 0xffffff);
    expect(pio.read(PORT_ACPI_PM_TMR, 4)).toBeLessThan(1 << 24);
  });

  it('power button: status is write-1-to-clear and asserts the SCI when enabled', () => {
    const { pio, pm, sink } = setup();
    pm.pressPowerButton();
    expect(pio.read(PORT_ACPI_PM1A_EVT, 2) & PM1_PWRBTN_STS).toBe(PM1_PWRBTN_STS);
    expect(sink.level(9)).toBe(false);
    pio.write(PORT_ACPI_PM1A_EVT + 2, 2, PM1_PWRBTN_EN);
    expect(pio.read(PORT_ACPI_PM1A_EVT + 2, 2)).toBe(PM1_PWRBTN_EN);
    expect(sink.level(9)).toBe(true);
    pio.write(PORT_ACPI_PM1A_EVT, 2, 0); // writing 0 clears nothing
    expect(sink.level(9)).toBe(true);
    pio.write(PORT_ACPI_PM1A_EVT, 2, PM1_PWRBTN_STS);
    expect(pio.read(PORT_ACPI_PM1A_EVT, 2) & PM1_PWRBTN_STS).toBe(0);
    expect(sink.level(9)).toBe(false);
  });

  it('TMR_STS on the bit-23 carry raises the SCI when TMR_EN', () => {
    const { pio, sink, time } = setup();
    pio.write(PORT_ACPI_PM1A_EVT, 4, PM1_TMR_EN << 16);
    time.set(2.4e9); // 2^23 ticks = 2.343 s
    expect(pio.read(PORT_ACPI_PM1A_EVT, 2) & PM1_TMR_STS).toBe(PM1_TMR_STS);
    expect(sink.level(9)).toBe(true);
    pio.write(PORT_ACPI_PM1A_EVT, 1, PM1_TMR_STS);
    expect(sink.level(9)).toBe(false);
  });

  it('GPE0 status is write-1-to-clear, enable is read/write', () => {
    const { pio } = setup();
    pio.write(PORT_ACPI_GPE0 + 4, 4, 0x0f);
    expect(pio.read(PORT_ACPI_GPE0 + 4, 4)).toBe(0x0f);
    expect(pio.read(PORT_ACPI_GPE0 + 5, 1)).toBe(0);
    expect(pio.read(PORT_ACPI_GPE0, 4)).toBe(0);
  });

  it('round-trips its state', () => {
    const { pm } = setup();
    pm.pressPowerButton();
    const other = setup();
    other.pm.restore(pm.save());
    expect(other.pm.save()).toEqual(pm.save());
  });
});

describe('ResetControl (0xcf9)', () => {
  it('resets on RST_CPU writes only', () => {
    let resets = 0;
    const rc = new ResetControl(() => resets++);
    const pio = new Bus('pio');
    pio.insert(PORT_RESET_CONTROL, 1, rc, 'reset');
    pio.write(PORT_RESET_CONTROL, 1, 0x02);
    expect(resets).toBe(0);
    expect(pio.read(PORT_RESET_CONTROL, 1)).toBe(0x02);
    pio.write(PORT_RESET_CONTROL, 1, 0x06);
    pio.write(PORT_RESET_CONTROL, 1, 0x0e);
    expect(resets).toBe(2);
  });
});
