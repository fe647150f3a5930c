/**
 * Intel 8254 programmable interval timer: three 16-bit down-counters clocked at PIT_FREQUENCY_HZ,
 * ports 0x40..0x42 (counters) and 0x43 (control word), plus System Control Port B (0x61), which
 * gates counter 2 and reads back its output — Linux calibrates the TSC with counter 2 in mode 0
 * by polling OUT2 there.
 *
 * Counters are never ticked: each one remembers when it was loaded and computes its count and
 * OUT line from the machine clock when asked. Counter 0's OUT drives ISA IRQ 0: in modes 2 and 3
 * each period ends with a pulse; in modes 0 and 1 the line rises at terminal count and stays
 * high; in modes 4 and 5 the terminal-count strobe is a pulse. Periodic interrupts are scheduled
 * on the TimerQueue no more often than PIT_MIN_PERIOD_NS; ticks a slow host misses are merged.
 *
 * Modes 0-5, binary and BCD, LSB/MSB/LSB-then-MSB access, counter latch, read-back (count and
 * status latches) and the status byte are implemented. A new count takes effect at once (the
 * 8254 waits for the current period in modes 2/3; guests do not depend on it).
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import type { Clock, Timer, TimerQueue } from '../../../machine/clock.js';
import type { IrqLine } from '../../../machine/irq.js';
import { PIT_FREQUENCY_HZ } from '../../../machine/layout.js';

/** Don't schedule channel-0 interrupts more often than every 50 µs of host time. */
export const PIT_MIN_PERIOD_NS = 50_000;

// Control word (port 0x43)
const CW_SC_SHIFT = 6; // counter select; 3 = read-back
const CW_RW_SHIFT = 4; // 0 = counter latch, 1 = LSB, 2 = MSB, 3 = LSB then MSB
const CW_MODE_SHIFT = 1;
const CW_BCD = 0x01;
const SC_READ_BACK = 3;
const RW_LATCH = 0;
const RW_LSB = 1;
const RW_MSB = 2;
const RW_LSB_MSB = 3;
// Read-back command
const RB_NOT_COUNT = 0x20; // 0 = latch count
const RB_NOT_STATUS = 0x10; // 0 = latch status
// Status byte
const STATUS_OUTPUT = 0x80;
const STATUS_NULL_COUNT = 0x40;
// System Control Port B (0x61)
export const PORTB_TIMER2_GATE = 0x01;
export const PORTB_SPEAKER_DATA = 0x02;
export const PORTB_REFRESH = 0x10;
export const PORTB_OUT2 = 0x20;
const PORTB_WRITABLE = 0x0f;
/** The refresh-request bit toggles every 15.085 µs on a PC. */
const REFRESH_PERIOD_NS = 15_085;

const NS_PER_S = 1e9;

/** PIT clock ticks in `ns` nanoseconds, exact for any machine uptime. */
export function pitTicks(ns: number): number {
  if (ns <= 0) return 0;
  const s = Math.floor(ns / NS_PER_S);
  return s * PIT_FREQUENCY_HZ + Math.floor(((ns - s * NS_PER_S) * PIT_FREQUENCY_HZ) / NS_PER_S);
}

/** Nanoseconds until `ticks` PIT ticks have passed (rounded up). */
export function pitTicksToNs(ticks: number): number {
  return Math.ceil((ticks * NS_PER_S) / PIT_FREQUENCY_HZ);
}

export interface PitChannelState {
  mode: number;
  rw: number;
  bcd: boolean;
  /** Count register value as written (raw, BCD if bcd). */
  countRegister: number;
  gate: boolean;
  /** Counting (a count was loaded and, in modes 1/5, the gate triggered). */
  running: boolean;
  startNs: number;
  heldTicks: number;
  nullCount: boolean;
  writeLowPending: boolean;
  writeLatch: number;
  readHighNext: boolean;
  latchedCount: number;
  latchedBytes: number;
  latchedStatus: number;
  statusLatched: boolean;
}

class PitChannel {
  mode = 0;
  rw = RW_LSB_MSB;
  bcd = false;
  countRegister = 0;
  gate: boolean;
  running = false;
  /** Machine time the counter started from its count (or resumed, see heldTicks). */
  startNs = 0;
  /** Ticks counted before the gate last went low (modes 0 and 4 pause, they don't reload). */
  heldTicks = 0;
  nullCount = true;
  writeLowPending = false;
  writeLatch = 0;
  readHighNext = false;
  latchedCount = 0;
  /** Bytes of the latched count still unread (0 = no latch). */
  latchedBytes = 0;
  latchedStatus = 0;
  statusLatched = false;

  constructor(gate: boolean) {
    this.gate = gate;
  }

  /** Counter modulus (65536 binary, 10000 BCD). */
  modulus(): number {
    return this.bcd ? 10000 : 0x10000;
  }

