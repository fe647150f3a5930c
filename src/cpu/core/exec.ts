/**
 * The interpreter's dispatch, one instruction per `step(c)`: legacy prefixes, REX, the LOCK
 * check, then the one-byte opcode map (`exec1`); the two-byte map is in exec0f.ts and the
 * instruction groups in ops/ (operands, alu, shift, muldiv, stack, branch, bits, string,
 * system, simd, bcd). System instructions call the system module; x87/SSE/MMX opcodes go to
 * the SIMD unit with a decoded `SimdInsn`.
 *
 * Decoding state lives in reused fields of the Cpu (`ip`, `opsize`, `rex`, `mod/reg/rm`,
 * `eaLo/eaHi`...). `c.ip` is the decode pointer; `s.rip = c.ip` when the instruction completes.
 * Handlers that call system functions which set s.rip themselves copy it back into c.ip.
 */
import type { Cpu } from './cpu.js';
import { EventKind } from '../system-api.js';
import { TX_RETRY } from './atomic.js';
import { deliver, iret } from '../system/interrupts.js';
import { farJump, farCall, farReturn } from '../system/segments.js';
import { checkIo } from '../system/io.js';
import * as Operands from './ops/operands.js';
import * as Alu from './ops/alu.js';
import * as Shift from './ops/shift.js';
import * as MulDiv from './ops/muldiv.js';
import * as Stack from './ops/stack.js';
import * as Branch from './ops/branch.js';
import * as Strings from './ops/string.js';
import * as System from './ops/system.js';
import * as Simd from './ops/simd.js';
import * as Bcd from './ops/bcd.js';
import * as TwoByte from './exec0f.js';

// The group functions as module-local consts. exec1/exec0F are too big for V8 to inline into, so
// every call leaves the function, and a call through an imported binding first loads the target
// through the module's import cell, one through a local const from a context slot: calling
// through imports made the interpreter ~4% slower on a loop of integer code. Keep this shape.
const {
  fault, getReg, setReg, reg64, modrm, eaLin, segLin, readMem, writeMem, readRM, writeRM, immSize,
  fetchImm, fetchImm8s, areg, setAreg, wrapA,
} = Operands;
const { alu, setLogic, incdec } = Alu;
const { shift } = Shift;
const { imulTrunc, group3 } = MulDiv;
const { push, stackPeek, addSp, pop, stackOpSize } = Stack;
const { jumpTo, branchSize, group5 } = Branch;
const { stringOp } = Strings;
const { requireCpl0, requireProtected, iopl, sregLoad, popf, loadFarPointer } = System;
const { runX87 } = Simd;
const { bcd, aam, aad } = Bcd;
const { exec0F } = TwoByte;

const TWO32 = 4294967296;
const TWO47 = 140737488355328;
const UD = 6;
const GP = 13;

// ==== the step ==============================================================================

/** Execute one instruction at s.rip. Throws CpuFault for exceptions (caller restores rip). */
export function step(c: Cpu): void {
  const s = c.s;
  c.ip = s.rip;
  c.rex = 0;
  c.rexW = false;
  c.rexR = c.rexX = c.rexB = 0;
  c.seg = -1;
  c.rep = 0;
  c.lock = false;
  c.opOverride = false;
  let adOverride = false;
  let op: number;
  const long = c.long;
  for (;;) {
    op = c.fetch8();
    switch (op) {
      case 0x66: c.opOverride = true; c.rex = 0; continue;
      case 0x67: adOverride = true; c.rex = 0; continue;
      case 0xf0: c.lock = true; c.rex = 0; continue;
      case 0xf2: case 0xf3: c.rep = op; c.rex = 0; continue;
      case 0x26: if (!long) c.seg = 0; c.rex = 0; continue;
      case 0x2e: if (!long) c.seg = 1; c.rex = 0; continue;
      case 0x36: if (!long) c.seg = 2; c.rex = 0; continue;
      case 0x3e: if (!long) c.seg = 3; c.rex = 0; continue;
      case 0x64: c.seg = 4; c.rex = 0; continue;
      case 0x65: c.seg = 5; c.rex = 0; continue;
    }
    if (long && (op & 0xf0) === 0x40) {
      c.rex = op;
      continue;
    }
    break;
  }
  if (c.rex !== 0) {
    const r = c.rex;
    c.rexW = (r & 8) !== 0;
    c.rexR = (r & 4) << 1;
    c.rexX = (r & 2) << 2;
    c.rexB = (r & 1) << 3;
  }
  c.opsize = c.rexW ? 8 : c.opOverride ? (c.defOp === 4 ? 2 : 4) : c.defOp;
  c.adsize = adOverride ? (long ? 4 : c.defAddr === 4 ? 2 : 4) : c.defAddr;
  if (c.lock) checkLock(c, op);
  if (c.atomic !== undefined && (c.lock || ((op === 0x86 || op === 0x87) && !modrmIsReg(c)))) lockedExec(c, op);
  else exec1(c, op);
  s.rip = c.ip;
}

