import { describe, expect, it } from 'vitest';
import { bit, STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1 } from '../device.js';
import { PciDriverHarness } from '../pci/testing.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../queue/queue.js';
import type { TestBuffer } from '../queue/testing.js';
import { MemoryDiskBackend } from './backend.js';
import * as B from './blk.js';
import * as R from './request.js';

const DISK = 1 << 20; // 2048 sectors
const HDR = 0x40000;
const DATA = 0x80000;
const STATUS = 0x50000;

function setup(opts: { readOnly?: boolean; serial?: string; features?: bigint } = {}) {
  const backend = new MemoryDiskBackend(DISK, opts.readOnly ?? false);
  for (let i = 0; i < DISK; i++) backend.bytes[i] = (i * 7 + (i >> 9)) & 0xff;
  const dev = new B.BlockDevice({ backend, serial: opts.serial });
  const h = new PciDriverHarness(dev);
  const dma: [number, number][] = [];
  h.mem.onDmaWrite((a, l) => dma.push([a, l]));
  h.enable();
  expect(h.negotiate(opts.features ?? bit(VIRTIO_F_VERSION_1))).toBe(true);
  h.msixVector(0, 0x51);
  const { drv } = h.setupQueue(0, 256, 0x10000, 0);
  h.driverOk();
  return { dev, h, drv, backend, dma };
}

/** Write a request header at `at` and return it as a readable buffer. */
function header(h: PciDriverHarness, type: number, sector: number, at = HDR): TestBuffer {
  h.mem.write32(at, type);
  h.mem.write32(at + 4, 0);
  h.mem.write32(at + 8, sector % 2 ** 32);
  h.mem.write32(at + 12, Math.floor(sector / 2 ** 32));
  return { addr: at, len: 16 };
}
const status = (at = STATUS): TestBuffer => ({ addr: at, len: 1, write: true });

