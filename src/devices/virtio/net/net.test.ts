import { describe, expect, it } from 'vitest';
import { PciDriverHarness } from '../pci/testing.js';
import { bit, VIRTIO_F_VERSION_1 } from '../device.js';
import { MAX_FRAME, NET_HDR_SIZE, NET_QUEUE_SIZE, VIRTIO_NET_F_MRG_RXBUF, VirtioNet, defaultMac } from './net.js';

function setup() {
  const sent: number[][] = [];
  const dev = new VirtioNet({ mac: defaultMac(0), transmit: (f) => sent.push([...f]) });
  let spaces = 0;
  dev.onRxSpace(() => spaces++);
  const h = new PciDriverHarness(dev);
  h.enable();
  h.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_MRG_RXBUF)); // as Linux does
  h.msixVector(0, 0x41);
  h.msixVector(1, 0x42);
  const rx = h.setupQueue(0, NET_QUEUE_SIZE, 0x10000, 0).drv;
  const tx = h.setupQueue(1, NET_QUEUE_SIZE, 0x20000, 1).drv;
  h.driverOk();
  return { dev, h, rx, tx, sent, spaces: () => spaces };
}

const frame = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_v, i) => (i * 7 + 1) & 0xff);

describe('virtio-net', () => {
  it('is device 1af4:1041 (class 0200) with its MAC, link up and MTU in the configuration', () => {
    const { h, dev } = setup();
    expect(h.cfgRead(0x00)).toBe(0x1041_1af4);
    expect(h.cfgRead(0x08) >>> 8).toBe(0x020000);
    expect([0, 1, 2, 3, 4, 5].map((i) => dev.readConfig(i, 1))).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    expect(dev.readConfig(6, 2)).toBe(1);
    expect(dev.readConfig(10, 2)).toBe(1500);
    expect(dev.readConfig(11, 4)).toBe(0); // past the end
  });

  it('transmits each frame without its header and returns the buffers', () => {
    const { h, tx, sent, dev } = setup();
    h.mem.writeBytes(0x40000, new Uint8Array(NET_HDR_SIZE));
    h.mem.writeBytes(0x41000, frame(60));
    tx.add([{ addr: 0x40000, len: NET_HDR_SIZE }, { addr: 0x41000, len: 60 }]);
    tx.add([{ addr: 0x40000, len: 4 }]); // shorter than the header: dropped, counted
    h.kick(1);
    expect(sent).toEqual([[...frame(60)]]);
    expect(tx.takeUsed()).toEqual([{ id: 0, len: 0 }, { id: 2, len: 0 }]);
    expect(dev.badFrames).toBe(1);
  });

  it('receives a frame across several buffers (MRG_RXBUF), num_buffers in the header', () => {
    const { h, rx, dev } = setup();
    rx.add([{ addr: 0x50000, len: 1000, write: true }]);
    rx.add([{ addr: 0x60000, len: 1000, write: true }]);
    expect(dev.receive(frame(1500))).toBe(true);
    const used = rx.takeUsed();
    expect(used).toEqual([{ id: 0, len: 1000 }, { id: 1, len: NET_HDR_SIZE + 1500 - 1000 }]);
    expect(h.mem.read16(0x50000 + 10)).toBe(2); // num_buffers
    const got = [...h.mem.readBytes(0x50000 + NET_HDR_SIZE, 1000 - NET_HDR_SIZE), ...h.mem.readBytes(0x60000, 512)];
    expect(got).toEqual([...frame(1500)]);
  });

  it('takes a frame whole or not at all, and asks again when the driver posts buffers', () => {
    const { h, rx, dev, spaces } = setup();
    rx.add([{ addr: 0x50000, len: 100, write: true }]);
    expect(dev.receive(frame(500))).toBe(false); // does not fit: nothing used
    expect(rx.takeUsed()).toEqual([]);
    const before = spaces();
    rx.add([{ addr: 0x60000, len: 1000, write: true }]);
    h.kick(0);
    expect(spaces()).toBe(before + 1);
    expect(dev.receive(frame(500))).toBe(true);
    expect(rx.takeUsed()).toEqual([{ id: 0, len: 100 }, { id: 1, len: NET_HDR_SIZE + 500 - 100 }]);
  });

  it('without MRG_RXBUF a frame must fit one buffer: one that does not is dropped, the buffer kept', () => {
    const sent: number[][] = [];
    const dev = new VirtioNet({ mac: defaultMac(0), transmit: (f) => sent.push([...f]) });
    const h = new PciDriverHarness(dev);
    h.enable();
    h.negotiate();
    h.msixVector(0, 0x41);
    const rx = h.setupQueue(0, NET_QUEUE_SIZE, 0x10000, 0).drv;
    h.driverOk();
    rx.add([{ addr: 0x50000, len: 100, write: true }]);
    rx.add([{ addr: 0x60000, len: 1000, write: true }]);
    expect(dev.receive(frame(500))).toBe(true);
    expect(dev.badFrames).toBe(1);
    expect(rx.takeUsed()).toEqual([]);
    expect(dev.receive(frame(50))).toBe(true);
    expect(rx.takeUsed()).toEqual([{ id: 0, len: NET_HDR_SIZE + 50 }]);
  });

  it('refuses for good (without blocking) a frame longer than any Ethernet frame', () => {
    const { rx, dev } = setup();
    rx.add([{ addr: 0x50000, len: 4096, write: true }]);
    expect(dev.receive(new Uint8Array(MAX_FRAME + 1))).toBe(true);
    expect(dev.badFrames).toBe(1);
    expect(rx.takeUsed()).toEqual([]);
  });
});
