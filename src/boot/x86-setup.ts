/**
 * x86 CPU structures every loader writes before entry: the boot GDT (and an empty IDT) and the
 * identity-mapped page tables for 64-bit entry. Both engines start the boot vCPU from the
 * EntryState a loader returns; the KVM engine turns the GDT entries back into segment
 * registers with decodeGdtEntry().
 *
 * Boot GDT at BOOT_GDT_START (four 8-byte entries, limit 31):
 *   0x00  null
 *   0x08  flat 32-bit code (multiboot entry)
 *   0x10  64-bit code     (Linux __BOOT_CS)
 *   0x18  flat data       (Linux __BOOT_DS; also the multiboot data segment)
 */
import type { EntryState } from '../machine/engine.js';
import { BOOT_GDT_START, BOOT_IDT_START, GiB, PDE_START, PDPTE_START, PML4_START } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';

export const SELECTOR_CODE32 = 0x08;
export const SELECTOR_CODE64 = 0x10;
export const SELECTOR_DATA = 0x18;

// Access byte + flags nibble, packed as `flags << 12 | access` (the Firecracker layout):
//   access 0x9b = present, DPL 0, code, execute/read, accessed; 0x93 = data, read/write, accessed
//   flags 0xc = 4 KiB granularity + 32-bit default size; 0xa = granularity + long mode
const CODE32_FLAGS = 0xc09b;
const CODE64_FLAGS = 0xa09b;
const DATA_FLAGS = 0xc093;

/** Encode one GDT descriptor. `flags` holds the access byte (bits 0-7) and G/DB/L/AVL (bits 12-15). */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const b = BigInt(base >>> 0);
  const l = BigInt(limit >>> 0);
  const f = BigInt(flags & 0xf0ff);
  return (
    ((b & 0xff00_0000n) << 32n) |
    (f << 40n) |
    ((l & 0xf_0000n) << 32n) |
    ((b & 0x00ff_ffffn) << 16n) |
    (l & 0xffffn)
  );
}

/** The four boot GDT entries, index = selector / 8. */
export const BOOT_GDT: readonly bigint[] = [
  0n,
  gdtEntry(CODE32_FLAGS, 0, 0xfffff),
  gdtEntry(CODE64_FLAGS, 0, 0xfffff),
  gdtEntry(DATA_FLAGS, 0, 0xfffff),
];
export const BOOT_GDT_LIMIT = BOOT_GDT.length * 8 - 1;
/** The IDT loaded at entry is empty: base BOOT_IDT_START, limit 7 (one null gate). */
export const BOOT_IDT_LIMIT = 7;

/** A GDT descriptor unpacked into the fields an engine loads into a segment register. */
export interface SegmentDescriptor {
  base: number;
  /** Byte-granular limit (already scaled when G is set). */
  limit: number;
  /** Type nibble (code/data, accessed, read/write...). */
  type: number;
  /** 1 = code or data segment, 0 = system. */
  s: number;
  dpl: number;
  present: number;
  avl: number;
  /** Long-mode code segment. */
  l: number;
  /** Default operand size (1 = 32-bit). */
  db: number;
  /** Granularity (1 = 4 KiB). */
  g: number;
}

export function decodeGdtEntry(d: bigint): SegmentDescriptor {
  const lo = Number(d & 0xffff_ffffn);
  const hi = Number(d >> 32n);
  const base = ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff00_0000)) >>> 0;
  const rawLimit = (lo & 0xffff) | (hi & 0xf_0000);
  const g = (hi >>> 23) & 1;
  return {
    base,
    limit: g ? ((rawLimit << 12) | 0xfff) >>> 0 : rawLimit,
    type: (hi >>> 8) & 0xf,
    s: (hi >>> 12) & 1,
    dpl: (hi >>> 13) & 3,
    present: (hi >>> 15) & 1,
    avl: (hi >>> 20) & 1,
    l: (hi >>> 21) & 1,
    db: (hi >>> 22) & 1,
    g,
  };
}

/** Write the boot GDT at BOOT_GDT_START and a zeroed IDT at BOOT_IDT_START. */
export function writeBootGdt(memory: GuestMemory): void {
  for (let i = 0; i < BOOT_GDT.length; i++) memory.write64(BOOT_GDT_START + i * 8, BOOT_GDT[i]!);
  memory.fill(BOOT_IDT_START, BOOT_IDT_LIMIT + 1, 0);
}

const PTE_PRESENT = 0x1;
const PTE_WRITABLE = 0x2;
const PTE_PAGE_SIZE = 0x80; // PDE maps a 2 MiB page
const PAGE_2M = 2 * 1024 * 1024;
/** How much the boot page tables identity-map. */
export const IDENTITY_MAP_SIZE = 4 * GiB;

/**
 * Identity-map the first 4 GiB with 2 MiB pages: one PML4 entry -> one PDPT with four entries
 * -> four page directories (PDE_START .. PDE_START + 0x3fff). Returns the CR3 value.
 */
export function writeIdentityPageTables(memory: GuestMemory): number {
  memory.fill(PML4_START, 0x1000, 0);
  memory.fill(PDPTE_START, 0x1000, 0);
  memory.write32(PML4_START, PDPTE_START | PTE_PRESENT | PTE_WRITABLE);
  const pds = IDENTITY_MAP_SIZE / GiB;
  for (let i = 0; i < pds; i++) {
    memory.write32(PDPTE_START + i * 8, (PDE_START + i * 0x1000) | PTE_PRESENT | PTE_WRITABLE);
  }
  for (let i = 0; i < pds * 512; i++) {
    const addr = i * PAGE_2M;
    const entry = PDE_START + i * 8;
    memory.write32(entry, ((addr % 0x1_0000_0000) | PTE_PRESENT | PTE_WRITABLE | PTE_PAGE_SIZE) >>> 0);
    memory.write32(entry + 4, Math.floor(addr / 0x1_0000_0000));
  }
  return PML4_START;
}

/** Entry state for the Linux 64-bit boot protocol: long mode, __BOOT_CS/__BOOT_DS, rsi = boot_params. */
export function setupLongModeEntry(memory: GuestMemory, rip: number, bootParams: number): EntryState {
  writeBootGdt(memory);
  const cr3 = writeIdentityPageTables(memory);
  return {
    mode: 'long64',
    rip,
    regs: { rsi: bootParams },
    cr3,
    gdt: { base: BOOT_GDT_START, limit: BOOT_GDT_LIMIT, cs: SELECTOR_CODE64, ds: SELECTOR_DATA },
  };
}

/** Entry state for 32-bit protected mode without paging (multiboot): flat CS 0x08, DS 0x18. */
export function setupProtected32Entry(memory: GuestMemory, eip: number, regs: EntryState['regs']): EntryState {
  writeBootGdt(memory);
  return {
    mode: 'protected32',
    rip: eip,
    regs,
    gdt: { base: BOOT_GDT_START, limit: BOOT_GDT_LIMIT, cs: SELECTOR_CODE32, ds: SELECTOR_DATA },
  };
}
