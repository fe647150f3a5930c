/**
 * The 0F-map SIMD opcodes: MMX (no prefix, MMX registers), SSE/SSE2 (XMM; 66/F2/F3 select
 * the form), data movement, floating point through softfloat.ts, conversions, and the 0F AE
 * group (FXSAVE/FXRSTOR/LDMXCSR/STMXCSR, in fxsave.ts).
 *
 * Legacy-SSE alignment: every 128-bit memory operand must be 16-byte aligned (#GP(0)) except
 * MOVUPS/MOVUPD/MOVDQU; scalar and 64-bit operands have no requirement.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import {
  CR4_OSFXSR, D, S, T, VEC_UD, checkAlign16, ea, getGpr32, getX, loadSrcScalar, loadSrcX, readMem,
  setGpr32, setGpr64, setX, simdException, writeMem,
} from './common.js';
import { group15 } from './fxsave.js';
import { emms, getMmx, mmxEnter, setMmx } from './mmx.js';
import {
  F32, F64, OP_ADD, OP_DIV, OP_MUL, OP_SUB, type Fmt, arith, bits32, bits64, compare, convert, fromInt,
  hi32, lo32, sf, sfFromMxcsr, sqrt, toInt, unpack, UA, CLS_ZERO,
} from './softfloat.js';
import { byteShift, intOp, isIntBinary, shift } from './sse-int.js';

function ud(mem: SimdMemory): never {
  return mem.fault(VEC_UD);
}

function needSse(cpu: CpuState, mem: SimdMemory): void {
  if (!(cpu.cr4 & CR4_OSFXSR)) ud(mem);
}

/** Accumulates softfloat flags into MXCSR; unmasked ones raise #XM/#UD before any write-back. */
function commitFlags(cpu: CpuState, mem: SimdMemory): void {
  const f = sf.flags;
  if (f === 0) return;
  cpu.mxcsr |= f;
  if (f & ~(cpu.mxcsr >> 7) & 0x3f) simdException(cpu, mem);
}

export function handles0F(op: number): boolean {
  return (op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x7f && op !== 0x78 &&
    op !== 0x79 && op !== 0x7a && op !== 0x7b && op !== 0x7c && op !== 0x7d) ||
    op === 0xae || (op >= 0xc2 && op <= 0xc6) || (op >= 0xd1 && op <= 0xfe && op !== 0xf0);
}

