/**
 * The local APIC of the (single, for now) software vCPU, xAPIC mode, as the Intel SDM vol. 3
 * ch. 10 describes it: a 4 KiB MMIO register page (ID, version, TPR/APR/PPR, EOI, LDR/DFR,
 * spurious-vector register, ISR/TMR/IRR, ESR, ICR, the LVT entries and the timer).
 *
 * It is the software CPU's `CpuInterruptController`. Interrupts arrive from the IOAPIC
 * (`acceptInterrupt`), the timer and self-IPIs into IRR; the CPU's INTA moves the highest one to
 * ISR; EOI clears it and, for level-triggered vectors, tells the IOAPIC (`onLevelEoi`).
 * `hasInterrupt()` is a cached flag recomputed only when state changes.
 *
 * Virtual wire: the 8259 PIC's INTR reaches the CPU through LINT0 when LINT0 is programmed as
 * ExtINT and unmasked, or while the APIC is disabled (globally via IA32_APIC_BASE, or not yet
 * software-enabled via SVR, as after reset). Like QEMU's BIOS-less reset, LINT0 of the BSP
 * starts as ExtINT.
 *
 * IA32_APIC_BASE (the CPU validates it, then calls apicBaseChanged): the register page moves
 * where the guest puts it (the machine remaps it through onRelocate), and a globally disabled
 * APIC's page answers nothing (reads all-ones, writes dropped) while CPUID hides the APIC.
 *
 * The timer runs from LAPIC_BUS_FREQUENCY_HZ divided per the divide configuration register; the
 * current count is computed lazily from the machine clock and expiry is a TimerQueue timer.
 * One-shot and periodic modes; TSC-deadline mode is not offered (CPUID must not advertise it).
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import type { Clock, Timer, TimerQueue } from '../../../machine/clock.js';
import type { CpuInterruptController } from '../../../machine/interrupts.js';
import { LAPIC_BUS_FREQUENCY_HZ, LAPIC_START } from '../../../machine/layout.js';
import {
  DELIVERY_EXTINT,
  DELIVERY_FIXED,
  DELIVERY_INIT,
  DELIVERY_LOWEST_PRIORITY,
  DELIVERY_NMI,
  DELIVERY_STARTUP,
  type ApicMessageTarget,
} from '../ioapic/ioapic.js';

// Register offsets in the APIC page
export const APIC_ID = 0x020;
export const APIC_VERSION = 0x030;
export const APIC_TPR = 0x080;
export const APIC_APR = 0x090;
export const APIC_PPR = 0x0a0;
export const APIC_EOI = 0x0b0;
export const APIC_RRD = 0x0c0;
export const APIC_LDR = 0x0d0;
export const APIC_DFR = 0x0e0;
export const APIC_SVR = 0x0f0;
export const APIC_ISR = 0x100; // 8 registers, 0x10 apart
export const APIC_TMR = 0x180;
export const APIC_IRR = 0x200;
export const APIC_ESR = 0x280;
export const APIC_ICR_LOW = 0x300;
export const APIC_ICR_HIGH = 0x310;
export const APIC_LVT_TIMER = 0x320;
export const APIC_LVT_THERMAL = 0x330;
export const APIC_LVT_PERF = 0x340;
export const APIC_LVT_LINT0 = 0x350;
export const APIC_LVT_LINT1 = 0x360;
export const APIC_LVT_ERROR = 0x370;
export const APIC_TIMER_INITIAL_COUNT = 0x380;
export const APIC_TIMER_CURRENT_COUNT = 0x390;
export const APIC_TIMER_DIVIDE = 0x3e0;

/** Version 0x14 (integrated APIC), max LVT entry 5 (timer, thermal, perf, LINT0, LINT1, error). */
export const APIC_VERSION_VALUE = 0x14 | (5 << 16);

export const SVR_APIC_ENABLED = 1 << 8;
export const SVR_FOCUS_DISABLED = 1 << 9;
export const LVT_MASKED = 1 << 16;
export const LVT_DELIVERY_MODE_SHIFT = 8;
export const LVT_TIMER_PERIODIC = 1 << 17;
export const LVT_TIMER_MODE_MASK = 3 << 17;
export const ICR_DEST_LOGICAL = 1 << 11;
export const ICR_LEVEL_ASSERT = 1 << 14;
export const ICR_TRIGGER_LEVEL = 1 << 15;
export const ICR_SHORTHAND_SHIFT = 18;
export const SHORTHAND_NONE = 0;
export const SHORTHAND_SELF = 1;
export const SHORTHAND_ALL_INCLUDING_SELF = 2;
export const SHORTHAND_ALL_EXCLUDING_SELF = 3;
export const ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
export const ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6;
export const ESR_ILLEGAL_REGISTER = 1 << 7;

