/**
 * Shifts and rotates: group 2 (ROL/ROR/RCL/RCR/SHL/SHR/SAR) and SHLD/SHRD, on 8- to 64-bit
 * operands (64-bit values as 32-bit halves).
 */
import type { Cpu } from '../cpu.js';
import {  } from './operands.js';
import { szp } from './alu.js';

const MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];

// ==== shifts and rotates ====================================================================

/** 64-bit shift helpers on halves; n in 0..63. Result lo; hi in c.hi. */
function shl64(c: Cpu, lo: number, hi: number, n: number): number {
  if (n === 0) {
    c.hi = hi >>> 0;
    return lo >>> 0;
  }
  if (n < 32) {
    c.hi = ((hi << n) | (lo >>> (32 - n))) >>> 0;
    return (lo << n) >>> 0;
  }
  c.hi = (lo << (n - 32)) >>> 0;
  return 0;
}

function shr64(c: Cpu, lo: number, hi: number, n: number, arith: boolean): number {
  if (n === 0) {
    c.hi = hi >>> 0;
    return lo >>> 0;
  }
  if (n < 32) {
    c.hi = arith ? (hi >> n) >>> 0 : hi >>> n;
    return ((lo >>> n) | (hi << (32 - n))) >>> 0;
  }
  c.hi = arith ? (hi >> 31) >>> 0 : 0;
  return (arith ? hi >> (n - 32) : hi >>> (n - 32)) >>> 0;
}

export function bit64(lo: number, hi: number, k: number): number {
  return k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;
}

/**
 * Group-2 shift/rotate: op 0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 6 SAL(=SHL), 7 SAR.
 * Returns the result (hi in c.hi); flags updated (unchanged when the masked count is 0).
 */
export function shift(c: Cpu, op: number, sz: number, v: number, vh: number, count: number): number {
  const bits = sz * 8;
  let n = count & (sz === 8 ? 63 : 31);
  if (n === 0) {
    c.hi = vh;
    return v;
  }
  // rotates keep SF/ZF/AF/PF (and RCL/RCR read CF); SHL/SHR/SAR replace all six
  const flags = op < 4 ? c.getArith() : 0;
  let cf = 0;
  let of = 0;
  let r: number;
  let rh = 0;
  const topBit = bits - 1;
  switch (op) {
    case 0: // ROL
    case 1: { // ROR
      const k = n % bits;
      if (sz === 8) {
        if (k === 0) {
          r = v;
          rh = vh;
        } else if (op === 0) {
          const a = shl64(c, v, vh, k);
          const ah = c.hi;
          const b = shr64(c, v, vh, 64 - k, false);
          r = (a | b) >>> 0;
          rh = (ah | c.hi) >>> 0;
        } else {
          const a = shr64(c, v, vh, k, false);
          const ah = c.hi;
          const b = shl64(c, v, vh, 64 - k);
          r = (a | b) >>> 0;
          rh = (ah | c.hi) >>> 0;
        }
      } else {
        const m = MASK[sz]!;
        if (k === 0) r = v;
        else if (op === 0) r = ((v << k) | (v >>> (bits - k))) & m;
        else r = ((v >>> k) | (v << (bits - k))) & m;
        r >>>= 0;
      }
      const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
      if (op === 0) {
        cf = r & 1;
        of = msb ^ cf;
      } else {
        cf = msb;
        const msb1 = sz === 8 ? (rh >>> 30) & 1 : (r >>> (topBit - 1)) & 1;
        of = msb ^ msb1;
      }
      break;
    }
    case 2: // RCL
    case 3: { // RCR
      if (sz === 1) n %= 9;
      else if (sz === 2) n %= 17;
      let lo = v;
      let hi = vh;
      cf = flags & 1;
      if (op === 2) {
        for (let i = 0; i < n; i++) {
          const out = sz === 8 ? hi >>> 31 : (lo >>> topBit) & 1;
          if (sz === 8) {
            hi = ((hi << 1) | (lo >>> 31)) >>> 0;
            lo = ((lo << 1) | cf) >>> 0;
          } else lo = (((lo << 1) | cf) & MASK[sz]!) >>> 0;
          cf = out;
        }
        r = lo;
        rh = hi;
        const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
        of = msb ^ cf;
      } else {
        const msb0 = sz === 8 ? hi >>> 31 : (lo >>> topBit) & 1;
        for (let i = 0; i < n; i++) {
          const out = lo & 1;
          if (sz === 8) {
            lo = ((lo >>> 1) | (hi << 31)) >>> 0;
            hi = ((hi >>> 1) | (cf << 31)) >>> 0;
          } else lo = ((lo >>> 1) | (cf << topBit)) >>> 0;
          cf = out;
        }
        r = lo;
        rh = hi;
        const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
        const msb1 = sz === 8 ? (rh >>> 30) & 1 : (r >>> (topBit - 1)) & 1;
        void msb0;
        of = msb ^ msb1;
      }
      break;
    }
    case 4:
    case 6: { // SHL
      if (sz === 8) {
        r = shl64(c, v, vh, n);
        rh = c.hi;
        cf = bit64(v, vh, 64 - n);
      } else {
        if (n >= 32) {
          r = 0;
          cf = n === 32 && sz === 4 ? v & 1 : 0;
        } else {
          r = (v << n) & MASK[sz]!;
          r >>>= 0;
          cf = n <= bits ? (v >>> (bits - n)) & 1 : 0;
        }
      }
      const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
      of = msb ^ cf;
      c.setArith(szp(sz, r, rh) | cf | (of << 11));
      c.hi = rh;
      return r;
    }
    case 5: { // SHR
      if (sz === 8) {
        r = shr64(c, v, vh, n, false);
        rh = c.hi;
        cf = bit64(v, vh, n - 1);
      } else {
        r = n >= bits ? 0 : v >>> n;
        cf = n <= bits ? (v >>> (n - 1)) & 1 : 0;
        if (n > 32) cf = 0;
      }
      of = sz === 8 ? vh >>> 31 : (v >>> topBit) & 1;
      c.setArith(szp(sz, r, rh) | cf | (of << 11));
      c.hi = rh;
      return r;
    }
    default: { // SAR
      if (sz === 8) {
        r = shr64(c, v, vh, n, true);
        rh = c.hi;
        cf = bit64(v, vh, n - 1);
        if (n - 1 >= 64) cf = vh >>> 31;
      } else {
        const sv = (v << (32 - bits)) >> (32 - bits); // sign-extend
        const k = n >= bits ? bits - 1 : n;
        r = (sv >> k) & MASK[sz]!;
        r >>>= 0;
        cf = n >= bits ? (sv >>> 31) & 1 : (sv >> (n - 1)) & 1;
      }
      of = 0;
      c.setArith(szp(sz, r, rh) | cf);
      c.hi = rh;
      return r;
    }
  }
  c.setArith((flags & ~0x801) | cf | (of << 11));
  c.hi = rh;
  return r;
}

