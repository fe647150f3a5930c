/**
 * A cascaded pair of Intel 8259A programmable interrupt controllers, as on every PC: the master
 * at ports 0x20/0x21 takes ISA IRQs 0..7, the slave at 0xa0/0xa1 takes IRQs 8..15 and signals
 * the master on its IR2 input. The ELCR pair at 0x4d0/0x4d1 (PIIX edge/level control) selects
 * level triggering per IRQ.
 *
 * Implemented from the 8259A datasheet: initialization words ICW1..ICW4 (single/cascade, ICW4
 * needed, vector base, auto-EOI, special fully nested), OCW1 (IMR), OCW2 (non-specific /
 * specific EOI, rotate on EOI, set priority, rotate in auto-EOI), OCW3 (read IRR/ISR, poll,
 * special mask). Interrupts that vanish before the INTA cycle produce the spurious IRQ7 (or
 * IRQ15 on the slave), as on hardware.
 *
 * The PIC's INTR output goes to the local APIC's LINT0 (virtual wire); the LAPIC asks
 * `hasInterrupt()` and `acknowledge()` and can subscribe to output changes with `onOutput`.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';

// ICW1 (written to the command port with bit 4 set)
const ICW1_IC4 = 0x01; // ICW4 needed
const ICW1_SNGL = 0x02; // single (no cascade, no ICW3)
const ICW1_LTIM = 0x08; // level-triggered mode (ignored: PCs use the ELCR)
const ICW1_INIT = 0x10;
// ICW4
const ICW4_AEOI = 0x02; // automatic end of interrupt
const ICW4_SFNM = 0x10; // special fully nested mode
// OCW3 (command port, bits 4:3 = 01)
const OCW3_SELECT = 0x08;
const OCW3_RIS = 0x01; // read ISR (else IRR) ...
const OCW3_RR = 0x02; // ... when RR is set
const OCW3_POLL = 0x04;
const OCW3_SMM = 0x20; // set special mask mode ...
const OCW3_ESMM = 0x40; // ... when ESMM is set
// OCW2 commands (bits 7:5)
const OCW2_ROTATE_AEOI_CLEAR = 0;
const OCW2_NONSPECIFIC_EOI = 1;
const OCW2_NOP = 2;
const OCW2_SPECIFIC_EOI = 3;
const OCW2_ROTATE_AEOI_SET = 4;
const OCW2_ROTATE_NONSPECIFIC_EOI = 5;
const OCW2_SET_PRIORITY = 6;
const OCW2_ROTATE_SPECIFIC_EOI = 7;

/** IRQs whose ELCR bit can be set (PIIX: IRQ 0, 1, 2, 8 and 13 are always edge). */
const ELCR_MASK_MASTER = 0xf8;
const ELCR_MASK_SLAVE = 0xde;
const CASCADE_IRQ = 2;

export interface PicChipState {
  irr: number;
  isr: number;
  imr: number;
  elcr: number;
  /** Input pin levels (for edge detection). */
  lines: number;
  vectorBase: number;
  priorityAdd: number;
  readIsr: boolean;
  poll: boolean;
  specialMask: boolean;
  /** 0 = ready (OCW), 1 = expect ICW2, 2 = expect ICW3, 3 = expect ICW4. */
  initState: number;
  icw4Needed: boolean;
  single: boolean;
  autoEoi: boolean;
  rotateOnAutoEoi: boolean;
  specialFullyNested: boolean;
}

export interface PicState {
  master: PicChipState;
  slave: PicChipState;
}

/** One 8259A. */
class PicChip {
  irr = 0;
  isr = 0;
  imr = 0;
  elcr = 0;
  lines = 0;
  vectorBase = 0;
  priorityAdd = 0;
  readIsr = false;
  poll = false;
  specialMask = false;
  initState = 0;
  icw4Needed = false;
  single = false;
  autoEoi = false;
  rotateOnAutoEoi = false;
  specialFullyNested = false;

  constructor(
    readonly isMaster: boolean,
    readonly elcrMask: number,
  ) {}

  /** Priority (0 = highest) of the highest-priority bit set in `mask`, or 8 when none. */
  priorityOf(mask: number): number {
    if (mask === 0) return 8;
    let p = 0;
    while ((mask & (1 << ((p + this.priorityAdd) & 7))) === 0) p++;
    return p;
  }

  /** The IRQ (0..7) this chip would raise INTR for, or -1. */
  pendingIrq(): number {
    const p = this.priorityOf(this.irr & ~this.imr);
    if (p === 8) return -1;
    let inService = this.isr;
    if (this.specialMask) inService &= ~this.imr;
    // special fully nested: the cascade input may interrupt its own in-service request
    if (this.specialFullyNested && this.isMaster) inService &= ~(1 << CASCADE_IRQ);
    const cur = this.priorityOf(inService);
    return p < cur ? (p + this.priorityAdd) & 7 : -1;
  }

