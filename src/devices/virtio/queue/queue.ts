/**
 * Split virtqueues (virtio 1.2, 2.7), the device side: the descriptor table, the driver's
 * ("available") ring and the device's ("used") ring, all in guest memory.
 *
 *   descriptor table  size × {addr le64, len le32, flags le16, next le16}        align 16
 *   available ring    {flags le16, idx le16, ring[size] le16, used_event le16}   align 2
 *   used ring         {flags le16, idx le16, ring[size] {id le32, len le32},
 *                      avail_event le16}                                         align 4
 *
 * Every value here comes from the guest and is hostile until checked. `activate` checks the
 * queue size (a power of two, at most the device's maximum, at most 32768) and that the three
 * areas lie entirely in guest RAM (not in the MMIO hole) and are aligned; after that, ring
 * accesses cannot leave RAM. `pop` parses one chain into a reusable `DescriptorChain`: head and
 * next indices are range-checked, a chain's walk has a TTL of the queue size (an indirect
 * table's: its entry count), so loops end; nested indirect tables, INDIRECT together with NEXT,
 * INDIRECT without the negotiated feature, a readable descriptor after a writable one, a total
 * length above 2^32 - 1 and any buffer not entirely in RAM are errors. Errors are returned as
 * `VirtqueueError` values, never thrown: the transport marks the device DEVICE_NEEDS_RESET.
 *
 * EVENT_IDX (2.7.7, 2.7.10): with the feature the device publishes `avail_event` (the next
 * avail index it wants a notification for) and interrupts the driver only when the used index
 * passes the driver's `used_event`; without it, `VRING_AVAIL_F_NO_INTERRUPT` suppresses
 * interrupts.
 *
 * The device side is single-threaded (the bt engine runs devices between guest instructions),
 * so no memory barriers are needed; a KVM device thread would add them here.
 */
import type { GuestMemory } from '../../../machine/memory.js';

// Descriptor flags
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
// Available ring flags
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Largest queue size the split ring allows (virtio 1.2, 2.7). */
export const MAX_QUEUE_SIZE = 32768;
export const DESC_SIZE = 16;
/** Highest guest-physical address + 1 we accept from a descriptor (52-bit physical). */
const MAX_GUEST_ADDRESS = 2 ** 52;

/** The part of guest memory a queue touches. */
export type QueueMemory = Pick<GuestMemory, 'isRam' | 'read16' | 'read32' | 'write16' | 'write32'>;

export type VirtqueueErrorCode =
  | 'bad-queue-size'
  | 'ring-misaligned'
  | 'ring-outside-ram'
  | 'bad-avail-index'
  | 'bad-head-index'
  | 'bad-next-index'
  | 'chain-too-long'
  | 'indirect-not-negotiated'
  | 'indirect-with-next'
  | 'nested-indirect'
  | 'bad-indirect-length'
  | 'buffer-outside-ram'
  | 'length-overflow'
  | 'readable-after-writable'
  | 'bad-used-head';

/** A driver mistake (or attack) found in a virtqueue. Returned, not thrown. */
export class VirtqueueError extends Error {
  override name = 'VirtqueueError';
  constructor(
    readonly code: VirtqueueErrorCode,
    message: string,
  ) {
    super(`${message}: the guest's virtio driver must reset the device`);
  }
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * One parsed descriptor chain: `count` buffers, the readable ones (device reads: the driver's
 * request) first, then `count - readable` writable ones. Reused across pops: the arrays are
 * borrowed, valid until the next `pop` into the same chain.
 */
export class DescriptorChain {
  /** Index of the chain's head in the descriptor table (what goes to the used ring). */
  head = 0;
  count = 0;
  /** Number of readable (device-read) buffers, at indices 0..readable-1. */
  readable = 0;
  readableBytes = 0;
  writableBytes = 0;
  addr: Float64Array;
  len: Uint32Array;

  constructor(capacity = 16) {
    this.addr = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
  }

