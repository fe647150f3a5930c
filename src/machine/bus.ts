/**
 * Port-I/O and MMIO buses. A device is attached over a range and sees only the offset into
 * that range (it does not care where it lives). Overlapping inserts are an error. Unmapped
 * reads return all-ones and unmapped accesses are counted, as on real hardware.
 *
 * Access sizes are 1, 2 or 4 bytes; values are unsigned 32-bit numbers. An engine splits an
 * 8-byte MMIO access into two 4-byte accesses (low half first).
 */

export type AccessSize = 1 | 2 | 4;

export interface BusDevice {
  /** Read `size` bytes at `offset` from the start of the device's range. */
  read(offset: number, size: AccessSize): number;
  /** Write `size` bytes (the low bits of `value`) at `offset`. */
  write(offset: number, size: AccessSize, value: number): void;
}

export class BusError extends Error {
  override name = 'BusError';
}

interface Mapping {
  base: number;
  end: number; // exclusive
  device: BusDevice;
  name: string;
}

const ONES = [0, 0xff, 0xffff, 0, 0xffff_ffff] as const;

export class Bus {
  private mappings: Mapping[] = [];
  /** Last mapping hit, a one-entry cache for the hot path. */
  private last: Mapping | undefined;
  missedReads = 0;
  missedWrites = 0;

  constructor(readonly kind: 'pio' | 'mmio') {}

  insert(base: number, length: number, device: BusDevice, name: string): void {
    if (length <= 0) throw new BusError(`${this.kind} range for ${name} has length ${length}`);
    const end = base + length;
    for (const m of this.mappings) {
      if (base < m.end && m.base < end) {
        throw new BusError(
          `${this.kind} range 0x${base.toString(16)}+0x${length.toString(16)} for ${name} overlaps ${m.name} at 0x${m.base.toString(16)}`,
        );
      }
    }
    this.mappings.push({ base, end, device, name });
    this.mappings.sort((a, b) => a.base - b.base);
  }

  remove(base: number): void {
    this.mappings = this.mappings.filter((m) => m.base !== base);
    this.last = undefined;
  }

  /** The mapping at `addr`, if any. */
  find(addr: number): { base: number; device: BusDevice; name: string } | undefined {
    const l = this.last;
    if (l !== undefined && addr >= l.base && addr < l.end) return l;
    for (const m of this.mappings) {
      if (addr >= m.base && addr < m.end) {
        this.last = m;
        return m;
      }
    }
    return undefined;
  }

  read(addr: number, size: AccessSize): number {
    const m = this.find(addr);
    if (m === undefined) {
      this.missedReads++;
      return ONES[size];
    }
    return m.device.read(addr - m.base, size) >>> 0;
  }

  write(addr: number, size: AccessSize, value: number): void {
    const m = this.find(addr);
    if (m === undefined) {
      this.missedWrites++;
      return;
    }
    m.device.write(addr - m.base, size, value);
  }

  list(): readonly { base: number; length: number; name: string }[] {
    return this.mappings.map((m) => ({ base: m.base, length: m.end - m.base, name: m.name }));
  }
}
