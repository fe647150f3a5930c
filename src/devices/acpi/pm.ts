/**
 * ACPI fixed hardware (ACPI 6.x ch. 4.8), the part the FADT points at:
 *
 *   PM1a_EVT_BLK  4 bytes  PM1 status (write 1 to clear) + PM1 enable
 *   PM1a_CNT_BLK  2 bytes  SCI_EN, SLP_TYP, SLP_EN: SLP_EN with SLP_TYP == ACPI_S5_SLP_TYP -> onPowerOff(),
 *                          with ACPI_S3_SLP_TYP -> the S3 sleeping state (when `s3` is given)
 *   PM_TMR_BLK    4 bytes  the 24-bit ACPI PM timer at 3.579545 MHz (PM_TIMER_32BIT = false)
 *   GPE0_BLK      8 bytes  GPE0 status (write 1 to clear) + GPE0 enable; nothing raises GPEs yet
 *
 * The SCI (level, ACPI_SCI_IRQ) is asserted while any enabled status bit is set: the power
 * button (`pressPowerButton()`, for a graceful shutdown from the host), and the PM timer's
 * bit-23 carry (TMR_STS) when TMR_EN is set. SCI_EN reads as 1: there is no SMI_CMD, so the
 * machine is always in ACPI mode.
 *
 * S3 (suspend to RAM, ACPI 6.5 §7.4.2.4 and §4.8.3.1): SLP_EN with S3's SLP_TYP enters the
 * sleeping state (`s3.onSuspend()`: the engine stops the vCPUs). A wake event ends it: the power
 * button (PWRBTN_STS; it wakes whatever PWRBTN_EN says, as the spec has it), the RTC alarm
 * (`rtcAlarm()`: RTC_STS, a wake event only while RTC_EN is set), or another wake source of the
 * platform (`wakeEvent()`: the console's input; no status bit of its own, like QEMU's "other"
 * wake reason). A wake sets WAK_STS and calls `s3.onWake()`: the engine restarts the boot CPU at
 * the FACS waking vector (src/boot/acpi/wake.ts). The other registers keep their values.
 *
 * Also here: `ResetControl`, the PIIX reset control register at 0xcf9 that the FADT's
 * RESET_REG names (Linux's default reboot method): writing RST_CPU (bit 2) resets -> onReset().
 */
import type { AccessSize, BusDevice } from '../../machine/bus.js';
import type { Clock, Timer, TimerQueue } from '../../machine/clock.js';
import type { IrqLine } from '../../machine/irq.js';
import { ACPI_PM_TIMER_HZ, ACPI_S3_SLP_TYP, ACPI_S5_SLP_TYP } from '../../machine/layout.js';

/** Block lengths the FADT advertises. */
export const PM1_EVT_LEN = 4;
export const PM1_CNT_LEN = 2;
export const PM_TMR_LEN = 4;
export const GPE0_BLK_LEN = 8;
/** The PM timer is 24 bits wide: FADT flag TMR_VAL_EXT must be 0. */
export const PM_TIMER_32BIT = false;
/** Reset register value the FADT's RESET_VALUE should carry (SYS_RST | RST_CPU). */
export const RESET_VALUE = 0x06;

// PM1 status / enable bits
export const PM1_TMR_STS = 1 << 0;
export const PM1_BM_STS = 1 << 4;
export const PM1_GBL_STS = 1 << 5;
export const PM1_PWRBTN_STS = 1 << 8;
export const PM1_SLPBTN_STS = 1 << 9;
export const PM1_RTC_STS = 1 << 10;
export const PM1_WAK_STS = 1 << 15;
export const PM1_TMR_EN = 1 << 0;
export const PM1_GBL_EN = 1 << 5;
export const PM1_PWRBTN_EN = 1 << 8;
export const PM1_SLPBTN_EN = 1 << 9;
export const PM1_RTC_EN = 1 << 10;
const PM1_STS_MASK = 0x8731;
const PM1_EN_MASK = 0x0721;
// PM1 control
export const PM1_SCI_EN = 1 << 0;
export const PM1_BM_RLD = 1 << 1;
export const PM1_GBL_RLS = 1 << 2;
export const PM1_SLP_TYP_SHIFT = 10;
export const PM1_SLP_EN = 1 << 13;
const PM1_CNT_WRITABLE = PM1_BM_RLD | (7 << PM1_SLP_TYP_SHIFT);

const TMR_CARRY_BIT = 1 << 23;
const NS_PER_S = 1e9;

/** PM timer ticks in `ns`, exact for any uptime. */
export function pmTimerTicks(ns: number): number {
  if (ns <= 0) return 0;
  const s = Math.floor(ns / NS_PER_S);
  return s * ACPI_PM_TIMER_HZ + Math.floor(((ns - s * NS_PER_S) * ACPI_PM_TIMER_HZ) / NS_PER_S);
}

