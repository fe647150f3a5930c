/**
 * The x87 register stack and the plumbing every x87 instruction shares: TOP, tags, the exact
 * 80-bit register images, exception raising (masked defaults, ES/B, stack faults), pending
 * exceptions (#MF/#NM), and the glue between the registers and extfloat.ts (begin/end around an
 * exact operation, operand conversion, C1 = "rounded up", condition codes).
 *
 * Status word: IE DE ZE OE UE PE SF ES (bits 0..7), C0 C1 C2 (8..10), TOP (11..13), C3 (14),
 * B (15). Tag word: two bits per physical register (00 valid, 01 zero, 10 special, 11 empty).
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { VEC_MF, VEC_NM, ea, side } from './common.js';
import { dbl, doubleBitsToExt, ext, extToDoubleBits } from './f80.js';
import { F32, F64, bits64, sf } from './softfloat.js';
import { X_ADD, X_DIV, X_MUL, X_SUB, arithExt, fromFloat, fromIntExt, packExt, xs } from './extfloat.js';

export const SW_IE = 0x01;
export const SW_DE = 0x02;
export const SW_ZE = 0x04;
export const SW_PE = 0x20;
const SW_SF = 0x40;
export const SW_ES = 0x80;
export const SW_C0 = 0x100;
export const SW_C1 = 0x200;
export const SW_C2 = 0x400;
export const SW_C3 = 0x4000;
export const SW_B = 0x8000;
export const SW_CC = SW_C0 | SW_C1 | SW_C2 | SW_C3;

const TAG_VALID = 0;
const TAG_ZERO = 1;
const TAG_SPECIAL = 2;
export const TAG_EMPTY = 3;

const CR0_MP = 2;
const CR0_TS = 8;
const CR0_NE = 32;

// ---- stack and register helpers -------------------------------------------------------------------

export function top(cpu: CpuState): number {
  return (cpu.fpuStatus >> 11) & 7;
}

export function setTop(cpu: CpuState, t: number): void {
  cpu.fpuStatus = (cpu.fpuStatus & ~0x3800) | ((t & 7) << 11);
}

export function phys(cpu: CpuState, i: number): number {
  return (top(cpu) + i) & 7;
}

export function tag(cpu: CpuState, p: number): number {
  return (cpu.fpuTag >> (2 * p)) & 3;
}

export function setTag(cpu: CpuState, p: number, t: number): void {
  cpu.fpuTag = (cpu.fpuTag & ~(3 << (2 * p))) | (t << (2 * p));
}

function tagOfValue(v: number): number {
  if (v === 0) return TAG_ZERO;
  if (!Number.isFinite(v)) return TAG_SPECIAL;
  return TAG_VALID;
}

/** Tag class of an 80-bit image. */
export function tagOfExt(lo: number, hi: number, se: number): number {
  const e = se & 0x7fff;
  if (e === 0x7fff) return TAG_SPECIAL;
  if (e === 0) return hi === 0 && lo === 0 ? TAG_ZERO : TAG_SPECIAL;
  return hi & 0x80000000 ? TAG_VALID : TAG_SPECIAL;
}

/** Transcendental result: stored from a double, flagged inexact unless zero or infinite. */
export function setApprox(cpu: CpuState, p: number, v: number): void {
  setReg(cpu, p, v);
  if (v !== 0 && Number.isFinite(v)) raise(cpu, SW_PE);
}

function setReg(cpu: CpuState, p: number, v: number): void {
  if (v !== v) {
    // a NaN produced by JS arithmetic: store the x87 default (negative quiet NaN indefinite)
    setIndefinite(cpu, p);
    return;
  }
  cpu.st[p] = v;
  side(cpu).rawValid[p] = 0;
  setTag(cpu, p, tagOfValue(v));
}

/** Stores an exact 80-bit image in physical register p. */
export function setRegExt(cpu: CpuState, p: number, lo: number, hi: number, se: number): void {
  const sd = side(cpu);
  sd.raw[3 * p] = lo;
  sd.raw[3 * p + 1] = hi;
  sd.raw[3 * p + 2] = se & 0xffff;
  extToDoubleBits(lo, hi, se);
  sd.stBits[2 * p] = dbl.lo;
  sd.stBits[2 * p + 1] = dbl.hi;
  sd.markRaw(p);
  setTag(cpu, p, tagOfExt(lo, hi, se));
}


