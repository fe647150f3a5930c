/**
 * LOCKed read-modify-writes inside translated blocks when guest RAM is shared with other
 * threads (BlockLayout.atomic): wasm's atomic read-modify-write instructions on the operand's RAM
 * offset. The fast path needs the operand naturally aligned (wasm atomics trap otherwise), its
 * page in the inline write TLB and no translated code on its line; anything else is the
 * interpreter's transaction (core/atomic.ts). Covered: ADD, SUB, AND, OR, XOR (r/m with a register
 * or an immediate), INC, DEC, XADD, CMPXCHG and XCHG — what kernels' atomics, spinlocks,
 * refcounts and bit operations on bytes use. The flags leave in the arena's record, as the
 * interpreter's branch leaves them.
 */
import type { D } from '../translate/decode.js';
import { F_ADD, F_DEC, F_INC, F_LOGIC, F_SUB } from '../core/consts.js';
import { Op } from './encoder.js';
import { carry, constVal, flagsFromArena, immVal, interpretIf, maskTo, pageRam, regVal, setReg, type Producer, type WGen } from './codegen.js';

/** The 0xFE codes of i64.atomic.rmw.<op> (8 bytes); rmw8/16/32 are +3, +4, +5 after it. */
const RMW_ADD = 0x1f, RMW_SUB = 0x26, RMW_AND = 0x2d, RMW_OR = 0x34, RMW_XOR = 0x3b, RMW_XCHG = 0x42, RMW_CMPXCHG = 0x49;

function rmwCode(base64: number, size: number): number {
  return size === 8 ? base64 : size === 1 ? base64 + 3 : size === 2 ? base64 + 4 : base64 + 5;
}

type Form =
  | { kind: 'alu'; aop: number; s1: number; operand: () => number }
  | { kind: 'incdec'; dec: boolean; s1: number }
  | { kind: 'xadd' | 'cmpxchg' | 'xchg'; s1: number };

function form(g: WGen, d: D): Form | undefined {
  const op = d.op;
  const sz = d.opsize;
  if (op < 0x40 && (op & 7) < 2) {
    const aop = op >> 3;
    const s1 = op & 1 ? sz : 1;
    return aop === 2 || aop === 3 || aop === 7 ? undefined : { kind: 'alu', aop, s1, operand: () => regVal(g, d, d.reg, s1) };
  }
  if (op === 0x80 || op === 0x81 || op === 0x83) {
    const aop = d.reg & 7;
    const s1 = op === 0x80 ? 1 : sz;
    if (aop === 2 || aop === 3 || aop === 7) return undefined;
    return { kind: 'alu', aop, s1, operand: () => (op === 0x80 ? constVal(g, d.imm & 0xff, 0) : immVal(g, op === 0x81 ? d.imm : (d.imm << 24) >> 24, s1)) };
  }
  if ((op === 0xfe || op === 0xff) && (d.reg & 7) <= 1) return { kind: 'incdec', dec: (d.reg & 7) === 1, s1: op === 0xfe ? 1 : sz };
  if (op === 0x1c0 || op === 0x1c1) return { kind: 'xadd', s1: op & 1 ? sz : 1 };
  if (op === 0x1b0 || op === 0x1b1) return { kind: 'cmpxchg', s1: op & 1 ? sz : 1 };
  if (op === 0x86 || op === 0x87) return { kind: 'xchg', s1: op & 1 ? sz : 1 };
  return undefined;
}

/**
 * The RAM offset of d's operand at linear address L, in a new i32 local, for an inline atomic
 * access of `size` bytes; before it, the interpreter takes d where the inline path cannot: the
 * operand not aligned to `size`, its page not in the write TLB, translated code on its line.
 * Opens interpretIf's block: the caller generates the inline path and closes it (g.end()).
 */
export function inlineRmwAddress(g: WGen, d: D, L: number, size: number, k: number, next: number): number {
  const f = g.c;
  const a = g.tmp32();
  f.i32(0).set(a);
  f.get(L).op(Op.i32_wrap_i64).i32(size - 1).op(Op.i32_and);
  pageRam(g, L, true, a);
  f.op(Op.i32_eqz).op(Op.i32_or);
  f.get(a).i32(6).op(Op.i32_shr_u).mem(Op.i32_load8_u, g.lay.codeLines).op(Op.i32_or);
  f.hint(0);
  interpretIf(g, d, k, next);
  return a;
}

