/**
 * Test support: a virtio-pci function on a PCI host and an MMIO bus, driven the way Linux's
 * virtio_pci_modern does it (find the capabilities, map the BAR, negotiate, set up queues).
 */
import { Bus } from '../../../machine/bus.js';
import { IrqRouter } from '../../../machine/irq.js';
import { GuestMemory } from '../../../machine/memory.js';
import { PORT_PCI_CONFIG_ADDRESS, PORT_PCI_CONFIG_DATA } from '../../../machine/layout.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PciHost, PCI_CONFIG_PORTS } from '../../pci/host.js';
import { bit, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK, VIRTIO_F_VERSION_1, type VirtioDevice } from '../device.js';
import { DriverQueue } from '../queue/testing.js';
import * as T from './transport.js';

export const SLOT = 3;
export const BAR_BASE = 0xc000_0000;
export const INTX_GSI = 19;

export class PciDriverHarness {
  readonly mem = new GuestMemory([{ base: 0, size: 4 << 20 }]);
  readonly pio = new Bus('pio');
  readonly mmio = new Bus('mmio');
  readonly irq = new IrqRouter();
  readonly host = new PciHost({ mmio: this.mmio });
  readonly msis: [number, number][] = [];
  readonly fn: T.VirtioPciDevice;
  intxLevel = false;
  caps = new Map<number, { cap: number; bar: number; offset: number; length: number }>();

  constructor(readonly device: VirtioDevice) {
    this.pio.insert(PORT_PCI_CONFIG_ADDRESS, PCI_CONFIG_PORTS, this.host, 'pci');
    this.irq.install({ setIrq: (gsi, level) => gsi === INTX_GSI && (this.intxLevel = level) });
    this.fn = new T.VirtioPciDevice({
      device, memory: this.mem, msi: { sendMsi: (a, d) => this.msis.push([a, d]) }, intx: this.irq.line(INTX_GSI), name: 'virtio-test',
    });
    this.host.addDevice(SLOT, 0, this.fn);
  }

  cfgRead(reg: number, size: 1 | 2 | 4 = 4): number {
    this.pio.write(PORT_PCI_CONFIG_ADDRESS, 4, (0x8000_0000 | (SLOT << 11) | (reg & 0xfc)) >>> 0);
    return this.pio.read(PORT_PCI_CONFIG_DATA + (reg & 3), size);
  }
  cfgWrite(reg: number, size: 1 | 2 | 4, v: number): void {
    this.pio.write(PORT_PCI_CONFIG_ADDRESS, 4, (0x8000_0000 | (SLOT << 11) | (reg & 0xfc)) >>> 0);
    this.pio.write(PORT_PCI_CONFIG_DATA + (reg & 3), size, v);
  }

  /** What the PCI core does: size and place BAR0/1, enable memory decode and bus mastering; walk the vendor caps. */
  enable(): void {
    this.cfgWrite(0x10, 4, 0xffff_ffff);
    this.cfgWrite(0x14, 4, 0xffff_ffff);
    const size = ~(this.cfgRead(0x10) & ~0xf) + 1;
    if (size !== T.BAR_SIZE) throw new Error(`BAR size ${size}`);
    this.cfgWrite(0x10, 4, BAR_BASE);
    this.cfgWrite(0x14, 4, 0);
    this.cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    for (let p = this.cfgRead(0x34, 1); p !== 0; p = this.cfgRead(p + 1, 1)) {
      if (this.cfgRead(p, 1) !== 0x09) continue;
      const type = this.cfgRead(p + 3, 1);
      if (!this.caps.has(type)) this.caps.set(type, { cap: p, bar: this.cfgRead(p + 4, 1), offset: this.cfgRead(p + 8), length: this.cfgRead(p + 12) });
    }
  }

