/**
 * The narrow interface between the integer core (decoder/interpreter, src/cpu/core) and the
 * floating-point/SIMD unit (src/cpu/fpu: x87, MMX, SSE to SSE4.2, FXSAVE/FXRSTOR). The core decodes
 * prefixes, ModRM/SIB, displacement and immediate, computes the effective linear address and
 * then calls the unit with a reused `SimdInsn`; the unit touches guest memory only through
 * `SimdMemory` (which performs paging, permission checks and faults).
 */
import type { CpuState } from './state.js';

export interface SimdMemory {
  /** Reads at a linear address; values are unsigned 8/16/32-bit. May throw a CPU fault. */
  read8(lin: number): number;
  read16(lin: number): number;
  read32(lin: number): number;
  write8(lin: number, v: number): void;
  write16(lin: number, v: number): void;
  write32(lin: number, v: number): void;
  /** Check that [lin, lin+len) is writable before a multi-part store (so it is all-or-nothing). */
  probeWrite(lin: number, len: number): void;
  /** Raise an exception (#UD, #NM, #MF, #XM, #GP(0) for misaligned SSE operands...). */
  fault(vector: number, errorCode?: number): never;
  /** COMISS/UCOMISD/FCOMI: set ZF, PF, CF as given and clear OF, SF, AF. */
  setFlagsZPC(zf: boolean, pf: boolean, cf: boolean): void;
  /** PTEST, PCMPxSTRx: set the six arithmetic flags (CF PF AF ZF SF OF) to these bits of `arith`. */
  setArithFlags(arith: number): void;
  /** Full RFLAGS (FCMOVcc reads it). */
  getRflags(): number;
}

/** One decoded instruction, reused by the core (never retained by the unit). */
export interface SimdInsn {
  /** Opcode byte within its map (0xd8..0xdf for x87; the byte after 0F / 0F38 / 0F3A for SSE). */
  opcode: number;
  /** 0 = one-byte map (x87), 1 = 0F, 2 = 0F38, 3 = 0F3A. */
  map: number;
  /** Mandatory/last SIMD prefix: 0, 0x66, 0xf2 or 0xf3. */
  prefix: number;
  /** ModRM fields with REX extensions applied: reg 0..15, rm 0..15 (register operand when mod == 3). */
  mod: number;
  reg: number;
  rm: number;
  /** REX.W (64-bit GPR operand for MOVD/MOVQ, CVTSI2SD, CVTTSD2SI ...). */
  rexW: boolean;
  /** Effective operand size for x87 integer/env forms and FXSAVE layout: 2, 4 or 8. */
  opsize: number;
  /** Effective linear address when mod != 3. */
  ea: number;
  /** Immediate byte, for the opcodes that take one (the core knows which: 0F 70-73, C2, C4-C6, 0F3A xx). */
  imm8: number;
  /** True in 64-bit mode. */
  long: boolean;
}

/**
 * What the unit exports. Each returns normally after updating state, or throws through
 * `mem.fault`. An opcode the unit does not implement must call mem.fault(6) (#UD).
 */
export interface SimdUnit {
  x87(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void;
  /** 0F-map, 0F38 and 0F3A SIMD opcodes (MMX/SSE/SSE2, plus FXSAVE/FXRSTOR/LDMXCSR/STMXCSR at 0F AE). */
  sse(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void;
  /** Which 0F-map opcodes the unit handles (so the core routes them here). */
  handles0F(opcode: number): boolean;
  /** FWAIT/WAIT: raise #MF for a pending unmasked x87 exception (when CR0.NE is set). */
  fwait?(cpu: CpuState, mem: SimdMemory): void;
  /** Reset to the power-on state (FNINIT + MXCSR default). */
  reset(cpu: CpuState): void;
}
