/** Constants shared by the CPU core's files: lazy-flag kinds, parity table, TLB layout. */

// ---- lazy flags --------------------------------------------------------------------------
/** Kinds of the last flag-setting operation. */
export const F_EAGER = 0; // flags are in fFlags
export const F_ADD = 1; // res = a + b + cin
export const F_SUB = 2; // res = a - b - cin
export const F_LOGIC = 3; // CF = OF = AF = 0
export const F_INC = 4; // like ADD with b = 1, CF = fCin (preserved)
export const F_DEC = 5; // like SUB with b = 1, CF = fCin (preserved)

/** Mask of the six arithmetic flags in RFLAGS. */
export const ARITH_MASK = 0x8d5;

export const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let p = 1;
  for (let b = i; b; b >>= 1) p ^= b & 1;
  PARITY[i] = p;
}

// ---- TLB ---------------------------------------------------------------------------------
export const TLB_BITS = 12;
export const TLB_SIZE = 1 << TLB_BITS;
export const TLB_MASK = TLB_SIZE - 1;
/** Permission bits of a TLB entry. */
export const P_SR = 1; // supervisor read
export const P_SW = 2; // supervisor write
export const P_UR = 4; // user read
export const P_UW = 8; // user write
export const P_SX = 16; // supervisor execute
export const P_UX = 32; // user execute
export const P_GLOBAL = 64;
export const NO_TAG = 0.5; // never equal to an integer vpn
/** Control-register bits the TLB's fill and the CPU's SMAP window read. */
export const CR0_PG = 1 << 31;
export const CR4_SMEP = 1 << 20;
export const CR4_SMAP = 1 << 21;
/** Kinds of access a translation is for (the page walk's Access bits). */
export const ACC_WRITE = 1;
export const ACC_USER = 2;
export const ACC_FETCH = 4;
/** An implicit supervisor access (descriptor tables, IDT, TSS): Access.Implicit. */
export const ACC_IMPLICIT = 8;
/** Cpu.codePages has this mask + 1 entries (codePageIndex). */
export const CODE_PAGE_HASH = 0xffff;

/** Cpu.codePages' index of a linear page number (its low 16 bits mixed with the next 16). */
export function codePageIndex(vpn: number): number {
  return (vpn ^ (vpn >>> 16)) & CODE_PAGE_HASH;
}

