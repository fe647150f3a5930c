/**
 * The x87 FPU (opcodes D8..DF). Registers hold exact 80-bit images (X87Side, per physical
 * register) and `cpu.st` mirrors them as doubles. Loads, stores, + - × ÷, square root, compares,
 * FRNDINT, FSCALE, FXTRACT, FPREM/FPREM1 and integer/BCD conversions are exact (extfloat.ts)
 * under the control word's precision and rounding control, with IE DE ZE OE UE PE, C1 =
 * "rounded up", stack faults (IE|SF, masked → QNaN indefinite) and pending-exception #MF.
 * Transcendentals (F2XM1 FYL2X FYL2XP1 FPTAN FPATAN FSIN FCOS FSINCOS) are computed in double.
 *
 * Status word: IE DE ZE OE UE PE SF ES (bits 0..7), C0 C1 C2 (8..10), TOP (11..13), C3 (14),
 * B (15). Tag word: two bits per physical register (00 valid, 01 zero, 10 special, 11 empty).
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { VEC_MF, VEC_NM, VEC_UD, ea, side } from './common.js';
import { dbl, doubleBitsToExt, ext, extToDoubleBits } from './f80.js';
import { F32, F64, RC_DOWN, RC_UP, bits64, hi32, lo32, sf } from './softfloat.js';
import {
  X_ADD, X_DIV, X_MUL, X_SUB, arithExt, compareExt, fromFloat, fromIntExt, packExt, premExt, rem, roundIntExt,
  scaleExt, sqrtExt, toFloat, toIntExt, xs,
} from './extfloat.js';

const SW_IE = 0x01;
const SW_DE = 0x02;
const SW_ZE = 0x04;
const SW_PE = 0x20;
const SW_SF = 0x40;
const SW_ES = 0x80;
const SW_C0 = 0x100;
const SW_C1 = 0x200;
const SW_C2 = 0x400;
const SW_C3 = 0x4000;
const SW_B = 0x8000;
const SW_CC = SW_C0 | SW_C1 | SW_C2 | SW_C3;

const TAG_VALID = 0;
const TAG_ZERO = 1;
const TAG_SPECIAL = 2;
const TAG_EMPTY = 3;

const CR0_MP = 2;
const CR0_TS = 8;
const CR0_NE = 32;

// ---- stack and register helpers -------------------------------------------------------------------

function top(cpu: CpuState): number {
  return (cpu.fpuStatus >> 11) & 7;
}

function setTop(cpu: CpuState, t: number): void {
  cpu.fpuStatus = (cpu.fpuStatus & ~0x3800) | ((t & 7) << 11);
}

function phys(cpu: CpuState, i: number): number {
  return (top(cpu) + i) & 7;
}

function tag(cpu: CpuState, p: number): number {
  return (cpu.fpuTag >> (2 * p)) & 3;
}

function setTag(cpu: CpuState, p: number, t: number): void {
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
function setApprox(cpu: CpuState, p: number, v: number): void {
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


function setIndefinite(cpu: CpuState, p: number): void {
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


function copyReg(cpu: CpuState, dst: number, src: number): void {
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
function raise(cpu: CpuState, flags: number): boolean {
  cpu.fpuStatus |= flags;
  if (flags & ~cpu.fpuControl & 0x3f) {
    cpu.fpuStatus |= SW_ES | SW_B;
    return false;
  }
  return true;
}

/** Stack underflow (reading an empty register): IE|SF, C1 = 0. */
function underflow(cpu: CpuState): boolean {
  cpu.fpuStatus &= ~SW_C1;
  return raise(cpu, SW_IE | SW_SF);
}

