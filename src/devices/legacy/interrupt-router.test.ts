import { describe, it, expect } from 'vitest';
import { IrqRouter } from '../../machine/irq.js';
import { IoApic, type ApicMessageTarget } from './ioapic/ioapic.js';
import { PicPair } from './pic/pic.js';
import { LegacyInterruptRouter } from './interrupt-router.js';

function setup() {
  const pic = new PicPair();
  const ioapic = new IoApic();
  const got: number[] = [];
  const target: ApicMessageTarget = {
    matchesDestination: () => true,
    acceptInterrupt: (v) => got.push(v),
  };
  ioapic.addTarget(target);
  const router = new LegacyInterruptRouter(pic, ioapic);
  const irq = new IrqRouter();
  irq.install(router);
  // PIC: vectors 0x20.., unmasked
  pic.master.write(0, 1, 0x11);
  pic.master.write(1, 1, 0x20);
  pic.master.write(1, 1, 0x04);
  pic.master.write(1, 1, 0x01);
  pic.master.write(1, 1, 0x00);
  pic.slave.write(0, 1, 0x11);
  pic.slave.write(1, 1, 0x28);
  pic.slave.write(1, 1, 0x02);
  pic.slave.write(1, 1, 0x01);
  pic.slave.write(1, 1, 0x00);
  // IOAPIC: pin n -> vector 0x40 + n, unmasked edge
  for (let pin = 0; pin < 24; pin++) {
    ioapic.write(0, 4, 0x10 + 2 * pin);
    ioapic.write(0x10, 4, 0x40 + pin);
  }
  return { pic, ioapic, got, router, irq };
}

describe('LegacyInterruptRouter', () => {
  it('routes ISA IRQ 0 to PIC IRQ 0 and IOAPIC pin 2', () => {
    const { irq, pic, got } = setup();
    irq.line(0).pulse();
    expect(got).toEqual([0x42]);
    expect(pic.acknowledge()).toBe(0x20);
  });

  it('routes other ISA IRQs 1:1 to both, PCI GSIs to the IOAPIC only', () => {
    const { irq, pic, got } = setup();
    irq.line(4).raise();
    irq.line(12).raise();
    irq.line(17).raise();
    expect(got).toEqual([0x44, 0x4c, 0x51]);
    expect(pic.acknowledge()).toBe(0x2c); // the cascade (IR2) outranks IR4
    pic.slave.write(0, 1, 0x20);
    pic.master.write(0, 1, 0x20);
    expect(pic.acknowledge()).toBe(0x24);
  });

  it('ignores GSI 2 and out-of-range GSIs', () => {
    const { irq, router, got, pic } = setup();
    irq.line(2).raise();
    router.setIrq(24, true);
    router.setIrq(-1, true);
    expect(got).toEqual([]);
    expect(pic.hasInterrupt()).toBe(false);
    expect(router.unroutedCount).toBe(3);
  });
});
