/**
 * 0F AE /0..3: FXSAVE, FXRSTOR, LDMXCSR, STMXCSR.
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
  const nXmm = i.long ? 16 : 8;
  mem.probeWrite(ea(i, 0), 160 + 16 * nXmm);
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
  mem.write32(ea(i, 24), cpu.mxcsr);
  mem.write32(ea(i, 28), MXCSR_MASK);
  for (let k = 0; k < 8; k++) {
    regExt(cpu, physOf(cpu, k));
    const o = 32 + 16 * k;
    mem.write32(ea(i, o), ext.lo);
    mem.write32(ea(i, o + 4), ext.hi);
    mem.write32(ea(i, o + 8), ext.se & 0xffff);
    mem.write32(ea(i, o + 12), 0);
  }
  const x = cpu.xmm;
  for (let k = 0; k < 4 * nXmm; k++) mem.write32(ea(i, 160 + 4 * k), x[k]!);
}

export function fxrstor(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  checkAlign16(mem, i);
  const mx = mem.read32(ea(i, 24)) >>> 0;
  if (mx & ~MXCSR_MASK) mem.fault(VEC_GP, 0);
  const w0 = mem.read32(ea(i, 0));
  const w1 = mem.read32(ea(i, 4));
  const fcw = w0 & 0xffff;
  const fsw = (w0 >>> 16) & 0xffff;
  const ftw = w1 & 0xff;
  const nXmm = i.long ? 16 : 8;
  // read everything before changing state (a fault must leave the state untouched)
  const regs = REGS;
  for (let k = 0; k < 8; k++) {
    const o = 32 + 16 * k;
    regs[3 * k] = mem.read32(ea(i, o));
    regs[3 * k + 1] = mem.read32(ea(i, o + 4));
    regs[3 * k + 2] = mem.read16(ea(i, o + 8));
  }
  const xs = XMM;
  for (let k = 0; k < 4 * nXmm; k++) xs[k] = mem.read32(ea(i, 160 + 4 * k));
  const ipLo = mem.read32(ea(i, 8)) >>> 0;
  const ipHi = mem.read32(ea(i, 12)) | 0;
  const dpLo = mem.read32(ea(i, 16)) >>> 0;
  const dpHi = mem.read32(ea(i, 20)) | 0;

  cpu.fpuControl = (fcw & 0x1f7f) | 0x40;
  cpu.fpuStatus = fsw;
  cpu.fpuOpcode = (w1 >>> 16) & 0x7ff;
  cpu.fpuIp = i.rexW ? ipHi * 4294967296 + ipLo : ipLo;
  cpu.fpuDp = i.rexW ? dpHi * 4294967296 + dpLo : dpLo;
  cpu.mxcsr = mx;
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
  const x = cpu.xmm;
  for (let k = 0; k < 4 * nXmm; k++) x[k] = xs[k]!;
}

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
