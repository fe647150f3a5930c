/** String instructions inside translated blocks: MOVS, STOS and LODS without REP. */
import type { D } from '../translate/decode.js';
import { A_DF } from './arena.js';
import { Op } from './encoder.js';
import { load, regVal, setReg, store, type WGen } from './codegen.js';

/**
 * MOVS, STOS, LODS without a REP prefix (the C library's short copies and fills), 64-bit
 * addresses, source segment DS (or ES/CS/SS, all based at 0): one access each way, then RSI/RDI
 * step by the operand size, down when RFLAGS.DF (kept in the arena by the Cpu) is set. The
 * rest — REP forms, FS/GS sources, 32-bit addresses — is interpreted.
 */
export function genString(g: WGen, d: D): 'cont' | false {
  if (d.rep !== 0 || d.ad32 || d.seg >= 4) return false;
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
  return 'cont';
}