/** IA32_APIC_BASE MSR (0x1b) bits. */
export const APIC_BASE_BSP = 1 << 8;
export const APIC_BASE_ENABLE = 1 << 11;
/** Bits 12..31 of IA32_APIC_BASE: the register page's physical address (below 4 GiB here). */
const APIC_BASE_ADDRESS = 0xffff_f000;

// LVT indices: timer, thermal, perf, LINT0, LINT1, error (register order)
const LVT_TIMER = 0;
const LVT_LINT0 = 3;
const LVT_ERROR = 5;
/** Writable bits per LVT entry (delivery status and remote IRR are read-only). */
const LVT_WRITABLE = [0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff] as const;

/** Never schedule periodic timer callbacks more often than this (host time); see coalescing. */
export const LAPIC_MIN_TIMER_PERIOD_NS = 50_000;

/** The 8259 PIC as LINT0 sees it (PicPair satisfies this). */
export interface ExtIntSource {
  hasInterrupt(): boolean;
  acknowledge(): number;
  onOutput?(listener: (level: boolean) => void): void;
}

/** An INIT, STARTUP or other IPI this APIC sent to other CPUs (for SMP later). */
export interface Ipi {
  deliveryMode: number;
  vector: number;
  destination: number;
  logical: boolean;
  shorthand: number;
  levelAssert: boolean;
  levelTriggered: boolean;
}

export interface LocalApicOptions {
  clock: Clock;
  timers: TimerQueue;
  /** The PIC behind LINT0 (virtual wire). */
  pic?: ExtIntSource;
  /** Initial APIC ID (default 0). */
  id?: number;
  /** Bootstrap processor (default true): sets APIC_BASE.BSP and LINT0 = ExtINT at reset. */
  bsp?: boolean;
  /** Called on EOI of a level-triggered vector (connect to IoApic.eoi). */
  onLevelEoi?: (vector: number) => void;
  /** Called for IPIs addressed to other CPUs, and for INIT/STARTUP (SMP hook). */
  onIpi?: (ipi: Ipi) => void;
  /**
   * The guest moved the APIC's register page (IA32_APIC_BASE): map it at `base` instead of
   * `old`. Returns false when the new place is taken (the page then answers nowhere).
   */
  onRelocate?: (old: number, base: number) => boolean;
}

export interface LocalApicState {
  apicBase: number;
  id: number;
  tpr: number;
  ldr: number;
  dfr: number;
  svr: number;
  esr: number;
  esrPending: number;
  icrLow: number;
  icrHigh: number;
  lvt: number[];
  irr: number[];
  isr: number[];
  tmr: number[];
  divideConfig: number;
  initialCount: number;
  /** Timer start relative to the machine clock. */
  timerStartNs: number;
  /**
   * An expiry is armed and not yet delivered (a one-shot count that ran out just before the
   * snapshot, its timer not yet run, still interrupts after the restore).
   */
  timerPending: boolean;
  nmiPending: boolean;
  extIntPending: boolean;
}

export class LocalApic implements CpuInterruptController, ApicMessageTarget, BusDevice {
  private apicBase: number;
  private id: number;
  private tpr = 0;
  private ldr = 0;
  private dfr = 0xffff_ffff;
  private svr = 0xff;
  private esr = 0;
  private esrPending = 0;
  private icrLow = 0;
  private icrHigh = 0;
  private readonly lvt = new Uint32Array(6);
  private readonly irr = new Uint32Array(8);
  private readonly isr = new Uint32Array(8);
  private readonly tmr = new Uint32Array(8);
  private divideConfig = 0;
  private tickNs = 2e9 / LAPIC_BUS_FREQUENCY_HZ;
  private initialCount = 0;
  private timerStartNs = 0;
  private timer: Timer | undefined;
  private timerDeadline = Infinity;
  /**
   * A one-shot count ran down to zero: the timer is stopped, its current count stays 0 in every
   * mode (a switch to periodic does not restart it) until the next initial-count write.
   */
  private countedOut = false;
  private nmiPending = false;
  private extIntPending = false;
  /** Cached: something deliverable (the hot-path answer of hasInterrupt). */
  private pending = false;

