/**
 * The software engine's InterruptSink: where a device's GSI level goes when our own PIC and
 * IOAPIC models are the interrupt controllers (KVM has its own irqchip and does not use this).
 *
 * ISA IRQs 0..15 go to both the 8259 pair and the IOAPIC, as on a PC, so either can be in use.
 * ISA IRQ 0 (the PIT) lands on IOAPIC pin 2, which the MADT's interrupt source override
 * announces; every other ISA IRQ is identity-mapped. GSI 2 itself is the PIC cascade and is
 * not a device line (counted and ignored). GSIs 16..23 (PCI INTx) go to the IOAPIC only.
 */
import type { InterruptSink } from '../../machine/irq.js';
import { IOAPIC_PINS, IRQ_PIT } from '../../machine/layout.js';
import type { IoApic } from './ioapic/ioapic.js';
import type { PicPair } from './pic/pic.js';

/** The IOAPIC pin ISA IRQ 0 is wired to (MADT interrupt source override 0 -> 2). */
export const PIT_IOAPIC_PIN = 2;
const CASCADE_GSI = 2;

export class LegacyInterruptRouter implements InterruptSink {
  /** Level changes on GSIs nothing is wired to. */
  unroutedCount = 0;

  constructor(
    private readonly pic: PicPair,
    private readonly ioapic: IoApic,
  ) {}

  setIrq(gsi: number, level: boolean): void {
    if (!Number.isInteger(gsi) || gsi < 0 || gsi >= IOAPIC_PINS || gsi === CASCADE_GSI) {
      this.unroutedCount++;
      return;
    }
    if (gsi < 16) this.pic.setIrq(gsi, level);
    this.ioapic.setIrq(gsi === IRQ_PIT ? PIT_IOAPIC_PIN : gsi, level);
  }
}
