/**
 * Motorola MC146818 real-time clock and its 128 bytes of CMOS RAM at ports 0x70 (index, bit 7 =
 * NMI disable) and 0x71 (data), as on a PC.
 *
 * The time registers are not stored: they are encoded on every read from the wall clock (UTC),
 * which is `epochMs` plus the machine clock plus whatever offset the guest set by writing the
 * time, in BCD or binary and 12- or 24-hour format as register B says. While register B's SET
 * bit is on, the time registers hold the guest's writes; clearing SET commits them. Register A's
 * update-in-progress bit is on for the last 244 µs of each second, as on the part.
 *
 * Interrupts on ISA IRQ 8 (raised until the guest reads register C): periodic (register A rate
 * select, PIE), alarm (AIE, with "don't care" alarm bytes 0xc0..0xff) and update-ended (UIE), all
 * scheduled on the TimerQueue only while enabled.
 *
 * CMOS RAM holds the memory-size bytes the BIOS would write (0x15/0x16 base, 0x17/0x18 and
 * 0x30/0x31 extended KiB, 0x34/0x35 64 KiB blocks above 16 MiB, 0x5b..0x5d 64 KiB blocks above
 * 4 GiB) and the century byte at 0x32.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import type { Clock, Timer, TimerQueue } from '../../../machine/clock.js';
import type { IrqLine } from '../../../machine/irq.js';
import { KiB, MiB } from '../../../machine/layout.js';

// Register indices
export const RTC_SECONDS = 0x00;
export const RTC_SECONDS_ALARM = 0x01;
export const RTC_MINUTES = 0x02;
export const RTC_MINUTES_ALARM = 0x03;
export const RTC_HOURS = 0x04;
export const RTC_HOURS_ALARM = 0x05;
export const RTC_DAY_OF_WEEK = 0x06;
export const RTC_DAY_OF_MONTH = 0x07;
export const RTC_MONTH = 0x08;
export const RTC_YEAR = 0x09;
export const RTC_REG_A = 0x0a;
export const RTC_REG_B = 0x0b;
export const RTC_REG_C = 0x0c;
export const RTC_REG_D = 0x0d;
export const CMOS_CENTURY = 0x32;
export const CMOS_BASE_MEM_LO = 0x15;
export const CMOS_EXT_MEM_LO = 0x17;
export const CMOS_EXT_MEM2_LO = 0x30;
export const CMOS_MEM_ABOVE_16M_LO = 0x34;
export const CMOS_MEM_ABOVE_4G = 0x5b;

// Register A
export const REG_A_UIP = 0x80; // update in progress (read-only)
const REG_A_DIVIDER_RESET = 0x60; // DV2..DV1 = 11: divider chain held in reset
const REG_A_RATE = 0x0f;
// Register B
export const REG_B_SET = 0x80;
export const REG_B_PIE = 0x40;
export const REG_B_AIE = 0x20;
export const REG_B_UIE = 0x10;
export const REG_B_DM_BINARY = 0x04;
export const REG_B_24H = 0x02;
// Register C
export const REG_C_IRQF = 0x80;
export const REG_C_PF = 0x40;
export const REG_C_AF = 0x20;
export const REG_C_UF = 0x10;
// Register D
export const REG_D_VRT = 0x80; // valid RAM and time

const NMI_DISABLE = 0x80;
const HOUR_PM = 0x80;
const ALARM_DONT_CARE = 0xc0;
/** The update cycle: UIP is set 244 µs before the seconds roll over. */
const UIP_WINDOW_MS = 0.244;
const TIME_REGS = [RTC_SECONDS, RTC_MINUTES, RTC_HOURS, RTC_DAY_OF_WEEK, RTC_DAY_OF_MONTH, RTC_MONTH, RTC_YEAR];

export interface CmosRtcOptions {
  clock: Clock;
  timers: TimerQueue;
  /** ISA IRQ 8. */
  irq: IrqLine;
  /** Wall-clock time (ms since the Unix epoch, UTC) at machine time 0. Default: now. */
  epochMs?: number;
  /** RAM below the 4 GiB hole, bytes (for the CMOS memory-size bytes). */
  ramBelow4G?: number;
  /** RAM above 4 GiB, bytes. */
  ramAbove4G?: number;
  /**
   * The alarm asserted the interrupt (AF with AIE): the chipset's RTC_STS in ACPI PM1, the
   * S3 wake event (src/devices/acpi/pm.ts, `rtcAlarm()`).
   */
  onAlarm?: () => void;
}

