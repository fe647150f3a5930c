/**
 * The paging walk: linear → physical translation for the software TLB, in every paging mode
 * (off, 32-bit with PSE/PSE-36, PAE, 4-level long mode with 2 MiB and 1 GiB pages), with the
 * SDM's permission rules (U/S, R/W with CR0.WP, XD with EFER.NXE, SMEP and SMAP), reserved-bit
 * faults and the accessed/dirty bits. PKE/PCID/LA57 are not advertised and not implemented.
 *
 * SMEP (CR4.SMEP): a supervisor-mode instruction fetch from a user page (U/S set at every level)
 * faults. SMAP (CR4.SMAP): a supervisor-mode data access to a user page faults, unless it is an
 * explicit access (not Access.Implicit) made at CPL < 3 with EFLAGS.AC set (SDM vol. 3 §4.6.1).
 * QEMU 7.2 also lets implicit accesses made at CPL < 3 with AC set through; we follow the SDM.
 *
 * Guest page tables are hostile: an entry outside RAM reads as zero (not present), so a bad
 * table becomes a page fault, never a host exception. Nothing is allocated per walk.
 *
 * WalkResult contract for the core's TLB: `writable` is true only when a write through this
 * translation needs no further walk (R/W set at every level AND the dirty bit is now set); a
 * TLB hit that is not plainly permitted by the cached bits (write && !writable, user access &&
 * !user, fetch && nx) must call `walk` again, which either faults or updates A/D bits.
 */
import { Access, type WalkResult } from '../system-api.js';
import { Cr0, Cr4, Efer, Flag, type CpuState } from '../state.js';
import type { GuestMemory } from '../../machine/memory.js';
import { hi32, TWO32 } from './bits.js';

/** Physical address width advertised in CPUID 0x80000008 (bits above are reserved in entries). */
export const MAX_PHYS_BITS = 40;
/** Linear address width (4-level paging). */
export const MAX_LIN_BITS = 48;

/** #PF error code bits (SDM vol. 3 §4.7). */
export const enum PfErr {
  /** The fault was a protection violation (0 = not-present page). */
  P = 1,
  W = 2,
  /** The access was a user-mode access (CPL 3, not an implicit supervisor access). */
  U = 4,
  /** A reserved bit was set in a paging-structure entry. */
  RSVD = 8,
  /** Instruction fetch (reported only with CR4.SMEP, or with PAE/4-level paging and EFER.NXE). */
  ID = 16,
}

// Paging-structure entry bits (low dword).
const PTE_P = 1;
const PTE_RW = 2;
const PTE_US = 4;
const PTE_A = 0x20;
const PTE_D = 0x40;
const PTE_PS = 0x80;
const PTE_G = 0x100;
/** High-dword bits 51..MAX_PHYS_BITS: reserved in PAE/4-level entries. */
const RSVD_HI_PHYS = (0xfffff & ~((1 << (MAX_PHYS_BITS - 32)) - 1)) >>> 0;
const HI_PHYS_MASK = (1 << (MAX_PHYS_BITS - 32)) - 1;
/** Bytes of physical address space (a constant: `2 ** MAX_PHYS_BITS` in the walk ran Math.pow on every call). */
const PHYS_SPACE = 2 ** MAX_PHYS_BITS;
const XD_HI = 0x80000000;

// Scratch: addresses of the entries used by the current walk (for setting A/D afterwards).
const entryAddr = new Float64Array(4);
const entryLo = new Int32Array(4);
let entHi = 0;

/** Read a 64-bit paging entry at a physical address: lo returned, hi in entHi; zero outside RAM. */
function readEntry(mem: GuestMemory, addr: number, size: 4 | 8): number {
  const r = mem.regionOf(addr);
  if (!r || addr + size > r.base + r.size) {
    entHi = 0;
    return 0;
  }
  const off = addr - r.base;
  entHi = size === 8 ? r.view.getInt32(off + 4, true) : 0;
  return r.view.getInt32(off, true);
}

