/**
 * Block translator to WebAssembly (64-bit mode), from the traces of
 * cpu/translate/trace.ts; each block becomes one wasm module whose function V8 compiles straight
 * to machine code (Liftoff first, TurboFan for hot ones), so a block is fast from its first run.
 *
 * State lives in the arena (arena.ts): guest registers are i64 values loaded into locals when
 * the block starts and stored back on every exit and before anything that may fault or look at
 * the register file (slow memory accesses, the interpreter); loads and stores go through the
 * software TLB inline and reach guest RAM directly in the wasm memory. Arithmetic flags follow
 * the interpreter's lazy scheme: an inline flag writer keeps its operands in locals, conditions
 * inside the block are computed from them, and the lazy-flag record in the arena is written only
 * on the paths where someone else may look (exits, slow paths, the interpreter). The host copies
 * that record into the Cpu's flag fields whenever it gets control (see backend.ts).
 *
 * Instructions not generated inline run in the interpreter through the runtime's `step`. This
 * file holds the instructions and the block walk; codegen.ts the machinery they are made of.
 */
import type { D } from '../translate/decode.js';
import { continuation, continueSafe, stores, type Trace } from '../translate/trace.js';
import { fallbackKey } from '../translate/block.js';
import { F_DEC, F_INC } from '../core/consts.js';
import { assembleModule, Bytes, FuncBody, Op, T } from './encoder.js';
import { genSse, isSseCandidate } from './sse.js';
import { A_ENTRIES, A_GPR, A_SCRATCH } from './arena.js';
import { genSystem } from './system.js';
import { genBitOp, genBitScan } from './bits.js';
import { genString } from './string.js';
import { genShift, genShiftDouble } from './shift.js';
import { genCmpxchg16b } from './cmpxchg16b.js';
import { genAtomic } from './atomic.js';
import { features } from '../features.js';
import { genImul, genMulAcc } from './mul.js';
import { IMPORTS, BLOCK_TYPES, F_BLOCK0, F_DIV128, F_STEP, TWO47, WGen, alu, carry, checkCanonical, cond, constVal, ea, interpretIf, immVal, load, loadRm, maskTo, produce, push, regVal, rt, setReg, sext, storeRm, type BlockLayout } from './codegen.js';

// ---- instructions -----------------------------------------------------------------------

/** Generate d inline; 'exit' when it ended the block, false when it must be interpreted. */
function genInsn(g: WGen, d: D, live: boolean, k: number, next: number): 'cont' | 'exit' | false {
  const f = g.c;
  const op = d.op;
  const sz = d.opsize;
  const mem = d.hasModrm && d.mod !== 3;
  if (mem && d.ad32) return false;
  // LOCK changes nothing for one vCPU; where it is not allowed the interpreter raises #UD.
  // With vCPUs on several threads LOCKed read-modify-writes and XCHG with memory are wasm
  // atomics (atomic.ts), or the interpreter's transactions (Cpu.atomic).
  if (d.lock && !(mem && lockable(d))) return false;
  const L = mem ? ea(g, d, op !== 0x8d) : -1; // LEA ignores segment bases
  if (g.lay.atomic && (d.lock || (mem && (op === 0x86 || op === 0x87)))) return genAtomic(g, d, live, k, next, L);
  if (op > 0x100 && isSseCandidate(d)) {
    const r = genSse(g, d, L, k, next);
    if (r !== false) return r;
  }
  // ---- ALU ----
  if (op < 0x40 && (op & 7) < 6) {
    const kind = op & 7;
    const aop = op >> 3;
    const s1 = kind & 1 ? sz : 1;
    if (!live && !mem && kind !== 4) {
      // flags nobody reads: a plain operation on the register locals
      if (kind === 5) return deadAluReg(g, aop, s1, 0, -1, d.imm) ? 'cont' : genAluSlow(g, d, live, L);
      if (deadAluReg(g, aop, s1, kind < 2 ? d.rm : d.reg, kind < 2 ? d.reg : d.rm, 0)) return 'cont';
    }
    return genAluSlow(g, d, live, L);
  }
  switch (op) {
    case 0x80: case 0x81: case 0x83: {
      if (!live && !mem && op !== 0x80 && deadAluReg(g, d.reg & 7, sz, d.rm, -1, op === 0x81 ? d.imm : (d.imm << 24) >> 24)) return 'cont';
      break;
    }
    case 0x88: case 0x89: case 0x8a: case 0x8b: {
      // MOV between 32/64-bit registers: one local to another
      const s1 = op & 1 ? sz : 1;
      if (!mem && s1 >= 4) {
        const [dst, src] = op <= 0x89 ? [d.rm, d.reg] : [d.reg, d.rm];
        f.get(g.reg(src));
        if (s1 === 4) f.i64(0xffffffff, 0).op(Op.i64_and);
        f.set(g.reg(dst));
        g.written.add(dst);
        return 'cont';
      }
      break;
    }
    default:
      break;
  }
  return genInsn2(g, d, live, k, next, L);
}