export interface CmosRtcState {
  cmos: number[];
  index: number;
  nmiDisabled: boolean;
  offsetMs: number;
  flagsC: number;
  lastUpdateSecond: number;
  /**
   * Wall-clock time (ms since the epoch) at machine time 0: a restored machine keeps the
   * guest's calendar where the snapshot left it (its clock continues from the snapshot's time).
   */
  epochMs: number;
}

export class CmosRtc implements BusDevice {
  private readonly cmos = new Uint8Array(128);
  private index = 0;
  private nmiDisabled = false;
  /** Guest-set time minus host time, ms. */
  private offsetMs = 0;
  private flagsC = 0;
  /** The wall-clock second (floor(ms/1000)) at which the last update-ended flag was raised. */
  private lastUpdateSecond: number;
  private periodicTimer: Timer | undefined;
  private updateTimer: Timer | undefined;
  private readonly clock: Clock;
  private readonly timers: TimerQueue;
  private readonly irq: IrqLine;
  private readonly onAlarm: (() => void) | undefined;
  private epochMs: number;

  constructor(options: CmosRtcOptions) {
    this.clock = options.clock;
    this.timers = options.timers;
    this.irq = options.irq;
    this.onAlarm = options.onAlarm;
    this.epochMs = options.epochMs ?? Date.now() - this.clock.nowNs() / 1e6;
    this.cmos[RTC_REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
    this.cmos[RTC_REG_B] = REG_B_24H;
    this.cmos[RTC_REG_D] = REG_D_VRT;
    this.fillMemorySize(options.ramBelow4G ?? 0, options.ramAbove4G ?? 0);
    this.lastUpdateSecond = Math.floor(this.wallMs() / 1000);
  }

  /** True while the guest has set bit 7 of the index port (NMI masked). */
  get nmiMasked(): boolean {
    return this.nmiDisabled;
  }

  /** The guest's idea of now, ms since the epoch (UTC). */
  wallMs(): number {
    return this.epochMs + this.clock.nowNs() / 1e6 + this.offsetMs;
  }

  read(offset: number, _size: AccessSize): number {
    if (offset !== 1) return 0xff; // the index register is write-only
    return this.readRegister(this.index);
  }

  write(offset: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    if (offset === 0) {
      this.index = value & 0x7f;
      this.nmiDisabled = (value & NMI_DISABLE) !== 0;
    } else if (offset === 1) {
      this.writeRegister(this.index, value);
    }
  }

  save(): CmosRtcState {
    return {
      cmos: Array.from(this.cmos),
      index: this.index,
      nmiDisabled: this.nmiDisabled,
      offsetMs: this.offsetMs,
      flagsC: this.flagsC,
      lastUpdateSecond: this.lastUpdateSecond,
      epochMs: this.epochMs,
    };
  }

  restore(s: CmosRtcState): void {
    for (let i = 0; i < 128; i++) this.cmos[i] = s.cmos[i] ?? 0;
    this.index = s.index & 0x7f;
    this.nmiDisabled = !!s.nmiDisabled;
    this.offsetMs = Number.isFinite(s.offsetMs) ? s.offsetMs : 0;
    this.flagsC = s.flagsC & 0xf0;
    this.lastUpdateSecond = Number.isFinite(s.lastUpdateSecond) ? s.lastUpdateSecond : 0;
    if (Number.isFinite(s.epochMs)) this.epochMs = s.epochMs;
    this.irq.set((this.flagsC & REG_C_IRQF) !== 0);
    this.schedulePeriodic();
    this.scheduleUpdate();
  }

  // ---- registers ----------------------------------------------------------------------------

  private readRegister(i: number): number {
    const b = this.cmos[RTC_REG_B]!;
    if ((b & REG_B_SET) === 0 && (TIME_REGS.includes(i) || i === CMOS_CENTURY)) {
      return this.encodeField(i, new Date(this.wallMs()));
    }
    switch (i) {
      case RTC_REG_A: {
        let a = this.cmos[RTC_REG_A]! & 0x7f;
        if (this.uip()) a |= REG_A_UIP;
        return a;
      }
      case RTC_REG_C: {
        this.catchUpUpdateFlag();
        const c = this.flagsC;
        this.flagsC = 0;
        this.irq.lower();
        return c;
      }
      case RTC_REG_D:
        return REG_D_VRT;
    }
    return this.cmos[i]!;
  }

  private writeRegister(i: number, v: number): void {
    switch (i) {
      case RTC_REG_A:
        this.cmos[i] = v & 0x7f;
        this.schedulePeriodic();
        this.scheduleUpdate();
        return;
      case RTC_REG_B: {
        const old = this.cmos[i]!;
        if (v & REG_B_SET) v &= ~REG_B_UIE; // SET clears UIE
        if ((old & REG_B_SET) === 0 && (v & REG_B_SET) !== 0) {
          // freeze: snapshot the time registers in the current format
          const d = new Date(this.wallMs());
          for (const r of [...TIME_REGS, CMOS_CENTURY]) this.cmos[r] = this.encodeField(r, d);
        }
        this.cmos[i] = v;
        if ((old & REG_B_SET) !== 0 && (v & REG_B_SET) === 0) this.commitTime(0);
        this.schedulePeriodic();
        this.scheduleUpdate();
        this.updateIrq();
        return;
      }
      case RTC_REG_C:
      case RTC_REG_D:
        return; // read-only
    }
    if (TIME_REGS.includes(i) || i === CMOS_CENTURY) {
      if (this.cmos[RTC_REG_B]! & REG_B_SET) {
        this.cmos[i] = v;
      } else {
        // set one field of the running clock, keeping the fraction of the second
        const now = this.wallMs();
        const d = new Date(now);
        for (const r of [...TIME_REGS, CMOS_CENTURY]) this.cmos[r] = this.encodeField(r, d);
        this.cmos[i] = v;
        this.commitTime(now - Math.floor(now / 1000) * 1000);
      }
      return;
    }
    this.cmos[i] = v;
    if (i === RTC_SECONDS_ALARM || i === RTC_MINUTES_ALARM || i === RTC_HOURS_ALARM) this.scheduleUpdate();
  }

  private uip(): boolean {
    if ((this.cmos[RTC_REG_B]! & REG_B_SET) !== 0 || this.dividerInReset()) return false;
    const ms = this.wallMs();
    return ms - Math.floor(ms / 1000) * 1000 >= 1000 - UIP_WINDOW_MS;
  }

  private dividerInReset(): boolean {
    return (this.cmos[RTC_REG_A]! & REG_A_DIVIDER_RESET) === REG_A_DIVIDER_RESET;
  }

  // ---- time encoding ------------------------------------------------------------------------

  private encodeField(i: number, d: Date): number {
    const b = this.cmos[RTC_REG_B]!;
    const enc = (n: number): number => ((b & REG_B_DM_BINARY) !== 0 ? n : toBcd(n));
    switch (i) {
      case RTC_SECONDS:
        return enc(d.getUTCSeconds());
      case RTC_MINUTES:
        return enc(d.getUTCMinutes());
      case RTC_HOURS: {
        const h = d.getUTCHours();
        if (b & REG_B_24H) return enc(h);
        return enc(h % 12 === 0 ? 12 : h % 12) | (h >= 12 ? HOUR_PM : 0);
      }
      case RTC_DAY_OF_WEEK:
        return enc(d.getUTCDay() + 1); // 1 = Sunday
      case RTC_DAY_OF_MONTH:
        return enc(d.getUTCDate());
      case RTC_MONTH:
        return enc(d.getUTCMonth() + 1);
      case RTC_YEAR:
        return enc(d.getUTCFullYear() % 100);
      case CMOS_CENTURY:
        return enc(Math.floor(d.getUTCFullYear() / 100));
    }
    return 0;
  }

  /** Decode the time registers held in CMOS RAM into the clock offset; `fractionMs` is kept. */
  private commitTime(fractionMs: number): void {
    const b = this.cmos[RTC_REG_B]!;
    const dec = (v: number): number => ((b & REG_B_DM_BINARY) !== 0 ? v : fromBcd(v));
    let hour: number;
    const hr = this.cmos[RTC_HOURS]!;
    if (b & REG_B_24H) hour = dec(hr);
    else hour = (dec(hr & 0x7f) % 12) + (hr & HOUR_PM ? 12 : 0);
    let century = dec(this.cmos[CMOS_CENTURY]!);
    if (century < 19 || century > 99) century = 20;
    const ms = Date.UTC(
      century * 100 + dec(this.cmos[RTC_YEAR]!),
      dec(this.cmos[RTC_MONTH]!) - 1,
      dec(this.cmos[RTC_DAY_OF_MONTH]!),
      hour,
      dec(this.cmos[RTC_MINUTES]!),
      dec(this.cmos[RTC_SECONDS]!),
    );
    if (!Number.isFinite(ms)) return; // nonsense from the guest: keep the old time
    const hostMs = this.epochMs + this.clock.nowNs() / 1e6;
    this.offsetMs = ms + fractionMs - hostMs;
    this.lastUpdateSecond = Math.floor(this.wallMs() / 1000);
    this.scheduleUpdate();
  }

  // ---- interrupts ---------------------------------------------------------------------------

  private updateIrq(): void {
    const b = this.cmos[RTC_REG_B]!;
    const active = this.flagsC & (b & (REG_B_PIE | REG_B_AIE | REG_B_UIE));
    if (active && (this.flagsC & REG_C_IRQF) === 0) {
      this.flagsC |= REG_C_IRQF;
      this.irq.raise();
    }
  }

  /** Raise UF if a second boundary passed since the last update flag (for guests that poll C). */
  private catchUpUpdateFlag(): void {
    if (this.dividerInReset() || this.cmos[RTC_REG_B]! & REG_B_SET) return;
    const sec = Math.floor(this.wallMs() / 1000);
    if (sec > this.lastUpdateSecond) {
      this.lastUpdateSecond = sec;
      this.flagsC |= REG_C_UF;
    }
  }

  private periodNs(): number {
    let rate = this.cmos[RTC_REG_A]! & REG_A_RATE;
    if (rate === 0) return 0;
    if (rate < 3) rate += 7; // rates 1 and 2 alias 8 and 9 with a 32.768 kHz time base
    return ((1 << (rate - 1)) * 1e9) / 32768;
  }

  private schedulePeriodic(): void {
    this.timers.cancel(this.periodicTimer);
    this.periodicTimer = undefined;
    const period = this.periodNs();
    if ((this.cmos[RTC_REG_B]! & REG_B_PIE) === 0 || period === 0 || this.dividerInReset()) return;
    const now = this.clock.nowNs();
    const deadline = (Math.floor(now / period) + 1) * period;
    this.periodicTimer = this.timers.schedule(deadline, () => {
      this.periodicTimer = undefined;
      this.flagsC |= REG_C_PF;
      this.updateIrq();
      this.schedulePeriodic();
    });
  }

  private scheduleUpdate(): void {
    this.timers.cancel(this.updateTimer);
    this.updateTimer = undefined;
    const b = this.cmos[RTC_REG_B]!;
    if ((b & (REG_B_UIE | REG_B_AIE)) === 0 || b & REG_B_SET || this.dividerInReset()) return;
    const wall = this.wallMs();
    const toNextSecondMs = Math.floor(wall / 1000) * 1000 + 1000 - wall;
    const deadline = this.clock.nowNs() + Math.max(1, Math.ceil(toNextSecondMs * 1e6));
    this.updateTimer = this.timers.schedule(deadline, () => {
      this.updateTimer = undefined;
      this.updateEnded();
      this.scheduleUpdate();
    });
  }

  private updateEnded(): void {
    this.lastUpdateSecond = Math.floor(this.wallMs() / 1000);
    this.flagsC |= REG_C_UF;
    const d = new Date(this.wallMs());
    const match = (alarm: number, reg: number): boolean =>
      (this.cmos[alarm]! & ALARM_DONT_CARE) === ALARM_DONT_CARE || this.cmos[alarm] === this.encodeField(reg, d);
    if (
      match(RTC_SECONDS_ALARM, RTC_SECONDS) &&
      match(RTC_MINUTES_ALARM, RTC_MINUTES) &&
      match(RTC_HOURS_ALARM, RTC_HOURS)
    ) {
      this.flagsC |= REG_C_AF;
      if (this.cmos[RTC_REG_B]! & REG_B_AIE) this.onAlarm?.();
    }
    this.updateIrq();
  }

  private fillMemorySize(below4G: number, above4G: number): void {
    const put16 = (at: number, v: number): void => {
      v = Math.max(0, Math.min(0xffff, Math.floor(v)));
      this.cmos[at] = v & 0xff;
      this.cmos[at + 1] = v >> 8;
    };
    put16(CMOS_BASE_MEM_LO, 640);
    const extKiB = below4G > MiB ? (below4G - MiB) / KiB : 0;
    put16(CMOS_EXT_MEM_LO, extKiB);
    put16(CMOS_EXT_MEM2_LO, extKiB);
    put16(CMOS_MEM_ABOVE_16M_LO, below4G > 16 * MiB ? (below4G - 16 * MiB) / (64 * KiB) : 0);
    const high = Math.max(0, Math.min(0xff_ffff, Math.floor(above4G / (64 * KiB))));
    this.cmos[CMOS_MEM_ABOVE_4G] = high & 0xff;
    this.cmos[CMOS_MEM_ABOVE_4G + 1] = (high >> 8) & 0xff;
    this.cmos[CMOS_MEM_ABOVE_4G + 2] = (high >> 16) & 0xff;
  }
}

function toBcd(n: number): number {
  return ((Math.floor(n / 10) % 10) << 4) | n % 10;
}

function fromBcd(v: number): number {
  return (v >> 4) * 10 + (v & 0xf);
}
