/**
 * Where things go in guest RAM, and the checks that they fit: every range a loader writes
 * (kernel segments, initrd, command line) must be RAM and must stay clear of the boot
 * structures in the first megabyte.
 */
import { EBDA_START, HIGH_MEMORY_START, MMIO32_START, PAGE_SIZE } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';
import { lowRamEnd } from './e820.js';
import { BootError, hex, mib } from './errors.js';

/** A range of low memory a loader must not write, and what to say when a load overlaps it. */
export interface Reserved {
  lo: number;
  hi: number;
  /** Completes "<what> at A..B ..." */
  says: string;
}

/**
 * The boot structures of a Linux or 64-bit entry occupy the first MiB (GDT, zero page, page
 * tables, multiboot info, command line, ACPI tables): kernels load above it.
 */
export const BOOT_STRUCTURES: readonly Reserved[] = [
  { lo: 0, hi: HIGH_MEMORY_START, says: `overlaps the boot structures below 1 MiB (${hex(HIGH_MEMORY_START)}): the kernel must load at or above 1 MiB` },
];

/**
 * What a kernel entered in 32-bit protected mode with paging off (multiboot) can never share
 * below 1 MiB: the real-mode IVT, the BIOS data area and the boot GDT in the first page, and the
 * EBDA, VGA window, ROMs and ACPI tables from the EBDA up. Everything else there is free.
 */
export const LOW_RESERVED: readonly Reserved[] = [
  { lo: 0, hi: PAGE_SIZE, says: `overlaps the real-mode vectors and the boot GDT at 0x0..${hex(PAGE_SIZE)}: the kernel must load elsewhere` },
  { lo: EBDA_START, hi: HIGH_MEMORY_START, says: `overlaps the EBDA, VGA, ROM and ACPI area at ${hex(EBDA_START)}..${hex(HIGH_MEMORY_START)}: the kernel must load elsewhere` },
];

/** Check that [start, start+len) is RAM and clear of `reserved` (by default the whole first MiB). */
export function checkLoadRange(memory: GuestMemory, start: number, len: number, what: string, reserved: readonly Reserved[] = BOOT_STRUCTURES): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(len) || start < 0 || len < 0) {
    throw new BootError(`${what}: address ${hex(start)} / size ${len} is out of range`);
  }
  for (const r of reserved) {
    // an empty range counts as its start byte
    if (start < r.hi && Math.max(start + len, start + 1) > r.lo) throw new BootError(`${what} at ${hex(start)}..${hex(start + len)} ${r.says}`);
  }
  if (!memory.isRam(start, len)) {
    throw new BootError(
      `${what} at ${hex(start)}..${hex(start + len)} is outside guest RAM (${mib(memory.size)}): give the guest more memory with --memory`,
    );
  }
}

/**
 * Place a blob (initrd, multiboot module) page-aligned as high as possible below `limit`
 * (exclusive), the end of low RAM and 4 GiB, and at or above `floor` (the end of the
 * kernel's footprint). Throws a BootError saying how much memory is missing.
 */
export function placeHigh(memory: GuestMemory, size: number, floor: number, limit: number, what: string): number {
  const top = Math.min(limit, lowRamEnd(memory), MMIO32_START);
  const addr = Math.floor((top - size) / PAGE_SIZE) * PAGE_SIZE;
  const base = Math.ceil(floor / PAGE_SIZE) * PAGE_SIZE;
  if (size > 0 && (addr < base || top - size < 0)) {
    throw new BootError(
      `${what} (${mib(size)}) does not fit in guest RAM (${mib(memory.size)}): give the guest more memory with --memory ` +
        `(it must go above the kernel's footprint, which ends at ${hex(base)}, and below ${hex(top)})`,
    );
  }
  return addr;
}
