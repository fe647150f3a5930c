/**
 * Decoder and executor of the integer instruction set, one instruction per `step(c)`: legacy
 * prefixes, REX, ModRM/SIB/displacement (16/32/64-bit addressing, RIP-relative), immediates,
 * then the instruction. System instructions call the system module; x87/SSE/MMX opcodes go to
 * the SIMD unit with a decoded `SimdInsn`.
 *
 * Decoding state lives in reused fields of the Cpu (`ip`, `opsize`, `rex`, `mod/reg/rm`,
 * `eaLo/eaHi`...). `c.ip` is the decode pointer; `s.rip = c.ip` when the instruction completes.
 * Handlers that call system functions which set s.rip themselves copy it back into c.ip.
 */
import type { Cpu } from './cpu.js';
import { F_ADD, F_SUB, F_LOGIC, F_INC, F_DEC, TLB_MASK, P_SR, P_UR, P_SW, P_UW, PARITY as PARITY_TABLE } from './consts.js';
import { CpuFault, EventKind } from '../system-api.js';
import { type SimdInsn } from '../simd-api.js';
import { features } from '../features.js';
import { deliver, iret } from '../system/interrupts.js';
import {
  loadSegment, farJump, farCall, farReturn, lgdt, lidt, sgdt, sidt, lldt, ltr, lar, lsl, verr, verw,
} from '../system/segments.js';
import { writeCr, readCr, writeDr, readDr, clts, lmsw } from '../system/control.js';
import { rdmsr, wrmsr } from '../system/msr.js';
import { cpuid } from '../system/cpuid.js';
import { syscall, sysret, swapgs, sysenter, sysexit } from '../system/syscall.js';
import { checkIo } from '../system/io.js';

const TWO32 = 4294967296;
const TWO47 = 140737488355328;
const MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];
const SIGN = [0, 0x80, 0x8000, 0, 0x80000000, 0, 0, 0, 0x80000000];

const UD = 6;
const GP = 13;

function fault(vector: number, code = -1): never {
  throw new CpuFault(vector, code);
}

// ---- the SIMD instruction record (reused) ----
const simdInsn: SimdInsn = { opcode: 0, map: 0, prefix: 0, mod: 0, reg: 0, rm: 0, rexW: false, opsize: 4, ea: 0, imm8: 0, long: false };

// ==== registers =============================================================================

/** Read register r at `size` (unsigned); 64-bit: lo returned, hi in c.hi. */
export function getReg(c: Cpu, r: number, size: number): number {
  const g = c.s.gpr;
  switch (size) {
    case 1:
      return c.rex !== 0 || r < 4 ? g[2 * r]! & 0xff : (g[2 * (r - 4)]! >> 8) & 0xff;
    case 2:
      return g[2 * r]! & 0xffff;
    case 4:
      return g[2 * r]! >>> 0;
    default:
      c.hi = g[2 * r + 1]! >>> 0;
      return g[2 * r]! >>> 0;
  }
}

/** Write register r at `size` (32-bit writes zero the high half, 8/16-bit merge). */
export function setReg(c: Cpu, r: number, size: number, v: number, hi: number): void {
  const g = c.s.gpr;
  switch (size) {
    case 1:
      if (c.rex !== 0 || r < 4) g[2 * r] = (g[2 * r]! & ~0xff) | (v & 0xff);
      else g[2 * (r - 4)] = (g[2 * (r - 4)]! & ~0xff00) | ((v & 0xff) << 8);
      return;
    case 2:
      g[2 * r] = (g[2 * r]! & ~0xffff) | (v & 0xffff);
      return;
    case 4:
      g[2 * r] = v;
      g[2 * r + 1] = 0;
      return;
    default:
      g[2 * r] = v;
      g[2 * r + 1] = hi;
  }
}

/** A 64-bit register as a signed number (exact when canonical). */
function reg64(c: Cpu, r: number): number {
  const g = c.s.gpr;
  return g[2 * r + 1]! * TWO32 + (g[2 * r]! >>> 0);
}


// ==== effective addresses ===================================================================

/** Decode ModRM (+SIB, displacement). `immBytes` = immediate bytes that follow (RIP-relative). */
function modrm(c: Cpu, immBytes: number): void {
  const b = c.fetch8();
  const mod = b >> 6;
  c.mod = mod;
  c.reg = ((b >> 3) & 7) | c.rexR;
  const rm = b & 7;
  if (mod === 3) {
    c.rm = rm | c.rexB;
    return;
  }
  c.rm = rm;
  c.eaBase = -1;
  const g = c.s.gpr;
  if (c.adsize === 2) {
    let ea = 0;
    let seg = 3;
    switch (rm) {
      case 0: ea = g[6]! + g[12]!; break; // BX+SI
      case 1: ea = g[6]! + g[14]!; break; // BX+DI
      case 2: ea = g[10]! + g[12]!; seg = 2; break; // BP+SI
      case 3: ea = g[10]! + g[14]!; seg = 2; break; // BP+DI
      case 4: ea = g[12]!; break;
      case 5: ea = g[14]!; break;
      case 6:
        if (mod === 0) ea = c.fetch16();
        else {
          ea = g[10]!;
          seg = 2;
        }
        break;
      default: ea = g[6]!; break;
    }
    if (mod === 1) ea += (c.fetch8() << 24) >> 24;
    else if (mod === 2) ea += c.fetch16();
    c.eaLo = ea & 0xffff;
    c.eaHi = 0;
    c.eaSeg = seg;
    return;
  }
  let lo = 0;
  let hi = 0;
  let seg = 3;
  let base: number;
  if (rm === 4) {
    const sib = c.fetch8();
    const scale = sib >> 6;
    const index = ((sib >> 3) & 7) | c.rexX;
    base = (sib & 7) | c.rexB;
    if (index !== 4) {
      const m = 1 << scale;
      const l = (g[2 * index]! >>> 0) * m;
      lo = l;
      hi = g[2 * index + 1]! * m;
    }
    if ((base & 7) === 5 && mod === 0) {
      lo += c.fetch32();
    } else {
      lo += g[2 * base]! >>> 0;
      hi += g[2 * base + 1]!;
      if (base === 4 || base === 5) seg = 2;
      c.eaBase = base;
    }
  } else if (rm === 5 && mod === 0) {
    const disp = c.fetch32();
    if (c.long) {
      const t = c.ip + immBytes + disp;
      if (c.adsize === 8) {
        c.eaLo = t >>> 0;
        c.eaHi = Math.floor(t / TWO32) | 0;
      } else {
        c.eaLo = t >>> 0;
        c.eaHi = 0;
      }
      c.eaSeg = 3;
      return;
    }
    c.eaLo = disp >>> 0;
    c.eaHi = 0;
    c.eaSeg = 3;
    return;
  } else {
    base = rm | c.rexB;
    lo = g[2 * base]! >>> 0;
    hi = g[2 * base + 1]!;
    if (base === 4 || base === 5) seg = 2;
    c.eaBase = base;
  }
  if (mod === 1) lo += (c.fetch8() << 24) >> 24;
  else if (mod === 2) lo += c.fetch32();
  c.eaSeg = seg;
  if (c.adsize === 8) {
    c.eaHi = (hi + Math.floor(lo / TWO32)) | 0;
    c.eaLo = lo >>> 0;
  } else {
    c.eaLo = lo >>> 0;
    c.eaHi = 0;
  }
}

/** ModRM of MOV CR/DR: always a register operand whatever `mod` says. */
function modrmReg(c: Cpu): void {
  const b = c.fetch8();
  c.mod = 3;
  c.reg = ((b >> 3) & 7) | c.rexR;
  c.rm = (b & 7) | c.rexB;
}

/** Linear address of the decoded memory operand (segment base, canonical check). */
function eaLin(c: Cpu): number {
  const seg = c.seg >= 0 ? c.seg : c.eaSeg;
  if (c.long) {
    let lin = c.eaHi * TWO32 + c.eaLo;
    if (seg >= 4) lin += c.s.segBase[seg]!;
    if (lin < -TWO47 || lin >= TWO47) fault(seg === 2 ? 12 : GP, 0);
    return lin;
  }
  return (c.s.segBase[seg]! + c.eaLo) >>> 0;
}

/** Linear address of seg:offset for a non-ModRM operand (string ops, moffs, XLAT). */
function segLin(c: Cpu, seg: number, off: number): number {
  if (c.long) {
    let lin = off;
    if (seg >= 4) lin += c.s.segBase[seg]!;
    if (lin < -TWO47 || lin >= TWO47) fault(seg === 2 ? 12 : GP, 0);
    return lin;
  }
  return (c.s.segBase[seg]! + off) >>> 0;
}

// ==== memory by size ========================================================================

function readMem(c: Cpu, lin: number, size: number): number {
  switch (size) {
    case 1: return c.read8(lin);
    case 2: return c.read16(lin);
    case 4: return c.read32(lin);
    default: return c.read64(lin);
  }
}

function writeMem(c: Cpu, lin: number, size: number, v: number, hi: number): void {
  switch (size) {
    case 1: c.write8(lin, v); return;
    case 2: c.write16(lin, v); return;
    case 4: c.write32(lin, v); return;
    default: c.write64(lin, v, hi);
  }
}