  /** Count N: the count register as a number, 0 meaning the full modulus. */
  reload(): number {
    const r = this.bcd ? fromBcd(this.countRegister) : this.countRegister;
    return r === 0 ? this.modulus() : r;
  }

  /** Ticks counted since the count was loaded (or triggered). */
  elapsed(now: number): number {
    if (!this.running) return this.heldTicks;
    if (!this.gate && (this.mode === 0 || this.mode === 4)) return this.heldTicks;
    return this.heldTicks + pitTicks(now - this.startNs);
  }

  /** Is the counter waiting: no count loaded, or (modes 1/5) no gate trigger yet, or (2/3) gate low. */
  private stopped(): boolean {
    if (!this.running) return true;
    return !this.gate && (this.mode === 2 || this.mode === 3);
  }

  count(now: number): number {
    if (this.stopped()) return this.countRegister; // reads back as written (raw BCD if BCD)
    const n = this.reload();
    const t = this.elapsed(now);
    const m = this.modulus();
    let c: number;
    switch (this.mode) {
      case 2:
        c = n - (t % n);
        break;
      case 3:
        c = n - ((2 * t) % n);
        break;
      default:
        // modes 0, 1, 4, 5: count down through zero and wrap
        c = (((n - t) % m) + m) % m;
    }
    c = c % m;
    return this.bcd ? toBcd(c) : c;
  }

  out(now: number): boolean {
    switch (this.mode) {
      case 0:
        return this.running && this.elapsed(now) >= this.reload();
      case 1:
        return !this.running || this.elapsed(now) >= this.reload();
      case 2: {
        if (this.stopped()) return true;
        const n = this.reload();
        return this.elapsed(now) % n !== n - 1;
      }
      case 3: {
        if (this.stopped()) return true;
        const n = this.reload();
        return this.elapsed(now) % n < (n + 1) >> 1;
      }
      default:
        // 4, 5: high except for one clock at terminal count
        return !this.running || this.elapsed(now) !== this.reload();
    }
  }

  status(now: number): number {
    return (
      (this.out(now) ? STATUS_OUTPUT : 0) |
      (this.nullCount ? STATUS_NULL_COUNT : 0) |
      (this.rw << CW_RW_SHIFT) |
      (this.mode << CW_MODE_SHIFT) |
      (this.bcd ? CW_BCD : 0)
    );
  }

  save(): PitChannelState {
    return {
      mode: this.mode,
      rw: this.rw,
      bcd: this.bcd,
      countRegister: this.countRegister,
      gate: this.gate,
      running: this.running,
      startNs: this.startNs,
      heldTicks: this.heldTicks,
      nullCount: this.nullCount,
      writeLowPending: this.writeLowPending,
      writeLatch: this.writeLatch,
      readHighNext: this.readHighNext,
      latchedCount: this.latchedCount,
      latchedBytes: this.latchedBytes,
      latchedStatus: this.latchedStatus,
      statusLatched: this.statusLatched,
    };
  }

  restore(s: PitChannelState): void {
    this.mode = s.mode >= 0 && s.mode <= 5 ? s.mode | 0 : 0;
    this.rw = s.rw >= 1 && s.rw <= 3 ? s.rw | 0 : RW_LSB_MSB;
    this.bcd = !!s.bcd;
    this.countRegister = s.countRegister & 0xffff;
    this.gate = !!s.gate;
    this.running = !!s.running;
    this.startNs = Number.isFinite(s.startNs) ? s.startNs : 0;
    this.heldTicks = Math.max(0, Math.floor(s.heldTicks) || 0);
    this.nullCount = !!s.nullCount;
    this.writeLowPending = !!s.writeLowPending;
    this.writeLatch = s.writeLatch & 0xff;
    this.readHighNext = !!s.readHighNext;
    this.latchedCount = s.latchedCount & 0xffff;
    this.latchedBytes = Math.min(2, Math.max(0, s.latchedBytes | 0));
    this.latchedStatus = s.latchedStatus & 0xff;
    this.statusLatched = !!s.statusLatched;
  }
}

export interface PitState {
  channels: PitChannelState[];
  speakerData: boolean;
  portBLow: number;
  /**
   * Counter 0's interrupt timer is armed and has not run: a one-shot terminal count that fell
   * due just before the snapshot still interrupts after the restore.
   */
  irqPending: boolean;
}

export interface PitOptions {
  clock: Clock;
  timers: TimerQueue;
  /** ISA IRQ 0, driven by counter 0's OUT. */
  irq: IrqLine;
}

