/**
 * System instructions inside translated blocks: CLI, STI, CLD/STD, CLAC/STAC, SWAPGS, 64-bit PUSHF,
 * RDTSC, RDTSCP, MOV r/m, Sreg and MOV r, CRn. Each is one light runtime call (`sys`, codegen's SYS_*) the host answers
 * without decoding the instruction and without a register write-back or reload around it; where
 * the host says it cannot (a fault is due: IOPL, CPL, CR4.TSD, a feature that is off), the
 * interpreter runs the instruction as it would outside a block.
 */
import type { D } from '../translate/decode.js';
import { A_SCRATCH, A_XTMP } from './arena.js';
import { Op } from './encoder.js';
import { F_SYS, SYS_CLAC, SYS_CLD, SYS_CLI, SYS_RDTSC, SYS_RDTSCP, SYS_CR, SYS_RFLAGS, SYS_SREG, SYS_STAC, SYS_STD, SYS_STI, SYS_SWAPGS, WGen, interpretIf, push, rt, setReg, storeRm } from './codegen.js';

/**
 * Generate system instruction d (CLI, STI, CLD, STD, PUSHF, group 7, RDTSC, MOV r/m, Sreg, MOV r, CRn:
 * opcodes 0xfa, 0xfb, 0xfc, 0xfd, 0x9c, 0x8c, 0x120, 0x101, 0x131 in translate/decode.ts numbering), or false when the interpreter must run it.
 */
export function genSystem(g: WGen, d: D, k: number, next: number, L: number): 'cont' | false {
  switch (d.op) {
    case 0xfa: // CLI
      return genSys(g, d, k, next, SYS_CLI);
    case 0xfb: // STI
      return genSys(g, d, k, next, SYS_STI);
    case 0xfc: case 0xfd: // CLD, STD
      return genSys(g, d, k, next, d.op === 0xfc ? SYS_CLD : SYS_STD);
    case 0x9c: { // PUSHF (64-bit; the 16-bit form is interpreted)
      if (d.opsize === 2) return false;
      const f = g.c;
      if (g.pending !== undefined) g.storeFlags(g.pending);
      const v = g.tmp64();
      f.i32(SYS_RFLAGS);
      rt(f, F_SYS);
      f.op(Op.i64_extend_i32_u).set(v);
      push(g, v, d.rip);
      return 'cont';
    }
    case 0x101: { // CLAC, STAC, SWAPGS, RDTSCP (the rest of group 7 is interpreted)
      if ((d.hasModrm && d.mod !== 3) || d.opo || d.rep !== 0) return false;
      const r = d.reg & 7;
      const m = d.rm & 7;
      if (r === 1 && (m === 2 || m === 3)) return genSys(g, d, k, next, m === 3 ? SYS_STAC : SYS_CLAC);
      if (r === 7 && m === 0) return genSys(g, d, k, next, SYS_SWAPGS);
      if (r === 7 && m === 1) return genTsc(g, d, k, next, true);
      return false;
    }
    case 0x131: // RDTSC
      return genTsc(g, d, k, next, false);
    case 0x120: // MOV r, CRn (the page-fault handler reads CR2 first thing): the register form only
      return d.mod === 3 && !d.lock ? genReadCr(g, d, k, next) : false;
    case 0x8c: { // MOV r/m, Sreg (a context switch saves DS, ES, FS, GS this way): the selector, zero-extended into a register, 16 bits to memory
      const sr = d.reg & 7;
      if (sr > 5) return false; // #UD
      const f = g.c;
      const v = g.tmp64();
      f.i32(SYS_SREG + sr);
      rt(f, F_SYS);
      f.op(Op.i64_extend_i32_u).set(v);
      storeRm(g, d, d.mod === 3 ? d.opsize : 2, L, v);
      return 'cont';
    }
    default:
      return false;
  }
}

/** An instruction the host does entirely (no register changes): the call, and the interpreter where it says so. */
function genSys(g: WGen, d: D, k: number, next: number, op: number): 'cont' {
  const f = g.c;
  f.i32(op);
  rt(f, F_SYS);
  f.hint(0);
  interpretIf(g, d, k, next);
  g.end();
  return 'cont';
}

/**
 * RDTSC, RDTSCP: the host reads the clock into the arena's scratch, and the block loads EDX:EAX
 * (and RDTSCP's ECX, the TSC_AUX) from there.
 */
function genTsc(g: WGen, d: D, k: number, next: number, withAux: boolean): 'cont' {
  const f = g.c;
  f.i32(withAux ? SYS_RDTSCP : SYS_RDTSC);
  rt(f, F_SYS);
  f.hint(0);
  interpretIf(g, d, k, next);
  const part = (offset: number, reg: number): void => {
    const v = g.tmp64();
    g.st().mem(Op.i64_load32_u, g.base + offset).set(v);
    setReg(g, d, reg, 8, v);
  };
  part(A_SCRATCH, 0);
  part(A_SCRATCH + 4, 2);
  if (withAux) part(A_XTMP, 1);
  g.end();
  return 'cont';
}

/** MOV r, CRn: the host reads the register into the arena's scratch (CPL 0, an existing CR) or the interpreter faults. */
function genReadCr(g: WGen, d: D, k: number, next: number): 'cont' {
  const f = g.c;
  f.i32(SYS_CR + d.reg);
  rt(f, F_SYS);
  f.hint(0);
  interpretIf(g, d, k, next);
  const v = g.tmp64();
  g.st().mem(Op.i64_load, g.base + A_SCRATCH).set(v);
  setReg(g, d, d.rm, 8, v);
  g.end();
  return 'cont';
}