describe('virtio-blk', () => {
  it('is device 1af4:1042, class 0100, with capacity, seg_max, blk_size and the discard limits in its configuration', () => {
    const { h, dev } = setup();
    expect(h.cfgRead(0x00)).toBe(0x1042_1af4);
    expect(h.cfgRead(0x08) >>> 8).toBe(0x010000);
    expect(dev.readConfig(B.CFG_CAPACITY, 4)).toBe(DISK / 512);
    expect(dev.readConfig(B.CFG_CAPACITY + 4, 4)).toBe(0);
    expect(dev.readConfig(B.CFG_SEG_MAX, 4)).toBe(254);
    expect(dev.readConfig(B.CFG_BLK_SIZE, 4)).toBe(512);
    expect(dev.readConfig(B.CFG_MAX_DISCARD_SEG, 4)).toBe(B.MAX_DISCARD_SEG);
    expect(dev.readConfig(B.CFG_MAX_WRITE_ZEROES_SECTORS, 4)).toBe(B.MAX_WRITE_ZEROES_SECTORS);
    const f = dev.features;
    for (const b of [B.VIRTIO_BLK_F_SEG_MAX, B.VIRTIO_BLK_F_BLK_SIZE, B.VIRTIO_BLK_F_FLUSH, B.VIRTIO_BLK_F_DISCARD, B.VIRTIO_BLK_F_WRITE_ZEROES]) expect(f & bit(b)).not.toBe(0n);
    expect(f & bit(B.VIRTIO_BLK_F_RO)).toBe(0n);
  });

  it('reads sectors into guest RAM across several descriptors, and tells the CPU', () => {
    const { h, drv, backend, dma } = setup();
    drv.add([header(h, R.VIRTIO_BLK_T_IN, 3), { addr: DATA, len: 512, write: true }, { addr: DATA + 0x1000, len: 1024, write: true }, status()]);
    h.mem.write8(STATUS, 0xff);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 1537 }]);
    expect(h.mem.read8(STATUS)).toBe(R.VIRTIO_BLK_S_OK);
    expect(h.mem.readBytes(DATA, 512)).toEqual(backend.bytes.subarray(3 * 512, 4 * 512));
    expect(h.mem.readBytes(DATA + 0x1000, 1024)).toEqual(backend.bytes.subarray(4 * 512, 6 * 512));
    expect(dma).toContainEqual([DATA, 512]);
    expect(dma).toContainEqual([DATA + 0x1000, 1024]);
    expect(h.msis).toEqual([[0xfee0_0000, 0x51]]);
  });

  it('accepts any framing: header, data and status sharing descriptors', () => {
    const { h, drv, backend } = setup();
    // header split 10 + 6; data and status in one writable descriptor
    header(h, R.VIRTIO_BLK_T_IN, 1);
    h.mem.writeBytes(0x41000, h.mem.readBytes(HDR + 10, 6));
    drv.add([{ addr: HDR, len: 10 }, { addr: 0x41000, len: 6 }, { addr: DATA, len: 513, write: true }]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 513 }]);
    expect(h.mem.read8(DATA + 512)).toBe(R.VIRTIO_BLK_S_OK);
    expect(h.mem.readBytes(DATA, 512)).toEqual(backend.bytes.subarray(512, 1024));
  });

  it('writes sectors from guest RAM; FLUSH reaches the backend', () => {
    const { h, drv, backend } = setup();
    h.mem.fill(DATA, 1024, 0xab);
    drv.add([header(h, R.VIRTIO_BLK_T_OUT, 2046), { addr: DATA, len: 1024 }, status()]);
    drv.add([header(h, R.VIRTIO_BLK_T_FLUSH, 0, HDR + 0x100), status(STATUS + 1)]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 1 }, { id: 3, len: 1 }]);
    expect([h.mem.read8(STATUS), h.mem.read8(STATUS + 1)]).toEqual([0, 0]);
    expect(backend.bytes.subarray(DISK - 1024).every((b) => b === 0xab)).toBe(true);
    expect(backend.flushes).toBe(1);
  });

  it('answers GET_ID with the serial, NUL-padded to 20 bytes', () => {
    const { h, drv } = setup({ serial: 'tv-disk-7' });
    h.mem.fill(DATA, 20, 0xee);
    drv.add([header(h, R.VIRTIO_BLK_T_GET_ID, 0), { addr: DATA, len: 20, write: true }, status()]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 21 }]);
    const id = h.mem.readBytes(DATA, 20);
    expect(new TextDecoder().decode(id.subarray(0, 9))).toBe('tv-disk-7');
    expect([...id.subarray(9)].every((b) => b === 0)).toBe(true);
  });

  it('IOERR for ranges past the end, partial sectors and wrong directions; UNSUPP for unknown types', () => {
    const { h, drv, dev } = setup();
    // each case its own header (they are all written before the first is sent)
    const at = (k: number) => HDR + 0x100 * k;
    const cases: [TestBuffer[], number][] = [
      [[header(h, R.VIRTIO_BLK_T_IN, 2047, at(0)), { addr: DATA, len: 1024, write: true }], R.VIRTIO_BLK_S_IOERR], // one sector past the end
      [[header(h, R.VIRTIO_BLK_T_IN, 2 ** 53 + 8, at(1)), { addr: DATA, len: 512, write: true }], R.VIRTIO_BLK_S_IOERR],
      [[header(h, R.VIRTIO_BLK_T_IN, 2 ** 64 - 4096, at(2)), { addr: DATA, len: 512, write: true }], R.VIRTIO_BLK_S_IOERR],
      [[header(h, R.VIRTIO_BLK_T_OUT, 0, at(3)), { addr: DATA, len: 100 }], R.VIRTIO_BLK_S_IOERR], // not whole sectors
      [[header(h, R.VIRTIO_BLK_T_IN, 0, at(4)), { addr: DATA, len: 512 }], R.VIRTIO_BLK_S_IOERR], // a read with readable data
      [[header(h, R.VIRTIO_BLK_T_OUT, 0, at(5)), { addr: DATA, len: 512, write: true }], R.VIRTIO_BLK_S_IOERR], // a write with writable data
      [[{ addr: at(6), len: 8 }], R.VIRTIO_BLK_S_IOERR], // short header
      [[header(h, 99, 0, at(7))], R.VIRTIO_BLK_S_UNSUPP],
    ];
    for (const [bufs, want] of cases) {
      h.mem.write8(STATUS, 0x77);
      drv.add([...bufs, status()]);
      h.kick(0);
      const used = drv.takeUsed();
      expect(used).toHaveLength(1);
      expect(used[0]!.len).toBe(1);
      expect(h.mem.read8(STATUS)).toBe(want);
    }
    expect(dev.failedRequests).toBe(cases.length);
    expect(h.status() & STATUS_DEVICE_NEEDS_RESET).toBe(0); // the device carries on
  });

  it('returns a request without a status byte with length 0 and nothing written', () => {
    const { h, drv } = setup();
    h.mem.fill(DATA, 512, 0x11);
    drv.add([header(h, R.VIRTIO_BLK_T_OUT, 0), { addr: DATA, len: 512 }]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 0 }]);
  });

  it('a read-only disk offers RO, serves reads and refuses writes, discards and write-zeroes with IOERR', () => {
    const { h, drv, dev, backend } = setup({ readOnly: true });
    expect(dev.features & bit(B.VIRTIO_BLK_F_RO)).not.toBe(0n);
    expect(dev.features & bit(B.VIRTIO_BLK_F_DISCARD)).toBe(0n);
    const before = backend.bytes.slice();
    drv.add([header(h, R.VIRTIO_BLK_T_OUT, 0), { addr: DATA, len: 512 }, status()]);
    h.kick(0);
    expect(h.mem.read8(STATUS)).toBe(R.VIRTIO_BLK_S_IOERR);
    h.mem.write32(DATA, 0);
    h.mem.write32(DATA + 4, 0);
    h.mem.write32(DATA + 8, 8);
    h.mem.write32(DATA + 12, 0);
    drv.add([header(h, R.VIRTIO_BLK_T_WRITE_ZEROES, 0), { addr: DATA, len: 16 }, status()]);
    h.kick(0);
    expect(h.mem.read8(STATUS)).toBe(R.VIRTIO_BLK_S_IOERR);
    drv.add([header(h, R.VIRTIO_BLK_T_IN, 0), { addr: DATA, len: 512, write: true }, status()]);
    h.kick(0);
    expect(h.mem.read8(STATUS)).toBe(R.VIRTIO_BLK_S_OK);
    expect(Buffer.compare(backend.bytes, before)).toBe(0);
  });

  it('WRITE_ZEROES and DISCARD: segments checked against the limits; UNMAP on a discard is UNSUPP', () => {
    const { h, drv, backend } = setup();
    const seg = (at: number, sector: number, n: number, flags: number) => {
      h.mem.write32(at, sector);
      h.mem.write32(at + 4, 0);
      h.mem.write32(at + 8, n);
      h.mem.write32(at + 12, flags);
    };
    const send = (type: number, segs: number): number => {
      h.mem.write8(STATUS, 0x77);
      drv.add([header(h, type, 0), { addr: DATA, len: 16 * segs }, status()]);
      h.kick(0);
      drv.takeUsed();
      return h.mem.read8(STATUS);
    };
    seg(DATA, 10, 4, R.SEGMENT_FLAG_UNMAP);
    expect(send(R.VIRTIO_BLK_T_WRITE_ZEROES, 1)).toBe(R.VIRTIO_BLK_S_OK);
    expect(backend.bytes.subarray(10 * 512, 14 * 512).every((b) => b === 0)).toBe(true);
    expect(backend.bytes[14 * 512 + 1]).not.toBe(0);
    expect(send(R.VIRTIO_BLK_T_DISCARD, 1)).toBe(R.VIRTIO_BLK_S_UNSUPP); // UNMAP on a discard
    seg(DATA, 100, 8, 0);
    seg(DATA + 16, 200, 8, 0);
    expect(send(R.VIRTIO_BLK_T_DISCARD, 2)).toBe(R.VIRTIO_BLK_S_OK);
    expect(backend.discards).toBe(2);
    expect(send(R.VIRTIO_BLK_T_WRITE_ZEROES, 2)).toBe(R.VIRTIO_BLK_S_IOERR); // one segment at most
    seg(DATA, 2040, 16, 0);
    expect(send(R.VIRTIO_BLK_T_DISCARD, 1)).toBe(R.VIRTIO_BLK_S_IOERR); // past the end
    seg(DATA, 0, 8, 4);
    expect(send(R.VIRTIO_BLK_T_WRITE_ZEROES, 1)).toBe(R.VIRTIO_BLK_S_UNSUPP); // unknown flag
    seg(DATA, 0, B.MAX_WRITE_ZEROES_SECTORS + 1, 0);
    expect(send(R.VIRTIO_BLK_T_WRITE_ZEROES, 1)).toBe(R.VIRTIO_BLK_S_IOERR);
  });

  it('completes asynchronously, out of order, and reports host I/O errors as IOERR', () => {
    const { h, drv, backend, dev } = setup();
    backend.deferred = [];
    drv.add([header(h, R.VIRTIO_BLK_T_IN, 0), { addr: DATA, len: 512, write: true }, status()]);
    h.kick(0);
    expect(drv.takeUsed()).toEqual([]);
    expect(dev.inFlight).toBe(1);
    expect(h.msis).toEqual([]);
    backend.failWith = new Error('EIO');
    backend.complete();
    expect(drv.takeUsed()).toEqual([{ id: 0, len: 1 }]);
    expect(h.mem.read8(STATUS)).toBe(R.VIRTIO_BLK_S_IOERR);
    expect(dev.lastError).toMatch(/EIO/);
    expect(h.msis).toHaveLength(1);
  });

  it('drops completions of requests from before a reset', () => {
    const { h, drv, backend } = setup();
    backend.deferred = [];
    drv.add([header(h, R.VIRTIO_BLK_T_IN, 0), { addr: DATA, len: 512, write: true }, status()]);
    h.kick(0);
    const fresh = (() => {
      h.negotiate(); // status 0 first: a reset
      const q = h.setupQueue(0, 256, 0x20000, 0).drv;
      h.driverOk();
      return q;
    })();
    backend.complete();
    expect(fresh.takeUsed()).toEqual([]);
    expect(fresh.usedIndex()).toBe(0);
  });

  it('a broken chain (a loop) sets DEVICE_NEEDS_RESET, as for every virtio device', () => {
    const { h, drv } = setup();
    drv.writeDesc(7, HDR, 16, VIRTQ_DESC_F_NEXT, 8);
    drv.writeDesc(8, STATUS, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 8);
    drv.publish(7);
    h.kick(0);
    expect(h.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  });
});