/** (x op y) masked to `size` bytes, in a new i64 local. */
function result(g: WGen, x: number, y: number, op: number, size: number): number {
  const r = g.tmp64();
  g.c.get(x).get(y).op(op);
  maskTo(g, size);
  g.c.set(r);
  return r;
}

/** d (LOCKed, or XCHG with memory) at address L: inline when its form is covered, else false. */
export function genAtomic(g: WGen, d: D, live: boolean, k: number, next: number, L: number): 'cont' | false {
  if (d.mod === 3) return false;
  const fm = form(g, d);
  if (fm === undefined) return false;
  const f = g.c;
  const s1 = fm.s1;
  // operands first (the interpreter's branch reloads the registers after it)
  const src = fm.kind === 'alu' ? fm.operand() : fm.kind === 'incdec' ? constVal(g, 1, 0) : regVal(g, d, d.reg, s1);
  const acc = fm.kind === 'cmpxchg' ? regVal(g, d, 0, s1) : -1;
  let cin = -1;
  if (fm.kind === 'incdec' && live) {
    cin = g.tmp64();
    carry(g);
    f.set(cin);
  }
  const a = inlineRmwAddress(g, d, L, s1, k, next);
  const old = g.tmp64();
  let p: Producer | undefined;
  switch (fm.kind) {
    case 'alu': {
      const code = fm.aop === 0 ? RMW_ADD : fm.aop === 5 ? RMW_SUB : fm.aop === 4 ? RMW_AND : fm.aop === 1 ? RMW_OR : RMW_XOR;
      f.get(a).get(src).atomicRmw(rmwCode(code, s1), s1).set(old);
      const r = result(g, old, src, fm.aop === 0 ? Op.i64_add : fm.aop === 5 ? Op.i64_sub : fm.aop === 4 ? Op.i64_and : fm.aop === 1 ? Op.i64_or : Op.i64_xor, s1);
      p = { kind: fm.aop === 0 ? F_ADD : fm.aop === 5 ? F_SUB : F_LOGIC, sz: s1, a: old, b: src, r, cin: -1 };
      break;
    }
    case 'incdec': {
      f.get(a).get(src).atomicRmw(rmwCode(fm.dec ? RMW_SUB : RMW_ADD, s1), s1).set(old);
      const r = result(g, old, src, fm.dec ? Op.i64_sub : Op.i64_add, s1);
      p = live ? { kind: fm.dec ? F_DEC : F_INC, sz: s1, a: old, b: src, r, cin } : undefined;
      break;
    }
    case 'xadd': {
      f.get(a).get(src).atomicRmw(rmwCode(RMW_ADD, s1), s1).set(old);
      const r = result(g, old, src, Op.i64_add, s1);
      setReg(g, d, d.reg, s1, old);
      p = { kind: F_ADD, sz: s1, a: old, b: src, r, cin: -1 };
      break;
    }
    case 'cmpxchg': {
      f.get(a).get(acc).get(src).atomicRmw(rmwCode(RMW_CMPXCHG, s1), s1).set(old);
      const r = result(g, acc, old, Op.i64_sub, s1);
      // not equal: the accumulator takes the operand's value (equal: it is left alone, its
      // upper half too)
      f.get(acc).get(old).op(Op.i64_ne);
      g.begin(Op.if);
      setReg(g, d, 0, s1, old);
      g.end();
      p = { kind: F_SUB, sz: s1, a: acc, b: old, r, cin: -1 };
      break;
    }
    case 'xchg':
      f.get(a).get(src).atomicRmw(rmwCode(RMW_XCHG, s1), s1).set(old);
      setReg(g, d, d.reg, s1, old);
      p = g.pending; // the flags stay what they were
      break;
  }
  if (p !== undefined) g.storeFlags(p);
  g.end();
  flagsFromArena(g, live);
  return 'cont';
}