/**
 * ALU op with dead flags on registers (ADD/OR/AND/SUB/XOR at 32 or 64 bits; CMP is nothing):
 * dst = dst op src (src < 0: the immediate imm, sign-extended). False for other cases.
 */
function deadAluReg(g: WGen, aop: number, sz: number, dst: number, src: number, imm: number): boolean {
  if (sz < 4 || aop === 2 || aop === 3) return false;
  g.lastF = undefined;
  g.pending = undefined;
  if (aop === 7) return true;
  const f = g.c;
  f.get(g.reg(dst));
  if (src >= 0) f.get(g.reg(src));
  else f.i64(imm | 0, imm < 0 ? -1 : 0);
  f.op(aop === 0 ? Op.i64_add : aop === 5 ? Op.i64_sub : aop === 1 ? Op.i64_or : aop === 4 ? Op.i64_and : Op.i64_xor);
  if (sz === 4) f.i64(0xffffffff, 0).op(Op.i64_and);
  f.set(g.reg(dst));
  g.written.add(dst);
  return true;
}

/** The general ALU forms (00-3D): operands in fresh locals, flags kept for later readers. */
function genAluSlow(g: WGen, d: D, live: boolean, L: number): 'cont' {
  const op = d.op;
  const sz = d.opsize;
  {
    const kind = op & 7;
    const aop = op >> 3;
    const s1 = kind & 1 ? sz : 1;
    if (kind >= 4) {
      const a = regVal(g, d, 0, s1);
      const b = kind === 4 ? constVal(g, d.imm & 0xff, 0) : immVal(g, d.imm, s1);
      const r = alu(g, aop, s1, a, b, live);
      if (aop !== 7) setReg(g, d, 0, s1, r);
      return 'cont';
    }
    const rm = loadRm(g, d, s1, L);
    const rg = regVal(g, d, d.reg, s1);
    if (kind < 2) {
      const r = alu(g, aop, s1, rm, rg, live);
      if (aop !== 7) storeRm(g, d, s1, L, r);
    } else {
      const r = alu(g, aop, s1, rg, rm, live);
      if (aop !== 7) setReg(g, d, d.reg, s1, r);
    }
    return 'cont';
  }
}

