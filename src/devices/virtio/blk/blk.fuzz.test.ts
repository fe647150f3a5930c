/**
 * Fuzz: hostile request chains (seeded, reproducible). Random request types, sectors at and far
 * beyond the end of the disk, lengths that are not whole sectors, data in the wrong direction,
 * headers and data split at random places, buffers at the edges of RAM, missing status bytes.
 * Whatever the guest wrote: no exception escapes, the backend only sees whole sectors inside
 * the disk, every chain comes back on the used ring with a length it could hold, and the
 * status is OK, IOERR or UNSUPP.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../../../../tests/support/rng.js';
import { GuestMemory } from '../../../machine/memory.js';
import type { VirtioTransport } from '../device.js';
import { SplitQueue, VirtqueueError } from '../queue/queue.js';
import { DriverQueue, type TestBuffer } from '../queue/testing.js';
import { MemoryDiskBackend, totalLength, type DiskBackend, type DiskDone } from './backend.js';
import { BlockDevice } from './blk.js';
import * as R from './request.js';

const RAM = 0x100000;
const HIGH = 0x1_0000_0000;
const HIGH_SIZE = 0x10000;
const DISK = 64 * 512;

/** A backend that checks every range the device hands it. */
class CheckingBackend implements DiskBackend {
  readonly inner = new MemoryDiskBackend(DISK);
  violations: string[] = [];
  readonly size = DISK;
  readonly readOnly = false;
  private check(op: string, offset: number, len: number): void {
    if (!(offset >= 0 && len >= 0 && offset + len <= DISK && offset % 512 === 0 && len % 512 === 0)) this.violations.push(`${op} ${offset}+${len}`);
  }
  read(offset: number, b: readonly Uint8Array[], done: DiskDone): void {
    this.check('read', offset, totalLength(b));
    this.inner.read(offset, b, done);
  }
  write(offset: number, b: readonly Uint8Array[], done: DiskDone): void {
    this.check('write', offset, totalLength(b));
    this.inner.write(offset, b, done);
  }
  flush(done: DiskDone): void {
    this.inner.flush(done);
  }
  discard(offset: number, len: number, done: DiskDone): void {
    this.check('discard', offset, len);
    this.inner.discard(offset, len, done);
  }
  writeZeroes(offset: number, len: number, done: DiskDone): void {
    this.check('write-zeroes', offset, len);
    this.inner.writeZeroes(offset, len, done);
  }
}