/** Second operand of an MMX instruction into S (MMX register or m64). */
function loadSrcMmx(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod === 3) getMmx(cpu, i.rm & 7, S.d, 0);
  else readMem(mem, i, 8, S.d);
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
const FP_SQRT = 4;
const FP_MIN = 5;
const FP_MAX = 6;
const FP_RCP = 7;
const FP_RSQRT = 8;

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
function fpArith(cpu: CpuState, mem: SimdMemory, i: SimdInsn, kind: number): void {
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

function fpCmp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

function comis(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

function cvt5A(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

function cvt5B(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

function cvtE6(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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
function cvt2A(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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
function cvtToInt(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

// ---- integer MMX/SSE2 ----------------------------------------------------------------------------

function intBinary(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  if (i.prefix === 0x66) {
    needSse(cpu, mem);
    loadSrcX(cpu, mem, i, true);
    getX(cpu, i.reg, D.d);
    intOp(op, 16);
    setX(cpu, i.reg, D.d);
  } else if (i.prefix === 0) {
    if (op === 0x6c || op === 0x6d) ud(mem); // PUNPCK*QDQ: XMM only
    loadSrcMmx(cpu, mem, i);
    mmxEnter(cpu);
    getMmx(cpu, i.reg & 7, D.d, 0);
    intOp(op, 8);
    setMmx(cpu, i.reg & 7, D.d[0]!, D.d[1]!);
  } else {
    ud(mem);
  }
}

/** 70: PSHUFW / PSHUFD / PSHUFHW / PSHUFLW. */
function pshuf(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const imm = i.imm8;
  const pfx = i.prefix;
  if (pfx === 0) {
    loadSrcMmx(cpu, mem, i);
    mmxEnter(cpu);
    for (let k = 0; k < 4; k++) T.w[k] = S.w[(imm >> (2 * k)) & 3]!;
    setMmx(cpu, i.reg & 7, T.d[0]!, T.d[1]!);
    return;
  }
  needSse(cpu, mem);
  loadSrcX(cpu, mem, i, true);
  if (pfx === 0x66) {
    for (let k = 0; k < 4; k++) T.d[k] = S.d[(imm >> (2 * k)) & 3]!;
  } else if (pfx === 0xf3) {
    T.d[0] = S.d[0]!;
    T.d[1] = S.d[1]!;
    for (let k = 0; k < 4; k++) T.w[4 + k] = S.w[4 + ((imm >> (2 * k)) & 3)]!;
  } else {
    T.d[2] = S.d[2]!;
    T.d[3] = S.d[3]!;
    for (let k = 0; k < 4; k++) T.w[k] = S.w[(imm >> (2 * k)) & 3]!;
  }
  setX(cpu, i.reg, T.d);
}

/** 71/72/73: shift-by-immediate groups on the rm register. */
function shiftImm(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  const op = i.opcode;
  const sub = i.reg & 7;
  const c = i.imm8;
  const xmmForm = i.prefix === 0x66;
  if (!xmmForm && i.prefix !== 0) ud(mem);
  const e = op === 0x71 ? 2 : op === 0x72 ? 4 : 8;
  let kind: number;
  if (sub === 2) kind = 1;
  else if (sub === 4 && op !== 0x73) kind = 2;
  else if (sub === 6) kind = 0;
  else if (op === 0x73 && xmmForm && (sub === 3 || sub === 7)) kind = sub === 7 ? 3 : 4;
  else return ud(mem);
  if (xmmForm) {
    needSse(cpu, mem);
    getX(cpu, i.rm, D.d);
    if (kind >= 3) byteShift(kind === 3, c);
    else shift(kind, e, c, 16);
    setX(cpu, i.rm, D.d);
  } else {
    mmxEnter(cpu);
    getMmx(cpu, i.rm & 7, D.d, 0);
    shift(kind, e, c, 8);
    setMmx(cpu, i.rm & 7, D.d[0]!, D.d[1]!);
  }
}

// ---- moves ----------------------------------------------------------------------------------------

/** 10/11 and 28/29: MOVUPS/MOVUPD/MOVSS/MOVSD, MOVAPS/MOVAPD (load form when !store). */
function movPacked(cpu: CpuState, mem: SimdMemory, i: SimdInsn, store: boolean, aligned: boolean): void {
  const pfx = i.prefix;
  if (pfx === 0xf3 || pfx === 0xf2) {
    if (aligned) ud(mem);
    const n = pfx === 0xf3 ? 4 : 8;
    const x = cpu.xmm;
    const r = i.reg << 2;
    if (i.mod === 3) {
      const [dst, src] = store ? [i.rm << 2, r] : [r, i.rm << 2];
      x[dst] = x[src]!;
      if (n === 8) x[dst + 1] = x[src + 1]!;
    } else if (store) {
      writeMem(mem, i, n, x, r);
    } else {
      readMem(mem, i, n, S.d);
      setX(cpu, i.reg, S.d);
    }
    return;
  }
  if (store) {
    if (i.mod === 3) {
      getX(cpu, i.reg, T.d);
      setX(cpu, i.rm, T.d);
    } else {
      if (aligned) checkAlign16(mem, i);
      writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
    }
  } else {
    loadSrcX(cpu, mem, i, aligned);
    setX(cpu, i.reg, S.d);
  }
}

/** 12/13/16/17: MOVLPS/MOVLPD/MOVHLPS (12,13) and MOVHPS/MOVHPD/MOVLHPS (16,17). */
function movHalf(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem); // MOVDDUP/MOVSLDUP/MOVSHDUP: SSE3, not advertised
  const x = cpu.xmm;
  const r = i.reg << 2;
  const high = op >= 0x16 ? 2 : 0;
  if (op === 0x13 || op === 0x17) { // store
    if (i.mod === 3) ud(mem);
    writeMem(mem, i, 8, x, r + high);
    return;
  }
  if (i.mod === 3) {
    if (i.prefix === 0x66) ud(mem);
    const s = i.rm << 2;
    if (op === 0x12) { // MOVHLPS: low ← src high
      x[r] = x[s + 2]!;
      x[r + 1] = x[s + 3]!;
    } else { // MOVLHPS: high ← src low
      x[r + 2] = x[s]!;
      x[r + 3] = x[s + 1]!;
    }
    return;
  }
  const lo = mem.read32(ea(i, 0));
  const hi = mem.read32(ea(i, 4));
  x[r + high] = lo;
  x[r + high + 1] = hi;
}

function unpckFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  const d = D.d;
  const s = S.d;
  const t = T.d;
  const high = i.opcode === 0x15;
  if (i.prefix === 0) {
    const o = high ? 2 : 0;
    t[0] = d[o]!; t[1] = s[o]!; t[2] = d[o + 1]!; t[3] = s[o + 1]!;
  } else {
    const o = high ? 2 : 0;
    t[0] = d[o]!; t[1] = d[o + 1]!; t[2] = s[o]!; t[3] = s[o + 1]!;
  }
  setX(cpu, i.reg, t);
}

function logicFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  const d = D.d;
  const s = S.d;
  for (let k = 0; k < 4; k++) {
    switch (i.opcode) {
      case 0x54: d[k] = d[k]! & s[k]!; break;
      case 0x55: d[k] = ~d[k]! & s[k]!; break;
      case 0x56: d[k] = d[k]! | s[k]!; break;
      default: d[k] = d[k]! ^ s[k]!; break;
    }
  }
  setX(cpu, i.reg, d);
}

function shufFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  const d = D.d;
  const s = S.d;
  const t = T.d;
  const imm = i.imm8;
  if (i.prefix === 0) {
    t[0] = d[imm & 3]!;
    t[1] = d[(imm >> 2) & 3]!;
    t[2] = s[(imm >> 4) & 3]!;
    t[3] = s[(imm >> 6) & 3]!;
  } else {
    const a = imm & 1 ? 2 : 0;
    const b = imm & 2 ? 2 : 0;
    t[0] = d[a]!; t[1] = d[a + 1]!; t[2] = s[b]!; t[3] = s[b + 1]!;
  }
  setX(cpu, i.reg, t);
}

/** 6E: MOVD/MOVQ mm/xmm, r/m32/64. */
function movdToVec(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  let lo: number;
  let hi = 0;
  if (i.mod === 3) {
    lo = cpu.gpr[2 * i.rm]!;
    if (i.rexW) hi = cpu.gpr[2 * i.rm + 1]!;
  } else {
    lo = mem.read32(ea(i, 0));
    if (i.rexW) hi = mem.read32(ea(i, 4));
  }
  if (i.prefix === 0x66) {
    needSse(cpu, mem);
    const x = cpu.xmm;
    const r = i.reg << 2;
    x[r] = lo; x[r + 1] = hi; x[r + 2] = 0; x[r + 3] = 0;
  } else if (i.prefix === 0) {
    mmxEnter(cpu);
    setMmx(cpu, i.reg & 7, lo, hi);
  } else ud(mem);
}

/** 7E: MOVD/MOVQ r/m, mm/xmm; F3 7E: MOVQ xmm, xmm/m64. */
function movdFromVec(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  if (pfx === 0xf3) {
    needSse(cpu, mem);
    loadSrcScalar(cpu, mem, i, 8);
    const x = cpu.xmm;
    const r = i.reg << 2;
    x[r] = S.d[0]!; x[r + 1] = S.d[1]!; x[r + 2] = 0; x[r + 3] = 0;
    return;
  }
  if (pfx === 0x66) {
    needSse(cpu, mem);
    getX(cpu, i.reg, T.d);
  } else if (pfx === 0) {
    getMmx(cpu, i.reg & 7, T.d, 0);
  } else ud(mem);
  if (i.mod === 3) {
    if (i.rexW) setGpr64(cpu, i.rm, T.d[0]!, T.d[1]!);
    else setGpr32(cpu, i.rm, T.d[0]!);
  } else {
    writeMem(mem, i, i.rexW ? 8 : 4, T.d);
  }
  if (pfx === 0) mmxEnter(cpu);
}

/** 6F / 7F: MOVQ mm (0), MOVDQA (66), MOVDQU (F3). */
function movdq(cpu: CpuState, mem: SimdMemory, i: SimdInsn, store: boolean): void {
  const pfx = i.prefix;
  if (pfx === 0) {
    if (store) {
      getMmx(cpu, i.reg & 7, T.d, 0);
      if (i.mod === 3) {
        mmxEnter(cpu);
        setMmx(cpu, i.rm & 7, T.d[0]!, T.d[1]!);
      } else {
        writeMem(mem, i, 8, T.d);
        mmxEnter(cpu);
      }
    } else {
      loadSrcMmx(cpu, mem, i);
      mmxEnter(cpu);
      setMmx(cpu, i.reg & 7, S.d[0]!, S.d[1]!);
    }
    return;
  }
  if (pfx === 0xf2) ud(mem);
  needSse(cpu, mem);
  const aligned = pfx === 0x66;
  if (store) {
    if (i.mod === 3) {
      getX(cpu, i.reg, T.d);
      setX(cpu, i.rm, T.d);
    } else {
      if (aligned) checkAlign16(mem, i);
      writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
    }
  } else {
    loadSrcX(cpu, mem, i, aligned);
    setX(cpu, i.reg, S.d);
  }
}

/** D6: MOVQ xmm/m64, xmm (66); MOVQ2DQ (F3); MOVDQ2Q (F2). */
function opD6(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const x = cpu.xmm;
  const r = i.reg << 2;
  switch (i.prefix) {
    case 0x66:
      if (i.mod === 3) {
        const d = i.rm << 2;
        x[d] = x[r]!; x[d + 1] = x[r + 1]!; x[d + 2] = 0; x[d + 3] = 0;
      } else writeMem(mem, i, 8, x, r);
      return;
    case 0xf3: // MOVQ2DQ xmm, mm
      if (i.mod !== 3) ud(mem);
      getMmx(cpu, i.rm & 7, T.d, 0);
      mmxEnter(cpu);
      x[r] = T.d[0]!; x[r + 1] = T.d[1]!; x[r + 2] = 0; x[r + 3] = 0;
      return;
    case 0xf2: { // MOVDQ2Q mm, xmm
      if (i.mod !== 3) ud(mem);
      const s = i.rm << 2;
      mmxEnter(cpu);
      setMmx(cpu, i.reg & 7, x[s]!, x[s + 1]!);
      return;
    }
    default: ud(mem);
  }
}

function pmovmskb(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  let m = 0;
  if (i.prefix === 0x66) {
    const b = cpu.xmmU8;
    const o = i.rm << 4;
    for (let k = 0; k < 16; k++) m |= (b[o + k]! >> 7) << k;
  } else if (i.prefix === 0) {
    getMmx(cpu, i.rm & 7, T.d, 0);
    mmxEnter(cpu);
    for (let k = 0; k < 8; k++) m |= (T.b[k]! >> 7) << k;
  } else ud(mem);
  setGpr32(cpu, i.reg, m);
}

function movmskFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  const x = cpu.xmm;
  const o = i.rm << 2;
  let m: number;
  if (i.prefix === 0) m = (x[o]! >>> 31) | ((x[o + 1]! >>> 31) << 1) | ((x[o + 2]! >>> 31) << 2) | ((x[o + 3]! >>> 31) << 3);
  else if (i.prefix === 0x66) m = (x[o + 1]! >>> 31) | ((x[o + 3]! >>> 31) << 1);
  else return ud(mem);
  setGpr32(cpu, i.reg, m);
}

function pinsrw(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const v = i.mod === 3 ? cpu.gpr[2 * i.rm]! & 0xffff : mem.read16(ea(i, 0));
  if (i.prefix === 0x66) {
    needSse(cpu, mem);
    getX(cpu, i.reg, D.d);
    D.w[i.imm8 & 7] = v;
    setX(cpu, i.reg, D.d);
  } else if (i.prefix === 0) {
    getMmx(cpu, i.reg & 7, D.d, 0);
    mmxEnter(cpu);
    D.w[i.imm8 & 3] = v;
    setMmx(cpu, i.reg & 7, D.d[0]!, D.d[1]!);
  } else ud(mem);
}

function pextrw(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  let v: number;
  if (i.prefix === 0x66) {
    getX(cpu, i.rm, T.d);
    v = T.w[i.imm8 & 7]!;
  } else if (i.prefix === 0) {
    getMmx(cpu, i.rm & 7, T.d, 0);
    mmxEnter(cpu);
    v = T.w[i.imm8 & 3]!;
  } else return ud(mem);
  setGpr32(cpu, i.reg, v);
}

/** F7: MASKMOVQ / MASKMOVDQU — byte-masked store to DS:rDI. */
function maskmov(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  const n = i.prefix === 0x66 ? 16 : 8;
  if (n === 16) {
    getX(cpu, i.reg, D.d);
    getX(cpu, i.rm, S.d);
  } else if (i.prefix === 0) {
    getMmx(cpu, i.reg & 7, D.d, 0);
    getMmx(cpu, i.rm & 7, S.d, 0);
    mmxEnter(cpu);
  } else ud(mem);
  // implicit destination DS:rDI (address-size override not visible here: 64/32-bit by mode)
  const rdi = i.long ? cpu.gpr[15]! * 4294967296 + (cpu.gpr[14]! >>> 0) : cpu.segBase[3]! + (cpu.gpr[14]! >>> 0);
  for (let k = 0; k < n; k++) {
    if (S.b[k]! & 0x80) {
      const a = rdi + k;
      mem.write8(i.long ? a : a >>> 0, D.b[k]!);
    }
  }
}

// ---- dispatch ----------------------------------------------------------------------------------

export function sse(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.map !== 1) ud(mem); // SSSE3/SSE4 (0F38/0F3A) are not advertised
  const op = i.opcode;
  if (isIntBinary(op)) {
    intBinary(cpu, mem, i);
    return;
  }
  const pfx = i.prefix;
  // all remaining forms except the pure-MMX ones need CR4.OSFXSR
  switch (op) {
    case 0x6e: movdToVec(cpu, mem, i); return;
    case 0x7e: movdFromVec(cpu, mem, i); return;
    case 0x6f: movdq(cpu, mem, i, false); return;
    case 0x7f: movdq(cpu, mem, i, true); return;
    case 0x70: pshuf(cpu, mem, i); return;
    case 0x71: case 0x72: case 0x73: shiftImm(cpu, mem, i); return;
    case 0x77:
      if (pfx !== 0) ud(mem);
      emms(cpu);
      return;
    case 0xd7: pmovmskb(cpu, mem, i); return;
    case 0xc4: pinsrw(cpu, mem, i); return;
    case 0xc5: pextrw(cpu, mem, i); return;
    case 0xe7: // MOVNTQ / MOVNTDQ
      if (i.mod === 3) ud(mem);
      if (pfx === 0) {
        getMmx(cpu, i.reg & 7, T.d, 0);
        writeMem(mem, i, 8, T.d);
        mmxEnter(cpu);
      } else if (pfx === 0x66) {
        needSse(cpu, mem);
        checkAlign16(mem, i);
        writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
      } else ud(mem);
      return;
    case 0xf7: maskmov(cpu, mem, i); return;
    case 0xc3: // MOVNTI m32/m64, r
      if (i.mod === 3 || pfx !== 0) ud(mem);
      T.d[0] = getGpr32(cpu, i.reg);
      T.d[1] = cpu.gpr[2 * i.reg + 1]!;
      writeMem(mem, i, i.rexW ? 8 : 4, T.d);
      return;
    case 0x2a: cvt2A(cpu, mem, i); return;
    case 0x2c: case 0x2d:
      needSse(cpu, mem);
      cvtToInt(cpu, mem, i);
      return;
    case 0xae: group15(cpu, mem, i); return;
    default: break;
  }
  needSse(cpu, mem);
  switch (op) {
    case 0x10: movPacked(cpu, mem, i, false, false); return;
    case 0x11: movPacked(cpu, mem, i, true, false); return;
    case 0x28: movPacked(cpu, mem, i, false, true); return;
    case 0x29: movPacked(cpu, mem, i, true, true); return;
    case 0x12: case 0x13: case 0x16: case 0x17: movHalf(cpu, mem, i); return;
    case 0x14: case 0x15: unpckFp(cpu, mem, i); return;
    case 0x2b: // MOVNTPS / MOVNTPD
      if (i.mod === 3 || (pfx !== 0 && pfx !== 0x66)) ud(mem);
      checkAlign16(mem, i);
      writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
      return;
    case 0x2e: case 0x2f:
      if (pfx !== 0 && pfx !== 0x66) ud(mem);
      comis(cpu, mem, i);
      return;
    case 0x50: movmskFp(cpu, mem, i); return;
    case 0x51: fpArith(cpu, mem, i, FP_SQRT); return;
    case 0x52: case 0x53:
      if (pfx !== 0 && pfx !== 0xf3) ud(mem);
      fpArith(cpu, mem, i, op === 0x52 ? FP_RSQRT : FP_RCP);
      return;
    case 0x54: case 0x55: case 0x56: case 0x57: logicFp(cpu, mem, i); return;
    case 0x58: fpArith(cpu, mem, i, OP_ADD); return;
    case 0x59: fpArith(cpu, mem, i, OP_MUL); return;
    case 0x5a: cvt5A(cpu, mem, i); return;
    case 0x5b: cvt5B(cpu, mem, i); return;
    case 0x5c: fpArith(cpu, mem, i, OP_SUB); return;
    case 0x5d: fpArith(cpu, mem, i, FP_MIN); return;
    case 0x5e: fpArith(cpu, mem, i, OP_DIV); return;
    case 0x5f: fpArith(cpu, mem, i, FP_MAX); return;
    case 0xc2: fpCmp(cpu, mem, i); return;
    case 0xc6: shufFp(cpu, mem, i); return;
    case 0xd6: opD6(cpu, mem, i); return;
    case 0xe6: cvtE6(cpu, mem, i); return;
    default: ud(mem);
  }
}
