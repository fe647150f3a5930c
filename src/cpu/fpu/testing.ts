/**
 * Test helpers for the SIMD unit: a flat little-endian memory implementing SimdMemory (linear =
 * offset into a buffer, faults thrown as SimdFault), and a builder for SimdInsn values.
 */
import type { SimdInsn, SimdMemory } from '../simd-api.js';

export class SimdFault extends Error {
  constructor(readonly vector: number, readonly errorCode: number) {
    super(`CPU fault ${vector} (error code ${errorCode})`);
  }
}

/** The vector of the SimdFault `f` raises, or -1 when it raises none. */
export function faultOf(f: () => void): number {
  try {
    f();
  } catch (e) {
    if (e instanceof SimdFault) return e.vector;
    throw e;
  }
  return -1;
}

export class FlatMemory implements SimdMemory {
  readonly bytes: Uint8Array;
  flags = 0;
  constructor(size = 0x2000) {
    this.bytes = new Uint8Array(size);
  }
  private check(lin: number, n: number): void {
    if (lin < 0 || lin + n > this.bytes.length) throw new SimdFault(14, 0);
  }
  read8(lin: number): number {
    this.check(lin, 1);
    return this.bytes[lin]!;
  }
  read16(lin: number): number {
    return this.read8(lin) | (this.read8(lin + 1) << 8);
  }
  read32(lin: number): number {
    return (this.read16(lin) | (this.read16(lin + 2) << 16)) >>> 0;
  }
  write8(lin: number, v: number): void {
    this.check(lin, 1);
    this.bytes[lin] = v & 0xff;
  }
  write16(lin: number, v: number): void {
    this.write8(lin, v);
    this.write8(lin + 1, v >> 8);
  }
  write32(lin: number, v: number): void {
    this.write16(lin, v);
    this.write16(lin + 2, v >>> 16);
  }
  probeWrite(lin: number, len: number): void {
    this.check(lin, len);
  }
  fault(vector: number, errorCode = -1): never {
    throw new SimdFault(vector, errorCode);
  }
  setFlagsZPC(zf: boolean, pf: boolean, cf: boolean): void {
    this.flags = (zf ? 0x40 : 0) | (pf ? 4 : 0) | (cf ? 1 : 0);
  }
  setArithFlags(arith: number): void {
    this.flags = arith & 0x8d5;
  }
  getRflags(): number {
    return this.flags | 2;
  }
}

/** A SimdInsn for 64-bit mode; `mod` 3 (register form) unless `ea` is given. */
export function insn(opcode: number, prefix: number, reg: number, rm: number, extra: Partial<SimdInsn> = {}): SimdInsn {
  const i: SimdInsn = {
    opcode, map: 1, prefix, mod: 3, reg, rm,
    rexW: false, opsize: 4, ea: 0, imm8: 0, long: true,
  };
  Object.assign(i, extra);
  if (extra.ea !== undefined && extra.mod === undefined) i.mod = 0;
  return i;
}

/** An x87 instruction (D8..DF): register form `opcode modrm` when ea is undefined, else memory form /reg. */
export function x87insn(opcode: number, reg: number, rm: number, ea?: number, opsize = 4): SimdInsn {
  return {
    opcode, map: 0, prefix: 0, mod: ea === undefined ? 3 : 0, reg, rm, rexW: false, opsize, ea: ea ?? 0, imm8: 0,
    long: true,
  };
}

/** x87 register form from the second opcode byte (e.g. 0xd9, 0xe8 for FLD1). */
export function x87op(opcode: number, modrm: number): SimdInsn {
  return x87insn(opcode, (modrm >> 3) & 7, modrm & 7);
}
