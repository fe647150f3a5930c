/**
 * The translator's instruction decoder (64-bit mode): length, prefixes, ModRM/SIB operands and
 * immediates of one instruction from guest RAM, for the translator (cpu/wasm) to generate code from. The
 * interpreter has its own decoder (core/exec.ts, ops/operands.ts), which decodes as it executes.
 */

/** A decoded instruction (compile time only). */
export interface D {
  rip: number;
  len: number;
  /** Opcode: 0x00..0xff one-byte map, 0x100 | b for the 0F map, -1 unknown. */
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
}

export function newD(): D {
  return {
    rip: 0, len: 0, op: -1, opsize: 4, rex: 0, rexW: false, seg: -1, rep: 0, opo: false, lock: false, ad32: false,
    hasModrm: false, mod: 0, reg: 0, rm: 0, base: -1, index: -1, scale: 1, disp: 0, ripRel: false, imm: 0, immHi: 0, imm2: 0, follow: false, retTo: 0,
  };
}

// One-byte opcodes with a ModRM byte (64-bit mode).
const MODRM1 = new Uint8Array(256);
for (const r of [[0x00, 0x03], [0x08, 0x0b], [0x10, 0x13], [0x18, 0x1b], [0x20, 0x23], [0x28, 0x2b], [0x30, 0x33], [0x38, 0x3b],
  [0x63, 0x63], [0x69, 0x69], [0x6b, 0x6b], [0x80, 0x8f], [0xc0, 0xc1], [0xc6, 0xc7], [0xd0, 0xd3], [0xd8, 0xdf], [0xf6, 0xf7], [0xfe, 0xff]]) {
  for (let i = r[0]!; i <= r[1]!; i++) MODRM1[i] = 1;
}
// 0F-map opcodes without ModRM.
const NO_MODRM2 = new Uint8Array(256);
for (const r of [[0x05, 0x0b], [0x0e, 0x0e], [0x30, 0x37], [0x77, 0x77], [0x80, 0x8f], [0xa0, 0xa2], [0xa8, 0xaa], [0xc8, 0xcf]]) {
  for (let i = r[0]!; i <= r[1]!; i++) NO_MODRM2[i] = 1;
}

/**
 * Decode one instruction at `off` in `ram` (64-bit mode). Returns false when the instruction
 * may run past `limit` (end of the page) or uses a form we do not decode (VEX, 67h, 0F38/3A...).
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
  let hasModrm: boolean;
  let imm = 0; // immediate bytes: 1, 2, 4, 8, or -1 = operand-sized (2/4), -2 = imm64 for B8+
  if (b === 0x0f) {
    if (p >= end) return false;
    const b2 = ram[p++]!;
    if (b2 === 0x38 || b2 === 0x3a || b2 === 0x0f) return false;
    op = 0x100 | b2;
    hasModrm = NO_MODRM2[b2] === 0;
    if ((b2 >= 0x70 && b2 <= 0x73) || b2 === 0xa4 || b2 === 0xac || b2 === 0xba || b2 === 0xc2 || (b2 >= 0xc4 && b2 <= 0xc6)) imm = 1;
    else if (b2 >= 0x80 && b2 <= 0x8f) imm = 4;
  } else {
    hasModrm = MODRM1[b] === 1;
    if (b === 0x62 || b === 0xc4 || b === 0xc5 || b === 0xd6 || b === 0x8e || b === 0x9a || b === 0xea) return false;
    if (b < 0x40 && (b & 7) === 4) imm = 1;
    else if (b < 0x40 && (b & 7) === 5) imm = -1;
    else if (b === 0x68 || b === 0x69 || b === 0x81 || b === 0xa9 || b === 0xc7) imm = -1;
    else if (b === 0x6a || b === 0x6b || b === 0x80 || b === 0x83 || b === 0xa8 || b === 0xc0 || b === 0xc1 || b === 0xc6 ||
      (b >= 0x70 && b <= 0x7f) || (b >= 0xb0 && b <= 0xb7) || b === 0xcd || (b >= 0xe0 && b <= 0xe7) || b === 0xeb || b === 0xd4 || b === 0xd5) imm = 1;
    else if (b >= 0xb8 && b <= 0xbf) imm = d.rexW ? 8 : -1;
    else if (b === 0xc2 || b === 0xca) imm = 2;
    else if (b === 0xc8) imm = 3;
    else if (b === 0xe8 || b === 0xe9) imm = 4;
    else if (b >= 0xa0 && b <= 0xa3) imm = d.ad32 ? 4 : 8;
  }
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
    // group 3 TEST has an immediate
    if ((op === 0xf6 || op === 0xf7) && (d.reg & 7) <= 1) imm = op === 0xf6 ? 1 : -1;
  }
  if (imm === -1) imm = d.opsize === 2 ? 2 : 4;
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