/** The rest of genInsn (L: the memory operand's address local, when there is one). */
function genInsn2(g: WGen, d: D, live: boolean, k: number, next: number, L: number): 'cont' | 'exit' | false {
  const f = g.c;
  const op = d.op;
  const sz = d.opsize;
  const mem = d.hasModrm && d.mod !== 3;
  switch (op) {
    case 0x80: case 0x81: case 0x83: {
      const s1 = op === 0x80 ? 1 : sz;
      const aop = d.reg & 7;
      const b = op === 0x80 ? constVal(g, d.imm & 0xff, 0) : immVal(g, op === 0x81 ? d.imm : (d.imm << 24) >> 24, s1);
      const a = loadRm(g, d, s1, L);
      const r = alu(g, aop, s1, a, b, live);
      if (aop !== 7) storeRm(g, d, s1, L, r);
      return 'cont';
    }
    case 0x84: case 0x85: case 0xa8: case 0xa9: {
      const s1 = op & 1 ? sz : 1;
      let a: number, b: number;
      if (op >= 0xa8) {
        a = regVal(g, d, 0, s1);
        b = op === 0xa8 ? constVal(g, d.imm & 0xff, 0) : immVal(g, d.imm, s1);
      } else {
        a = loadRm(g, d, s1, L);
        b = regVal(g, d, d.reg, s1);
      }
      alu(g, 4, s1, a, b, live);
      return 'cont';
    }
    case 0x88: case 0x89: {
      const s1 = op & 1 ? sz : 1;
      storeRm(g, d, s1, L, regVal(g, d, d.reg, s1));
      return 'cont';
    }
    case 0x8a: case 0x8b: {
      const s1 = op & 1 ? sz : 1;
      setReg(g, d, d.reg, s1, loadRm(g, d, s1, L));
      return 'cont';
    }
    case 0x8d: {
      if (!mem) return false;
      setReg(g, d, d.reg, sz, L);
      return 'cont';
    }
    case 0x63: {
      if (sz !== 8) return false;
      const v = loadRm(g, d, 4, L);
      const x = g.tmp64();
      f.get(v).op(Op.i64_extend32_s).set(x);
      setReg(g, d, d.reg, 8, x);
      return 'cont';
    }
    case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
      setReg(g, d, (op & 7) | ((d.rex & 1) << 3), 1, constVal(g, d.imm & 0xff, 0));
      return 'cont';
    case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf: {
      const r = (op & 7) | ((d.rex & 1) << 3);
      setReg(g, d, r, sz, sz === 8 ? constVal(g, d.imm | 0, d.immHi | 0) : constVal(g, d.imm >>> 0, 0));
      return 'cont';
    }
    case 0xc6: case 0xc7: {
      if ((d.reg & 7) !== 0) return false;
      const s1 = op & 1 ? sz : 1;
      storeRm(g, d, s1, L, s1 === 1 ? constVal(g, d.imm & 0xff, 0) : immVal(g, d.imm, s1));
      return 'cont';
    }
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57: {
      if (sz === 2) return false;
      push(g, regVal(g, d, (op & 7) | ((d.rex & 1) << 3), 8), d.rip);
      return 'cont';
    }
    case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
      if (sz === 2) return false;
      const v = load(g, 8, g.reg(4), d.rip, true);
      f.get(g.reg(4)).i64(8, 0).op(Op.i64_add).set(g.reg(4));
      g.written.add(4);
      setReg(g, d, (op & 7) | ((d.rex & 1) << 3), 8, v);
      return 'cont';
    }
    case 0xfa: case 0xfb: case 0xfc: case 0xfd: case 0x9c: case 0x101: case 0x131: case 0x8c: case 0x120: // CLI, STI, CLD/STD, PUSHF, group 7, RDTSC, MOV r/m, Sreg, MOV r, CRn
      return genSystem(g, d, k, next, L);
    case 0xc9: { // LEAVE: RBP = [RBP], RSP = RBP + 8 (the load first: a fault leaves both as they were)
      if (sz === 2) return false;
      const v = load(g, 8, g.reg(5), d.rip, true);
      f.get(g.reg(5)).i64(8, 0).op(Op.i64_add).set(g.reg(4));
      g.written.add(4);
      setReg(g, d, 5, 8, v);
      return 'cont';
    }
    case 0x68: case 0x6a: {
      if (sz === 2) return false;
      push(g, immVal(g, op === 0x68 ? d.imm : (d.imm << 24) >> 24, 8), d.rip);
      return 'cont';
    }
    case 0x69: case 0x6b: case 0x1af:
      return genImul(g, d, live, L);
    case 0x86: case 0x87: { // XCHG r/m, r
      const s1 = op & 1 ? sz : 1;
      const b = regVal(g, d, d.reg, s1);
      const a = loadRm(g, d, s1, L);
      storeRm(g, d, s1, L, b);
      setReg(g, d, d.reg, s1, a);
      return 'cont';
    }
    case 0x1b0: case 0x1b1: { // CMPXCHG r/m, r (a memory operand is written either way)
      const s1 = op & 1 ? sz : 1;
      const src = regVal(g, d, d.reg, s1);
      const acc = regVal(g, d, 0, s1);
      const dst = loadRm(g, d, s1, L);
      alu(g, 7, s1, acc, dst, live);
      f.get(acc).get(dst).op(Op.i64_eq);
      g.begin(Op.if);
      storeRm(g, d, s1, L, src);
      g.else();
      if (mem) storeRm(g, d, s1, L, dst);
      setReg(g, d, 0, s1, dst);
      g.end();
      return 'cont';
    }
    case 0x1a3: case 0x1ab: case 0x1b3: case 0x1bb: // BT/BTS/BTR/BTC r/m, r
      return genBitOp(g, d, (op >> 3) & 3, live, L);
    case 0x1bc: case 0x1bd:
      return genBitScan(g, d, live, L);
    case 0x1a4: case 0x1a5: case 0x1ac: case 0x1ad:
      return genShiftDouble(g, d, live, L);
    case 0x1c7: // CMPXCHG16B (the rest of group 9 is interpreted)
      return mem && (d.reg & 7) === 1 && sz === 8 && features.cx16 ? genCmpxchg16b(g, d, live, k, next, L) : false;
    case 0xa4: case 0xa5: case 0xaa: case 0xab: case 0xac: case 0xad:
      return genString(g, d, k, next);
    case 0x1ae: { // LFENCE/MFENCE/SFENCE (the rest of group 15, and the #UD of a 66/F2/F3 prefix, is interpreted)
      if (mem || (d.reg & 7) < 5 || d.rep !== 0 || d.opo) return false;
      // nothing to order with one thread; among threads MFENCE orders stores before later loads
      // (x86-TSO's one reordering; the others keep it by themselves)
      if (g.lay.atomic && (d.reg & 7) === 6) g.c.atomicFence();
      return 'cont';
    }
    case 0x1ba: // BT/BTS/BTR/BTC r/m, ib
      return (d.reg & 7) >= 4 ? genBitOp(g, d, d.reg & 3, live, L) : false;
    case 0x1c0: case 0x1c1: { // XADD r/m, r
      const s1 = op & 1 ? sz : 1;
      const src = regVal(g, d, d.reg, s1);
      const dst = loadRm(g, d, s1, L);
      const r = alu(g, 0, s1, dst, src, live);
      if (mem) {
        storeRm(g, d, s1, L, r);
        setReg(g, d, d.reg, s1, dst);
      } else {
        setReg(g, d, d.reg, s1, dst);
        setReg(g, d, d.rm, s1, r);
      }
      return 'cont';
    }
    case 0x90: // NOP, PAUSE (XCHG r8, rAX is interpreted; so is PAUSE where a spinning vCPU yields its turn, Cpu.spinWait)
      if (d.rex & 1 || (d.rep === 0xf3 && g.lay.pauseYields)) return false;
      return 'cont';
    case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97: { // XCHG r, rAX
      const r = (op & 7) | ((d.rex & 1) << 3);
      const a = regVal(g, d, 0, sz);
      const b = regVal(g, d, r, sz);
      setReg(g, d, 0, sz, b);
      setReg(g, d, r, sz, a);
      return 'cont';
    }
    case 0x11f: // NOP r/m
      return 'cont';
    case 0x118: // PREFETCHh: a hint, never faults
      return mem ? 'cont' : false;
    case 0x98: { // CBW / CWDE / CDQE
      const v = regVal(g, d, 0, sz >> 1);
      f.get(v);
      sext(g, sz >> 1);
      f.set(v);
      setReg(g, d, 0, sz, v);
      return 'cont';
    }
    case 0x99: { // CWD / CDQ / CQO
      const v = regVal(g, d, 0, sz);
      f.get(v);
      sext(g, sz);
      f.i64(63, 0).op(Op.i64_shr_s).set(v);
      setReg(g, d, 2, sz, v);
      return 'cont';
    }
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3:
      return genShift(g, d, live, L);
    case 0xf6: case 0xf7:
      return genGroup3(g, d, live, L, k, next);
    case 0xfe: case 0xff: {
      const o = d.reg & 7;
      const s1 = op === 0xfe ? 1 : sz;
      if (o <= 1) {
        const a = loadRm(g, d, s1, L);
        const b = constVal(g, 1, 0);
        const r = g.tmp64();
        let cin = -1;
        if (live) {
          cin = g.tmp64();
          carry(g);
          f.set(cin);
        }
        f.get(a).get(b).op(o === 0 ? Op.i64_add : Op.i64_sub);
        maskTo(g, s1);
        f.set(r);
        storeRm(g, d, s1, L, r);
        if (live) produce(g, { kind: o === 0 ? F_INC : F_DEC, sz: s1, a, b, r, cin }, true);
        else {
          g.lastF = undefined;
          g.pending = undefined;
        }
        return 'cont';
      }
      if (op === 0xfe || sz === 2) return false;
      if (o === 2 || o === 4) {
        const t = loadRm(g, d, 8, L);
        checkCanonical(g, t, 13, d.rip);
        if (o === 2) push(g, constVal(g, next >>> 0, Math.floor(next / 4294967296) | 0), d.rip);
        g.exitToLocal(t, k + 1);
        return 'exit';
      }
      if (o === 6) {
        push(g, loadRm(g, d, 8, L), d.rip);
        return 'cont';
      }
      return false;
    }
    case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: {
      const ssz = op & 1 ? 2 : 1;
      const v = loadRm(g, d, ssz, L);
      if (op >= 0x1be) {
        f.get(v);
        sext(g, ssz);
        f.set(v);
      }
      setReg(g, d, d.reg, sz, v);
      return 'cont';
    }
    default:
      break;
  }
  if (op >= 0x140 && op <= 0x14f) { // CMOVcc (a 32-bit CMOV clears the upper half either way)
    const v = loadRm(g, d, sz, L);
    cond(g, op & 15);
    g.begin(Op.if);
    setReg(g, d, d.reg, sz, v);
    if (sz === 4) {
      g.else();
      const r = g.reg(d.reg);
      f.get(r).i64(0xffffffff, 0).op(Op.i64_and).set(r);
      g.written.add(d.reg);
    }
    g.end();
    return 'cont';
  }
  if (op >= 0x1c8 && op <= 0x1cf && sz !== 2) { // BSWAP
    const r = (op & 7) | ((d.rex & 1) << 3);
    const x = regVal(g, d, r, sz);
    const y = g.tmp64();
    // byte reverse of the 64-bit value, then shifted down for 32 bits
    f.i64(0, 0).set(y);
    for (let i = 0; i < sz; i++) {
      f.get(y).i64(8, 0).op(Op.i64_shl).get(x).i64(8 * i, 0).op(Op.i64_shr_u).i64(0xff, 0).op(Op.i64_and).op(Op.i64_or).set(y);
    }
    setReg(g, d, r, sz, y);
    return 'cont';
  }
  if (op >= 0x190 && op <= 0x19f) { // SETcc
    const v = g.tmp64();
    cond(g, op & 15);
    f.op(Op.i64_extend_i32_u).set(v);
    storeRm(g, d, 1, L, v);
    return 'cont';
  }
  // ---- control transfer ----
  if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) {
    const rel = op < 0x100 ? (d.imm << 24) >> 24 : d.imm | 0;
    const t = next + rel;
    if (t < -TWO47 || t >= TWO47) return false;
    cond(g, op & 15);
    g.begin(Op.if);
    g.exitTo(t, k + 1);
    g.end();
    if (d.follow) return 'cont';
    g.exitTo(next, k + 1);
    return 'exit';
  }
  if (op === 0xeb || op === 0xe9) {
    const t = next + (op === 0xeb ? (d.imm << 24) >> 24 : d.imm | 0);
    if (t < -TWO47 || t >= TWO47) return false;
    if (d.follow) return 'cont';
    g.exitTo(t, k + 1);
    return 'exit';
  }
  if (op === 0xe8) {
    if (sz === 2) return false;
    const t = next + (d.imm | 0);
    if (t < -TWO47 || t >= TWO47) return false;
    push(g, constVal(g, next >>> 0, Math.floor(next / 4294967296) | 0), d.rip);
    if (d.follow) return 'cont';
    g.exitTo(t, k + 1);
    return 'exit';
  }
  if (op === 0xc3) {
    if (sz === 2) return false;
    const t = load(g, 8, g.reg(4), d.rip, true);
    checkCanonical(g, t, 13, d.rip);
    f.get(g.reg(4)).i64(8, 0).op(Op.i64_add).set(g.reg(4));
    g.written.add(4);
    if (d.follow) {
      f.get(t).i64n(d.retTo).op(Op.i64_ne);
      g.begin(Op.if);
      g.exitToLocal(t, k + 1);
      g.end();
      return 'cont';
    }
    g.exitToLocal(t, k + 1);
    return 'exit';
  }
  return false;
}

