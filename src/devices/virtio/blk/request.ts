/**
 * virtio-blk requests (virtio 1.2, 5.2.6), parsed from a descriptor chain the way Firecracker's
 * `Request::parse` does it: a typed request, or a `BlkRequestError` naming what is wrong.
 *
 *   struct virtio_blk_req {
 *     le32 type; le32 reserved; le64 sector;   // 16 bytes, device-readable
 *     u8 data[];                               // readable (OUT, DISCARD, WRITE_ZEROES) or
 *                                              // writable (IN, GET_ID)
 *     u8 status;                               // the last byte, device-writable
 *   };
 *
 * The chain is read as two byte streams (virtio 1.x has no framing rules: the header may share a
 * descriptor with data, a buffer may be split anywhere): the readable bytes are the header then
 * the driver's data, the writable bytes are the device's data then the status byte. Every value
 * is the guest's and hostile: data lengths must be whole sectors, sector ranges must lie on the
 * disk, data must flow the way the type says, segments of DISCARD / WRITE_ZEROES are bounded by
 * the limits the device advertised. A request with no writable byte cannot be answered at all
 * (no status); every other error becomes a status (IOERR or UNSUPP), never an exception.
 */
import type { GuestMemory } from '../../../machine/memory.js';
import type { DescriptorChain } from '../queue/queue.js';

export const SECTOR_SIZE = 512;
export const SECTOR_SHIFT = 9;
export const HEADER_SIZE = 16;
/** GET_ID answers with 20 bytes: the serial, NUL-padded. */
export const ID_BYTES = 20;
/** struct virtio_blk_discard_write_zeroes: {le64 sector; le32 num_sectors; le32 flags}. */
export const SEGMENT_SIZE = 16;
export const SEGMENT_FLAG_UNMAP = 1;

// Request types (5.2.6)
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
// Status values
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** What the device advertised and how big the disk is: the bounds a request is checked against. */
export interface RequestLimits {
  capacityBytes: number;
  readOnly: boolean;
  maxDiscardSectors: number;
  maxDiscardSegments: number;
  maxWriteZeroesSectors: number;
  maxWriteZeroesSegments: number;
}

export type BlkRequestErrorCode =
  | 'no-status'
  | 'header-too-short'
  | 'wrong-direction'
  | 'unaligned-length'
  | 'out-of-range'
  | 'bad-segments'
  | 'segment-too-large'
  | 'bad-segment-flags'
  | 'read-only'
  | 'unsupported'
  | 'buffer-outside-ram';

/** A request the device refuses. Returned, not thrown; `status` is what the guest is told. */
export class BlkRequestError extends Error {
  override name = 'BlkRequestError';
  constructor(
    readonly code: BlkRequestErrorCode,
    message: string,
    /** VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP. */
    readonly status: number,
    /** Guest address of the status byte (undefined: the chain has none, nothing can be said). */
    readonly statusAddr: number | undefined,
  ) {
    super(message);
  }
}

/** One DISCARD or WRITE_ZEROES range, in bytes (checked against the disk). */
export interface Segment {
  offset: number;
  length: number;
  unmap: boolean;
}

export class Request {
  /** Guest views of the data (IN, GET_ID: the device writes them; OUT: it reads them). */
  readonly data: Uint8Array[] = [];
  /** Guest-physical address of each view in `data`. */
  readonly dataAddr: number[] = [];
  dataLength = 0;
  readonly segments: Segment[] = [];

  constructor(
    readonly head: number,
    readonly type: number,
    /** Byte offset on the disk (sector × 512). */
    readonly offset: number,
    readonly statusAddr: number,
  ) {}

  /** Bytes the device writes into the chain when it completes (data for IN / GET_ID, + status). */
  get writtenLength(): number {
    return (this.type === VIRTIO_BLK_T_IN || this.type === VIRTIO_BLK_T_GET_ID ? this.dataLength : 0) + 1;
  }

