/**
 * Group 2 inside translated blocks: ROL/ROR/SHL/SHR/SAR by a constant or by CL, on 8- to 64-bit
 * operands, with the flags the interpreter gives them (core/ops/shift.ts):
 * - a count that masks to 0 changes nothing (the flags keep their values);
 * - rotates replace CF and OF and keep the other four;
 * - shifts replace all six: CF the last bit shifted out, OF as for a count of 1, AF 0.
 * RCL/RCR (and the SAL alias, /6) stay interpreted. Then SHLD/SHRD.
 */
import type { D } from '../translate/decode.js';
import { F_EAGER } from '../core/consts.js';
import { Op } from './encoder.js';
import { flagsNow, loadRm, maskTo, produce, pushSzp, regVal, sext, storeRm, type WGen } from './codegen.js';

const CF_OF = 0x801;

export function genShift(g: WGen, d: D, live: boolean, L: number): 'cont' | false {
  const f = g.c;
  const op = d.op;
  const o = d.reg & 7;
  if (o === 2 || o === 3 || o === 6) return false;
  const sz = op & 1 ? d.opsize : 1;
  const bits = sz * 8;
  const countMask = sz === 8 ? 63 : 31;
  const byCl = op === 0xd2 || op === 0xd3;
  const v = loadRm(g, d, sz, L);
  const cnt = g.tmp64();
  if (byCl) f.get(g.reg(1)).i64(countMask, 0).op(Op.i64_and).set(cnt);
  else {
    const n = (op < 0xd0 ? d.imm & 0xff : 1) & countMask;
    if (n === 0) {
      storeRm(g, d, sz, L, v); // the flags stay; a 32-bit register is still zero-extended
      return 'cont';
    }
    f.i64(n, 0).set(cnt);
  }
  const r = g.tmp64();
  if (o <= 1) rotate(g, o === 0, sz, v, cnt, r);
  else shiftValue(g, o, sz, v, cnt, r);
  storeRm(g, d, sz, L, r);
  if (!live) {
    g.lastF = undefined;
    return 'cont';
  }
  const fl = g.tmp64();
  if (o <= 1) {
    // CF and OF from the result; SF, ZF, AF, PF as they were
    const old = g.tmp64();
    flagsNow(g);
    f.op(Op.i64_extend_i32_u).set(old);
    const msb = (): void => void f.get(r).i64(bits - 1, 0).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and);
    f.get(old).i64(~CF_OF, -1).op(Op.i64_and);
    if (o === 0) {
      f.get(r).i64(1, 0).op(Op.i64_and).op(Op.i64_or); // CF = bit 0
      msb();
      f.get(r).i64(1, 0).op(Op.i64_and).op(Op.i64_xor); // OF = MSB ^ CF
    } else {
      msb();
      f.op(Op.i64_or); // CF = MSB
      msb();
      f.get(r).i64(bits - 2, 0).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).op(Op.i64_xor); // OF = MSB ^ MSB-1
    }
    f.i64(11, 0).op(Op.i64_shl).op(Op.i64_or).set(fl);
    if (byCl) keepIfZero(g, old, fl, cnt);
  } else {
    shiftFlags(g, o, sz, v, cnt, r, fl);
    return produceFlags(g, fl, byCl ? cnt : -1);
  }
  produce(g, { kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 }, true);
  return 'cont';
}

/**
 * The flags in fl become the block's (eager): with a count in local cnt (a CL count, else -1)
 * that is 0, the flags as they were instead.
 */
function produceFlags(g: WGen, fl: number, cnt: number): 'cont' {
  if (cnt >= 0) {
    const old = g.tmp64();
    flagsNow(g);
    g.c.op(Op.i64_extend_i32_u).set(old);
    keepIfZero(g, old, fl, cnt);
  }
  produce(g, { kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 }, true);
  return 'cont';
}

/** r = v rotated left (or right) by cnt (0 ≤ cnt ≤ the count mask), at size sz. */
function rotate(g: WGen, left: boolean, sz: number, v: number, cnt: number, r: number): void {
  const f = g.c;
  const bits = sz * 8;
  if (sz === 8) f.get(v).get(cnt).op(left ? Op.i64_rotl : Op.i64_rotr);
  else if (sz === 4) f.get(v).op(Op.i32_wrap_i64).get(cnt).op(Op.i32_wrap_i64).op(left ? Op.i32_rotl : Op.i32_rotr).op(Op.i64_extend_i32_u);
  else {
    // 8 and 16 bits: by cnt mod size; the other half shifts by size - k, which is 0 bits of v at k = 0
    const k = g.tmp64();
    f.get(cnt).i64(bits - 1, 0).op(Op.i64_and).set(k);
    f.get(v).get(k).op(left ? Op.i64_shl : Op.i64_shr_u);
    f.get(v).i64(bits, 0).get(k).op(Op.i64_sub).op(left ? Op.i64_shr_u : Op.i64_shl);
    f.op(Op.i64_or);
    maskTo(g, sz);
  }
  f.set(r);
}

/** r = v shifted (SHL 4, SHR 5, SAR 7) by cnt, at size sz; a zero count gives v. */
function shiftValue(g: WGen, o: number, sz: number, v: number, cnt: number, r: number): void {
  const f = g.c;
  if (o === 7) {
    f.get(v);
    sext(g, sz);
    f.get(cnt).op(Op.i64_shr_s);
  } else f.get(v).get(cnt).op(o === 5 ? Op.i64_shr_u : Op.i64_shl);
  maskTo(g, sz);
  f.set(r);
}