export function setIndefinite(cpu: CpuState, p: number): void {
  setRegExt(cpu, p, 0, 0xc0000000, 0xffff);
}

/** The 80-bit image of physical register p, into `ext`. */
export function regExt(cpu: CpuState, p: number): void {
  const sd = side(cpu);
  if (sd.rawOk(p)) {
    ext.lo = sd.raw[3 * p]! >>> 0;
    ext.hi = sd.raw[3 * p + 1]! >>> 0;
    ext.se = sd.raw[3 * p + 2]! & 0xffff;
  } else {
    doubleBitsToExt(sd.stBits[2 * p]!, sd.stBits[2 * p + 1]!);
  }
}


export function copyReg(cpu: CpuState, dst: number, src: number): void {
  const sd = side(cpu);
  sd.stBits[2 * dst] = sd.stBits[2 * src]!;
  sd.stBits[2 * dst + 1] = sd.stBits[2 * src + 1]!;
  sd.raw[3 * dst] = sd.raw[3 * src]!;
  sd.raw[3 * dst + 1] = sd.raw[3 * src + 1]!;
  sd.raw[3 * dst + 2] = sd.raw[3 * src + 2]!;
  if (sd.rawOk(src)) sd.markRaw(dst);
  else sd.rawValid[dst] = 0;
  setTag(cpu, dst, tag(cpu, src));
}

/** Raises x87 exception flags; returns true when all of them are masked (default result applies). */
export function raise(cpu: CpuState, flags: number): boolean {
  cpu.fpuStatus |= flags;
  if (flags & ~cpu.fpuControl & 0x3f) {
    cpu.fpuStatus |= SW_ES | SW_B;
    return false;
  }
  return true;
}

/** Stack underflow (reading an empty register): IE|SF, C1 = 0. */
export function underflow(cpu: CpuState): boolean {
  cpu.fpuStatus &= ~SW_C1;
  return raise(cpu, SW_IE | SW_SF);
}

/** Pushes: returns the new ST(0) physical index, or -1 after a masked/unmasked overflow was handled. */
export function push(cpu: CpuState): number {
  const t = (top(cpu) - 1) & 7;
  if (tag(cpu, t) !== TAG_EMPTY) {
    cpu.fpuStatus |= SW_C1;
    if (raise(cpu, SW_IE | SW_SF)) {
      setTop(cpu, t);
      setIndefinite(cpu, t);
    }
    return -1;
  }
  setTop(cpu, t);
  cpu.fpuStatus &= ~SW_C1;
  return t;
}

export function pop(cpu: CpuState): void {
  const t = top(cpu);
  setTag(cpu, t, TAG_EMPTY);
  setTop(cpu, t + 1);
}

export function pushValue(cpu: CpuState, v: number): void {
  const p = push(cpu);
  if (p >= 0) setReg(cpu, p, v);
}

export function fxch(cpu: CpuState, r: number): void {
  const p0 = phys(cpu, 0);
  const pr = phys(cpu, r);
  if (tag(cpu, p0) === TAG_EMPTY || tag(cpu, pr) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
    if (tag(cpu, p0) === TAG_EMPTY) setIndefinite(cpu, p0);
    if (tag(cpu, pr) === TAG_EMPTY) setIndefinite(cpu, pr);
  }
  regExt(cpu, p0);
  const lo = ext.lo;
  const hi = ext.hi;
  const se = ext.se;
  copyReg(cpu, p0, pr);
  setRegExt(cpu, pr, lo, hi, se);
  cpu.fpuStatus &= ~SW_C1;
}

/** Physical register index of ST(i) (FXSAVE/FXRSTOR store registers in stack order). */
export function physOf(cpu: CpuState, i: number): number {
  return phys(cpu, i);
}

// ---- pending exceptions and FWAIT --------------------------------------------------------------