  setLine(irq: number, level: boolean): void {
    const mask = 1 << irq;
    if (this.elcr & mask) {
      // level triggered: IRR follows the line
      if (level) {
        this.irr |= mask;
        this.lines |= mask;
      } else {
        this.irr &= ~mask;
        this.lines &= ~mask;
      }
    } else if (level) {
      // edge triggered: latch a rising edge
      if ((this.lines & mask) === 0) this.irr |= mask;
      this.lines |= mask;
    } else {
      this.lines &= ~mask;
    }
  }

  /** The INTA cycle for `irq`. */
  intack(irq: number): void {
    const mask = 1 << irq;
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= mask;
    }
    // a level-triggered request stays in IRR while the line is high
    if ((this.elcr & mask) === 0) this.irr &= ~mask;
  }

  resetForIcw1(): void {
    // ICW1 clears the edge-sense latch, IMR, priority rotation and the special modes
    this.lines = 0;
    this.irr = 0;
    this.isr = 0;
    this.imr = 0;
    this.priorityAdd = 0;
    this.readIsr = false;
    this.poll = false;
    this.specialMask = false;
    this.autoEoi = false;
    this.rotateOnAutoEoi = false;
    this.specialFullyNested = false;
  }

  writeCommand(v: number): void {
    if (v & ICW1_INIT) {
      this.resetForIcw1();
      this.initState = 1;
      this.icw4Needed = (v & ICW1_IC4) !== 0;
      this.single = (v & ICW1_SNGL) !== 0;
      void ICW1_LTIM; // PCs use the ELCR instead
      return;
    }
    if (v & OCW3_SELECT) {
      if (v & OCW3_POLL) this.poll = true;
      if (v & OCW3_RR) this.readIsr = (v & OCW3_RIS) !== 0;
      if (v & OCW3_ESMM) this.specialMask = (v & OCW3_SMM) !== 0;
      return;
    }
    const cmd = v >> 5;
    switch (cmd) {
      case OCW2_ROTATE_AEOI_CLEAR:
      case OCW2_ROTATE_AEOI_SET:
        this.rotateOnAutoEoi = cmd === OCW2_ROTATE_AEOI_SET;
        break;
      case OCW2_NONSPECIFIC_EOI:
      case OCW2_ROTATE_NONSPECIFIC_EOI: {
        const p = this.priorityOf(this.isr);
        if (p !== 8) {
          const irq = (p + this.priorityAdd) & 7;
          this.isr &= ~(1 << irq);
          if (cmd === OCW2_ROTATE_NONSPECIFIC_EOI) this.priorityAdd = (irq + 1) & 7;
        }
        break;
      }
      case OCW2_SPECIFIC_EOI:
        this.isr &= ~(1 << (v & 7));
        break;
      case OCW2_SET_PRIORITY:
        this.priorityAdd = (v + 1) & 7;
        break;
      case OCW2_ROTATE_SPECIFIC_EOI:
        this.isr &= ~(1 << (v & 7));
        this.priorityAdd = ((v & 7) + 1) & 7;
        break;
      case OCW2_NOP:
        break;
    }
  }

  writeData(v: number): void {
    switch (this.initState) {
      case 0: // OCW1
        this.imr = v;
        break;
      case 1: // ICW2: vector base (T7..T3)
        this.vectorBase = v & 0xf8;
        this.initState = this.single ? (this.icw4Needed ? 3 : 0) : 2;
        break;
      case 2: // ICW3: cascade wiring, fixed on a PC
        this.initState = this.icw4Needed ? 3 : 0;
        break;
      case 3: // ICW4
        this.autoEoi = (v & ICW4_AEOI) !== 0;
        this.specialFullyNested = (v & ICW4_SFNM) !== 0;
        this.initState = 0;
        break;
    }
  }

  save(): PicChipState {
    return {
      irr: this.irr,
      isr: this.isr,
      imr: this.imr,
      elcr: this.elcr,
      lines: this.lines,
      vectorBase: this.vectorBase,
      priorityAdd: this.priorityAdd,
      readIsr: this.readIsr,
      poll: this.poll,
      specialMask: this.specialMask,
      initState: this.initState,
      icw4Needed: this.icw4Needed,
      single: this.single,
      autoEoi: this.autoEoi,
      rotateOnAutoEoi: this.rotateOnAutoEoi,
      specialFullyNested: this.specialFullyNested,
    };
  }

  restore(s: PicChipState): void {
    this.irr = s.irr & 0xff;
    this.isr = s.isr & 0xff;
    this.imr = s.imr & 0xff;
    this.elcr = s.elcr & this.elcrMask;
    this.lines = s.lines & 0xff;
    this.vectorBase = s.vectorBase & 0xf8;
    this.priorityAdd = s.priorityAdd & 7;
    this.readIsr = !!s.readIsr;
    this.poll = !!s.poll;
    this.specialMask = !!s.specialMask;
    this.initState = s.initState >= 0 && s.initState <= 3 ? s.initState | 0 : 0;
    this.icw4Needed = !!s.icw4Needed;
    this.single = !!s.single;
    this.autoEoi = !!s.autoEoi;
    this.rotateOnAutoEoi = !!s.rotateOnAutoEoi;
    this.specialFullyNested = !!s.specialFullyNested;
  }
}

