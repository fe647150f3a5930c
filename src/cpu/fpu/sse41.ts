/**
 * SSE4.1 (and PCMPGTQ, SSE4.2) integer lane operations on the scratch vectors, 128-bit only:
 * D ← D op S for the 0F 38 binary opcodes, the one-source forms (PHMINPOSUW, PMOVSX/PMOVZX)
 * and the immediate forms of the 0F 3A map (PBLENDW, BLENDPS/PD, MPSADBW). Operand loading
 * and write-back are the caller's (sse-maps.ts).
 */
import { D, S, T } from './common.js';
import { mul, mul32 } from './sse-int.js';

/** Is `op` (0F 38 map) a two-operand lane operation of `sse41Binary`? */
export function isSse41Binary(op: number): boolean {
  return op === 0x28 || op === 0x29 || op === 0x2b || (op >= 0x37 && op <= 0x40);
}

/** D ← D op S for PMULDQ, PCMPEQQ, PACKUSDW, PCMPGTQ, PMIN*, PMAX*, PMULLD. */
export function sse41Binary(op: number): void {
  const dsb = D.sb;
  const dw = D.w;
  const dd = D.d;
  const ssb = S.sb;
  const sw = S.w;
  const sd = S.d;
  switch (op) {
    case 0x28: // PMULDQ: signed dwords 0 and 2, 64-bit products
      for (let k = 0; k < 4; k += 2) {
        const a = dd[k]!;
        const b = sd[k]!;
        mul32(a, b);
        dd[k] = mul.lo;
        dd[k + 1] = mul.hi - (a < 0 ? b : 0) - (b < 0 ? a : 0);
      }
      return;
    case 0x29: // PCMPEQQ
      for (let k = 0; k < 4; k += 2) {
        const m = dd[k] === sd[k] && dd[k + 1] === sd[k + 1] ? -1 : 0;
        dd[k] = m;
        dd[k + 1] = m;
      }
      return;
    case 0x2b: { // PACKUSDW: signed dwords to unsigned words with saturation, D low, S high
      const tw = T.w;
      for (let k = 0; k < 4; k++) {
        const a = dd[k]!;
        const b = sd[k]!;
        tw[k] = a < 0 ? 0 : a > 0xffff ? 0xffff : a;
        tw[4 + k] = b < 0 ? 0 : b > 0xffff ? 0xffff : b;
      }
      for (let k = 0; k < 8; k++) dw[k] = tw[k]!;
      return;
    }
    case 0x37: // PCMPGTQ (SSE4.2): signed 64-bit greater-than
      for (let k = 0; k < 4; k += 2) {
        const ah = dd[k + 1]!;
        const bh = sd[k + 1]!;
        const m = ah > bh || (ah === bh && dd[k]! >>> 0 > sd[k]! >>> 0) ? -1 : 0;
        dd[k] = m;
        dd[k + 1] = m;
      }
      return;
    case 0x38: for (let k = 0; k < 16; k++) if (ssb[k]! < dsb[k]!) dsb[k] = ssb[k]!; return; // PMINSB
    case 0x39: for (let k = 0; k < 4; k++) if (sd[k]! < dd[k]!) dd[k] = sd[k]!; return; // PMINSD
    case 0x3a: for (let k = 0; k < 8; k++) if (sw[k]! < dw[k]!) dw[k] = sw[k]!; return; // PMINUW
    case 0x3b: for (let k = 0; k < 4; k++) if (sd[k]! >>> 0 < dd[k]! >>> 0) dd[k] = sd[k]!; return; // PMINUD
    case 0x3c: for (let k = 0; k < 16; k++) if (ssb[k]! > dsb[k]!) dsb[k] = ssb[k]!; return; // PMAXSB
    case 0x3d: for (let k = 0; k < 4; k++) if (sd[k]! > dd[k]!) dd[k] = sd[k]!; return; // PMAXSD
    case 0x3e: for (let k = 0; k < 8; k++) if (sw[k]! > dw[k]!) dw[k] = sw[k]!; return; // PMAXUW
    case 0x3f: for (let k = 0; k < 4; k++) if (sd[k]! >>> 0 > dd[k]! >>> 0) dd[k] = sd[k]!; return; // PMAXUD
    case 0x40: for (let k = 0; k < 4; k++) dd[k] = Math.imul(dd[k]!, sd[k]!); return; // PMULLD
    default:
      throw new Error(`sse41Binary: 0F 38 ${op.toString(16)} is not an SSE4.1 binary operation (a dispatch bug)`);
  }
}

