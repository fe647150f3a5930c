/**
 * MMX/SSE2 integer operations on the scratch vectors: D ← D op S over `n` bytes (8 for MMX,
 * 16 for XMM). Pure lane arithmetic; operand loading and the register write-back are the
 * caller's (sse.ts).
 */
import { D, S, T } from './common.js';

function sat8s(v: number): number {
  return v < -128 ? -128 : v > 127 ? 127 : v;
}
function sat8u(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}
function sat16s(v: number): number {
  return v < -32768 ? -32768 : v > 32767 ? 32767 : v;
}
function sat16u(v: number): number {
  return v < 0 ? 0 : v > 65535 ? 65535 : v;
}

/** Unsigned 32×32 → 64 product of a and b: low in mulLo, high in mulHi. */
export const mul = { lo: 0, hi: 0 };
export function mul32(a: number, b: number): void {
  a >>>= 0;
  b >>>= 0;
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const t = aL * bL;
  const m1 = aH * bL;
  const m2 = aL * bH;
  const cross = (t >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  mul.lo = Math.imul(a, b);
  mul.hi = (aH * bH + (m1 >>> 16) + (m2 >>> 16) + (cross >>> 16)) | 0;
}

/** Interleaves the low (hiHalf=false) or high halves of D and S, element size `e` bytes. */
function unpack(n: number, e: number, hiHalf: boolean): void {
  const half = n >> 1;
  const src = hiHalf ? half : 0;
  const db = D.b;
  const sb = S.b;
  const tb = T.b;
  for (let k = 0; k < half; k += e) {
    for (let j = 0; j < e; j++) {
      tb[2 * k + j] = db[src + k + j]!;
      tb[2 * k + e + j] = sb[src + k + j]!;
    }
  }
  for (let k = 0; k < n; k++) db[k] = tb[k]!;
}

/** Logical/arithmetic shift of every lane by `c` (unsigned count, any size). */
export function shift(kind: number, e: number, c: number, n: number): void {
  // kind: 0 = left, 1 = right logical, 2 = right arithmetic
  if (e === 2) {
    const w = D.w;
    const sw = D.sw;
    for (let k = 0; k < n >> 1; k++) {
      if (kind === 2) sw[k] = sw[k]! >> (c > 15 ? 15 : c);
      else if (c > 15) w[k] = 0;
      else w[k] = kind === 0 ? w[k]! << c : w[k]! >>> c;
    }
  } else if (e === 4) {
    const d = D.d;
    for (let k = 0; k < n >> 2; k++) {
      if (kind === 2) d[k] = d[k]! >> (c > 31 ? 31 : c);
      else if (c > 31) d[k] = 0;
      else d[k] = kind === 0 ? d[k]! << c : d[k]! >>> c;
    }
  } else {
    const d = D.d;
    for (let k = 0; k < n >> 2; k += 2) {
      const lo = d[k]!;
      const hi = d[k + 1]!;
      if (c > 63) {
        d[k] = 0;
        d[k + 1] = 0;
      } else if (c === 0) {
        // unchanged
      } else if (kind === 0) {
        if (c >= 32) {
          d[k + 1] = lo << (c - 32);
          d[k] = 0;
        } else {
          d[k + 1] = (hi << c) | (lo >>> (32 - c));
          d[k] = lo << c;
        }
      } else if (c >= 32) {
        d[k] = hi >>> (c - 32);
        d[k + 1] = 0;
      } else {
        d[k] = (lo >>> c) | (hi << (32 - c));
        d[k + 1] = hi >>> c;
      }
    }
  }
}

/** Byte shift of the whole 128-bit D (PSLLDQ left=true / PSRLDQ). */
export function byteShift(left: boolean, c: number): void {
  const b = D.b;
  if (c > 15) c = 16;
  if (left) for (let k = 15; k >= 0; k--) b[k] = k >= c ? b[k - c]! : 0;
  else for (let k = 0; k < 16; k++) b[k] = k + c < 16 ? b[k + c]! : 0;
}

/** Shift count held in the low 64 bits of S (counts ≥ 2^32 saturate). */
function countFromS(): number {
  return S.d[1] !== 0 ? 0xffff : S.d[0]! >>> 0 > 0xffff ? 0xffff : S.d[0]! >>> 0;
}

/** True for the 0F opcodes handled by `intOp`. */
export function isIntBinary(op: number): boolean {
  return (op >= 0x60 && op <= 0x6d) || (op >= 0x74 && op <= 0x76) || (op >= 0xd1 && op <= 0xd5) ||
    (op >= 0xd8 && op <= 0xe5 && op !== 0xe6) || (op >= 0xe8 && op <= 0xef) || (op >= 0xf1 && op <= 0xf6) ||
    (op >= 0xf8 && op <= 0xfe);
}

/** D ← D op S for the integer opcode `op` over n bytes. */
export function intOp(op: number, n: number): void {
  const db = D.b;
  const dsb = D.sb;
  const dw = D.w;
  const dsw = D.sw;
  const dd = D.d;
  const sbb = S.b;
  const ssb = S.sb;
  const sw = S.w;
  const ssw = S.sw;
  const sd = S.d;
  const nw = n >> 1;
  const nd = n >> 2;
  switch (op) {
    case 0x60: unpack(n, 1, false); return;
    case 0x61: unpack(n, 2, false); return;
    case 0x62: unpack(n, 4, false); return;
    case 0x6c: unpack(n, 8, false); return;
    case 0x68: unpack(n, 1, true); return;
    case 0x69: unpack(n, 2, true); return;
    case 0x6a: unpack(n, 4, true); return;
    case 0x6d: unpack(n, 8, true); return;
    case 0x63: case 0x67: { // PACKSSWB / PACKUSWB
      const tsb = T.sb;
      const tb = T.b;
      for (let k = 0; k < nw; k++) {
        if (op === 0x63) {
          tsb[k] = sat8s(dsw[k]!);
          tsb[nw + k] = sat8s(ssw[k]!);
        } else {
          tb[k] = sat8u(dsw[k]!);
          tb[nw + k] = sat8u(ssw[k]!);
        }
      }
      for (let k = 0; k < n; k++) db[k] = tb[k]!;
      return;
    }
    case 0x6b: { // PACKSSDW
      const tsw = T.sw;
      for (let k = 0; k < nd; k++) {
        tsw[k] = sat16s(dd[k]!);
        tsw[nd + k] = sat16s(sd[k]!);
      }
      for (let k = 0; k < nw; k++) dsw[k] = tsw[k]!;
      return;
    }
    case 0x64: for (let k = 0; k < n; k++) db[k] = dsb[k]! > ssb[k]! ? 0xff : 0; return;
    case 0x65: for (let k = 0; k < nw; k++) dw[k] = dsw[k]! > ssw[k]! ? 0xffff : 0; return;
    case 0x66: for (let k = 0; k < nd; k++) dd[k] = dd[k]! > sd[k]! ? -1 : 0; return;
    case 0x74: for (let k = 0; k < n; k++) db[k] = db[k] === sbb[k] ? 0xff : 0; return;
    case 0x75: for (let k = 0; k < nw; k++) dw[k] = dw[k] === sw[k] ? 0xffff : 0; return;
    case 0x76: for (let k = 0; k < nd; k++) dd[k] = dd[k] === sd[k] ? -1 : 0; return;
    case 0xd1: shift(1, 2, countFromS(), n); return;
    case 0xd2: shift(1, 4, countFromS(), n); return;
    case 0xd3: shift(1, 8, countFromS(), n); return;
    case 0xe1: shift(2, 2, countFromS(), n); return;
    case 0xe2: shift(2, 4, countFromS(), n); return;
    case 0xf1: shift(0, 2, countFromS(), n); return;
    case 0xf2: shift(0, 4, countFromS(), n); return;
    case 0xf3: shift(0, 8, countFromS(), n); return;
    case 0xd4: case 0xfb: // PADDQ / PSUBQ
      for (let k = 0; k < nd; k += 2) {
        const a = dd[k]! >>> 0;
        const b = sd[k]! >>> 0;
        if (op === 0xd4) {
          const lo = a + b;
          dd[k] = lo;
          dd[k + 1] = (dd[k + 1]! + sd[k + 1]! + (lo > 0xffffffff ? 1 : 0)) | 0;
        } else {
          dd[k] = a - b;
          dd[k + 1] = (dd[k + 1]! - sd[k + 1]! - (a < b ? 1 : 0)) | 0;
        }
      }
      return;
    case 0xd5: for (let k = 0; k < nw; k++) dw[k] = Math.imul(dw[k]!, sw[k]!); return;
    case 0xe5: for (let k = 0; k < nw; k++) dw[k] = (dsw[k]! * ssw[k]!) >> 16; return;
    case 0xe4: for (let k = 0; k < nw; k++) dw[k] = (dw[k]! * sw[k]!) >>> 16; return;
    case 0xf4: // PMULUDQ
      for (let k = 0; k < nd; k += 2) {
        mul32(dd[k]!, sd[k]!);
        dd[k] = mul.lo;
        dd[k + 1] = mul.hi;
      }
      return;
    case 0xf5: // PMADDWD
      for (let k = 0; k < nd; k++) {
        dd[k] = (dsw[2 * k]! * ssw[2 * k]! + dsw[2 * k + 1]! * ssw[2 * k + 1]!) | 0;
      }
      return;
    case 0xf6: // PSADBW
      for (let g = 0; g < n; g += 8) {
        let sum = 0;
        for (let k = g; k < g + 8; k++) sum += Math.abs(db[k]! - sbb[k]!);
        const w0 = g >> 1;
        dw[w0] = sum;
        dw[w0 + 1] = 0;
        dw[w0 + 2] = 0;
        dw[w0 + 3] = 0;
      }
      return;
    case 0xd8: for (let k = 0; k < n; k++) db[k] = sat8u(db[k]! - sbb[k]!); return;
    case 0xd9: for (let k = 0; k < nw; k++) dw[k] = sat16u(dw[k]! - sw[k]!); return;
    case 0xdc: for (let k = 0; k < n; k++) db[k] = sat8u(db[k]! + sbb[k]!); return;
    case 0xdd: for (let k = 0; k < nw; k++) dw[k] = sat16u(dw[k]! + sw[k]!); return;
    case 0xe8: for (let k = 0; k < n; k++) dsb[k] = sat8s(dsb[k]! - ssb[k]!); return;
    case 0xe9: for (let k = 0; k < nw; k++) dsw[k] = sat16s(dsw[k]! - ssw[k]!); return;
    case 0xec: for (let k = 0; k < n; k++) dsb[k] = sat8s(dsb[k]! + ssb[k]!); return;
    case 0xed: for (let k = 0; k < nw; k++) dsw[k] = sat16s(dsw[k]! + ssw[k]!); return;
    case 0xda: for (let k = 0; k < n; k++) if (sbb[k]! < db[k]!) db[k] = sbb[k]!; return;
    case 0xde: for (let k = 0; k < n; k++) if (sbb[k]! > db[k]!) db[k] = sbb[k]!; return;
    case 0xea: for (let k = 0; k < nw; k++) if (ssw[k]! < dsw[k]!) dsw[k] = ssw[k]!; return;
    case 0xee: for (let k = 0; k < nw; k++) if (ssw[k]! > dsw[k]!) dsw[k] = ssw[k]!; return;
    case 0xdb: for (let k = 0; k < nd; k++) dd[k] = dd[k]! & sd[k]!; return;
    case 0xdf: for (let k = 0; k < nd; k++) dd[k] = ~dd[k]! & sd[k]!; return;
    case 0xeb: for (let k = 0; k < nd; k++) dd[k] = dd[k]! | sd[k]!; return;
    case 0xef: for (let k = 0; k < nd; k++) dd[k] = dd[k]! ^ sd[k]!; return;
    case 0xe0: for (let k = 0; k < n; k++) db[k] = (db[k]! + sbb[k]! + 1) >> 1; return;
    case 0xe3: for (let k = 0; k < nw; k++) dw[k] = (dw[k]! + sw[k]! + 1) >> 1; return;
    case 0xf8: for (let k = 0; k < n; k++) db[k] = db[k]! - sbb[k]!; return;
    case 0xf9: for (let k = 0; k < nw; k++) dw[k] = dw[k]! - sw[k]!; return;
    case 0xfa: for (let k = 0; k < nd; k++) dd[k] = dd[k]! - sd[k]!; return;
    case 0xfc: for (let k = 0; k < n; k++) db[k] = db[k]! + sbb[k]!; return;
    case 0xfd: for (let k = 0; k < nw; k++) dw[k] = dw[k]! + sw[k]!; return;
    case 0xfe: for (let k = 0; k < nd; k++) dd[k] = (dd[k]! + sd[k]!) | 0; return;
    default:
      throw new Error(`intOp: opcode 0x${op.toString(16)} is not an integer binary op (a decoder table bug)`);
  }
}
