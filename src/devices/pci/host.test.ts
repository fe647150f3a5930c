import { describe, it, expect } from 'vitest';
import { Bus } from '../../machine/bus.js';
import { PCI_ECAM_START, PORT_PCI_CONFIG_ADDRESS, PORT_PCI_CONFIG_DATA } from '../../machine/layout.js';
import { ResetControl } from '../acpi/pm.js';
import {
  barAddress, PciConfigSpace, PciHost, PciError, PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR, PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_CONFIG_PORTS,
  type PciBar,
} from './host.js';

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

describe('PciConfigSpace capabilities and BARs', () => {
  it('links capabilities into a list and sets the status bit', () => {
    const dev = new PciConfigSpace();
    expect(dev.configRead(0x06, 2) & 0x10).toBe(0);
    const a = dev.addCapability(PCI_CAP_ID_MSIX, 12);
    const b = dev.addCapability(PCI_CAP_ID_VNDR, 14);
    const c = dev.addCapability(PCI_CAP_ID_VNDR, 20);
    expect([a, b, c]).toEqual([0x40, 0x4c, 0x5c]);
    expect(dev.configRead(0x06, 2) & 0x10).toBe(0x10);
    expect(dev.configRead(0x34, 1)).toBe(0x40);
    const walk: number[] = [];
    for (let p = dev.configRead(0x34, 1); p !== 0; p = dev.configRead(p + 1, 1)) walk.push(dev.configRead(p, 1));
    expect(walk).toEqual([0x11, 0x09, 0x09]);
    expect(() => dev.addCapability(PCI_CAP_ID_VNDR, 200)).toThrow(PciError);
  });

  it('sizes and programs 32-bit and 64-bit memory BARs', () => {
    const dev = new PciConfigSpace();
    dev.defineMemoryBar(0, 0x8000, { is64: true });
    dev.defineMemoryBar(2, 0x1000, { prefetchable: true });
    expect(dev.configRead(0x10, 4)).toBe(0x4);
    expect(dev.configRead(0x18, 4)).toBe(0x8);
    dev.configWrite(0x10, 4, 0xffff_ffff);
    dev.configWrite(0x14, 4, 0xffff_ffff);
    dev.configWrite(0x18, 4, 0xffff_ffff);
    expect(dev.configRead(0x10, 4)).toBe(0xffff_8004);
    expect(dev.configRead(0x14, 4)).toBe(0xffff_ffff);
    expect(dev.configRead(0x18, 4)).toBe(0xffff_f008);
    dev.programBar(0, 0x1_2345_8000);
    expect([dev.configRead(0x10, 4), dev.configRead(0x14, 4)]).toEqual([0x2345_8004, 1]);
    expect(barAddress(dev, 0)).toBeUndefined(); // memory decode off
    dev.set16(PCI_COMMAND, PCI_COMMAND_MEMORY);
    expect(barAddress(dev, 0)).toBe(0x1_2345_8000);
    expect(() => dev.defineMemoryBar(1, 3000)).toThrow(PciError);
  });
});

describe('PciHost BAR mapping', () => {
  function withBar() {
    const mmio = new Bus('mmio');
    const host = new PciHost({ mmio });
    const pio = new Bus('pio');
    pio.insert(PORT_PCI_CONFIG_ADDRESS, PCI_CONFIG_PORTS, host, 'pci');
    const region = { read: (o: number) => 0xab00 + o, write: () => {} };
    class Dev extends PciConfigSpace {
      bars(): PciBar[] {
        return [{ index: 0, size: 0x1000, device: region, name: 'test-bar' }];
      }
    }
    const dev = new Dev();
    dev.defineMemoryBar(0, 0x1000);
    dev.setWritable(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    const cfgWrite = (reg: number, size: 1 | 2 | 4, v: number) => {
      pio.write(PORT_PCI_CONFIG_ADDRESS, 4, (0x8000_0000 | (2 << 11) | reg) >>> 0);
      pio.write(PORT_PCI_CONFIG_DATA + (reg & 3), size, v);
    };
    return { mmio, host, dev, cfgWrite };
  }

  it('maps a BAR where firmware put it, and follows the guest moving and disabling it', () => {
    const { mmio, host, dev, cfgWrite } = withBar();
    dev.programBar(0, 0xc000_0000);
    dev.set16(PCI_COMMAND, PCI_COMMAND_MEMORY);
    host.addDevice(2, 0, dev);
    expect(mmio.read(0xc000_0010, 4)).toBe(0xab10);
    cfgWrite(PCI_COMMAND, 2, 0); // Linux turns decode off while sizing
    expect(mmio.read(0xc000_0010, 4)).toBe(0xffff_ffff);
    cfgWrite(0x10, 4, 0xffff_ffff);
    cfgWrite(0x10, 4, 0xc010_0000);
    cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(mmio.read(0xc000_0010, 4)).toBe(0xffff_ffff);
    expect(mmio.read(0xc010_0004, 4)).toBe(0xab04);
    expect(mmio.list().filter((m) => m.name === 'test-bar')).toHaveLength(1);
  });

  it('leaves a BAR placed over another device undecoded and counts it', () => {
    const { mmio, host, dev, cfgWrite } = withBar();
    mmio.insert(0xfee0_0000, 0x1000, { read: () => 0x1234, write: () => {} }, 'lapic');
    host.addDevice(2, 0, dev);
    cfgWrite(0x10, 4, 0xfee0_0000);
    cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(host.barConflictCount).toBe(1);
    expect(mmio.read(0xfee0_0000, 4)).toBe(0x1234);
  });
});