/** PHMINPOSUW: D ← (the least unsigned word of S, its lowest index, zeros). */
export function phminposuw(): void {
  const sw = S.w;
  let m = sw[0]!;
  let at = 0;
  for (let k = 1; k < 8; k++) {
    if (sw[k]! < m) {
      m = sw[k]!;
      at = k;
    }
  }
  const dd = D.d;
  dd[0] = m | (at << 16);
  dd[1] = 0;
  dd[2] = 0;
  dd[3] = 0;
}

/** Source bytes of PMOVSX/PMOVZX 0F 38 20-25 / 30-35 (low bits of the opcode). */
export function pmovSourceBytes(op: number): number {
  const k = op & 7;
  return k === 0 || k === 3 || k === 5 ? 8 : k === 1 || k === 4 ? 4 : 2;
}

/** PMOVSX/PMOVZX: D ← S's low elements widened (BW BD BQ WD WQ DQ by the opcode's low bits). */
export function pmovx(op: number): void {
  const signed = op < 0x30;
  const k = op & 7;
  const from = k <= 2 ? 1 : k <= 4 ? 2 : 4;
  const to = k === 0 ? 2 : k === 1 || k === 3 ? 4 : 8;
  const count = 16 / to;
  const dd = D.d;
  const dw = D.w;
  for (let j = 0; j < count; j++) {
    const v = from === 1 ? (signed ? S.sb[j]! : S.b[j]!) : from === 2 ? (signed ? S.sw[j]! : S.w[j]!) : signed ? S.d[j]! : S.d[j]! >>> 0;
    if (to === 2) dw[j] = v;
    else if (to === 4) dd[j] = v;
    else {
      dd[2 * j] = v;
      dd[2 * j + 1] = v < 0 ? -1 : 0;
    }
  }
}

/** PBLENDW (0E), BLENDPS (0C), BLENDPD (0D): D's element k ← S's where imm8 bit k is set. */
export function blendImm(op: number, imm: number): void {
  if (op === 0x0e) {
    for (let k = 0; k < 8; k++) if (imm & (1 << k)) D.w[k] = S.w[k]!;
  } else if (op === 0x0c) {
    for (let k = 0; k < 4; k++) if (imm & (1 << k)) D.d[k] = S.d[k]!;
  } else {
    for (let k = 0; k < 2; k++) {
      if (imm & (1 << k)) {
        D.d[2 * k] = S.d[2 * k]!;
        D.d[2 * k + 1] = S.d[2 * k + 1]!;
      }
    }
  }
}

/**
 * PBLENDVB (10), BLENDVPS (14), BLENDVPD (15): D's element ← S's where the sign bit of the
 * element of `mask` (XMM0's lanes, borrowed) is set.
 */
export function blendVar(op: number, mask: Int32Array, at: number): void {
  if (op === 0x10) {
    for (let k = 0; k < 4; k++) {
      const m = mask[at + k]!;
      for (let b = 0; b < 4; b++) if ((m >> (8 * b + 7)) & 1) D.b[4 * k + b] = S.b[4 * k + b]!;
    }
  } else if (op === 0x14) {
    for (let k = 0; k < 4; k++) if (mask[at + k]! < 0) D.d[k] = S.d[k]!;
  } else {
    for (let k = 0; k < 2; k++) {
      if (mask[at + 2 * k + 1]! < 0) {
        D.d[2 * k] = S.d[2 * k]!;
        D.d[2 * k + 1] = S.d[2 * k + 1]!;
      }
    }
  }
}

/**
 * MPSADBW: eight sums of absolute differences of 4-byte groups: D's bytes from offset
 * 4 × imm8[2] (sliding by one) against S's dword imm8[1:0].
 */
export function mpsadbw(imm: number): void {
  const db = D.b;
  const sb = S.b;
  const dOff = imm & 4;
  const sOff = (imm & 3) * 4;
  const tw = T.w;
  for (let k = 0; k < 8; k++) {
    let sum = 0;
    for (let j = 0; j < 4; j++) sum += Math.abs(db[dOff + k + j]! - sb[sOff + j]!);
    tw[k] = sum;
  }
  for (let k = 0; k < 8; k++) D.w[k] = tw[k]!;
}