/** Read the r/m operand (register or memory). */
function readRM(c: Cpu, size: number): number {
  if (c.mod === 3) return getReg(c, c.rm, size);
  return readMem(c, eaLin(c), size);
}

function writeRM(c: Cpu, size: number, v: number, hi: number): void {
  if (c.mod === 3) setReg(c, c.rm, size, v, hi);
  else writeMem(c, eaLin(c), size, v, hi);
}

// ==== immediates ============================================================================

function immSize(size: number): number {
  return size === 2 ? 2 : size === 1 ? 1 : 4;
}

/** Fetch an immediate of operand size (imm32 sign-extended for 64-bit); hi in c.hi. */
function fetchImm(c: Cpu, size: number): number {
  switch (size) {
    case 1: c.hi = 0; return c.fetch8();
    case 2: c.hi = 0; return c.fetch16();
    case 4: c.hi = 0; return c.fetch32() >>> 0;
    default: {
      const v = c.fetch32();
      c.hi = v < 0 ? 0xffffffff : 0;
      return v >>> 0;
    }
  }
}

/** Fetch imm8 sign-extended to `size`; hi in c.hi. */
function fetchImm8s(c: Cpu, size: number): number {
  const v = (c.fetch8() << 24) >> 24;
  c.hi = v < 0 && size === 8 ? 0xffffffff : 0;
  return (v & MASK[size]!) >>> 0;
}

// ==== ALU ===================================================================================

/** ADD/OR/ADC/SBB/AND/SUB/XOR/CMP (op 0..7). Result lo returned, hi in c.hi. Sets lazy flags. */
export function alu(c: Cpu, op: number, sz: number, a: number, ah: number, b: number, bh: number): number {
  let r: number;
  let rh = 0;
  switch (op) {
    case 0:
    case 2: {
      const cin = op === 2 ? c.cf() : 0;
      if (sz === 8) {
        const l = a + b + cin;
        r = l >>> 0;
        rh = (ah + bh + (l > 0xffffffff ? 1 : 0)) >>> 0;
      } else r = sz === 4 ? (a + b + cin) >>> 0 : (a + b + cin) & MASK[sz]!;
      c.fOp = F_ADD;
      c.fCin = cin;
      break;
    }
    case 3:
    case 5:
    case 7: {
      const cin = op === 3 ? c.cf() : 0;
      if (sz === 8) {
        const l = a - b - cin;
        r = l >>> 0;
        rh = (ah - bh - (l < 0 ? 1 : 0)) >>> 0;
      } else r = sz === 4 ? (a - b - cin) >>> 0 : (a - b - cin) & MASK[sz]!;
      c.fOp = F_SUB;
      c.fCin = cin;
      break;
    }
    case 1:
      r = (a | b) >>> 0;
      rh = (ah | bh) >>> 0;
      c.fOp = F_LOGIC;
      break;
    case 4:
      r = (a & b) >>> 0;
      rh = (ah & bh) >>> 0;
      c.fOp = F_LOGIC;
      break;
    default:
      r = (a ^ b) >>> 0;
      rh = (ah ^ bh) >>> 0;
      c.fOp = F_LOGIC;
      break;
  }
  c.fSz = sz;
  c.fA = a;
  c.fAHi = ah;
  c.fB = b;
  c.fBHi = bh;
  c.fRes = r;
  c.fResHi = rh;
  c.hi = rh;
  return r;
}

/** Set lazy flags for a logic result (TEST/AND...). */
function setLogic(c: Cpu, sz: number, r: number, rh: number): void {
  c.fOp = F_LOGIC;
  c.fSz = sz;
  c.fRes = r;
  c.fResHi = rh;
  c.fA = c.fB = c.fAHi = c.fBHi = 0;
}

/** Flags from a result (SF ZF PF) plus explicit CF/OF/AF: eager. */
function szp(sz: number, r: number, rh: number): number {
  let f = PARITY_TABLE[r & 0xff]! << 2;
  if (sz === 8) {
    if ((r | rh) === 0) f |= 0x40;
    if (rh & 0x80000000) f |= 0x80;
  } else {
    if ((r & MASK[sz]!) === 0) f |= 0x40;
    if (r & SIGN[sz]!) f |= 0x80;
  }
  return f;
}


export function incdec(c: Cpu, sz: number, a: number, ah: number, dec: boolean): number {
  const cf = c.cf();
  let r: number;
  let rh = 0;
  if (sz === 8) {
    if (dec) {
      r = (a - 1) >>> 0;
      rh = (a === 0 ? ah - 1 : ah) >>> 0;
    } else {
      r = (a + 1) >>> 0;
      rh = (r === 0 ? ah + 1 : ah) >>> 0;
    }
  } else r = (dec ? a - 1 : a + 1) & MASK[sz]!;
  if (sz === 4) r >>>= 0;
  c.fOp = dec ? F_DEC : F_INC;
  c.fCin = cf;
  c.fSz = sz;
  c.fA = a;
  c.fAHi = ah;
  c.fB = 1;
  c.fBHi = 0;
  c.fRes = r;
  c.fResHi = rh;
  c.hi = rh;
  return r;
}

export function neg(c: Cpu, sz: number, a: number, ah: number): number {
  return alu(c, 5, sz, 0, 0, a, ah);
}

// ==== shifts and rotates ====================================================================

/** 64-bit shift helpers on halves; n in 0..63. Result lo; hi in c.hi. */
function shl64(c: Cpu, lo: number, hi: number, n: number): number {
  if (n === 0) {
    c.hi = hi >>> 0;
    return lo >>> 0;
  }
  if (n < 32) {
    c.hi = ((hi << n) | (lo >>> (32 - n))) >>> 0;
    return (lo << n) >>> 0;
  }
  c.hi = (lo << (n - 32)) >>> 0;
  return 0;
}

function shr64(c: Cpu, lo: number, hi: number, n: number, arith: boolean): number {
  if (n === 0) {
    c.hi = hi >>> 0;
    return lo >>> 0;
  }
  if (n < 32) {
    c.hi = arith ? (hi >> n) >>> 0 : hi >>> n;
    return ((lo >>> n) | (hi << (32 - n))) >>> 0;
  }
  c.hi = arith ? (hi >> 31) >>> 0 : 0;
  return (arith ? hi >> (n - 32) : hi >>> (n - 32)) >>> 0;
}

function bit64(lo: number, hi: number, k: number): number {
  return k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;
}

/**
 * Group-2 shift/rotate: op 0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 6 SAL(=SHL), 7 SAR.
 * Returns the result (hi in c.hi); flags updated (unchanged when the masked count is 0).
 */
