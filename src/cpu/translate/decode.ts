/**
 * The translator's instruction decoder (64-bit mode): length, prefixes, ModRM/SIB operands and
 * immediates of one instruction from guest RAM, for the translator (cpu/wasm) to generate code from.
 * Which opcodes have a ModRM byte and how long their immediates are comes from the instruction
 * table (isa/table.ts). The interpreter decodes as it executes (core/exec.ts, ops/operands.ts);
 * isa/isa.test.ts checks that it agrees with the table.
 */
import { entry, flowOf, Flow, hasModrm as hasModrmOf, Imm, immKind } from '../isa/table.js';

/** A decoded instruction (compile time only). */
export interface D {
  rip: number;
  len: number;
  /** Opcode: 0x00..0xff one-byte map, 0x100 | b for the 0F map, 0x200 | b for 0F 38, 0x300 | b for 0F 3A, -1 unknown. */
  op: number;
  opsize: number;
  rex: number;
  rexW: boolean;
  seg: number;
  rep: number;
  /** A 66 operand-size prefix was present (SSE: selects the 128-bit integer forms). */
  opo: boolean;
  lock: boolean;
  ad32: boolean;
  hasModrm: boolean;
  mod: number;
  reg: number;
  rm: number;
  base: number;
  index: number;
  scale: number;
  disp: number;
  ripRel: boolean;
  imm: number;
  immHi: number;
  /** Second immediate (ENTER) or imm8 of SHLD/SHRD. */
  imm2: number;
  /**
   * Set by the trace builder on a direct branch the block continues past: Jcc exits only
   * when taken (the trace goes on at the fall-through); JMP/CALL go on at their target; RET
   * (returning to a CALL made earlier in the same trace) goes on at `retTo` and exits when
   * the popped address is another one.
   */
  follow: boolean;
  retTo: number;
  /** The instruction-table entry of this form (isa/table.ts). */
  info: number;
}

export function newD(): D {
  return {
    rip: 0, len: 0, op: -1, opsize: 4, rex: 0, rexW: false, seg: -1, rep: 0, opo: false, lock: false, ad32: false,
    hasModrm: false, mod: 0, reg: 0, rm: 0, base: -1, index: -1, scale: 1, disp: 0, ripRel: false, imm: 0, immHi: 0, imm2: 0, follow: false, retTo: 0, info: 0,
  };
}

/** Immediate bytes of kind k for the decoded prefixes (ENTER: 3, its two immediates). */
function immBytes(k: Imm, d: D): number {
  switch (k) {
    case Imm.None: return 0;
    case Imm.B: return 1;
    case Imm.W: return 2;
    case Imm.D: return 4;
    case Imm.Z: return d.opsize === 2 ? 2 : 4;
    case Imm.V: return d.rexW ? 8 : d.opsize === 2 ? 2 : 4;
    case Imm.Moffs: return d.ad32 ? 4 : 8;
    case Imm.Enter: return 3;
  }
}

/**
 * Decode one instruction at `off` in `ram` (64-bit mode). Returns false when the instruction
 * may run past `limit` (end of the page) or uses a form we do not decode (VEX, EVEX, 3DNow!...).
 */