export interface AcpiPmOptions {
  clock: Clock;
  timers: TimerQueue;
  /** The SCI line (GSI ACPI_SCI_IRQ, level). */
  sci: IrqLine;
  onPowerOff: () => void;
  /**
   * S3 support: entering the sleeping state (stop the vCPUs) and leaving it on a wake event
   * (restart them at the waking vector). Without it, S3's SLP_TYP is like any other unsupported one.
   */
  s3?: { onSuspend: () => void; onWake: () => void };
  /** Other sleep states (not supported: counted and ignored unless handled here). */
  onSleep?: (slpTyp: number) => void;
}

export interface AcpiPmState {
  pm1Status: number;
  pm1Enable: number;
  pm1Control: number;
  gpe0Status: number;
  gpe0Enable: number;
  /** The timer carry period (ticks >> 23) at which TMR_STS was last cleared. */
  timerCarryEpoch: number;
}

export class AcpiPm {
  private pm1Status = 0;
  private pm1Enable = 0;
  private pm1Control = PM1_SCI_EN;
  private gpe0Status = 0;
  private gpe0Enable = 0;
  private timerCarryEpoch = 0;
  private carryTimer: Timer | undefined;
  private sciLevel = false;
  private readonly clock: Clock;
  private readonly timers: TimerQueue;
  private readonly sci: IrqLine;
  private readonly onPowerOff: () => void;
  private readonly onSleep: ((slpTyp: number) => void) | undefined;
  private readonly s3: AcpiPmOptions['s3'];
  /** In the S3 sleeping state: the vCPUs are stopped until a wake event. */
  private sleeping = false;
  /** Sleep requests for states we do not implement. */
  unsupportedSleepCount = 0;

  /** PM1a event block (attach at PORT_ACPI_PM1A_EVT, PM1_EVT_LEN ports). */
  readonly event: BusDevice;
  /** PM1a control block (attach at PORT_ACPI_PM1A_CNT, PM1_CNT_LEN ports). */
  readonly control: BusDevice;
  /** PM timer (attach at PORT_ACPI_PM_TMR, PM_TMR_LEN ports). */
  readonly timer: BusDevice;
  /** GPE0 block (attach at PORT_ACPI_GPE0, GPE0_BLK_LEN ports). */
  readonly gpe0: BusDevice;

  constructor(options: AcpiPmOptions) {
    this.clock = options.clock;
    this.timers = options.timers;
    this.sci = options.sci;
    this.onPowerOff = options.onPowerOff;
    this.onSleep = options.onSleep;
    this.s3 = options.s3;
    this.event = registerFile(
      () => this.status() | (this.pm1Enable << 16),
      (value, mask) => {
        const sts = value & mask & PM1_STS_MASK;
        if (sts & PM1_TMR_STS) this.timerCarryEpoch = this.carryEpochNow();
        this.pm1Status &= ~sts;
        if (mask >>> 16) {
          this.pm1Enable = ((this.pm1Enable & ~(mask >>> 16)) | ((value >>> 16) & (mask >>> 16))) & PM1_EN_MASK;
          this.scheduleCarry();
        }
        this.updateSci();
      },
    );
    this.control = registerFile(
      () => this.pm1Control,
      (value, mask) => this.writeControl(value, mask),
    );
    this.timer = registerFile(
      () => this.timerValue(),
      () => {}, // read-only
    );
    this.gpe0 = {
      read: (offset, size) => {
        const reg = offset < 4 ? this.gpe0Status : this.gpe0Enable;
        return extract(reg, offset & 3, size);
      },
      write: (offset, size, value) => {
        const { v, m } = place(offset & 3, size, value);
        if (offset < 4) this.gpe0Status = (this.gpe0Status & ~(v & m)) >>> 0;
        else this.gpe0Enable = ((this.gpe0Enable & ~m) | (v & m)) >>> 0;
        this.updateSci();
      },
    };
  }

  /**
   * The host's power button: sets PWRBTN_STS (the guest's ACPI driver then shuts down); in S3
   * it wakes the machine whatever PWRBTN_EN says (ACPI 6.5 table 4.11).
   */
  pressPowerButton(): void {
    this.pm1Status |= PM1_PWRBTN_STS;
    if (this.sleeping) this.wake();
    this.updateSci();
  }

  /**
   * The RTC asserted its alarm interrupt: RTC_STS. While RTC_EN is set it is a power
   * management event: the SCI in S0, a wake event in S3.
   */
  rtcAlarm(): void {
    this.pm1Status |= PM1_RTC_STS;
    if (this.sleeping && this.pm1Enable & PM1_RTC_EN) this.wake();
    this.updateSci();
  }

  /** A wake source without a PM1 status bit (the console's input): wakes the machine from S3. */
  wakeEvent(): void {
    if (this.sleeping) this.wake();
  }

  /** True while in S3 (the vCPUs must not run). */
  get suspended(): boolean {
    return this.sleeping;
  }

  /** Current PM timer value (24 bits). */
  timerValue(): number {
    return pmTimerTicks(this.clock.nowNs()) & 0xff_ffff;
  }