/** May d (with a memory operand) carry a LOCK prefix? (Read-modify-write forms only.) */
function lockable(d: D): boolean {
  const op = d.op;
  const r = d.reg & 7;
  if (op < 0x40) return (op & 7) < 2 && op >> 3 !== 7;
  if (op >= 0x80 && op <= 0x83) return r !== 7;
  if (op === 0xf6 || op === 0xf7) return r === 2 || r === 3;
  if (op === 0xfe || op === 0xff) return r <= 1;
  if (op === 0x1ba) return r >= 5;
  if (op === 0x1c7) return r === 1;
  return op === 0x86 || op === 0x87 || op === 0x1ab || op === 0x1b3 || op === 0x1bb || op === 0x1b0 || op === 0x1b1 || op === 0x1c0 || op === 0x1c1;
}

/** F6/F7: TEST, NOT, NEG, MUL/IMUL (32 and 64 bits), DIV (32 and 64 bits); the rest interpreted. */
function genGroup3(g: WGen, d: D, live: boolean, L: number, k: number, next: number): 'cont' | false {
  const f = g.c;
  const s1 = d.op & 1 ? d.opsize : 1;
  const o = d.reg & 7;
  if (o <= 1) {
    const a = loadRm(g, d, s1, L);
    alu(g, 4, s1, a, s1 === 1 ? constVal(g, d.imm & 0xff, 0) : immVal(g, d.imm, s1), live);
    return 'cont';
  }
  if (o === 2) {
    const a = loadRm(g, d, s1, L);
    const r = g.tmp64();
    f.get(a).i64(-1, -1).op(Op.i64_xor);
    maskTo(g, s1);
    f.set(r);
    storeRm(g, d, s1, L, r);
    return 'cont';
  }
  if (o === 3) {
    // NEG = 0 - a, flags as SUB 0, a
    const a = loadRm(g, d, s1, L);
    const z = constVal(g, 0, 0);
    const r = alu(g, 5, s1, z, a, live);
    storeRm(g, d, s1, L, r);
    return 'cont';
  }
  if (o === 6 && (s1 === 8 || s1 === 4)) return genDiv(g, d, s1, L, k, next);
  if ((o === 4 || o === 5) && (s1 === 8 || s1 === 4)) return genMulAcc(g, d, o === 5, s1, live, L);
  return false;
}