  private readonly clock: Clock;
  private readonly timers: TimerQueue;
  private readonly pic: ExtIntSource | undefined;
  private readonly onLevelEoi: ((vector: number) => void) | undefined;
  private readonly onIpi: ((ipi: Ipi) => void) | undefined;
  private readonly onRelocate: ((old: number, base: number) => boolean) | undefined;
  /** Guest accesses to undefined registers or with unsupported sizes. */
  badAccessCount = 0;
  /** Timer expiries merged because the host ran late or the period was below the minimum. */
  coalescedTicks = 0;

  constructor(options: LocalApicOptions) {
    this.clock = options.clock;
    this.timers = options.timers;
    this.pic = options.pic;
    this.onLevelEoi = options.onLevelEoi;
    this.onIpi = options.onIpi;
    this.onRelocate = options.onRelocate;
    this.id = (options.id ?? 0) & 0xff;
    const bsp = options.bsp ?? true;
    this.apicBase = (LAPIC_START | APIC_BASE_ENABLE | (bsp ? APIC_BASE_BSP : 0)) >>> 0;
    this.lvt.fill(LVT_MASKED);
    if (bsp) this.lvt[LVT_LINT0] = DELIVERY_EXTINT << LVT_DELIVERY_MODE_SHIFT;
    this.setDivide(0);
    this.pic?.onOutput?.(() => this.update());
    this.update();
  }

  // ---- CpuInterruptController ---------------------------------------------------------------

  hasInterrupt(): boolean {
    return this.pending;
  }

  acknowledge(): number {
    if (this.softwareEnabled()) {
      const v = this.deliverableVector();
      if (v >= 0) {
        clearBit(this.irr, v);
        setBit(this.isr, v);
        this.update();
        return v;
      }
    }
    if (this.extIntPending) {
      this.extIntPending = false;
      const v = this.pic ? this.pic.acknowledge() : this.svr & 0xff;
      this.update();
      return v;
    }
    if (this.pic && this.picRouted()) {
      const v = this.pic.acknowledge();
      this.update();
      return v;
    }
    // nothing left at INTA time: the spurious vector, not put in service
    return this.svr & 0xff;
  }

  hasNmi(): boolean {
    return this.nmiPending;
  }

  takeNmi(): boolean {
    if (!this.nmiPending) return false;
    this.nmiPending = false;
    return true;
  }

  nextEventNs(): number {
    return this.timerDeadline;
  }

  // ---- ApicMessageTarget (from the IOAPIC) --------------------------------------------------

  matchesDestination(dest: number, logical: boolean): boolean {
    if (!logical) return dest === 0xff || dest === this.id;
    if (dest === 0xff) return true;
    const ldr = this.ldr >>> 24;
    if ((this.dfr >>> 28) === 0xf) return (ldr & dest) !== 0; // flat model
    // cluster model: high nibble cluster, low nibble bitmap
    return (ldr & 0xf0) === (dest & 0xf0) && (ldr & dest & 0x0f) !== 0;
  }

  acceptInterrupt(vector: number, deliveryMode: number, levelTriggered: boolean): void {
    switch (deliveryMode) {
      case DELIVERY_FIXED:
      case DELIVERY_LOWEST_PRIORITY:
        this.setIrr(vector & 0xff, levelTriggered);
        break;
      case DELIVERY_NMI:
        this.nmiPending = true;
        break;
      case DELIVERY_EXTINT:
        this.extIntPending = true;
        this.update();
        break;
      default:
        this.badAccessCount++;
    }
  }

  // ---- IA32_APIC_BASE, for the CPU's RDMSR/WRMSR ---------------------------------------------

  get apicBaseMsr(): number {
    return this.apicBase;
  }

  /** Global enable/disable: a disabled APIC's page reads all-ones, ignores writes, masks its LVTs. */
  set apicBaseMsr(value: number) {
    this.apicBaseChanged(value);
  }

  /** IA32_APIC_BASE written by the CPU (validated there): the base and EN apply; BSP is fixed. */
  apicBaseChanged(value: number): void {
    const old = (this.apicBase & APIC_BASE_ADDRESS) >>> 0;
    const base = (value & APIC_BASE_ADDRESS) >>> 0;
    this.apicBase = (base | (this.apicBase & APIC_BASE_BSP) | (value & APIC_BASE_ENABLE)) >>> 0;
    if (base !== old) this.onRelocate?.(old, base);
    if (!this.globallyEnabled()) {
      this.svr &= ~SVR_APIC_ENABLED;
      for (let i = 0; i < 6; i++) this.lvt[i] = this.lvt[i]! | LVT_MASKED;
    }
    this.update();
  }

