/**
 * String instructions inside translated blocks: MOVS, STOS and LODS without REP, and REP MOVS and
 * REP STOS with a short count.
 */
import type { D } from '../translate/decode.js';
import { A_DF } from './arena.js';
import { Op } from './encoder.js';
import { interpretIf, load, regVal, setReg, store, type WGen } from './codegen.js';

/**
 * REP MOVS/STOS run inline up to this many elements (a compiler's inlined memcpy/memset at -Os:
 * busybox's shell runs ~20 per loop iteration); longer ones — clear_page, big copies — go to
 * the interpreter, whose native fill and copy beat an element loop.
 */
const REP_INLINE = 32;

/**
 * MOVS, STOS, LODS without a REP prefix (the C library's short copies and fills), 64-bit
 * addresses, source segment DS (or ES/CS/SS, all based at 0): one access each way, then RSI/RDI
 * step by the operand size, down when RFLAGS.DF (kept in the arena by the Cpu) is set. The
 * rest — REP forms, FS/GS sources, 32-bit addresses — is interpreted.
 */
export function genString(g: WGen, d: D, k: number, next: number): 'cont' | false {
  if (d.ad32 || d.seg >= 4) return false;
  if (d.rep !== 0) return d.op <= 0xab ? genRep(g, d, k, next) : false;
  element(g, d);
  return 'cont';
}

/** One element of MOVS, STOS or LODS: the access, then RSI/RDI step by the operand size (down when DF). */
function element(g: WGen, d: D): void {
  const f = g.c;
  const op = d.op;
  const sz = op & 1 ? d.opsize : 1;
  const step = g.tmp64();
  f.i64(-sz, -1).i64(sz, 0).i32(0).mem(Op.i32_load, g.base + A_DF).op(Op.select).set(step);
  const advance = (r: number): void => {
    f.get(g.reg(r)).get(step).op(Op.i64_add).set(g.reg(r));
    g.written.add(r);
  };
  if (op <= 0xa5) {
    const v = load(g, sz, g.reg(6), d.rip, false);
    store(g, sz, g.reg(7), v, d.rip, false);
    advance(6);
    advance(7);
  } else if (op <= 0xab) {
    store(g, sz, g.reg(7), regVal(g, d, 0, sz), d.rip, false);
    advance(7);
  } else {
    const v = load(g, sz, g.reg(6), d.rip, false);
    setReg(g, d, 0, sz, v);
    advance(6);
  }
}

/**
 * REP MOVS / REP STOS (F3 or F2, 64-bit addresses): with RCX at most REP_INLINE, a loop of
 * elements that counts RCX down; RCX, RSI and RDI are written back before every slow access, so
 * a fault in the middle leaves them as the interpreter would and restarts the instruction.
 * Otherwise the interpreter runs it (and the block ends if it must).
 */
function genRep(g: WGen, d: D, k: number, next: number): 'cont' {
  const f = g.c;
  const rcx = g.reg(1);
  f.get(rcx).i64(REP_INLINE, 0).op(Op.i64_gt_u);
  interpretIf(g, d, k, next);
  for (const r of d.op <= 0xa5 ? [1, 6, 7] : [1, 7]) {
    g.reg(r);
    g.written.add(r);
  }
  g.begin(Op.block);
  g.begin(Op.loop);
  f.get(rcx).op(Op.i64_eqz).br(Op.br_if, 1);
  element(g, d);
  f.get(rcx).i64(1, 0).op(Op.i64_sub).set(rcx);
  f.br(Op.br, 0);
  g.end();
  g.end();
  g.end();
  return 'cont';
}