/**
 * fl = the six arithmetic flags after a shift by a nonzero cnt: CF the last bit out, OF (SHL:
 * MSB(result) ^ CF, SHR: MSB(operand), SAR: 0), SF, ZF, PF of the result, AF 0.
 */
function shiftFlags(g: WGen, o: number, sz: number, v: number, cnt: number, r: number, fl: number): void {
  const f = g.c;
  const bits = sz * 8;
  const cf = g.tmp64();
  if (o === 5) f.get(v).get(cnt).i64(1, 0).op(Op.i64_sub).op(Op.i64_shr_u);
  else if (o === 7) {
    f.get(v);
    sext(g, sz);
    f.get(cnt).i64(1, 0).op(Op.i64_sub).op(Op.i64_shr_s);
  } else if (sz === 8) f.get(v).i64(64, 0).get(cnt).op(Op.i64_sub).op(Op.i64_shr_u);
  else f.get(v).get(cnt).op(Op.i64_shl).i64(bits, 0).op(Op.i64_shr_u); // counts past the size shift out zeros
  f.i64(1, 0).op(Op.i64_and).set(cf);
  f.get(cf);
  if (o === 5) f.get(v).i64(bits - 1, 0).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).i64(11, 0).op(Op.i64_shl).op(Op.i64_or);
  else if (o === 4) f.get(r).i64(bits - 1, 0).op(Op.i64_shr_u).get(cf).op(Op.i64_xor).i64(1, 0).op(Op.i64_and).i64(11, 0).op(Op.i64_shl).op(Op.i64_or);
  pushSzp(g, r, sz);
  f.op(Op.i64_or).set(fl);
}

/** fl = old when cnt is 0 (a count of 0 leaves the flags alone). */
function keepIfZero(g: WGen, old: number, fl: number, cnt: number): void {
  g.c.get(old).get(fl).get(cnt).op(Op.i64_eqz).op(Op.select).set(fl);
}

/**
 * SHLD/SHRD (0F A4/A5, 0F AC/AD) on 32- and 64-bit operands, by an imm8 or CL, with the
 * interpreter's flags (core/ops/shift.ts shiftDouble): a count that masks to 0 changes nothing
 * (a 32-bit register is still zero-extended); otherwise CF is the last bit shifted out of the
 * destination, OF the change of its sign bit, SF, ZF and PF from the result, AF 0. 16-bit forms,
 * whose counts past 16 are undefined, stay interpreted.
 */
export function genShiftDouble(g: WGen, d: D, live: boolean, L: number): 'cont' | false {
  const sz = d.opsize;
  if (sz === 2) return false;
  const f = g.c;
  const left = d.op < 0x1a8;
  const bits = sz * 8;
  const countMask = bits - 1;
  const dv = loadRm(g, d, sz, L);
  const sv = regVal(g, d, d.reg, sz);
  const cnt = g.tmp64();
  const byCl = (d.op & 1) === 1;
  if (byCl) f.get(g.reg(1)).i64(countMask, 0).op(Op.i64_and).set(cnt);
  else {
    const n = d.imm & countMask;
    if (n === 0) {
      storeRm(g, d, sz, L, dv);
      return 'cont';
    }
    f.i64(n, 0).set(cnt);
  }
  const r = g.tmp64();
  if (sz === 4) {
    // the two halves as one 64-bit value, shifted; the result is the half the shift moves into
    if (left) f.get(dv).i64(32, 0).op(Op.i64_shl).get(sv).op(Op.i64_or).get(cnt).op(Op.i64_shl).i64(32, 0).op(Op.i64_shr_u);
    else f.get(sv).i64(32, 0).op(Op.i64_shl).get(dv).op(Op.i64_or).get(cnt).op(Op.i64_shr_u).i64(0xffffffff, 0).op(Op.i64_and);
  } else {
    // a count of 0 would shift the source by 64, which wasm takes as 0: select the destination
    f.get(dv);
    f.get(dv).get(cnt).op(left ? Op.i64_shl : Op.i64_shr_u);
    f.get(sv).i64(64, 0).get(cnt).op(Op.i64_sub).op(left ? Op.i64_shr_u : Op.i64_shl);
    f.op(Op.i64_or).get(cnt).op(Op.i64_eqz).op(Op.select);
  }
  f.set(r);
  storeRm(g, d, sz, L, r);
  if (!live) {
    g.lastF = undefined;
    return 'cont';
  }
  const fl = g.tmp64();
  // CF: left, bit (bits - n) of the destination; right, bit n - 1
  if (left) f.get(dv).i64(bits, 0).get(cnt).op(Op.i64_sub).op(Op.i64_shr_u);
  else f.get(dv).get(cnt).i64(1, 0).op(Op.i64_sub).op(Op.i64_shr_u);
  f.i64(1, 0).op(Op.i64_and);
  f.get(dv).get(r).op(Op.i64_xor).i64(bits - 1, 0).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).i64(11, 0).op(Op.i64_shl).op(Op.i64_or);
  pushSzp(g, r, sz);
  f.op(Op.i64_or).set(fl);
  return produceFlags(g, fl, byCl ? cnt : -1);
}
