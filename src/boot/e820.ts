/**
 * The BIOS e820 memory map handed to the guest (Linux boot_params.e820_table, the multiboot
 * mmap), derived from the RAM regions of GuestMemory:
 *
 *   RAM       0 .. EBDA_START                 (low memory; the loaders' structures live here)
 *   reserved  EBDA_START .. 1 MiB             (EBDA, VGA hole, BIOS area with the ACPI tables)
 *   RAM       1 MiB .. end of the region       (up to the 32-bit MMIO hole)
 *   RAM       4 GiB ..                         (RAM above the hole)
 */
import { EBDA_START, HIGH_MEMORY_START } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';
import { BootError } from './errors.js';

export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;
export const E820_NVS = 4;
export type E820Type = typeof E820_RAM | typeof E820_RESERVED | typeof E820_ACPI | typeof E820_NVS;

export interface E820Entry {
  addr: number;
  size: number;
  type: E820Type;
}

/** Linux's boot_params has room for 128 entries (E820_MAX_ENTRIES_ZEROPAGE). */
export const E820_MAX_ENTRIES = 128;

export interface E820Options {
  /** Extra ranges to mark (e.g. reserved MMIO that the guest must not treat as free). */
  extra?: readonly E820Entry[];
}

/** Build the e820 map for `memory`. Entries are sorted by address and do not overlap. */
export function buildE820(memory: GuestMemory, opts: E820Options = {}): E820Entry[] {
  const out: E820Entry[] = [];
  const low = memory.regions.find((r) => r.base === 0);
  if (!low || low.size < HIGH_MEMORY_START) {
    throw new BootError('guest RAM must start at address 0 and be at least 1 MiB: give the guest more memory with --memory');
  }
  for (const r of memory.regions) {
    const end = r.base + r.size;
    // Split each region around the legacy hole [EBDA_START, 1 MiB).
    if (r.base < EBDA_START) out.push({ addr: r.base, size: Math.min(end, EBDA_START) - r.base, type: E820_RAM });
    if (end > HIGH_MEMORY_START) {
      const start = Math.max(r.base, HIGH_MEMORY_START);
      out.push({ addr: start, size: end - start, type: E820_RAM });
    }
  }
  out.push({ addr: EBDA_START, size: HIGH_MEMORY_START - EBDA_START, type: E820_RESERVED });
  for (const e of opts.extra ?? []) out.push({ ...e });
  out.sort((a, b) => a.addr - b.addr);
  for (let i = 1; i < out.length; i++) {
    const p = out[i - 1]!;
    if (out[i]!.addr < p.addr + p.size) {
      throw new BootError(`e820 entries overlap at 0x${out[i]!.addr.toString(16)}: check the extra ranges passed to buildE820`);
    }
  }
  if (out.length > E820_MAX_ENTRIES) throw new BootError(`e820 map has ${out.length} entries; at most ${E820_MAX_ENTRIES} fit in boot_params`);
  return out;
}

/** End of the RAM region that starts at 0 (the RAM below the 32-bit MMIO hole). */
export function lowRamEnd(memory: GuestMemory): number {
  const low = memory.regions.find((r) => r.base === 0);
  return low ? low.size : 0;
}

/** Total RAM in the e820 map. */
export function e820RamBytes(e820: readonly E820Entry[]): number {
  return e820.reduce((n, e) => n + (e.type === E820_RAM ? e.size : 0), 0);
}
