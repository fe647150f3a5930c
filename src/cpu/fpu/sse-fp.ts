/**
 * SSE/SSE2 floating point through softfloat.ts: packed and scalar arithmetic (ADD SUB MUL DIV
 * SQRT MIN MAX RCP RSQRT), CMPPS/PD/SS/SD, (U)COMISS/SD and the conversions between single,
 * double and integers (5A 5B E6 2A 2C 2D). Flags accumulate into MXCSR; an unmasked exception
 * raises #XM (or #UD) before any result is written back.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { D, S, T, ea, getX, loadSrcScalar, loadSrcX, setGpr32, setGpr64, setX, simdException, ud } from './common.js';
import { loadSrcMmx, mmxEnter, setMmx } from './mmx.js';
import {
  F32, F64, OP_ADD, OP_DIV, OP_MUL, OP_SUB, type Fmt, arith, bits32, bits64, compare, convert, fromInt,
  hi32, lo32, sf, sfFromMxcsr, sqrt, toInt, unpack, UA, CLS_ZERO,
} from './softfloat.js';

/** Accumulates softfloat flags into MXCSR; unmasked ones raise #XM/#UD before any write-back. */
export function commitFlags(cpu: CpuState, mem: SimdMemory): void {
  const f = sf.flags;
  if (f === 0) return;
  cpu.mxcsr |= f;
  if (f & ~(cpu.mxcsr >> 7) & 0x3f) simdException(cpu, mem);
}

/** Reads the r/m32 or r/m64 (REX.W) integer operand as a BigInt. */
function readIntRm(cpu: CpuState, mem: SimdMemory, i: SimdInsn): bigint {
  if (i.mod === 3) {
    if (i.rexW) return BigInt.asIntN(64, bits64(cpu.gpr[2 * i.rm]!, cpu.gpr[2 * i.rm + 1]!));
    return BigInt(cpu.gpr[2 * i.rm]! | 0);
  }
  if (i.rexW) return BigInt.asIntN(64, bits64(mem.read32(ea(i, 0)), mem.read32(ea(i, 4))));
  return BigInt(mem.read32(ea(i, 0)) | 0);
}

function writeIntReg(cpu: CpuState, r: number, v: bigint, wide: boolean): void {
  if (wide) setGpr64(cpu, r, lo32(v), hi32(v));
  else setGpr32(cpu, r, lo32(v));
}

// ---- floating-point lanes --------------------------------------------------------------------

/** Lane op code for fpLane. */
export const FP_SQRT = 4;
export const FP_MIN = 5;
export const FP_MAX = 6;
export const FP_RCP = 7;
export const FP_RSQRT = 8;

function dazBits(b: bigint, f: Fmt): bigint {
  if (!sf.daz) return b;
  const u = unpack(b, f, UA);
  return u.cls === CLS_ZERO ? (u.sign ? f.signBit : 0n) : b;
}

function fpLane(kind: number, a: bigint, b: bigint, f: Fmt): bigint {
  switch (kind) {
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: return arith(kind, a, b, f);
    case FP_SQRT: return sqrt(b, f);
    case FP_MIN: case FP_MAX: {
      const r = compare(a, b, f, true);
      const pickA = kind === FP_MIN ? r === -1 : r === 1;
      return dazBits(pickA ? a : b, f);
    }
    case FP_RCP: case FP_RSQRT: {
      // approximations on hardware; we return the correctly rounded value (within the spec's error bound)
      const save = sf.flags;
      const one = f === F32 ? 0x3f800000n : 0x3ff0000000000000n;
      const r = kind === FP_RCP ? arith(OP_DIV, one, b, f) : arith(OP_DIV, one, sqrt(b, f), f);
      sf.flags = save;
      return r;
    }
    default: return ud0();
  }
}

function ud0(): never {
  throw new Error('fpLane: unknown lane operation (a decoder table bug)');
}

/** 51..5F arithmetic (not 5A/5B): PS / PD / SS / SD by prefix. */
export function fpArith(cpu: CpuState, mem: SimdMemory, i: SimdInsn, kind: number): void {
  const pfx = i.prefix;
  sfFromMxcsr(cpu.mxcsr);
  getX(cpu, i.reg, D.d);
  const dd = D.d;
  const sd = S.d;
  if (pfx === 0 || pfx === 0x66) loadSrcX(cpu, mem, i, true);
  else loadSrcScalar(cpu, mem, i, pfx === 0xf3 ? 4 : 8);
  if (pfx === 0 || pfx === 0xf3) {
    const n = pfx === 0 ? 4 : 1;
    for (let k = 0; k < n; k++) T.d[k] = lo32(fpLane(kind, bits32(dd[k]!), bits32(sd[k]!), F32));
    commitFlags(cpu, mem);
    for (let k = 0; k < n; k++) dd[k] = T.d[k]!;
  } else {
    const n = pfx === 0x66 ? 2 : 1;
    for (let k = 0; k < n; k++) {
      const r = fpLane(kind, bits64(dd[2 * k]!, dd[2 * k + 1]!), bits64(sd[2 * k]!, sd[2 * k + 1]!), F64);
      T.d[2 * k] = lo32(r);
      T.d[2 * k + 1] = hi32(r);
    }
    commitFlags(cpu, mem);
    for (let k = 0; k < 2 * n; k++) dd[k] = T.d[k]!;
  }
  setX(cpu, i.reg, dd);
}