  common(reg: number, size: 1 | 2 | 4 = 4): number {
    return this.mmio.read(BAR_BASE + this.caps.get(T.VIRTIO_PCI_CAP_COMMON_CFG)!.offset + reg, size);
  }
  setCommon(reg: number, size: 1 | 2 | 4, v: number): void {
    this.mmio.write(BAR_BASE + this.caps.get(T.VIRTIO_PCI_CAP_COMMON_CFG)!.offset + reg, size, v);
  }
  isr(): number {
    return this.mmio.read(BAR_BASE + this.caps.get(T.VIRTIO_PCI_CAP_ISR_CFG)!.offset, 1);
  }
  kick(q: number): void {
    const n = this.caps.get(T.VIRTIO_PCI_CAP_NOTIFY_CFG)!;
    const mult = this.cfgRead(n.cap + 16);
    this.setCommon(T.COMMON_Q_SELECT, 2, q);
    const off = this.common(T.COMMON_Q_NOTIFY_OFF, 2);
    this.mmio.write(BAR_BASE + n.offset + off * mult, 2, q);
  }
  status(): number {
    return this.common(T.COMMON_STATUS, 1);
  }

  /** Feature negotiation; returns whether FEATURES_OK stuck. */
  negotiate(features: bigint = bit(VIRTIO_F_VERSION_1)): boolean {
    this.setCommon(T.COMMON_STATUS, 1, 0);
    this.setCommon(T.COMMON_STATUS, 1, STATUS_ACKNOWLEDGE);
    this.setCommon(T.COMMON_STATUS, 1, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    this.setCommon(T.COMMON_GFSELECT, 4, 0);
    this.setCommon(T.COMMON_GF, 4, Number(features & 0xffff_ffffn));
    this.setCommon(T.COMMON_GFSELECT, 4, 1);
    this.setCommon(T.COMMON_GF, 4, Number(features >> 32n));
    this.setCommon(T.COMMON_STATUS, 1, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    return (this.status() & STATUS_FEATURES_OK) !== 0;
  }

  /** Queue setup as vp_modern does it; returns the driver side and the vector read back. */
  setupQueue(q: number, size: number, base: number, vector = T.VIRTIO_MSI_NO_VECTOR): { drv: DriverQueue; vector: number } {
    this.setCommon(T.COMMON_Q_SELECT, 2, q);
    const max = this.common(T.COMMON_Q_SIZE, 2);
    if (size > max) throw new Error(`queue ${q} holds at most ${max}`);
    this.setCommon(T.COMMON_Q_SIZE, 2, size);
    const drv = new DriverQueue(this.mem, size, base);
    this.setCommon(T.COMMON_Q_DESC_LO, 4, drv.descAddr);
    this.setCommon(T.COMMON_Q_DESC_HI, 4, 0);
    this.setCommon(T.COMMON_Q_AVAIL_LO, 4, drv.availAddr);
    this.setCommon(T.COMMON_Q_AVAIL_HI, 4, 0);
    this.setCommon(T.COMMON_Q_USED_LO, 4, drv.usedAddr);
    this.setCommon(T.COMMON_Q_USED_HI, 4, 0);
    this.setCommon(T.COMMON_Q_MSIX, 2, vector);
    const got = this.common(T.COMMON_Q_MSIX, 2);
    this.setCommon(T.COMMON_Q_ENABLE, 2, 1);
    return { drv, vector: got };
  }

  driverOk(): void {
    this.setCommon(T.COMMON_STATUS, 1, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }

  /** Enable MSI-X and program vector `v` with message (0xfee00000, data), unmasked. */
  msixVector(v: number, data: number, masked = false): void {
    const cap = this.fn.msix.capOffset;
    this.cfgWrite(cap + 2, 2, 0x8000);
    const t = BAR_BASE + T.MSIX_TABLE_OFFSET + 16 * v;
    this.mmio.write(t, 4, 0xfee0_0000);
    this.mmio.write(t + 4, 4, 0);
    this.mmio.write(t + 8, 4, data);
    this.mmio.write(t + 12, 4, masked ? 1 : 0);
  }
}
