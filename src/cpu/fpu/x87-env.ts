/**
 * x87 memory forms that move whole values: FST/FIST(P)/FISTTP stores, FLD m80/FSTP m80, pushes
 * of converted loads, packed BCD (FBLD/FBSTP), and the environment: FSTENV/FLDENV (14 or 28
 * bytes by operand size), FSAVE/FRSTOR (the environment plus eight 80-bit registers in stack
 * order), tag words and the ES/B summary after a control or status word is loaded.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { ea } from './common.js';
import { ext } from './f80.js';
import { F32, F64, hi32, lo32, sf } from './softfloat.js';
import { fromIntExt, toFloat, toIntExt } from './extfloat.js';
import {
  SW_B, SW_ES, SW_IE, SW_PE, TAG_EMPTY, begin, end, fninit, getX, phys, pop, push, putX, regExt, setRegExt, setTag,
  tag, tagOfExt, underflow,
} from './x87-stack.js';

// ---- stores ------------------------------------------------------------------------------------------

export function storeInt(cpu: CpuState, mem: SimdMemory, i: SimdInsn, size: number, truncate: boolean, popAfter: boolean): void {
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
export function storeFloat(cpu: CpuState, mem: SimdMemory, i: SimdInsn, size: number, popAfter: boolean): void {
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
export function pushX(cpu: CpuState, x: bigint): void {
  if (!end(cpu)) return;
  const p = push(cpu);
  if (p >= 0) putX(cpu, p, x);
}

export function loadExt(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const lo = mem.read32(ea(i, 0));
  const hi = mem.read32(ea(i, 4));
  const se = mem.read16(ea(i, 8));
  const p = push(cpu);
  if (p >= 0) setRegExt(cpu, p, lo, hi, se);
}

export function storeExt(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

export function fbld(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

export function fbstp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

export function fstenv(cpu: CpuState, mem: SimdMemory, i: SimdInsn): number {
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

export function fldenv(cpu: CpuState, mem: SimdMemory, i: SimdInsn): number {
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
export function updateES(cpu: CpuState): void {
  if (cpu.fpuStatus & ~cpu.fpuControl & 0x3f) cpu.fpuStatus |= SW_ES | SW_B;
  else cpu.fpuStatus &= ~(SW_ES | SW_B);
}

export function fsave(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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

export function frstor(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
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