  // ---- MMIO ---------------------------------------------------------------------------------

  read(offset: number, size: AccessSize): number {
    if (!this.globallyEnabled()) return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff; // nothing answers
    const v = this.readRegister(offset & 0xff0);
    if (size === 4 && (offset & 0xf) === 0) return v >>> 0;
    if ((offset & 0xf) > 3) return 0;
    return (v >>> ((offset & 3) * 8)) & (size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff);
  }

  write(offset: number, size: AccessSize, value: number): void {
    if (!this.globallyEnabled()) return;
    if (size !== 4 || (offset & 0xf) !== 0) {
      // the SDM requires 32-bit aligned accesses; others are undefined: ignore
      this.badAccessCount++;
      return;
    }
    this.writeRegister(offset & 0xff0, value >>> 0);
  }

  /** Current timer count register (also for tests). */
  currentCount(): number {
    if (this.initialCount === 0 || this.countedOut) return 0;
    const elapsed = Math.floor((this.clock.nowNs() - this.timerStartNs) / this.tickNs);
    if (this.lvt[LVT_TIMER]! & LVT_TIMER_PERIODIC) return this.initialCount - (elapsed % this.initialCount);
    return elapsed >= this.initialCount ? 0 : this.initialCount - elapsed;
  }

  save(): LocalApicState {
    return {
      apicBase: this.apicBase,
      id: this.id,
      tpr: this.tpr,
      ldr: this.ldr,
      dfr: this.dfr,
      svr: this.svr,
      esr: this.esr,
      esrPending: this.esrPending,
      icrLow: this.icrLow,
      icrHigh: this.icrHigh,
      lvt: Array.from(this.lvt),
      irr: Array.from(this.irr),
      isr: Array.from(this.isr),
      tmr: Array.from(this.tmr),
      divideConfig: this.divideConfig,
      initialCount: this.initialCount,
      timerStartNs: this.timerStartNs,
      timerPending: this.timer !== undefined,
      nmiPending: this.nmiPending,
      extIntPending: this.extIntPending,
    };
  }

  restore(s: LocalApicState): void {
    const old = (this.apicBase & APIC_BASE_ADDRESS) >>> 0;
    const base = (s.apicBase & APIC_BASE_ADDRESS) >>> 0;
    this.apicBase = (base | (s.apicBase & (APIC_BASE_BSP | APIC_BASE_ENABLE))) >>> 0;
    if (base !== old) this.onRelocate?.(old, base);
    this.id = s.id & 0xff;
    this.tpr = s.tpr & 0xff;
    this.ldr = (s.ldr & 0xff00_0000) >>> 0;
    this.dfr = (s.dfr | 0x0fff_ffff) >>> 0;
    this.svr = s.svr & 0x3ff;
    this.esr = s.esr & 0xff;
    this.esrPending = s.esrPending & 0xff;
    this.icrLow = s.icrLow >>> 0;
    this.icrHigh = (s.icrHigh & 0xff00_0000) >>> 0;
    for (let i = 0; i < 6; i++) this.lvt[i] = (s.lvt[i] ?? LVT_MASKED) & (LVT_WRITABLE[i]! | 0);
    for (let i = 0; i < 8; i++) {
      this.irr[i] = s.irr[i] ?? 0;
      this.isr[i] = s.isr[i] ?? 0;
      this.tmr[i] = s.tmr[i] ?? 0;
    }
    this.setDivide(s.divideConfig);
    this.initialCount = s.initialCount >>> 0;
    this.timerStartNs = Number.isFinite(s.timerStartNs) ? s.timerStartNs : this.clock.nowNs();
    this.nmiPending = !!s.nmiPending;
    this.extIntPending = !!s.extIntPending;
    // a one-shot count that ran out and was delivered stays stopped (the state does not record a
    // later switch to periodic mode: such a timer restarts counting after a restore)
    this.countedOut = false; // first: currentCount() below reads it
    this.countedOut = (this.lvt[LVT_TIMER]! & LVT_TIMER_MODE_MASK) === 0 && this.initialCount !== 0 && s.timerPending !== true && this.currentCount() === 0;
    // a restored one-shot count that is already over was delivered before the snapshot
    this.timers.cancel(this.timer);
    this.timer = undefined;
    this.rescheduleTimer(s.timerPending === true);
    this.update();
  }