export function decode(ram: Uint8Array, off: number, limit: number, rip: number, d: D): boolean {
  let p = off;
  const end = Math.min(limit, off + 15);
  d.rip = rip;
  d.rex = 0;
  d.seg = -1;
  d.rep = 0;
  d.lock = false;
  d.ad32 = false;
  let opo = false;
  let b: number;
  for (;;) {
    if (p >= end) return false;
    b = ram[p++]!;
    if (b === 0x66) { opo = true; d.rex = 0; continue; }
    if (b === 0x67) { d.ad32 = true; d.rex = 0; continue; }
    if (b === 0xf0) { d.lock = true; d.rex = 0; continue; }
    if (b === 0xf2 || b === 0xf3) { d.rep = b; d.rex = 0; continue; }
    if (b === 0x64 || b === 0x65) { d.seg = b - 0x60; d.rex = 0; continue; }
    if (b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e) { d.rex = 0; continue; }
    if ((b & 0xf0) === 0x40) { d.rex = b; continue; }
    break;
  }
  d.rexW = (d.rex & 8) !== 0;
  d.opo = opo;
  d.opsize = d.rexW ? 8 : opo ? 2 : 4;
  let op = b;
  if (b === 0x0f) {
    if (p >= end) return false;
    const b2 = ram[p++]!;
    if (b2 === 0x38 || b2 === 0x3a) {
      if (p >= end) return false;
      op = (b2 === 0x38 ? 0x200 : 0x300) | ram[p++]!;
    } else op = 0x100 | b2;
  }
  let e = entry(op, 0, false);
  if (flowOf(e) === Flow.Refuse) return false;
  const hasModrm = hasModrmOf(e);
  d.op = op;
  d.hasModrm = hasModrm;
  d.base = -1;
  d.index = -1;
  d.scale = 1;
  d.disp = 0;
  d.ripRel = false;
  if (hasModrm) {
    if (p >= end) return false;
    const m = ram[p++]!;
    const mod = m >> 6;
    d.mod = mod;
    d.reg = ((m >> 3) & 7) | ((d.rex & 4) << 1);
    const rm = m & 7;
    if (op === 0x120 || op === 0x121 || op === 0x122 || op === 0x123) {
      d.mod = 3;
      d.rm = rm | ((d.rex & 1) << 3);
    } else if (mod === 3) {
      d.rm = rm | ((d.rex & 1) << 3);
    } else {
      d.rm = rm;
      if (rm === 4) {
        if (p >= end) return false;
        const sib = ram[p++]!;
        const idx = ((sib >> 3) & 7) | ((d.rex & 2) << 2);
        const base = (sib & 7) | ((d.rex & 1) << 3);
        if (idx !== 4) {
          d.index = idx;
          d.scale = 1 << (sib >> 6);
        }
        if ((base & 7) === 5 && mod === 0) {
          if (p + 4 > end) return false;
          d.disp = ram[p]! | (ram[p + 1]! << 8) | (ram[p + 2]! << 16) | (ram[p + 3]! << 24);
          p += 4;
        } else d.base = base;
      } else if (rm === 5 && mod === 0) {
        if (p + 4 > end) return false;
        d.disp = ram[p]! | (ram[p + 1]! << 8) | (ram[p + 2]! << 16) | (ram[p + 3]! << 24);
        p += 4;
        d.ripRel = true;
      } else d.base = rm | ((d.rex & 1) << 3);
      if (mod === 1) {
        if (p >= end) return false;
        d.disp = (ram[p++]! << 24) >> 24;
      } else if (mod === 2) {
        if (p + 4 > end) return false;
        d.disp = ram[p]! | (ram[p + 1]! << 8) | (ram[p + 2]! << 16) | (ram[p + 3]! << 24);
        p += 4;
      }
    }
    e = entry(op, d.reg, d.mod === 3);
  }
  d.info = e;
  const imm = immBytes(immKind(e), d);
  if (p + imm > end) return false;
  d.imm = 0;
  d.immHi = 0;
  d.imm2 = 0;
  if (imm === 1) d.imm = ram[p]!;
  else if (imm === 2) d.imm = ram[p]! | (ram[p + 1]! << 8);
  else if (imm === 3) {
    d.imm = ram[p]! | (ram[p + 1]! << 8);
    d.imm2 = ram[p + 2]!;
  } else if (imm >= 4) {
    d.imm = ram[p]! | (ram[p + 1]! << 8) | (ram[p + 2]! << 16) | (ram[p + 3]! << 24);
    if (imm === 8) d.immHi = ram[p + 4]! | (ram[p + 5]! << 8) | (ram[p + 6]! << 16) | (ram[p + 7]! << 24);
  }
  p += imm;
  d.len = p - off;
  return true;
}
