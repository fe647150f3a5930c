import { describe, expect, it } from 'vitest';
import { STATUS_DEVICE_NEEDS_RESET } from '../device.js';
import { VIRTQ_DESC_F_NEXT } from '../queue/queue.js';
import { PciDriverHarness } from '../pci/testing.js';
import { EntropyDevice, MAX_FILL_BYTES, MAX_REQUEST_BYTES } from './rng.js';

/** A counting "random" source, so tests can see exactly what went where. */
function setup() {
  let next = 1;
  const calls: number[] = [];
  const dev = new EntropyDevice({
    fillRandom: (b) => {
      calls.push(b.length);
      for (let i = 0; i < b.length; i++) b[i] = next++ & 0xff || 0xff;
    },
  });
  const h = new PciDriverHarness(dev);
  h.enable();
  h.negotiate();
  h.msixVector(0, 0x41);
  const { drv } = h.setupQueue(0, 64, 0x10000, 0);
  h.driverOk();
  return { dev, h, drv, calls };
}

describe('virtio-rng', () => {
  it('is device 1af4:1044, class 00ff, one queue of 64', () => {
    const { h } = setup();
    expect(h.cfgRead(0x00)).toBe(0x1044_1af4);
    expect(h.cfgRead(0x08) >>> 8).toBe(0x00ff00);
    expect(h.common(0x12, 2)).toBe(1);
    expect(h.caps.has(4)).toBe(false); // no device configuration
  });

  it('fills each writable buffer with random bytes and returns its length', () => {
    const { h, drv, dev } = setup();
    drv.add([{ addr: 0x40000, len: 16, write: true }]);
    drv.add([{ addr: 0x41000, len: 8, write: true }, { addr: 0x42000, len: 8, write: true }]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 16 }, { id: 1, len: 16 }]);
    expect([...h.mem.readBytes(0x40000, 4)]).toEqual([1, 2, 3, 4]);
    expect(h.mem.read8(0x40010)).toBe(0); // nothing past the buffer
    expect(h.mem.read8(0x42000)).not.toBe(0);
    expect(h.msis).toEqual([[0xfee0_0000, 0x41]]); // one interrupt for the batch
    expect(dev.bytesServed).toBe(32);
  });

  it('caps a request at 64 KiB and each fill call at 65536 bytes', () => {
    const { h, drv, calls } = setup();
    drv.add([{ addr: 0x100000, len: 0x200000, write: true }]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: MAX_REQUEST_BYTES }]);
    expect(Math.max(...calls)).toBeLessThanOrEqual(MAX_FILL_BYTES);
    expect(h.mem.read8(0x100000 + MAX_REQUEST_BYTES)).toBe(0);
  });

  it('returns 0 bytes for a request with nothing writable', () => {
    const { h, drv, dev } = setup();
    drv.add([{ addr: 0x40000, len: 16 }]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 0 }]);
    expect(dev.emptyRequests).toBe(1);
  });

  it('a broken chain marks the device DEVICE_NEEDS_RESET; a reset brings it back', () => {
    const { h, drv } = setup();
    drv.writeDesc(5, 0x40000, 4, VIRTQ_DESC_F_NEXT | 2, 5);
    drv.publish(5);
    h.kick(0);
    expect(h.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    h.negotiate(); // writes status 0 first
    const q = h.setupQueue(0, 64, 0x10000, 0).drv;
    h.driverOk();
    q.add([{ addr: 0x40000, len: 4, write: true }]);
    h.kick(0);
    expect(q.takeUsed()).toEqual([{ id: 0, len: 4 }]);
  });
});
