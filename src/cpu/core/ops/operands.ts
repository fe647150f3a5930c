/**
 * Operand decoding and access for the interpreter: the fault helper, general registers by size,
 * ModRM/SIB/displacement into an effective address (16/32/64-bit addressing, RIP-relative),
 * linear addresses (segment base, canonical check), memory and r/m operands by size,
 * immediates, and the address-size registers of string instructions and LOOP/XLAT.
 *
 * Decoding state lives in reused fields of the Cpu (`ip`, `opsize`, `adsize`, `rex*`,
 * `mod/reg/rm`, `eaLo/eaHi/eaSeg/eaBase`); 64-bit values come back as lo, with hi in `c.hi`.
 */
import type { Cpu } from '../cpu.js';
import { CpuFault } from '../../system-api.js';

// Each group module keeps its own copy of the few numbers it needs (TWO32, MASK, UD...) rather
// than importing them: an imported binding is read through the module's import cell at every use,
// a module-local const from one context slot, and the interpreter's hot paths notice.
const TWO32 = 4294967296;
const TWO47 = 140737488355328;
const MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];

const GP = 13;

export function fault(vector: number, code = -1): never {
  throw new CpuFault(vector, code);
}
// ==== registers =============================================================================

/** Read register r at `size` (unsigned); 64-bit: lo returned, hi in c.hi. */
export function getReg(c: Cpu, r: number, size: number): number {
  const g = c.s.gpr;
  switch (size) {
    case 1:
      return c.rex !== 0 || r < 4 ? g[2 * r]! & 0xff : (g[2 * (r - 4)]! >> 8) & 0xff;
    case 2:
      return g[2 * r]! & 0xffff;
    case 4:
      return g[2 * r]! >>> 0;
    default:
      c.hi = g[2 * r + 1]! >>> 0;
      return g[2 * r]! >>> 0;
  }
}

/** Write register r at `size` (32-bit writes zero the high half, 8/16-bit merge). */
export function setReg(c: Cpu, r: number, size: number, v: number, hi: number): void {
  const g = c.s.gpr;
  switch (size) {
    case 1:
      if (c.rex !== 0 || r < 4) g[2 * r] = (g[2 * r]! & ~0xff) | (v & 0xff);
      else g[2 * (r - 4)] = (g[2 * (r - 4)]! & ~0xff00) | ((v & 0xff) << 8);
      return;
    case 2:
      g[2 * r] = (g[2 * r]! & ~0xffff) | (v & 0xffff);
      return;
    case 4:
      g[2 * r] = v;
      g[2 * r + 1] = 0;
      return;
    default:
      g[2 * r] = v;
      g[2 * r + 1] = hi;
  }
}

/** A 64-bit register as a signed number (exact when canonical). */
export function reg64(c: Cpu, r: number): number {
  const g = c.s.gpr;
  return g[2 * r + 1]! * TWO32 + (g[2 * r]! >>> 0);
}

// ==== effective addresses ===================================================================

/** Decode ModRM (+SIB, displacement). `immBytes` = immediate bytes that follow (RIP-relative). */
export function modrm(c: Cpu, immBytes: number): void {
  const b = c.fetch8();
  const mod = b >> 6;
  c.mod = mod;
  c.reg = ((b >> 3) & 7) | c.rexR;
  const rm = b & 7;
  if (mod === 3) {
    c.rm = rm | c.rexB;
    return;
  }
  c.rm = rm;
  c.eaBase = -1;
  const g = c.s.gpr;
  if (c.adsize === 2) {
    let ea = 0;
    let seg = 3;
    switch (rm) {
      case 0: ea = g[6]! + g[12]!; break; // BX+SI
      case 1: ea = g[6]! + g[14]!; break; // BX+DI
      case 2: ea = g[10]! + g[12]!; seg = 2; break; // BP+SI
      case 3: ea = g[10]! + g[14]!; seg = 2; break; // BP+DI
      case 4: ea = g[12]!; break;
      case 5: ea = g[14]!; break;
      case 6:
        if (mod === 0) ea = c.fetch16();
        else {
          ea = g[10]!;
          seg = 2;
        }
        break;
      default: ea = g[6]!; break;
    }
    if (mod === 1) ea += (c.fetch8() << 24) >> 24;
    else if (mod === 2) ea += c.fetch16();
    c.eaLo = ea & 0xffff;
    c.eaHi = 0;
    c.eaSeg = seg;
    return;
  }
  let lo = 0;
  let hi = 0;
  let seg = 3;
  let base: number;
  if (rm === 4) {
    const sib = c.fetch8();
    const scale = sib >> 6;
    const index = ((sib >> 3) & 7) | c.rexX;
    base = (sib & 7) | c.rexB;
    if (index !== 4) {
      const m = 1 << scale;
      const l = (g[2 * index]! >>> 0) * m;
      lo = l;
      hi = g[2 * index + 1]! * m;
    }
    if ((base & 7) === 5 && mod === 0) {
      lo += c.fetch32();
    } else {
      lo += g[2 * base]! >>> 0;
      hi += g[2 * base + 1]!;
      if (base === 4 || base === 5) seg = 2;
      c.eaBase = base;
    }
  } else if (rm === 5 && mod === 0) {
    const disp = c.fetch32();
    if (c.long) {
      const t = c.ip + immBytes + disp;
      if (c.adsize === 8) {
        c.eaLo = t >>> 0;
        c.eaHi = Math.floor(t / TWO32) | 0;
      } else {
        c.eaLo = t >>> 0;
        c.eaHi = 0;
      }
      c.eaSeg = 3;
      return;
    }
    c.eaLo = disp >>> 0;
    c.eaHi = 0;
    c.eaSeg = 3;
    return;
  } else {
    base = rm | c.rexB;
    lo = g[2 * base]! >>> 0;
    hi = g[2 * base + 1]!;
    if (base === 4 || base === 5) seg = 2;
    c.eaBase = base;
  }
  if (mod === 1) lo += (c.fetch8() << 24) >> 24;
  else if (mod === 2) lo += c.fetch32();
  c.eaSeg = seg;
  if (c.adsize === 8) {
    c.eaHi = (hi + Math.floor(lo / TWO32)) | 0;
    c.eaLo = lo >>> 0;
  } else {
    c.eaLo = lo >>> 0;
    c.eaHi = 0;
  }
}

