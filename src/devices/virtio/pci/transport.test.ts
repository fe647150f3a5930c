import { describe, expect, it } from 'vitest';
import {
  bit, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1, type VirtioDevice, type VirtioTransport,
} from '../device.js';
import { DescriptorChain, VIRTQ_DESC_F_NEXT } from '../queue/queue.js';
import { BAR_BASE, PciDriverHarness } from './testing.js';
import * as T from './transport.js';

/** A two-queue test device: queue 0 echoes readable bytes into the writable buffers; queue 1 idles. */
class EchoDevice implements VirtioDevice {
  readonly deviceType = 0x2a;
  readonly pciClass = 0x078000;
  readonly queueSizes = [16, 8];
  readonly features = bit(0n);
  readonly configSize = 8;
  readonly config = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  t!: VirtioTransport;
  resets = 0;
  activations = 0;
  private readonly chain = new DescriptorChain();
  attach(t: VirtioTransport): void {
    this.t = t;
  }
  readConfig(o: number, size: 1 | 2 | 4): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | this.config[o + i]!;
    return v >>> 0;
  }
  writeConfig(o: number, _size: 1 | 2 | 4, value: number): void {
    this.config[o] = value & 0xff;
  }
  activate(): void {
    this.activations++;
  }
  reset(): void {
    this.resets++;
  }
  notify(index: number): void {
    const q = this.t.queue(index);
    let r;
    while ((r = q.pop(this.t.memory, this.chain)) === true) {
      const c = this.chain;
      const data = c.readable > 0 ? this.t.memory.readBytes(c.addr[0]!, c.len[0]!) : new Uint8Array();
      if (c.writable > 0) this.t.memory.writeBytes(c.addr[c.readable]!, data.subarray(0, c.len[c.readable]!));
      q.pushUsed(this.t.memory, c.head, Math.min(data.length, c.writableBytes));
    }
    if (r !== false) this.t.fail(r);
    else this.t.usedBuffers(index);
  }
}

function boot() {
  const dev = new EchoDevice();
  const h = new PciDriverHarness(dev);
  h.enable();
  return { dev, h };
}