/**
 * DIV r/m32 and r/m64 inline when the quotient fits (the divisor is not 0 and exceeds the high
 * half of the dividend); otherwise the interpreter runs it (and raises #DE). Flags are undefined.
 */
function genDiv(g: WGen, d: D, sz: number, L: number, k: number, next: number): 'cont' {
  const f = g.c;
  const b = loadRm(g, d, sz, L);
  const hi = regVal(g, d, 2, sz);
  const lo = regVal(g, d, 0, sz);
  const q = g.tmp64();
  const r = g.tmp64();
  // the interpreter's cases: divisor 0 or quotient overflow
  f.get(b).op(Op.i64_eqz).get(hi).get(b).op(Op.i64_ge_u).op(Op.i32_or);
  interpretIf(g, d, k, next);
  if (sz === 4) {
    const n = g.tmp64();
    f.get(hi).i64(32, 0).op(Op.i64_shl).get(lo).op(Op.i64_or).set(n);
    f.get(n).get(b).op(Op.i64_div_u).set(q);
    f.get(n).get(b).op(Op.i64_rem_u).set(r);
  } else {
    f.get(hi).op(Op.i64_eqz);
    g.begin(Op.if);
    f.get(lo).get(b).op(Op.i64_div_u).set(q);
    f.get(lo).get(b).op(Op.i64_rem_u).set(r);
    g.else();
    f.get(hi).get(lo).get(b);
    rt(f, F_DIV128);
    f.set(q);
    g.st().mem(Op.i64_load, g.base + A_SCRATCH).set(r);
    g.end();
  }
  setReg(g, d, 0, sz, q);
  setReg(g, d, 2, sz, r);
  g.end();
  g.lastF = undefined;
  g.pending = undefined;
  return 'cont';
}