  save(): AcpiPmState {
    return {
      pm1Status: this.pm1Status,
      pm1Enable: this.pm1Enable,
      pm1Control: this.pm1Control,
      gpe0Status: this.gpe0Status,
      gpe0Enable: this.gpe0Enable,
      timerCarryEpoch: this.timerCarryEpoch,
    };
  }

  restore(s: AcpiPmState): void {
    this.pm1Status = s.pm1Status & PM1_STS_MASK;
    this.pm1Enable = s.pm1Enable & PM1_EN_MASK;
    this.pm1Control = (s.pm1Control & PM1_CNT_WRITABLE) | PM1_SCI_EN;
    this.gpe0Status = s.gpe0Status >>> 0;
    this.gpe0Enable = s.gpe0Enable >>> 0;
    this.timerCarryEpoch = Math.max(0, Math.floor(s.timerCarryEpoch) || 0);
    this.scheduleCarry();
    this.updateSci();
  }

  private carryEpochNow(): number {
    return Math.floor(pmTimerTicks(this.clock.nowNs()) / TMR_CARRY_BIT);
  }

  private status(): number {
    let s = this.pm1Status;
    if (this.carryEpochNow() > this.timerCarryEpoch) s |= PM1_TMR_STS;
    return s;
  }

  private writeControl(value: number, mask: number): void {
    const v = value & mask;
    this.pm1Control = ((this.pm1Control & ~(mask & PM1_CNT_WRITABLE)) | (v & PM1_CNT_WRITABLE)) | PM1_SCI_EN;
    if (v & PM1_SLP_EN) {
      const typ = (this.pm1Control >> PM1_SLP_TYP_SHIFT) & 7;
      if (typ === ACPI_S5_SLP_TYP) this.onPowerOff();
      else if (typ === ACPI_S3_SLP_TYP && this.s3) this.suspend();
      else if (this.onSleep) this.onSleep(typ);
      else this.unsupportedSleepCount++;
    }
  }

  /**
   * Enter S3. The OS cleared WAK_STS before (Linux does, in acpi_hw_legacy_sleep); an RTC alarm
   * already pending with RTC_EN wakes at once, as the hardware's wake logic would.
   */
  private suspend(): void {
    if (this.sleeping) return;
    this.sleeping = true;
    this.s3!.onSuspend();
    if (this.pm1Status & this.pm1Enable & PM1_RTC_STS) this.wake();
  }

  /** A wake event in S3: WAK_STS, then back to S0 through the waking vector. */
  private wake(): void {
    this.sleeping = false;
    this.pm1Status |= PM1_WAK_STS;
    this.s3!.onWake();
  }

  private updateSci(): void {
    const level = (this.status() & this.pm1Enable) !== 0 || (this.gpe0Status & this.gpe0Enable) !== 0;
    if (level !== this.sciLevel) {
      this.sciLevel = level;
      this.sci.set(level);
    }
  }

  /** While TMR_EN is set, wake at the next bit-23 carry of the PM timer to raise the SCI. */
  private scheduleCarry(): void {
    this.timers.cancel(this.carryTimer);
    this.carryTimer = undefined;
    if ((this.pm1Enable & PM1_TMR_EN) === 0) return;
    const nextCarryTicks = (this.carryEpochNow() + 1) * TMR_CARRY_BIT;
    const deadline = Math.ceil((nextCarryTicks * NS_PER_S) / ACPI_PM_TIMER_HZ);
    this.carryTimer = this.timers.schedule(Math.max(deadline, this.clock.nowNs()), () => {
      this.carryTimer = undefined;
      this.updateSci();
      this.scheduleCarry();
    });
  }
}

export class ResetControl implements BusDevice {
  private value = 0;
  static readonly SYS_RST = 0x02;
  static readonly RST_CPU = 0x04;
  static readonly FULL_RST = 0x08;

  constructor(private readonly onReset: () => void) {}

  read(): number {
    return this.value;
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    this.value = value & (ResetControl.SYS_RST | ResetControl.FULL_RST);
    if (value & ResetControl.RST_CPU) this.onReset();
  }
}

/** A little-endian register of up to 4 bytes accessed at any byte offset and size. */
function registerFile(get: () => number, set: (value: number, mask: number) => void): BusDevice {
  return {
    read: (offset, size) => extract(get(), offset, size),
    write: (offset, size, value) => {
      if (offset > 3) return;
      const { v, m } = place(offset, size, value);
      set(v, m);
    },
  };
}

function extract(reg: number, offset: number, size: AccessSize): number {
  if (offset > 3) return 0;
  const v = reg >>> (offset * 8);
  return size === 4 ? v >>> 0 : v & (size === 1 ? 0xff : 0xffff);
}

function place(offset: number, size: AccessSize, value: number): { v: number; m: number } {
  const shift = offset * 8;
  const bits = size === 4 ? 0xffff_ffff : size === 1 ? 0xff : 0xffff;
  return { v: (value << shift) >>> 0, m: (bits << shift) >>> 0 };
}