describe('virtio-pci identity and capabilities', () => {
  it('is a modern virtio function: 1af4:1040+type, revision 1, class from the device, INTA', () => {
    const { h } = boot();
    expect(h.cfgRead(0x00)).toBe(((0x1040 + 0x2a) << 16 | 0x1af4) >>> 0);
    expect(h.cfgRead(0x08)).toBe(0x0780_0001);
    expect(h.cfgRead(0x2c)).toBe(0x1100_1af4);
    expect(h.cfgRead(0x3d, 1)).toBe(1);
    expect(h.cfgRead(0x10) & 0xf).toBe(0x4); // 64-bit memory BAR
  });

  it('lists COMMON, ISR, DEVICE, NOTIFY and PCI_CFG in BAR0, and MSI-X with one vector per queue + config', () => {
    const { h } = boot();
    expect([...h.caps.keys()].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(h.caps.get(T.VIRTIO_PCI_CAP_COMMON_CFG)).toMatchObject({ bar: 0, offset: 0, length: 0x40 });
    expect(h.caps.get(T.VIRTIO_PCI_CAP_ISR_CFG)).toMatchObject({ bar: 0, offset: 0x1000 });
    expect(h.caps.get(T.VIRTIO_PCI_CAP_DEVICE_CFG)).toMatchObject({ bar: 0, offset: 0x2000, length: 8 });
    const notify = h.caps.get(T.VIRTIO_PCI_CAP_NOTIFY_CFG)!;
    expect(notify).toMatchObject({ bar: 0, offset: 0x3000, length: 8 });
    expect(h.cfgRead(notify.cap + 2, 1)).toBe(20);
    expect(h.cfgRead(notify.cap + 16)).toBe(4);
    const msix = h.fn.msix.capOffset;
    expect(h.cfgRead(msix, 1)).toBe(0x11);
    expect(h.cfgRead(msix + 2, 2) & 0x7ff).toBe(2);
    expect(h.cfgRead(msix + 4)).toBe(0x6000);
    expect(h.cfgRead(msix + 8)).toBe(0x7000);
  });

  it('the PCI_CFG window reaches the BAR through configuration space', () => {
    const { h } = boot();
    const c = h.caps.get(T.VIRTIO_PCI_CAP_PCI_CFG)!.cap;
    h.cfgWrite(c + 4, 1, 0);
    h.cfgWrite(c + 8, 4, T.COMMON_NUM_QUEUES);
    h.cfgWrite(c + 12, 4, 2);
    expect(h.cfgRead(c + 16) & 0xffff).toBe(2);
    h.cfgWrite(c + 8, 4, T.DEVICE_CFG_OFFSET);
    h.cfgWrite(c + 12, 4, 1);
    h.cfgWrite(c + 16, 4, 0x99);
    expect(h.mmio.read(BAR_BASE + T.DEVICE_CFG_OFFSET, 1)).toBe(0x99);
    h.cfgWrite(c + 12, 4, 3); // invalid length: reads 0
    expect(h.cfgRead(c + 16)).toBe(0);
  });
});

describe('virtio-pci feature negotiation and status', () => {
  it('offers VERSION_1, INDIRECT_DESC, EVENT_IDX and the device bits, never RING_PACKED', () => {
    const { h } = boot();
    h.setCommon(T.COMMON_DFSELECT, 4, 0);
    const lo = h.common(T.COMMON_DF);
    h.setCommon(T.COMMON_DFSELECT, 4, 1);
    const hi = h.common(T.COMMON_DF);
    const f = BigInt(lo) | (BigInt(hi) << 32n);
    expect(f).toBe(bit(0n) | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX));
    expect(f & bit(VIRTIO_F_RING_PACKED)).toBe(0n);
    h.setCommon(T.COMMON_DFSELECT, 4, 7);
    expect(h.common(T.COMMON_DF)).toBe(0);
  });

  it('FEATURES_OK sticks only with VERSION_1 and offered bits', () => {
    const { h } = boot();
    expect(h.negotiate(0n)).toBe(false); // legacy driver: no VERSION_1
    expect(h.negotiate(bit(VIRTIO_F_VERSION_1) | bit(5n))).toBe(false); // not offered
    expect(h.negotiate(bit(VIRTIO_F_VERSION_1) | bit(0n))).toBe(true);
    expect(h.fn.negotiated).toBe(bit(VIRTIO_F_VERSION_1) | bit(0n));
  });

  it('serves a queue end to end with MSI-X, per-queue vectors and no-vector read-back', () => {
    const { dev, h } = boot();
    h.negotiate();
    h.msixVector(0, 0x41);
    h.setCommon(T.COMMON_MSIX_CONFIG, 2, 2);
    expect(h.common(T.COMMON_MSIX_CONFIG, 2)).toBe(2);
    h.setCommon(T.COMMON_MSIX_CONFIG, 2, 3); // only vectors 0..2 exist
    expect(h.common(T.COMMON_MSIX_CONFIG, 2)).toBe(T.VIRTIO_MSI_NO_VECTOR);
    const { drv, vector } = h.setupQueue(0, 16, 0x10000, 0);
    expect(vector).toBe(0);
    expect(h.setupQueue(1, 8, 0x20000, 40).vector).toBe(T.VIRTIO_MSI_NO_VECTOR);
    h.driverOk();
    expect(dev.activations).toBe(1);
    h.mem.writeBytes(0x40000, new TextEncoder().encode('hello'));
    drv.add([{ addr: 0x40000, len: 5 }, { addr: 0x41000, len: 64, write: true }]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 5 }]);
    expect(new TextDecoder().decode(h.mem.readBytes(0x41000, 5))).toBe('hello');
    expect(h.msis).toEqual([[0xfee0_0000, 0x41]]);
    expect(h.intxLevel).toBe(false);
    expect(h.fn.notifyCount).toBe(1);
  });

  it('holds a masked vector pending and delivers it on unmask', () => {
    const { h } = boot();
    h.negotiate();
    h.msixVector(0, 0x41, true);
    const { drv } = h.setupQueue(0, 16, 0x10000, 0);
    h.driverOk();
    drv.add([{ addr: 0x40000, len: 4 }, { addr: 0x41000, len: 4, write: true }]);
    h.kick(0);
    expect(h.msis).toEqual([]);
    expect(h.mmio.read(BAR_BASE + T.MSIX_PBA_OFFSET, 4)).toBe(1);
    h.mmio.write(BAR_BASE + T.MSIX_TABLE_OFFSET + 12, 4, 0);
    expect(h.msis).toEqual([[0xfee0_0000, 0x41]]);
    expect(h.mmio.read(BAR_BASE + T.MSIX_PBA_OFFSET, 4)).toBe(0);
  });

  it('uses INTx through the ISR when MSI-X is off: raise, read-to-clear, INTX_DISABLE', () => {
    const { h } = boot();
    h.negotiate();
    const { drv } = h.setupQueue(0, 16, 0x10000);
    h.driverOk();
    drv.add([{ addr: 0x40000, len: 4 }, { addr: 0x41000, len: 4, write: true }]);
    h.kick(0);
    expect(h.intxLevel).toBe(true);
    expect(h.cfgRead(0x06, 2) & 0x8).toBe(0x8); // interrupt status
    expect(h.isr()).toBe(T.ISR_QUEUE);
    expect(h.intxLevel).toBe(false);
    expect(h.isr()).toBe(0);
    h.cfgWrite(0x04, 2, 0x406); // memory, master, INTx disable
    drv.add([{ addr: 0x40000, len: 4 }, { addr: 0x41000, len: 4, write: true }]);
    h.kick(0);
    expect(h.intxLevel).toBe(false);
    expect(h.cfgRead(0x06, 2) & 0x8).toBe(0x8);
    h.cfgWrite(0x04, 2, 0x6);
    expect(h.intxLevel).toBe(true);
    h.msixVector(0, 0x41); // enabling MSI-X takes INTx away
    expect(h.intxLevel).toBe(false);
    expect(h.msis).toEqual([]);
  });

  it('device_status = 0 resets queues, vectors and features; the driver can start again', () => {
    const { dev, h } = boot();
    h.negotiate();
    h.msixVector(0, 0x41);
    h.setupQueue(0, 16, 0x10000, 0);
    h.driverOk();
    h.setCommon(T.COMMON_STATUS, 1, 0);
    expect(h.status()).toBe(0);
    expect(dev.resets).toBeGreaterThan(0);
    h.setCommon(T.COMMON_Q_SELECT, 2, 0);
    expect(h.common(T.COMMON_Q_ENABLE, 2)).toBe(0);
    expect(h.common(T.COMMON_Q_SIZE, 2)).toBe(16);
    expect(h.common(T.COMMON_Q_MSIX, 2)).toBe(T.VIRTIO_MSI_NO_VECTOR);
    h.setCommon(T.COMMON_GFSELECT, 4, 1);
    expect(h.common(T.COMMON_GF)).toBe(0);
    expect(h.negotiate()).toBe(true);
    const { drv } = h.setupQueue(0, 8, 0x30000, 0);
    h.driverOk();
    drv.add([{ addr: 0x40000, len: 4 }, { addr: 0x41000, len: 4, write: true }]);
    h.kick(0);
    expect(drv.takeUsed()).toHaveLength(1);
  });

  it('reads and writes the device configuration; queue registers are fixed while enabled', () => {
    const { h } = boot();
    expect(h.mmio.read(BAR_BASE + 0x2000, 4)).toBe(0x0403_0201);
    expect(h.mmio.read(BAR_BASE + 0x2004, 2)).toBe(0x0605);
    h.negotiate();
    h.setupQueue(0, 16, 0x10000);
    h.setCommon(T.COMMON_Q_SELECT, 2, 0);
    const desc = h.common(T.COMMON_Q_DESC_LO);
    h.setCommon(T.COMMON_Q_DESC_LO, 4, 0x80000);
    h.setCommon(T.COMMON_Q_SIZE, 2, 4);
    expect(h.common(T.COMMON_Q_DESC_LO)).toBe(desc);
    expect(h.common(T.COMMON_Q_SIZE, 2)).toBe(16);
    h.setCommon(T.COMMON_Q_SELECT, 2, 9); // no such queue
    expect(h.common(T.COMMON_Q_SIZE, 2)).toBe(0);
    expect(h.common(T.COMMON_NUM_QUEUES, 2)).toBe(2);
    // a 32-bit read across msix_config and num_queues
    expect(h.common(T.COMMON_MSIX_CONFIG, 4) >>> 16).toBe(2);
  });
});

