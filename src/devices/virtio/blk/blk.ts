/**
 * virtio-blk, the block device (virtio 1.2, 5.2): one request queue; each chain is one request
 * (`Request.parse`), served by a `DiskBackend` that completes asynchronously (host file I/O off
 * the vCPU's thread). A completion writes the status byte, returns the chain on the used ring
 * and interrupts the driver if it wants one; data a read put into guest RAM is announced through
 * `GuestMemory.dmaWritten`, so the software CPU drops code translated from those bytes.
 *
 * Device configuration (5.2.4), 60 bytes:
 *
 *   0x00 capacity le64 (512-byte sectors)   0x24 max_discard_sectors le32
 *   0x08 size_max le32 (not offered)        0x28 max_discard_seg le32
 *   0x0c seg_max le32                       0x2c discard_sector_alignment le32
 *   0x10 geometry (not offered)             0x30 max_write_zeroes_sectors le32
 *   0x14 blk_size le32                      0x34 max_write_zeroes_seg le32
 *   0x18 topology (not offered)             0x38 write_zeroes_may_unmap u8
 *   0x20 writeback u8, 0x22 num_queues le16
 *
 * Work per notification is bounded: the queue hands out at most its size in chains, a request
 * moves at most what its buffers (in guest RAM) hold, DISCARD and WRITE_ZEROES at most the
 * advertised segment and sector limits. Requests that break the rules get IOERR or UNSUPP and
 * are counted; only a broken queue (the transport's concern) stops the device.
 */
import type { GuestMemory } from '../../../machine/memory.js';
import { bit, VIRTIO_ID_BLOCK, type VirtioDevice, type VirtioTransport } from '../device.js';
import { DescriptorChain } from '../queue/queue.js';
import type { DiskBackend, DiskDone } from './backend.js';
import {
  BlkRequestError, ID_BYTES, Request, SECTOR_SIZE, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, type RequestLimits,
} from './request.js';

// Feature bits (5.2.3)
export const VIRTIO_BLK_F_SIZE_MAX = 1n;
export const VIRTIO_BLK_F_SEG_MAX = 2n;
export const VIRTIO_BLK_F_RO = 5n;
export const VIRTIO_BLK_F_BLK_SIZE = 6n;
export const VIRTIO_BLK_F_FLUSH = 9n;
export const VIRTIO_BLK_F_DISCARD = 13n;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14n;

// Configuration layout
export const CFG_CAPACITY = 0x00;
export const CFG_SEG_MAX = 0x0c;
export const CFG_BLK_SIZE = 0x14;
export const CFG_NUM_QUEUES = 0x22;
export const CFG_MAX_DISCARD_SECTORS = 0x24;
export const CFG_MAX_DISCARD_SEG = 0x28;
export const CFG_DISCARD_SECTOR_ALIGNMENT = 0x2c;
export const CFG_MAX_WRITE_ZEROES_SECTORS = 0x30;
export const CFG_MAX_WRITE_ZEROES_SEG = 0x34;
export const CFG_WRITE_ZEROES_MAY_UNMAP = 0x38;
export const BLK_CONFIG_SIZE = 0x3c;

export const BLK_QUEUE_SIZE = 256;
/** Data segments per request: the queue size less header and status (what QEMU advertises). */
export const SEG_MAX = BLK_QUEUE_SIZE - 2;
/** DISCARD: at most 2 GiB and 32 ranges a request, 4 KiB granularity. */
export const MAX_DISCARD_SECTORS = 1 << 22;
export const MAX_DISCARD_SEG = 32;
export const DISCARD_SECTOR_ALIGNMENT = 8;
/** WRITE_ZEROES writes real zeros: at most 32 MiB a request, one range. */
export const MAX_WRITE_ZEROES_SECTORS = 1 << 16;
export const MAX_WRITE_ZEROES_SEG = 1;
/** PCI class: mass storage, SCSI (what QEMU's virtio-blk-pci shows). */
const PCI_CLASS_STORAGE_SCSI = 0x010000;

export interface BlockOptions {
  backend: DiskBackend;
  /** Serial number for GET_ID (at most 20 bytes; the guest shows it in /sys/block/vdX/serial). */
  serial?: string;
}

export class BlockError extends Error {
  override name = 'BlockError';
}

