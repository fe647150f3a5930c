import { describe, it, expect } from 'vitest';
import { Bus } from '../../machine/bus.js';
import { PCI_ECAM_START, PORT_PCI_CONFIG_ADDRESS, PORT_PCI_CONFIG_DATA } from '../../machine/layout.js';
import { ResetControl } from '../acpi/pm.js';
import { PciConfigSpace, PciHost, PciError, PCI_CONFIG_PORTS } from './host.js';

function setup() {
  let resets = 0;
  const host = new PciHost({ resetControl: new ResetControl(() => resets++) });
  const pio = new Bus('pio');
  pio.insert(PORT_PCI_CONFIG_ADDRESS, PCI_CONFIG_PORTS, host, 'pci');
  const mmio = new Bus('mmio');
  mmio.insert(PCI_ECAM_START, 1 << 20, host.ecam, 'ecam');
  const cfg = (bus: number, dev: number, fn: number, reg: number): number =>
    (0x8000_0000 | (bus << 16) | (dev << 11) | (fn << 8) | reg) >>> 0;
  const read32 = (dev: number, reg: number, bus = 0): number => {
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, cfg(bus, dev, 0, reg));
    return pio.read(PORT_PCI_CONFIG_DATA, 4);
  };
  return { host, pio, mmio, cfg, read32, resets: () => resets };
}

describe('PciHost', () => {
  it('passes Linux pci_check_type1: CONFIG_ADDRESS reads back', () => {
    const { pio } = setup();
    pio.write(0xcfb, 1, 0x01);
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, 0x8000_0000);
    expect(pio.read(PORT_PCI_CONFIG_ADDRESS, 4)).toBe(0x8000_0000);
    expect(pio.read(PORT_PCI_CONFIG_ADDRESS, 1)).toBe(0xff); // not a type-2 mechanism
  });

  it('shows the i440FX host bridge at 00:00.0', () => {
    const { pio, read32, cfg } = setup();
    expect(read32(0, 0x00)).toBe(0x1237_8086);
    expect(read32(0, 0x08) >>> 8).toBe(0x060000);
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, cfg(0, 0, 0, 0x08));
    expect(pio.read(PORT_PCI_CONFIG_DATA + 3, 1)).toBe(0x06);
    expect(pio.read(PORT_PCI_CONFIG_DATA + 2, 2)).toBe(0x0600);
    // read-only vendor ID
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, cfg(0, 0, 0, 0));
    pio.write(PORT_PCI_CONFIG_DATA, 4, 0);
    expect(read32(0, 0)).toBe(0x1237_8086);
  });

  it('empty slots, other buses and disabled cycles read all-ones', () => {
    const { pio, read32 } = setup();
    expect(read32(5, 0)).toBe(0xffff_ffff);
    expect(read32(0, 0, 1)).toBe(0xffff_ffff);
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, 0);
    expect(pio.read(PORT_PCI_CONFIG_DATA, 2)).toBe(0xffff);
  });

  it('adds devices whose BARs size through the write mask', () => {
    const { host, pio, read32, cfg } = setup();
    const dev = new PciConfigSpace();
    dev.set32(0, 0x1000_1af4);
    dev.setWritable(0x10, 4, ~(0x1000 - 1)); // 4 KiB memory BAR
    host.addDevice(3, 0, dev);
    expect(read32(3, 0)).toBe(0x1000_1af4);
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, cfg(0, 3, 0, 0x10));
    pio.write(PORT_PCI_CONFIG_DATA, 4, 0xffff_ffff);
    expect(read32(3, 0x10)).toBe(0xffff_f000);
    expect(() => host.addDevice(3, 0, dev)).toThrow(PciError);
    expect(() => host.addDevice(0, 0, dev)).toThrow(PciError);
    expect(host.freeSlot()).toBe(1);
  });

  it('ECAM maps the same configuration space', () => {
    const { mmio } = setup();
    expect(mmio.read(PCI_ECAM_START, 4)).toBe(0x1237_8086);
    expect(mmio.read(PCI_ECAM_START + 0x100, 4)).toBe(0);
    expect(mmio.read(PCI_ECAM_START + (7 << 15), 4)).toBe(0xffff_ffff);
  });

  it('forwards byte accesses at 0xcf9 to the reset control register', () => {
    const { pio, resets } = setup();
    pio.write(0xcf9, 1, 0x06);
    expect(resets()).toBe(1);
    pio.write(PORT_PCI_CONFIG_ADDRESS, 4, 0x8000_0004);
    expect(resets()).toBe(1);
  });
});