/** ModRM of MOV CR/DR: always a register operand whatever `mod` says. */
export function modrmReg(c: Cpu): void {
  const b = c.fetch8();
  c.mod = 3;
  c.reg = ((b >> 3) & 7) | c.rexR;
  c.rm = (b & 7) | c.rexB;
}

/** Linear address of the decoded memory operand (segment base, canonical check). */
export function eaLin(c: Cpu): number {
  const seg = c.seg >= 0 ? c.seg : c.eaSeg;
  if (c.long) {
    let lin = c.eaHi * TWO32 + c.eaLo;
    if (seg >= 4) lin += c.s.segBase[seg]!;
    if (lin < -TWO47 || lin >= TWO47) fault(seg === 2 ? 12 : GP, 0);
    return lin;
  }
  return (c.s.segBase[seg]! + c.eaLo) >>> 0;
}

/** Linear address of seg:offset for a non-ModRM operand (string ops, moffs, XLAT). */
export function segLin(c: Cpu, seg: number, off: number): number {
  if (c.long) {
    let lin = off;
    if (seg >= 4) lin += c.s.segBase[seg]!;
    if (lin < -TWO47 || lin >= TWO47) fault(seg === 2 ? 12 : GP, 0);
    return lin;
  }
  return (c.s.segBase[seg]! + off) >>> 0;
}

// ==== memory by size ========================================================================

export function readMem(c: Cpu, lin: number, size: number): number {
  switch (size) {
    case 1: return c.read8(lin);
    case 2: return c.read16(lin);
    case 4: return c.read32(lin);
    default: return c.read64(lin);
  }
}

export function writeMem(c: Cpu, lin: number, size: number, v: number, hi: number): void {
  switch (size) {
    case 1: c.write8(lin, v); return;
    case 2: c.write16(lin, v); return;
    case 4: c.write32(lin, v); return;
    default: c.write64(lin, v, hi);
  }
}

/** Read the r/m operand (register or memory). */
export function readRM(c: Cpu, size: number): number {
  if (c.mod === 3) return getReg(c, c.rm, size);
  return readMem(c, eaLin(c), size);
}

export function writeRM(c: Cpu, size: number, v: number, hi: number): void {
  if (c.mod === 3) setReg(c, c.rm, size, v, hi);
  else writeMem(c, eaLin(c), size, v, hi);
}

// ==== immediates ============================================================================

export function immSize(size: number): number {
  return size === 2 ? 2 : size === 1 ? 1 : 4;
}

/** Fetch an immediate of operand size (imm32 sign-extended for 64-bit); hi in c.hi. */
export function fetchImm(c: Cpu, size: number): number {
  switch (size) {
    case 1: c.hi = 0; return c.fetch8();
    case 2: c.hi = 0; return c.fetch16();
    case 4: c.hi = 0; return c.fetch32() >>> 0;
    default: {
      const v = c.fetch32();
      c.hi = v < 0 ? 0xffffffff : 0;
      return v >>> 0;
    }
  }
}

/** Fetch imm8 sign-extended to `size`; hi in c.hi. */
export function fetchImm8s(c: Cpu, size: number): number {
  const v = (c.fetch8() << 24) >> 24;
  c.hi = v < 0 && size === 8 ? 0xffffffff : 0;
  return (v & MASK[size]!) >>> 0;
}

// ==== address-size registers (string instructions, LOOP, JCXZ, XLAT) ========================

/** Value of an address register (RSI/RDI/RCX) at the address size, as a number. */
export function areg(c: Cpu, r: number): number {
  const g = c.s.gpr;
  if (c.adsize === 8) return g[2 * r + 1]! * TWO32 + (g[2 * r]! >>> 0);
  if (c.adsize === 4) return g[2 * r]! >>> 0;
  return g[2 * r]! & 0xffff;
}

export function setAreg(c: Cpu, r: number, v: number): void {
  const g = c.s.gpr;
  if (c.adsize === 8) {
    g[2 * r] = v;
    g[2 * r + 1] = Math.floor(v / TWO32);
  } else if (c.adsize === 4) {
    g[2 * r] = v;
    g[2 * r + 1] = 0;
  } else g[2 * r] = (g[2 * r]! & ~0xffff) | (v & 0xffff);
}

export function wrapA(c: Cpu, v: number): number {
  if (c.adsize === 8) return v;
  return c.adsize === 4 ? v >>> 0 : v & 0xffff;
}

export function segAdd(c: Cpu, lin: number, n: number): number {
  return c.long ? lin + n : (lin + n) >>> 0;
}
