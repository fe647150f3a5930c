/**
 * Multiply and divide: IMUL (two/three operands), group 3 (F6/F7: TEST, NOT, NEG, MUL, IMUL,
 * DIV, IDIV), the exact 64x64 -> 128-bit product and the 128-by-64-bit divisions over 32-bit limbs.
 */
import type { Cpu } from '../cpu.js';
import { fault, getReg, setReg, modrm, eaLin, readMem, writeMem, readRM, immSize, fetchImm } from './operands.js';
import { setLogic, szp, neg } from './alu.js';

const TWO32 = 4294967296;
const MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];

// ==== multiply / divide =====================================================================

/** Unsigned 32x32 -> 64: lo returned, hi in c.hi. */
function mulU32(c: Cpu, a: number, b: number): number {
  c.hi = mulHiU32(a, b);
  return Math.imul(a, b) >>> 0;
}

/** Result words of mul64 (w0 lowest), unsigned 32-bit values. */
const MW = new Float64Array(4);

/** High 32 bits of the unsigned product a * b (a, b taken as uint32), exact in int arithmetic. */
export function mulHiU32(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const lh = al * bh;
  const hl = ah * bl;
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** Low 64 bits of a 64x64 product (signed and unsigned agree): lo returned, hi in c.hi. */
export function imul64lo(c: Cpu, a: number, ah: number, b: number, bh: number): number {
  c.hi = (mulHiU32(a, b) + Math.imul(a, bh) + Math.imul(ah, b)) >>> 0;
  return Math.imul(a, b) >>> 0;
}

/**
 * Exact 64x64 -> 128-bit multiply over 32-bit limbs into MW (w0..w3). `signed`: the operands
 * are two's-complement (the high 64 bits are corrected as hi -= (a<0 ? b : 0) + (b<0 ? a : 0)).
 */
function mul64(a: number, ah: number, b: number, bh: number, signed: boolean): void {
  a >>>= 0; ah >>>= 0; b >>>= 0; bh >>>= 0;
  const l0 = Math.imul(a, b) >>> 0; const h0 = mulHiU32(a, b);
  const l1 = Math.imul(a, bh) >>> 0; const h1 = mulHiU32(a, bh);
  const l2 = Math.imul(ah, b) >>> 0; const h2 = mulHiU32(ah, b);
  const l3 = Math.imul(ah, bh) >>> 0; const h3 = mulHiU32(ah, bh);
  const s1 = h0 + l1 + l2; // < 3 * 2^32: exact
  const w1 = s1 >>> 0;
  const s2 = h1 + h2 + l3 + (s1 - w1) / TWO32;
  let w2 = s2 >>> 0;
  let w3 = (h3 + (s2 - w2) / TWO32) >>> 0;
  if (signed) {
    // subtract (ah<0 ? b:bh : 0) + (bh<0 ? a:ah : 0) from w3:w2, modulo 2^64
    if (ah >= 0x80000000) {
      w3 = (w3 - bh - (w2 < b ? 1 : 0)) >>> 0;
      w2 = (w2 - b) >>> 0;
    }
    if (bh >= 0x80000000) {
      w3 = (w3 - ah - (w2 < a ? 1 : 0)) >>> 0;
      w2 = (w2 - a) >>> 0;
    }
  }
  MW[0] = l0;
  MW[1] = w1;
  MW[2] = w2;
  MW[3] = w3;
}

/** Flags after MUL/IMUL: CF=OF=overflow; SF/ZF/PF from the low result, AF=0. */
function mulFlags(c: Cpu, sz: number, r: number, rh: number, ovf: boolean): void {
  c.setArith(szp(sz, r, rh) | (ovf ? 0x801 : 0));
}

/** Two/three-operand IMUL of size sz: returns truncated product (hi in c.hi), flags set. */
export function imulTrunc(c: Cpu, sz: number, a: number, ah: number, b: number, bh: number): number {
  if (sz === 8) {
    if ((ah | 0) === (a >> 31) && (bh | 0) === (b >> 31)) {
      // both operands fit in int32: the product fits in 64 bits (no overflow)
      const r = imul64lo(c, a, ah, b, bh);
      const rh = c.hi;
      mulFlags(c, 8, r, rh, false);
      c.hi = rh;
      return r;
    }
    mul64(a, ah, b, bh, true);
    const r = MW[0]!;
    const rh = MW[1]!;
    // fits in 64 bits iff the high 64 bits are the sign extension of bit 63
    const ext = rh >= 0x80000000 ? 0xffffffff : 0;
    mulFlags(c, 8, r, rh, MW[2] !== ext || MW[3] !== ext);
    c.hi = rh;
    return r;
  }
  const bits = sz * 8;
  const sa = (a << (32 - bits)) >> (32 - bits);
  const sb = (b << (32 - bits)) >> (32 - bits);
  let r: number;
  let ovf: boolean;
  if (sz === 4) {
    r = Math.imul(sa, sb) >>> 0;
    const full = sa * sb;
    // |full| < 2^62: exact comparison is enough to detect overflow when |full| >= 2^31 roughly
    ovf = full !== (r | 0) || Math.abs(full) >= 2 ** 53 ? !(full >= -2147483648 && full <= 2147483647) : false;
  } else {
    const full = sa * sb;
    r = full & MASK[sz]!;
    const sr = (r << (32 - bits)) >> (32 - bits);
    ovf = sr !== full;
  }
  mulFlags(c, sz, r, 0, ovf);
  c.hi = 0;
  return r;
}

/** F6/F7 /4../7: MUL, IMUL, DIV, IDIV with the accumulator. */
export function mulDiv(c: Cpu, op: number, sz: number, src: number, srcHi: number): void {
  const g = c.s.gpr;
  switch (sz) {
    case 1: {
      const al = g[0]! & 0xff;
      if (op === 4 || op === 5) {
        let p: number;
        let ovf: boolean;
        if (op === 4) {
          p = al * src;
          ovf = p > 0xff;
        } else {
          p = ((al << 24) >> 24) * ((src << 24) >> 24);
          ovf = p !== ((p << 24) >> 24);
          p &= 0xffff;
        }
        g[0] = (g[0]! & ~0xffff) | p;
        mulFlags(c, 1, p & 0xff, 0, ovf);
        return;
      }
      const ax = g[0]! & 0xffff;
      if (src === 0) fault(0);
      let q: number;
      let rem: number;
      if (op === 6) {
        q = Math.floor(ax / src);
        rem = ax % src;
        if (q > 0xff) fault(0);
      } else {
        const n = (ax << 16) >> 16;
        const d = (src << 24) >> 24;
        q = Math.trunc(n / d);
        rem = n - q * d;
        if (q > 127 || q < -128) fault(0);
      }
      g[0] = (g[0]! & ~0xffff) | (q & 0xff) | ((rem & 0xff) << 8);
      return;
    }
    case 2: {
      const ax = g[0]! & 0xffff;
      const dx = g[4]! & 0xffff;
      if (op === 4 || op === 5) {
        let p: number;
        let ovf: boolean;
        if (op === 4) {
          p = ax * src;
          ovf = p > 0xffff;
        } else {
          p = ((ax << 16) >> 16) * ((src << 16) >> 16);
          ovf = p !== ((p << 16) >> 16);
        }
        g[0] = (g[0]! & ~0xffff) | (p & 0xffff);
        g[4] = (g[4]! & ~0xffff) | ((p >>> 16) & 0xffff);
        mulFlags(c, 2, p & 0xffff, 0, ovf);
        return;
      }
      if (src === 0) fault(0);
      const n = ((dx << 16) | ax) >>> 0;
      let q: number;
      let rem: number;
      if (op === 6) {
        q = Math.floor(n / src);
        rem = n % src;
        if (q > 0xffff) fault(0);
      } else {
        const sn = n | 0;
        const d = (src << 16) >> 16;
        q = Math.trunc(sn / d);
        rem = sn - q * d;
        if (q > 32767 || q < -32768) fault(0);
      }
      g[0] = (g[0]! & ~0xffff) | (q & 0xffff);
      g[4] = (g[4]! & ~0xffff) | (rem & 0xffff);
      return;
    }
    case 4: {
      const eax = g[0]! >>> 0;
      const edx = g[4]! >>> 0;
      if (op === 4) {
        const lo = mulU32(c, eax, src);
        const hi = c.hi;
        g[0] = lo; g[1] = 0; g[4] = hi; g[5] = 0;
        mulFlags(c, 4, lo, 0, hi !== 0);
        return;
      }
      if (op === 5) {
        const lo = mulU32(c, eax, src);
        let hi = c.hi;
        if (eax & 0x80000000) hi -= src;
        if (src & 0x80000000) hi -= eax;
        hi >>>= 0;
        g[0] = lo; g[1] = 0; g[4] = hi; g[5] = 0;
        mulFlags(c, 4, lo, 0, hi !== ((lo >> 31) >>> 0));
        return;
      }
      if (src === 0) fault(0);
      if (op === 6) {
        if (edx >= src) fault(0);
        const q = div64by32(c, eax, edx, src);
        g[0] = q; g[1] = 0; g[4] = c.hi; g[5] = 0;
        return;
      }
      // IDIV
      const neg = (edx & 0x80000000) !== 0;
      let nlo = eax;
      let nhi = edx;
      if (neg) {
        nlo = (~eax + 1) >>> 0;
        nhi = (~edx + (nlo === 0 ? 1 : 0)) >>> 0;
      }
      const dneg = (src & 0x80000000) !== 0;
      const dd = dneg ? ((~src + 1) >>> 0) || 0x80000000 : src;
      if (nhi >= dd) fault(0);
      let q = div64by32(c, nlo, nhi, dd);
      let rem = c.hi;
      if (neg !== dneg) {
        if (q > 0x80000000) fault(0);
        q = (-q) | 0;
      } else if (q > 0x7fffffff) fault(0);
      if (neg) rem = -rem;
      g[0] = q; g[1] = 0; g[4] = rem; g[5] = 0;
      return;
    }
    default: {
      if (op === 4 || op === 5) {
        mul64(g[0]!, g[1]!, src, srcHi, op === 5);
        const w0 = MW[0]!, w1 = MW[1]!, w2 = MW[2]!, w3 = MW[3]!;
        let ovf: boolean;
        if (op === 4) ovf = w2 !== 0 || w3 !== 0;
        else {
          const ext = w1 >= 0x80000000 ? 0xffffffff : 0;
          ovf = w2 !== ext || w3 !== ext;
        }
        g[0] = w0; g[1] = w1; g[4] = w2; g[5] = w3;
        mulFlags(c, 8, w0, w1, ovf);
        return;
      }
      // RDX:RAX / r/m64: #DE on a zero divisor or a quotient that does not fit
      const ok = op === 6
        ? udiv128by64(g[0]!, g[1]!, g[4]!, g[5]!, src, srcHi)
        : idiv128by64(g[0]!, g[1]!, g[4]!, g[5]!, src, srcHi);
      if (!ok) fault(0);
      g[0] = DQ[0]!; g[1] = DQ[1]!; g[4] = DQ[2]!; g[5] = DQ[3]!;
    }
  }
}

/** (hi:lo) / d with hi < d, d < 2^32: quotient returned, remainder in c.hi. */
function div64by32(c: Cpu, lo: number, hi: number, d: number): number {
  let t = hi * 65536 + (lo >>> 16);
  const q1 = Math.floor(t / d);
  let rem = t - q1 * d;
  t = rem * 65536 + (lo & 0xffff);
  const q0 = Math.floor(t / d);
  rem = t - q0 * d;
  c.hi = rem >>> 0;
  return (q1 * 65536 + q0) >>> 0;
}

/** Results of the 128/64 divisions: quotient lo, hi, remainder lo, hi (unsigned 32-bit values). */
export const DQ = new Float64Array(4);

const TWO64 = 18446744073709551616;

/*
 * Speed notes (this is the hot path of the kernel's multi-precision division): values that cross
 * a call boundary are passed as int32 (`| 0`, a small integer to V8) and results come back through
 * DQ, because a uint32 >= 2^31 passed, returned or kept in a module `let` is boxed into a fresh
 * heap number; inside a function, `>>> 0` views stay unboxed.
 */

/**
 * Unsigned (n3:n2:n1:n0) / (dh:dl) over 32-bit limbs (any int32/uint32 view), requiring
 * (n3:n2) < (dh:dl) (so d != 0 and the quotient fits in 64 bits): quotient and remainder into DQ.
 * Number arithmetic only, no allocation.
 */
function div128by64(n0: number, n1: number, n2: number, n3: number, dl: number, dh: number): void {
  n0 >>>= 0; n1 >>>= 0; n2 >>>= 0; dl >>>= 0; dh >>>= 0;
  if (dh === 0) {
    // n3 = 0 and n2 < dl: long division by a 32-bit divisor in 16-bit digits (partials < 2^48)
    let r = n2;
    let qh: number;
    if (r === 0) {
      qh = Math.floor(n1 / dl);
      r = n1 - qh * dl;
    } else {
      let t = r * 65536 + (n1 >>> 16);
      const a = Math.floor(t / dl);
      t = (t - a * dl) * 65536 + (n1 & 0xffff);
      const b = Math.floor(t / dl);
      r = t - b * dl;
      qh = a * 65536 + b;
    }
    let t = r * 65536 + (n0 >>> 16);
    const a = Math.floor(t / dl);
    t = (t - a * dl) * 65536 + (n0 & 0xffff);
    const b = Math.floor(t / dl);
    DQ[0] = a * 65536 + b;
    DQ[1] = qh;
    DQ[2] = t - b * dl;
    DQ[3] = 0;
    return;
  }
  // two 32-bit quotient digits floor((u2:u1:u0) / d), each with (u2:u1) < d: a floating-point
  // estimate (off by at most one: the digit is < 2^32 and the operands carry a few ulps of
  // rounding), then the exact remainder over 32-bit limbs corrects it
  const d = dh * TWO32 + dl;
  let u2 = n3 >>> 0;
  let u1 = n2;
  let u0 = n1;
  let qh = 0;
  for (let k = 0; ; k++) {
    let q = Math.floor((u2 * TWO64 + u1 * TWO32 + u0) / d);
    if (q > 0xffffffff) q = 0xffffffff;
    // q * d = p2:p1:p0 (< 2^96)
    const s1 = mulHiU32(q, dl) + (Math.imul(q, dh) >>> 0); // < 2^33
    const p1 = s1 >>> 0;
    const p2 = mulHiU32(q, dh) + (s1 - p1) / TWO32;
    // r = u - q * d as limbs r2 (signed) : r1 : r0
    let r0 = u0 - (Math.imul(q, dl) >>> 0);
    let r1 = u1 - p1;
    let r2 = u2 - p2;
    if (r0 < 0) { r0 += TWO32; r1--; }
    if (r1 < 0) { r1 += TWO32; r2--; }
    while (r2 < 0) { // estimate too large: r += d
      q--;
      r0 += dl;
      if (r0 >= TWO32) { r0 -= TWO32; r1++; }
      r1 += dh;
      if (r1 >= TWO32) { r1 -= TWO32; r2++; }
    }
    while (r2 > 0 || r1 > dh || (r1 === dh && r0 >= dl)) { // estimate too small: r -= d
      q++;
      r0 -= dl;
      if (r0 < 0) { r0 += TWO32; r1--; }
      r1 -= dh;
      if (r1 < 0) { r1 += TWO32; r2--; }
    }
    if (k === 1) {
      DQ[0] = q;
      DQ[1] = qh;
      DQ[2] = r0;
      DQ[3] = r1;
      return;
    }
    qh = q;
    u2 = r1;
    u1 = r0;
    u0 = n0;
  }
}

/**
 * DIV r/m64: unsigned (n3:n2:n1:n0) = RDX:RAX by (dh:dl), 32-bit limbs (any int32/uint32 view).
 * Returns false (#DE) for a zero divisor or a quotient >= 2^64, else quotient and remainder in DQ.
 */
export function udiv128by64(n0: number, n1: number, n2: number, n3: number, dl: number, dh: number): boolean {
  const h = dh >>> 0;
  const l = dl >>> 0;
  const m = n3 >>> 0;
  if (m > h || (m === h && n2 >>> 0 >= l)) return false; // also d = 0
  div128by64(n0 | 0, n1 | 0, n2 | 0, n3 | 0, dl | 0, dh | 0);
  return true;
}

/**
 * IDIV r/m64: signed (n3:n2:n1:n0) = RDX:RAX by (dh:dl) (two's complement, 32-bit limbs),
 * quotient truncated toward zero, remainder with the dividend's sign. Returns false (#DE) for a
 * zero divisor or a quotient outside [-2^63, 2^63 - 1], else quotient and remainder in DQ.
 */
export function idiv128by64(n0: number, n1: number, n2: number, n3: number, dl: number, dh: number): boolean {
  n0 >>>= 0; n1 >>>= 0; n2 >>>= 0; n3 >>>= 0; dl >>>= 0; dh >>>= 0;
  if (dl === 0 && dh === 0) return false;
  const neg = n3 >= 0x80000000;
  if (neg) { // |n|: 128-bit two's-complement negate (-2^127 stays 2^127 unsigned)
    let carry = n0 === 0 ? 1 : 0;
    n0 = (~n0 + 1) >>> 0;
    const m1 = (~n1 + carry) >>> 0;
    carry &= n1 === 0 ? 1 : 0;
    const m2 = (~n2 + carry) >>> 0;
    carry &= n2 === 0 ? 1 : 0;
    n3 = (~n3 + carry) >>> 0;
    n1 = m1;
    n2 = m2;
  }
  const dneg = dh >= 0x80000000;
  if (dneg) { // |d| (-2^63 stays 2^63 unsigned)
    dh = (~dh + (dl === 0 ? 1 : 0)) >>> 0;
    dl = (~dl + 1) >>> 0;
  }
  // |q| >= 2^64 overflows in any case
  if (n3 > dh || (n3 === dh && n2 >= dl)) return false;
  div128by64(n0 | 0, n1 | 0, n2 | 0, n3 | 0, dl | 0, dh | 0);
  let ql = DQ[0]!;
  let qh = DQ[1]!;
  if (neg !== dneg) {
    if (qh > 0x80000000 || (qh === 0x80000000 && ql !== 0)) return false;
    qh = (~qh + (ql === 0 ? 1 : 0)) >>> 0;
    ql = (~ql + 1) >>> 0;
  } else if (qh >= 0x80000000) return false;
  DQ[0] = ql;
  DQ[1] = qh;
  if (neg) {
    const rl = DQ[2]!;
    DQ[3] = (~DQ[3]! + (rl === 0 ? 1 : 0)) >>> 0;
    DQ[2] = (~rl + 1) >>> 0;
  }
  return true;
}

// ==== group 3 ===============================================================================

export function group3(c: Cpu, sz: number): void {
  const save = c.ip;
  const peek = c.fetch8();
  c.ip = save;
  const op = (peek >> 3) & 7;
  modrm(c, op <= 1 ? immSize(sz) : 0);
  if (op <= 1) { // TEST r/m, imm
    const a = readRM(c, sz);
    const ah = c.hi;
    const b = fetchImm(c, sz);
    setLogic(c, sz, (a & b) >>> 0, (ah & c.hi) >>> 0);
    return;
  }
  if (op === 2 || op === 3) {
    if (c.mod === 3) {
      const a = getReg(c, c.rm, sz);
      if (op === 2) setReg(c, c.rm, sz, (~a & MASK[sz]!) >>> 0, (~c.hi) >>> 0);
      else setReg(c, c.rm, sz, neg(c, sz, a, c.hi), c.hi);
    } else {
      const lin = eaLin(c);
      c.probeWrite(lin, sz); // a faulting store leaves NEG's flags as they were
      const a = readMem(c, lin, sz);
      if (op === 2) writeMem(c, lin, sz, (~a & MASK[sz]!) >>> 0, (~c.hi) >>> 0);
      else writeMem(c, lin, sz, neg(c, sz, a, c.hi), c.hi);
    }
    return;
  }
  const v = readRM(c, sz);
  mulDiv(c, op, sz, v, c.hi);
}
