/**
 * Intel 82093AA I/O APIC: 24 interrupt input pins, each with a 64-bit redirection table entry
 * that turns a pin assertion into an interrupt message for the local APIC(s).
 *
 * Registers are reached indirectly: the guest writes a register index to IOREGSEL (offset 0x00)
 * and reads/writes the 32-bit register through IOWIN (offset 0x10). Index 0x00 is IOAPICID,
 * 0x01 IOAPICVER, 0x02 IOAPICARB, 0x10 + 2n / 0x11 + 2n the low/high halves of entry n.
 *
 * Edge-triggered pins deliver on a rising edge (a masked edge is remembered and delivered on
 * unmask, like QEMU; Linux copes with either). Level-triggered pins deliver while asserted,
 * set Remote IRR and wait for the local APIC's EOI for that vector (`eoi(vector)`) before
 * delivering again. Pin levels are "asserted" levels: the polarity bit is stored and reported
 * but devices always raise to assert.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import { IOAPIC_PINS } from '../../../machine/layout.js';

export const IOREGSEL = 0x00;
export const IOWIN = 0x10;
export const IOAPICID = 0x00;
export const IOAPICVER = 0x01;
export const IOAPICARB = 0x02;
export const IOREDTBL_BASE = 0x10;
/** 82093AA version 0x11; bits 23:16 = maximum redirection entry (pins - 1). */
export const IOAPIC_VERSION = 0x11 | ((IOAPIC_PINS - 1) << 16);

// Redirection table entry, low dword
export const REDIR_VECTOR = 0xff;
export const REDIR_DELIVERY_MODE_SHIFT = 8; // 3 bits
export const REDIR_DEST_LOGICAL = 1 << 11;
export const REDIR_DELIVERY_STATUS = 1 << 12; // read-only
export const REDIR_POLARITY_LOW = 1 << 13;
export const REDIR_REMOTE_IRR = 1 << 14; // read-only
export const REDIR_TRIGGER_LEVEL = 1 << 15;
export const REDIR_MASKED = 1 << 16;
const REDIR_LOW_WRITABLE = 0x1_afff; // everything but delivery status and remote IRR
// high dword: bits 31:24 destination

/** Interrupt message delivery modes (shared with the local APIC's ICR and LVTs). */
export const DELIVERY_FIXED = 0;
export const DELIVERY_LOWEST_PRIORITY = 1;
export const DELIVERY_SMI = 2;
export const DELIVERY_NMI = 4;
export const DELIVERY_INIT = 5;
export const DELIVERY_STARTUP = 6;
export const DELIVERY_EXTINT = 7;

/** What an interrupt message is delivered to: a local APIC. */
export interface ApicMessageTarget {
  /** True when `dest` (8-bit APIC destination) addresses this APIC in the given mode. */
  matchesDestination(dest: number, logical: boolean): boolean;
  /** Receive an interrupt message. */
  acceptInterrupt(vector: number, deliveryMode: number, levelTriggered: boolean): void;
}

export interface IoApicState {
  id: number;
  ioregsel: number;
  /** Low and high dword of each entry, interleaved (48 numbers). */
  redirection: number[];
  /** Asserted pin levels, bit per pin. */
  levels: number;
  /** Edges seen while masked, waiting for unmask. */
  pendingEdges: number;
}

export class IoApic implements BusDevice {
  private id = 0;
  private ioregsel = 0;
  private readonly redir = new Uint32Array(IOAPIC_PINS * 2);
  private levels = 0;
  private pendingEdges = 0;
  private readonly targets: ApicMessageTarget[] = [];
  /** Messages no local APIC accepted, and unsupported delivery modes. */
  droppedCount = 0;

  constructor() {
    for (let i = 0; i < IOAPIC_PINS; i++) this.redir[i * 2] = REDIR_MASKED;
  }

  /** Connect a local APIC that receives this IOAPIC's messages. */
  addTarget(target: ApicMessageTarget): void {
    this.targets.push(target);
  }

  /** Set the asserted level of input pin `pin` (0..23). */
  setIrq(pin: number, level: boolean): void {
    if (pin < 0 || pin >= IOAPIC_PINS) return;
    const bit = 1 << pin;
    const was = (this.levels & bit) !== 0;
    if (level) this.levels |= bit;
    else this.levels &= ~bit;
    const lo = this.redir[pin * 2]!;
    if (lo & REDIR_TRIGGER_LEVEL) {
      if (level) this.service(pin);
    } else if (level && !was) {
      if (lo & REDIR_MASKED) this.pendingEdges |= bit;
      else this.deliver(pin);
    }
  }