  get writable(): number {
    return this.count - this.readable;
  }

  /** @internal */
  clear(head: number): void {
    this.head = head;
    this.count = 0;
    this.readable = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  /** @internal Append a buffer (checked by the caller). */
  push(addr: number, len: number, writable: boolean): void {
    if (this.count === this.addr.length) {
      const addrs = new Float64Array(this.count * 2);
      addrs.set(this.addr);
      const lens = new Uint32Array(this.count * 2);
      lens.set(this.len);
      this.addr = addrs;
      this.len = lens;
    }
    this.addr[this.count] = addr;
    this.len[this.count] = len;
    this.count++;
    if (writable) this.writableBytes += len;
    else {
      this.readable++;
      this.readableBytes += len;
    }
  }
}

export interface QueueFeatures {
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
}

/** Snapshot state of a split virtqueue: what the driver configured and where the device is. */
export interface SplitQueueState {
  size: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  ready: boolean;
  lastAvail: number;
  usedIdx: number;
  /** The used index at the last interrupt (EVENT_IDX suppression). */
  signalledUsed: number;
  indirect: boolean;
  eventIdx: boolean;
}

export class SplitQueue {
  /** Queue size the driver chose (starts at the device's maximum). */
  size: number;
  /** Guest-physical addresses of the descriptor table and the two rings. */
  descAddr = 0;
  availAddr = 0;
  usedAddr = 0;
  /** Activated and checked: `pop` and `pushUsed` work. */
  ready = false;
  /** Next avail ring slot the device will consume (free-running 16-bit). */
  lastAvail = 0;
  /** Next used ring slot (free-running 16-bit). */
  usedIdx = 0;
  private indirect = false;
  private eventIdx = false;
  /** Used index when we last decided about an interrupt. */
  private signalledUsed = 0;

  constructor(readonly maxSize: number) {
    if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > MAX_QUEUE_SIZE || (maxSize & (maxSize - 1)) !== 0) {
      throw new RangeError(`virtqueue maximum size ${maxSize} must be a power of two from 1 to ${MAX_QUEUE_SIZE}`);
    }
    this.size = maxSize;
  }

  /** Back to the state after a device reset. */
  reset(): void {
    this.size = this.maxSize;
    this.descAddr = this.availAddr = this.usedAddr = 0;
    this.ready = false;
    this.lastAvail = this.usedIdx = 0;
    this.indirect = this.eventIdx = false;
    this.signalledUsed = 0;
  }

  /** Check the driver's configuration; on success the queue is ready. */
  save(): SplitQueueState {
    return {
      size: this.size, descAddr: this.descAddr, availAddr: this.availAddr, usedAddr: this.usedAddr, ready: this.ready,
      lastAvail: this.lastAvail, usedIdx: this.usedIdx, signalledUsed: this.signalledUsed, indirect: this.indirect, eventIdx: this.eventIdx,
    };
  }

  /**
   * Snapshot restore. A ready queue's rings are checked as `activate` checks them (an error is
   * returned and nothing changes); `s` must otherwise be valid (sizes, 16-bit indices).
   */
  restore(mem: QueueMemory, s: SplitQueueState): VirtqueueError | undefined {
    if (s.ready) {
      const probe = new SplitQueue(this.maxSize);
      probe.size = s.size;
      probe.descAddr = s.descAddr;
      probe.availAddr = s.availAddr;
      probe.usedAddr = s.usedAddr;
      const err = probe.activate(mem, { indirect: s.indirect, eventIdx: s.eventIdx });
      if (err) return err;
    }
    this.size = s.size;
    this.descAddr = s.descAddr;
    this.availAddr = s.availAddr;
    this.usedAddr = s.usedAddr;
    this.ready = s.ready;
    this.lastAvail = s.lastAvail & 0xffff;
    this.usedIdx = s.usedIdx & 0xffff;
    this.signalledUsed = s.signalledUsed & 0xffff;
    this.indirect = s.indirect;
    this.eventIdx = s.eventIdx;
    return undefined;
  }