/** CMPPS/PD/SS/SD predicate (0..7) over compare() results. */
function cmpPred(pred: number, r: number): boolean {
  switch (pred & 7) {
    case 0: return r === 0;
    case 1: return r === -1;
    case 2: return r === -1 || r === 0;
    case 3: return r === 2;
    case 4: return r !== 0;
    case 5: return r !== -1;
    case 6: return r === 1 || r === 2;
    default: return r !== 2;
  }
}

export function fpCmp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  const pred = i.imm8 & 7;
  const signal = pred === 1 || pred === 2 || pred === 5 || pred === 6;
  sfFromMxcsr(cpu.mxcsr);
  getX(cpu, i.reg, D.d);
  if (pfx === 0 || pfx === 0x66) loadSrcX(cpu, mem, i, true);
  else loadSrcScalar(cpu, mem, i, pfx === 0xf3 ? 4 : 8);
  const dd = D.d;
  const sd = S.d;
  const td = T.d;
  if (pfx === 0 || pfx === 0xf3) {
    const n = pfx === 0 ? 4 : 1;
    for (let k = 0; k < n; k++) td[k] = cmpPred(pred, compare(bits32(dd[k]!), bits32(sd[k]!), F32, signal)) ? -1 : 0;
    commitFlags(cpu, mem);
    for (let k = 0; k < n; k++) dd[k] = td[k]!;
  } else {
    const n = pfx === 0x66 ? 2 : 1;
    for (let k = 0; k < n; k++) {
      const m = cmpPred(pred, compare(bits64(dd[2 * k]!, dd[2 * k + 1]!), bits64(sd[2 * k]!, sd[2 * k + 1]!), F64, signal)) ? -1 : 0;
      td[2 * k] = m;
      td[2 * k + 1] = m;
    }
    commitFlags(cpu, mem);
    for (let k = 0; k < 2 * n; k++) dd[k] = td[k]!;
  }
  setX(cpu, i.reg, dd);
}

export function comis(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const signal = i.opcode === 0x2f;
  sfFromMxcsr(cpu.mxcsr);
  const x = cpu.xmm;
  const o = i.reg << 2;
  let r: number;
  if (i.prefix === 0) {
    loadSrcScalar(cpu, mem, i, 4);
    r = compare(bits32(x[o]!), bits32(S.d[0]!), F32, signal);
  } else {
    loadSrcScalar(cpu, mem, i, 8);
    r = compare(bits64(x[o]!, x[o + 1]!), bits64(S.d[0]!, S.d[1]!), F64, signal);
  }
  commitFlags(cpu, mem);
  mem.setFlagsZPC(r === 0 || r === 2, r === 2, r === -1 || r === 2);
}

// ---- conversions -------------------------------------------------------------------------------

export function cvt5A(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  sfFromMxcsr(cpu.mxcsr);
  getX(cpu, i.reg, D.d);
  const dd = D.d;
  const sd = S.d;
  const td = T.d;
  switch (pfx) {
    case 0: { // CVTPS2PD xmm, xmm/m64
      loadSrcScalar(cpu, mem, i, 8);
      for (let k = 0; k < 2; k++) {
        const r = convert(bits32(sd[k]!), F32, F64);
        td[2 * k] = lo32(r);
        td[2 * k + 1] = hi32(r);
      }
      commitFlags(cpu, mem);
      for (let k = 0; k < 4; k++) dd[k] = td[k]!;
      break;
    }
    case 0x66: { // CVTPD2PS xmm, xmm/m128
      loadSrcX(cpu, mem, i, true);
      for (let k = 0; k < 2; k++) td[k] = lo32(convert(bits64(sd[2 * k]!, sd[2 * k + 1]!), F64, F32));
      commitFlags(cpu, mem);
      dd[0] = td[0]!;
      dd[1] = td[1]!;
      dd[2] = 0;
      dd[3] = 0;
      break;
    }
    case 0xf3: { // CVTSS2SD
      loadSrcScalar(cpu, mem, i, 4);
      const r = convert(bits32(sd[0]!), F32, F64);
      commitFlags(cpu, mem);
      dd[0] = lo32(r);
      dd[1] = hi32(r);
      break;
    }
    default: { // CVTSD2SS
      loadSrcScalar(cpu, mem, i, 8);
      const r = convert(bits64(sd[0]!, sd[1]!), F64, F32);
      commitFlags(cpu, mem);
      dd[0] = lo32(r);
      break;
    }
  }
  setX(cpu, i.reg, dd);
}

