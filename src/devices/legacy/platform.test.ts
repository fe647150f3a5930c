/**
 * The legacy devices wired together the way the software engine's machine builder does it:
 * PIT -> IrqRouter -> LegacyInterruptRouter -> PIC + IOAPIC -> LAPIC -> the CPU's INTA.
 */
import { describe, it, expect } from 'vitest';
import { Machine } from '../../machine/machine.js';
import { GuestMemory } from '../../machine/memory.js';
import {
  IOAPIC_SIZE,
  IOAPIC_START,
  IRQ_COM1,
  IRQ_PIT,
  LAPIC_SIZE,
  LAPIC_START,
  MiB,
  PORT_COM1,
  PORT_PIC_ELCR,
  PORT_PIC_MASTER,
  PORT_PIC_SLAVE,
  PORT_PIT,
  PORT_SYSTEM_CONTROL_B,
} from '../../machine/layout.js';
import { FakeClock } from '../testing/fake-clock.js';
import { IoApic } from './ioapic/ioapic.js';
import { LocalApic } from './lapic/lapic.js';
import { PicPair } from './pic/pic.js';
import { Pit8254 } from './pit/pit.js';
import { Uart16550 } from './uart/uart.js';
import { LegacyInterruptRouter } from './interrupt-router.js';

function build() {
  const clock = new FakeClock();
  const m = new Machine(new GuestMemory([{ base: 0, size: 1 * MiB }]), clock);
  const pic = new PicPair();
  const ioapic = new IoApic();
  const lapic = new LocalApic({ clock, timers: m.timers, pic, onLevelEoi: (v) => ioapic.eoi(v) });
  ioapic.addTarget(lapic);
  m.irq.install(new LegacyInterruptRouter(pic, ioapic));
  const pit = new Pit8254({ clock, timers: m.timers, irq: m.irq.line(IRQ_PIT) });
  const out: number[] = [];
  const com1 = new Uart16550(m.irq.line(IRQ_COM1), (b) => out.push(...b));
  m.pio.insert(PORT_PIC_MASTER, 2, pic.master, 'pic-master');
  m.pio.insert(PORT_PIC_SLAVE, 2, pic.slave, 'pic-slave');
  m.pio.insert(PORT_PIC_ELCR, 2, pic.elcr, 'elcr');
  m.pio.insert(PORT_PIT, 4, pit, 'pit');
  m.pio.insert(PORT_SYSTEM_CONTROL_B, 1, pit.systemControl, 'port61');
  m.pio.insert(PORT_COM1, 8, com1, 'com1');
  m.mmio.insert(IOAPIC_START, IOAPIC_SIZE, ioapic, 'ioapic');
  m.mmio.insert(LAPIC_START, LAPIC_SIZE, lapic, 'lapic');
  const run = (ns: number): void => {
    const end = clock.now + ns;
    for (;;) {
      const d = m.timers.nextDeadline();
      if (d > end) break;
      clock.now = Math.max(clock.now, d);
      m.timers.runDue(clock.now);
    }
    clock.now = end;
  };
  return { m, pic, lapic, run, out };
}

describe('legacy platform wiring', () => {
  it('PIT ticks reach the CPU through the PIC in virtual-wire mode', () => {
    const { m, lapic, run } = build();
    for (const [p, v] of [[0x20, 0x11], [0x21, 0x30], [0x21, 0x04], [0x21, 0x01], [0x21, 0xfe]] as const) m.pio.write(p, 1, v);
    m.pio.write(0x43, 1, 0x34);
    m.pio.write(0x40, 1, 4773 & 0xff);
    m.pio.write(0x40, 1, 4773 >> 8);
    let ticks = 0;
    for (let i = 0; i < 10; i++) {
      run(4_001_000); // the period is 4773 PIT ticks = 4.0003 ms
      if (lapic.hasInterrupt()) {
        expect(lapic.acknowledge()).toBe(0x30);
        m.pio.write(0x20, 1, 0x20);
        ticks++;
      }
    }
    expect(ticks).toBe(10);
  });

  it('PIT ticks reach the CPU through IOAPIC pin 2 once the APIC is set up', () => {
    const { m, lapic, run } = build();
    m.pio.write(0x21, 1, 0xff); // PIC masked
    m.mmio.write(LAPIC_START + 0xf0, 4, 0x1ff);
    m.mmio.write(LAPIC_START + 0x350, 4, 0x10700); // LINT0 masked
    m.mmio.write(IOAPIC_START, 4, 0x10 + 2 * 2);
    m.mmio.write(IOAPIC_START + 0x10, 4, 0x30);
    m.pio.write(0x43, 1, 0x34);
    m.pio.write(0x40, 1, 0x9b);
    m.pio.write(0x40, 1, 0x2e);
    run(10_000_000);
    expect(lapic.acknowledge()).toBe(0x30);
    m.mmio.write(LAPIC_START + 0xb0, 4, 0);
    expect(lapic.hasInterrupt()).toBe(false);
  });

  it('the serial console prints, batched until a microtask', async () => {
    const { m, out } = build();
    for (const c of 'ok\n') m.pio.write(PORT_COM1, 1, c.charCodeAt(0));
    expect(out.length).toBe(0);
    await Promise.resolve();
    expect(String.fromCharCode(...out)).toBe('ok\n');
  });
});