/**
 * The runtime's 128/64-bit unsigned division (Hacker's Delight divlu: normalise, then two
 * 64/32-bit quotient digits, each corrected at most twice): (hi, lo, d) with hi < d gives the
 * quotient; the remainder goes to A_SCRATCH.
 */
export function div128Body(base: number): FuncBody {
  const f = new FuncBody([T.I64, T.I64, T.I64], [T.I64]);
  const HI = 0, LO = 1, D = 2;
  const sh = f.local(T.I64), un32 = f.local(T.I64), un10 = f.local(T.I64), vn1 = f.local(T.I64), vn0 = f.local(T.I64);
  const un1 = f.local(T.I64), un0 = f.local(T.I64), q1 = f.local(T.I64), q0 = f.local(T.I64), rhat = f.local(T.I64), un21 = f.local(T.I64);
  const two32 = (): FuncBody => f.i64(0, 1);
  const low32 = (): FuncBody => f.i64(0xffffffff, 0).op(Op.i64_and);
  f.get(D).op(Op.i64_clz).set(sh);
  f.get(D).get(sh).op(Op.i64_shl).set(D);
  // un32 = hi << s | lo >> (64 - s), the second part 0 when s = 0 (wasm shifts are mod 64)
  f.get(HI).get(sh).op(Op.i64_shl);
  f.get(LO).i64(64, 0).get(sh).op(Op.i64_sub).op(Op.i64_shr_u).i64(0, 0).get(sh).op(Op.i64_eqz).op(Op.i32_eqz).op(Op.select);
  f.op(Op.i64_or).set(un32);
  f.get(LO).get(sh).op(Op.i64_shl).set(un10);
  f.get(D).i64(32, 0).op(Op.i64_shr_u).set(vn1);
  f.get(D);
  low32();
  f.set(vn0);
  f.get(un10).i64(32, 0).op(Op.i64_shr_u).set(un1);
  f.get(un10);
  low32();
  f.set(un0);
  const digit = (q: number, num: number, low: number): void => {
    f.get(num).get(vn1).op(Op.i64_div_u).set(q);
    f.get(num).get(q).get(vn1).op(Op.i64_mul).op(Op.i64_sub).set(rhat);
    f.begin(Op.block).begin(Op.loop);
    f.get(q);
    two32();
    f.op(Op.i64_ge_u);
    f.get(q).get(vn0).op(Op.i64_mul).get(rhat).i64(32, 0).op(Op.i64_shl).get(low).op(Op.i64_or).op(Op.i64_gt_u);
    f.op(Op.i32_or).op(Op.i32_eqz).br(Op.br_if, 1);
    f.get(q).i64(1, 0).op(Op.i64_sub).set(q);
    f.get(rhat).get(vn1).op(Op.i64_add).tee(rhat);
    two32();
    f.op(Op.i64_lt_u).br(Op.br_if, 0);
    f.op(Op.end).op(Op.end);
  };
  digit(q1, un32, un1);
  f.get(un32).i64(32, 0).op(Op.i64_shl).get(un1).op(Op.i64_add).get(q1).get(D).op(Op.i64_mul).op(Op.i64_sub).set(un21);
  digit(q0, un21, un0);
  f.i32(0);
  f.get(un21).i64(32, 0).op(Op.i64_shl).get(un0).op(Op.i64_add).get(q0).get(D).op(Op.i64_mul).op(Op.i64_sub).get(sh).op(Op.i64_shr_u);
  f.mem(Op.i64_store, base + A_SCRATCH);
  f.get(q1).i64(32, 0).op(Op.i64_shl).get(q0).op(Op.i64_or);
  return f;
}