  /** Parse the chain just popped. */
  static parse(chain: DescriptorChain, mem: GuestMemory, limits: RequestLimits): Request | BlkRequestError {
    const statusAddr = lastWritableByte(chain);
    const fail = (code: BlkRequestErrorCode, message: string, status = VIRTIO_BLK_S_IOERR) =>
      new BlkRequestError(code, message, status, statusAddr);
    if (statusAddr === undefined) return fail('no-status', `request ${chain.head} has no device-writable byte for its status`);
    if (chain.readableBytes < HEADER_SIZE) {
      return fail('header-too-short', `request ${chain.head} has ${chain.readableBytes} readable bytes, less than the 16-byte header`);
    }
    const header = HEADER;
    if (!gather(chain, mem, false, 0, HEADER_SIZE, header)) return fail('buffer-outside-ram', `request ${chain.head}'s header is not in RAM`);
    const type = HEADER_VIEW.getUint32(0, true);
    const sector = HEADER_VIEW.getUint32(8, true) + HEADER_VIEW.getUint32(12, true) * 0x1_0000_0000;
    const readData = chain.readableBytes - HEADER_SIZE;
    const writeData = chain.writableBytes - 1;
    const what = `request ${chain.head} (type ${type})`;

    switch (type) {
      case VIRTIO_BLK_T_IN:
      case VIRTIO_BLK_T_OUT: {
        const isRead = type === VIRTIO_BLK_T_IN;
        if (isRead ? readData !== 0 : writeData !== 0) {
          return fail('wrong-direction', `${what}: ${isRead ? 'a read has device-readable data' : 'a write has device-writable data'} besides header and status`);
        }
        if (!isRead && limits.readOnly) return fail('read-only', `${what}: the disk is read-only`);
        const len = isRead ? writeData : readData;
        if (len % SECTOR_SIZE !== 0) return fail('unaligned-length', `${what}: ${len} data bytes is not a whole number of 512-byte sectors`);
        const range = checkRange(sector, len / SECTOR_SIZE, limits);
        if (range) return fail('out-of-range', `${what}: ${range}`);
        const req = new Request(chain.head, type, sector * SECTOR_SIZE, statusAddr);
        if (!views(chain, mem, isRead, isRead ? 0 : HEADER_SIZE, len, req)) return fail('buffer-outside-ram', `${what}: data not in RAM`);
        return req;
      }
      case VIRTIO_BLK_T_FLUSH:
        if (readData !== 0 || writeData !== 0) return fail('wrong-direction', `${what}: a flush carries data`);
        return new Request(chain.head, type, 0, statusAddr);
      case VIRTIO_BLK_T_GET_ID: {
        if (readData !== 0) return fail('wrong-direction', `${what}: GET_ID has device-readable data`);
        const req = new Request(chain.head, type, 0, statusAddr);
        if (!views(chain, mem, true, 0, Math.min(writeData, ID_BYTES), req)) return fail('buffer-outside-ram', `${what}: data not in RAM`);
        return req;
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return parseSegments(chain, mem, limits, type, statusAddr, readData, writeData, fail);
      default:
        return fail('unsupported', `${what}: request type not supported`, VIRTIO_BLK_S_UNSUPP);
    }
  }
}

const HEADER = new Uint8Array(HEADER_SIZE);
const HEADER_VIEW = new DataView(HEADER.buffer);
/** Scratch for DISCARD / WRITE_ZEROES segments (resized up to the advertised maximum). */
let segmentScratch = new Uint8Array(SEGMENT_SIZE * 16);

function parseSegments(
  chain: DescriptorChain, mem: GuestMemory, limits: RequestLimits, type: number, statusAddr: number, readData: number, writeData: number,
  fail: (code: BlkRequestErrorCode, message: string, status?: number) => BlkRequestError,
): Request | BlkRequestError {
  const discard = type === VIRTIO_BLK_T_DISCARD;
  const what = `${discard ? 'DISCARD' : 'WRITE_ZEROES'} request ${chain.head}`;
  if (writeData !== 0) return fail('wrong-direction', `${what} has device-writable data besides the status`);
  if (limits.readOnly) return fail('read-only', `${what}: the disk is read-only`);
  const maxSegments = discard ? limits.maxDiscardSegments : limits.maxWriteZeroesSegments;
  const maxSectors = discard ? limits.maxDiscardSectors : limits.maxWriteZeroesSectors;
  if (readData === 0 || readData % SEGMENT_SIZE !== 0 || readData / SEGMENT_SIZE > maxSegments) {
    return fail('bad-segments', `${what}: ${readData} bytes of segments, not 1 to ${maxSegments} segments of 16 bytes`);
  }
  if (segmentScratch.length < readData) segmentScratch = new Uint8Array(readData);
  const bytes = segmentScratch;
  if (!gather(chain, mem, false, HEADER_SIZE, readData, bytes)) return fail('buffer-outside-ram', `${what}: segments not in RAM`);
  const v = new DataView(bytes.buffer, 0, readData);
  const req = new Request(chain.head, type, 0, statusAddr);
  for (let at = 0; at < readData; at += SEGMENT_SIZE) {
    const sector = v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;
    const sectors = v.getUint32(at + 8, true);
    const flags = v.getUint32(at + 12, true);
    // 5.2.6.2: unknown flags, and UNMAP on a discard, are UNSUPP.
    if ((flags & ~SEGMENT_FLAG_UNMAP) !== 0 || (discard && flags !== 0)) {
      return fail('bad-segment-flags', `${what}: segment flags 0x${flags.toString(16)} not supported`, VIRTIO_BLK_S_UNSUPP);
    }
    if (sectors > maxSectors) return fail('segment-too-large', `${what}: ${sectors} sectors in one segment, more than ${maxSectors}`);
    const range = checkRange(sector, sectors, limits);
    if (range) return fail('out-of-range', `${what}: ${range}`);
    req.segments.push({ offset: sector * SECTOR_SIZE, length: sectors * SECTOR_SIZE, unmap: (flags & SEGMENT_FLAG_UNMAP) !== 0 });
  }
  return req;
}

/** Why [sector, sector+count) is not on the disk, or undefined when it is. */
function checkRange(sector: number, count: number, limits: RequestLimits): string | undefined {
  const capacity = limits.capacityBytes / SECTOR_SIZE;
  // `sector` may be above 2^53 (rounded): it is then still far above any capacity.
  if (sector > capacity || sector + count > capacity) {
    return `sectors ${sector}..${sector + count} are beyond the disk's ${capacity} sectors`;
  }
  return undefined;
}

/** Address of the chain's last device-writable byte (the status), if it has one. */
function lastWritableByte(chain: DescriptorChain): number | undefined {
  for (let i = chain.count - 1; i >= chain.readable; i--) {
    const len = chain.len[i]!;
    if (len > 0) return chain.addr[i]! + len - 1;
  }
  return undefined;
}

/**
 * Visit bytes [from, from+len) of the chain's readable (or writable) stream as pieces of guest
 * RAM, split at descriptor and region boundaries. False if a piece is not RAM (the queue checked
 * every buffer, so this is a second line of defence).
 */
function walk(chain: DescriptorChain, mem: GuestMemory, writable: boolean, from: number, len: number, piece: (view: Uint8Array, addr: number) => void): boolean {
  let skip = from;
  let left = len;
  const first = writable ? chain.readable : 0;
  const end = writable ? chain.count : chain.readable;
  for (let i = first; i < end && left > 0; i++) {
    const dlen = chain.len[i]!;
    if (skip >= dlen) {
      skip -= dlen;
      continue;
    }
    let addr = chain.addr[i]! + skip;
    let n = Math.min(dlen - skip, left);
    skip = 0;
    left -= n;
    while (n > 0) {
      const r = mem.regionOf(addr);
      if (!r) return false;
      const k = Math.min(n, r.base + r.size - addr);
      piece(r.bytes.subarray(addr - r.base, addr - r.base + k), addr);
      addr += k;
      n -= k;
    }
  }
  return left === 0;
}

/** Copy stream bytes [from, from+len) into `out`. */
function gather(chain: DescriptorChain, mem: GuestMemory, writable: boolean, from: number, len: number, out: Uint8Array): boolean {
  let at = 0;
  return walk(chain, mem, writable, from, len, (view) => {
    out.set(view, at);
    at += view.length;
  });
}

/** Borrowed views of stream bytes [from, from+len) into the request's `data`. */
function views(chain: DescriptorChain, mem: GuestMemory, writable: boolean, from: number, len: number, req: Request): boolean {
  req.dataLength = len;
  return walk(chain, mem, writable, from, len, (view, addr) => {
    req.data.push(view);
    req.dataAddr.push(addr);
  });
}
