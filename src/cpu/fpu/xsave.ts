/**
 * 0F AE /4, /5, /6 (memory forms): XSAVE, XRSTOR and XSAVEOPT, and their REX.W forms (XSAVE64
 * & co, which store and load the x87 FIP/FDP as 64-bit values as FXSAVE64 does), for the two
 * state components this CPU has: x87 (XCR0 bit 0) and SSE (XCR0 bit 1). Standard format only
 * (no XSAVEC/XSAVES: the compacted format is not offered).
 *
 * The core checks #UD (feature off, CR4.OSXSAVE clear, a 66/F2/F3/LOCK prefix) and #NM (CR0.TS)
 * before calling here (core/ops/simd.ts, runXsave); this file checks the rest (SDM vol. 1 ch. 13
 * and the instruction pages).
 *
 * Image (64-byte aligned, 576 bytes): the 512-byte legacy region as FXSAVE's (fxsave.ts: x87 at
 * 0..23 and 32..159, MXCSR and MXCSR_MASK at 24..31, XMM from 160), then the XSAVE header:
 * 512 XSTATE_BV, 520 XCOMP_BV, 528..575 reserved. The requested-feature bitmap is
 * RFBM = XCR0 AND EDX:EAX.
 *
 * XINUSE (which components are not in their initial configuration) is not tracked: it reads as
 * all ones, which the SDM allows (a component may be reported in use although it is in its
 * initial configuration); QEMU models it the same way. So XSAVE sets XSTATE_BV's RFBM bits, and
 * XSAVEOPT — whose init and modified optimizations only let it skip components — saves as XSAVE.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { VEC_GP, VEC_UD, ea, side } from './common.js';
import {
  loadX87, loadXmm, readMxcsr, readX87, readXmm, saveMxcsr, saveX87, saveXmm, xmmCount,
} from './fxsave.js';
import { fninit } from './x87.js';

const XCR0_X87 = 1;
const XCR0_SSE = 2;
/** Offsets in the XSAVE header. */
const XSTATE_BV = 512;
const XCOMP_BV = 520;

/** RFBM = XCR0 AND EDX:EAX (EDX selects components 32..62, none of which exist). */
function requestedFeatures(cpu: CpuState): number {
  return cpu.xcr0 & cpu.gpr[0]! & (XCR0_X87 | XCR0_SSE);
}

function checkAlign64(mem: SimdMemory, i: SimdInsn): void {
  if (i.ea & 63) mem.fault(VEC_GP, 0);
}

/** XSAVE and XSAVEOPT: store the RFBM components, then XSTATE_BV ← (OLD_BV AND NOT RFBM) OR RFBM. */
export function xsave(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  checkAlign64(mem, i);
  const rfbm = requestedFeatures(cpu);
  // all-or-nothing: probe every byte written (the x87 part spans 0..159 around MXCSR's 24..31)
  if (rfbm & XCR0_X87) mem.probeWrite(ea(i, 0), 160);
  if (rfbm & XCR0_SSE) {
    mem.probeWrite(ea(i, 24), 8);
    mem.probeWrite(ea(i, 160), 16 * xmmCount(i));
  }
  mem.probeWrite(ea(i, XSTATE_BV), 8);
  const oldBv = mem.read32(ea(i, XSTATE_BV));
  if (rfbm & XCR0_X87) saveX87(cpu, mem, i);
  // MXCSR and MXCSR_MASK go with RFBM bit 1 or 2 (AVX, which does not exist here)
  if (rfbm & XCR0_SSE) {
    saveMxcsr(cpu, mem, i);
    saveXmm(cpu, mem, i);
  }
  mem.write32(ea(i, XSTATE_BV), oldBv | rfbm);
}

/**
 * XRSTOR, standard form: #GP(0) when XSTATE_BV sets a bit XCR0 does not have, when bytes 8..23
 * of the header (XCOMP_BV and the next 8 bytes) are not all zero — which covers XCOMP_BV bit 63,
 * the compacted format this CPU lacks —, or when MXCSR (loaded whenever RFBM bit 1 is set, whatever
 * XSTATE_BV says) sets a reserved bit. Then each RFBM component is loaded when its XSTATE_BV bit
 * is set and put in its initial configuration otherwise. Everything is read before state changes.
 */
export function xrstor(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  checkAlign64(mem, i);
  const rfbm = requestedFeatures(cpu);
  const bvLo = mem.read32(ea(i, XSTATE_BV)) >>> 0;
  const bvHi = mem.read32(ea(i, XSTATE_BV + 4));
  if (bvHi !== 0 || bvLo & ~cpu.xcr0) mem.fault(VEC_GP, 0);
  for (let o = XCOMP_BV; o < XCOMP_BV + 16; o += 4) if (mem.read32(ea(i, o)) !== 0) mem.fault(VEC_GP, 0);
  const loadX = (rfbm & bvLo & XCR0_X87) !== 0;
  const loadS = (rfbm & bvLo & XCR0_SSE) !== 0;
  const mx = rfbm & XCR0_SSE ? readMxcsr(mem, i) : 0;
  if (loadX) readX87(mem, i);
  if (loadS) readXmm(mem, i);

  if (rfbm & XCR0_X87) {
    if (loadX) loadX87(cpu, i);
    else initX87(cpu);
  }
  if (rfbm & XCR0_SSE) {
    cpu.mxcsr = mx;
    if (loadS) loadXmm(cpu, i);
    else cpu.xmm.fill(0, 0, 4 * xmmCount(i));
  }
}

/** The x87 component's initial configuration: FNINIT's state, with every register zero. */
function initX87(cpu: CpuState): void {
  fninit(cpu);
  cpu.st.fill(0);
  side(cpu).rawValid.fill(0);
}

/** 0F AE /4../6, memory forms (the core has done the #UD and #NM checks). */
export function xsaveGroup(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod === 3 || i.prefix !== 0) mem.fault(VEC_UD);
  switch (i.reg & 7) {
    case 4: xsave(cpu, mem, i); return;
    case 5: xrstor(cpu, mem, i); return;
    case 6: xsave(cpu, mem, i); return; // XSAVEOPT: see the module comment
    default: mem.fault(VEC_UD);
  }
}