/** Is the ModRM byte at c.ip a register form (mod = 3)? c.ip stays. */
function modrmIsReg(c: Cpu): boolean {
  const save = c.ip;
  const m = c.fetch8();
  c.ip = save;
  return m >> 6 === 3;
}

/** Registers saved before a locked instruction (lockedExec), to run it again. */
const txRegs = new Int32Array(32);

/**
 * A LOCKed read-modify-write or XCHG with memory when guest RAM is shared with other threads
 * (atomic.ts): a transaction, run again from the same registers and flags until its
 * compare-exchange succeeds. CMPXCHG16B holds the vCPUs' mutex instead.
 */
function lockedExec(c: Cpu, op: number): void {
  const g = c.s.gpr;
  const ip = c.ip;
  if (op === 0x0f && c.rexW && c.fetch8() === 0xc7) {
    const m = c.fetch8();
    c.ip = ip;
    if (((m >> 3) & 7) === 1) {
      const at = c.atomic!;
      at.lock();
      try {
        exec1(c, op);
      } finally {
        at.unlock();
      }
      return;
    }
  }
  c.ip = ip;
  txRegs.set(g);
  const arith = c.getArith();
  for (;;) {
    c.txBegin(true);
    try {
      exec1(c, op);
      return;
    } catch (e) {
      if (e !== TX_RETRY) throw e;
      g.set(txRegs);
      c.setArith(arith);
      c.ip = ip;
    } finally {
      c.txBegin(false);
    }
  }
}

/** LOCK is only legal on read-modify-write memory forms: #UD otherwise. */
function checkLock(c: Cpu, op: number): void {
  const save = c.ip;
  let b = op;
  const two = op === 0x0f;
  if (two) b = c.fetch8();
  const m = c.fetch8();
  c.ip = save;
  const mem = m >> 6 !== 3;
  const r = (m >> 3) & 7;
  let ok = false;
  if (!two) {
    if (b < 0x38 && (b & 7) < 2) ok = true;
    else if (b >= 0x80 && b <= 0x83) ok = r !== 7;
    else if (b === 0x86 || b === 0x87) ok = true;
    else if (b === 0xfe || b === 0xff) ok = r <= 1;
    else if (b === 0xf6 || b === 0xf7) ok = r === 2 || r === 3;
  } else {
    if (b === 0xab || b === 0xb3 || b === 0xbb || b === 0xb0 || b === 0xb1 || b === 0xc0 || b === 0xc1) ok = true;
    else if (b === 0xba) ok = r >= 5;
    else if (b === 0xc7) ok = r === 1;
    else if ((b === 0x20 || b === 0x22) && !c.long) return; // AMD: LOCK MOV CR0 = MOV CR8
  }
  if (!ok || !mem) fault(UD);
}