export class Pit8254 implements BusDevice {
  private readonly ch = [new PitChannel(true), new PitChannel(true), new PitChannel(false)];
  private readonly clock: Clock;
  private readonly timers: TimerQueue;
  private readonly irq: IrqLine;
  private timer: Timer | undefined;
  /** Bits 3:0 of port 0x61 as last written. */
  private portBLow = 0;
  /** Channel-0 interrupts merged because the host ran late or the period was too short. */
  coalescedTicks = 0;
  /** System Control Port B (attach at PORT_SYSTEM_CONTROL_B, 1 port). */
  readonly systemControl: BusDevice;

  constructor(options: PitOptions) {
    this.clock = options.clock;
    this.timers = options.timers;
    this.irq = options.irq;
    this.systemControl = {
      read: (): number => this.readPortB(),
      write: (_offset: number, _size: AccessSize, value: number): void => this.writePortB(value),
    };
  }

  read(offset: number, _size: AccessSize): number {
    if (offset > 2) return 0xff; // the control word register is write-only
    const c = this.ch[offset]!;
    const now = this.clock.nowNs();
    if (c.statusLatched) {
      c.statusLatched = false;
      return c.latchedStatus;
    }
    if (c.latchedBytes > 0) {
      const v = c.latchedCount;
      if (c.rw === RW_LSB) {
        c.latchedBytes = 0;
        return v & 0xff;
      }
      if (c.rw === RW_MSB) {
        c.latchedBytes = 0;
        return v >> 8;
      }
      c.latchedBytes--;
      return c.latchedBytes === 1 ? v & 0xff : v >> 8;
    }
    const v = c.count(now);
    switch (c.rw) {
      case RW_LSB:
        return v & 0xff;
      case RW_MSB:
        return v >> 8;
      default:
        c.readHighNext = !c.readHighNext;
        return c.readHighNext ? v & 0xff : v >> 8;
    }
  }

  write(offset: number, _size: AccessSize, value: number): void {
    value &= 0xff;
    if (offset === 3) this.writeControl(value);
    else if (offset <= 2) this.writeCount(offset, value);
  }

  /** OUT of counter `n` now (tests, and port 0x61 for counter 2). */
  output(n: 0 | 1 | 2): boolean {
    return this.ch[n]!.out(this.clock.nowNs());
  }

  save(): PitState {
    return {
      channels: this.ch.map((c) => c.save()),
      speakerData: (this.portBLow & PORTB_SPEAKER_DATA) !== 0,
      portBLow: this.portBLow,
      irqPending: this.timer !== undefined,
    };
  }

  restore(s: PitState): void {
    for (let i = 0; i < 3; i++) {
      const cs = s.channels[i];
      if (cs) this.ch[i]!.restore(cs);
    }
    this.ch[0]!.gate = true;
    this.ch[1]!.gate = true;
    this.portBLow = s.portBLow & PORTB_WRITABLE;
    this.ch[2]!.gate = (this.portBLow & PORTB_TIMER2_GATE) !== 0;
    this.scheduleIrq();
    if (s.irqPending === true && this.timer === undefined && this.ch[0]!.running) {
      this.timer = this.timers.schedule(this.clock.nowNs(), () => this.terminalCount());
    }
  }

  private writeControl(v: number): void {
    const now = this.clock.nowNs();
    const sc = v >> CW_SC_SHIFT;
    if (sc === SC_READ_BACK) {
      for (let i = 0; i < 3; i++) {
        if ((v & (2 << i)) === 0) continue;
        const c = this.ch[i]!;
        if ((v & RB_NOT_STATUS) === 0 && !c.statusLatched) {
          c.statusLatched = true;
          c.latchedStatus = c.status(now);
        }
        if ((v & RB_NOT_COUNT) === 0 && c.latchedBytes === 0) this.latchCount(c, now);
      }
      return;
    }
    const c = this.ch[sc]!;
    const rw = (v >> CW_RW_SHIFT) & 3;
    if (rw === RW_LATCH) {
      if (c.latchedBytes === 0) this.latchCount(c, now);
      return;
    }
    let mode = (v >> CW_MODE_SHIFT) & 7;
    if (mode > 5) mode -= 4; // 110 and 111 are modes 2 and 3
    c.rw = rw;
    c.mode = mode;
    c.bcd = (v & CW_BCD) !== 0;
    // a control word stops the counter until a new count arrives and sets OUT to its initial state
    c.running = false;
    c.heldTicks = 0;
    c.nullCount = true;
    c.writeLowPending = false;
    c.readHighNext = false;
    c.latchedBytes = 0;
    c.statusLatched = false;
    if (sc === 0) {
      // IRQ 0 idles low: modes 0/1 raise it at terminal count, the others pulse it
      this.irq.lower();
      this.scheduleIrq();
    }
  }

  private latchCount(c: PitChannel, now: number): void {
    c.latchedCount = c.count(now);
    c.latchedBytes = c.rw === RW_LSB_MSB ? 2 : 1;
  }