/** FWAIT/9B and every waiting x87 instruction: #MF if an unmasked exception is pending (CR0.NE). */
export function fwait(cpu: CpuState, mem: SimdMemory): void {
  if ((cpu.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) mem.fault(VEC_NM);
  checkPending(cpu, mem);
}

export function checkPending(cpu: CpuState, mem: SimdMemory): void {
  // with CR0.NE clear the error is reported through FERR#/IRQ13, which this machine does not wire
  if (cpu.fpuStatus & SW_ES && cpu.cr0 & CR0_NE) mem.fault(VEC_MF);
}

export function fninit(cpu: CpuState): void {
  cpu.fpuControl = 0x037f;
  cpu.fpuStatus = 0;
  cpu.fpuTag = 0xffff;
  cpu.fpuOpcode = 0;
  cpu.fpuIp = 0;
  cpu.fpuDp = 0;
}

// ---- rounding helpers --------------------------------------------------------------------------

export function rc(cpu: CpuState): number {
  return (cpu.fpuControl >> 10) & 3;
}


// ---- extended arithmetic glue -----------------------------------------------------------------

/** Significand precision from CW.PC (0: 24, 2: 53, 3 and reserved 1: 64). */
export function precision(cpu: CpuState): number {
  const pc = (cpu.fpuControl >> 8) & 3;
  return pc === 0 ? 24 : pc === 2 ? 53 : 64;
}

export function begin(cpu: CpuState): void {
  sf.flags = 0;
  sf.rc = rc(cpu);
  sf.ftz = false;
  sf.daz = false;
  xs.roundedUp = false;
}

const PRE_EXC = SW_IE | SW_DE | SW_ZE;

/** Applies sf.flags (and C1 = rounded up); false when an unmasked IE/DE/ZE suppresses the result. */
export function end(cpu: CpuState): boolean {
  const f = sf.flags & 0x3f;
  cpu.fpuStatus &= ~SW_C1;
  if (f & SW_PE && xs.roundedUp) cpu.fpuStatus |= SW_C1;
  if (f === 0) return true;
  raise(cpu, f);
  return (f & ~cpu.fpuControl & PRE_EXC) === 0;
}

/** Packed extended value of physical register p. */
export function getX(cpu: CpuState, p: number): bigint {
  regExt(cpu, p);
  return packExt(ext.lo, ext.hi, ext.se);
}

export function putX(cpu: CpuState, p: number, x: bigint): void {
  setRegExt(cpu, p, Number(x & 0xffffffffn), Number((x >> 32n) & 0xffffffffn), Number(x >> 64n));
}

export function readF32Bits(mem: SimdMemory, i: SimdInsn): bigint {
  return BigInt(mem.read32(ea(i, 0)) >>> 0);
}

export function readF64Bits(mem: SimdMemory, i: SimdInsn): bigint {
  return bits64(mem.read32(ea(i, 0)), mem.read32(ea(i, 4)));
}

/** Memory operand of the D8/DC/DA/DE arithmetic groups as an extended value (flags into sf). */
export function readArithOperand(mem: SimdMemory, i: SimdInsn): bigint {
  switch (i.opcode) {
    case 0xd8: return fromFloat(readF32Bits(mem, i), F32);
    case 0xdc: return fromFloat(readF64Bits(mem, i), F64);
    case 0xda: return fromIntExt(BigInt(mem.read32(ea(i, 0)) | 0));
    default: return fromIntExt(BigInt((mem.read16(ea(i, 0)) << 16) >> 16));
  }
}

/**
 * Binary op k (0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr) of a and b into physical register
 * dst; sf must have been prepared by begin() (operand conversion flags included).
 */
export function arith(cpu: CpuState, k: number, a: bigint, b: bigint, dst: number): void {
  const p = precision(cpu);
  let r: bigint;
  switch (k) {
    case 0: r = arithExt(X_ADD, a, b, p); break;
    case 1: r = arithExt(X_MUL, a, b, p); break;
    case 4: r = arithExt(X_SUB, a, b, p); break;
    case 5: r = arithExt(X_SUB, b, a, p); break;
    case 6: r = arithExt(X_DIV, a, b, p); break;
    default: r = arithExt(X_DIV, b, a, p); break;
  }
  if (end(cpu)) putX(cpu, dst, r);
}

export function setCC(cpu: CpuState, r: number): void {
  // r: -1 less, 0 equal, 1 greater, 2 unordered
  let cc = 0;
  if (r === -1) cc = SW_C0;
  else if (r === 0) cc = SW_C3;
  else if (r === 2) cc = SW_C0 | SW_C2 | SW_C3;
  cpu.fpuStatus = (cpu.fpuStatus & ~SW_CC) | cc;
}

export function setEflagsFromCompare(mem: SimdMemory, r: number): void {
  mem.setFlagsZPC(r === 0 || r === 2, r === 2, r === -1 || r === 2);
}