function exec1(c: Cpu, op: number): void {
  const s = c.s;
  const g = s.gpr;
  switch (op) {
    // ---- ALU r/m, reg, acc ----
    case 0x00: case 0x08: case 0x10: case 0x18: case 0x20: case 0x28: case 0x30: case 0x38:
    case 0x01: case 0x09: case 0x11: case 0x19: case 0x21: case 0x29: case 0x31: case 0x39: {
      const sz = op & 1 ? c.opsize : 1;
      const aop = op >> 3;
      modrm(c, 0);
      const b = getReg(c, c.reg, sz);
      const bh = c.hi;
      if (c.mod === 3) {
        const a = getReg(c, c.rm, sz);
        const r = alu(c, aop, sz, a, c.hi, b, bh);
        if (aop !== 7) setReg(c, c.rm, sz, r, c.hi);
      } else {
        const lin = eaLin(c);
        // a read-modify-write faults before it changes anything, flags included (an ADC
        // restarted after a #PF on a read-only page must see the old CF)
        if (aop !== 7) c.probeWrite(lin, sz);
        const a = readMem(c, lin, sz);
        const r = alu(c, aop, sz, a, c.hi, b, bh);
        if (aop !== 7) writeMem(c, lin, sz, r, c.hi);
      }
      return;
    }
    case 0x02: case 0x0a: case 0x12: case 0x1a: case 0x22: case 0x2a: case 0x32: case 0x3a:
    case 0x03: case 0x0b: case 0x13: case 0x1b: case 0x23: case 0x2b: case 0x33: case 0x3b: {
      const sz = op & 1 ? c.opsize : 1;
      const aop = op >> 3;
      modrm(c, 0);
      const b = readRM(c, sz);
      const bh = c.hi;
      const a = getReg(c, c.reg, sz);
      const r = alu(c, aop, sz, a, c.hi, b, bh);
      if (aop !== 7) setReg(c, c.reg, sz, r, c.hi);
      return;
    }
    case 0x04: case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x2c: case 0x34: case 0x3c:
    case 0x05: case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x2d: case 0x35: case 0x3d: {
      const sz = op & 1 ? c.opsize : 1;
      const aop = op >> 3;
      const b = fetchImm(c, sz);
      const bh = c.hi;
      const a = getReg(c, 0, sz);
      const r = alu(c, aop, sz, a, c.hi, b, bh);
      if (aop !== 7) setReg(c, 0, sz, r, c.hi);
      return;
    }
    // ---- segment push/pop (legacy) ----
    case 0x06: case 0x0e: case 0x16: case 0x1e: {
      if (c.long) fault(UD);
      push(c, c.opsize, s.segSel[op >> 3]!, 0);
      return;
    }
    case 0x07: case 0x17: case 0x1f: {
      if (c.long) fault(UD);
      const sel = stackPeek(c, c.opsize, 0) & 0xffff;
      sregLoad(c, op >> 3, sel);
      addSp(c, c.opsize);
      return;
    }
    case 0x0f:
      exec0F(c);
      return;
    case 0x27: case 0x2f: case 0x37: case 0x3f:
      if (c.long) fault(UD);
      bcd(c, op);
      return;
    // ---- INC/DEC r (legacy) ----
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47:
    case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f: {
      const r = op & 7;
      const sz = c.opsize;
      setReg(c, r, sz, incdec(c, sz, getReg(c, r, sz), 0, op >= 0x48), 0);
      return;
    }
    // ---- PUSH/POP r ----
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57: {
      const sz = stackOpSize(c);
      const v = getReg(c, (op & 7) | c.rexB, sz);
      push(c, sz, v, c.hi);
      return;
    }
    case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
      const sz = stackOpSize(c);
      const v = pop(c, sz);
      setReg(c, (op & 7) | c.rexB, sz, v, c.hi);
      return;
    }
    case 0x60: { // PUSHA
      if (c.long) fault(UD);
      const sz = c.opsize;
      const sp = getReg(c, 4, sz);
      for (let r = 0; r < 8; r++) push(c, sz, r === 4 ? sp : getReg(c, r, sz), 0);
      return;
    }
    case 0x61: { // POPA
      if (c.long) fault(UD);
      const sz = c.opsize;
      for (let r = 7; r >= 0; r--) {
        const v = pop(c, sz);
        if (r !== 4) setReg(c, r, sz, v, 0);
      }
      return;
    }
    case 0x62:
      fault(UD); // BOUND (and EVEX in 64-bit mode)
      return;
    case 0x63: {
      modrm(c, 0);
      if (c.long) { // MOVSXD
        if (c.opsize === 8) {
          const v = readRM(c, 4);
          setReg(c, c.reg, 8, v, v & 0x80000000 ? 0xffffffff : 0);
        } else setReg(c, c.reg, c.opsize, readRM(c, c.opsize), 0);
        return;
      }
      // ARPL
      requireProtected(c);
      const dst = readRM(c, 2);
      const src = getReg(c, c.reg, 2);
      if ((dst & 3) < (src & 3)) {
        writeRM(c, 2, (dst & ~3) | (src & 3), 0);
        c.setArith(c.getArith() | 0x40);
      } else c.setArith(c.getArith() & ~0x40);
      return;
    }
    case 0x68: {
      const sz = stackOpSize(c);
      const v = fetchImm(c, sz);
      push(c, sz, v, c.hi);
      return;
    }
    case 0x6a: {
      const sz = stackOpSize(c);
      const v = fetchImm8s(c, sz);
      push(c, sz, v, c.hi);
      return;
    }
    case 0x69: case 0x6b: {
      const sz = c.opsize;
      modrm(c, op === 0x69 ? immSize(sz) : 1);
      const a = readRM(c, sz);
      const ah = c.hi;
      const b = op === 0x69 ? fetchImm(c, sz) : fetchImm8s(c, sz);
      const r = imulTrunc(c, sz, a, ah, b, c.hi);
      setReg(c, c.reg, sz, r, c.hi);
      return;
    }
    case 0x6c: case 0x6d: case 0x6e: case 0x6f: {
      const sz = op & 1 ? (c.opsize === 8 ? 4 : c.opsize) : 1;
      stringOp(c, op & 0xfe, sz);
      return;
    }
    // ---- Jcc rel8 ----
    case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
    case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f: {
      const d = (c.fetch8() << 24) >> 24;
      if (c.cond(op & 15)) jumpTo(c, c.ip + d, branchSize(c));
      return;
    }
    case 0x80: case 0x81: case 0x82: case 0x83: {
      if (op === 0x82 && c.long) fault(UD);
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, op === 0x81 ? immSize(sz) : 1);
      const aop = c.reg & 7;
      if (c.mod === 3) {
        const a = getReg(c, c.rm, sz);
        const ah = c.hi;
        const b = op === 0x83 ? fetchImm8s(c, sz) : fetchImm(c, sz);
        const r = alu(c, aop, sz, a, ah, b, c.hi);
        if (aop !== 7) setReg(c, c.rm, sz, r, c.hi);
      } else {
        const lin = eaLin(c);
        const b = op === 0x83 ? fetchImm8s(c, sz) : fetchImm(c, sz);
        const bh = c.hi;
        if (aop !== 7) c.probeWrite(lin, sz); // (see 00-39)
        const a = readMem(c, lin, sz);
        const r = alu(c, aop, sz, a, c.hi, b, bh);
        if (aop !== 7) writeMem(c, lin, sz, r, c.hi);
      }
      return;
    }
    case 0x84: case 0x85: {
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, 0);
      const a = readRM(c, sz);
      const ah = c.hi;
      const b = getReg(c, c.reg, sz);
      setLogic(c, sz, (a & b) >>> 0, (ah & c.hi) >>> 0);
      return;
    }
    case 0x86: case 0x87: {
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, 0);
      const b = getReg(c, c.reg, sz);
      const bh = c.hi;
      if (c.mod === 3) {
        const a = getReg(c, c.rm, sz);
        const ah = c.hi;
        setReg(c, c.rm, sz, b, bh);
        setReg(c, c.reg, sz, a, ah);
      } else {
        const lin = eaLin(c);
        const a = readMem(c, lin, sz);
        const ah = c.hi;
        writeMem(c, lin, sz, b, bh);
        setReg(c, c.reg, sz, a, ah);
      }
      return;
    }
    case 0x88: case 0x89: {
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, 0);
      const v = getReg(c, c.reg, sz);
      writeRM(c, sz, v, c.hi);
      return;
    }
    case 0x8a: case 0x8b: {
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, 0);
      const v = readRM(c, sz);
      setReg(c, c.reg, sz, v, c.hi);
      return;
    }
    case 0x8c: { // MOV r/m, Sreg
      modrm(c, 0);
      const sr = c.reg & 7;
      if (sr > 5) fault(UD);
      const v = s.segSel[sr]!;
      if (c.mod === 3) setReg(c, c.rm, c.opsize, v, 0);
      else writeMem(c, eaLin(c), 2, v, 0);
      return;
    }
    case 0x8d: { // LEA
      modrm(c, 0);
      if (c.mod === 3) fault(UD);
      const sz = c.opsize;
      if (sz === 8) setReg(c, c.reg, 8, c.eaLo, c.eaHi >>> 0);
      else setReg(c, c.reg, sz, sz === 2 ? c.eaLo & 0xffff : c.eaLo, 0);
      return;
    }
    case 0x8e: { // MOV Sreg, r/m
      modrm(c, 0);
      const sr = c.reg & 7;
      if (sr > 5 || sr === 1) fault(UD);
      const sel = readRM(c, 2);
      sregLoad(c, sr, sel);
      return;
    }
    case 0x8f: { // POP r/m
      const sz = stackOpSize(c);
      modrm(c, 0);
      if ((c.reg & 7) !== 0) fault(UD);
      const v = stackPeek(c, sz, 0);
      const vh = c.hi;
      if (c.mod === 3) {
        addSp(c, sz);
        setReg(c, c.rm, sz, v, vh);
        return;
      }
      // an RSP-based address is computed after RSP is incremented
      if (c.eaBase === 4) {
        const t = c.eaHi * TWO32 + c.eaLo + sz;
        c.eaLo = t >>> 0;
        c.eaHi = c.adsize === 8 ? Math.floor(t / TWO32) | 0 : 0;
        if (c.adsize === 2) c.eaLo &= 0xffff;
      }
      writeMem(c, eaLin(c), sz, v, vh);
      addSp(c, sz);
      return;
    }
    case 0x90: {
      if (c.rexB) {
        xchgAcc(c, 8);
        return;
      }
      if (c.rep === 0xf3) c.spinWait(); // PAUSE
      return;
    }
    case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97:
      xchgAcc(c, (op & 7) | c.rexB);
      return;
    case 0x98: { // CBW/CWDE/CDQE
      const sz = c.opsize;
      if (sz === 2) g[0] = (g[0]! & ~0xffff) | (((g[0]! << 24) >> 24) & 0xffff);
      else if (sz === 4) {
        g[0] = (g[0]! << 16) >> 16;
        g[1] = 0;
      } else g[1] = g[0]! >> 31;
      return;
    }
    case 0x99: { // CWD/CDQ/CQO
      const sz = c.opsize;
      if (sz === 2) g[4] = (g[4]! & ~0xffff) | ((g[0]! << 16) >> 31 & 0xffff);
      else if (sz === 4) {
        g[4] = g[0]! >> 31;
        g[5] = 0;
      } else {
        g[4] = g[5] = g[1]! >> 31;
      }
      return;
    }
    case 0x9a: { // CALLF ptr16:16/32
      if (c.long) fault(UD);
      const off = c.opsize === 4 ? c.fetch32() >>> 0 : c.fetch16();
      const sel = c.fetch16();
      s.rip = c.ip;
      farCall(c, sel, off, c.opsize as 2 | 4, c.ip);
      c.ip = s.rip;
      return;
    }
    case 0x9b: // FWAIT
      if ((s.cr0 & 0xa) === 0xa) fault(7);
      c.simd?.fwait?.(s, c.simdMem);
      return;
    case 0x9c: { // PUSHF
      if (s.mode === 6 && ((s.rflagsRest >> 12) & 3) < 3) fault(GP, 0);
      const sz = stackOpSize(c);
      push(c, sz, c.getRflags() & (sz === 2 ? 0xffff : 0xfcffff), 0);
      return;
    }
    case 0x9d: { // POPF
      if (s.mode === 6 && ((s.rflagsRest >> 12) & 3) < 3) fault(GP, 0);
      const sz = stackOpSize(c);
      const v = pop(c, sz);
      popf(c, v, sz);
      return;
    }
    case 0x9e: // SAHF
      c.setArith((c.getArith() & ~0xd5) | ((g[0]! >> 8) & 0xd5));
      return;
    case 0x9f: // LAHF
      g[0] = (g[0]! & ~0xff00) | (((c.getArith() & 0xd5) | 2) << 8);
      return;
    case 0xa0: case 0xa1: case 0xa2: case 0xa3: { // MOV moffs
      const sz = op & 1 ? c.opsize : 1;
      let off: number;
      if (c.adsize === 8) {
        const lo = c.fetch32() >>> 0;
        const hi = c.fetch32();
        off = hi * TWO32 + lo;
      } else off = c.adsize === 4 ? c.fetch32() >>> 0 : c.fetch16();
      const lin = segLin(c, c.seg >= 0 ? c.seg : 3, off);
      if (op < 0xa2) {
        const v = readMem(c, lin, sz);
        setReg(c, 0, sz, v, c.hi);
      } else {
        const v = getReg(c, 0, sz);
        writeMem(c, lin, sz, v, c.hi);
      }
      return;
    }
    case 0xa4: case 0xa5: case 0xa6: case 0xa7: case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf:
      stringOp(c, op & 0xfe, op & 1 ? c.opsize : 1);
      return;
    case 0xa8: case 0xa9: {
      const sz = op & 1 ? c.opsize : 1;
      const b = fetchImm(c, sz);
      const bh = c.hi;
      const a = getReg(c, 0, sz);
      setLogic(c, sz, (a & b) >>> 0, (c.hi & bh) >>> 0);
      return;
    }
    case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
      setReg(c, (op & 7) | c.rexB, 1, c.fetch8(), 0);
      return;
    case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf: {
      const r = (op & 7) | c.rexB;
      const sz = c.opsize;
      if (sz === 8) {
        const lo = c.fetch32();
        const hi = c.fetch32();
        setReg(c, r, 8, lo, hi);
      } else setReg(c, r, sz, sz === 2 ? c.fetch16() : c.fetch32(), 0);
      return;
    }
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, op < 0xd0 ? 1 : 0);
      const sop = c.reg & 7;
      if (c.mod === 3) {
        const v = getReg(c, c.rm, sz);
        const vh = c.hi;
        const n = op < 0xd0 ? c.fetch8() : op < 0xd2 ? 1 : g[2]! & 0xff;
        const r = shift(c, sop, sz, v, vh, n);
        setReg(c, c.rm, sz, r, c.hi);
      } else {
        const lin = eaLin(c);
        const n = op < 0xd0 ? c.fetch8() : op < 0xd2 ? 1 : g[2]! & 0xff;
        c.probeWrite(lin, sz); // a faulting store leaves the flags as they were (see 00-39)
        const v = readMem(c, lin, sz);
        const r = shift(c, sop, sz, v, c.hi, n);
        writeMem(c, lin, sz, r, c.hi);
      }
      return;
    }
    case 0xc2: case 0xc3: { // RET near
      const sz = stackOpSize(c);
      const n = op === 0xc2 ? c.fetch16() : 0;
      const lo = stackPeek(c, sz, 0);
      const target = sz === 8 ? (c.hi | 0) * TWO32 + lo : lo;
      jumpTo(c, target, sz);
      addSp(c, sz + n);
      return;
    }
    case 0xc4: case 0xc5: { // LES/LDS (VEX prefixes in 64-bit mode)
      if (c.long) fault(UD);
      modrm(c, 0);
      if (c.mod === 3) fault(UD);
      loadFarPointer(c, op === 0xc4 ? 0 : 3);
      return;
    }
    case 0xc6: case 0xc7: {
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, immSize(sz));
      if ((c.reg & 7) !== 0) fault(UD);
      if (c.mod === 3) {
        const v = fetchImm(c, sz);
        setReg(c, c.rm, sz, v, c.hi);
      } else {
        const lin = eaLin(c);
        const v = fetchImm(c, sz);
        writeMem(c, lin, sz, v, c.hi);
      }
      return;
    }
    case 0xc8: { // ENTER
      const sz = stackOpSize(c);
      const alloc = c.fetch16();
      const level = c.fetch8() & 31;
      const bp = getReg(c, 5, sz);
      push(c, sz, bp, c.hi);
      const frame = getReg(c, 4, sz);
      const frameHi = c.hi;
      if (level > 0) {
        let cur = sz === 8 ? reg64(c, 5) : bp;
        for (let k = 1; k < level; k++) {
          cur -= sz;
          const lin = c.stackSize === 8 ? cur : (s.segBase[2]! + (c.stackSize === 4 ? cur >>> 0 : cur & 0xffff)) >>> 0;
          const v = readMem(c, lin, sz);
          push(c, sz, v, c.hi);
        }
        push(c, sz, frame, frameHi);
      }
      setReg(c, 5, sz, frame, frameHi);
      addSp(c, -alloc);
      return;
    }
    case 0xc9: { // LEAVE
      const sz = stackOpSize(c);
      const g2 = s.gpr;
      const sp0 = g2[8]!;
      const sp1 = g2[9]!;
      if (c.stackSize === 8) {
        g2[8] = g2[10]!;
        g2[9] = g2[11]!;
      } else if (c.stackSize === 4) g2[8] = g2[10]!;
      else g2[8] = (g2[8]! & ~0xffff) | (g2[10]! & 0xffff);
      let v: number;
      try {
        v = pop(c, sz);
      } catch (e) {
        // a fault in the load leaves RSP as it was (the instruction restarts)
        g2[8] = sp0;
        g2[9] = sp1;
        throw e;
      }
      setReg(c, 5, sz, v, c.hi);
      return;
    }
    case 0xca: case 0xcb: { // RETF
      const n = op === 0xca ? c.fetch16() : 0;
      s.rip = c.ip;
      farReturn(c, c.opsize as 2 | 4 | 8, n);
      c.ip = s.rip;
      return;
    }
    case 0xcc:
      s.rip = c.ip;
      c.softInt(3, EventKind.Software, c.ip);
      c.ip = s.rip;
      return;
    case 0xcd: {
      const v = c.fetch8();
      s.rip = c.ip;
      c.softInt(v, EventKind.Software, c.ip);
      c.ip = s.rip;
      return;
    }
    case 0xce:
      if (c.long) fault(UD);
      if (c.of()) {
        s.rip = c.ip;
        c.softInt(4, EventKind.Software, c.ip);
        c.ip = s.rip;
      }
      return;
    case 0xcf: // IRET
      s.rip = c.ip;
      iret(c, c.opsize as 2 | 4 | 8);
      c.ip = s.rip;
      c.pollCounter = 0;
      return;
    case 0xd4: // AAM
      if (c.long) fault(UD);
      aam(c);
      return;
    case 0xd5: // AAD
      if (c.long) fault(UD);
      aad(c);
      return;
    case 0xd6: // SALC
      if (c.long) fault(UD);
      g[0] = (g[0]! & ~0xff) | (c.cf() ? 0xff : 0);
      return;
    case 0xd7: { // XLAT
      const off = wrapA(c, areg(c, 3) + (g[0]! & 0xff));
      const v = c.read8(segLin(c, c.seg >= 0 ? c.seg : 3, off));
      g[0] = (g[0]! & ~0xff) | v;
      return;
    }
    case 0xd8: case 0xd9: case 0xda: case 0xdb: case 0xdc: case 0xdd: case 0xde: case 0xdf:
      runX87(c, op);
      return;
    case 0xe0: case 0xe1: case 0xe2: { // LOOPNE/LOOPE/LOOP
      const d = (c.fetch8() << 24) >> 24;
      const cnt = wrapA(c, areg(c, 1) - 1);
      setAreg(c, 1, cnt);
      let take = cnt !== 0;
      if (op === 0xe0) take = take && !c.zf();
      else if (op === 0xe1) take = take && c.zf() !== 0;
      if (take) jumpTo(c, c.ip + d, branchSize(c));
      return;
    }
    case 0xe3: { // JCXZ/JECXZ/JRCXZ
      const d = (c.fetch8() << 24) >> 24;
      if (areg(c, 1) === 0) jumpTo(c, c.ip + d, branchSize(c));
      return;
    }
    case 0xe4: case 0xe5: case 0xec: case 0xed: { // IN
      const sz = op & 1 ? (c.opsize === 2 ? 2 : 4) : 1;
      const port = op < 0xe8 ? c.fetch8() : g[4]! & 0xffff;
      checkIo(c, port, sz as 1 | 2 | 4);
      setReg(c, 0, sz, c.portRead(port, sz as 1 | 2 | 4), 0);
      return;
    }
    case 0xe6: case 0xe7: case 0xee: case 0xef: { // OUT
      const sz = op & 1 ? (c.opsize === 2 ? 2 : 4) : 1;
      const port = op < 0xe8 ? c.fetch8() : g[4]! & 0xffff;
      checkIo(c, port, sz as 1 | 2 | 4);
      c.portWrite(port, sz as 1 | 2 | 4, getReg(c, 0, sz));
      return;
    }
    case 0xe8: { // CALL rel
      const sz = stackOpSize(c);
      const d = sz === 2 ? (c.fetch16() << 16) >> 16 : c.fetch32();
      const ret = c.ip;
      const target = ret + d;
      if (sz === 8) {
        if (target < -TWO47 || target >= TWO47) fault(GP, 0);
        push(c, 8, ret >>> 0, Math.floor(ret / TWO32));
      } else push(c, sz, ret, 0);
      jumpTo(c, target, sz);
      return;
    }
    case 0xe9: {
      const sz = branchSize(c);
      const d = sz === 2 ? (c.fetch16() << 16) >> 16 : c.fetch32();
      jumpTo(c, c.ip + d, sz);
      return;
    }
    case 0xea: { // JMPF ptr
      if (c.long) fault(UD);
      const off = c.opsize === 4 ? c.fetch32() >>> 0 : c.fetch16();
      const sel = c.fetch16();
      s.rip = c.ip;
      farJump(c, sel, off, c.opsize as 2 | 4);
      c.ip = s.rip;
      return;
    }
    case 0xeb: {
      const d = (c.fetch8() << 24) >> 24;
      jumpTo(c, c.ip + d, branchSize(c));
      return;
    }
    case 0xf1: // INT1 / ICEBP
      s.rip = c.ip;
      c.softInts++; // delivered like a software interrupt: no single-step trap after it
      deliver(c, 1, -1, EventKind.Exception, c.ip);
      c.ip = s.rip;
      return;
    case 0xf4: // HLT
      requireCpl0(c);
      s.halted = true;
      return;
    case 0xf5: // CMC
      c.setArith(c.getArith() ^ 1);
      return;
    case 0xf6: case 0xf7:
      group3(c, op & 1 ? c.opsize : 1);
      return;
    case 0xf8: c.setArith(c.getArith() & ~1); return;
    case 0xf9: c.setArith(c.getArith() | 1); return;
    case 0xfa: // CLI
      if (!iopl(c)) fault(GP, 0);
      s.rflagsRest &= ~0x200;
      return;
    case 0xfb: // STI
      if (!iopl(c)) fault(GP, 0);
      if (!(s.rflagsRest & 0x200)) {
        s.rflagsRest |= 0x200;
        s.interruptShadow = true;
        c.pollCounter = 1;
      }
      return;
    case 0xfc:
      s.rflagsRest &= ~0x400;
      c.directionChanged();
      return;
    case 0xfd:
      s.rflagsRest |= 0x400;
      c.directionChanged();
      return;
    case 0xfe: { // INC/DEC r/m8
      modrm(c, 0);
      const r = c.reg & 7;
      if (r > 1) fault(UD);
      if (c.mod === 3) setReg(c, c.rm, 1, incdec(c, 1, getReg(c, c.rm, 1), 0, r === 1), 0);
      else {
        const lin = eaLin(c);
        c.write8(lin, incdec(c, 1, c.read8(lin), 0, r === 1));
      }
      return;
    }
    case 0xff:
      group5(c);
      return;
    default:
      fault(UD);
  }
}

function xchgAcc(c: Cpu, r: number): void {
  const sz = c.opsize;
  const a = getReg(c, 0, sz);
  const ah = c.hi;
  const b = getReg(c, r, sz);
  setReg(c, 0, sz, b, c.hi);
  setReg(c, r, sz, a, ah);
}
