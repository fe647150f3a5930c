/**
 * The interpreter's two-byte opcode map (0F xx), called by exec.ts's `exec1`; the 0F 38 and
 * 0F 3A maps and the SSE/MMX opcodes go to the SIMD unit.
 */
import type { Cpu } from './cpu.js';
import { features } from '../features.js';
import { lar, lsl } from '../system/segments.js';
import { writeCr, readCr, writeDr, readDr, clts } from '../system/control.js';
import { rdmsr, wrmsr } from '../system/msr.js';
import { cpuid } from '../system/cpuid.js';
import { syscall, sysret, sysenter, sysexit } from '../system/syscall.js';
import * as Operands from './ops/operands.js';
import * as Alu from './ops/alu.js';
import * as Shift from './ops/shift.js';
import * as MulDiv from './ops/muldiv.js';
import * as Stack from './ops/stack.js';
import * as Branch from './ops/branch.js';
import * as Bits from './ops/bits.js';
import * as System from './ops/system.js';
import * as Simd from './ops/simd.js';
import * as Crc32 from './ops/crc32.js';

// The group functions as module-local consts. exec1/exec0F are too big for V8 to inline into, so
// every call leaves the function, and a call through an imported binding first loads the target
// through the module's import cell, one through a local const from a context slot: calling
// through imports made the interpreter ~4% slower on a loop of integer code. Keep this shape.
const { fault, getReg, setReg, modrm, modrmReg, eaLin, readMem, writeMem, readRM, writeRM } = Operands;
const { alu } = Alu;
const { shiftDouble } = Shift;
const { imulTrunc } = MulDiv;
const { push, stackPeek, addSp, stackOpSize } = Stack;
const { jumpTo, branchSize } = Branch;
const { bsf, bsr, popcnt32, bitOp, bswap32 } = Bits;
const { requireCpl0, requireProtected, sregLoad, loadFarPointer, group6, group7, group9, group15 } = System;
const { runSse } = Simd;
const { crc32 } = Crc32;

const UD = 6;
const GP = 13;

// ==== two-byte opcodes ======================================================================

