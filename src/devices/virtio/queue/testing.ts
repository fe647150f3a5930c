/**
 * Test support: the driver's side of a split virtqueue in guest memory, as Linux's virtio_ring
 * lays it out, so device tests can add chains and read the used ring back.
 */
import type { GuestMemory } from '../../../machine/memory.js';
import { DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from './queue.js';

export interface TestBuffer {
  addr: number;
  len: number;
  write?: boolean;
}

export class DriverQueue {
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  /** Next free descriptor (simple bump allocation, wraps). */
  private nextDesc = 0;
  private availIdx = 0;
  /** Used entries consumed so far. */
  lastUsed = 0;

  /** Rings at `base`: descriptors, then the avail ring, then the used ring (4 KiB aligned). */
  constructor(
    readonly mem: GuestMemory,
    readonly size: number,
    base: number,
  ) {
    this.descAddr = base;
    this.availAddr = base + DESC_SIZE * size;
    this.usedAddr = Math.ceil((this.availAddr + 6 + 2 * size) / 4096) * 4096;
    mem.fill(base, this.usedAddr + 6 + 8 * size - base, 0); // fresh, zeroed rings as Linux allocates them
  }

  /** Write descriptor `i` directly (for hostile tables). */
  writeDesc(i: number, addr: number, len: number, flags: number, next: number, table = this.descAddr): void {
    const d = table + DESC_SIZE * i;
    this.mem.write32(d, addr % 0x1_0000_0000);
    this.mem.write32(d + 4, Math.floor(addr / 0x1_0000_0000));
    this.mem.write32(d + 8, len);
    this.mem.write16(d + 12, flags);
    this.mem.write16(d + 14, next);
  }

  /** Make `head` available (avail ring entry + index bump). */
  publish(head: number): void {
    this.mem.write16(this.availAddr + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.write16(this.availAddr + 2, this.availIdx);
  }

  /** Add a chain of direct descriptors and publish it; returns its head. */
  add(buffers: readonly TestBuffer[]): number {
    const head = this.nextDesc;
    buffers.forEach((b, k) => {
      const i = (head + k) % this.size;
      const last = k === buffers.length - 1;
      this.writeDesc(i, b.addr, b.len, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : (i + 1) % this.size);
    });
    this.nextDesc = (head + buffers.length) % this.size;
    this.publish(head);
    return head;
  }

  /** Add one descriptor pointing at an indirect table (written at `table`) and publish it. */
  addIndirect(table: number, buffers: readonly TestBuffer[]): number {
    buffers.forEach((b, k) => {
      const last = k === buffers.length - 1;
      this.writeDesc(k, b.addr, b.len, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : k + 1, table);
    });
    const head = this.nextDesc;
    this.writeDesc(head, table, DESC_SIZE * buffers.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.nextDesc = (head + 1) % this.size;
    this.publish(head);
    return head;
  }

  usedIndex(): number {
    return this.mem.read16(this.usedAddr + 2);
  }

  /** The used entries the device added since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.usedIndex();
    while (this.lastUsed !== idx) {
      const e = this.usedAddr + 4 + 8 * (this.lastUsed % this.size);
      out.push({ id: this.mem.read32(e), len: this.mem.read32(e + 4) });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  setAvailFlags(flags: number): void {
    this.mem.write16(this.availAddr, flags);
  }
  setUsedEvent(v: number): void {
    this.mem.write16(this.availAddr + 4 + 2 * this.size, v);
  }
  availEvent(): number {
    return this.mem.read16(this.usedAddr + 4 + 8 * this.size);
  }
}