/** SHLD/SHRD: dst, src, count. Returns result (hi in c.hi). */
export function shiftDouble(c: Cpu, left: boolean, sz: number, d: number, dh: number, s: number, sh: number, count: number): number {
  const n = count & (sz === 8 ? 63 : 31);
  if (n === 0) {
    c.hi = dh;
    return d;
  }
  const bits = sz * 8;
  let r: number;
  let rh = 0;
  let cf: number;
  if (sz === 8) {
    if (left) {
      const a = shl64(c, d, dh, n);
      const ah = c.hi;
      const b = shr64(c, s, sh, 64 - n, false);
      r = (a | b) >>> 0;
      rh = (ah | c.hi) >>> 0;
      cf = bit64(d, dh, 64 - n);
    } else {
      const a = shr64(c, d, dh, n, false);
      const ah = c.hi;
      const b = shl64(c, s, sh, 64 - n);
      r = (a | b) >>> 0;
      rh = (ah | c.hi) >>> 0;
      cf = bit64(d, dh, n - 1);
    }
  } else if (sz === 4) {
    if (left) {
      r = ((d << n) | (s >>> (32 - n))) >>> 0;
      cf = (d >>> (32 - n)) & 1;
    } else {
      r = ((d >>> n) | (s << (32 - n))) >>> 0;
      cf = (d >>> (n - 1)) & 1;
    }
  } else {
    // 16-bit: operate on the 32-bit concatenation (counts > 16 are undefined; this matches common hardware)
    if (left) {
      const cat = ((d << 16) | s) >>> 0;
      const wide = n <= 16 ? cat : ((s << 16) | d) >>> 0;
      const k = n <= 16 ? n : n - 16;
      r = ((wide << k) | (k === 0 ? 0 : (n <= 16 ? d : s) >>> (16 - k))) >>> 16;
      r &= 0xffff;
      cf = n <= 16 ? (d >>> (16 - n)) & 1 : (s >>> (32 - n)) & 1;
    } else {
      const cat = ((s << 16) | d) >>> 0;
      if (n <= 16) {
        r = (cat >>> n) & 0xffff;
        cf = (d >>> (n - 1)) & 1;
      } else {
        const wide = ((d << 16) | s) >>> 0;
        r = (wide >>> (n - 16)) & 0xffff;
        cf = (s >>> (n - 17)) & 1;
      }
    }
  }
  const msbOld = sz === 8 ? dh >>> 31 : (d >>> (bits - 1)) & 1;
  const msbNew = sz === 8 ? rh >>> 31 : (r >>> (bits - 1)) & 1;
  c.setArith(szp(sz, r, rh) | cf | ((msbOld ^ msbNew) << 11));
  c.hi = rh;
  return r;
}
