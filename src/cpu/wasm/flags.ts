/**
 * The arithmetic flags (OSZAPC as RFLAGS bits) from the lazy-flag record in the arena, computed
 * in WebAssembly: the runtime module's `flags` function, which translated code calls where it
 * reads a flag it cannot derive from the instruction that wrote it (a Jcc, ADC or PUSHF at the
 * start of a block reads what the previous block left). The same arithmetic as the interpreter's
 * LazyFlags.getArith (core/flags.ts), on the record as translated code stores it (WGen.storeFlags:
 * kind, size, carry-in, operands and result as i64). Only a record the host holds (kind -1: the
 * interpreter ran last and the host has not put its record back) goes to the host function.
 */
import { ARITH_MASK, F_ADD, F_EAGER, F_INC, F_LOGIC, F_SUB } from '../core/consts.js';
import { A_FA, A_FB, A_FCIN, A_FKIND, A_FRES, A_FSZ } from './arena.js';
import { FuncBody, Op, T } from './encoder.js';

/** The body of `flags(): i32` for the arena at `base`; `hostFlags` is the host import's function index. */
export function arithFlagsBody(base: number, hostFlags: number): FuncBody {
  const f = new FuncBody([], [T.I32]);
  const kind = f.local(T.I32), cin = f.local(T.I32), sz = f.local(T.I32);
  const a = f.local(T.I64), b = f.local(T.I64), r = f.local(T.I64), sh = f.local(T.I64), mask = f.local(T.I64);
  const msb = (): void => void f.get(sh).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).op(Op.i32_wrap_i64);
  const is = (k: number): void => void f.get(kind).i32(k).op(Op.i32_eq);
  /** The bit on the stack, or 0 after LOGIC. */
  const notLogic = (): void => void f.get(kind).i32(F_LOGIC).op(Op.i32_ne).op(Op.i32_and);

  f.i32(0).mem(Op.i32_load, base + A_FKIND).tee(kind).i32(-1).op(Op.i32_eq);
  f.begin(Op.if).call(hostFlags).op(Op.return).op(Op.end);
  is(F_EAGER);
  f.begin(Op.if).i32(0).mem(Op.i32_load, base + A_FA).i32(ARITH_MASK).op(Op.i32_and).op(Op.return).op(Op.end);
  f.i32(0).mem(Op.i32_load, base + A_FCIN).set(cin);
  f.i32(0).mem(Op.i32_load, base + A_FSZ).tee(sz).i32(3).op(Op.i32_shl).i32(1).op(Op.i32_sub).op(Op.i64_extend_i32_u).set(sh);
  // the operand size's bits: all 64 for size 8, else (1 << bits) - 1
  f.i64(-1, -1).i64(2, 0).get(sh).op(Op.i64_shl).i64(1, 0).op(Op.i64_sub).get(sz).i32(8).op(Op.i32_eq).op(Op.select).set(mask);
  f.i32(0).mem(Op.i64_load, base + A_FA).get(mask).op(Op.i64_and).set(a);
  f.i32(0).mem(Op.i64_load, base + A_FB).get(mask).op(Op.i64_and).set(b);
  f.i32(0).mem(Op.i64_load, base + A_FRES).get(mask).op(Op.i64_and).set(r);

  // CF (bit 0): a carry out of ADD, a borrow of SUB (with the carry-in: <= instead of <), none
  // after LOGIC, and the kept CF (the carry-in field) of INC, DEC
  is(F_ADD);
  f.begin(Op.if, T.I32);
  f.get(r).get(a).op(Op.i64_le_u).get(r).get(a).op(Op.i64_lt_u).get(cin).op(Op.select);
  f.op(Op.else);
  is(F_SUB);
  f.begin(Op.if, T.I32);
  f.get(a).get(b).op(Op.i64_le_u).get(a).get(b).op(Op.i64_lt_u).get(cin).op(Op.select);
  f.op(Op.else);
  f.get(cin).op(Op.i32_eqz).op(Op.i32_eqz).get(kind).i32(F_LOGIC).op(Op.i32_ne).op(Op.i32_and);
  f.op(Op.end).op(Op.end);
  // PF (bit 2): an even number of ones in the low byte
  f.get(r).i64(0xff, 0).op(Op.i64_and).op(Op.i64_popcnt).op(Op.i32_wrap_i64).i32(1).op(Op.i32_and).i32(1).op(Op.i32_xor).i32(2).op(Op.i32_shl).op(Op.i32_or);
  // AF (bit 4): the carry out of bit 3; none after LOGIC
  f.get(a).get(b).op(Op.i64_xor).get(r).op(Op.i64_xor).i64(4, 0).op(Op.i64_shr_u).op(Op.i32_wrap_i64).i32(1).op(Op.i32_and);
  notLogic();
  f.i32(4).op(Op.i32_shl).op(Op.i32_or);
  // ZF (bit 6), SF (bit 7)
  f.get(r).op(Op.i64_eqz).i32(6).op(Op.i32_shl).op(Op.i32_or);
  f.get(r);
  msb();
  f.i32(7).op(Op.i32_shl).op(Op.i32_or);
  // OF (bit 11): the sign of (a ^ r) & (b ^ r) after ADD and INC, of (a ^ b) & (a ^ r) after the
  // others; none after LOGIC
  is(F_ADD);
  is(F_INC);
  f.op(Op.i32_or);
  f.begin(Op.if, T.I64);
  f.get(a).get(r).op(Op.i64_xor).get(b).get(r).op(Op.i64_xor).op(Op.i64_and);
  f.op(Op.else);
  f.get(a).get(b).op(Op.i64_xor).get(a).get(r).op(Op.i64_xor).op(Op.i64_and);
  f.op(Op.end);
  msb();
  notLogic();
  f.i32(11).op(Op.i32_shl).op(Op.i32_or);
  return f;
}
