/**
 * ALU operations and lazy flags: ADD/OR/ADC/SBB/AND/SUB/XOR/CMP, TEST, INC/DEC, NEG, and `szp`
 * (SF/ZF/PF of a result, for the instructions that set flags eagerly).
 */
import type { Cpu } from '../cpu.js';
import { F_ADD, F_SUB, F_LOGIC, F_INC, F_DEC, PARITY as PARITY_TABLE } from '../consts.js';
import {  } from './operands.js';

const MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];
const SIGN = [0, 0x80, 0x8000, 0, 0x80000000, 0, 0, 0, 0x80000000];

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
export function setLogic(c: Cpu, sz: number, r: number, rh: number): void {
  c.fOp = F_LOGIC;
  c.fSz = sz;
  c.fRes = r;
  c.fResHi = rh;
  c.fA = c.fB = c.fAHi = c.fBHi = 0;
}

/** Flags from a result (SF ZF PF) plus explicit CF/OF/AF: eager. */
export function szp(sz: number, r: number, rh: number): number {
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
