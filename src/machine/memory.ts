/**
 * Guest physical memory: a few RAM regions, each backed by its own ArrayBuffer (at most 4 GiB
 * a region, so the KVM engine can hand us one koffi view per memory slot).
 *
 * Consumers only *access* guest memory through this interface; only the machine builder
 * creates it. Accesses are bounds-checked: an address outside RAM throws GuestMemoryError,
 * never touches host memory. Accesses that cross a region boundary are split.
 */

/** A guest-physical address. The brand keeps it from mixing with offsets and host pointers. */
export type GuestAddress = number & { readonly __brand: 'GuestAddress' };
export const ga = (n: number): GuestAddress => n as GuestAddress;

export class GuestMemoryError extends RangeError {
  override name = 'GuestMemoryError';
}

export interface RamRegion {
  /** Guest-physical base address. */
  readonly base: number;
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

export interface RegionSpec {
  base: number;
  size: number;
  /**
   * Backing store; allocated here when absent (the KVM engine passes a shared wasm Memory's,
   * whose pages are its guest RAM memfd's). At least `size` bytes; the region is its start.
   */
  buffer?: ArrayBufferLike;
}

export class GuestMemory {
  readonly regions: readonly RamRegion[];
  /** Total RAM in bytes. */
  readonly size: number;

  /** Who wants to hear about device writes into RAM (see `dmaWritten`). */
  private readonly dmaListeners: ((addr: number, len: number) => void)[] = [];

  constructor(specs: readonly RegionSpec[]) {
    const sorted = [...specs].sort((a, b) => a.base - b.base);
    let end = 0;
    const regions: RamRegion[] = [];
    for (const s of sorted) {
      if (s.base < end) throw new GuestMemoryError(`RAM regions overlap at 0x${s.base.toString(16)}`);
      if (s.size <= 0 || s.size > 0x1_0000_0000) {
        throw new GuestMemoryError(`RAM region size ${s.size} is out of range (1 byte .. 4 GiB)`);
      }
      const buffer = s.buffer ?? new ArrayBuffer(s.size);
      if (buffer.byteLength < s.size) throw new GuestMemoryError('RAM region buffer is smaller than its size');
      regions.push({ base: s.base, size: s.size, bytes: new Uint8Array(buffer, 0, s.size), view: new DataView(buffer, 0, s.size) });
      end = s.base + s.size;
    }
    this.regions = regions;
    this.size = regions.reduce((n, r) => n + r.size, 0);
  }

  /**
   * A device wrote [addr, addr+len) of RAM directly (DMA: a disk read landing in memory). The
   * software CPU listens, to drop code it translated from those bytes; writes through the
   * accessors below do not call this by themselves (loaders and tests use them before a CPU
   * exists, and ring bookkeeping is never code).
   */
  dmaWritten(addr: number, len: number): void {
    const ls = this.dmaListeners;
    for (let i = 0; i < ls.length; i++) ls[i]!(addr, len);
  }

  /** Hear about device writes into RAM (the bt engine connects its CPU here). */
  onDmaWrite(listener: (addr: number, len: number) => void): void {
    this.dmaListeners.push(listener);
  }

  /** The region holding `addr`, or undefined (MMIO hole or beyond RAM). */
  regionOf(addr: number): RamRegion | undefined {
    const rs = this.regions;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i]!;
      if (addr >= r.base && addr < r.base + r.size) return r;
    }
    return undefined;
  }

  /** True when [addr, addr+len) is entirely RAM. */
  isRam(addr: number, len: number): boolean {
    if (len <= 0) return len === 0;
    let a = addr;
    const end = addr + len;
    while (a < end) {
      const r = this.regionOf(a);
      if (!r) return false;
      a = r.base + r.size;
    }
    return true;
  }

  private fail(addr: number, len: number): never {
    throw new GuestMemoryError(`guest access of ${len} bytes at 0x${addr.toString(16)} is outside RAM`);
  }

  /** A borrowed view of [addr, addr+len) when it lies in one region; throws otherwise. */
  slice(addr: number, len: number): Uint8Array {
    const r = this.regionOf(addr);
    if (!r || len < 0 || addr - r.base + len > r.size) this.fail(addr, len);
    return r.bytes.subarray(addr - r.base, addr - r.base + len);
  }

  read8(addr: number): number {
    const r = this.regionOf(addr) ?? this.fail(addr, 1);
    return r.bytes[addr - r.base]!;
  }
  read16(addr: number): number {
    const r = this.regionOf(addr);
    if (r && addr + 2 <= r.base + r.size) return r.view.getUint16(addr - r.base, true);
    return this.read8(addr) | (this.read8(addr + 1) << 8);
  }
  read32(addr: number): number {
    const r = this.regionOf(addr);
    if (r && addr + 4 <= r.base + r.size) return r.view.getUint32(addr - r.base, true);
    return (this.read16(addr) | (this.read16(addr + 2) << 16)) >>> 0;
  }
  /** 64-bit read as a bigint (for loaders and devices, not hot paths). */
  read64(addr: number): bigint {
    return BigInt(this.read32(addr)) | (BigInt(this.read32(addr + 4)) << 32n);
  }
  write8(addr: number, v: number): void {
    const r = this.regionOf(addr) ?? this.fail(addr, 1);
    r.bytes[addr - r.base] = v;
  }
  write16(addr: number, v: number): void {
    const r = this.regionOf(addr);
    if (r && addr + 2 <= r.base + r.size) return r.view.setUint16(addr - r.base, v, true);
    this.write8(addr, v & 0xff);
    this.write8(addr + 1, (v >>> 8) & 0xff);
  }
  write32(addr: number, v: number): void {
    const r = this.regionOf(addr);
    if (r && addr + 4 <= r.base + r.size) return r.view.setUint32(addr - r.base, v >>> 0, true);
    this.write16(addr, v & 0xffff);
    this.write16(addr + 2, (v >>> 16) & 0xffff);
  }
  write64(addr: number, v: bigint): void {
    this.write32(addr, Number(v & 0xffff_ffffn));
    this.write32(addr + 4, Number((v >> 32n) & 0xffff_ffffn));
  }

  /** Copy guest memory out (may cross regions). */
  readBytes(addr: number, len: number): Uint8Array {
    return this.readInto(addr, new Uint8Array(len));
  }

  /** Copy guest memory [addr, addr + out.length) into `out` (may cross regions); returns `out`. */
  readInto(addr: number, out: Uint8Array): Uint8Array {
    const len = out.length;
    let done = 0;
    while (done < len) {
      const r = this.regionOf(addr + done) ?? this.fail(addr + done, len - done);
      const off = addr + done - r.base;
      const n = Math.min(len - done, r.size - off);
      out.set(r.bytes.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  /** Copy into guest memory (may cross regions). */
  writeBytes(addr: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const r = this.regionOf(addr + done) ?? this.fail(addr + done, data.length - done);
      const off = addr + done - r.base;
      const n = Math.min(data.length - done, r.size - off);
      r.bytes.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  fill(addr: number, len: number, value: number): void {
    let done = 0;
    while (done < len) {
      const r = this.regionOf(addr + done) ?? this.fail(addr + done, len - done);
      const off = addr + done - r.base;
      const n = Math.min(len - done, r.size - off);
      r.bytes.fill(value, off, off + n);
      done += n;
    }
  }
}