  // ---- internals ----------------------------------------------------------------------------

  private globallyEnabled(): boolean {
    return (this.apicBase & APIC_BASE_ENABLE) !== 0;
  }

  private softwareEnabled(): boolean {
    return this.globallyEnabled() && (this.svr & SVR_APIC_ENABLED) !== 0;
  }

  /** Is the PIC's INTR wired to the CPU right now (virtual wire)? */
  private picRouted(): boolean {
    if (!this.softwareEnabled()) return true;
    const lint0 = this.lvt[LVT_LINT0]!;
    return (lint0 & LVT_MASKED) === 0 && ((lint0 >> LVT_DELIVERY_MODE_SHIFT) & 7) === DELIVERY_EXTINT;
  }

  private ppr(): number {
    const isrv = highestBit(this.isr);
    const isrClass = isrv < 0 ? 0 : isrv & 0xf0;
    return (this.tpr & 0xf0) >= isrClass ? this.tpr : isrClass;
  }

  /** Highest IRR vector whose class beats the processor priority, or -1. */
  private deliverableVector(): number {
    const v = highestBit(this.irr);
    if (v < 0) return -1;
    return (v & 0xf0) > (this.ppr() & 0xf0) ? v : -1;
  }

  private update(): void {
    this.pending =
      (this.softwareEnabled() && this.deliverableVector() >= 0) ||
      this.extIntPending ||
      (this.pic !== undefined && this.picRouted() && this.pic.hasInterrupt());
  }

  private setIrr(vector: number, levelTriggered: boolean): void {
    if (vector < 16) {
      this.raiseError(ESR_RECEIVE_ILLEGAL_VECTOR);
      return;
    }
    setBit(this.irr, vector);
    if (levelTriggered) setBit(this.tmr, vector);
    else clearBit(this.tmr, vector);
    this.update();
  }

  private raiseError(bit: number): void {
    this.esrPending |= bit;
    const lvt = this.lvt[LVT_ERROR]!;
    if (this.softwareEnabled() && (lvt & LVT_MASKED) === 0 && (lvt & 0xff) >= 16) {
      setBit(this.irr, lvt & 0xff);
      clearBit(this.tmr, lvt & 0xff);
      this.update();
    }
  }

  private readRegister(reg: number): number {
    switch (reg) {
      case APIC_ID:
        return (this.id << 24) >>> 0;
      case APIC_VERSION:
        return APIC_VERSION_VALUE;
      case APIC_TPR:
        return this.tpr;
      case APIC_APR:
        return 0;
      case APIC_PPR:
        return this.ppr();
      case APIC_EOI:
      case APIC_RRD:
        return 0;
      case APIC_LDR:
        return this.ldr;
      case APIC_DFR:
        return this.dfr;
      case APIC_SVR:
        return this.svr;
      case APIC_ESR:
        return this.esr;
      case APIC_ICR_LOW:
        return this.icrLow; // delivery status always idle: IPIs are delivered at once
      case APIC_ICR_HIGH:
        return this.icrHigh;
      case APIC_LVT_TIMER:
      case APIC_LVT_THERMAL:
      case APIC_LVT_PERF:
      case APIC_LVT_LINT0:
      case APIC_LVT_LINT1:
      case APIC_LVT_ERROR:
        return this.lvt[(reg - APIC_LVT_TIMER) >> 4]!;
      case APIC_TIMER_INITIAL_COUNT:
        return this.initialCount;
      case APIC_TIMER_CURRENT_COUNT:
        return this.currentCount();
      case APIC_TIMER_DIVIDE:
        return this.divideConfig;
    }
    if (reg >= APIC_ISR && reg < APIC_ISR + 0x80) return this.isr[(reg - APIC_ISR) >> 4]!;
    if (reg >= APIC_TMR && reg < APIC_TMR + 0x80) return this.tmr[(reg - APIC_TMR) >> 4]!;
    if (reg >= APIC_IRR && reg < APIC_IRR + 0x80) return this.irr[(reg - APIC_IRR) >> 4]!;
    this.badAccessCount++;
    return 0;
  }

