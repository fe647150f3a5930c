/**
 * x87/SSE/MMX dispatch: the ModRM operand is decoded here, the instruction handed to the SIMD
 * unit (c.simd) as a reused `SimdInsn`, after the feature (#UD) and CR0.EM/TS checks (#NM/#UD).
 */
import type { Cpu } from '../cpu.js';
import type { SimdInsn } from '../../simd-api.js';
import { features } from '../../features.js';
import { fault, modrm, eaLin } from './operands.js';
import { Cr4 } from '../../state.js';

const UD = 6;

// ---- the SIMD instruction record (reused) ----
const simdInsn: SimdInsn = { opcode: 0, map: 0, prefix: 0, mod: 0, reg: 0, rm: 0, rexW: false, opsize: 4, ea: 0, imm8: 0, long: false };

// ==== SIMD dispatch =========================================================================

function simdPrefix(c: Cpu): number {
  return c.rep !== 0 ? c.rep : c.opOverride ? 0x66 : 0;
}

export function runX87(c: Cpu, op: number): void {
  const s = c.s;
  modrm(c, 0);
  // FISTTP m16/m32/m64 (DF/DB/DD /1, memory forms) are SSE3
  if (!features.sse3 && (c.reg & 7) === 1 && c.mod !== 3 && (op === 0xdb || op === 0xdd || op === 0xdf)) fault(UD);
  if (s.cr0 & 0xc) fault(7); // EM or TS: #NM
  const unit = c.simd;
  if (!unit) fault(UD);
  const i = simdInsn;
  i.opcode = op;
  i.map = 0;
  i.prefix = simdPrefix(c);
  i.mod = c.mod;
  i.reg = c.reg & 7;
  i.rm = c.mod === 3 ? c.rm & 7 : c.rm;
  i.rexW = c.rexW;
  i.opsize = c.opsize;
  i.ea = c.mod === 3 ? 0 : eaLin(c);
  i.imm8 = 0;
  i.long = c.long;
  unit.x87(s, c.simdMem, i);
}

/**
 * Is the instruction's feature (features.ts) on? `map` 1 = 0F, 2 = 0F 38, 3 = 0F 3A; `prefix`
 * the mandatory prefix (0, 0x66, 0xf2, 0xf3). Opcodes of no optional feature answer true (the
 * unit raises #UD for the ones it does not know). CRC32 and MOVBE are the core's (exec0f.ts).
 */
export function simdFeatureOn(map: number, op: number, prefix: number): boolean {
  if (map === 1) {
    switch (op) {
      case 0x12: return prefix < 0xf2 || features.sse3; // MOVDDUP (F2), MOVSLDUP (F3)
      case 0x16: return prefix !== 0xf3 || features.sse3; // MOVSHDUP
      case 0x7c: case 0x7d: case 0xd0: return (prefix !== 0x66 && prefix !== 0xf2) || features.sse3; // HADD/HSUB/ADDSUB
      case 0xf0: return prefix !== 0xf2 || features.sse3; // LDDQU
      default: return true;
    }
  }
  if (map === 2) {
    if (op <= 0x0b || (op >= 0x1c && op <= 0x1e)) return features.ssse3;
    if (op === 0x37) return features.sse42; // PCMPGTQ
    if (op === 0x10 || op === 0x14 || op === 0x15 || op === 0x17 || (op >= 0x20 && op <= 0x25) || (op >= 0x28 && op <= 0x2b) ||
      (op >= 0x30 && op <= 0x35) || (op >= 0x38 && op <= 0x41)) return features.sse41;
    return true;
  }
  if (map === 3) {
    if (op === 0x0f) return features.ssse3; // PALIGNR
    if (op >= 0x60 && op <= 0x63) return features.sse42; // PCMPxSTRx
    if ((op >= 0x08 && op <= 0x0e) || (op >= 0x14 && op <= 0x17) || (op >= 0x20 && op <= 0x22) || (op >= 0x40 && op <= 0x42)) return features.sse41;
  }
  return true;
}

function hasImm8(map: number, op: number): boolean {
  if (map === 3) return true;
  if (map === 1) return (op >= 0x70 && op <= 0x73) || op === 0xc2 || (op >= 0xc4 && op <= 0xc6);
  return false;
}

export function runSse(c: Cpu, map: number, op: number): void {
  const s = c.s;
  const imm = hasImm8(map, op) ? 1 : 0;
  if (map === 1 && op === 0x77) {
    // EMMS: no ModRM byte
    c.mod = 3;
    c.reg = c.rm = 0;
  } else modrm(c, imm);
  const unit = c.simd;
  if (!unit) fault(UD);
  if (map !== 1 || op === 0x12 || op === 0x16 || op === 0x7c || op === 0x7d || op === 0xd0 || op === 0xf0) {
    if (!simdFeatureOn(map, op, simdPrefix(c))) fault(UD);
  }
  const isFx = map === 1 && op === 0xae && c.mod !== 3 && (c.reg & 7) <= 1;
  if (s.cr0 & 4) fault(isFx ? 7 : UD); // EM
  if (s.cr0 & 8) fault(7); // TS
  const i = simdInsn;
  i.opcode = op;
  i.map = map;
  i.prefix = simdPrefix(c);
  i.mod = c.mod;
  i.reg = c.reg;
  i.rm = c.rm;
  i.rexW = c.rexW;
  i.opsize = c.opsize;
  i.ea = c.mod === 3 ? 0 : eaLin(c);
  i.imm8 = imm ? c.fetch8() : 0;
  i.long = c.long;
  unit.sse(s, c.simdMem, i);
}

/**
 * 0F AE /4../6, memory forms: XSAVE, XRSTOR, XSAVEOPT (fpu/xsave.ts). #UD when the feature is off,
 * CR4.OSXSAVE is clear or a LOCK/66/F2/F3 prefix is present (66 /6 is CLWB, F3 /4 PTWRITE); #NM
 * when CR0.TS is set (CR0.EM does not matter to them).
 */
export function runXsave(c: Cpu): void {
  const s = c.s;
  modrm(c, 0);
  const unit = c.simd;
  if (!unit || !features.xsave || !(s.cr4 & Cr4.OSXSAVE) || c.lock || c.rep !== 0 || c.opOverride) fault(UD);
  if (s.cr0 & 8) fault(7); // TS
  const i = simdInsn;
  i.opcode = 0xae;
  i.map = 1;
  i.prefix = 0;
  i.mod = c.mod;
  i.reg = c.reg;
  i.rm = c.rm;
  i.rexW = c.rexW;
  i.opsize = c.opsize;
  i.ea = eaLin(c);
  i.imm8 = 0;
  i.long = c.long;
  unit.sse(s, c.simdMem, i);
}
