/**
 * Bit instructions inside translated blocks: BT/BTS/BTR/BTC and BSF/BSR, with the flags the
 * interpreter gives them (the previous arithmetic flags, CF or ZF replaced).
 */
import type { D } from '../translate/decode.js';
import { features } from '../features.js';
import { F_EAGER } from '../core/consts.js';
import { Op } from './encoder.js';
import { flagsNow, isStack, load, loadRm, produce, regVal, setReg, sext, store, type WGen } from './codegen.js';

/**
 * BT/BTS/BTR/BTC (bop 0..3), bit offset from the immediate or (0F A3/AB/B3/BB) a register; as
 * the interpreter does, a memory operand is reached as the byte holding the bit (a register
 * offset is signed and may address bytes outside the operand). CF = the bit; the other
 * arithmetic flags keep their values.
 */
export function genBitOp(g: WGen, d: D, bop: number, live: boolean, L: number): 'cont' {
  const f = g.c;
  const sz = d.opsize;
  const bits = sz * 8;
  const fromImm = d.op === 0x1ba;
  const bit = g.tmp64();
  let v: number;
  let at = -1;
  if (d.mod === 3) {
    if (fromImm) f.i64(d.imm & (bits - 1), 0);
    else f.get(g.reg(d.reg)).i64(bits - 1, 0).op(Op.i64_and);
    f.set(bit);
    v = regVal(g, d, d.rm, sz);
  } else {
    at = g.tmp64();
    if (fromImm) {
      const b = d.imm & (bits - 1);
      f.get(L).i64(b >> 3, 0).op(Op.i64_add).set(at);
      f.i64(b & 7, 0).set(bit);
    } else {
      // signed bit offset of the operand size: bytes at offset >> 3, bit offset & 7
      const off = g.tmp64();
      f.get(g.reg(d.reg));
      if (sz !== 8) sext(g, sz);
      f.set(off);
      f.get(L).get(off).i64(3, 0).op(Op.i64_shr_s).op(Op.i64_add).set(at);
      f.get(off).i64(7, 0).op(Op.i64_and).set(bit);
    }
    v = load(g, 1, at, d.rip, isStack(d));
  }
  const cur = g.tmp64();
  f.get(v).get(bit).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).set(cur);
  if (bop !== 0) {
    const nv = g.tmp64();
    f.get(v).i64(1, 0).get(bit).op(Op.i64_shl);
    if (bop === 1) f.op(Op.i64_or);
    else if (bop === 2) f.i64(-1, -1).op(Op.i64_xor).op(Op.i64_and);
    else f.op(Op.i64_xor);
    f.set(nv);
    if (at < 0) setReg(g, d, d.rm, sz, nv);
    else store(g, 1, at, nv, d.rip, isStack(d));
  }
  replaceFlags(g, live, 1, () => f.get(cur).op(Op.i32_wrap_i64));
  return 'cont';
}

/**
 * The arithmetic flags after an instruction that sets the `mask` bits to the i32 that `bits`
 * pushes and keeps the others (when nobody reads them, nothing is computed).
 */
function replaceFlags(g: WGen, live: boolean, mask: number, bits: () => void): void {
  if (!live) {
    g.lastF = undefined;
    g.pending = undefined;
    return;
  }
  const f = g.c;
  const fl = g.tmp64();
  flagsNow(g);
  f.i32(~mask).op(Op.i32_and);
  bits();
  f.op(Op.i32_or).op(Op.i64_extend_i32_u).set(fl);
  produce(g, { kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 }, true);
}

/**
 * BSF/BSR (and F3 BSF/BSR where TZCNT/LZCNT are not advertised, which are the same): a zero
 * source sets ZF and leaves the destination; otherwise ZF clears. The other flags keep their
 * values, as in the interpreter. TZCNT/LZCNT are interpreted.
 */
export function genBitScan(g: WGen, d: D, live: boolean, L: number): 'cont' | false {
  if (d.rep === 0xf3 && (d.op === 0x1bc ? features.bmi1 : features.lzcnt)) return false;
  const f = g.c;
  const sz = d.opsize;
  const v = loadRm(g, d, sz, L);
  const zero = g.tmp32();
  f.get(v).op(Op.i64_eqz).set(zero);
  f.get(zero).op(Op.i32_eqz);
  g.begin(Op.if);
  const n = g.tmp64();
  if (d.op === 0x1bc) f.get(v).op(Op.i64_ctz);
  else f.i64(63, 0).get(v).op(Op.i64_clz).op(Op.i64_sub);
  f.set(n);
  setReg(g, d, d.reg, sz, n);
  g.end();
  replaceFlags(g, live, 0x40, () => f.get(zero).i32(6).op(Op.i32_shl));
  return 'cont';
}