  private writeRegister(reg: number, v: number): void {
    switch (reg) {
      case APIC_ID:
        this.id = v >>> 24;
        return;
      case APIC_TPR:
        this.tpr = v & 0xff;
        this.update();
        return;
      case APIC_EOI:
        this.eoi();
        return;
      case APIC_LDR:
        this.ldr = (v & 0xff00_0000) >>> 0;
        return;
      case APIC_DFR:
        this.dfr = (v | 0x0fff_ffff) >>> 0;
        return;
      case APIC_SVR:
        this.svr = v & 0x3ff;
        if ((this.svr & SVR_APIC_ENABLED) === 0) {
          for (let i = 0; i < 6; i++) this.lvt[i] = this.lvt[i]! | LVT_MASKED;
        }
        this.update();
        return;
      case APIC_ESR:
        // a write latches the errors seen since the last write
        this.esr = this.esrPending;
        this.esrPending = 0;
        return;
      case APIC_ICR_LOW:
        this.icrLow = (v & ~(1 << 12)) >>> 0;
        this.sendIpi();
        return;
      case APIC_ICR_HIGH:
        this.icrHigh = (v & 0xff00_0000) >>> 0;
        return;
      case APIC_LVT_TIMER:
      case APIC_LVT_THERMAL:
      case APIC_LVT_PERF:
      case APIC_LVT_LINT0:
      case APIC_LVT_LINT1:
      case APIC_LVT_ERROR: {
        const i = (reg - APIC_LVT_TIMER) >> 4;
        let val = (this.lvt[i]! & ~LVT_WRITABLE[i]!) | (v & LVT_WRITABLE[i]!);
        if (!this.softwareEnabled()) val |= LVT_MASKED; // mask cannot be cleared while disabled
        const old = this.lvt[i]!;
        if (i === LVT_TIMER && (old & LVT_TIMER_MODE_MASK) === 0 && this.initialCount !== 0 && this.currentCount() === 0) this.countedOut = true;
        this.lvt[i] = val;
        if (i === LVT_TIMER && (old & LVT_TIMER_MODE_MASK) !== (val & LVT_TIMER_MODE_MASK)) this.rescheduleTimer(false);
        this.update();
        return;
      }
      case APIC_TIMER_INITIAL_COUNT:
        this.initialCount = v;
        this.countedOut = false;
        this.timerStartNs = this.clock.nowNs();
        this.rescheduleTimer(true);
        return;
      case APIC_TIMER_DIVIDE: {
        // keep the current count continuous across the change of rate
        const cur = this.currentCount();
        this.setDivide(v);
        if (this.initialCount !== 0 && cur !== 0) {
          this.timerStartNs = this.clock.nowNs() - (this.initialCount - cur) * this.tickNs;
          this.rescheduleTimer(false);
        }
        return;
      }
    }
    // read-only registers (version, PPR, ISR/TMR/IRR, current count) and holes
    this.badAccessCount++;
  }

  private eoi(): void {
    const v = highestBit(this.isr);
    if (v < 0) return;
    clearBit(this.isr, v);
    if (testBit(this.tmr, v)) this.onLevelEoi?.(v);
    this.update();
  }

  private sendIpi(): void {
    const lo = this.icrLow;
    const mode = (lo >> 8) & 7;
    const vector = lo & 0xff;
    const shorthand = (lo >> ICR_SHORTHAND_SHIFT) & 3;
    const logical = (lo & ICR_DEST_LOGICAL) !== 0;
    const dest = this.icrHigh >>> 24;
    const levelTriggered = (lo & ICR_TRIGGER_LEVEL) !== 0;
    const toSelf =
      shorthand === SHORTHAND_SELF ||
      shorthand === SHORTHAND_ALL_INCLUDING_SELF ||
      (shorthand === SHORTHAND_NONE && this.matchesDestination(dest, logical));
    const toOthers =
      shorthand === SHORTHAND_ALL_INCLUDING_SELF ||
      shorthand === SHORTHAND_ALL_EXCLUDING_SELF ||
      (shorthand === SHORTHAND_NONE && (dest === 0xff || logical || dest !== this.id));
    if (toOthers || mode === DELIVERY_INIT || mode === DELIVERY_STARTUP) {
      this.onIpi?.({
        deliveryMode: mode,
        vector,
        destination: dest,
        logical,
        shorthand,
        levelAssert: (lo & ICR_LEVEL_ASSERT) !== 0,
        levelTriggered,
      });
    }
    if (!toSelf) return;
    if (mode === DELIVERY_FIXED || mode === DELIVERY_LOWEST_PRIORITY) {
      if (vector < 16) {
        this.raiseError(ESR_SEND_ILLEGAL_VECTOR);
        return;
      }
      this.setIrr(vector, false);
    } else if (mode === DELIVERY_NMI) {
      this.nmiPending = true;
    }
  }