  activate(mem: QueueMemory, features: QueueFeatures): VirtqueueError | undefined {
    const n = this.size;
    if (!Number.isInteger(n) || n < 1 || n > this.maxSize || (n & (n - 1)) !== 0) {
      return new VirtqueueError('bad-queue-size', `queue size ${n} is not a power of two from 1 to ${this.maxSize}`);
    }
    const areas: [string, number, number, number][] = [
      ['descriptor table', this.descAddr, DESC_SIZE * n, 16],
      ['available ring', this.availAddr, 6 + 2 * n, 2],
      ['used ring', this.usedAddr, 6 + 8 * n, 4],
    ];
    for (const [what, addr, len, align] of areas) {
      if (addr % align !== 0) return new VirtqueueError('ring-misaligned', `${what} at ${hex(addr)} is not ${align}-byte aligned`);
      if (!(addr + len <= MAX_GUEST_ADDRESS) || !mem.isRam(addr, len)) {
        return new VirtqueueError('ring-outside-ram', `${what} at ${hex(addr)} (+${len}) is not in guest RAM`);
      }
    }
    this.indirect = features.indirect;
    this.eventIdx = features.eventIdx;
    this.signalledUsed = this.usedIdx;
    this.ready = true;
    return undefined;
  }

  /** The driver's avail index (how many chains it has made available, mod 2^16). */
  availIndex(mem: QueueMemory): number {
    return mem.read16(this.availAddr + 2);
  }

  /**
   * Take the next available chain into `chain`. Returns true when one was taken, false when
   * the ring is empty, or the error that makes the queue unusable.
   */
  pop(mem: QueueMemory, chain: DescriptorChain): boolean | VirtqueueError {
    if (!this.ready) return false;
    const n = this.size;
    const availIdx = mem.read16(this.availAddr + 2);
    const waiting = (availIdx - this.lastAvail) & 0xffff;
    if (waiting === 0) return false;
    if (waiting > n) {
      return new VirtqueueError('bad-avail-index', `avail index ${availIdx} is ${waiting} entries ahead of the device (${this.lastAvail}) in a queue of ${n}`);
    }
    const head = mem.read16(this.availAddr + 4 + 2 * (this.lastAvail & (n - 1)));
    if (head >= n) return new VirtqueueError('bad-head-index', `avail ring names descriptor ${head} in a queue of ${n}`);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    // Ask for a notification when the driver adds anything after what we have taken.
    if (this.eventIdx) mem.write16(this.usedAddr + 4 + 8 * n, this.lastAvail);
    const err = this.parseChain(mem, head, chain);
    return err ?? true;
  }

  /** Put back the last chain taken (a device that cannot serve it yet). */
  undoPop(): void {
    this.lastAvail = (this.lastAvail - 1) & 0xffff;
  }