/** Pushes: returns the new ST(0) physical index, or -1 after a masked/unmasked overflow was handled. */
function push(cpu: CpuState): number {
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

function pop(cpu: CpuState): void {
  const t = top(cpu);
  setTag(cpu, t, TAG_EMPTY);
  setTop(cpu, t + 1);
}

function pushValue(cpu: CpuState, v: number): void {
  const p = push(cpu);
  if (p >= 0) setReg(cpu, p, v);
}

/** ST(i) value; on an empty register raises stack underflow and returns NaN (caller checks `stackFault`). */
let stackFault = false;
function st(cpu: CpuState, i: number): number {
  const p = phys(cpu, i);
  if (tag(cpu, p) === TAG_EMPTY) {
    stackFault = true;
    return NaN;
  }
  return cpu.st[p]!;
}


// ---- pending exceptions and FWAIT --------------------------------------------------------------

/** FWAIT/9B and every waiting x87 instruction: #MF if an unmasked exception is pending (CR0.NE). */
export function fwait(cpu: CpuState, mem: SimdMemory): void {
  if ((cpu.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) mem.fault(VEC_NM);
  checkPending(cpu, mem);
}

function checkPending(cpu: CpuState, mem: SimdMemory): void {
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

function rc(cpu: CpuState): number {
  return (cpu.fpuControl >> 10) & 3;
}


// ---- extended arithmetic glue -----------------------------------------------------------------

/** Significand precision from CW.PC (0: 24, 2: 53, 3 and reserved 1: 64). */
function precision(cpu: CpuState): number {
  const pc = (cpu.fpuControl >> 8) & 3;
  return pc === 0 ? 24 : pc === 2 ? 53 : 64;
}

function begin(cpu: CpuState): void {
  sf.flags = 0;
  sf.rc = rc(cpu);
  sf.ftz = false;
  sf.daz = false;
  xs.roundedUp = false;
}

const PRE_EXC = SW_IE | SW_DE | SW_ZE;

/** Applies sf.flags (and C1 = rounded up); false when an unmasked IE/DE/ZE suppresses the result. */
function end(cpu: CpuState): boolean {
  const f = sf.flags & 0x3f;
  cpu.fpuStatus &= ~SW_C1;
  if (f & SW_PE && xs.roundedUp) cpu.fpuStatus |= SW_C1;
  if (f === 0) return true;
  raise(cpu, f);
  return (f & ~cpu.fpuControl & PRE_EXC) === 0;
}

/** Packed extended value of physical register p. */
function getX(cpu: CpuState, p: number): bigint {
  regExt(cpu, p);
  return packExt(ext.lo, ext.hi, ext.se);
}

function putX(cpu: CpuState, p: number, x: bigint): void {
  setRegExt(cpu, p, Number(x & 0xffffffffn), Number((x >> 32n) & 0xffffffffn), Number(x >> 64n));
}

function readF32Bits(mem: SimdMemory, i: SimdInsn): bigint {
  return BigInt(mem.read32(ea(i, 0)) >>> 0);
}

function readF64Bits(mem: SimdMemory, i: SimdInsn): bigint {
  return bits64(mem.read32(ea(i, 0)), mem.read32(ea(i, 4)));
}

/** Memory operand of the D8/DC/DA/DE arithmetic groups as an extended value (flags into sf). */
function readArithOperand(mem: SimdMemory, i: SimdInsn): bigint {
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
function arith(cpu: CpuState, k: number, a: bigint, b: bigint, dst: number): void {
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

function setCC(cpu: CpuState, r: number): void {
  // r: -1 less, 0 equal, 1 greater, 2 unordered
  let cc = 0;
  if (r === -1) cc = SW_C0;
  else if (r === 0) cc = SW_C3;
  else if (r === 2) cc = SW_C0 | SW_C2 | SW_C3;
  cpu.fpuStatus = (cpu.fpuStatus & ~SW_CC) | cc;
}

function setEflagsFromCompare(mem: SimdMemory, r: number): void {
  mem.setFlagsZPC(r === 0 || r === 2, r === 2, r === -1 || r === 2);
}

// ---- stores ------------------------------------------------------------------------------------------

function storeInt(cpu: CpuState, mem: SimdMemory, i: SimdInsn, size: number, truncate: boolean, popAfter: boolean): void {
  const p = phys(cpu, 0);
  let v: bigint | undefined;
  begin(cpu);
  if (tag(cpu, p) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
  } else {
    v = toIntExt(getX(cpu, p), size * 8, truncate);
    if (!end(cpu)) return;
  }
  if (v === undefined) v = -(1n << BigInt(size * 8 - 1));
  if (size === 2) mem.write16(ea(i, 0), Number(v & 0xffffn));
  else if (size === 4) mem.write32(ea(i, 0), Number(v & 0xffffffffn));
  else {
    mem.probeWrite(ea(i, 0), 8);
    mem.write32(ea(i, 0), lo32(v));
    mem.write32(ea(i, 4), hi32(v));
  }
  if (popAfter) pop(cpu);
}

/** FST/FSTP m32 / m64. */
function storeFloat(cpu: CpuState, mem: SimdMemory, i: SimdInsn, size: number, popAfter: boolean): void {
  const p = phys(cpu, 0);
  let r: bigint;
  begin(cpu);
  if (tag(cpu, p) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
    r = size === 4 ? F32.defaultNaN : F64.defaultNaN;
  } else {
    r = toFloat(getX(cpu, p), size === 4 ? F32 : F64);
    if (!end(cpu)) return;
  }
  if (size === 4) mem.write32(ea(i, 0), lo32(r));
  else {
    mem.probeWrite(ea(i, 0), 8);
    mem.write32(ea(i, 0), lo32(r));
    mem.write32(ea(i, 4), hi32(r));
  }
  if (popAfter) pop(cpu);
}

/** Pushes an extended value computed under begin() (FLD m32/m64, FILD). */
function pushX(cpu: CpuState, x: bigint): void {
  if (!end(cpu)) return;
  const p = push(cpu);
  if (p >= 0) putX(cpu, p, x);
}

function loadExt(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const lo = mem.read32(ea(i, 0));
  const hi = mem.read32(ea(i, 4));
  const se = mem.read16(ea(i, 8));
  const p = push(cpu);
  if (p >= 0) setRegExt(cpu, p, lo, hi, se);
}

function storeExt(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const p = phys(cpu, 0);
  if (tag(cpu, p) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
    ext.lo = 0;
    ext.hi = 0xc0000000;
    ext.se = 0xffff;
  } else regExt(cpu, p);
  mem.probeWrite(ea(i, 0), 10);
  mem.write32(ea(i, 0), ext.lo);
  mem.write32(ea(i, 4), ext.hi);
  mem.write16(ea(i, 8), ext.se);
  pop(cpu);
}

// ---- packed BCD (FBLD / FBSTP) -----------------------------------------------------------------------

function fbld(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  let v = 0n;
  for (let k = 8; k >= 0; k--) {
    const b = mem.read8(ea(i, k));
    v = v * 100n + BigInt((b >> 4) * 10 + (b & 15));
  }
  const neg = (mem.read8(ea(i, 9)) & 0x80) !== 0;
  begin(cpu);
  let x = fromIntExt(v);
  if (neg) x |= 0x8000n << 64n;
  pushX(cpu, x);
}

const BCD_LIMIT = 10n ** 18n;

function fbstp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const p = phys(cpu, 0);
  let v: bigint | undefined;
  let neg = false;
  begin(cpu);
  if (tag(cpu, p) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
  } else {
    const x = getX(cpu, p);
    neg = (x >> 79n) === 1n;
    v = toIntExt(x, 64, false);
    if (v !== undefined && (v >= BCD_LIMIT || v <= -BCD_LIMIT)) {
      v = undefined;
      sf.flags = (sf.flags & ~SW_PE) | SW_IE;
    }
    if (!end(cpu)) return;
  }
  mem.probeWrite(ea(i, 0), 10);
  if (v === undefined) {
    // packed BCD indefinite
    for (let k = 0; k < 7; k++) mem.write8(ea(i, k), 0);
    mem.write8(ea(i, 7), 0xc0);
    mem.write8(ea(i, 8), 0xff);
    mem.write8(ea(i, 9), 0xff);
  } else {
    let m = v < 0n ? -v : v;
    for (let k = 0; k < 9; k++) {
      const d = Number(m % 100n);
      m /= 100n;
      mem.write8(ea(i, k), (Math.floor(d / 10) << 4) | (d % 10));
    }
    mem.write8(ea(i, 9), neg ? 0x80 : 0);
  }
  pop(cpu);
}

// ---- environment ------------------------------------------------------------------------------------

/** Full tag word computed from register contents (for FNSTENV/FNSAVE). */
export function fullTagWord(cpu: CpuState): number {
  let t = 0;
  for (let p = 0; p < 8; p++) {
    let v = tag(cpu, p);
    if (v !== TAG_EMPTY) {
      regExt(cpu, p);
      v = tagOfExt(ext.lo, ext.hi, ext.se);
    }
    t |= v << (2 * p);
  }
  return t;
}

function splitAddr(v: number): number {
  return v >>> 0;
}

function fstenv(cpu: CpuState, mem: SimdMemory, i: SimdInsn): number {
  const tw = fullTagWord(cpu);
  if (i.opsize === 2) {
    mem.probeWrite(ea(i, 0), 14);
    mem.write16(ea(i, 0), cpu.fpuControl);
    mem.write16(ea(i, 2), cpu.fpuStatus);
    mem.write16(ea(i, 4), tw);
    mem.write16(ea(i, 6), cpu.fpuIp & 0xffff);
    mem.write16(ea(i, 8), 0);
    mem.write16(ea(i, 10), cpu.fpuDp & 0xffff);
    mem.write16(ea(i, 12), 0);
    return 14;
  }
  mem.probeWrite(ea(i, 0), 28);
  mem.write32(ea(i, 0), 0xffff0000 | cpu.fpuControl);
  mem.write32(ea(i, 4), 0xffff0000 | cpu.fpuStatus);
  mem.write32(ea(i, 8), 0xffff0000 | tw);
  mem.write32(ea(i, 12), splitAddr(cpu.fpuIp));
  mem.write32(ea(i, 16), (cpu.fpuOpcode & 0x7ff) << 16);
  mem.write32(ea(i, 20), splitAddr(cpu.fpuDp));
  mem.write32(ea(i, 24), 0xffff0000);
  return 28;
}

/** Applies an abridged or full tag word loaded by FLDENV/FRSTOR (empty stays empty, else recomputed). */
function loadTagWord(cpu: CpuState, tw: number): void {
  cpu.fpuTag = tw & 0xffff;
  for (let p = 0; p < 8; p++) {
    if (tag(cpu, p) !== TAG_EMPTY) {
      regExt(cpu, p);
      setTag(cpu, p, tagOfExt(ext.lo, ext.hi, ext.se));
    }
  }
}

function fldenv(cpu: CpuState, mem: SimdMemory, i: SimdInsn): number {
  let cw: number;
  let sw: number;
  let tw: number;
  let n: number;
  if (i.opsize === 2) {
    cw = mem.read16(ea(i, 0));
    sw = mem.read16(ea(i, 2));
    tw = mem.read16(ea(i, 4));
    cpu.fpuIp = mem.read16(ea(i, 6));
    cpu.fpuDp = mem.read16(ea(i, 10));
    n = 14;
  } else {
    cw = mem.read16(ea(i, 0));
    sw = mem.read16(ea(i, 4));
    tw = mem.read16(ea(i, 8));
    cpu.fpuIp = mem.read32(ea(i, 12)) >>> 0;
    cpu.fpuOpcode = (mem.read32(ea(i, 16)) >>> 16) & 0x7ff;
    cpu.fpuDp = mem.read32(ea(i, 20)) >>> 0;
    n = 28;
  }
  cpu.fpuControl = (cw & 0x1f7f) | 0x40;
  cpu.fpuStatus = sw & 0xffff;
  loadTagWord(cpu, tw);
  updateES(cpu);
  return n;
}

/** ES/B follow the exception flags against the mask after loading a control or status word. */
function updateES(cpu: CpuState): void {
  if (cpu.fpuStatus & ~cpu.fpuControl & 0x3f) cpu.fpuStatus |= SW_ES | SW_B;
  else cpu.fpuStatus &= ~(SW_ES | SW_B);
}

function fsave(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  mem.probeWrite(ea(i, 0), i.opsize === 2 ? 94 : 108);
  const n = fstenv(cpu, mem, i);
  for (let k = 0; k < 8; k++) {
    regExt(cpu, phys(cpu, k));
    const o = n + 10 * k;
    mem.write32(ea(i, o), ext.lo);
    mem.write32(ea(i, o + 4), ext.hi);
    mem.write16(ea(i, o + 8), ext.se);
  }
  fninit(cpu);
}

function frstor(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const n = i.opsize === 2 ? 14 : 28;
  // registers first (stack order relative to the TOP being loaded), then the environment
  const sw = i.opsize === 2 ? mem.read16(ea(i, 2)) : mem.read16(ea(i, 4));
  const t = (sw >> 11) & 7;
  const save = cpu.fpuTag;
  for (let k = 0; k < 8; k++) {
    const o = n + 10 * k;
    setRegExt(cpu, (t + k) & 7, mem.read32(ea(i, o)), mem.read32(ea(i, o + 4)), mem.read16(ea(i, o + 8)));
  }
  cpu.fpuTag = save;
  fldenv(cpu, mem, i);
}

// ---- transcendental helpers --------------------------------------------------------------------------

const TWO63 = 9223372036854775808;

/** ST(0) and ST(1) both present? Otherwise handles the underflow (indefinite into `dst`). */
function twoOperands(cpu: CpuState, dst: number): boolean {
  if (tag(cpu, phys(cpu, 0)) !== TAG_EMPTY && tag(cpu, phys(cpu, 1)) !== TAG_EMPTY) return true;
  if (underflow(cpu)) setIndefinite(cpu, dst);
  return false;
}

function fprem(cpu: CpuState, ieee: boolean): void {
  const pa = phys(cpu, 0);
  if (!twoOperands(cpu, pa)) return;
  begin(cpu);
  premExt(getX(cpu, pa), getX(cpu, phys(cpu, 1)), ieee);
  if (!end(cpu)) return;
  putX(cpu, pa, rem.value);
  let cc = 0;
  if (!rem.complete) cc |= SW_C2;
  else {
    if (rem.q & 1) cc |= SW_C1;
    if (rem.q & 2) cc |= SW_C3;
    if (rem.q & 4) cc |= SW_C0;
  }
  cpu.fpuStatus = (cpu.fpuStatus & ~SW_CC) | cc;
}

/** FXTRACT results. */
const xt = { exp: 0n, sig: 0n };

function fxtract(x: bigint): void {
  const se = Number(x >> 64n);
  const e = se & 0x7fff;
  let mant = x & 0xffffffffffffffffn;
  const sign = BigInt(se & 0x8000) << 64n;
  if (e === 0x7fff) {
    if ((mant & 0x7fffffffffffffffn) === 0n) { // infinity
      xt.exp = 0x7fffn << 64n | (1n << 63n);
      xt.sig = x;
      return;
    }
    if (!(mant & (1n << 62n))) sf.flags |= SW_IE;
    xt.exp = x | (1n << 62n);
    xt.sig = xt.exp;
    return;
  }
  if (mant === 0n) {
    sf.flags |= SW_ZE;
    xt.exp = (0xffffn << 64n) | (1n << 63n); // -infinity
    xt.sig = x;
    return;
  }
  let ue = (e === 0 ? 1 : e) - 16383;
  if (e === 0) sf.flags |= SW_DE;
  while (!(mant & (1n << 63n))) {
    mant <<= 1n;
    ue--;
  }
  xt.exp = fromIntExt(BigInt(ue));
  xt.sig = sign | (0x3fffn << 64n) | mant;
}

// ---- the dispatcher -----------------------------------------------------------------------------------

function ud(mem: SimdMemory): never {
  return mem.fault(VEC_UD);
}

/** Loads of the FLD constant group (D9 E8..EE): exact 80-bit images (round-to-nearest values). */
const CONSTS: readonly (readonly [number, number, number])[] = [
  [0, 0x80000000, 0x3fff], // 1
  [0xcd1b8afe, 0xd49a784b, 0x4000], // log2(10)
  [0x5c17f0bc, 0xb8aa3b29, 0x3fff], // log2(e)
  [0x2168c235, 0xc90fdaa2, 0x4000], // pi
  [0xfbcff799, 0x9a209a84, 0x3ffd], // log10(2)
  [0xd1cf79ac, 0xb17217f7, 0x3ffe], // ln(2)
  [0, 0, 0], // +0
];

export function x87(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  const reg = i.reg & 7;
  const modrm = (i.mod << 6) | (reg << 3) | (i.rm & 7);
  // non-waiting control instructions: FNINIT, FNCLEX, FNSTSW, FNSTCW, FNSTENV, FNSAVE (and FLDCW...)
  const control = (op === 0xdb && i.mod === 3 && (modrm === 0xe2 || modrm === 0xe3)) ||
    (op === 0xdf && modrm === 0xe0) || (i.mod !== 3 && ((op === 0xd9 && reg >= 4) || (op === 0xdd && (reg === 4 || reg === 6 || reg === 7))));
  if (!control) {
    checkPending(cpu, mem);
    cpu.fpuOpcode = ((op & 7) << 8) | modrm;
    cpu.fpuIp = cpu.rip;
    if (i.mod !== 3) cpu.fpuDp = i.ea;
  }
  if (i.mod !== 3) x87Mem(cpu, mem, i, op, reg);
  else x87Reg(cpu, mem, op, reg, i.rm & 7);
}

function x87Mem(cpu: CpuState, mem: SimdMemory, i: SimdInsn, op: number, reg: number): void {
  switch (op) {
    case 0xd8: case 0xdc: case 0xda: case 0xde: {
      begin(cpu);
      const b = readArithOperand(mem, i);
      const p = phys(cpu, 0);
      if (tag(cpu, p) === TAG_EMPTY) {
        if (underflow(cpu) && reg !== 2 && reg !== 3) setIndefinite(cpu, p);
        if (reg === 2 || reg === 3) {
          setCC(cpu, 2);
          if (reg === 3) pop(cpu);
        }
        return;
      }
      if (reg === 2 || reg === 3) {
        const r = compareExt(getX(cpu, p), b, true);
        if (!end(cpu)) return;
        setCC(cpu, r);
        if (reg === 3) pop(cpu);
        return;
      }
      arith(cpu, reg, getX(cpu, p), b, p);
      return;
    }
    case 0xd9:
      switch (reg) {
        case 0: // FLD m32
          begin(cpu);
          pushX(cpu, fromFloat(readF32Bits(mem, i), F32));
          return;
        case 2: storeFloat(cpu, mem, i, 4, false); return;
        case 3: storeFloat(cpu, mem, i, 4, true); return;
        case 4: fldenv(cpu, mem, i); return;
        case 5: // FLDCW
          cpu.fpuControl = (mem.read16(ea(i, 0)) & 0x1f7f) | 0x40;
          updateES(cpu);
          return;
        case 6: // FNSTENV: also masks all exceptions
          fstenv(cpu, mem, i);
          cpu.fpuControl |= 0x3f;
          return;
        case 7: mem.write16(ea(i, 0), cpu.fpuControl); return;
        default: ud(mem);
      }
      return;
    case 0xdb:
      switch (reg) {
        case 0: begin(cpu); pushX(cpu, fromIntExt(BigInt(mem.read32(ea(i, 0)) | 0))); return;
        case 1: storeInt(cpu, mem, i, 4, true, true); return;
        case 2: storeInt(cpu, mem, i, 4, false, false); return;
        case 3: storeInt(cpu, mem, i, 4, false, true); return;
        case 5: loadExt(cpu, mem, i); return;
        case 7: storeExt(cpu, mem, i); return;
        default: ud(mem);
      }
      return;
    case 0xdd:
      switch (reg) {
        case 0: // FLD m64
          begin(cpu);
          pushX(cpu, fromFloat(readF64Bits(mem, i), F64));
          return;
        case 1: storeInt(cpu, mem, i, 8, true, true); return;
        case 2: storeFloat(cpu, mem, i, 8, false); return;
        case 3: storeFloat(cpu, mem, i, 8, true); return;
        case 4: frstor(cpu, mem, i); return;
        case 6: fsave(cpu, mem, i); return;
        case 7: mem.write16(ea(i, 0), cpu.fpuStatus); return;
        default: ud(mem);
      }
      return;
    case 0xdf:
      switch (reg) {
        case 0: begin(cpu); pushX(cpu, fromIntExt(BigInt((mem.read16(ea(i, 0)) << 16) >> 16))); return;
        case 1: storeInt(cpu, mem, i, 2, true, true); return;
        case 2: storeInt(cpu, mem, i, 2, false, false); return;
        case 3: storeInt(cpu, mem, i, 2, false, true); return;
        case 4: fbld(cpu, mem, i); return;
        case 5: begin(cpu); pushX(cpu, fromIntExt(BigInt.asIntN(64, readF64Bits(mem, i)))); return;
        case 6: fbstp(cpu, mem, i); return;
        default: storeInt(cpu, mem, i, 8, false, true); return;
      }
    default:
      ud(mem);
  }
}

/** FCMOVcc condition from RFLAGS: sub 0 B (CF), 1 E (ZF), 2 BE (CF|ZF), 3 U (PF). */
function fcmovCond(rflags: number, sub: number): boolean {
  switch (sub) {
    case 0: return (rflags & 1) !== 0;
    case 1: return (rflags & 0x40) !== 0;
    case 2: return (rflags & 0x41) !== 0;
    default: return (rflags & 4) !== 0;
  }
}

function x87Reg(cpu: CpuState, mem: SimdMemory, op: number, reg: number, r: number): void {
  switch (op) {
    case 0xd8: case 0xdc: case 0xde: {
      // D8: ST0 = ST0 op STi; DC: STi = STi op ST0 (sub/div reversed encodings); DE: same, then pop
      if ((reg === 2 || reg === 3) && op !== 0xd8) {
        if (op === 0xde && !(reg === 3 && r === 1)) return ud(mem);
      }
      const pa = phys(cpu, 0);
      const pb = phys(cpu, r);
      const empty = tag(cpu, pa) === TAG_EMPTY || tag(cpu, pb) === TAG_EMPTY;
      if (reg === 2 || reg === 3) { // FCOM / FCOMP / FCOMPP (DE D9)
        if (empty) {
          if (!underflow(cpu)) return;
          setCC(cpu, 2);
        } else {
          begin(cpu);
          const res = compareExt(getX(cpu, pa), getX(cpu, pb), true);
          if (!end(cpu)) return;
          setCC(cpu, res);
        }
        if (reg === 3) pop(cpu);
        if (op === 0xde) pop(cpu);
        return;
      }
      const dst = op === 0xd8 ? pa : pb;
      if (empty) {
        if (underflow(cpu)) {
          setIndefinite(cpu, dst);
          if (op === 0xde) pop(cpu);
        }
        return;
      }
      let k = reg;
      // DC/DE encodings swap SUB/SUBR and DIV/DIVR relative to D8
      if (op !== 0xd8 && k >= 4) k ^= 1;
      begin(cpu);
      if (op === 0xd8) arith(cpu, k, getX(cpu, pa), getX(cpu, pb), dst);
      else arith(cpu, k, getX(cpu, pb), getX(cpu, pa), dst);
      if (op === 0xde) pop(cpu);
      return;
    }
    case 0xd9: return d9Reg(cpu, mem, reg, r);
    case 0xda:
      if (reg <= 3) return fcmov(cpu, mem, fcmovCond(mem.getRflags(), reg), r);
      if (reg === 5 && r === 1) return fucomFamily(cpu, mem, 1, false, 2);
      return ud(mem);
    case 0xdb:
      if (reg <= 3) return fcmov(cpu, mem, !fcmovCond(mem.getRflags(), reg), r);
      if (reg === 4) {
        if (r === 2) { // FNCLEX
          cpu.fpuStatus &= ~(0x80ff | SW_B);
          return;
        }
        if (r === 3) return fninit(cpu);
        if (r <= 1 || r === 4) return; // FENI/FDISI/FSETPM: no-ops on 387+
        return ud(mem);
      }
      if (reg === 5) return fucomFamily(cpu, mem, r, false, -1); // FUCOMI
      if (reg === 6) return fucomFamily(cpu, mem, r, true, -1); // FCOMI
      return ud(mem);
    case 0xdd:
      switch (reg) {
        case 0: setTag(cpu, phys(cpu, r), TAG_EMPTY); return; // FFREE
        case 1: return fxch(cpu, r);
        case 2: case 3: { // FST / FSTP ST(i)
          const p0 = phys(cpu, 0);
          if (tag(cpu, p0) === TAG_EMPTY) {
            if (!underflow(cpu)) return;
            setIndefinite(cpu, phys(cpu, r));
          } else {
            copyReg(cpu, phys(cpu, r), p0);
            cpu.fpuStatus &= ~SW_C1;
          }
          if (reg === 3) pop(cpu);
          return;
        }
        case 4: return fucomFamily(cpu, mem, r, false, 0); // FUCOM
        case 5: return fucomFamily(cpu, mem, r, false, 1); // FUCOMP
        default: return ud(mem);
      }
    case 0xdf:
      switch (reg) {
        case 0: // FFREEP
          setTag(cpu, phys(cpu, r), TAG_EMPTY);
          pop(cpu);
          return;
        case 1: return fxch(cpu, r);
        case 2: case 3: { // FSTP alias
          const p0 = phys(cpu, 0);
          if (tag(cpu, p0) !== TAG_EMPTY) copyReg(cpu, phys(cpu, r), p0);
          pop(cpu);
          return;
        }
        case 4:
          if (r !== 0) return ud(mem);
          cpu.gpr[0] = (cpu.gpr[0]! & ~0xffff) | cpu.fpuStatus; // FNSTSW AX
          return;
        case 5: return fucomFamily(cpu, mem, r, false, -2); // FUCOMIP
        case 6: return fucomFamily(cpu, mem, r, true, -2); // FCOMIP
        default: return ud(mem);
      }
    default:
      return ud(mem);
  }
}

/**
 * FUCOM/FUCOMP/FUCOMPP (pops ≥ 0: set C3 C2 C0) and FCOMI/FUCOMI(P) (pops -1 = no pop,
 * -2 = pop: set ZF PF CF).
 */
function fucomFamily(cpu: CpuState, mem: SimdMemory, r: number, signal: boolean, pops: number): void {
  const p0 = phys(cpu, 0);
  const pr = phys(cpu, r);
  let res: number;
  if (tag(cpu, p0) === TAG_EMPTY || tag(cpu, pr) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
    res = 2;
  } else {
    begin(cpu);
    res = compareExt(getX(cpu, p0), getX(cpu, pr), signal);
    if (!end(cpu)) return;
  }
  if (pops >= 0) {
    setCC(cpu, res);
    for (let k = 0; k < pops; k++) pop(cpu);
  } else {
    cpu.fpuStatus &= ~SW_C1;
    setEflagsFromCompare(mem, res);
    if (pops === -2) pop(cpu);
  }
}

function fcmov(cpu: CpuState, _mem: SimdMemory, cond: boolean, r: number): void {
  const p0 = phys(cpu, 0);
  const pr = phys(cpu, r);
  if (tag(cpu, p0) === TAG_EMPTY || tag(cpu, pr) === TAG_EMPTY) {
    if (underflow(cpu)) setIndefinite(cpu, p0);
    return;
  }
  if (cond) copyReg(cpu, p0, pr);
}

function fxch(cpu: CpuState, r: number): void {
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

function d9Reg(cpu: CpuState, mem: SimdMemory, reg: number, r: number): void {
  switch (reg) {
    case 0: { // FLD ST(i)
      const src = phys(cpu, r);
      if (tag(cpu, src) === TAG_EMPTY) {
        if (!underflow(cpu)) return;
        const p = push(cpu);
        if (p >= 0) setIndefinite(cpu, p);
        return;
      }
      const p = push(cpu);
      if (p >= 0) copyReg(cpu, p, src);
      return;
    }
    case 1: return fxch(cpu, r);
    case 2:
      if (r !== 0) ud(mem);
      return; // FNOP
    case 3: { // FSTP1 (undocumented alias of FSTP ST(i))
      const p0 = phys(cpu, 0);
      if (tag(cpu, p0) !== TAG_EMPTY) copyReg(cpu, phys(cpu, r), p0);
      pop(cpu);
      return;
    }
    case 4: return d9E0(cpu, mem, r);
    case 5: { // constants
      if (r === 7) return ud(mem);
      const c = CONSTS[r]!;
      let lo = c[0];
      const mode = rc(cpu);
      // log2(e), pi, log10(2), ln(2) are rounded up in nearest mode; log2(10) down
      if (r >= 2 && r <= 5 && (mode === RC_DOWN || mode === 3)) lo -= 1;
      if (r === 1 && mode === RC_UP) lo += 1;
      const p = push(cpu);
      if (p >= 0) setRegExt(cpu, p, lo >>> 0, c[1], c[2]);
      return;
    }
    case 6: return d9F0(cpu, mem, r);
    default: return d9F8(cpu, mem, r);
  }
}

/** D9 E0..E7: FCHS FABS FTST FXAM. */
function d9E0(cpu: CpuState, mem: SimdMemory, r: number): void {
  const p = phys(cpu, 0);
  const empty = tag(cpu, p) === TAG_EMPTY;
  switch (r) {
    case 0: case 1: { // FCHS / FABS: flip/clear the sign on the exact image
      if (empty) {
        if (underflow(cpu)) setIndefinite(cpu, p);
        return;
      }
      regExt(cpu, p);
      const se = r === 0 ? ext.se ^ 0x8000 : ext.se & 0x7fff;
      setRegExt(cpu, p, ext.lo, ext.hi, se);
      cpu.fpuStatus &= ~SW_C1;
      return;
    }
    case 4: { // FTST
      if (empty) {
        underflow(cpu);
        setCC(cpu, 2);
        return;
      }
      begin(cpu);
      const res = compareExt(getX(cpu, p), 0n, true);
      if (!end(cpu)) return;
      setCC(cpu, res);
      return;
    }
    case 5: { // FXAM
      let cc: number;
      regExt(cpu, p);
      const sign = ext.se & 0x8000 ? SW_C1 : 0;
      if (empty) cc = SW_C3 | SW_C0;
      else {
        const e = ext.se & 0x7fff;
        const mantZero = ext.hi === 0 && ext.lo === 0;
        if (e === 0x7fff) cc = (ext.hi & 0x7fffffff) === 0 && ext.lo === 0 ? SW_C2 | SW_C0 : SW_C0;
        else if (e === 0) cc = mantZero ? SW_C3 : SW_C3 | SW_C2;
        else cc = ext.hi & 0x80000000 ? SW_C2 : 0;
      }
      cpu.fpuStatus = (cpu.fpuStatus & ~SW_CC) | cc | sign;
      return;
    }
    default: ud(mem);
  }
}

/** Gets ST(0) for a unary op; on underflow stores the indefinite (masked) and returns NaN with `stackFault` cleared. */
function unaryOperand(cpu: CpuState): number | undefined {
  const p = phys(cpu, 0);
  if (tag(cpu, p) === TAG_EMPTY) {
    if (underflow(cpu)) setIndefinite(cpu, p);
    return undefined;
  }
  return cpu.st[p]!;
}

/** D9 F0..F7: F2XM1 FYL2X FPTAN FPATAN FXTRACT FPREM1 FDECSTP FINCSTP. */
function d9F0(cpu: CpuState, _mem: SimdMemory, r: number): void {
  switch (r) {
    case 0: { // F2XM1
      const x = unaryOperand(cpu);
      if (x === undefined) return;
      setApprox(cpu, phys(cpu, 0), x !== x ? x : Math.expm1(x * Math.LN2));
      return;
    }
    case 1: case 3: { // FYL2X / FPATAN: ST1 = f(ST1, ST0), pop
      const x = st(cpu, 0);
      const y = st(cpu, 1);
      const p1 = phys(cpu, 1);
      if (stackFault) {
        stackFault = false;
        if (underflow(cpu)) setIndefinite(cpu, p1);
        pop(cpu);
        return;
      }
      let v: number;
      if (r === 3) v = Math.atan2(y, x);
      else {
        if (x === 0 && y !== 0 && Number.isFinite(y) && !raise(cpu, SW_ZE)) return;
        v = y * Math.log2(x);
        if (x === 1 && !Number.isFinite(y)) v = NaN;
        if (v !== v && !(x !== x || y !== y) && !raise(cpu, SW_IE)) return;
      }
      setApprox(cpu, p1, v);
      pop(cpu);
      return;
    }
    case 2: { // FPTAN
      const x = unaryOperand(cpu);
      if (x === undefined) return;
      if (Math.abs(x) >= TWO63) {
        cpu.fpuStatus |= SW_C2;
        return;
      }
      cpu.fpuStatus &= ~SW_C2;
      if (!Number.isFinite(x) && x === x) {
        if (raise(cpu, SW_IE)) setIndefinite(cpu, phys(cpu, 0));
        return;
      }
      setApprox(cpu, phys(cpu, 0), Math.tan(x));
      pushValue(cpu, 1);
      return;
    }
    case 4: { // FXTRACT: ST0 = exponent, push significand
      const p = phys(cpu, 0);
      if (unaryOperand(cpu) === undefined) return;
      begin(cpu);
      const x = getX(cpu, p);
      fxtract(x);
      if (!end(cpu)) return;
      putX(cpu, p, xt.exp);
      const q = push(cpu);
      if (q >= 0) putX(cpu, q, xt.sig);
      return;
    }
    case 5: fprem(cpu, true); return;
    case 6: setTop(cpu, top(cpu) - 1); cpu.fpuStatus &= ~SW_C1; return; // FDECSTP
    default: setTop(cpu, top(cpu) + 1); cpu.fpuStatus &= ~SW_C1; return; // FINCSTP
  }
}

/** D9 F8..FF: FPREM FYL2XP1 FSQRT FSINCOS FRNDINT FSCALE FSIN FCOS. */
function d9F8(cpu: CpuState, _mem: SimdMemory, r: number): void {
  switch (r) {
    case 0: fprem(cpu, false); return;
    case 1: { // FYL2XP1
      const x = st(cpu, 0);
      const y = st(cpu, 1);
      const p1 = phys(cpu, 1);
      if (stackFault) {
        stackFault = false;
        if (underflow(cpu)) setIndefinite(cpu, p1);
        pop(cpu);
        return;
      }
      setApprox(cpu, p1, (y * Math.log1p(x)) / Math.LN2);
      pop(cpu);
      return;
    }
    case 2: { // FSQRT
      const p = phys(cpu, 0);
      if (unaryOperand(cpu) === undefined) return;
      begin(cpu);
      const v = sqrtExt(getX(cpu, p), precision(cpu));
      if (end(cpu)) putX(cpu, p, v);
      return;
    }
    case 3: { // FSINCOS: ST0 = sin, push cos
      const x = unaryOperand(cpu);
      if (x === undefined) return;
      if (Math.abs(x) >= TWO63) {
        cpu.fpuStatus |= SW_C2;
        return;
      }
      cpu.fpuStatus &= ~SW_C2;
      if (!Number.isFinite(x) && x === x) {
        if (raise(cpu, SW_IE)) setIndefinite(cpu, phys(cpu, 0));
        return;
      }
      setApprox(cpu, phys(cpu, 0), Math.sin(x));
      pushValue(cpu, Math.cos(x));
      return;
    }
    case 4: { // FRNDINT
      const p = phys(cpu, 0);
      if (unaryOperand(cpu) === undefined) return;
      begin(cpu);
      const v = roundIntExt(getX(cpu, p));
      if (end(cpu)) putX(cpu, p, v);
      return;
    }
    case 5: { // FSCALE: ST0 × 2^trunc(ST1)
      const p = phys(cpu, 0);
      if (!twoOperands(cpu, p)) return;
      begin(cpu);
      const v = scaleExt(getX(cpu, p), getX(cpu, phys(cpu, 1)), precision(cpu));
      if (end(cpu)) putX(cpu, p, v);
      return;
    }
    default: { // FSIN / FCOS
      const x = unaryOperand(cpu);
      if (x === undefined) return;
      if (Math.abs(x) >= TWO63) {
        cpu.fpuStatus |= SW_C2;
        return;
      }
      cpu.fpuStatus &= ~SW_C2;
      if (!Number.isFinite(x) && x === x) {
        if (raise(cpu, SW_IE)) setIndefinite(cpu, phys(cpu, 0));
        return;
      }
      setApprox(cpu, phys(cpu, 0), r === 6 ? Math.sin(x) : Math.cos(x));
    }
  }
}

/** Physical register index of ST(i) (FXSAVE/FXRSTOR store registers in stack order). */
export function physOf(cpu: CpuState, i: number): number {
  return phys(cpu, i);
}