  private setDivide(v: number): void {
    this.divideConfig = v & 0xb;
    const code = ((v >> 1) & 4) | (v & 3);
    const divisor = code === 7 ? 1 : 2 << code;
    this.tickNs = (divisor * 1e9) / LAPIC_BUS_FREQUENCY_HZ;
  }

  private periodNs(): number {
    return this.initialCount * this.tickNs;
  }

  /**
   * Cancel and re-arm the expiry timer from the current start, count and mode.
   *
   * One-shot: a count that reached zero before this call fires anyway (late, at the engine's next
   * timer check) when it was just written (`fresh`, a TMICT write) or its expiry was still pending;
   * only a count whose expiry was already delivered stays expired. The host clock moves between
   * the TMICT write and this check: a short count (Linux programs as little as 0xf ticks in
   * one-shot mode) may already be over, and dropping its only interrupt leaves a tickless guest
   * waiting forever for a timer it believes is armed.
   */
  private rescheduleTimer(fresh: boolean): void {
    const wasPending = this.timer !== undefined;
    const oldDeadline = this.timerDeadline;
    this.timers.cancel(this.timer);
    this.timer = undefined;
    this.timerDeadline = Infinity;
    if (this.initialCount === 0) return;
    if (this.countedOut) {
      // stopped at zero; an expiry not yet delivered still interrupts, once
      if (wasPending) {
        this.timerDeadline = oldDeadline;
        this.timer = this.timers.schedule(oldDeadline, (t) => this.timerExpired(t));
      }
      return;
    }
    const mode = this.lvt[LVT_TIMER]! & LVT_TIMER_MODE_MASK;
    const now = this.clock.nowNs();
    const period = this.periodNs();
    let deadline: number;
    if (mode === LVT_TIMER_PERIODIC) {
      const step = Math.max(period, LAPIC_MIN_TIMER_PERIOD_NS);
      const k = Math.max(1, Math.ceil((now - this.timerStartNs) / step));
      deadline = this.timerStartNs + k * step;
      if (deadline <= now) deadline += step;
    } else if (mode === 0) {
      deadline = this.timerStartNs + period;
      if (deadline <= now && !fresh && !wasPending) return; // expired and already delivered
    } else {
      return; // TSC-deadline / reserved: not offered
    }
    this.timerDeadline = deadline;
    this.timer = this.timers.schedule(deadline, (t) => this.timerExpired(t));
  }

  private timerExpired(now: number): void {
    const scheduled = this.timerDeadline;
    this.timer = undefined;
    this.timerDeadline = Infinity;
    const lvt = this.lvt[LVT_TIMER]!;
    if ((lvt & LVT_MASKED) === 0) this.setIrr(lvt & 0xff, false);
    if ((lvt & LVT_TIMER_MODE_MASK) === 0) this.countedOut = true;
    if ((lvt & LVT_TIMER_MODE_MASK) === LVT_TIMER_PERIODIC && this.initialCount !== 0 && !this.countedOut) {
      // next period boundary after now; boundaries the host slept through are merged into one
      const step = Math.max(this.periodNs(), LAPIC_MIN_TIMER_PERIOD_NS);
      const next = this.timerStartNs + (Math.floor((now - this.timerStartNs) / step) + 1) * step;
      if (Number.isFinite(scheduled)) this.coalescedTicks += Math.max(0, Math.round((next - scheduled) / step) - 1);
      this.timerDeadline = next;
      this.timer = this.timers.schedule(next, (t) => this.timerExpired(t));
    }
  }
}

function highestBit(words: Uint32Array): number {
  for (let i = 7; i >= 0; i--) {
    const w = words[i]!;
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

function setBit(words: Uint32Array, v: number): void {
  words[v >> 5] = words[v >> 5]! | (1 << (v & 31));
}

function clearBit(words: Uint32Array, v: number): void {
  words[v >> 5] = words[v >> 5]! & ~(1 << (v & 31));
}

function testBit(words: Uint32Array, v: number): boolean {
  return (words[v >> 5]! & (1 << (v & 31))) !== 0;
}
