/**
 * Where things go in guest RAM, and the checks that they fit: every range a loader writes
 * (kernel segments, initrd, command line) must be RAM and must stay clear of the boot
 * structures in the first megabyte.
 */
import { EBDA_START, HIGH_MEMORY_START, MMIO32_START, PAGE_SIZE } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';
import { lowRamEnd } from './e820.js';
import { BootError, hex, mib } from './errors.js';

/**
 * Check that [start, start+len) is RAM above the boot structures (which occupy the first
 * MiB: GDT, zero page, page tables, multiboot info, command line, ACPI tables).
 */
export function checkLoadRange(memory: GuestMemory, start: number, len: number, what: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(len) || start < 0 || len < 0) {
    throw new BootError(`${what}: address ${hex(start)} / size ${len} is out of range`);
  }
  if (start < HIGH_MEMORY_START) {
    throw new BootError(
      `${what} at ${hex(start)}..${hex(start + len)} overlaps the boot structures below 1 MiB (${hex(HIGH_MEMORY_START)}): the kernel must load at or above 1 MiB`,
    );
  }
  if (!memory.isRam(start, len)) {
    throw new BootError(
      `${what} at ${hex(start)}..${hex(start + len)} is outside guest RAM (${mib(memory.size)}): give the guest more memory with --memory`,
    );
  }
}

/** A check that a loader may write [start, start+len); throws a BootError naming `what` otherwise. */
export type RangeCheck = (memory: GuestMemory, start: number, len: number, what: string) => void;

/**
 * What a kernel entered in 32-bit protected mode with paging off (multiboot) can never share
 * below 1 MiB: the real-mode IVT, the BIOS data area and the boot GDT in the first page, and the
 * EBDA, VGA window, ROMs and ACPI tables from the EBDA up. Everything else there is free.
 */
export const LOW_RESERVED: readonly (readonly [number, number])[] = [[0, PAGE_SIZE], [EBDA_START, HIGH_MEMORY_START]];

/** Like checkLoadRange, but a load below 1 MiB is allowed where it misses LOW_RESERVED (multiboot kernels). */
export function checkLowLoadRange(memory: GuestMemory, start: number, len: number, what: string): void {
  if (start >= HIGH_MEMORY_START || !Number.isSafeInteger(start) || !Number.isSafeInteger(len) || start < 0 || len < 0) {
    checkLoadRange(memory, start, len, what);
    return;
  }
  for (const [lo, hi] of LOW_RESERVED) {
    if (start < hi && start + len > lo) {
      throw new BootError(
        `${what} at ${hex(start)}..${hex(start + len)} overlaps ${lo === 0 ? 'the real-mode vectors and the boot GDT' : 'the EBDA, VGA, ROM and ACPI area'} at ${hex(lo)}..${hex(hi)}: the kernel must load elsewhere`,
      );
    }
  }
  if (!memory.isRam(start, len)) {
    throw new BootError(`${what} at ${hex(start)}..${hex(start + len)} is outside guest RAM (${mib(memory.size)}): give the guest more memory with --memory`);
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
