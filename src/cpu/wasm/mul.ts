/**
 * Multiplies inside translated blocks: IMUL r, r/m (and with an immediate) on 16- to 64-bit
 * operands, and MUL/IMUL of the accumulator (F7 /4, /5) on 32 and 64 bits, with the flags the
 * interpreter gives them (core/ops/muldiv.ts): CF = OF = the product did not fit the
 * destination; SF, ZF, PF from the low result; AF 0. When nobody reads the flags they are not
 * computed.
 */
import type { D } from '../translate/decode.js';
import { F_EAGER } from '../core/consts.js';
import { Op } from './encoder.js';
import { immVal, loadRm, maskTo, produce, pushSzp, regVal, setReg, sext, type WGen } from './codegen.js';

/** 0F AF, 69, 6B: the truncated signed product into the register operand. */
export function genImul(g: WGen, d: D, live: boolean, L: number): 'cont' | false {
  const f = g.c;
  const sz = d.opsize;
  const op = d.op;
  const a = loadRm(g, d, sz, L);
  const b = op === 0x1af ? regVal(g, d, d.reg, sz) : immVal(g, op === 0x69 ? d.imm : (d.imm << 24) >> 24, sz);
  const r = g.tmp64();
  if (!live) {
    f.get(a).get(b).op(Op.i64_mul).set(r);
    setReg(g, d, d.reg, sz, r);
    g.lastF = undefined;
    g.pending = undefined;
    return 'cont';
  }
  const ovf = g.tmp64();
  if (sz === 8) {
    const hi = g.tmp64();
    f.get(a).get(b).op(Op.i64_mul).set(r);
    signedHi(g, a, b, hi);
    // fits iff the high half is the sign extension of the low one
    f.get(hi).get(r).i64(63, 0).op(Op.i64_shr_s).op(Op.i64_ne).op(Op.i64_extend_i32_u).set(ovf);
  } else {
    // the exact product of two sign-extended 16- or 32-bit values fits in an i64
    const p = g.tmp64();
    f.get(a);
    sext(g, sz);
    f.get(b);
    sext(g, sz);
    f.op(Op.i64_mul).set(p);
    f.get(p);
    maskTo(g, sz);
    f.set(r);
    f.get(r);
    sext(g, sz);
    f.get(p).op(Op.i64_ne).op(Op.i64_extend_i32_u).set(ovf);
  }
  setReg(g, d, d.reg, sz, r);
  mulFlags(g, sz, r, ovf);
  return 'cont';
}

/**
 * F7 /4 MUL, /5 IMUL of size 4 or 8: rDX:rAX = rAX * r/m. CF = OF = the high half is not zero
 * (MUL) or not the sign extension of the low half (IMUL).
 */
export function genMulAcc(g: WGen, d: D, signed: boolean, sz: number, live: boolean, L: number): 'cont' {
  const f = g.c;
  const b = loadRm(g, d, sz, L);
  const a = regVal(g, d, 0, sz);
  const lo = g.tmp64();
  const hi = g.tmp64();
  if (sz === 4) {
    const p = g.tmp64();
    if (!signed) f.get(a).get(b).op(Op.i64_mul).set(p);
    else f.get(a).op(Op.i64_extend32_s).get(b).op(Op.i64_extend32_s).op(Op.i64_mul).set(p);
    f.get(p).set(lo);
    f.get(p).i64(32, 0).op(Op.i64_shr_u).set(hi);
  } else {
    if (signed) signedHi(g, a, b, hi);
    else mulHi64(g, a, b, hi);
    f.get(a).get(b).op(Op.i64_mul).set(lo);
  }
  setReg(g, d, 0, sz, lo);
  setReg(g, d, 2, sz, hi);
  if (!live) {
    g.lastF = undefined;
    g.pending = undefined;
    return 'cont';
  }
  const ovf = g.tmp64();
  // the high half at the operand size against zero (MUL) or the low half's sign (IMUL)
  f.get(hi);
  maskTo(g, sz);
  if (signed) {
    f.get(lo);
    sext(g, sz);
    f.i64(63, 0).op(Op.i64_shr_s);
    maskTo(g, sz);
    f.op(Op.i64_ne);
  } else f.i64(0, 0).op(Op.i64_ne);
  f.op(Op.i64_extend_i32_u).set(ovf);
  const r = g.tmp64();
  f.get(lo);
  maskTo(g, sz);
  f.set(r);
  mulFlags(g, sz, r, ovf);
  return 'cont';
}

/** The flags after a multiply: CF = OF = ovf (i64 0/1), SF/ZF/PF of r (size sz), AF 0. */
function mulFlags(g: WGen, sz: number, r: number, ovf: number): void {
  const f = g.c;
  const fl = g.tmp64();
  f.get(ovf).i64(0x801, 0).op(Op.i64_mul);
  pushSzp(g, r, sz);
  f.op(Op.i64_or).set(fl);
  produce(g, { kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 }, true);
}

/** hi = high 64 bits of the signed product a * b (i64 locals). */
function signedHi(g: WGen, a: number, b: number, hi: number): void {
  const f = g.c;
  mulHi64(g, a, b, hi);
  // from the unsigned high half: subtract b when a < 0 and a when b < 0
  f.get(hi).get(b).i64(0, 0).get(a).i64(0, 0).op(Op.i64_lt_s).op(Op.select).op(Op.i64_sub);
  f.get(a).i64(0, 0).get(b).i64(0, 0).op(Op.i64_lt_s).op(Op.select).op(Op.i64_sub).set(hi);
}

/** hi = high 64 bits of the unsigned product a * b (i64 locals). */
export function mulHi64(g: WGen, a: number, b: number, hi: number): void {
  const f = g.c;
  const M = (): void => {
    f.i64(0xffffffff, 0).op(Op.i64_and);
  };
  const a0 = g.tmp64(), a1 = g.tmp64(), b0 = g.tmp64(), b1 = g.tmp64(), p01 = g.tmp64(), p10 = g.tmp64(), mid = g.tmp64();
  f.get(a); M(); f.set(a0);
  f.get(a).i64(32, 0).op(Op.i64_shr_u).set(a1);
  f.get(b); M(); f.set(b0);
  f.get(b).i64(32, 0).op(Op.i64_shr_u).set(b1);
  f.get(a0).get(b1).op(Op.i64_mul).set(p01);
  f.get(a1).get(b0).op(Op.i64_mul).set(p10);
  // mid = (a0*b0 >> 32) + lo(p01) + lo(p10): at most 3 * (2^32 - 1), no overflow
  f.get(a0).get(b0).op(Op.i64_mul).i64(32, 0).op(Op.i64_shr_u);
  f.get(p01); M(); f.op(Op.i64_add);
  f.get(p10); M(); f.op(Op.i64_add).set(mid);
  f.get(a1).get(b1).op(Op.i64_mul);
  f.get(p01).i64(32, 0).op(Op.i64_shr_u).op(Op.i64_add);
  f.get(p10).i64(32, 0).op(Op.i64_shr_u).op(Op.i64_add);
  f.get(mid).i64(32, 0).op(Op.i64_shr_u).op(Op.i64_add).set(hi);
}
