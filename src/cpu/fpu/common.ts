/**
 * Shared plumbing of the SIMD unit: operand access (XMM, MMX, memory through SimdMemory),
 * reusable scratch vectors and the per-CPU x87 side state (exact 80-bit register images).
 *
 * Scratch vectors are module-level and reused (no allocation per instruction); a function that
 * fills one documents it, and callers consume it before the next operand load.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';

export const VEC_UD = 6;
export const VEC_NM = 7;
export const VEC_GP = 13;
export const VEC_MF = 16;
export const VEC_XM = 19;

/** Raises #UD (invalid or unsupported opcode). */
export function ud(mem: SimdMemory): never {
  return mem.fault(VEC_UD);
}

/** CR4.OSXMMEXCPT: unmasked SSE exceptions raise #XM (else #UD). */
const CR4_OSXMMEXCPT = 1 << 10;
/** CR4.OSFXSR: SSE instructions are enabled. */
export const CR4_OSFXSR = 1 << 9;

/** #UD unless CR4.OSFXSR enables the SSE instructions (the MMX forms do not need it). */
export function needSse(cpu: CpuState, mem: SimdMemory): void {
  if (!(cpu.cr4 & CR4_OSFXSR)) ud(mem);
}

/** Scratch 16-byte vectors with overlapping views: D (destination), S (source), T (temporary). */
function vec(): { b: Uint8Array; sb: Int8Array; w: Uint16Array; sw: Int16Array; d: Int32Array; f: Float32Array; q: Float64Array } {
  const buf = new ArrayBuffer(16);
  return {
    b: new Uint8Array(buf), sb: new Int8Array(buf), w: new Uint16Array(buf), sw: new Int16Array(buf),
    d: new Int32Array(buf), f: new Float32Array(buf), q: new Float64Array(buf),
  };
}
export const D = vec();
export const S = vec();
export const T = vec();

/** Linear address `off` bytes after the instruction's effective address (32-bit wrap outside long mode). */
export function ea(i: SimdInsn, off: number): number {
  const a = i.ea + off;
  return i.long ? a : a >>> 0;
}

export function checkAlign16(mem: SimdMemory, i: SimdInsn): void {
  if (i.ea & 15) mem.fault(VEC_GP, 0);
}

/** Reads `n` bytes (4, 8 or 16) at the EA into `out` (Int32 lanes), zero-filling the rest. */
export function readMem(mem: SimdMemory, i: SimdInsn, n: number, out: Int32Array): void {
  out[0] = mem.read32(ea(i, 0));
  if (n >= 8) out[1] = mem.read32(ea(i, 4)); else out[1] = 0;
  if (n === 16) {
    out[2] = mem.read32(ea(i, 8));
    out[3] = mem.read32(ea(i, 12));
  } else {
    out[2] = 0;
    out[3] = 0;
  }
}

/** Writes `n` bytes (4, 8 or 16) of `v` (Int32 lanes starting at `lane`) at the EA, all-or-nothing. */
export function writeMem(mem: SimdMemory, i: SimdInsn, n: number, v: Int32Array, lane = 0): void {
  if (n > 4) mem.probeWrite(ea(i, 0), n);
  for (let k = 0; k < n; k += 4) mem.write32(ea(i, k), v[lane + (k >> 2)]!);
}

/** Loads a 128-bit source operand (XMM rm or m128) into S; `aligned` enforces 16-byte alignment. */
export function loadSrcX(cpu: CpuState, mem: SimdMemory, i: SimdInsn, aligned: boolean): void {
  const s = S.d;
  if (i.mod === 3) {
    const x = cpu.xmm;
    const o = i.rm << 2;
    s[0] = x[o]!; s[1] = x[o + 1]!; s[2] = x[o + 2]!; s[3] = x[o + 3]!;
  } else {
    if (aligned) checkAlign16(mem, i);
    readMem(mem, i, 16, s);
  }
}

