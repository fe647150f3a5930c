/**
 * MMX registers: MMi aliases the 64-bit mantissa of physical x87 register Ri (its exponent
 * field reads as all ones after an MMX write). Every MMX instruction puts the x87 unit in MMX
 * state: TOP = 0 and all tags valid; EMMS empties all tags.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { S, readMem, side } from './common.js';
import { doubleToExt, ext, extToDouble } from './f80.js';

/** Reads MM`r` into out[lane], out[lane+1] (low, high). */
export function getMmx(cpu: CpuState, r: number, out: Int32Array, lane: number): void {
  const sd = side(cpu);
  if (sd.rawOk(r)) {
    out[lane] = sd.raw[3 * r]!;
    out[lane + 1] = sd.raw[3 * r + 1]!;
  } else {
    doubleToExt(cpu.st[r]!);
    out[lane] = ext.lo | 0;
    out[lane + 1] = ext.hi | 0;
  }
}

/** Writes MM`r` (exponent/sign field becomes 0xffff, as on hardware). */
export function setMmx(cpu: CpuState, r: number, lo: number, hi: number): void {
  const sd = side(cpu);
  sd.raw[3 * r] = lo;
  sd.raw[3 * r + 1] = hi;
  sd.raw[3 * r + 2] = 0xffff;
  cpu.st[r] = extToDouble(lo, hi, 0xffff);
  sd.markRaw(r);
}

/** The x87 → MMX transition performed by every MMX instruction. */
export function mmxEnter(cpu: CpuState): void {
  cpu.fpuStatus &= ~0x3800;
  cpu.fpuTag = 0;
}

/** EMMS: mark every x87 register empty. */
export function emms(cpu: CpuState): void {
  cpu.fpuTag = 0xffff;
}

/** Second operand of an MMX instruction into S (MMX register or m64). */
export function loadSrcMmx(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod === 3) getMmx(cpu, i.rm & 7, S.d, 0);
  else readMem(mem, i, 8, S.d);
}
