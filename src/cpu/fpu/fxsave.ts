/**
 * 0F AE /0..3: FXSAVE, FXRSTOR, LDMXCSR, STMXCSR; /4../6 (XSAVE, XRSTOR, XSAVEOPT) go to xsave.ts,
 * which stores and loads the same legacy region through the parts exported here.
 *
 * FXSAVE image (512 bytes, 16-byte aligned):
 *   0 FCW, 2 FSW, 4 abridged FTW (bit per physical register, 1 = non-empty), 6 FOP,
 *   8 FIP (64-bit with REX.W; else FIP32 + FCS), 16 FDP (64-bit with REX.W; else FDP32 + FDS),
 *   24 MXCSR, 28 MXCSR_MASK, 32 + 16·i ST(i)/MMi (80 bits, stack order),
 *   160 + 16·n XMMn (XMM0-15 in 64-bit mode, XMM0-7 otherwise). Bytes 464..511 are left
 *   untouched (available to software: Linux keeps its fx_sw_bytes there).
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { CR4_OSFXSR, VEC_GP, VEC_UD, checkAlign16, ea } from './common.js';
import { ext } from './f80.js';
import { physOf, regExt, setRegExt, tagOfExt } from './x87.js';

/** Bits of MXCSR that software may set (DAZ supported). */
export const MXCSR_MASK = 0xffff;

function addrParts(v: number): [number, number] {
  const hi = Math.floor(v / 4294967296);
  return [(v - hi * 4294967296) >>> 0, hi | 0];
}

export function fxsave(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  checkAlign16(mem, i);
  mem.probeWrite(ea(i, 0), 160 + 16 * xmmCount(i));
  saveX87(cpu, mem, i);
  saveMxcsr(cpu, mem, i);
  saveXmm(cpu, mem, i);
}

export function fxrstor(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  checkAlign16(mem, i);
  // read everything before changing state (a fault must leave the state untouched)
  const mx = readMxcsr(mem, i);
  readX87(mem, i);
  readXmm(mem, i);
  loadX87(cpu, i);
  cpu.mxcsr = mx;
  loadXmm(cpu, i);
}

// ---- the parts of the legacy region, shared with XSAVE/XRSTOR (xsave.ts) ----------------------

/** XMM registers in the image: XMM0-15 in 64-bit mode, XMM0-7 otherwise. */
export function xmmCount(i: SimdInsn): number {
  return i.long ? 16 : 8;
}

/** Stores the x87 state: bytes 0..23 (FCW to FDP/FDS) and the registers at 32..159. */
export function saveX87(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  let ftw = 0;
  for (let p = 0; p < 8; p++) if (((cpu.fpuTag >> (2 * p)) & 3) !== 3) ftw |= 1 << p;
  mem.write32(ea(i, 0), (cpu.fpuControl & 0xffff) | ((cpu.fpuStatus & 0xffff) << 16));
  mem.write32(ea(i, 4), ftw | ((cpu.fpuOpcode & 0x7ff) << 16));
  const [ipLo, ipHi] = addrParts(cpu.fpuIp);
  const [dpLo, dpHi] = addrParts(cpu.fpuDp);
  mem.write32(ea(i, 8), ipLo);
  mem.write32(ea(i, 12), i.rexW ? ipHi : 0);
  mem.write32(ea(i, 16), dpLo);
  mem.write32(ea(i, 20), i.rexW ? dpHi : 0);
  for (let k = 0; k < 8; k++) {
    regExt(cpu, physOf(cpu, k));
    const o = 32 + 16 * k;
    mem.write32(ea(i, o), ext.lo);
    mem.write32(ea(i, o + 4), ext.hi);
    mem.write32(ea(i, o + 8), ext.se & 0xffff);
    mem.write32(ea(i, o + 12), 0);
  }
}

/** Stores MXCSR (byte 24) and MXCSR_MASK (byte 28). */
export function saveMxcsr(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  mem.write32(ea(i, 24), cpu.mxcsr);
  mem.write32(ea(i, 28), MXCSR_MASK);
}

/** Stores the XMM registers from byte 160. */
export function saveXmm(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const x = cpu.xmm;
  const n = 4 * xmmCount(i);
  for (let k = 0; k < n; k++) mem.write32(ea(i, 160 + 4 * k), x[k]!);
}

