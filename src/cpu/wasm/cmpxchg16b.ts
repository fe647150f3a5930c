/**
 * CMPXCHG16B inside translated blocks (SLUB's cmpxchg_double: fork and exec run it tens of
 * thousands of times). The fast path needs the operand 16-byte aligned, its page in the inline
 * write TLB and no translated code on its line; anything else — the #GP of a misaligned operand,
 * a TLB miss, a fault — is the interpreter's (core/ops/system.ts group9), which it matches: RDX:RAX
 * against the operand, RCX:RBX stored when equal, the operand loaded into RDX:RAX (and written
 * back unchanged) when not, ZF the answer and the other flags kept.
 */
import type { D } from '../translate/decode.js';
import { F_EAGER } from '../core/consts.js';
import { Op } from './encoder.js';
import { flagsFromArena, flagsNow, type WGen } from './codegen.js';
import { inlineRmwAddress } from './atomic.js';

const ZF = 0x40;

export function genCmpxchg16b(g: WGen, d: D, live: boolean, k: number, next: number, L: number): 'cont' {
  const f = g.c;
  const [rax, rcx, rdx, rbx] = [g.reg(0), g.reg(1), g.reg(2), g.reg(3)];
  const a = inlineRmwAddress(g, d, L, 16, k, next);
  const lo = g.tmp64();
  const hi = g.tmp64();
  const eq = g.tmp32();
  f.get(a).mem(Op.i64_load, 0).set(lo);
  f.get(a).mem(Op.i64_load, 8).set(hi);
  f.get(lo).get(rax).op(Op.i64_eq).get(hi).get(rdx).op(Op.i64_eq).op(Op.i32_and).tee(eq);
  g.begin(Op.if);
  f.get(a).get(rbx).mem(Op.i64_store, 0);
  f.get(a).get(rcx).mem(Op.i64_store, 8);
  g.else();
  f.get(lo).set(rax);
  f.get(hi).set(rdx);
  g.end();
  // the flags into the arena, as the interpreter's branch leaves them
  const fl = g.tmp64();
  flagsNow(g);
  f.i32(~ZF).op(Op.i32_and).get(eq).i32(6).op(Op.i32_shl).op(Op.i32_or).op(Op.i64_extend_i32_u).set(fl);
  g.storeFlags({ kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 });
  g.end();
  g.written.add(0);
  g.written.add(2);
  flagsFromArena(g, live);
  return 'cont';
}