  private writeCount(n: number, byte: number): void {
    const c = this.ch[n]!;
    switch (c.rw) {
      case RW_LSB:
        this.loadCount(n, byte);
        break;
      case RW_MSB:
        this.loadCount(n, byte << 8);
        break;
      default:
        if (!c.writeLowPending) {
          c.writeLowPending = true;
          c.writeLatch = byte;
          // mode 0: writing the first byte stops the count
          if (c.mode === 0 && c.running) {
            c.heldTicks = c.elapsed(this.clock.nowNs());
            c.running = false;
          }
        } else {
          c.writeLowPending = false;
          this.loadCount(n, c.writeLatch | (byte << 8));
        }
    }
  }

  private loadCount(n: number, value: number): void {
    const c = this.ch[n]!;
    const now = this.clock.nowNs();
    c.countRegister = value & 0xffff;
    c.nullCount = false;
    c.heldTicks = 0;
    c.startNs = now;
    // modes 1 and 5 wait for a gate rising edge; the others start at once
    c.running = c.mode !== 1 && c.mode !== 5;
    if (n === 0) {
      this.irq.lower();
      this.scheduleIrq();
    }
  }

  private setGate2(gate: boolean): void {
    const c = this.ch[2]!;
    if (gate === c.gate) return;
    const now = this.clock.nowNs();
    if (!gate) {
      if (c.running && (c.mode === 0 || c.mode === 4)) c.heldTicks = c.elapsed(now);
      c.gate = false;
      return;
    }
    c.gate = true;
    switch (c.mode) {
      case 0:
      case 4:
        c.startNs = now; // resume from heldTicks
        break;
      case 1:
      case 5:
        if (!c.nullCount) {
          c.running = true;
          c.heldTicks = 0;
          c.startNs = now;
        }
        break;
      default:
        // modes 2 and 3 reload on the rising edge
        c.heldTicks = 0;
        c.startNs = now;
    }
  }

  private readPortB(): number {
    const now = this.clock.nowNs();
    let v = this.portBLow;
    if (this.ch[2]!.out(now)) v |= PORTB_OUT2;
    if (Math.floor(now / REFRESH_PERIOD_NS) & 1) v |= PORTB_REFRESH;
    return v;
  }

  private writePortB(value: number): void {
    this.portBLow = value & PORTB_WRITABLE;
    this.setGate2((value & PORTB_TIMER2_GATE) !== 0);
  }

  /** Arm the TimerQueue for counter 0's next OUT event. */
  private scheduleIrq(): void {
    this.timers.cancel(this.timer);
    this.timer = undefined;
    const c = this.ch[0]!;
    if (!c.running) return;
    const now = this.clock.nowNs();
    const n = c.reload();
    const t = c.elapsed(now);
    if (c.mode === 2 || c.mode === 3) {
      // end of the current period
      const periodNs = Math.max(pitTicksToNs(n), PIT_MIN_PERIOD_NS);
      const deadline = c.startNs + (Math.floor((now - c.startNs) / periodNs) + 1) * periodNs;
      this.timer = this.timers.schedule(deadline, (at) => this.periodic(at, deadline));
      return;
    }
    if (t >= n) return; // one-shot modes already past terminal count
    // modes 0/1: OUT rises at terminal count; 4/5: the terminal-count strobe
    const deadline = Math.max(c.startNs + pitTicksToNs(n - c.heldTicks), now);
    this.timer = this.timers.schedule(deadline, () => this.terminalCount());
  }

  private periodic(now: number, scheduled: number): void {
    this.timer = undefined;
    const c = this.ch[0]!;
    this.irq.pulse();
    const periodNs = Math.max(pitTicksToNs(c.reload()), PIT_MIN_PERIOD_NS);
    const next = c.startNs + (Math.floor((now - c.startNs) / periodNs) + 1) * periodNs;
    this.coalescedTicks += Math.max(0, Math.round((next - scheduled) / periodNs) - 1);
    this.timer = this.timers.schedule(next, (at) => this.periodic(at, next));
  }

  private terminalCount(): void {
    this.timer = undefined;
    const c = this.ch[0]!;
    if (c.mode === 0 || c.mode === 1) this.irq.raise(); // OUT goes high and stays high
    else this.irq.pulse(); // modes 4, 5: OUT strobes low for a clock; its rising edge interrupts
  }
}

function fromBcd(v: number): number {
  return ((v >> 12) & 0xf) * 1000 + ((v >> 8) & 0xf) * 100 + ((v >> 4) & 0xf) * 10 + (v & 0xf);
}

function toBcd(v: number): number {
  return (
    (Math.floor(v / 1000) % 10 << 12) | (Math.floor(v / 100) % 10 << 8) | (Math.floor(v / 10) % 10 << 4) | v % 10
  );
}
