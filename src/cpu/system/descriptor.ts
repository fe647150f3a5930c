/**
 * Segment descriptors: reading them from the GDT/LDT, decoding base/limit/attributes into the
 * CpuState segment cache, the accessed bit, and stack helpers shared by far transfers,
 * interrupt delivery and IRET.
 *
 * Cached attribute layout (s.segAttr): bits 8..23 of the descriptor's high dword shifted down
 * by 8, with the limit nibble (bits 8..11 of the result) cleared:
 *   bit 0..3 type, 4 S, 5..6 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G.
 */
import { CpuFault, type SystemHost } from '../system-api.js';
import { Mode, Reg, SReg, Vec, type CpuState } from '../state.js';
import { getGpr64, hi32, setGpr64 } from './bits.js';

// Cached attribute bits.
export const ATTR_ACCESSED = 0x1;
/** Data: writable; code: readable. */
export const ATTR_RW = 0x2;
/** Data: expand-down; code: conforming. */
export const ATTR_EC = 0x4;
export const ATTR_CODE = 0x8;
export const ATTR_S = 0x10;
export const ATTR_P = 0x80;
export const ATTR_L = 0x2000;
export const ATTR_DB = 0x4000;
export const ATTR_G = 0x8000;
export const attrDpl = (attr: number): number => (attr >>> 5) & 3;

/** Flat attributes used by SYSCALL/SYSRET/SYSENTER and the entry state. */
export const ATTR_CODE64 = ATTR_G | ATTR_L | ATTR_P | ATTR_S | ATTR_CODE | ATTR_RW | ATTR_ACCESSED; // 0xa09b
export const ATTR_CODE32 = ATTR_G | ATTR_DB | ATTR_P | ATTR_S | ATTR_CODE | ATTR_RW | ATTR_ACCESSED; // 0xc09b
export const ATTR_DATA32 = ATTR_G | ATTR_DB | ATTR_P | ATTR_S | ATTR_RW | ATTR_ACCESSED; // 0xc093

// System descriptor types (S = 0).
export const SYS_LDT = 0x2;
export const SYS_TSS16_AVAIL = 0x1;
export const SYS_TSS16_BUSY = 0x3;
export const SYS_TSS_AVAIL = 0x9;
export const SYS_TSS_BUSY = 0xb;
export const SYS_CALL_GATE = 0xc;
export const SYS_INT_GATE = 0xe;
export const SYS_TRAP_GATE = 0xf;

/** The descriptor last read by fetchDescriptor (module scratch: no allocation). */
export const desc = {
  lo: 0,
  hi: 0,
  /** Bits 63..32 of the base of a 16-byte system descriptor (long mode). */
  baseHi: 0,
  /** Linear address of the descriptor (for the accessed/busy bits). */
  addr: 0,
};

/**
 * Read the descriptor for `sel` into `desc` (16 bytes when `wide`). Returns false when the
 * selector lies beyond the table limit or references an unusable LDT (the caller raises
 * #GP/#TS with the selector).
 */
export function fetchDescriptor(h: SystemHost, sel: number, wide: boolean): boolean {
  const s = h.s;
  let base: number;
  let limit: number;
  if (sel & 4) {
    if ((s.ldtrSel & 0xfffc) === 0) return false;
    base = s.ldtrBase;
    limit = s.ldtrLimit;
  } else {
    base = s.gdtrBase;
    limit = s.gdtrLimit;
  }
  const off = sel & 0xfff8;
  if (off + (wide ? 15 : 7) > limit) return false;
  desc.addr = base + off;
  desc.lo = h.readLin32(desc.addr, true) | 0;
  desc.hi = h.readLin32(desc.addr + 4, true) | 0;
  desc.baseHi = wide ? h.readLin32(desc.addr + 8, true) >>> 0 : 0;
  return true;
}

export function descBase(lo: number, hi: number): number {
  return ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0;
}

export function descLimit(lo: number, hi: number): number {
  const raw = (lo & 0xffff) | (hi & 0xf0000);
  return hi & 0x800000 ? ((raw << 12) | 0xfff) >>> 0 : raw;
}

export function descAttr(hi: number): number {
  return (hi >>> 8) & 0xf0ff;
}

