/**
 * MSI delivery on the software engine: an x86 message (Intel SDM vol. 3, 11.11) turned into an
 * interrupt at our local APIC models.
 *
 *   address  bits 31:20 0xFEE, 19:12 destination ID, 3 redirection hint, 2 destination mode
 *            (1 = logical); bits 63:32 zero (no x2APIC extended IDs)
 *   data     bits 7:0 vector, 10:8 delivery mode, 14 level, 15 trigger mode (ignored)
 *
 * MSIs are delivered edge-triggered whatever the trigger bit says (a level MSI has no line to
 * deassert, and its EOI must not reach the IOAPIC); a message that is not in the APIC window, or whose vector
 * is below 16 in fixed mode, is dropped and counted (real hardware would record an APIC error).
 * The KVM engine implements `MsiSink` itself (KVM_SIGNAL_MSI) and does not use this.
 */
import type { MsiSink } from '../../machine/irq.js';
import { DELIVERY_FIXED, DELIVERY_LOWEST_PRIORITY, type ApicMessageTarget } from '../legacy/ioapic/ioapic.js';

export const MSI_ADDRESS_BASE = 0xfee0_0000;
const MSI_ADDRESS_MASK = 0xfff0_0000;
const MSI_DEST_SHIFT = 12;
const MSI_DEST_LOGICAL = 1 << 2;
const MSI_DATA_DELIVERY_SHIFT = 8;

export class ApicMsiSink implements MsiSink {
  /** Messages outside the APIC window, with an illegal vector, or that no APIC accepted. */
  droppedCount = 0;
  delivered = 0;

  constructor(private readonly targets: readonly ApicMessageTarget[]) {}

  sendMsi(address: number, data: number): void {
    if (address >= 0x1_0000_0000 || ((address & MSI_ADDRESS_MASK) >>> 0) !== MSI_ADDRESS_BASE) {
      this.droppedCount++;
      return;
    }
    const dest = (address >>> MSI_DEST_SHIFT) & 0xff;
    const logical = (address & MSI_DEST_LOGICAL) !== 0;
    const vector = data & 0xff;
    const mode = (data >>> MSI_DATA_DELIVERY_SHIFT) & 7;
    if ((mode === DELIVERY_FIXED || mode === DELIVERY_LOWEST_PRIORITY) && vector < 16) {
      this.droppedCount++;
      return;
    }
    let accepted = false;
    for (const t of this.targets) {
      if (!t.matchesDestination(dest, logical)) continue;
      t.acceptInterrupt(vector, mode, false);
      accepted = true;
      if (mode === DELIVERY_LOWEST_PRIORITY) break; // one CPU takes it
    }
    if (accepted) this.delivered++;
    else this.droppedCount++;
  }
}