describe('virtio-pci against a hostile driver', () => {
  it('a queue set up outside RAM sets DEVICE_NEEDS_RESET and a config interrupt', () => {
    const { h } = boot();
    h.negotiate();
    h.msixVector(2, 0x42);
    h.setCommon(T.COMMON_MSIX_CONFIG, 2, 2);
    h.setCommon(T.COMMON_Q_SELECT, 2, 0);
    h.setCommon(T.COMMON_Q_DESC_LO, 4, 0xc000_0000); // the MMIO hole
    h.setCommon(T.COMMON_Q_ENABLE, 2, 1);
    expect(h.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(h.common(T.COMMON_Q_ENABLE, 2)).toBe(0);
    h.driverOk();
    expect(h.fn.lastError).toMatch(/not in guest RAM: the guest's virtio driver must reset the device/);
    h.setCommon(T.COMMON_STATUS, 1, 0);
    expect(h.status()).toBe(0);
  });

  it('a looping chain breaks the device, which then ignores notifications until reset', () => {
    const { h } = boot();
    h.negotiate();
    h.msixVector(0, 0x41);
    h.msixVector(2, 0x42);
    h.setCommon(T.COMMON_MSIX_CONFIG, 2, 2);
    const { drv } = h.setupQueue(0, 16, 0x10000, 0);
    h.driverOk();
    drv.writeDesc(0, 0x40000, 4, VIRTQ_DESC_F_NEXT, 0);
    drv.publish(0);
    expect(() => h.kick(0)).not.toThrow();
    expect(h.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(h.status() & STATUS_DRIVER_OK).toBe(STATUS_DRIVER_OK);
    expect(h.msis).toEqual([[0xfee0_0000, 0x42]]); // config vector
    expect(h.fn.failedCount).toBe(1);
    h.kick(0);
    expect(h.fn.failedCount).toBe(1);
  });

  it('unaligned, odd-sized and out-of-range BAR accesses neither throw nor change state', () => {
    const { h } = boot();
    for (let o = 0; o < T.BAR_SIZE; o += 0x3f7) {
      for (const s of [1, 2, 4] as const) {
        expect(() => h.mmio.write(BAR_BASE + o, s, 0xffff_ffff)).not.toThrow();
        expect(() => h.mmio.read(BAR_BASE + o, s)).not.toThrow();
      }
    }
  });

  it('honours EVENT_IDX once negotiated', () => {
    const { h } = boot();
    h.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX));
    h.msixVector(0, 0x41);
    const { drv } = h.setupQueue(0, 16, 0x10000, 0);
    h.driverOk();
    const req = () => drv.add([{ addr: 0x40000, len: 4 }, { addr: 0x41000, len: 4, write: true }]);
    req();
    h.kick(0);
    expect(h.msis).toHaveLength(1);
    expect(drv.availEvent()).toBe(1);
    drv.setUsedEvent(2); // interrupt after the third completion
    req();
    h.kick(0);
    expect(h.msis).toHaveLength(1);
    req();
    h.kick(0);
    expect(h.msis).toHaveLength(2);
  });
});