export function exec0F(c: Cpu): void {
  const s = c.s;
  const g = s.gpr;
  const op = c.fetch8();
  switch (op) {
    case 0x00: group6(c); return;
    case 0x01: group7(c); return;
    case 0x02: case 0x03: { // LAR / LSL
      requireProtected(c);
      modrm(c, 0);
      const sel = readRM(c, 2);
      const v = op === 2 ? lar(c, sel) : lsl(c, sel);
      if (v === -1) c.setArith(c.getArith() & ~0x40);
      else {
        c.setArith(c.getArith() | 0x40);
        setReg(c, c.reg, c.opsize === 2 ? 2 : 4, v >>> 0, 0);
      }
      return;
    }
    case 0x05:
      if (!c.long && !(s.efer & 0x400)) fault(UD);
      syscall(c, c.ip);
      c.ip = s.rip;
      return;
    case 0x06:
      requireCpl0(c);
      clts(c);
      return;
    case 0x07:
      sysret(c, c.opsize === 8 ? 8 : 4);
      c.ip = s.rip;
      c.pollCounter = 0;
      return;
    case 0x08: case 0x09: // INVD / WBINVD
      requireCpl0(c);
      return;
    case 0x0b: case 0xb9: // UD2 / UD1
      fault(UD);
      return;
    case 0x0d: // PREFETCH(W)
      modrm(c, 0);
      return;
    case 0x18: case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f: // hint NOPs
      modrm(c, 0);
      return;
    case 0x20: case 0x22: { // MOV r, CRn / MOV CRn, r
      modrmReg(c);
      requireCpl0(c);
      let n = c.reg;
      if (c.lock && !c.long) n |= 8; // AMD alternate encoding of CR8
      if (n !== 0 && n !== 2 && n !== 3 && n !== 4 && n !== 8) fault(UD);
      if (op === 0x20) {
        const lo = readCr(c, n);
        if (c.long) setReg(c, c.rm, 8, lo >>> 0, c.scratchHi >>> 0);
        else setReg(c, c.rm, 4, lo >>> 0, 0);
      } else {
        const lo = g[2 * c.rm]! >>> 0;
        const hi = c.long ? g[2 * c.rm + 1]! >>> 0 : 0;
        writeCr(c, n, lo, hi);
      }
      return;
    }
    case 0x21: case 0x23: { // MOV r, DRn / MOV DRn, r
      modrmReg(c);
      requireCpl0(c);
      const n = c.reg;
      if (n > 7) fault(UD);
      if (op === 0x21) {
        const lo = readDr(c, n);
        if (c.long) setReg(c, c.rm, 8, lo >>> 0, c.scratchHi >>> 0);
        else setReg(c, c.rm, 4, lo >>> 0, 0);
      } else writeDr(c, n, g[2 * c.rm]! >>> 0, c.long ? g[2 * c.rm + 1]! >>> 0 : 0);
      return;
    }
    case 0x30:
      requireCpl0(c);
      wrmsr(c);
      return;
    case 0x31: // RDTSC
      if (s.cr4 & 4 && s.cpl !== 0) fault(GP, 0);
      g[0] = c.readTsc();
      g[1] = 0;
      g[4] = c.scratchHi;
      g[5] = 0;
      return;
    case 0x32:
      requireCpl0(c);
      rdmsr(c);
      return;
    case 0x33: // RDPMC
      fault(GP, 0);
      return;
    case 0x34:
      if (!features.sep) fault(UD);
      sysenter(c);
      c.ip = s.rip;
      return;
    case 0x35:
      if (!features.sep) fault(UD);
      sysexit(c, c.opsize === 8 ? 8 : 4);
      c.ip = s.rip;
      return;
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47:
    case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f: { // CMOVcc
      const sz = c.opsize;
      modrm(c, 0);
      const v = readRM(c, sz);
      const vh = c.hi;
      if (c.cond(op & 15)) setReg(c, c.reg, sz, v, vh);
      else if (sz === 4) g[2 * c.reg + 1] = 0;
      return;
    }
    case 0x80: case 0x81: case 0x82: case 0x83: case 0x84: case 0x85: case 0x86: case 0x87:
    case 0x88: case 0x89: case 0x8a: case 0x8b: case 0x8c: case 0x8d: case 0x8e: case 0x8f: {
      const sz = branchSize(c);
      const d = sz === 2 ? (c.fetch16() << 16) >> 16 : c.fetch32();
      if (c.cond(op & 15)) jumpTo(c, c.ip + d, sz);
      return;
    }
    case 0x90: case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97:
    case 0x98: case 0x99: case 0x9a: case 0x9b: case 0x9c: case 0x9d: case 0x9e: case 0x9f:
      modrm(c, 0);
      writeRM(c, 1, c.cond(op & 15) ? 1 : 0, 0);
      return;
    case 0xa0: case 0xa8: { // PUSH FS/GS
      const sz = stackOpSize(c);
      push(c, sz, s.segSel[op === 0xa0 ? 4 : 5]!, 0);
      return;
    }
    case 0xa1: case 0xa9: { // POP FS/GS
      const sz = stackOpSize(c);
      const sel = stackPeek(c, sz, 0) & 0xffff;
      sregLoad(c, op === 0xa1 ? 4 : 5, sel);
      addSp(c, sz);
      return;
    }
    case 0xa2:
      cpuid(c);
      return;
    case 0xa3: case 0xab: case 0xb3: case 0xbb: { // BT/BTS/BTR/BTC r/m, r
      const sz = c.opsize;
      modrm(c, 0);
      const off = getReg(c, c.reg, sz);
      bitOp(c, op === 0xa3 ? 0 : op === 0xab ? 1 : op === 0xb3 ? 2 : 3, sz, off, c.hi, true);
      return;
    }
    case 0xba: { // BT/BTS/BTR/BTC r/m, imm8
      const sz = c.opsize;
      modrm(c, 1);
      const bop = c.reg & 7;
      if (bop < 4) fault(UD);
      const imm = c.fetch8();
      bitOp(c, bop - 4, sz, imm, 0, false);
      return;
    }
    case 0xa4: case 0xa5: case 0xac: case 0xad: { // SHLD/SHRD
      const sz = c.opsize;
      const immForm = (op & 1) === 0;
      modrm(c, immForm ? 1 : 0);
      const src = getReg(c, c.reg, sz);
      const srcHi = c.hi;
      if (c.mod === 3) {
        const d = getReg(c, c.rm, sz);
        const dh = c.hi;
        const n = immForm ? c.fetch8() : g[2]! & 0xff;
        const r = shiftDouble(c, op < 0xa8, sz, d, dh, src, srcHi, n);
        setReg(c, c.rm, sz, r, c.hi);
      } else {
        const lin = eaLin(c);
        const n = immForm ? c.fetch8() : g[2]! & 0xff;
        c.probeWrite(lin, sz); // a faulting store leaves the flags as they were
        const d = readMem(c, lin, sz);
        const r = shiftDouble(c, op < 0xa8, sz, d, c.hi, src, srcHi, n);
        writeMem(c, lin, sz, r, c.hi);
      }
      return;
    }
    case 0xaa: // RSM
      fault(UD);
      return;
    case 0xae:
      group15(c);
      return;
    case 0xaf: { // IMUL r, r/m
      const sz = c.opsize;
      modrm(c, 0);
      const b = readRM(c, sz);
      const bh = c.hi;
      const a = getReg(c, c.reg, sz);
      const r = imulTrunc(c, sz, a, c.hi, b, bh);
      setReg(c, c.reg, sz, r, c.hi);
      return;
    }
    case 0xb0: case 0xb1: { // CMPXCHG
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, 0);
      const src = getReg(c, c.reg, sz);
      const srcHi = c.hi;
      const acc = getReg(c, 0, sz);
      const accHi = c.hi;
      if (c.mod === 3) {
        const d = getReg(c, c.rm, sz);
        const dh = c.hi;
        alu(c, 7, sz, acc, accHi, d, dh);
        if (c.zf()) setReg(c, c.rm, sz, src, srcHi);
        else setReg(c, 0, sz, d, dh);
      } else {
        const lin = eaLin(c);
        c.probeWrite(lin, sz); // the destination is written either way: a fault comes before the flags
        const d = readMem(c, lin, sz);
        const dh = c.hi;
        alu(c, 7, sz, acc, accHi, d, dh);
        if (c.zf()) writeMem(c, lin, sz, src, srcHi);
        else {
          writeMem(c, lin, sz, d, dh);
          setReg(c, 0, sz, d, dh);
        }
      }
      return;
    }
    case 0xb2: case 0xb4: case 0xb5: { // LSS/LFS/LGS
      modrm(c, 0);
      if (c.mod === 3) fault(UD);
      loadFarPointer(c, op === 0xb2 ? 2 : op === 0xb4 ? 4 : 5);
      return;
    }
    case 0xb6: case 0xb7: case 0xbe: case 0xbf: { // MOVZX/MOVSX
      const sz = c.opsize;
      const ssz = op & 1 ? 2 : 1;
      modrm(c, 0);
      let v = readRM(c, ssz);
      let vh = 0;
      if (op >= 0xbe) {
        const bits = ssz * 8;
        v = (v << (32 - bits)) >> (32 - bits);
        vh = v < 0 ? 0xffffffff : 0;
        v = sz === 2 ? v & 0xffff : v >>> 0;
      }
      setReg(c, c.reg, sz, v, vh);
      return;
    }
    case 0xb8: { // POPCNT (F3)
      if (c.rep !== 0xf3 || !features.popcnt) fault(UD);
      const sz = c.opsize;
      modrm(c, 0);
      const v = readRM(c, sz);
      const n = popcnt32(v) + (sz === 8 ? popcnt32(c.hi) : 0);
      setReg(c, c.reg, sz, n, 0);
      c.setArith(v === 0 && (sz !== 8 || c.hi === 0) ? 0x40 : 0);
      return;
    }
    case 0xbc: case 0xbd: { // BSF/BSR (TZCNT/LZCNT when advertised)
      const sz = c.opsize;
      modrm(c, 0);
      const v = readRM(c, sz);
      const vh = sz === 8 ? c.hi : 0;
      if (c.rep === 0xf3 && ((op === 0xbc && features.bmi1) || (op === 0xbd && features.lzcnt))) {
        const bits = sz * 8;
        let n: number;
        if ((v | vh) === 0) n = bits;
        else if (op === 0xbc) n = bsf(v, vh, sz);
        else n = bits - 1 - bsr(v, vh, sz);
        setReg(c, c.reg, sz, n, 0);
        c.setArith((n === bits ? 1 : 0) | (n === 0 ? 0x40 : 0));
        return;
      }
      if ((v | vh) === 0) {
        c.setArith((c.getArith() & ~0x40) | 0x40);
        return;
      }
      const n = op === 0xbc ? bsf(v, vh, sz) : bsr(v, vh, sz);
      setReg(c, c.reg, sz, n, 0);
      c.setArith(c.getArith() & ~0x40);
      return;
    }
    case 0xc0: case 0xc1: { // XADD
      const sz = op & 1 ? c.opsize : 1;
      modrm(c, 0);
      const src = getReg(c, c.reg, sz);
      const srcHi = c.hi;
      if (c.mod === 3) {
        const d = getReg(c, c.rm, sz);
        const dh = c.hi;
        const r = alu(c, 0, sz, d, dh, src, srcHi);
        const rh = c.hi;
        setReg(c, c.reg, sz, d, dh);
        setReg(c, c.rm, sz, r, rh);
      } else {
        const lin = eaLin(c);
        c.probeWrite(lin, sz); // a faulting store leaves the flags as they were
        const d = readMem(c, lin, sz);
        const dh = c.hi;
        const r = alu(c, 0, sz, d, dh, src, srcHi);
        writeMem(c, lin, sz, r, c.hi);
        setReg(c, c.reg, sz, d, dh);
      }
      return;
    }
    case 0xc7:
      group9(c);
      return;
    case 0xc8: case 0xc9: case 0xca: case 0xcb: case 0xcc: case 0xcd: case 0xce: case 0xcf: { // BSWAP
      const r = (op & 7) | c.rexB;
      const lo = g[2 * r]!;
      if (c.opsize === 8) {
        const hi = g[2 * r + 1]!;
        g[2 * r] = bswap32(hi);
        g[2 * r + 1] = bswap32(lo);
      } else if (c.opsize === 4) {
        g[2 * r] = bswap32(lo);
        g[2 * r + 1] = 0;
      } else g[2 * r] = lo & ~0xffff; // BSWAP r16 is undefined: zero (as hardware does)
      return;
    }
    case 0x38: {
      const op3 = c.fetch8();
      if (op3 === 0xf0 || op3 === 0xf1) { // CRC32 (F2); MOVBE (not offered: features.movbe)
        if (c.rep !== 0xf2) fault(UD);
        crc32(c, op3);
        return;
      }
      runSse(c, 2, op3);
      return;
    }
    case 0x3a:
      runSse(c, 3, c.fetch8());
      return;
    default:
      if (c.simd && c.simd.handles0F(op)) {
        runSse(c, 1, op);
        return;
      }
      fault(UD);
  }
}