describe('virtio-blk fuzz', () => {
  it('survives 3000 rounds of hostile requests', () => {
    const r = rng(0xb10c_f00d);
    const int = (n: number) => Math.floor(r() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const mem = new GuestMemory([{ base: 0, size: RAM }, { base: HIGH, size: HIGH_SIZE }]);
    const backend = new CheckingBackend();
    const dev = new BlockDevice({ backend, serial: 'fuzz' });
    const q = new SplitQueue(256);
    const failures: VirtqueueError[] = [];
    const transport: VirtioTransport = {
      memory: mem,
      queue: () => q,
      negotiated: 0n,
      usedBuffers: () => q.needsInterrupt(mem),
      fail: (e) => failures.push(e),
      configChanged: () => {},
    };
    dev.attach(transport);
    const statuses = new Map<number, number>();
    let served = 0;

    for (let round = 0; round < 3000; round++) {
      q.reset();
      const drv = new DriverQueue(mem, 16, 0x1000);
      q.size = 16;
      q.descAddr = drv.descAddr;
      q.availAddr = drv.availAddr;
      q.usedAddr = drv.usedAddr;
      expect(q.activate(mem, { indirect: false, eventIdx: r() < 0.5 })).toBeUndefined();
      dev.reset();

      const type = r() < 0.8 ? pick([0, 1, 4, 8, 11, 13]) : int(2 ** 32);
      const sector = pick([0, 1, 63, 64, 65, 2 ** 32 - 1, 2 ** 32, 2 ** 53, int(128), int(2 ** 32) * 2 ** 32]);
      const hdr = 0x8000 + 16 * int(64);
      mem.write32(hdr, type);
      mem.write32(hdr + 4, int(2 ** 32));
      mem.write32(hdr + 8, sector % 2 ** 32);
      mem.write32(hdr + 12, Math.floor(sector / 2 ** 32) >>> 0);
      // DISCARD / WRITE_ZEROES segments, possibly hostile
      const segs = 0x9000;
      for (let k = 0; k < 40; k++) {
        mem.write32(segs + 16 * k, pick([0, 8, 60, 63, 64, int(2 ** 32)]));
        mem.write32(segs + 16 * k + 4, r() < 0.9 ? 0 : int(2 ** 32));
        mem.write32(segs + 16 * k + 8, pick([0, 1, 4, 64, 65, 2 ** 16, 2 ** 16 + 1, int(2 ** 32)]));
        mem.write32(segs + 16 * k + 12, r() < 0.7 ? 0 : int(4));
      }

      const bufs: TestBuffer[] = [];
      // the header, maybe split, maybe short
      const hlen = r() < 0.9 ? 16 : int(17);
      const cut = r() < 0.3 ? int(hlen + 1) : hlen;
      if (cut > 0) bufs.push({ addr: hdr, len: cut });
      if (hlen - cut > 0) bufs.push({ addr: hdr + cut, len: hlen - cut });
      const dataAddr = (): number => pick([0x20000 + 512 * int(256), RAM - 512, RAM - 1, HIGH, HIGH + HIGH_SIZE - 1024]);
      const dataLen = (): number => pick([0, 1, 16, 32, 511, 512, 1024, 4096, 512 * int(70), 16 * int(40)]);
      const n = int(4);
      for (let k = 0; k < n; k++) {
        const len = dataLen();
        const wantSegs = (type === 11 || type === 13) && r() < 0.5;
        const addr = wantSegs ? segs : dataAddr();
        if (mem.isRam(addr, Math.max(1, len))) bufs.push({ addr, len, write: r() < 0.5 });
      }
      if (r() < 0.9) bufs.push({ addr: 0xa000 + int(256), len: pick([1, 1, 1, 2, 0]), write: true });
      // readable before writable, as a chain must be (the queue's own checks are fuzzed elsewhere)
      bufs.sort((a, b) => Number(a.write ?? false) - Number(b.write ?? false));
      if (bufs.length === 0) continue;
      const statusAt = [...bufs].reverse().find((b) => b.write && b.len > 0);
      if (statusAt) mem.write8(statusAt.addr + statusAt.len - 1, 0x5a);
      drv.add(bufs);
      try {
        dev.notify(0);
      } catch (e) {
        throw new Error(`round ${round}: notify threw ${String(e)}`);
      }
      const used = drv.takeUsed();
      expect(used, `round ${round}`).toHaveLength(1);
      const writable = bufs.filter((b) => b.write).reduce((s, b) => s + b.len, 0);
      expect(used[0]!.len).toBeLessThanOrEqual(writable);
      if (statusAt) {
        const s = mem.read8(statusAt.addr + statusAt.len - 1);
        expect([R.VIRTIO_BLK_S_OK, R.VIRTIO_BLK_S_IOERR, R.VIRTIO_BLK_S_UNSUPP], `round ${round}`).toContain(s);
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
        served++;
      } else {
        expect(used[0]!.len).toBe(0);
      }
    }
    expect(backend.violations).toEqual([]);
    expect(failures).toEqual([]);
    expect(served).toBeGreaterThan(2000);
    // the fuzzer reaches every outcome
    for (const s of [R.VIRTIO_BLK_S_OK, R.VIRTIO_BLK_S_IOERR, R.VIRTIO_BLK_S_UNSUPP]) expect(statuses.get(s) ?? 0, `status ${s}`).toBeGreaterThan(20);
  });
});
