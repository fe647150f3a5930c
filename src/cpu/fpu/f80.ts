/**
 * x87 80-bit extended precision ↔ binary64 conversion. Extended values are three 32-bit
 * fields: mantissa low, mantissa high (bit 31 = explicit integer bit), sign/exponent (16 bits).
 * double → extended is exact; extended → double rounds to nearest-even (denormal results
 * included), keeps infinities and NaN payloads (truncated, quieted only if the payload would vanish).
 */
import { bitLen } from './softfloat.js';

const buf = new ArrayBuffer(8);
const f64 = new Float64Array(buf);
const u32 = new Uint32Array(buf);

/** Output of `doubleToExt`: mantissa low/high and sign|exponent. */
export const ext = { lo: 0, hi: 0, se: 0 };

/** Converts a double given as bits (lo, hi) to extended, into `ext`. */
export function doubleBitsToExt(lo: number, hi: number): void {
  lo >>>= 0;
  hi >>>= 0;
  const sign = hi & 0x80000000 ? 0x8000 : 0;
  const dexp = (hi >>> 20) & 0x7ff;
  const fhi = hi & 0xfffff;
  if (dexp === 0x7ff) {
    ext.hi = (0x80000000 | (fhi << 11) | (lo >>> 21)) >>> 0;
    ext.lo = (lo << 11) >>> 0;
    ext.se = sign | 0x7fff;
    return;
  }
  if (dexp === 0) {
    if (fhi === 0 && lo === 0) {
      ext.hi = 0;
      ext.lo = 0;
      ext.se = sign;
      return;
    }
    // denormal: value = frac × 2^-1074; normalize so bit 63 is set
    const frac = (BigInt(fhi) << 32n) | BigInt(lo);
    const msb = bitLen(frac) - 1;
    const m = frac << BigInt(63 - msb);
    ext.hi = Number(m >> 32n) >>> 0;
    ext.lo = Number(m & 0xffffffffn) >>> 0;
    ext.se = sign | (msb - 1074 + 16383);
    return;
  }
  ext.hi = (0x80000000 | (fhi << 11) | (lo >>> 21)) >>> 0;
  ext.lo = (lo << 11) >>> 0;
  ext.se = sign | (dexp - 1023 + 16383);
}

export function doubleToExt(v: number): void {
  f64[0] = v;
  doubleBitsToExt(u32[0]!, u32[1]!);
}

/** Output of `extToDoubleBits`: the double's bits. */
export const dbl = { lo: 0, hi: 0 };

/** Extended → double bits (round to nearest even). */
export function extToDoubleBits(lo: number, hi: number, se: number): void {
  lo >>>= 0;
  hi >>>= 0;
  const sign = se & 0x8000 ? 0x80000000 : 0;
  const e = se & 0x7fff;
  if (e === 0x7fff) {
    if ((hi & 0x7fffffff) === 0 && lo === 0) {
      dbl.hi = (sign | 0x7ff00000) >>> 0;
      dbl.lo = 0;
      return;
    }
    let fhi = (hi >>> 11) & 0xfffff;
    const flo = (((hi & 0x7ff) << 21) | (lo >>> 11)) >>> 0;
    if (fhi === 0 && flo === 0) fhi = 0x80000;
    dbl.hi = (sign | 0x7ff00000 | fhi) >>> 0;
    dbl.lo = flo;
    return;
  }
  if (hi === 0 && lo === 0) {
    dbl.hi = sign >>> 0;
    dbl.lo = 0;
    return;
  }
  const unbiased = (e === 0 ? 1 : e) - 16383;
  if (unbiased > -1000 && unbiased < 1000) {
    // the sum rounds once (nearest even); the power-of-two scaling is exact in this range
    const m = hi * 4294967296 + lo;
    f64[0] = m * 2 ** (unbiased - 63);
    if (sign) f64[0] = -f64[0];
    dbl.lo = u32[0]!;
    dbl.hi = u32[1]!;
    return;
  }
  // far exponents: exact rounding with BigInt
  const mant = (BigInt(hi) << 32n) | BigInt(lo);
  const L = bitLen(mant);
  const E = unbiased - 63 + L - 1; // exponent of the leading bit
  if (E > 1023) {
    dbl.hi = (sign | 0x7ff00000) >>> 0;
    dbl.lo = 0;
    return;
  }
  const lsb = Math.max(E - 52, -1074);
  const sh = lsb - (unbiased - 63);
  let q: bigint;
  if (sh <= 0) q = mant << BigInt(-sh);
  else {
    const bs = BigInt(sh);
    q = mant >> bs;
    const rem = mant - (q << bs);
    const half = 1n << (bs - 1n);
    if (rem > half || (rem === half && (q & 1n) === 1n)) q += 1n;
  }
  // q < 2^53; denormal if q < 2^52 at lsb -1074; a carry to 2^53 bumps the exponent
  let bits: bigint;
  if (lsb === -1074 && q < 1n << 52n) bits = q;
  else {
    let le = lsb;
    if (q >= 1n << 53n) {
      q >>= 1n;
      le++;
    }
    const biased = le + 52 + 1023;
    bits = biased >= 0x7ff ? 0x7ffn << 52n : (BigInt(biased) << 52n) | (q & ((1n << 52n) - 1n));
  }
  dbl.hi = (sign | Number(bits >> 32n)) >>> 0;
  dbl.lo = Number(bits & 0xffffffffn) >>> 0;
}

export function extToDouble(lo: number, hi: number, se: number): number {
  extToDoubleBits(lo, hi, se);
  u32[0] = dbl.lo;
  u32[1] = dbl.hi;
  return f64[0]!;
}