  /** EOI broadcast from a local APIC for `vector`: clears Remote IRR of matching level pins. */
  eoi(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const lo = this.redir[pin * 2]!;
      if ((lo & REDIR_VECTOR) !== vector || (lo & REDIR_REMOTE_IRR) === 0) continue;
      this.redir[pin * 2] = lo & ~REDIR_REMOTE_IRR;
      if (lo & REDIR_TRIGGER_LEVEL) this.service(pin);
    }
  }

  read(offset: number, size: AccessSize): number {
    const reg = offset & ~3;
    let v: number;
    if (reg === IOREGSEL) v = this.ioregsel;
    else if (reg === IOWIN) v = this.readRegister(this.ioregsel);
    else v = 0;
    if (size === 4) return v >>> 0;
    return (v >>> ((offset & 3) * 8)) & (size === 1 ? 0xff : 0xffff);
  }

  write(offset: number, size: AccessSize, value: number): void {
    const reg = offset & ~3;
    if (reg === IOREGSEL) {
      // IOREGSEL is 8 bits; a byte write at offset 0 is the common form too
      if ((offset & 3) === 0) this.ioregsel = value & 0xff;
    } else if (reg === IOWIN) {
      if (size !== 4) {
        // merge a partial write into the current register value
        const shift = (offset & 3) * 8;
        const mask = (size === 1 ? 0xff : 0xffff) << shift;
        value = (this.readRegister(this.ioregsel) & ~mask) | ((value << shift) & mask);
      }
      this.writeRegister(this.ioregsel, value >>> 0);
    }
  }

  /** The 64-bit entry of `pin` as [low, high] (tests, debugging). */
  entry(pin: number): [number, number] {
    return [this.redir[pin * 2]!, this.redir[pin * 2 + 1]!];
  }

  save(): IoApicState {
    return {
      id: this.id,
      ioregsel: this.ioregsel,
      redirection: Array.from(this.redir),
      levels: this.levels,
      pendingEdges: this.pendingEdges,
    };
  }

  restore(s: IoApicState): void {
    this.id = s.id & 0x0f;
    this.ioregsel = s.ioregsel & 0xff;
    for (let i = 0; i < this.redir.length; i++) this.redir[i] = (s.redirection[i] ?? 0) >>> 0;
    this.levels = s.levels >>> 0;
    this.pendingEdges = s.pendingEdges >>> 0;
  }

  private readRegister(index: number): number {
    if (index === IOAPICID) return (this.id << 24) >>> 0;
    if (index === IOAPICVER) return IOAPIC_VERSION;
    if (index === IOAPICARB) return (this.id << 24) >>> 0;
    const n = index - IOREDTBL_BASE;
    if (n >= 0 && n < IOAPIC_PINS * 2) return this.redir[n]!;
    return 0;
  }

  private writeRegister(index: number, value: number): void {
    if (index === IOAPICID) {
      this.id = (value >>> 24) & 0x0f;
      return;
    }
    const n = index - IOREDTBL_BASE;
    if (n < 0 || n >= IOAPIC_PINS * 2) return; // read-only or reserved: ignore
    if (n & 1) {
      this.redir[n] = value & 0xff00_0000; // Uint32Array stores it unsigned
      return;
    }
    const pin = n >> 1;
    const old = this.redir[n]!;
    let lo = (old & ~REDIR_LOW_WRITABLE) | (value & REDIR_LOW_WRITABLE);
    // Remote IRR is meaningless for edge pins
    if ((lo & REDIR_TRIGGER_LEVEL) === 0) lo &= ~REDIR_REMOTE_IRR;
    this.redir[n] = lo >>> 0;
    if ((lo & REDIR_MASKED) === 0) {
      const bit = 1 << pin;
      if (lo & REDIR_TRIGGER_LEVEL) {
        this.pendingEdges &= ~bit;
        if (this.levels & bit) this.service(pin);
      } else if (this.pendingEdges & bit) {
        this.pendingEdges &= ~bit;
        this.deliver(pin);
      }
    }
  }

  /** Level pin: deliver when asserted, unmasked and not awaiting EOI. */
  private service(pin: number): void {
    const lo = this.redir[pin * 2]!;
    if (lo & (REDIR_MASKED | REDIR_REMOTE_IRR)) return;
    if ((this.levels & (1 << pin)) === 0) return;
    if (this.deliver(pin)) this.redir[pin * 2] = (this.redir[pin * 2]! | REDIR_REMOTE_IRR) >>> 0;
  }

  /** Send the message of `pin`; true when some local APIC took it. */
  private deliver(pin: number): boolean {
    const lo = this.redir[pin * 2]!;
    const dest = this.redir[pin * 2 + 1]! >>> 24;
    const mode = (lo >> REDIR_DELIVERY_MODE_SHIFT) & 7;
    const logical = (lo & REDIR_DEST_LOGICAL) !== 0;
    const level = (lo & REDIR_TRIGGER_LEVEL) !== 0;
    const vector = lo & REDIR_VECTOR;
    if (mode === DELIVERY_SMI || mode === DELIVERY_INIT || mode === DELIVERY_STARTUP || mode === 3) {
      this.droppedCount++;
      return false;
    }
    let delivered = false;
    for (const t of this.targets) {
      if (!t.matchesDestination(dest, logical)) continue;
      t.acceptInterrupt(vector, mode, level);
      delivered = true;
      if (mode === DELIVERY_LOWEST_PRIORITY) break; // one CPU gets it
    }
    if (!delivered) this.droppedCount++;
    return delivered;
  }
}
