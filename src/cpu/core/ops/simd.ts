/**
 * x87/SSE/MMX dispatch: the ModRM operand is decoded here, the instruction handed to the SIMD
 * unit (c.simd) as a reused `SimdInsn`, after the CR0.EM/TS checks (#NM/#UD).
 */
import type { Cpu } from '../cpu.js';
import type { SimdInsn } from '../../simd-api.js';
import { fault, modrm, eaLin } from './operands.js';

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
