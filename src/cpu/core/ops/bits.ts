/**
 * Bit instructions: BT/BTS/BTR/BTC (register and memory bit strings), BSF/BSR (and TZCNT/LZCNT),
 * POPCNT, BSWAP.
 */
import type { Cpu } from '../cpu.js';
import { getReg, setReg, eaLin } from './operands.js';
import { bit64 } from './shift.js';

const TWO32 = 4294967296;

// ==== bits ==================================================================================

export function bsf(v: number, vh: number, sz: number): number {
  if (sz === 8 && v === 0) return 32 + 31 - Math.clz32(vh & -vh);
  return 31 - Math.clz32(v & -v);
}

export function bsr(v: number, vh: number, sz: number): number {
  if (sz === 8 && vh !== 0) return 63 - Math.clz32(vh);
  return 31 - Math.clz32(v);
}

export function popcnt32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** BT/BTS/BTR/BTC (op 0..3) with a bit offset; `fromReg` = bit offset from a register (memory can be outside the operand). */
export function bitOp(c: Cpu, op: number, sz: number, off: number, offHi: number, fromReg: boolean): void {
  const bits = sz * 8;
  if (c.mod === 3) {
    const bit = off & (bits - 1);
    let v = getReg(c, c.rm, sz);
    let vh = sz === 8 ? c.hi : 0;
    const cur = bit64(v, vh, bit);
    if (op !== 0) {
      const m = bit < 32 ? 1 << bit : 0;
      const mh = bit >= 32 ? 1 << (bit - 32) : 0;
      if (op === 1) { v |= m; vh |= mh; } else if (op === 2) { v &= ~m; vh &= ~mh; } else { v ^= m; vh ^= mh; }
      setReg(c, c.rm, sz, v >>> 0, vh >>> 0);
    }
    c.setArith((c.getArith() & ~1) | cur);
    return;
  }
  let byteOff: number;
  let bit: number;
  if (fromReg) {
    let soff: number;
    if (sz === 8) soff = (offHi | 0) * TWO32 + (off >>> 0);
    else if (sz === 4) soff = off | 0;
    else soff = (off << 16) >> 16;
    byteOff = Math.floor(soff / 8);
    bit = soff - byteOff * 8;
  } else {
    const b = off & (bits - 1);
    byteOff = b >> 3;
    bit = b & 7;
  }
  // address the byte holding the bit (same result as a word access for non-faulting cases)
  const saveLo = c.eaLo;
  const saveHi = c.eaHi;
  if (c.adsize === 8) {
    const t = c.eaHi * TWO32 + c.eaLo + byteOff;
    c.eaLo = t >>> 0;
    c.eaHi = Math.floor(t / TWO32) | 0;
  } else if (c.adsize === 4) c.eaLo = (c.eaLo + byteOff) >>> 0;
  else c.eaLo = (c.eaLo + byteOff) & 0xffff;
  const lin = eaLin(c);
  c.eaLo = saveLo;
  c.eaHi = saveHi;
  const v = c.read8(lin);
  const cur = (v >> bit) & 1;
  if (op !== 0) {
    const m = 1 << bit;
    const nv = op === 1 ? v | m : op === 2 ? v & ~m : v ^ m;
    c.write8(lin, nv & 0xff);
  }
  c.setArith((c.getArith() & ~1) | cur);
}

/** Byte-reversed 32-bit value (int32). */
export function bswap32(x: number): number {
  return (x >>> 24) | ((x >> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24);
}