/** Loads a scalar source (low `n` bytes of XMM rm, or m32/m64) into S (upper lanes unspecified for registers). */
export function loadSrcScalar(cpu: CpuState, mem: SimdMemory, i: SimdInsn, n: number): void {
  const s = S.d;
  if (i.mod === 3) {
    const x = cpu.xmm;
    const o = i.rm << 2;
    s[0] = x[o]!; s[1] = x[o + 1]!; s[2] = x[o + 2]!; s[3] = x[o + 3]!;
  } else {
    readMem(mem, i, n, s);
  }
}

/** Copies XMM register `r` into the lanes of `out`. */
export function getX(cpu: CpuState, r: number, out: Int32Array): void {
  const x = cpu.xmm;
  const o = r << 2;
  out[0] = x[o]!; out[1] = x[o + 1]!; out[2] = x[o + 2]!; out[3] = x[o + 3]!;
}

export function setX(cpu: CpuState, r: number, v: Int32Array): void {
  const x = cpu.xmm;
  const o = r << 2;
  x[o] = v[0]!; x[o + 1] = v[1]!; x[o + 2] = v[2]!; x[o + 3] = v[3]!;
}

// ---- general registers (two 32-bit halves) ----------------------------------------------------

export function getGpr32(cpu: CpuState, r: number): number {
  return cpu.gpr[2 * r]!;
}

/** Writes a 32-bit GPR result (zero-extends to 64 bits, as every 32-bit write does in long mode). */
export function setGpr32(cpu: CpuState, r: number, v: number): void {
  cpu.gpr[2 * r] = v;
  cpu.gpr[2 * r + 1] = 0;
}

export function setGpr64(cpu: CpuState, r: number, lo: number, hi: number): void {
  cpu.gpr[2 * r] = lo;
  cpu.gpr[2 * r + 1] = hi;
}

// ---- x87 side state ----------------------------------------------------------------------------

/**
 * Exact 80-bit images of the physical x87 registers. `st[]` (double) is what arithmetic uses;
 * when a register was loaded from an 80-bit image (FLD m80, FXRSTOR, FRSTOR, MMX writes) and not
 * changed since, the image is saved instead, so 64-bit mantissas and MMX values round-trip.
 */
export class X87Side {
  /** Per physical register: mantissa low, mantissa high, sign/exponent (16 bits). */
  readonly raw = new Int32Array(24);
  readonly rawValid = new Uint8Array(8);
  /** Bit view of cpu.st (NaN payloads must be written as bits, not through JS numbers). */
  readonly stBits: Int32Array;
  /**
   * cpu.st bits at the time each image was written: if cpu.st was changed by someone else (a
   * snapshot restore, a debugger), the image is stale and the double wins.
   */
  readonly mirror = new Int32Array(16);
  constructor(cpu: CpuState) {
    this.stBits = new Int32Array(cpu.st.buffer, cpu.st.byteOffset, 16);
  }
  /** Records the image of physical register p as current (after cpu.st[p] was updated). */
  markRaw(p: number): void {
    this.rawValid[p] = 1;
    this.mirror[2 * p] = this.stBits[2 * p]!;
    this.mirror[2 * p + 1] = this.stBits[2 * p + 1]!;
  }
  /** Is the 80-bit image of physical register p authoritative? */
  rawOk(p: number): boolean {
    return this.rawValid[p] === 1 && this.mirror[2 * p] === this.stBits[2 * p] && this.mirror[2 * p + 1] === this.stBits[2 * p + 1];
  }
}

const sides = new WeakMap<CpuState, X87Side>();
let lastCpu: CpuState | undefined;
let lastSide: X87Side | undefined;

export function side(cpu: CpuState): X87Side {
  if (cpu === lastCpu) return lastSide!;
  let s = sides.get(cpu);
  if (!s) {
    s = new X87Side(cpu);
    sides.set(cpu, s);
  }
  lastCpu = cpu;
  lastSide = s;
  return s;
}

/** Raises #XM (or #UD when CR4.OSXMMEXCPT is clear) for an unmasked SIMD exception. */
export function simdException(cpu: CpuState, mem: SimdMemory): never {
  return mem.fault(cpu.cr4 & CR4_OSXMMEXCPT ? VEC_XM : VEC_UD);
}
