/**
 * SSSE3 lane arithmetic on the scratch vectors, for the MMX (n = 8 bytes) and XMM (n = 16) forms
 * alike: D ← D op S for the 0F 38 opcodes 00-0B and 1C-1E, PALIGNR (0F 3A 0F). Operand loading,
 * the feature and prefix checks and the write-back are the caller's (sse-maps.ts).
 */
import { D, S, T } from './common.js';

function sat16s(v: number): number {
  return v < -32768 ? -32768 : v > 32767 ? 32767 : v;
}

/** Is `op` (0F 38 map) one of the SSSE3 lane operations below? */
export function isSsse3(op: number): boolean {
  return op <= 0x0b || (op >= 0x1c && op <= 0x1e);
}

/**
 * PHADD/PHSUB: the pair sums (or differences) of D fill the low half of the result, those of S
 * the high half; `e` the element size (2 or 4), `sat` signed saturation (PHADDSW/PHSUBSW).
 */
function horizontal(n: number, e: number, sub: boolean, sat: boolean): void {
  const half = n / e / 2;
  if (e === 2) {
    const dw = D.sw;
    const sw = S.sw;
    const tw = T.sw;
    for (let k = 0; k < half; k++) {
      const a = sub ? dw[2 * k]! - dw[2 * k + 1]! : dw[2 * k]! + dw[2 * k + 1]!;
      const b = sub ? sw[2 * k]! - sw[2 * k + 1]! : sw[2 * k]! + sw[2 * k + 1]!;
      tw[k] = sat ? sat16s(a) : a;
      tw[half + k] = sat ? sat16s(b) : b;
    }
  } else {
    const dd = D.d;
    const sd = S.d;
    const td = T.d;
    for (let k = 0; k < half; k++) {
      td[k] = sub ? dd[2 * k]! - dd[2 * k + 1]! : dd[2 * k]! + dd[2 * k + 1]!;
      td[half + k] = sub ? sd[2 * k]! - sd[2 * k + 1]! : sd[2 * k]! + sd[2 * k + 1]!;
    }
  }
  const db = D.b;
  const tb = T.b;
  for (let k = 0; k < n; k++) db[k] = tb[k]!;
}

/** D ← D op S over n bytes for the SSSE3 opcode `op` of the 0F 38 map. */
export function ssse3Op(op: number, n: number): void {
  const db = D.b;
  const dsb = D.sb;
  const dsw = D.sw;
  const dd = D.d;
  const sb = S.b;
  const ssb = S.sb;
  const ssw = S.sw;
  const sd = S.d;
  const nw = n >> 1;
  const nd = n >> 2;
  switch (op) {
    case 0x00: { // PSHUFB
      const tb = T.b;
      const m = n - 1;
      for (let k = 0; k < n; k++) {
        const c = sb[k]!;
        tb[k] = c & 0x80 ? 0 : db[c & m]!;
      }
      for (let k = 0; k < n; k++) db[k] = tb[k]!;
      return;
    }
    case 0x01: horizontal(n, 2, false, false); return; // PHADDW
    case 0x02: horizontal(n, 4, false, false); return; // PHADDD
    case 0x03: horizontal(n, 2, false, true); return; // PHADDSW
    case 0x05: horizontal(n, 2, true, false); return; // PHSUBW
    case 0x06: horizontal(n, 4, true, false); return; // PHSUBD
    case 0x07: horizontal(n, 2, true, true); return; // PHSUBSW
    case 0x04: // PMADDUBSW: unsigned bytes of D times signed bytes of S, pairs summed with saturation
      for (let k = 0; k < nw; k++) dsw[k] = sat16s(db[2 * k]! * ssb[2 * k]! + db[2 * k + 1]! * ssb[2 * k + 1]!);
      return;
    case 0x08: for (let k = 0; k < n; k++) dsb[k] = ssb[k]! < 0 ? -dsb[k]! : ssb[k] === 0 ? 0 : dsb[k]!; return;
    case 0x09: for (let k = 0; k < nw; k++) dsw[k] = ssw[k]! < 0 ? -dsw[k]! : ssw[k] === 0 ? 0 : dsw[k]!; return;
    case 0x0a: for (let k = 0; k < nd; k++) dd[k] = sd[k]! < 0 ? -dd[k]! : sd[k] === 0 ? 0 : dd[k]!; return;
    case 0x0b: // PMULHRSW: bits 30..15 of the product, rounded
      for (let k = 0; k < nw; k++) dsw[k] = (((dsw[k]! * ssw[k]!) >> 14) + 1) >> 1;
      return;
    case 0x1c: for (let k = 0; k < n; k++) db[k] = Math.abs(ssb[k]!); return;
    case 0x1d: for (let k = 0; k < nw; k++) dsw[k] = Math.abs(ssw[k]!); return;
    case 0x1e: for (let k = 0; k < nd; k++) dd[k] = Math.abs(sd[k]!); return;
    default:
      throw new Error(`ssse3Op: 0F 38 ${op.toString(16)} is not an SSSE3 lane operation (a dispatch bug)`);
  }
}

/** PALIGNR: D ← bytes imm..imm+n-1 of the 2n-byte concatenation D:S (S low), zeros past its end. */
export function palignr(imm: number, n: number): void {
  const db = D.b;
  const sb = S.b;
  const tb = T.b;
  for (let k = 0; k < n; k++) {
    const j = imm + k;
    tb[k] = j < n ? sb[j]! : j < 2 * n ? db[j - n]! : 0;
  }
  for (let k = 0; k < n; k++) db[k] = tb[k]!;
}