/** Reads MXCSR (byte 24); #GP(0) when it sets a reserved bit. */
export function readMxcsr(mem: SimdMemory, i: SimdInsn): number {
  const mx = mem.read32(ea(i, 24)) >>> 0;
  if (mx & ~MXCSR_MASK) mem.fault(VEC_GP, 0);
  return mx;
}

/** Reads the x87 part of an image into scratch (no state change); loadX87 applies it. */
export function readX87(mem: SimdMemory, i: SimdInsn): void {
  const h = X87_HEAD;
  h[0] = mem.read32(ea(i, 0));
  h[1] = mem.read32(ea(i, 4));
  const regs = REGS;
  for (let k = 0; k < 8; k++) {
    const o = 32 + 16 * k;
    regs[3 * k] = mem.read32(ea(i, o));
    regs[3 * k + 1] = mem.read32(ea(i, o + 4));
    regs[3 * k + 2] = mem.read16(ea(i, o + 8));
  }
  for (let k = 2; k < 6; k++) h[k] = mem.read32(ea(i, 4 * k));
}

/** Applies the x87 state read by readX87. */
export function loadX87(cpu: CpuState, i: SimdInsn): void {
  const h = X87_HEAD;
  const w0 = h[0]!;
  const w1 = h[1]!;
  const fcw = w0 & 0xffff;
  const fsw = (w0 >>> 16) & 0xffff;
  const ftw = w1 & 0xff;
  const ipLo = h[2]! >>> 0;
  const ipHi = h[3]! | 0;
  const dpLo = h[4]! >>> 0;
  const dpHi = h[5]! | 0;
  const regs = REGS;
  cpu.fpuControl = (fcw & 0x1f7f) | 0x40;
  cpu.fpuStatus = fsw;
  cpu.fpuOpcode = (w1 >>> 16) & 0x7ff;
  cpu.fpuIp = i.rexW ? ipHi * 4294967296 + ipLo : ipLo;
  cpu.fpuDp = i.rexW ? dpHi * 4294967296 + dpLo : dpLo;
  const top = (fsw >> 11) & 7;
  let tagWord = 0;
  for (let k = 0; k < 8; k++) {
    const p = (top + k) & 7;
    setRegExt(cpu, p, regs[3 * k]!, regs[3 * k + 1]!, regs[3 * k + 2]!);
  }
  for (let p = 0; p < 8; p++) {
    let t = 3;
    if (ftw & (1 << p)) {
      const k = (p - top) & 7;
      t = tagOfExt(regs[3 * k]!, regs[3 * k + 1]!, regs[3 * k + 2]!);
    }
    tagWord |= t << (2 * p);
  }
  cpu.fpuTag = tagWord;
}

/** Reads the XMM registers of an image into scratch; loadXmm applies them. */
export function readXmm(mem: SimdMemory, i: SimdInsn): void {
  const xs = XMM;
  const n = 4 * xmmCount(i);
  for (let k = 0; k < n; k++) xs[k] = mem.read32(ea(i, 160 + 4 * k));
}

export function loadXmm(cpu: CpuState, i: SimdInsn): void {
  const x = cpu.xmm;
  const xs = XMM;
  const n = 4 * xmmCount(i);
  for (let k = 0; k < n; k++) x[k] = xs[k]!;
}

/** Scratch of readX87: the six dwords at 0..23, and the eight registers (lo, hi, sign+exponent). */
const X87_HEAD = new Int32Array(6);
const REGS = new Int32Array(24);
const XMM = new Int32Array(64);

export function group15(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod === 3 || i.prefix !== 0) mem.fault(VEC_UD);
  switch (i.reg & 7) {
    case 0: fxsave(cpu, mem, i); return;
    case 1: fxrstor(cpu, mem, i); return;
    case 2: { // LDMXCSR
      if (!(cpu.cr4 & CR4_OSFXSR)) mem.fault(VEC_UD);
      const v = mem.read32(ea(i, 0)) >>> 0;
      if (v & ~MXCSR_MASK) mem.fault(VEC_GP, 0);
      cpu.mxcsr = v;
      return;
    }
    case 3: // STMXCSR
      if (!(cpu.cr4 & CR4_OSFXSR)) mem.fault(VEC_UD);
      mem.write32(ea(i, 0), cpu.mxcsr);
      return;
    default:
      mem.fault(VEC_UD);
  }
}