export function shift(c: Cpu, op: number, sz: number, v: number, vh: number, count: number): number {
  const bits = sz * 8;
  let n = count & (sz === 8 ? 63 : 31);
  if (n === 0) {
    c.hi = vh;
    return v;
  }
  // rotates keep SF/ZF/AF/PF (and RCL/RCR read CF); SHL/SHR/SAR replace all six
  const flags = op < 4 ? c.getArith() : 0;
  let cf = 0;
  let of = 0;
  let r: number;
  let rh = 0;
  const topBit = bits - 1;
  switch (op) {
    case 0: // ROL
    case 1: { // ROR
      const k = n % bits;
      if (sz === 8) {
        if (k === 0) {
          r = v;
          rh = vh;
        } else if (op === 0) {
          const a = shl64(c, v, vh, k);
          const ah = c.hi;
          const b = shr64(c, v, vh, 64 - k, false);
          r = (a | b) >>> 0;
          rh = (ah | c.hi) >>> 0;
        } else {
          const a = shr64(c, v, vh, k, false);
          const ah = c.hi;
          const b = shl64(c, v, vh, 64 - k);
          r = (a | b) >>> 0;
          rh = (ah | c.hi) >>> 0;
        }
      } else {
        const m = MASK[sz]!;
        if (k === 0) r = v;
        else if (op === 0) r = ((v << k) | (v >>> (bits - k))) & m;
        else r = ((v >>> k) | (v << (bits - k))) & m;
        r >>>= 0;
      }
      const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
      if (op === 0) {
        cf = r & 1;
        of = msb ^ cf;
      } else {
        cf = msb;
        const msb1 = sz === 8 ? (rh >>> 30) & 1 : (r >>> (topBit - 1)) & 1;
        of = msb ^ msb1;
      }
      break;
    }
    case 2: // RCL
    case 3: { // RCR
      if (sz === 1) n %= 9;
      else if (sz === 2) n %= 17;
      let lo = v;
      let hi = vh;
      cf = flags & 1;
      if (op === 2) {
        for (let i = 0; i < n; i++) {
          const out = sz === 8 ? hi >>> 31 : (lo >>> topBit) & 1;
          if (sz === 8) {
            hi = ((hi << 1) | (lo >>> 31)) >>> 0;
            lo = ((lo << 1) | cf) >>> 0;
          } else lo = (((lo << 1) | cf) & MASK[sz]!) >>> 0;
          cf = out;
        }
        r = lo;
        rh = hi;
        const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
        of = msb ^ cf;
      } else {
        const msb0 = sz === 8 ? hi >>> 31 : (lo >>> topBit) & 1;
        for (let i = 0; i < n; i++) {
          const out = lo & 1;
          if (sz === 8) {
            lo = ((lo >>> 1) | (hi << 31)) >>> 0;
            hi = ((hi >>> 1) | (cf << 31)) >>> 0;
          } else lo = ((lo >>> 1) | (cf << topBit)) >>> 0;
          cf = out;
        }
        r = lo;
        rh = hi;
        const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
        const msb1 = sz === 8 ? (rh >>> 30) & 1 : (r >>> (topBit - 1)) & 1;
        void msb0;
        of = msb ^ msb1;
      }
      break;
    }
    case 4:
    case 6: { // SHL
      if (sz === 8) {
        r = shl64(c, v, vh, n);
        rh = c.hi;
        cf = bit64(v, vh, 64 - n);
      } else {
        if (n >= 32) {
          r = 0;
          cf = n === 32 && sz === 4 ? v & 1 : 0;
        } else {
          r = (v << n) & MASK[sz]!;
          r >>>= 0;
          cf = n <= bits ? (v >>> (bits - n)) & 1 : 0;
        }
      }
      const msb = sz === 8 ? rh >>> 31 : (r >>> topBit) & 1;
      of = msb ^ cf;
      c.setArith(szp(sz, r, rh) | cf | (of << 11));
      c.hi = rh;
      return r;
    }
    case 5: { // SHR
      if (sz === 8) {
        r = shr64(c, v, vh, n, false);
        rh = c.hi;
        cf = bit64(v, vh, n - 1);
      } else {
        r = n >= bits ? 0 : v >>> n;
        cf = n <= bits ? (v >>> (n - 1)) & 1 : 0;
        if (n > 32) cf = 0;
      }
      of = sz === 8 ? vh >>> 31 : (v >>> topBit) & 1;
      c.setArith(szp(sz, r, rh) | cf | (of << 11));
      c.hi = rh;
      return r;
    }
    default: { // SAR
      if (sz === 8) {
        r = shr64(c, v, vh, n, true);
        rh = c.hi;
        cf = bit64(v, vh, n - 1);
        if (n - 1 >= 64) cf = vh >>> 31;
      } else {
        const sv = (v << (32 - bits)) >> (32 - bits); // sign-extend
        const k = n >= bits ? bits - 1 : n;
        r = (sv >> k) & MASK[sz]!;
        r >>>= 0;
        cf = n >= bits ? (sv >>> 31) & 1 : (sv >> (n - 1)) & 1;
      }
      of = 0;
      c.setArith(szp(sz, r, rh) | cf);
      c.hi = rh;
      return r;
    }
  }
  c.setArith((flags & ~0x801) | cf | (of << 11));
  c.hi = rh;
  return r;
}

/** SHLD/SHRD: dst, src, count. Returns result (hi in c.hi). */
function shiftDouble(c: Cpu, left: boolean, sz: number, d: number, dh: number, s: number, sh: number, count: number): number {
  const n = count & (sz === 8 ? 63 : 31);
  if (n === 0) {
    c.hi = dh;
    return d;
  }
  const bits = sz * 8;
  let r: number;
  let rh = 0;
  let cf: number;
  if (sz === 8) {
    if (left) {
      const a = shl64(c, d, dh, n);
      const ah = c.hi;
      const b = shr64(c, s, sh, 64 - n, false);
      r = (a | b) >>> 0;
      rh = (ah | c.hi) >>> 0;
      cf = bit64(d, dh, 64 - n);
    } else {
      const a = shr64(c, d, dh, n, false);
      const ah = c.hi;
      const b = shl64(c, s, sh, 64 - n);
      r = (a | b) >>> 0;
      rh = (ah | c.hi) >>> 0;
      cf = bit64(d, dh, n - 1);
    }
  } else if (sz === 4) {
    if (left) {
      r = ((d << n) | (s >>> (32 - n))) >>> 0;
      cf = (d >>> (32 - n)) & 1;
    } else {
      r = ((d >>> n) | (s << (32 - n))) >>> 0;
      cf = (d >>> (n - 1)) & 1;
    }
  } else {
    // 16-bit: operate on the 32-bit concatenation (counts > 16 are undefined; this matches common hardware)
    if (left) {
      const cat = ((d << 16) | s) >>> 0;
      const wide = n <= 16 ? cat : ((s << 16) | d) >>> 0;
      const k = n <= 16 ? n : n - 16;
      r = ((wide << k) | (k === 0 ? 0 : (n <= 16 ? d : s) >>> (16 - k))) >>> 16;
      r &= 0xffff;
      cf = n <= 16 ? (d >>> (16 - n)) & 1 : (s >>> (32 - n)) & 1;
    } else {
      const cat = ((s << 16) | d) >>> 0;
      if (n <= 16) {
        r = (cat >>> n) & 0xffff;
        cf = (d >>> (n - 1)) & 1;
      } else {
        const wide = ((d << 16) | s) >>> 0;
        r = (wide >>> (n - 16)) & 0xffff;
        cf = (s >>> (n - 17)) & 1;
      }
    }
  }
  const msbOld = sz === 8 ? dh >>> 31 : (d >>> (bits - 1)) & 1;
  const msbNew = sz === 8 ? rh >>> 31 : (r >>> (bits - 1)) & 1;
  c.setArith(szp(sz, r, rh) | cf | ((msbOld ^ msbNew) << 11));
  c.hi = rh;
  return r;
}

// ==== multiply / divide =====================================================================

/** Unsigned 32x32 -> 64: lo returned, hi in c.hi. */
function mulU32(c: Cpu, a: number, b: number): number {
  c.hi = mulHiU32(a, b);
  return Math.imul(a, b) >>> 0;
}

/** Result words of mul64 (w0 lowest), unsigned 32-bit values. */
const MW = new Float64Array(4);

