import { describe, expect, it } from 'vitest';
import { PciDriverHarness } from '../pci/testing.js';
import { bit, VIRTIO_F_VERSION_1 } from '../device.js';
import { MAX_FRAME, NET_HDR_SIZE, NET_QUEUE_SIZE, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_MRG_RXBUF, VirtioNet, defaultMac } from './net.js';

function setup(extra = 0n, rxChecksumsValid = false, tso = false, guestTso = false) {
  const sent: number[][] = [];
  const dev = new VirtioNet({ mac: defaultMac(0), transmit: (f) => sent.push([...f]), rxChecksumsValid, tso, guestTso });
  let spaces = 0;
  dev.onRxSpace(() => spaces++);
  const h = new PciDriverHarness(dev);
  h.enable();
  h.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_MRG_RXBUF) | extra); // as Linux does
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

  it('offers checksum offload both ways, and TSO4 when asked to', () => {
    const { dev } = setup();
    for (const f of [VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM]) expect(dev.features & bit(f)).not.toBe(0n);
    expect(dev.features & bit(VIRTIO_NET_F_HOST_TSO4)).toBe(0n);
    expect(setup(0n, false, true).dev.features & bit(VIRTIO_NET_F_HOST_TSO4)).not.toBe(0n);
  });

  /** Ethernet/IPv4/TCP, 10.0.2.15 → 10.0.2.2, `n` payload bytes, checksums zero. */
  const tcpFrame = (n: number): Uint8Array => {
    const f = new Uint8Array(54 + n);
    f.set([0x52, 0x55, 0x0a, 0, 2, 2, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00], 0);
    f.set([0x45, 0, (40 + n) >> 8, (40 + n) & 0xff, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2], 14);
    f.set([0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff], 34);
    f.set(frame(n), 54);
    return f;
  };
  const header = (flags: number, gso: number, gsoSize: number, csumStart: number, csumOffset: number): Uint8Array => {
    const b = new Uint8Array(NET_HDR_SIZE);
    const v = new DataView(b.buffer);
    b[0] = flags;
    b[1] = gso;
    v.setUint16(4, gsoSize, true);
    v.setUint16(6, csumStart, true);
    v.setUint16(8, csumOffset, true);
    return b;
  };

  it('completes NEEDS_CSUM checksums; drops frames whose checksum offsets lie outside them', () => {
    const { h, tx, sent, dev } = setup(bit(VIRTIO_NET_F_CSUM));
    const f = tcpFrame(100);
    h.mem.writeBytes(0x40000, header(1, 0, 0, 34, 16));
    h.mem.writeBytes(0x41000, f);
    tx.add([{ addr: 0x40000, len: NET_HDR_SIZE }, { addr: 0x41000, len: f.length }]);
    h.mem.writeBytes(0x42000, header(1, 0, 0, 34, 0xfff0)); // the field past the end
    tx.add([{ addr: 0x42000, len: NET_HDR_SIZE }, { addr: 0x41000, len: f.length }]);
    h.kick(1);
    expect(sent).toHaveLength(1);
    expect(dev.badFrames).toBe(1);
    expect(sent[0]!.slice(0, 50)).toEqual([...f.subarray(0, 50)]);
    expect(sent[0]![50]! | sent[0]![51]!).not.toBe(0); // summed
    expect(tx.takeUsed()).toHaveLength(2); // both buffers returned
  });

  it('segments a TSO4 frame into MSS-sized frames; refuses GSO that was not negotiated', () => {
    const { h, tx, sent, dev } = setup(bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4), false, true);
    const f = tcpFrame(3000);
    h.mem.writeBytes(0x40000, header(1, 1, 1460, 34, 16));
    h.mem.writeBytes(0x41000, f);
    tx.add([{ addr: 0x40000, len: NET_HDR_SIZE }, { addr: 0x41000, len: f.length }]);
    h.kick(1);
    expect(sent.map((s) => s.length)).toEqual([54 + 1460, 54 + 1460, 54 + 80]);
    expect(dev.badFrames).toBe(0);
    const plain = setup(bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4)); // not offered
    plain.h.mem.writeBytes(0x40000, header(1, 1, 1460, 34, 16));
    plain.h.mem.writeBytes(0x41000, f);
    plain.tx.add([{ addr: 0x40000, len: NET_HDR_SIZE }, { addr: 0x41000, len: f.length }]);
    plain.h.kick(1);
    expect(plain.sent).toHaveLength(0);
    expect(plain.dev.badFrames).toBe(1);
  });

  it('marks received frames DATA_VALID with GUEST_CSUM when the backend sums correctly, else not', () => {
    for (const [extra, valid, want] of [[bit(VIRTIO_NET_F_GUEST_CSUM), true, 2], [bit(VIRTIO_NET_F_GUEST_CSUM), false, 0], [0n, true, 0]] as const) {
      const { h, rx, dev } = setup(extra, valid);
      rx.add([{ addr: 0x50000, len: 2000, write: true }]);
      expect(dev.receive(frame(100))).toBe(true);
      expect(h.mem.readBytes(0x50000, 1)[0]).toBe(want);
    }
  });

  it('GUEST_TSO4 (offered with guestTso): a large TCP/IPv4 frame goes to the guest whole, its header saying TCPV4, header length and segment size', () => {
    expect(setup().dev.features & bit(VIRTIO_NET_F_GUEST_TSO4)).toBe(0n);
    expect(setup(0n, true, false, true).dev.features & bit(VIRTIO_NET_F_GUEST_TSO4)).not.toBe(0n);
    // an Ethernet + IPv4 (with 4 bytes of options) + TCP (with 12) frame of 30,000 bytes
    const f = frame(30_000);
    f.set([0x08, 0x00], 12);
    f[14] = 0x46;
    f[14 + 9] = 6;
    f[14 + 24 + 12] = 8 << 4;
    const { h, rx, dev } = setup(bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4), true, false, true);
    expect(dev.gsoMax()).toBe(MAX_FRAME);
    for (let i = 0; i < 8; i++) rx.add([{ addr: 0x100000 + i * 0x10000, len: 4096, write: true }]);
    expect(dev.receive(f, 1400)).toBe(true);
    expect(rx.takeUsed()).toHaveLength(8);
    expect([...h.mem.readBytes(0x100000, 2)]).toEqual([2, 1]); // DATA_VALID, GSO_TCPV4
    expect(h.mem.read16(0x100000 + 2)).toBe(14 + 24 + 32); // hdr_len
    expect(h.mem.read16(0x100000 + 4)).toBe(1400); // gso_size
    expect(h.mem.read16(0x100000 + 10)).toBe(8); // num_buffers
    // not negotiated (or not a TCP/IPv4 frame): refused for good, nothing written
    const off = setup(bit(VIRTIO_NET_F_GUEST_CSUM), true, false, true);
    expect(off.dev.gsoMax()).toBe(0);
    off.rx.add([{ addr: 0x100000, len: 65536, write: true }]);
    expect(off.dev.receive(f, 1400)).toBe(true);
    expect(off.dev.receive(frame(30_000), 1400)).toBe(true);
    expect(off.rx.takeUsed()).toEqual([]);
    expect(off.dev.badFrames).toBe(2);
  });

  it('leaves frames in the transmit queue while txReady says no, and sends them on resumeTx', () => {
    const sent: number[][] = [];
    let credit = 1;
    const dev = new VirtioNet({ mac: defaultMac(0), transmit: (f) => (credit--, sent.push([...f])), txReady: () => credit > 0 });
    const h = new PciDriverHarness(dev);
    h.enable();
    h.negotiate(bit(VIRTIO_F_VERSION_1));
    h.msixVector(1, 0x42);
    const tx = h.setupQueue(1, NET_QUEUE_SIZE, 0x20000, 1).drv;
    h.driverOk();
    h.mem.writeBytes(0x40000, new Uint8Array(NET_HDR_SIZE));
    for (let i = 0; i < 3; i++) {
      h.mem.writeBytes(0x41000 + i * 0x100, frame(60 + i));
      tx.add([{ addr: 0x40000, len: NET_HDR_SIZE }, { addr: 0x41000 + i * 0x100, len: 60 + i }]);
    }
    h.kick(1);
    expect(sent.map((f) => f.length)).toEqual([60]); // one credit: one frame
    expect(tx.takeUsed()).toHaveLength(1);
    dev.resumeTx(); // still no credit: nothing happens
    expect(sent).toHaveLength(1);
    credit = 5;
    dev.resumeTx();
    expect(sent.map((f) => f.length)).toEqual([60, 61, 62]);
    expect(tx.takeUsed()).toHaveLength(2);
  });

  it('refuses for good (without blocking) a frame longer than any Ethernet frame', () => {
    const { rx, dev } = setup();
    rx.add([{ addr: 0x50000, len: 4096, write: true }]);
    expect(dev.receive(new Uint8Array(MAX_FRAME + 1))).toBe(true);
    expect(dev.badFrames).toBe(1);
    expect(rx.takeUsed()).toEqual([]);
  });
});