/** Load a segment cache entry from a descriptor. */
export function loadCache(s: CpuState, sreg: SReg, sel: number, lo: number, hi: number): void {
  s.segSel[sreg] = sel;
  s.segBase[sreg] = descBase(lo, hi);
  s.segLimit[sreg] = descLimit(lo, hi);
  s.segAttr[sreg] = descAttr(hi);
}

/** Set the accessed bit of the descriptor in `desc` if it is clear (returns the new high dword). */
export function markAccessed(h: SystemHost): number {
  if (!(desc.hi & 0x100)) {
    desc.hi |= 0x100;
    h.writeLin32(desc.addr + 4, desc.hi >>> 0, true);
  }
  return desc.hi;
}

/** Load a real-mode / V86 segment: base = selector * 16. */
export function loadRealSegment(s: CpuState, sreg: SReg, sel: number): void {
  s.segSel[sreg] = sel & 0xffff;
  s.segBase[sreg] = (sel & 0xffff) * 16;
  if (s.mode === Mode.V86) {
    s.segLimit[sreg] = 0xffff;
    s.segAttr[sreg] = sreg === SReg.CS ? 0xfb : 0xf3;
  }
}

/** Load a null selector into a data segment register (unusable). */
export function loadNull(s: CpuState, sreg: SReg, sel: number, keepBase: boolean): void {
  s.segSel[sreg] = sel;
  if (!keepBase) s.segBase[sreg] = 0;
  s.segLimit[sreg] = 0;
  s.segAttr[sreg] = 0;
}

/** The data segment registers nulled by returns to outer privilege and V86 interrupts. */
export const DATA_SREGS: readonly SReg[] = [SReg.ES, SReg.DS, SReg.FS, SReg.GS];

export function gp(code: number): CpuFault {
  return new CpuFault(Vec.GP, code);
}

// ---- the current stack ---------------------------------------------------------------------

/** Stack width in bytes of the current mode and SS (8 in 64-bit mode). */
export function stackWidth(s: CpuState): 2 | 4 | 8 {
  if (s.mode === Mode.Long64) return 8;
  return s.mode !== Mode.Real && s.mode !== Mode.V86 && s.segAttr[SReg.SS]! & ATTR_DB ? 4 : 2;
}

/** Current stack pointer as a number (RSP signed in 64-bit mode, else ESP/SP unsigned). */
export function getSp(s: CpuState): number {
  const w = stackWidth(s);
  if (w === 8) return getGpr64(s.gpr, Reg.RSP);
  return w === 4 ? s.gpr[2 * Reg.RSP]! >>> 0 : s.gpr[2 * Reg.RSP]! & 0xffff;
}

/** Linear address of the current stack at stack pointer value `sp` (wrapped to the stack width). */
export function stackLin(s: CpuState, sp: number): number {
  const w = stackWidth(s);
  if (w === 8) return sp;
  return s.segBase[SReg.SS]! + (w === 4 ? sp >>> 0 : sp & 0xffff);
}

/** Set the stack pointer for the current stack width (SP keeps the upper ESP bits). */
export function setSp(s: CpuState, sp: number): void {
  const w = stackWidth(s);
  if (w === 8) setGpr64(s.gpr, Reg.RSP, sp);
  else if (w === 4) s.gpr[2 * Reg.RSP] = sp >>> 0;
  else s.gpr[2 * Reg.RSP] = (s.gpr[2 * Reg.RSP]! & ~0xffff) | (sp & 0xffff);
}

/** Write a 2/4/8-byte value (a number; 8-byte values may be signed canonical). */
export function writeSized(h: SystemHost, lin: number, size: number, v: number, sup: boolean): void {
  if (size === 8) h.writeLin64(lin, v >>> 0, hi32(v), sup);
  else if (size === 4) h.writeLin32(lin, v >>> 0, sup);
  else h.writeLin16(lin, v & 0xffff, sup);
}

/** Read a 2/4/8-byte value; 8-byte values come back signed (canonical addresses exact). */
export function readSized(h: SystemHost, lin: number, size: number, sup: boolean): number {
  if (size === 8) {
    const lo = h.readLin64(lin, sup);
    return (h.scratchHi | 0) * 4294967296 + (lo >>> 0);
  }
  return size === 4 ? h.readLin32(lin, sup) >>> 0 : h.readLin16(lin, sup) & 0xffff;
}