  private parseChain(mem: QueueMemory, head: number, chain: DescriptorChain): VirtqueueError | undefined {
    chain.clear(head);
    let table = this.descAddr;
    let entries = this.size;
    let ttl = entries;
    let inIndirect = false;
    let i = head;
    while (true) {
      if (ttl-- === 0) {
        return new VirtqueueError('chain-too-long', `descriptor chain from ${head} is longer than ${inIndirect ? 'its indirect table' : 'the queue'} (a loop?)`);
      }
      const d = table + DESC_SIZE * i;
      const lo = mem.read32(d);
      const hi = mem.read32(d + 4);
      const len = mem.read32(d + 8);
      const flags = mem.read16(d + 12);
      const next = mem.read16(d + 14);
      const addr = hi * 0x1_0000_0000 + lo;
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (inIndirect) return new VirtqueueError('nested-indirect', `descriptor ${i} of an indirect table points at another indirect table`);
        if (!this.indirect) return new VirtqueueError('indirect-not-negotiated', `descriptor ${i} is indirect but INDIRECT_DESC was not negotiated`);
        if (flags & VIRTQ_DESC_F_NEXT) return new VirtqueueError('indirect-with-next', `indirect descriptor ${i} also has NEXT set`);
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_QUEUE_SIZE) {
          return new VirtqueueError('bad-indirect-length', `indirect descriptor ${i} has length ${len}, not a multiple of 16 from 16 to ${DESC_SIZE * MAX_QUEUE_SIZE}`);
        }
        if (addr % DESC_SIZE !== 0 || !(addr + len <= MAX_GUEST_ADDRESS) || !mem.isRam(addr, len)) {
          return new VirtqueueError('buffer-outside-ram', `indirect table at ${hex(addr)} (+${len}) is not aligned guest RAM`);
        }
        table = addr;
        entries = len / DESC_SIZE;
        ttl = entries;
        inIndirect = true;
        i = 0;
        continue;
      }
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!writable && chain.readable !== chain.count) {
        return new VirtqueueError('readable-after-writable', `descriptor ${i} is device-readable but follows a device-writable one`);
      }
      if (!(addr + len <= MAX_GUEST_ADDRESS) || !mem.isRam(addr, len === 0 ? 1 : len)) {
        return new VirtqueueError('buffer-outside-ram', `descriptor ${i} points at ${hex(addr)} (+${len}), not in guest RAM`);
      }
      if (chain.readableBytes + chain.writableBytes + len > 0xffff_ffff) {
        return new VirtqueueError('length-overflow', `descriptor chain from ${head} is longer than 4 GiB in total`);
      }
      chain.push(addr, len, writable);
      if (!(flags & VIRTQ_DESC_F_NEXT)) return undefined;
      if (next >= entries) {
        return new VirtqueueError('bad-next-index', `descriptor ${i} chains to ${next}, beyond ${inIndirect ? 'its indirect table' : 'the queue'} of ${entries}`);
      }
      i = next;
    }
  }

  /** One line for a state dump: the device's and the driver's ring positions. */
  describe(mem: QueueMemory): string {
    if (!this.ready) return 'not ready';
    const n = this.size;
    const avail = mem.read16(this.availAddr + 2);
    const usedEvent = mem.read16(this.availAddr + 4 + 2 * n);
    const availEvent = mem.read16(this.usedAddr + 4 + 8 * n);
    return `size ${n}, avail idx ${avail} (device took ${this.lastAvail}), used idx ${this.usedIdx} (signalled ${this.signalledUsed}), `
      + `avail flags ${mem.read16(this.availAddr)}, used_event ${usedEvent}, avail_event ${availEvent}${this.eventIdx ? ' (EVENT_IDX)' : ''}`;
  }

  /** Return chain `head` to the driver with `len` bytes written into its writable buffers. */
  pushUsed(mem: QueueMemory, head: number, len: number): VirtqueueError | undefined {
    if (!this.ready) return undefined;
    const n = this.size;
    if (!(head >= 0 && head < n)) return new VirtqueueError('bad-used-head', `device returned descriptor ${head} in a queue of ${n}`);
    const slot = this.usedAddr + 4 + 8 * (this.usedIdx & (n - 1));
    mem.write32(slot, head);
    mem.write32(slot + 4, len >>> 0);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    mem.write16(this.usedAddr + 2, this.usedIdx);
    return undefined;
  }

  /**
   * After pushing used entries: should the driver be interrupted? Never when nothing was used
   * since the last time we asked; with EVENT_IDX, only when the used index has passed
   * `used_event` since then (2.7.10).
   */
  needsInterrupt(mem: QueueMemory): boolean {
    if (!this.ready) return false;
    const old = this.signalledUsed;
    const now = this.usedIdx;
    this.signalledUsed = now;
    if (old === now) return false; // nothing used since the last decision
    if (!this.eventIdx) return (mem.read16(this.availAddr) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = mem.read16(this.availAddr + 4 + 2 * this.size);
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }
}