/** The #PF error code for a failed access (for the core when it faults from its own TLB). */
export function pageFaultCode(s: CpuState, access: number, present: boolean, reserved: boolean): number {
  let code = present || reserved ? PfErr.P : 0;
  if (access & Access.Write) code |= PfErr.W;
  if (access & Access.User) code |= PfErr.U;
  if (reserved) code |= PfErr.RSVD;
  if (access & Access.Fetch && (s.cr4 & Cr4.SMEP || (s.efer & Efer.NXE && s.cr4 & Cr4.PAE))) code |= PfErr.ID;
  return code;
}

/**
 * Translate `lin` for `access` (Access bits). Returns -1 on success (`out` filled, A/D bits
 * set) or the #PF error code; the caller sets CR2 and throws CpuFault(14, code).
 */
export function walk(s: CpuState, mem: GuestMemory, lin: number, access: number, out: WalkResult): number {
  if (!(s.cr0 & Cr0.PG)) {
    out.phys = (lin & 0xfffff000) >>> 0;
    out.writable = true;
    out.user = true;
    out.nx = false;
    out.global = false;
    return -1;
  }
  const linLo = lin >>> 0;
  let levels = 0;
  let rw = PTE_RW;
  let us = PTE_US;
  let xd = 0;
  let phys: number;
  let lo: number;
  let hi: number;
  const nxe = (s.efer & Efer.NXE) !== 0;
  const rsvdHi = (RSVD_HI_PHYS | (nxe ? 0 : XD_HI)) >>> 0;

  if (s.cr4 & Cr4.PAE) {
    let tableAddr: number;
    if (s.efer & Efer.LMA) {
      // 4-level: PML4 → PDPT (1 GiB pages) → PD (2 MiB pages) → PT.
      const linHi = hi32(lin) & 0xffff;
      const pml4 = (s.cr3 - (s.cr3 % 4096)) % PHYS_SPACE;
      let addr = pml4 + ((linHi >>> 7) & 0x1ff) * 8;
      lo = readEntry(mem, addr, 8);
      hi = entHi;
      if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
      if (hi & rsvdHi || lo & PTE_PS) return pageFaultCode(s, access, true, true);
      entryAddr[levels] = addr;
      entryLo[levels++] = lo;
      rw &= lo;
      us &= lo;
      xd |= hi & XD_HI;
      tableAddr = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xfffff000) >>> 0);
      addr = tableAddr + ((((linHi & 0x7f) << 2) | (linLo >>> 30)) >>> 0) * 8;
      lo = readEntry(mem, addr, 8);
      hi = entHi;
      if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
      if (hi & rsvdHi) return pageFaultCode(s, access, true, true);
      entryAddr[levels] = addr;
      entryLo[levels++] = lo;
      rw &= lo;
      us &= lo;
      xd |= hi & XD_HI;
      if (lo & PTE_PS) {
        if (lo & 0x3fffe000) return pageFaultCode(s, access, true, true);
        phys = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xc0000000) >>> 0) + (linLo & 0x3ffff000);
        return finish(s, mem, access, out, levels, rw, us, xd, lo, phys);
      }
      tableAddr = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xfffff000) >>> 0);
    } else {
      // PAE: 4-entry PDPT at CR3[31:5]; PDPTEs carry no R/W, U/S or XD.
      const addr = ((s.cr3 & 0xffffffe0) >>> 0) + (linLo >>> 30) * 8;
      lo = readEntry(mem, addr, 8);
      hi = entHi;
      if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
      if (hi & (RSVD_HI_PHYS | XD_HI) || lo & 0x1e6) return pageFaultCode(s, access, true, true);
      tableAddr = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xfffff000) >>> 0);
    }
    // Page directory.
    let addr = tableAddr + ((linLo >>> 21) & 0x1ff) * 8;
    lo = readEntry(mem, addr, 8);
    hi = entHi;
    if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
    if (hi & rsvdHi) return pageFaultCode(s, access, true, true);
    entryAddr[levels] = addr;
    entryLo[levels++] = lo;
    rw &= lo;
    us &= lo;
    xd |= hi & XD_HI;
    if (lo & PTE_PS) {
      if (lo & 0x1fe000) return pageFaultCode(s, access, true, true);
      phys = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xffe00000) >>> 0) + (linLo & 0x1ff000);
      return finish(s, mem, access, out, levels, rw, us, xd, lo, phys);
    }
    // Page table.
    addr = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xfffff000) >>> 0) + ((linLo >>> 12) & 0x1ff) * 8;
    lo = readEntry(mem, addr, 8);
    hi = entHi;
    if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
    if (hi & rsvdHi) return pageFaultCode(s, access, true, true);
    entryAddr[levels] = addr;
    entryLo[levels++] = lo;
    rw &= lo;
    us &= lo;
    xd |= hi & XD_HI;
    phys = (hi & HI_PHYS_MASK) * TWO32 + ((lo & 0xfffff000) >>> 0);
    return finish(s, mem, access, out, levels, rw, us, xd, lo, phys);
  }

  // 32-bit paging: PD → PT, or 4 MiB pages with CR4.PSE (PSE-36: PDE bits 20:13 = phys 39:32).
  let addr = ((s.cr3 & 0xfffff000) >>> 0) + (linLo >>> 22) * 4;
  lo = readEntry(mem, addr, 4);
  if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
  entryAddr[levels] = addr;
  entryLo[levels++] = lo;
  rw &= lo;
  us &= lo;
  if (lo & PTE_PS && s.cr4 & Cr4.PSE) {
    if (lo & 0x200000) return pageFaultCode(s, access, true, true);
    phys = ((lo >>> 13) & HI_PHYS_MASK) * TWO32 + ((lo & 0xffc00000) >>> 0) + (linLo & 0x3ff000);
    return finish(s, mem, access, out, levels, rw, us, 0, lo, phys);
  }
  addr = ((lo & 0xfffff000) >>> 0) + ((linLo >>> 12) & 0x3ff) * 4;
  lo = readEntry(mem, addr, 4);
  if (!(lo & PTE_P)) return pageFaultCode(s, access, false, false);
  entryAddr[levels] = addr;
  entryLo[levels++] = lo;
  rw &= lo;
  us &= lo;
  phys = (lo & 0xfffff000) >>> 0;
  return finish(s, mem, access, out, levels, rw, us, 0, lo, phys);
}