export function cvt5B(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  if (pfx === 0xf2) ud(mem);
  sfFromMxcsr(cpu.mxcsr);
  loadSrcX(cpu, mem, i, true);
  const sd = S.d;
  const td = T.d;
  for (let k = 0; k < 4; k++) {
    if (pfx === 0) td[k] = lo32(fromInt(BigInt(sd[k]! | 0), F32)); // CVTDQ2PS
    else td[k] = lo32(toInt(bits32(sd[k]!), F32, 32, pfx === 0xf3)); // CVTPS2DQ / CVTTPS2DQ
  }
  commitFlags(cpu, mem);
  setX(cpu, i.reg, td);
}

export function cvtE6(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  if (pfx === 0) ud(mem);
  sfFromMxcsr(cpu.mxcsr);
  const sd = S.d;
  const td = T.d;
  if (pfx === 0xf3) { // CVTDQ2PD xmm, xmm/m64
    loadSrcScalar(cpu, mem, i, 8);
    for (let k = 0; k < 2; k++) {
      const r = fromInt(BigInt(sd[k]! | 0), F64);
      td[2 * k] = lo32(r);
      td[2 * k + 1] = hi32(r);
    }
  } else { // CVTTPD2DQ (66) / CVTPD2DQ (F2)
    loadSrcX(cpu, mem, i, true);
    for (let k = 0; k < 2; k++) td[k] = lo32(toInt(bits64(sd[2 * k]!, sd[2 * k + 1]!), F64, 32, pfx === 0x66));
    td[2] = 0;
    td[3] = 0;
  }
  commitFlags(cpu, mem);
  setX(cpu, i.reg, td);
}

/** 2A: CVTPI2PS / CVTPI2PD / CVTSI2SS / CVTSI2SD. */
export function cvt2A(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  sfFromMxcsr(cpu.mxcsr);
  getX(cpu, i.reg, D.d);
  const dd = D.d;
  if (pfx === 0xf3 || pfx === 0xf2) {
    const v = readIntRm(cpu, mem, i);
    if (pfx === 0xf3) {
      const r = fromInt(v, F32);
      commitFlags(cpu, mem);
      dd[0] = lo32(r);
    } else {
      const r = fromInt(v, F64);
      commitFlags(cpu, mem);
      dd[0] = lo32(r);
      dd[1] = hi32(r);
    }
  } else {
    loadSrcMmx(cpu, mem, i);
    if (i.mod === 3) mmxEnter(cpu);
    if (pfx === 0) {
      const a = lo32(fromInt(BigInt(S.d[0]! | 0), F32));
      const b = lo32(fromInt(BigInt(S.d[1]! | 0), F32));
      commitFlags(cpu, mem);
      dd[0] = a;
      dd[1] = b;
    } else {
      const a = fromInt(BigInt(S.d[0]! | 0), F64);
      const b = fromInt(BigInt(S.d[1]! | 0), F64);
      dd[0] = lo32(a); dd[1] = hi32(a); dd[2] = lo32(b); dd[3] = hi32(b);
    }
  }
  setX(cpu, i.reg, dd);
}

/** 2C/2D: CVT(T)SS2SI, CVT(T)SD2SI, CVT(T)PS2PI, CVT(T)PD2PI. */
export function cvtToInt(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  const trunc = i.opcode === 0x2c;
  sfFromMxcsr(cpu.mxcsr);
  const sd = S.d;
  if (pfx === 0xf3 || pfx === 0xf2) {
    const width = i.rexW ? 64 : 32;
    let v: bigint;
    if (pfx === 0xf3) {
      loadSrcScalar(cpu, mem, i, 4);
      v = toInt(bits32(sd[0]!), F32, width, trunc);
    } else {
      loadSrcScalar(cpu, mem, i, 8);
      v = toInt(bits64(sd[0]!, sd[1]!), F64, width, trunc);
    }
    commitFlags(cpu, mem);
    writeIntReg(cpu, i.reg, v, i.rexW);
    return;
  }
  let a: number;
  let b: number;
  if (pfx === 0) {
    loadSrcScalar(cpu, mem, i, 8);
    a = lo32(toInt(bits32(sd[0]!), F32, 32, trunc));
    b = lo32(toInt(bits32(sd[1]!), F32, 32, trunc));
  } else {
    loadSrcX(cpu, mem, i, true);
    a = lo32(toInt(bits64(sd[0]!, sd[1]!), F64, 32, trunc));
    b = lo32(toInt(bits64(sd[2]!, sd[3]!), F64, 32, trunc));
  }
  commitFlags(cpu, mem);
  mmxEnter(cpu);
  setMmx(cpu, i.reg & 7, a, b);
}