/** High 32 bits of the unsigned product a * b (a, b taken as uint32), exact in int arithmetic. */
export function mulHiU32(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const lh = al * bh;
  const hl = ah * bl;
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** Low 64 bits of a 64x64 product (signed and unsigned agree): lo returned, hi in c.hi. */
export function imul64lo(c: Cpu, a: number, ah: number, b: number, bh: number): number {
  c.hi = (mulHiU32(a, b) + Math.imul(a, bh) + Math.imul(ah, b)) >>> 0;
  return Math.imul(a, b) >>> 0;
}

/**
 * Exact 64x64 -> 128-bit multiply over 32-bit limbs into MW (w0..w3). `signed`: the operands
 * are two's-complement (the high 64 bits are corrected as hi -= (a<0 ? b : 0) + (b<0 ? a : 0)).
 */
function mul64(a: number, ah: number, b: number, bh: number, signed: boolean): void {
  a >>>= 0; ah >>>= 0; b >>>= 0; bh >>>= 0;
  const l0 = Math.imul(a, b) >>> 0; const h0 = mulHiU32(a, b);
  const l1 = Math.imul(a, bh) >>> 0; const h1 = mulHiU32(a, bh);
  const l2 = Math.imul(ah, b) >>> 0; const h2 = mulHiU32(ah, b);
  const l3 = Math.imul(ah, bh) >>> 0; const h3 = mulHiU32(ah, bh);
  const s1 = h0 + l1 + l2; // < 3 * 2^32: exact
  const w1 = s1 >>> 0;
  const s2 = h1 + h2 + l3 + (s1 - w1) / TWO32;
  let w2 = s2 >>> 0;
  let w3 = (h3 + (s2 - w2) / TWO32) >>> 0;
  if (signed) {
    // subtract (ah<0 ? b:bh : 0) + (bh<0 ? a:ah : 0) from w3:w2, modulo 2^64
    if (ah >= 0x80000000) {
      w3 = (w3 - bh - (w2 < b ? 1 : 0)) >>> 0;
      w2 = (w2 - b) >>> 0;
    }
    if (bh >= 0x80000000) {
      w3 = (w3 - ah - (w2 < a ? 1 : 0)) >>> 0;
      w2 = (w2 - a) >>> 0;
    }
  }
  MW[0] = l0;
  MW[1] = w1;
  MW[2] = w2;
  MW[3] = w3;
}

/** Flags after MUL/IMUL: CF=OF=overflow; SF/ZF/PF from the low result, AF=0. */
function mulFlags(c: Cpu, sz: number, r: number, rh: number, ovf: boolean): void {
  c.setArith(szp(sz, r, rh) | (ovf ? 0x801 : 0));
}

/** Two/three-operand IMUL of size sz: returns truncated product (hi in c.hi), flags set. */
export function imulTrunc(c: Cpu, sz: number, a: number, ah: number, b: number, bh: number): number {
  if (sz === 8) {
    if ((ah | 0) === (a >> 31) && (bh | 0) === (b >> 31)) {
      // both operands fit in int32: the product fits in 64 bits (no overflow)
      const r = imul64lo(c, a, ah, b, bh);
      const rh = c.hi;
      mulFlags(c, 8, r, rh, false);
      c.hi = rh;
      return r;
    }
    mul64(a, ah, b, bh, true);
    const r = MW[0]!;
    const rh = MW[1]!;
    // fits in 64 bits iff the high 64 bits are the sign extension of bit 63
    const ext = rh >= 0x80000000 ? 0xffffffff : 0;
    mulFlags(c, 8, r, rh, MW[2] !== ext || MW[3] !== ext);
    c.hi = rh;
    return r;
  }
  const bits = sz * 8;
  const sa = (a << (32 - bits)) >> (32 - bits);
  const sb = (b << (32 - bits)) >> (32 - bits);
  let r: number;
  let ovf: boolean;
  if (sz === 4) {
    r = Math.imul(sa, sb) >>> 0;
    const full = sa * sb;
    // |full| < 2^62: exact comparison is enough to detect overflow when |full| >= 2^31 roughly
    ovf = full !== (r | 0) || Math.abs(full) >= 2 ** 53 ? !(full >= -2147483648 && full <= 2147483647) : false;
  } else {
    const full = sa * sb;
    r = full & MASK[sz]!;
    const sr = (r << (32 - bits)) >> (32 - bits);
    ovf = sr !== full;
  }
  mulFlags(c, sz, r, 0, ovf);
  c.hi = 0;
  return r;
}

/** F6/F7 /4../7: MUL, IMUL, DIV, IDIV with the accumulator. */
export function mulDiv(c: Cpu, op: number, sz: number, src: number, srcHi: number): void {
  const g = c.s.gpr;
  switch (sz) {
    case 1: {
      const al = g[0]! & 0xff;
      if (op === 4 || op === 5) {
        let p: number;
        let ovf: boolean;
        if (op === 4) {
          p = al * src;
          ovf = p > 0xff;
        } else {
          p = ((al << 24) >> 24) * ((src << 24) >> 24);
          ovf = p !== ((p << 24) >> 24);
          p &= 0xffff;
        }
        g[0] = (g[0]! & ~0xffff) | p;
        mulFlags(c, 1, p & 0xff, 0, ovf);
        return;
      }
      const ax = g[0]! & 0xffff;
      if (src === 0) fault(0);
      let q: number;
      let rem: number;
      if (op === 6) {
        q = Math.floor(ax / src);
        rem = ax % src;
        if (q > 0xff) fault(0);
      } else {
        const n = (ax << 16) >> 16;
        const d = (src << 24) >> 24;
        q = Math.trunc(n / d);
        rem = n - q * d;
        if (q > 127 || q < -128) fault(0);
      }
      g[0] = (g[0]! & ~0xffff) | (q & 0xff) | ((rem & 0xff) << 8);
      return;
    }
    case 2: {
      const ax = g[0]! & 0xffff;
      const dx = g[4]! & 0xffff;
      if (op === 4 || op === 5) {
        let p: number;
        let ovf: boolean;
        if (op === 4) {
          p = ax * src;
          ovf = p > 0xffff;
        } else {
          p = ((ax << 16) >> 16) * ((src << 16) >> 16);
          ovf = p !== ((p << 16) >> 16);
        }
        g[0] = (g[0]! & ~0xffff) | (p & 0xffff);
        g[4] = (g[4]! & ~0xffff) | ((p >>> 16) & 0xffff);
        mulFlags(c, 2, p & 0xffff, 0, ovf);
        return;
      }
      if (src === 0) fault(0);
      const n = ((dx << 16) | ax) >>> 0;
      let q: number;
      let rem: number;
      if (op === 6) {
        q = Math.floor(n / src);
        rem = n % src;
        if (q > 0xffff) fault(0);
      } else {
        const sn = n | 0;
        const d = (src << 16) >> 16;
        q = Math.trunc(sn / d);
        rem = sn - q * d;
        if (q > 32767 || q < -32768) fault(0);
      }
      g[0] = (g[0]! & ~0xffff) | (q & 0xffff);
      g[4] = (g[4]! & ~0xffff) | (rem & 0xffff);
      return;
    }
    case 4: {
      const eax = g[0]! >>> 0;
      const edx = g[4]! >>> 0;
      if (op === 4) {
        const lo = mulU32(c, eax, src);
        const hi = c.hi;
        g[0] = lo; g[1] = 0; g[4] = hi; g[5] = 0;
        mulFlags(c, 4, lo, 0, hi !== 0);
        return;
      }
      if (op === 5) {
        const lo = mulU32(c, eax, src);
        let hi = c.hi;
        if (eax & 0x80000000) hi -= src;
        if (src & 0x80000000) hi -= eax;
        hi >>>= 0;
        g[0] = lo; g[1] = 0; g[4] = hi; g[5] = 0;
        mulFlags(c, 4, lo, 0, hi !== ((lo >> 31) >>> 0));
        return;
      }
      if (src === 0) fault(0);
      if (op === 6) {
        if (edx >= src) fault(0);
        const q = div64by32(c, eax, edx, src);
        g[0] = q; g[1] = 0; g[4] = c.hi; g[5] = 0;
        return;
      }
      // IDIV
      const neg = (edx & 0x80000000) !== 0;
      let nlo = eax;
      let nhi = edx;
      if (neg) {
        nlo = (~eax + 1) >>> 0;
        nhi = (~edx + (nlo === 0 ? 1 : 0)) >>> 0;
      }
      const dneg = (src & 0x80000000) !== 0;
      const dd = dneg ? ((~src + 1) >>> 0) || 0x80000000 : src;
      if (nhi >= dd) fault(0);
      let q = div64by32(c, nlo, nhi, dd);
      let rem = c.hi;
      if (neg !== dneg) {
        if (q > 0x80000000) fault(0);
        q = (-q) | 0;
      } else if (q > 0x7fffffff) fault(0);
      if (neg) rem = -rem;
      g[0] = q; g[1] = 0; g[4] = rem; g[5] = 0;
      return;
    }
    default: {
      if (op === 4 || op === 5) {
        mul64(g[0]!, g[1]!, src, srcHi, op === 5);
        const w0 = MW[0]!, w1 = MW[1]!, w2 = MW[2]!, w3 = MW[3]!;
        let ovf: boolean;
        if (op === 4) ovf = w2 !== 0 || w3 !== 0;
        else {
          const ext = w1 >= 0x80000000 ? 0xffffffff : 0;
          ovf = w2 !== ext || w3 !== ext;
        }
        g[0] = w0; g[1] = w1; g[4] = w2; g[5] = w3;
        mulFlags(c, 8, w0, w1, ovf);
        return;
      }
      // RDX:RAX / r/m64: #DE on a zero divisor or a quotient that does not fit
      const ok = op === 6
        ? udiv128by64(g[0]!, g[1]!, g[4]!, g[5]!, src, srcHi)
        : idiv128by64(g[0]!, g[1]!, g[4]!, g[5]!, src, srcHi);
      if (!ok) fault(0);
      g[0] = DQ[0]!; g[1] = DQ[1]!; g[4] = DQ[2]!; g[5] = DQ[3]!;
    }
  }
}

/** (hi:lo) / d with hi < d, d < 2^32: quotient returned, remainder in c.hi. */
function div64by32(c: Cpu, lo: number, hi: number, d: number): number {
  let t = hi * 65536 + (lo >>> 16);
  const q1 = Math.floor(t / d);
  let rem = t - q1 * d;
  t = rem * 65536 + (lo & 0xffff);
  const q0 = Math.floor(t / d);
  rem = t - q0 * d;
  c.hi = rem >>> 0;
  return (q1 * 65536 + q0) >>> 0;
}

/** Results of the 128/64 divisions: quotient lo, hi, remainder lo, hi (unsigned 32-bit values). */
export const DQ = new Float64Array(4);

const TWO64 = 18446744073709551616;

/*
 * Speed notes (this is the hot path of the kernel's multi-precision division): values that cross
 * a call boundary are passed as int32 (`| 0`, a small integer to V8) and results come back through
 * DQ, because a uint32 >= 2^31 passed, returned or kept in a module `let` is boxed into a fresh
 * heap number; inside a function, `>>> 0` views stay unboxed.
 */

/**
 * Unsigned (n3:n2:n1:n0) / (dh:dl) over 32-bit limbs (any int32/uint32 view), requiring
 * (n3:n2) < (dh:dl) (so d != 0 and the quotient fits in 64 bits): quotient and remainder into DQ.
 * Number arithmetic only, no allocation.
 */
function div128by64(n0: number, n1: number, n2: number, n3: number, dl: number, dh: number): void {
  n0 >>>= 0; n1 >>>= 0; n2 >>>= 0; dl >>>= 0; dh >>>= 0;
  if (dh === 0) {
    // n3 = 0 and n2 < dl: long division by a 32-bit divisor in 16-bit digits (partials < 2^48)
    let r = n2;
    let qh: number;
    if (r === 0) {
      qh = Math.floor(n1 / dl);
      r = n1 - qh * dl;
    } else {
      let t = r * 65536 + (n1 >>> 16);
      const a = Math.floor(t / dl);
      t = (t - a * dl) * 65536 + (n1 & 0xffff);
      const b = Math.floor(t / dl);
      r = t - b * dl;
      qh = a * 65536 + b;
    }
    let t = r * 65536 + (n0 >>> 16);
    const a = Math.floor(t / dl);
    t = (t - a * dl) * 65536 + (n0 & 0xffff);
    const b = Math.floor(t / dl);
    DQ[0] = a * 65536 + b;
    DQ[1] = qh;
    DQ[2] = t - b * dl;
    DQ[3] = 0;
    return;
  }
  // two 32-bit quotient digits floor((u2:u1:u0) / d), each with (u2:u1) < d: a floating-point
  // estimate (off by at most one: the digit is < 2^32 and the operands carry a few ulps of
  // rounding), then the exact remainder over 32-bit limbs corrects it
  const d = dh * TWO32 + dl;
  let u2 = n3 >>> 0;
  let u1 = n2;
  let u0 = n1;
  let qh = 0;
  for (let k = 0; ; k++) {
    let q = Math.floor((u2 * TWO64 + u1 * TWO32 + u0) / d);
    if (q > 0xffffffff) q = 0xffffffff;
    // q * d = p2:p1:p0 (< 2^96)
    const s1 = mulHiU32(q, dl) + (Math.imul(q, dh) >>> 0); // < 2^33
    const p1 = s1 >>> 0;
    const p2 = mulHiU32(q, dh) + (s1 - p1) / TWO32;
    // r = u - q * d as limbs r2 (signed) : r1 : r0
    let r0 = u0 - (Math.imul(q, dl) >>> 0);
    let r1 = u1 - p1;
    let r2 = u2 - p2;
    if (r0 < 0) { r0 += TWO32; r1--; }
    if (r1 < 0) { r1 += TWO32; r2--; }
    while (r2 < 0) { // estimate too large: r += d
      q--;
      r0 += dl;
      if (r0 >= TWO32) { r0 -= TWO32; r1++; }
      r1 += dh;
      if (r1 >= TWO32) { r1 -= TWO32; r2++; }
    }
    while (r2 > 0 || r1 > dh || (r1 === dh && r0 >= dl)) { // estimate too small: r -= d
      q++;
      r0 -= dl;
      if (r0 < 0) { r0 += TWO32; r1--; }
      r1 -= dh;
      if (r1 < 0) { r1 += TWO32; r2--; }
    }
    if (k === 1) {
      DQ[0] = q;
      DQ[1] = qh;
      DQ[2] = r0;
      DQ[3] = r1;
      return;
    }
    qh = q;
    u2 = r1;
    u1 = r0;
    u0 = n0;
  }
}

/**
 * DIV r/m64: unsigned (n3:n2:n1:n0) = RDX:RAX by (dh:dl), 32-bit limbs (any int32/uint32 view).
 * Returns false (#DE) for a zero divisor or a quotient >= 2^64, else quotient and remainder in DQ.
 */
export function udiv128by64(n0: number, n1: number, n2: number, n3: number, dl: number, dh: number): boolean {
  const h = dh >>> 0;
  const l = dl >>> 0;
  const m = n3 >>> 0;
  if (m > h || (m === h && n2 >>> 0 >= l)) return false; // also d = 0
  div128by64(n0 | 0, n1 | 0, n2 | 0, n3 | 0, dl | 0, dh | 0);
  return true;
}

/**
 * IDIV r/m64: signed (n3:n2:n1:n0) = RDX:RAX by (dh:dl) (two's complement, 32-bit limbs),
 * quotient truncated toward zero, remainder with the dividend's sign. Returns false (#DE) for a
 * zero divisor or a quotient outside [-2^63, 2^63 - 1], else quotient and remainder in DQ.
 */
export function idiv128by64(n0: number, n1: number, n2: number, n3: number, dl: number, dh: number): boolean {
  n0 >>>= 0; n1 >>>= 0; n2 >>>= 0; n3 >>>= 0; dl >>>= 0; dh >>>= 0;
  if (dl === 0 && dh === 0) return false;
  const neg = n3 >= 0x80000000;
  if (neg) { // |n|: 128-bit two's-complement negate (-2^127 stays 2^127 unsigned)
    let carry = n0 === 0 ? 1 : 0;
    n0 = (~n0 + 1) >>> 0;
    const m1 = (~n1 + carry) >>> 0;
    carry &= n1 === 0 ? 1 : 0;
    const m2 = (~n2 + carry) >>> 0;
    carry &= n2 === 0 ? 1 : 0;
    n3 = (~n3 + carry) >>> 0;
    n1 = m1;
    n2 = m2;
  }
  const dneg = dh >= 0x80000000;
  if (dneg) { // |d| (-2^63 stays 2^63 unsigned)
    dh = (~dh + (dl === 0 ? 1 : 0)) >>> 0;
    dl = (~dl + 1) >>> 0;
  }
  // |q| >= 2^64 overflows in any case
  if (n3 > dh || (n3 === dh && n2 >= dl)) return false;
  div128by64(n0 | 0, n1 | 0, n2 | 0, n3 | 0, dl | 0, dh | 0);
  let ql = DQ[0]!;
  let qh = DQ[1]!;
  if (neg !== dneg) {
    if (qh > 0x80000000 || (qh === 0x80000000 && ql !== 0)) return false;
    qh = (~qh + (ql === 0 ? 1 : 0)) >>> 0;
    ql = (~ql + 1) >>> 0;
  } else if (qh >= 0x80000000) return false;
  DQ[0] = ql;
  DQ[1] = qh;
  if (neg) {
    const rl = DQ[2]!;
    DQ[3] = (~DQ[3]! + (rl === 0 ? 1 : 0)) >>> 0;
    DQ[2] = (~rl + 1) >>> 0;
  }
  return true;
}

// ==== stack =================================================================================

function push(c: Cpu, size: number, v: number, hi: number): void {
  const g = c.s.gpr;
  if (c.stackSize === 8) {
    const sp = g[9]! * TWO32 + (g[8]! >>> 0) - size;
    if (sp < -TWO47 || sp >= TWO47) fault(12, 0);
    writeMem(c, sp, size, v, hi);
    g[8] = sp;
    g[9] = Math.floor(sp / TWO32);
  } else if (c.stackSize === 4) {
    const sp = (g[8]! - size) >>> 0;
    writeMem(c, (c.s.segBase[2]! + sp) >>> 0, size, v, hi);
    g[8] = sp;
  } else {
    const sp = (g[8]! - size) & 0xffff;
    writeMem(c, (c.s.segBase[2]! + sp) >>> 0, size, v, hi);
    g[8] = (g[8]! & ~0xffff) | sp;
  }
}

/** Read the value at the top of the stack (+offset) without popping. */
function stackPeek(c: Cpu, size: number, offset: number): number {
  const g = c.s.gpr;
  if (c.stackSize === 8) {
    const sp = g[9]! * TWO32 + (g[8]! >>> 0) + offset;
    if (sp < -TWO47 || sp >= TWO47) fault(12, 0);
    return readMem(c, sp, size);
  }
  const sp = c.stackSize === 4 ? (g[8]! + offset) >>> 0 : (g[8]! + offset) & 0xffff;
  return readMem(c, (c.s.segBase[2]! + sp) >>> 0, size);
}

function addSp(c: Cpu, n: number): void {
  const g = c.s.gpr;
  if (c.stackSize === 8) {
    const sp = g[9]! * TWO32 + (g[8]! >>> 0) + n;
    g[8] = sp;
    g[9] = Math.floor(sp / TWO32);
  } else if (c.stackSize === 4) g[8] = (g[8]! + n) >>> 0;
  else g[8] = (g[8]! & ~0xffff) | ((g[8]! + n) & 0xffff);
}

function pop(c: Cpu, size: number): number {
  const v = stackPeek(c, size, 0);
  const h = c.hi;
  addSp(c, size);
  c.hi = h;
  return v;
}

// ==== control transfer ======================================================================

/** Near branch to `target` (an offset computed as a number) with operand size. */
function jumpTo(c: Cpu, target: number, size: number): void {
  if (c.long && size === 8) {
    if (target < -TWO47 || target >= TWO47) fault(GP, 0);
    c.ip = target;
  } else if (size === 2) c.ip = target & 0xffff;
  else if (c.long) c.ip = target >>> 0;
  else c.ip = target >>> 0;
}

/** Operand size of near relative branches: 64-bit in long mode (the 66 prefix is ignored, as on Intel). */
function branchSize(c: Cpu): number {
  return c.long ? 8 : c.opsize;
}

/** Operand size for near branches/stack ops that default to 64-bit in long mode. */
function stackOpSize(c: Cpu): number {
  if (c.long) return c.opOverride ? 2 : 8;
  return c.opsize;
}

// ==== bits ==================================================================================

function bsf(v: number, vh: number, sz: number): number {
  if (sz === 8 && v === 0) return 32 + 31 - Math.clz32(vh & -vh);
  return 31 - Math.clz32(v & -v);
}

function bsr(v: number, vh: number, sz: number): number {
  if (sz === 8 && vh !== 0) return 63 - Math.clz32(vh);
  return 31 - Math.clz32(v);
}

function popcnt32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** BT/BTS/BTR/BTC (op 0..3) with a bit offset; `fromReg` = bit offset from a register (memory can be outside the operand). */
function bitOp(c: Cpu, op: number, sz: number, off: number, offHi: number, fromReg: boolean): void {
  const bits = sz * 8;
  if (c.mod === 3) {
    const bit = off & (bits - 1);
    let v = getReg(c, c.rm, sz);
    let vh = sz === 8 ? c.hi : 0;
    const cur = bit64(v, vh, bit);
    if (op !== 0) {
      const m = bit < 32 ? 1 << bit : 0;
      const mh = bit >= 32 ? 1 << (bit - 32) : 0;
      if (op === 1) { v |= m; vh |= mh; } else if (op === 2) { v &= ~m; vh &= ~mh; } else { v ^= m; vh ^= mh; }
      setReg(c, c.rm, sz, v >>> 0, vh >>> 0);
    }
    c.setArith((c.getArith() & ~1) | cur);
    return;
  }
  let byteOff: number;
  let bit: number;
  if (fromReg) {
    let soff: number;
    if (sz === 8) soff = (offHi | 0) * TWO32 + (off >>> 0);
    else if (sz === 4) soff = off | 0;
    else soff = (off << 16) >> 16;
    byteOff = Math.floor(soff / 8);
    bit = soff - byteOff * 8;
  } else {
    const b = off & (bits - 1);
    byteOff = b >> 3;
    bit = b & 7;
  }
  // address the byte holding the bit (same result as a word access for non-faulting cases)
  const saveLo = c.eaLo;
  const saveHi = c.eaHi;
  if (c.adsize === 8) {
    const t = c.eaHi * TWO32 + c.eaLo + byteOff;
    c.eaLo = t >>> 0;
    c.eaHi = Math.floor(t / TWO32) | 0;
  } else if (c.adsize === 4) c.eaLo = (c.eaLo + byteOff) >>> 0;
  else c.eaLo = (c.eaLo + byteOff) & 0xffff;
  const lin = eaLin(c);
  c.eaLo = saveLo;
  c.eaHi = saveHi;
  const v = c.read8(lin);
  const cur = (v >> bit) & 1;
  if (op !== 0) {
    const m = 1 << bit;
    const nv = op === 1 ? v | m : op === 2 ? v & ~m : v ^ m;
    c.write8(lin, nv & 0xff);
  }
  c.setArith((c.getArith() & ~1) | cur);
}

// ==== string instructions ===================================================================

/** Value of an address register (RSI/RDI/RCX) at the address size, as a number. */
function areg(c: Cpu, r: number): number {
  const g = c.s.gpr;
  if (c.adsize === 8) return g[2 * r + 1]! * TWO32 + (g[2 * r]! >>> 0);
  if (c.adsize === 4) return g[2 * r]! >>> 0;
  return g[2 * r]! & 0xffff;
}

function setAreg(c: Cpu, r: number, v: number): void {
  const g = c.s.gpr;
  if (c.adsize === 8) {
    g[2 * r] = v;
    g[2 * r + 1] = Math.floor(v / TWO32);
  } else if (c.adsize === 4) {
    g[2 * r] = v;
    g[2 * r + 1] = 0;
  } else g[2 * r] = (g[2 * r]! & ~0xffff) | (v & 0xffff);
}

function wrapA(c: Cpu, v: number): number {
  if (c.adsize === 8) return v;
  return c.adsize === 4 ? v >>> 0 : v & 0xffff;
}

/** Iterations executed per step for REP before yielding (interrupt latency). */
const REP_CHUNK = 65536;

function stringOp(c: Cpu, op: number, sz: number): void {
  const rep = c.rep;
  const s = c.s;
  const delta = s.rflagsRest & 0x400 ? -sz : sz;
  const srcSeg = c.seg >= 0 ? c.seg : 3;
  let count = rep ? areg(c, 1) : 1;
  if (count === 0) return;
  let limit = REP_CHUNK;
  // fast paths: forward REP MOVS / STOS over RAM
  if (rep && delta > 0 && (op === 0xa4 || op === 0xaa)) {
    // fastString keeps RCX in step with RDI/RSI chunk by chunk: a #PF on a later page restarts
    // the instruction with the registers saying how far it got
    const done = fastString(c, op, sz, count);
    if (done > 0) {
      count -= done;
      if (count === 0) return;
      limit -= done;
    }
  }
  for (;;) {
    switch (op) {
      case 0xa4: { // MOVS
        const si = areg(c, 6);
        const di = areg(c, 7);
        const v = readMem(c, segLin(c, srcSeg, si), sz);
        writeMem(c, segLin(c, 0, di), sz, v, c.hi);
        setAreg(c, 6, wrapA(c, si + delta));
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0xaa: { // STOS
        const di = areg(c, 7);
        const v = getReg(c, 0, sz);
        writeMem(c, segLin(c, 0, di), sz, v, c.hi);
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0xac: { // LODS
        const si = areg(c, 6);
        const v = readMem(c, segLin(c, srcSeg, si), sz);
        setReg(c, 0, sz, v, c.hi);
        setAreg(c, 6, wrapA(c, si + delta));
        break;
      }
      case 0xa6: { // CMPS
        const si = areg(c, 6);
        const di = areg(c, 7);
        const a = readMem(c, segLin(c, srcSeg, si), sz);
        const ah = c.hi;
        const b = readMem(c, segLin(c, 0, di), sz);
        alu(c, 7, sz, a, ah, b, c.hi);
        setAreg(c, 6, wrapA(c, si + delta));
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0xae: { // SCAS
        const di = areg(c, 7);
        const a = getReg(c, 0, sz);
        const ah = c.hi;
        const b = readMem(c, segLin(c, 0, di), sz);
        alu(c, 7, sz, a, ah, b, c.hi);
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      case 0x6c: { // INS
        const port = s.gpr[4]! & 0xffff;
        checkIo(c, port, sz as 1 | 2 | 4);
        const di = areg(c, 7);
        const lin = segLin(c, 0, di);
        c.probeWrite(lin, sz);
        const v = c.portRead(port, sz as 1 | 2 | 4);
        writeMem(c, lin, sz, v, 0);
        setAreg(c, 7, wrapA(c, di + delta));
        break;
      }
      default: { // 0x6e OUTS
        const port = s.gpr[4]! & 0xffff;
        checkIo(c, port, sz as 1 | 2 | 4);
        const si = areg(c, 6);
        const v = readMem(c, segLin(c, srcSeg, si), sz);
        c.portWrite(port, sz as 1 | 2 | 4, v);
        setAreg(c, 6, wrapA(c, si + delta));
        break;
      }
    }
    if (!rep) return;
    count = wrapA(c, count - 1);
    setAreg(c, 1, count);
    if (count === 0) return;
    if (op === 0xa6 || op === 0xae) {
      const z = c.zf();
      if (rep === 0xf3 ? z === 0 : z !== 0) return;
    }
    if (--limit <= 0) {
      // Continue on the next step, after the engine has had its turn: a guest-chosen count
      // (up to 2^64) must not hold the host's event loop for the whole instruction.
      c.ip = c.startRip;
      c.requestExit();
      return;
    }
  }
}

/**
 * REP MOVS/STOS forward over RAM pages, page chunk by page chunk. Returns the number of elements
 * done (RSI, RDI and RCX updated after every chunk, so that a fault on the next page restarts
 * the instruction where it got to).
 */
function fastString(c: Cpu, op: number, sz: number, count: number): number {
  if (c.adsize !== 8 && !c.long && c.adsize !== 4) return 0;
  const srcSeg = c.seg >= 0 ? c.seg : 3;
  let done = 0;
  const ram = c.ram;
  const maxElems = REP_CHUNK;
  while (done < count && done < maxElems) {
    const di = areg(c, 7);
    const dlin = segLin(c, 0, di);
    const doff = dlin & 0xfff;
    if (doff & (sz - 1)) return done; // keep elements inside pages
    const dst = pageOffset(c, dlin, true);
    if (dst < 0) return done;
    let n = Math.min(count - done, (4096 - doff) / sz, maxElems - done);
    if (op === 0xa4) {
      const si = areg(c, 6);
      const slin = segLin(c, srcSeg, si);
      const soff = slin & 0xfff;
      if (soff & (sz - 1)) return done;
      const src = pageOffset(c, slin, false);
      if (src < 0) return done;
      n = Math.min(n, (4096 - soff) / sz);
      const len = n * sz;
      // forward element copy == memmove unless dst overlaps ahead of src
      if (dst > src && dst < src + len) return done;
      c.checkCode(dst, len);
      ram.copyWithin(dst, src, src + len);
      setAreg(c, 6, wrapA(c, si + len));
    } else {
      const len = n * sz;
      const g = c.s.gpr;
      c.checkCode(dst, len);
      if (sz === 1) ram.fill(g[0]! & 0xff, dst, dst + len);
      else {
        const lo = g[0]!;
        const hi = g[1]!;
        const v = c.ramView;
        if (lo === 0 && (sz < 8 || hi === 0)) ram.fill(0, dst, dst + len);
        else if (sz === 2) for (let k = 0; k < len; k += 2) v.setUint16(dst + k, lo, true);
        else if (sz === 4) for (let k = 0; k < len; k += 4) v.setInt32(dst + k, lo, true);
        else for (let k = 0; k < len; k += 8) { v.setInt32(dst + k, lo, true); v.setInt32(dst + k + 4, hi, true); }
      }
    }
    setAreg(c, 7, wrapA(c, di + n * sz));
    done += n;
    // RCX too, before the next page is touched (its #PF restarts the instruction from here)
    setAreg(c, 1, count - done);
  }
  return done;
}

/** RAM offset of the byte at `lin` (translating, faulting as an access would), or -1 if not RAM. */
function pageOffset(c: Cpu, lin: number, write: boolean): number {
  const vpn = Math.floor(lin / 4096);
  const i = vpn & TLB_MASK;
  const user = c.s.cpl === 3;
  const need = write ? (user ? P_UW : P_SW) : user ? P_UR : P_SR;
  if (!(c.tlbTag[i] === vpn && c.tlbPerm[i]! & need)) {
    if (write) c.probeWrite(lin, 1);
    else c.probeRead(lin, 1);
  }
  const a = c.tlbAddr[i]!;
  if (c.tlbTag[i] !== vpn || a < 0) return -1;
  return a + (lin & 0xfff);
}

// ==== helpers for system instructions =======================================================

function requireCpl0(c: Cpu): void {
  if (c.s.cpl !== 0) fault(GP, 0);
}

function requireProtected(c: Cpu): void {
  if (c.realLike) fault(UD);
}

/** IOPL check for CLI/STI (protected mode): CPL <= IOPL. */
function iopl(c: Cpu): boolean {
  if (c.s.mode === 0) return true;
  return c.s.cpl <= ((c.s.rflagsRest >> 12) & 3);
}

function sregLoad(c: Cpu, sreg: number, sel: number): void {
  loadSegment(c, sreg, sel);
  if (sreg === 2) {
    c.ssChanged();
    c.s.interruptShadow = true;
  }
}

// ==== SIMD dispatch ===================================================================================

function simdPrefix(c: Cpu): number {
  return c.rep !== 0 ? c.rep : c.opOverride ? 0x66 : 0;
}

function runX87(c: Cpu, op: number): void {
  const s = c.s;
  modrm(c, 0);
  if (s.cr0 & 0xc) fault(7); // EM or TS: #NM
  const unit = c.simd;
  if (!unit) fault(UD);
  const i = simdInsn;
  i.opcode = op;
  i.map = 0;
  i.prefix = simdPrefix(c);
  i.mod = c.mod;
  i.reg = c.reg & 7;
  i.rm = c.mod === 3 ? c.rm & 7 : c.rm;
  i.rexW = c.rexW;
  i.opsize = c.opsize;
  i.ea = c.mod === 3 ? 0 : eaLin(c);
  i.imm8 = 0;
  i.long = c.long;
  unit.x87(s, c.simdMem, i);
}

function hasImm8(map: number, op: number): boolean {
  if (map === 3) return true;
  if (map === 1) return (op >= 0x70 && op <= 0x73) || op === 0xc2 || (op >= 0xc4 && op <= 0xc6);
  return false;
}

function runSse(c: Cpu, map: number, op: number): void {
  const s = c.s;
  const imm = hasImm8(map, op) ? 1 : 0;
  modrm(c, imm);
  const unit = c.simd;
  if (!unit) fault(UD);
  const isFx = map === 1 && op === 0xae && c.mod !== 3 && (c.reg & 7) <= 1;
  if (s.cr0 & 4) fault(isFx ? 7 : UD); // EM
  if (s.cr0 & 8) fault(7); // TS
  const i = simdInsn;
  i.opcode = op;
  i.map = map;
  i.prefix = simdPrefix(c);
  i.mod = c.mod;
  i.reg = c.reg;
  i.rm = c.rm;
  i.rexW = c.rexW;
  i.opsize = c.opsize;
  i.ea = c.mod === 3 ? 0 : eaLin(c);
  i.imm8 = imm ? c.fetch8() : 0;
  i.long = c.long;
  unit.sse(s, c.simdMem, i);
}

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
  exec1(c, op);
  s.rip = c.ip;
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
      // NOP / PAUSE
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
      if (c.stackSize === 8) {
        g2[8] = g2[10]!;
        g2[9] = g2[11]!;
      } else if (c.stackSize === 4) g2[8] = g2[10]!;
      else g2[8] = (g2[8]! & ~0xffff) | (g2[10]! & 0xffff);
      const v = pop(c, sz);
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
      deliver(c, 3, -1, EventKind.Software, c.ip);
      c.ip = s.rip;
      return;
    case 0xcd: {
      const v = c.fetch8();
      s.rip = c.ip;
      deliver(c, v, -1, EventKind.Software, c.ip);
      c.ip = s.rip;
      return;
    }
    case 0xce:
      if (c.long) fault(UD);
      if (c.of()) {
        s.rip = c.ip;
        deliver(c, 4, -1, EventKind.Software, c.ip);
        c.ip = s.rip;
      }
      return;
    case 0xcf: // IRET
      s.rip = c.ip;
      iret(c, c.opsize as 2 | 4 | 8);
      c.ip = s.rip;
      c.pollCounter = 0;
      return;
    case 0xd4: { // AAM
      if (c.long) fault(UD);
      const base = c.fetch8();
      if (base === 0) fault(0);
      const al = g[0]! & 0xff;
      const r = al % base;
      g[0] = (g[0]! & ~0xffff) | (Math.floor(al / base) << 8) | r;
      c.setArith(szp(1, r, 0));
      return;
    }
    case 0xd5: { // AAD
      if (c.long) fault(UD);
      const base = c.fetch8();
      const r = ((g[0]! & 0xff) + ((g[0]! >> 8) & 0xff) * base) & 0xff;
      g[0] = (g[0]! & ~0xffff) | r;
      c.setArith(szp(1, r, 0));
      return;
    }
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
    case 0xfc: s.rflagsRest &= ~0x400; return;
    case 0xfd: s.rflagsRest |= 0x400; return;
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

function popf(c: Cpu, v: number, sz: number): void {
  const s = c.s;
  // CF PF AF ZF SF TF DF OF NT AC ID always; IF when CPL <= IOPL; IOPL at CPL 0; VM/VIP/VIF kept; RF cleared
  let mask = 0x244dd5;
  const cpl = s.cpl;
  const io = (s.rflagsRest >> 12) & 3;
  if (s.mode === 0 || cpl === 0) mask |= 0x3000 | 0x200;
  else if (cpl <= io) mask |= 0x200;
  if (s.mode === 6) mask &= ~0x3000;
  if (sz === 2) mask &= 0xffff;
  c.setRflags(v & ~0x10000, mask | 0x10000);
}

function loadFarPointer(c: Cpu, sreg: number): void {
  const lin = eaLin(c);
  const osz = c.opsize;
  const off = osz === 8 ? c.read64(lin) : osz === 4 ? c.read32(lin) : c.read16(lin);
  const offHi = osz === 8 ? c.hi : 0;
  const sel = c.read16(segAdd(c, lin, osz));
  sregLoad(c, sreg, sel);
  setReg(c, c.reg, osz, off, offHi);
}

function segAdd(c: Cpu, lin: number, n: number): number {
  return c.long ? lin + n : (lin + n) >>> 0;
}

function group3(c: Cpu, sz: number): void {
  const save = c.ip;
  const peek = c.fetch8();
  c.ip = save;
  const op = (peek >> 3) & 7;
  modrm(c, op <= 1 ? immSize(sz) : 0);
  if (op <= 1) { // TEST r/m, imm
    const a = readRM(c, sz);
    const ah = c.hi;
    const b = fetchImm(c, sz);
    setLogic(c, sz, (a & b) >>> 0, (ah & c.hi) >>> 0);
    return;
  }
  if (op === 2 || op === 3) {
    if (c.mod === 3) {
      const a = getReg(c, c.rm, sz);
      if (op === 2) setReg(c, c.rm, sz, (~a & MASK[sz]!) >>> 0, (~c.hi) >>> 0);
      else setReg(c, c.rm, sz, neg(c, sz, a, c.hi), c.hi);
    } else {
      const lin = eaLin(c);
      const a = readMem(c, lin, sz);
      if (op === 2) writeMem(c, lin, sz, (~a & MASK[sz]!) >>> 0, (~c.hi) >>> 0);
      else writeMem(c, lin, sz, neg(c, sz, a, c.hi), c.hi);
    }
    return;
  }
  const v = readRM(c, sz);
  mulDiv(c, op, sz, v, c.hi);
}

function group5(c: Cpu): void {
  const s = c.s;
  modrm(c, 0);
  const op = c.reg & 7;
  switch (op) {
    case 0:
    case 1: {
      const sz = c.opsize;
      if (c.mod === 3) setReg(c, c.rm, sz, incdec(c, sz, getReg(c, c.rm, sz), c.hi, op === 1), c.hi);
      else {
        const lin = eaLin(c);
        const v = readMem(c, lin, sz);
        const r = incdec(c, sz, v, c.hi, op === 1);
        writeMem(c, lin, sz, r, c.hi);
      }
      return;
    }
    case 2: { // CALL near indirect
      const sz = stackOpSize(c);
      const lo = readRM(c, sz);
      const target = sz === 8 ? (c.hi | 0) * TWO32 + lo : lo;
      const ret = c.ip;
      if (sz === 8 && (target < -TWO47 || target >= TWO47)) fault(GP, 0);
      if (sz === 8) push(c, 8, ret >>> 0, Math.floor(ret / TWO32));
      else push(c, sz, ret, 0);
      jumpTo(c, target, sz);
      return;
    }
    case 4: { // JMP near indirect
      const sz = stackOpSize(c);
      const lo = readRM(c, sz);
      const target = sz === 8 ? (c.hi | 0) * TWO32 + lo : lo;
      jumpTo(c, target, sz);
      return;
    }
    case 3:
    case 5: { // CALLF / JMPF m16:16/32/64
      if (c.mod === 3) fault(UD);
      const lin = eaLin(c);
      const osz = c.opsize;
      let off: number;
      if (osz === 8) {
        const lo = c.read64(lin);
        off = (c.hi | 0) * TWO32 + lo;
      } else off = osz === 4 ? c.read32(lin) : c.read16(lin);
      const sel = c.read16(segAdd(c, lin, osz));
      s.rip = c.ip;
      if (op === 3) farCall(c, sel, off, osz as 2 | 4 | 8, c.ip);
      else farJump(c, sel, off, osz as 2 | 4 | 8);
      c.ip = s.rip;
      return;
    }
    case 6: {
      const sz = stackOpSize(c);
      const v = readRM(c, sz);
      push(c, sz, v, c.hi);
      return;
    }
    default:
      fault(UD);
  }
}

// ---- BCD (legacy modes only) ----
function bcd(c: Cpu, op: number): void {
  const g = c.s.gpr;
  let al = g[0]! & 0xff;
  let ah = (g[0]! >> 8) & 0xff;
  const f = c.getArith();
  let cf = f & 1;
  let af = (f >> 4) & 1;
  switch (op) {
    case 0x27: { // DAA
      const oldAl = al;
      const oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        al = (al + 6) & 0xff;
        cf = oldCf | (oldAl + 6 > 0xff ? 1 : 0);
        af = 1;
      } else af = 0;
      if (oldAl > 0x99 || oldCf) {
        al = (al + 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x2f: { // DAS
      const oldAl = al;
      const oldCf = cf;
      cf = 0;
      if ((al & 0xf) > 9 || af) {
        cf = oldCf | (al < 6 ? 1 : 0);
        al = (al - 6) & 0xff;
        af = 1;
      } else af = 0;
      if (oldAl > 0x99 || oldCf) {
        al = (al - 0x60) & 0xff;
        cf = 1;
      }
      break;
    }
    case 0x37: // AAA
      if ((al & 0xf) > 9 || af) {
        al = (al + 6) & 0xff;
        ah = (ah + 1) & 0xff;
        af = cf = 1;
      } else af = cf = 0;
      al &= 0xf;
      break;
    default: // AAS
      if ((al & 0xf) > 9 || af) {
        al = (al - 6) & 0xff;
        ah = (ah - 1) & 0xff;
        af = cf = 1;
      } else af = cf = 0;
      al &= 0xf;
      break;
  }
  g[0] = (g[0]! & ~0xffff) | (ah << 8) | al;
  c.setArith((szp(1, al, 0) & ~0) | cf | (af << 4) | (f & 0x800));
}

// ==== two-byte opcodes ======================================================================

/** Byte-reversed 32-bit value (int32). */
function bswap32(x: number): number {
  return (x >>> 24) | ((x >> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24);
}

function exec0F(c: Cpu): void {
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
    case 0x38:
      runSse(c, 2, c.fetch8());
      return;
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

function group6(c: Cpu): void {
  const s = c.s;
  requireProtected(c);
  modrm(c, 0);
  const op = c.reg & 7;
  switch (op) {
    case 0: // SLDT
    case 1: { // STR
      const v = op === 0 ? s.ldtrSel : s.trSel;
      if (c.mod === 3) setReg(c, c.rm, c.opsize, v, 0);
      else c.write16(eaLin(c), v);
      return;
    }
    case 2:
    case 3: {
      requireCpl0(c);
      const sel = readRM(c, 2);
      if (op === 2) lldt(c, sel);
      else ltr(c, sel);
      return;
    }
    case 4:
    case 5: {
      const sel = readRM(c, 2);
      const ok = op === 4 ? verr(c, sel) : verw(c, sel);
      c.setArith((c.getArith() & ~0x40) | (ok ? 0x40 : 0));
      return;
    }
    default:
      fault(UD);
  }
}

function group7(c: Cpu): void {
  const s = c.s;
  const g = s.gpr;
  modrm(c, 0);
  const op = c.reg & 7;
  if (c.mod !== 3) {
    switch (op) {
      case 0: sgdt(c, eaLin(c)); return;
      case 1: sidt(c, eaLin(c)); return;
      case 2: requireCpl0(c); lgdt(c, eaLin(c), c.long ? 8 : c.opsize); return;
      case 3: requireCpl0(c); lidt(c, eaLin(c), c.long ? 8 : c.opsize); return;
      case 4: c.write16(eaLin(c), readCr(c, 0) & 0xffff); return;
      case 6: requireCpl0(c); lmsw(c, c.read16(eaLin(c))); return;
      case 7: requireCpl0(c); c.invlpg(eaLin(c)); return;
      default: fault(UD);
    }
  }
  const rm = c.rm & 7;
  switch (op) {
    case 4: { // SMSW r
      const v = readCr(c, 0);
      setReg(c, c.rm, c.opsize, c.opsize === 2 ? v & 0xffff : v >>> 0, 0);
      return;
    }
    case 6:
      requireCpl0(c);
      lmsw(c, getReg(c, c.rm, 2));
      return;
    case 7:
      if (rm === 0) { // SWAPGS
        if (!c.long) fault(UD);
        requireCpl0(c);
        swapgs(c);
        return;
      }
      if (rm === 1) { // RDTSCP
        if (!features.rdtscp) fault(UD);
        if (s.cr4 & 4 && s.cpl !== 0) fault(GP, 0);
        g[0] = c.readTsc();
        g[1] = 0;
        g[4] = c.scratchHi;
        g[5] = 0;
        g[2] = s.tscAux;
        g[3] = 0;
        return;
      }
      fault(UD);
      return;
    default:
      fault(UD); // MONITOR/MWAIT, XGETBV/XSETBV, VMX/SVM, CLAC/STAC...
  }
}

function group9(c: Cpu): void {
  modrm(c, 0);
  const op = c.reg & 7;
  if (op === 1 && c.mod !== 3) { // CMPXCHG8B / CMPXCHG16B
    const g = c.s.gpr;
    const lin = eaLin(c);
    if (c.rexW) {
      if (!features.cx16) fault(UD);
      if (((c.eaLo + (c.seg >= 4 ? c.s.segBase[c.seg]! : 0)) & 15) !== 0) fault(GP, 0);
      c.probeWrite(lin, 16);
      const m0 = c.read64(lin);
      const m1 = c.hi;
      const m2 = c.read64(lin + 8);
      const m3 = c.hi;
      const eq = m0 === (g[0]! >>> 0) && m1 === (g[1]! >>> 0) && m2 === (g[4]! >>> 0) && m3 === (g[5]! >>> 0);
      if (eq) {
        c.write64(lin, g[6]!, g[7]!);
        c.write64(lin + 8, g[2]!, g[3]!);
      } else {
        c.write64(lin, m0, m1);
        c.write64(lin + 8, m2, m3);
        g[0] = m0; g[1] = m1; g[4] = m2; g[5] = m3;
      }
      c.setArith((c.getArith() & ~0x40) | (eq ? 0x40 : 0));
      return;
    }
    const lo = c.read32(lin);
    const hi = c.read32(segAdd(c, lin, 4));
    const eq = lo === (g[0]! >>> 0) && hi === (g[4]! >>> 0);
    if (eq) c.write64(lin, g[6]!, g[2]!);
    else {
      c.write64(lin, lo, hi);
      g[0] = lo; g[1] = 0; g[4] = hi; g[5] = 0;
    }
    c.setArith((c.getArith() & ~0x40) | (eq ? 0x40 : 0));
    return;
  }
  fault(UD); // RDRAND/RDSEED/VMPTRLD... not advertised
}

function group15(c: Cpu): void {
  // peek ModRM to decide between fences/CLFLUSH (core) and FXSAVE & co (SIMD unit)
  const save = c.ip;
  const b = c.fetch8();
  c.ip = save;
  const mod = b >> 6;
  const op = (b >> 3) & 7;
  if (mod === 3) {
    modrm(c, 0);
    if (op >= 5 && c.rep === 0) return; // LFENCE/MFENCE/SFENCE
    fault(UD); // RDFSBASE & co (not advertised)
  }
  if (op <= 3) {
    runSse(c, 1, 0xae);
    return;
  }
  modrm(c, 0);
  if (op === 7) { // CLFLUSH: needs a valid address; no effect on our memory
    eaLin(c);
    return;
  }
  fault(UD); // XSAVE family (not advertised)
}