/** SMEP/SMAP: may a supervisor-mode access (`access` without User) reach a user page? */
function supervisorDenied(s: CpuState, access: number): boolean {
  if (access & Access.Fetch) return (s.cr4 & Cr4.SMEP) !== 0;
  if (!(s.cr4 & Cr4.SMAP)) return false;
  // AC opens user pages to explicit accesses at CPL < 3 only (at CPL 3 every supervisor access is implicit)
  return (access & Access.Implicit) !== 0 || s.cpl === 3 || !(s.rflagsRest & Flag.AC);
}

/** Permission check on the combined bits, then A (every level) and D (leaf, on write). */
function finish(
  s: CpuState, mem: GuestMemory, access: number, out: WalkResult,
  levels: number, rw: number, us: number, xd: number, leaf: number, phys: number,
): number {
  const user = (access & Access.User) !== 0;
  const write = (access & Access.Write) !== 0;
  if (user && !us) return pageFaultCode(s, access, true, false);
  if (!user && us && s.cr4 & (Cr4.SMEP | Cr4.SMAP) && supervisorDenied(s, access)) return pageFaultCode(s, access, true, false);
  if (write && !rw && (user || s.cr0 & Cr0.WP)) return pageFaultCode(s, access, true, false);
  if (access & Access.Fetch && xd) return pageFaultCode(s, access, true, false);
  for (let i = 0; i < levels; i++) {
    const e = entryLo[i]!;
    const want = i === levels - 1 && write ? e | PTE_A | PTE_D : e | PTE_A;
    if (want !== e) mem.write32(entryAddr[i]!, want >>> 0);
  }
  const dirty = write || (leaf & PTE_D) !== 0;
  out.phys = phys;
  out.writable = rw !== 0 && dirty;
  out.user = us !== 0;
  out.nx = xd !== 0;
  out.global = (leaf & PTE_G) !== 0 && (s.cr4 & Cr4.PGE) !== 0;
  return -1;
}
