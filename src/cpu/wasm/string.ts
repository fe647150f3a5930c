/**
 * String instructions inside translated blocks: MOVS, STOS and LODS without REP, and REP MOVS and
 * REP STOS (short counts element by element, long ones as bulk copies and fills).
 */
import type { D } from '../translate/decode.js';
import { A_DF } from './arena.js';
import { Op, V } from './encoder.js';
import { interpretIf, load, MASK_LO, pageRam, regVal, setReg, store, type WGen } from './codegen.js';

/**
 * REP MOVS/STOS run as an element loop up to this many elements (a compiler's inlined
 * memcpy/memset at -Os: busybox's shell runs ~20 per loop iteration); longer ones as bulk
 * copies and fills.
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
  f.i64(-sz, -1).i64(sz, 0);
  g.st().mem(Op.i32_load, g.base + A_DF).op(Op.select).set(step);
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
 * REP MOVS / REP STOS (F3 or F2, 64-bit addresses). With RCX at most REP_INLINE: a loop of
 * elements that counts RCX down; RCX, RSI and RDI are written back before every slow access, so
 * a fault in the middle leaves them as the interpreter would and restarts the instruction.
 * Longer ones run in page-sized pieces (`bulk`); what those leave — a piece that crosses a page,
 * a TLB miss, code in the way, DF set — the interpreter runs from where they stopped.
 */
function genRep(g: WGen, d: D, k: number, next: number): 'cont' {
  const f = g.c;
  const rcx = g.reg(1);
  for (const r of d.op <= 0xa5 ? [1, 6, 7] : [1, 7]) {
    g.reg(r);
    g.written.add(r);
  }
  f.get(rcx).i64(REP_INLINE, 0).op(Op.i64_gt_u);
  g.begin(Op.if);
  bulk(g, d);
  f.get(rcx).op(Op.i64_eqz).op(Op.i32_eqz);
  interpretIf(g, d, k, next);
  g.end();
  g.else();
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

/** Pieces one REP MOVS/STOS runs before the interpreter takes the rest (interrupts wait for it). */
const BULK_PIECES = 16;

/**
 * The long REP MOVS/STOS, forward (DF clear), as wasm bulk copies and fills of at most a page:
 * each piece is as many elements as fit in the rest of the destination's page (and of the
 * source's), both pages in the inline TLB, none of the destination page's lines holding
 * translated code (the code-line map is read a page at a time), a MOVS destination not inside
 * its own source's first n bytes (memory.copy is a memmove; MOVS copies byte after byte, so such
 * an overlap repeats a pattern), a STOS value made of one repeated byte. RCX, RSI and RDI count
 * each piece; the loop stops, leaving RCX > 0, at the first piece that does not qualify.
 */
function bulk(g: WGen, d: D): void {
  const f = g.c;
  const movs = d.op <= 0xa5;
  const sz = d.op & 1 ? d.opsize : 1;
  const lg = Math.log2(sz);
  const [rcx, rsi, rdi] = [g.reg(1), g.reg(6), g.reg(7)];
  const elems = g.tmp64();
  const n = g.tmp32();
  const dst = g.tmp32();
  const src = g.tmp32();
  const pieces = g.tmp32();
  const fill = g.tmp32();
  /** Push the elements of size sz from linear address r (i64 local) to the end of its page. */
  const toPageEnd = (r: number): void => {
    f.i64(4096, 0).get(r).i64(0xfff, 0).op(Op.i64_and).op(Op.i64_sub);
    if (lg) f.i64(lg, 0).op(Op.i64_shr_u);
  };
  const atMost = (lim: () => void): void => {
    const t = g.tmp64();
    lim();
    f.set(t).get(elems).get(t).get(elems).get(t).op(Op.i64_lt_u).op(Op.select).set(elems);
  };
  f.i32(0).set(pieces);
  g.begin(Op.block);
  g.st().mem(Op.i32_load, g.base + A_DF).br(Op.br_if, 0);
  if (!movs) {
    // the value, sz bytes of it, must be one byte repeated
    const v = g.tmp64();
    f.get(g.reg(0));
    if (sz < 8) f.i64(MASK_LO[sz]!, 0).op(Op.i64_and);
    f.tee(v).op(Op.i32_wrap_i64).i32(0xff).op(Op.i32_and).set(fill);
    f.get(fill).op(Op.i64_extend_i32_u).i64(0x01010101, 0x01010101).op(Op.i64_mul);
    if (sz < 8) f.i64(MASK_LO[sz]!, 0).op(Op.i64_and);
    f.get(v).op(Op.i64_ne).br(Op.br_if, 0);
  }
  g.begin(Op.loop);
  f.get(rcx).set(elems);
  atMost(() => toPageEnd(rdi));
  if (movs) atMost(() => toPageEnd(rsi));
  f.get(elems).op(Op.i64_eqz).br(Op.br_if, 1);
  f.get(elems).op(Op.i32_wrap_i64);
  if (lg) f.i32(lg).op(Op.i32_shl);
  f.set(n);
  pageRam(g, rdi, true, dst);
  f.op(Op.i32_eqz).br(Op.br_if, 1);
  // any line of the destination's page holding translated code: the interpreter's stores find which
  const lines = g.tmp32();
  f.get(dst).i32(6).op(Op.i32_shr_u).i32(~63).op(Op.i32_and).set(lines);
  for (let i = 0; i < 4; i++) {
    f.get(lines).simdMem(V.v128_load, g.lay.codeLines + 16 * i);
    if (i) f.simd(V.v128_or);
  }
  f.simd(V.v128_any_true).br(Op.br_if, 1);
  if (movs) {
    pageRam(g, rsi, false, src);
    f.op(Op.i32_eqz).br(Op.br_if, 1);
    // dst - src in [1, n): the copy would read bytes it has just written
    f.get(dst).get(src).op(Op.i32_sub).i32(1).op(Op.i32_sub).get(n).i32(1).op(Op.i32_sub).op(Op.i32_lt_u).br(Op.br_if, 1);
    f.get(dst).get(src).get(n).memoryCopy();
    f.get(rsi).get(n).op(Op.i64_extend_i32_u).op(Op.i64_add).set(rsi);
  } else {
    f.get(dst).get(fill).get(n).memoryFill();
  }
  f.get(rdi).get(n).op(Op.i64_extend_i32_u).op(Op.i64_add).set(rdi);
  f.get(rcx).get(elems).op(Op.i64_sub).tee(rcx).op(Op.i64_eqz).br(Op.br_if, 1);
  f.get(pieces).i32(1).op(Op.i32_add).tee(pieces).i32(BULK_PIECES).op(Op.i32_lt_u).br(Op.br_if, 0);
  g.end();
  g.end();
}
