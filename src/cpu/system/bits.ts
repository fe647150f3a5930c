/**
 * Small helpers for 64-bit values held as numbers or as (lo, hi) 32-bit halves, shared by the
 * system module. Linear addresses are signed canonical numbers (see src/cpu/state.ts).
 */

export const TWO32 = 4294967296;
const TWO47 = 140737488355328;

/** Signed high 32 bits of an integer-valued number (|n| < 2^53). */
export function hi32(n: number): number {
  return Math.floor(n / TWO32) | 0;
}

/** Low 32 bits (unsigned) of an integer-valued number. */
export function lo32(n: number): number {
  return n >>> 0;
}

/** (lo, hi) → number, with `hi` taken as signed: a canonical address comes out signed canonical. */
export function join64(lo: number, hi: number): number {
  return (hi | 0) * TWO32 + (lo >>> 0);
}

/** (lo, hi) → unsigned number (only exact below 2^53: physical addresses, small values). */
export function joinU64(lo: number, hi: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0);
}

/** True when a signed-canonical number is a canonical 48-bit linear address. */
export function isCanonical(n: number): boolean {
  return n >= -TWO47 && n < TWO47;
}

/** Read a 64-bit GPR as a signed number (exact for canonical addresses). */
export function getGpr64(gpr: Int32Array, r: number): number {
  return gpr[2 * r + 1]! * TWO32 + (gpr[2 * r]! >>> 0);
}

/** Write a 64-bit GPR from a signed-canonical (or small unsigned) number. */
export function setGpr64(gpr: Int32Array, r: number, n: number): void {
  gpr[2 * r] = n >>> 0;
  gpr[2 * r + 1] = hi32(n);
}