/** Snapshot state of virtio-blk: the disk as the guest knows it. */
export interface BlockState {
  capacityBytes: number;
  readOnly: boolean;
}

export class BlockDevice implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly pciClass = PCI_CLASS_STORAGE_SCSI;
  readonly queueSizes = [BLK_QUEUE_SIZE] as const;
  readonly features: bigint;
  readonly configSize = BLK_CONFIG_SIZE;
  readonly backend: DiskBackend;
  private readonly config = new Uint8Array(BLK_CONFIG_SIZE);
  private readonly configView = new DataView(this.config.buffer);
  private readonly serial = new Uint8Array(ID_BYTES);
  private readonly limits: RequestLimits;
  private transport: VirtioTransport | undefined;
  private readonly chain = new DescriptorChain(SEG_MAX + 2);
  /** Bumped by a reset: completions of requests from before it are dropped. */
  private generation = 0;

  /** Requests served, by outcome; bytes moved; requests in flight. */
  requests = 0;
  failedRequests = 0;
  bytesRead = 0;
  bytesWritten = 0;
  inFlight = 0;
  /** The last refused request's message (the guest's mistake, or a host I/O error). */
  lastError: string | undefined;

  constructor(opts: BlockOptions) {
    const b = opts.backend;
    if (b.size <= 0 || b.size % SECTOR_SIZE !== 0) throw new BlockError(`a virtio-blk disk must be a positive whole number of 512-byte sectors, not ${b.size} bytes`);
    const serial = new TextEncoder().encode(opts.serial ?? '');
    if (serial.length > ID_BYTES) throw new BlockError(`disk serial "${opts.serial}" is longer than ${ID_BYTES} bytes`);
    this.serial.set(serial);
    this.backend = b;
    let f = bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH);
    f |= b.readOnly ? bit(VIRTIO_BLK_F_RO) : bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.features = f;
    this.limits = {
      capacityBytes: b.size,
      readOnly: b.readOnly,
      maxDiscardSectors: MAX_DISCARD_SECTORS,
      maxDiscardSegments: MAX_DISCARD_SEG,
      maxWriteZeroesSectors: MAX_WRITE_ZEROES_SECTORS,
      maxWriteZeroesSegments: MAX_WRITE_ZEROES_SEG,
    };
    const v = this.configView;
    const sectors = b.size / SECTOR_SIZE;
    v.setUint32(CFG_CAPACITY, sectors % 0x1_0000_0000, true);
    v.setUint32(CFG_CAPACITY + 4, Math.floor(sectors / 0x1_0000_0000), true);
    v.setUint32(CFG_SEG_MAX, SEG_MAX, true);
    v.setUint32(CFG_BLK_SIZE, SECTOR_SIZE, true);
    v.setUint16(CFG_NUM_QUEUES, 1, true);
    v.setUint32(CFG_MAX_DISCARD_SECTORS, MAX_DISCARD_SECTORS, true);
    v.setUint32(CFG_MAX_DISCARD_SEG, MAX_DISCARD_SEG, true);
    v.setUint32(CFG_DISCARD_SECTOR_ALIGNMENT, DISCARD_SECTOR_ALIGNMENT, true);
    v.setUint32(CFG_MAX_WRITE_ZEROES_SECTORS, MAX_WRITE_ZEROES_SECTORS, true);
    v.setUint32(CFG_MAX_WRITE_ZEROES_SEG, MAX_WRITE_ZEROES_SEG, true);
    v.setUint8(CFG_WRITE_ZEROES_MAY_UNMAP, 0);
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    const v = this.configView;
    if (size === 1) return v.getUint8(offset);
    if (size === 2) return v.getUint16(offset, true);
    return v.getUint32(offset, true);
  }

  /** Nothing is writable: `writeback` needs VIRTIO_BLK_F_CONFIG_WCE, which is not offered. */
  writeConfig(): void {}

  activate(): void {}

  reset(): void {
    this.generation++;
    this.inFlight = 0;
  }

  /**
   * Snapshot: the disk as the guest knows it (size, read-only), to check it against the disk a
   * restored machine has. Nothing may be in flight: the caller drains I/O first.
   */
  save(): BlockState {
    if (this.inFlight !== 0) throw new BlockError(`Cannot save virtio-blk state with ${this.inFlight} requests in flight: pause the VM (which drains disk I/O) first`);
    return { capacityBytes: this.backend.size, readOnly: this.backend.readOnly };
  }

  /** Snapshot restore: nothing to set (the caller checked the disk matches and nothing is in flight). */
  restore(_s: BlockState): void {}

  describe(): string {
    return `requests ${this.requests}, in flight ${this.inFlight}, failed ${this.failedRequests}${this.lastError ? ` (last: ${this.lastError})` : ''}`;
  }

  notify(index: number): void {
    const t = this.transport;
    if (!t || index !== 0) return;
    const q = t.queue(0);
    const mem = t.memory;
    const chain = this.chain;
    // At most the queue's size in chains: the driver cannot add any while we run.
    for (;;) {
      const r = q.pop(mem, chain);
      if (r === false) break;
      if (r !== true) {
        t.fail(r);
        return;
      }
      this.requests++;
      const req = Request.parse(chain, mem, this.limits);
      if (req instanceof BlkRequestError) this.refuse(chain.head, req);
      else this.submit(req);
    }
  }

  /** A request the device will not serve: IOERR / UNSUPP when it has a status byte. */
  private refuse(head: number, e: BlkRequestError): void {
    this.failedRequests++;
    this.lastError = e.message;
    const t = this.transport!;
    if (e.statusAddr !== undefined) t.memory.write8(e.statusAddr, e.status);
    t.queue(0).pushUsed(t.memory, head, e.statusAddr === undefined ? 0 : 1);
    t.usedBuffers(0);
  }

  private submit(req: Request): void {
    const gen = this.generation;
    const b = this.backend;
    this.inFlight++;
    const done: DiskDone = (error) => this.complete(gen, req, error);
    try {
      switch (req.type) {
        case VIRTIO_BLK_T_IN:
          if (req.dataLength === 0) return done();
          return b.read(req.offset, req.data, done);
        case VIRTIO_BLK_T_OUT:
          if (req.dataLength === 0) return done();
          return b.write(req.offset, req.data, done);
        case VIRTIO_BLK_T_FLUSH:
          return b.flush(done);
        case VIRTIO_BLK_T_GET_ID: {
          let at = 0;
          for (const view of req.data) {
            view.set(this.serial.subarray(at, at + view.length));
            at += view.length;
          }
          return done();
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
          return this.segments(req, done);
        default:
          return done(new BlockError(`request type ${req.type} reached submit`));
      }
    } catch (e) {
      done(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Every segment of a DISCARD / WRITE_ZEROES request; `done` once, after the last one. */
  private segments(req: Request, done: DiskDone): void {
    let left = req.segments.length;
    let first: Error | undefined;
    const one: DiskDone = (error) => {
      first ??= error;
      if (--left === 0) done(first);
    };
    for (const s of req.segments) {
      if (s.length === 0) one();
      else if (req.type === VIRTIO_BLK_T_DISCARD) this.backend.discard(s.offset, s.length, one);
      else this.backend.writeZeroes(s.offset, s.length, one);
    }
  }

  private complete(gen: number, req: Request, error: Error | undefined): void {
    if (gen !== this.generation) return; // the driver reset the device meanwhile
    this.inFlight--;
    const t = this.transport!;
    const mem: GuestMemory = t.memory;
    let written = 1;
    if (error) {
      this.failedRequests++;
      this.lastError = `disk I/O failed: ${error.message}`;
      mem.write8(req.statusAddr, VIRTIO_BLK_S_IOERR);
    } else {
      if (req.type === VIRTIO_BLK_T_IN || req.type === VIRTIO_BLK_T_GET_ID) {
        // The data landed in guest RAM behind the CPU's back.
        for (let i = 0; i < req.data.length; i++) mem.dmaWritten(req.dataAddr[i]!, req.data[i]!.length);
        if (req.type === VIRTIO_BLK_T_IN) this.bytesRead += req.dataLength;
      } else if (req.type === VIRTIO_BLK_T_OUT) {
        this.bytesWritten += req.dataLength;
      }
      written = req.writtenLength;
      mem.write8(req.statusAddr, VIRTIO_BLK_S_OK);
    }
    mem.dmaWritten(req.statusAddr, 1);
    t.queue(0).pushUsed(mem, req.head, written);
    t.usedBuffers(0);
  }
}