/**
 * After an instruction that stored to memory: leave if a slow store asked to stop. Rare (a store
 * into translated code, or the host asking for the CPU), so it returns to the host rather than
 * chaining: no exit link, no tail call, less code in every block that stores.
 */
function stopCheck(g: WGen, cont: number, k: number): void {
  const f = g.c;
  f.get(g.stop);
  f.hint(0);
  g.begin(Op.if);
  g.leave(cont, k);
  g.end();
}

// ---- blocks -----------------------------------------------------------------------------

/** The wasm function for a trace starting at rip (see BlockLayout for the addresses it uses). */
export function translateTrace(tr: Trace, rip: number, lay: BlockLayout, allocExit: () => number): { body: FuncBody; n: number; fallsThrough: boolean } {
  const { insns, live, terminal } = tr;
  const g = new WGen(lay, allocExit);
  const base = lay.base;
  g.loop = tr.loop;
  g.liveAtStart = tr.liveAtStart;
  g.start = rip;
  const f = g.c;
  if (g.sbase >= 0) f.globalGet(0).set(g.sbase);
  if (lay.countEntries) {
    g.st();
    g.st().mem(Op.i32_load, base + A_ENTRIES).i32(1).op(Op.i32_add).mem(Op.i32_store, base + A_ENTRIES);
  }
  g.mark('reload');
  if (g.loop) {
    g.f.begin(Op.loop);
    g.depth = 0;
  }
  let k = 0;
  let exited = false;
  for (let i = 0; i < insns.length; i++) {
    const d = insns[i]!;
    const next = d.rip + d.len;
    const cont = continuation(insns, i, tr.end);
    g.beginInsn();
    const res = d === terminal ? false : genInsn(g, d, live[i]!, k, next);
    if (res === 'exit') {
      exited = true;
      k++;
      break;
    }
    if (res === false) {
      // run it in the interpreter, with the state written back and reloaded after
      g.sync();
      g.pending = undefined;
      g.lastF = undefined;
      f.f64(d.rip).f64(next).i32(fallbackKey(d));
      rt(f, F_STEP);
      k++;
      if (d === terminal || !continueSafe(d)) {
        f.op(Op.drop);
        g.retK(k);
        exited = true;
        break;
      }
      f.hint(0);
      g.begin(Op.if);
      g.retK(k);
      g.end();
      g.mark('reload');
      continue;
    }
    k++;
    if (stores(d)) stopCheck(g, cont, k);
  }
  const fallsThrough = !exited && insns.length > 0;
  if (!exited) {
    if (insns.length === 0) {
      f.f64(rip).f64(rip).i32(0);
      rt(f, F_STEP);
      f.op(Op.drop);
      k = 1;
      g.retK(1);
    } else g.exitTo(tr.end, k);
  }
  if (g.loop) {
    f.op(Op.end);
  }
  f.op(Op.unreachable);
  // join the chunks, filling in the register loads and stores
  const used = g.regs.map((l, r) => [l, r] as const).filter(([l]) => l >= 0);
  // sized up front (a register load or store is at most 16 bytes): no copy while joining
  const chunks = g.chunks.concat([g.f.code]);
  const code = new Bytes(chunks.reduce((n, ch) => n + (ch instanceof Bytes ? ch.len : 16 * used.length), 16));
  const parts: (Bytes | number)[] = [];
  for (const ch of chunks) {
    const before = code.len;
    if (ch === 'reload') {
      for (const [l, r] of used) {
        stateAddr(code, g.sbase);
        code.byte(Op.i64_load); code.u32(0); code.u32(base + A_GPR + 8 * r);
        code.byte(Op.local_set); code.u32(l);
      }
    } else if (ch instanceof Set) {
      for (const [l, r] of used) {
        if (!ch.has(r)) continue;
        stateAddr(code, g.sbase);
        code.byte(Op.local_get); code.u32(l);
        code.byte(Op.i64_store); code.u32(0); code.u32(base + A_GPR + 8 * r);
      }
    } else code.append(ch);
    parts.push(ch instanceof Bytes ? ch : code.len - before);
  }
  g.f.code = code;
  g.f.resolveHints(parts);
  return { body: g.f, n: k, fallsThrough };
}

/** Push what state-area offsets are relative to (WGen.st, in raw code). */
function stateAddr(code: Bytes, sbase: number): void {
  if (sbase < 0) {
    code.byte(Op.i32_const); code.s32(0);
  } else {
    code.byte(Op.local_get); code.u32(sbase);
  }
}

/**
 * One module for several translated blocks: their functions are the globals g0, g1, ... Its own
 * table holds the runtime's functions (IMPORTS order), then one entry per chained exit of the
 * bodies (codegen's chainExit; the bodies' constants are patched to name them): entry
 * IMPORTS.length + i is the successor of exit `exits[i]`, which the host sets when it links it.
 */
export function blockModule(bodies: readonly FuncBody[], sharedMemory = false, relative = false): { bytes: Uint8Array; exits: number[] } {
  const exits: number[] = [];
  for (const b of bodies) {
    for (let i = 0; i < b.refs.length; i++) {
      b.patchRef(i, IMPORTS.length + exits.length);
      exits.push(b.refTags[i]!);
    }
  }
  const bytes = assembleModule([], bodies, {}, BLOCK_TYPES, { own: IMPORTS.length + exits.length }, bodies.map((_b, i) => F_BLOCK0 + i), sharedMemory, relative);
  return { bytes, exits };
}