export class PicPair {
  private readonly m = new PicChip(true, ELCR_MASK_MASTER);
  private readonly s = new PicChip(false, ELCR_MASK_SLAVE);
  /** The INTR output (master has a request that beats what is in service). */
  private intr = false;
  private listener: ((level: boolean) => void) | undefined;
  /** Spurious interrupts acknowledged (no request left at INTA time). */
  spuriousCount = 0;

  /** Master command/data ports (attach at PORT_PIC_MASTER, 2 ports). */
  readonly master: BusDevice;
  /** Slave command/data ports (attach at PORT_PIC_SLAVE, 2 ports). */
  readonly slave: BusDevice;
  /** ELCR1/ELCR2 edge/level control (attach at PORT_PIC_ELCR, 2 ports). */
  readonly elcr: BusDevice;

  constructor() {
    this.master = this.chipPorts(this.m);
    this.slave = this.chipPorts(this.s);
    this.elcr = {
      read: (offset: number): number => (offset === 0 ? this.m.elcr : offset === 1 ? this.s.elcr : 0xff),
      write: (offset: number, _size: AccessSize, value: number): void => {
        if (offset === 0) this.m.elcr = value & this.m.elcrMask;
        else if (offset === 1) this.s.elcr = value & this.s.elcrMask;
        this.update();
      },
    };
  }

  /** Called whenever the INTR output changes (the LAPIC caches it). */
  onOutput(listener: (level: boolean) => void): void {
    this.listener = listener;
  }

  /** Set the level of ISA IRQ `irq` (0..15). IRQ 2 is the cascade and is ignored. */
  setIrq(irq: number, level: boolean): void {
    if (irq < 0 || irq > 15 || irq === CASCADE_IRQ) return;
    if (irq < 8) this.m.setLine(irq, level);
    else this.s.setLine(irq - 8, level);
    this.update();
  }

  /** True when INTR is asserted. Cheap: a cached flag. */
  hasInterrupt(): boolean {
    return this.intr;
  }

  /** The INTA cycle: returns the vector of the highest-priority request (spurious 7/15 if none). */
  acknowledge(): number {
    let vector: number;
    const irq = this.m.pendingIrq();
    if (irq >= 0) {
      this.m.intack(irq);
      if (irq === CASCADE_IRQ) {
        const irq2 = this.s.pendingIrq();
        if (irq2 >= 0) {
          this.s.intack(irq2);
          vector = this.s.vectorBase + irq2;
        } else {
          this.spuriousCount++;
          vector = this.s.vectorBase + 7;
        }
      } else {
        vector = this.m.vectorBase + irq;
      }
    } else {
      this.spuriousCount++;
      vector = this.m.vectorBase + 7;
    }
    this.update();
    return vector;
  }

  /** ISA IRQ numbers with a request in IRR (for tests and debugging). */
  get irr(): number {
    return this.m.irr | (this.s.irr << 8);
  }
  get isr(): number {
    return this.m.isr | (this.s.isr << 8);
  }
  get imr(): number {
    return this.m.imr | (this.s.imr << 8);
  }

  save(): PicState {
    return { master: this.m.save(), slave: this.s.save() };
  }

  restore(state: PicState): void {
    this.m.restore(state.master);
    this.s.restore(state.slave);
    this.update();
  }

  private chipPorts(chip: PicChip): BusDevice {
    return {
      read: (offset: number): number => this.readPort(chip, offset),
      write: (offset: number, _size: AccessSize, value: number): void => {
        if (offset === 0) chip.writeCommand(value & 0xff);
        else if (offset === 1) chip.writeData(value & 0xff);
        this.update();
      },
    };
  }

  private readPort(chip: PicChip, offset: number): number {
    if (offset > 1) return 0xff;
    if (chip.poll) {
      // poll mode: the read is the INTA; bit 7 says whether there was a request
      chip.poll = false;
      const irq = chip.pendingIrq();
      if (irq < 0) return 0;
      chip.intack(irq);
      if (chip === this.m && irq === CASCADE_IRQ) {
        const irq2 = this.s.pendingIrq();
        if (irq2 >= 0) this.s.intack(irq2);
      }
      this.update();
      return 0x80 | irq;
    }
    if (offset === 0) return chip.readIsr ? chip.isr : chip.irr;
    return chip.imr;
  }

  /** Recompute the cascade input and INTR. */
  private update(): void {
    // The cascade input follows the slave's INT output like a level: a slave request that is
    // withdrawn before INTA withdraws the master's IR2 request too.
    const casc = 1 << CASCADE_IRQ;
    this.m.irr = this.s.pendingIrq() >= 0 ? this.m.irr | casc : this.m.irr & ~casc;
    const intr = this.m.pendingIrq() >= 0;
    if (intr !== this.intr) {
      this.intr = intr;
      this.listener?.(intr);
    }
  }
}
