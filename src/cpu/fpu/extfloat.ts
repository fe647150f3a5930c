/**
 * x87 80-bit extended arithmetic, exact in every rounding mode and precision control setting
 * (the significand is rounded to 24, 53 or 64 bits while the exponent keeps the extended
 * range), with x87 flags (IE DE ZE OE UE PE in the status-word bit order, shared with `sf`)
 * and C1 = "rounded up". Values are packed BigInts: sign/exponent << 64 | 64-bit significand
 * (explicit integer bit).
 *
 * x87 NaN rules (as SoftFloat's 8086 specialization): an SNaN operand raises IE; of two NaNs
 * the quiet one wins over a signalling one, else the larger significand; results are quieted.
 * Unsupported encodings (unnormals, pseudo-NaN/infinity) are invalid operands.
 */
import {
  CLS_FINITE, CLS_INF, CLS_QNAN, CLS_SNAN, CLS_ZERO, FL_DE, FL_IE, FL_OE, FL_PE, FL_UE, FL_ZE, F32, F64,
  RC_DOWN, RC_NEAREST, RC_UP, RC_ZERO, type Fmt, Unpacked, bitLen, roundPack, roundShift, sf, shiftState,
} from './softfloat.js';

const M64 = (1n << 64n) - 1n;
const INT_BIT = 1n << 63n;
const QUIET = 1n << 62n;
export const EXT_BIAS = 16383;
const EMIN = 1 - EXT_BIAS;
const LSB_MIN = EMIN - 63;
export const EXT_INDEFINITE = (0xffffn << 64n) | 0xc000000000000000n;
const EXT_INF = (0x7fffn << 64n) | INT_BIT;

/** C1 after the last rounding: the result's magnitude was rounded up. */
export const xs = { roundedUp: false };

export const XA = new Unpacked();
export const XB = new Unpacked();

export function packExt(lo: number, hi: number, se: number): bigint {
  return (BigInt(se & 0xffff) << 64n) | (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

let unsupported = false;

export function unpackExt(x: bigint, u: Unpacked): Unpacked {
  u.bits = x;
  const se = Number(x >> 64n);
  const mant = x & M64;
  u.sign = (se >> 15) & 1;
  const e = se & 0x7fff;
  u.denormal = false;
  u.mant = mant;
  u.exp = 0;
  unsupported = false;
  if (e === 0x7fff) {
    if (!(mant & INT_BIT)) {
      u.cls = CLS_SNAN;
      u.bits = EXT_INDEFINITE & ~(QUIET);
      unsupported = true;
    } else {
      const frac = mant & ~INT_BIT;
      u.cls = frac === 0n ? CLS_INF : frac & QUIET ? CLS_QNAN : CLS_SNAN;
    }
  } else if (e === 0) {
    if (mant === 0n) u.cls = CLS_ZERO;
    else {
      u.cls = CLS_FINITE;
      u.denormal = true;
      u.exp = LSB_MIN;
    }
  } else if (!(mant & INT_BIT)) {
    u.cls = CLS_SNAN; // unnormal: invalid operand, result is the indefinite
    u.bits = EXT_INDEFINITE & ~QUIET;
    unsupported = true;
  } else {
    u.cls = CLS_FINITE;
    u.exp = e - EXT_BIAS - 63;
  }
  return u;
}

function isNaNU(u: Unpacked): boolean {
  return u.cls >= CLS_QNAN;
}

function propagate(a: Unpacked, b: Unpacked | undefined): bigint {
  const sa = a.cls === CLS_SNAN;
  const sb = b !== undefined && b.cls === CLS_SNAN;
  if (sa || sb) sf.flags |= FL_IE;
  if (b === undefined || !isNaNU(b)) return a.bits | QUIET;
  if (!isNaNU(a)) return b.bits | QUIET;
  if (sa !== sb) return (sa ? b.bits : a.bits) | QUIET;
  const ma = (a.bits & M64) | QUIET;
  const mb = (b.bits & M64) | QUIET;
  if (ma !== mb) return (ma > mb ? a.bits : b.bits) | QUIET;
  return ((a.bits >> 64n) < (b.bits >> 64n) ? a.bits : b.bits) | QUIET;
}

function invalid(): bigint {
  sf.flags |= FL_IE;
  return EXT_INDEFINITE;
}

function noteDen(a: Unpacked, b?: Unpacked): void {
  if (a.denormal || (b !== undefined && b.denormal)) sf.flags |= FL_DE;
}

function signed(sign: number): bigint {
  return sign ? 0x8000n << 64n : 0n;
}

/** Rounds sign × mant × 2^exp to precision p (24/53/64) in the extended exponent range. */
export function roundPackExt(sign: number, mant: bigint, exp: number, p: number): bigint {
  xs.roundedUp = false;
  const sb = signed(sign);
  if (mant === 0n) return sb;
  const L = bitLen(mant);
  const E = exp + L - 1;
  let tiny = false;
  if (E < EMIN - 1) tiny = true;
  else if (E === EMIN - 1) {
    shiftState.inexact = false;
    tiny = bitLen(roundShift(mant, L - p, sign)) <= p;
  }
  shiftState.inexact = false;
  const lsb = Math.max(E - p + 1, LSB_MIN);
  const sh = lsb - exp;
  const q = roundShift(mant, sh, sign);
  const inexact = shiftState.inexact;
  shiftState.inexact = false;
  if (inexact) {
    xs.roundedUp = (q << BigInt(sh)) > mant;
    sf.flags |= FL_PE;
    if (tiny) sf.flags |= FL_UE;
  }
  if (q === 0n) return sb;
  const ql = bitLen(q);
  const e2 = lsb + ql - 1;
  const biased = e2 + EXT_BIAS;
  if (biased >= 0x7fff) {
    sf.flags |= FL_OE | FL_PE;
    const toInf = sf.rc === RC_NEAREST || (sf.rc === RC_UP && sign === 0) || (sf.rc === RC_DOWN && sign !== 0);
    xs.roundedUp = toInf;
    if (toInf) return sb | EXT_INF;
    const maxMant = ((1n << BigInt(p)) - 1n) << BigInt(64 - p);
    return sb | (0x7ffen << 64n) | maxMant;
  }
  if (biased <= 0) return sb | (q << BigInt(lsb - LSB_MIN));
  return sb | (BigInt(biased) << 64n) | (q << BigInt(64 - ql));
}

export const X_ADD = 0;
export const X_SUB = 1;
export const X_MUL = 2;
export const X_DIV = 3;

/** a op b at precision p. */
export function arithExt(op: number, aBits: bigint, bBits: bigint, p: number): bigint {
  const a = unpackExt(aBits, XA);
  const b = unpackExt(bBits, XB);
  if (isNaNU(a) || isNaNU(b)) return propagate(a, b);
  const bSign = op === X_SUB ? b.sign ^ 1 : b.sign;
  switch (op) {
    case X_ADD: case X_SUB: {
      if (a.cls === CLS_INF || b.cls === CLS_INF) {
        if (a.cls === CLS_INF && b.cls === CLS_INF && a.sign !== bSign) return invalid();
        noteDen(a, b);
        return signed(a.cls === CLS_INF ? a.sign : bSign) | EXT_INF;
      }
      noteDen(a, b);
      if (a.cls === CLS_ZERO && b.cls === CLS_ZERO) {
        return signed(a.sign === bSign ? a.sign : sf.rc === RC_DOWN ? 1 : 0);
      }
      if (a.cls === CLS_ZERO) return roundPackExt(bSign, b.mant, b.exp, p);
      if (b.cls === CLS_ZERO) return roundPackExt(a.sign, a.mant, a.exp, p);
      const e = Math.min(a.exp, b.exp);
      const ma = a.mant << BigInt(a.exp - e);
      const mb = b.mant << BigInt(b.exp - e);
      const sum = (a.sign ? -ma : ma) + (bSign ? -mb : mb);
      if (sum === 0n) return signed(sf.rc === RC_DOWN ? 1 : 0);
      return sum < 0n ? roundPackExt(1, -sum, e, p) : roundPackExt(0, sum, e, p);
    }
    case X_MUL: {
      const s = a.sign ^ b.sign;
      if (a.cls === CLS_INF || b.cls === CLS_INF) {
        if (a.cls === CLS_ZERO || b.cls === CLS_ZERO) return invalid();
        noteDen(a, b);
        return signed(s) | EXT_INF;
      }
      noteDen(a, b);
      if (a.cls === CLS_ZERO || b.cls === CLS_ZERO) return signed(s);
      return roundPackExt(s, a.mant * b.mant, a.exp + b.exp, p);
    }
    default: {
      const s = a.sign ^ b.sign;
      if (a.cls === CLS_INF) {
        if (b.cls === CLS_INF) return invalid();
        noteDen(a, b);
        return signed(s) | EXT_INF;
      }
      if (b.cls === CLS_INF) {
        noteDen(a, b);
        return signed(s);
      }
      if (b.cls === CLS_ZERO) {
        if (a.cls === CLS_ZERO) return invalid();
        noteDen(a, b);
        sf.flags |= FL_ZE;
        return signed(s) | EXT_INF;
      }
      noteDen(a, b);
      if (a.cls === CLS_ZERO) return signed(s);
      const k = Math.max(0, bitLen(b.mant) - bitLen(a.mant) + 64 + 3);
      const num = a.mant << BigInt(k);
      let q = num / b.mant;
      const r = num - q * b.mant;
      q = (q << 1n) | (r !== 0n ? 1n : 0n);
      return roundPackExt(s, q, a.exp - b.exp - k - 1, p);
    }
  }
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  const approx = Number(n);
  let x = Number.isFinite(approx) ? BigInt(Math.ceil(Math.sqrt(approx))) + 16n : 1n << BigInt((bitLen(n) >> 1) + 1);
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) break;
    x = y;
  }
  while (x * x > n) x -= 1n;
  while ((x + 1n) * (x + 1n) <= n) x += 1n;
  return x;
}

export function sqrtExt(aBits: bigint, p: number): bigint {
  const a = unpackExt(aBits, XA);
  if (isNaNU(a)) return propagate(a, undefined);
  if (a.cls === CLS_ZERO) return aBits;
  if (a.sign) return invalid();
  noteDen(a);
  if (a.cls === CLS_INF) return aBits;
  let sh = Math.max(0, 2 * 64 + 6 - bitLen(a.mant));
  if ((a.exp - sh) & 1) sh++;
  const m = a.mant << BigInt(sh);
  let r = isqrt(m);
  const rem = m - r * r;
  r = (r << 1n) | (rem !== 0n ? 1n : 0n);
  return roundPackExt(0, r, (a.exp - sh) / 2 - 1, p);
}

/** -1, 0, 1 or 2 (unordered). */
export function compareExt(aBits: bigint, bBits: bigint, signalQNaN: boolean): number {
  const a = unpackExt(aBits, XA);
  const b = unpackExt(bBits, XB);
  if (isNaNU(a) || isNaNU(b)) {
    if (signalQNaN || a.cls === CLS_SNAN || b.cls === CLS_SNAN) sf.flags |= FL_IE;
    return 2;
  }
  noteDen(a, b);
  const va = value(a);
  const vb = value(b);
  return va < vb ? -1 : va > vb ? 1 : 0;
}

/** Exact signed value as a BigInt scaled by 2^-LSB_MIN (infinities as ± a huge sentinel). */
function value(u: Unpacked): bigint {
  if (u.cls === CLS_ZERO) return 0n;
  const big = 1n << 40000n;
  if (u.cls === CLS_INF) return u.sign ? -big : big;
  const v = u.mant << BigInt(u.exp - LSB_MIN);
  return u.sign ? -v : v;
}

/** binary32/binary64 bits → extended (exact; IE for an SNaN, DE for a denormal). */
export function fromFloat(bits: bigint, f: Fmt): bigint {
  const sbit = bits & f.signBit ? 1 : 0;
  const e = Number((bits >> f.fracBits) & BigInt(f.maxE));
  const frac = bits & f.fracMask;
  const sb = signed(sbit);
  if (e === f.maxE) {
    if (frac === 0n) return sb | EXT_INF;
    if (!(frac & f.quietBit)) sf.flags |= FL_IE;
    return sb | (0x7fffn << 64n) | INT_BIT | QUIET | (frac << (63n - f.fracBits));
  }
  if (e === 0) {
    if (frac === 0n) return sb;
    sf.flags |= FL_DE;
    return roundPackExt(sbit, frac, f.lsbMin, 64);
  }
  return roundPackExt(sbit, frac | (1n << f.fracBits), e - f.bias - (f.p - 1), 64);
}

/** Extended → binary32/binary64 per sf.rc, with flags. */
export function toFloat(x: bigint, f: Fmt): bigint {
  const a = unpackExt(x, XA);
  xs.roundedUp = false;
  if (isNaNU(a)) {
    if (a.cls === CLS_SNAN) sf.flags |= FL_IE;
    if (unsupported) return f.defaultNaN;
    const frac = ((a.mant & ~INT_BIT) >> (63n - f.fracBits)) | f.quietBit;
    return (a.sign ? f.signBit : 0n) | f.inf | frac;
  }
  const sb = a.sign ? f.signBit : 0n;
  if (a.cls === CLS_ZERO) return sb;
  if (a.cls === CLS_INF) return sb | f.inf;
  noteDen(a);
  const before = sf.flags;
  sf.flags = 0;
  const r = roundPack(a.sign, a.mant, a.exp, f);
  const fl = sf.flags;
  sf.flags |= before;
  if (fl & FL_PE) xs.roundedUp = rrGreater(r, f, a);
  return r;
}

/** |r| > |a| for a finite extended a and a binary32/64 result r. */
function rrGreater(r: bigint, f: Fmt, a: Unpacked): boolean {
  const e = Number((r >> f.fracBits) & BigInt(f.maxE));
  if (e === f.maxE) return true;
  const frac = r & f.fracMask;
  const m = e === 0 ? frac : frac | (1n << f.fracBits);
  const ex = e === 0 ? f.lsbMin : e - f.bias - (f.p - 1);
  const lo = Math.min(ex, a.exp);
  return m << BigInt(ex - lo) > a.mant << BigInt(a.exp - lo);
}

/** Extended → signed integer of `width` bits; undefined means invalid (caller stores the indefinite). */
export function toIntExt(x: bigint, width: number, truncate: boolean): bigint | undefined {
  const a = unpackExt(x, XA);
  xs.roundedUp = false;
  if (isNaNU(a) || a.cls === CLS_INF) {
    sf.flags |= FL_IE;
    return undefined;
  }
  if (a.cls === CLS_ZERO) return 0n;
  noteDen(a);
  let q: bigint;
  let lost = false;
  if (a.exp >= 0) {
    if (a.exp + bitLen(a.mant) > width + 1) {
      sf.flags |= FL_IE;
      return undefined;
    }
    q = a.mant << BigInt(a.exp);
  } else {
    const saveRc = sf.rc;
    if (truncate) sf.rc = RC_ZERO;
    shiftState.inexact = false;
    q = roundShift(a.mant, -a.exp, a.sign);
    sf.rc = saveRc;
    lost = shiftState.inexact;
    shiftState.inexact = false;
    if (lost) xs.roundedUp = q << BigInt(-a.exp) > a.mant;
  }
  const v = a.sign ? -q : q;
  const lim = 1n << BigInt(width - 1);
  if (v < -lim || v > lim - 1n) {
    sf.flags |= FL_IE;
    return undefined;
  }
  if (lost) sf.flags |= FL_PE;
  return v;
}

/** Signed integer → extended (exact). */
export function fromIntExt(v: bigint): bigint {
  if (v === 0n) return 0n;
  return v < 0n ? roundPackExt(1, -v, 0, 64) : roundPackExt(0, v, 0, 64);
}

/** FRNDINT: round to an integral value per sf.rc. */
export function roundIntExt(x: bigint): bigint {
  const a = unpackExt(x, XA);
  xs.roundedUp = false;
  if (isNaNU(a)) return propagate(a, undefined);
  if (a.cls !== CLS_FINITE) return x;
  noteDen(a);
  if (a.exp >= 0) return x;
  shiftState.inexact = false;
  const q = roundShift(a.mant, -a.exp, a.sign);
  const lost = shiftState.inexact;
  shiftState.inexact = false;
  if (lost) {
    sf.flags |= FL_PE;
    xs.roundedUp = q << BigInt(-a.exp) > a.mant;
  }
  if (q === 0n) return signed(a.sign);
  return roundPackExt(a.sign, q, 0, 64);
}

/** FSCALE: a × 2^trunc(b). */
export function scaleExt(aBits: bigint, bBits: bigint, p: number): bigint {
  const a = unpackExt(aBits, XA);
  const b = unpackExt(bBits, XB);
  if (isNaNU(a) || isNaNU(b)) return propagate(a, b);
  if (b.cls === CLS_INF) {
    if (b.sign && a.cls === CLS_INF) return invalid();
    if (!b.sign && a.cls === CLS_ZERO) return invalid();
    noteDen(a);
    if (a.cls === CLS_ZERO || a.cls === CLS_INF) return aBits;
    return b.sign ? signed(a.sign) : signed(a.sign) | EXT_INF;
  }
  noteDen(a, b);
  if (a.cls !== CLS_FINITE) return aBits;
  let n = 0;
  if (b.cls === CLS_FINITE) {
    if (b.exp >= 0 || bitLen(b.mant) + b.exp > 20) n = 1 << 20;
    else n = Number(b.mant >> BigInt(-b.exp));
    if (b.sign) n = -n;
  }
  return roundPackExt(a.sign, a.mant, a.exp + n, p);
}

/** Partial remainder (FPREM truncating, FPREM1 round-to-nearest). Result in `rem`. */
export const rem = { value: 0n, q: 0, complete: true };

export function premExt(aBits: bigint, bBits: bigint, ieee: boolean): void {
  const a = unpackExt(aBits, XA);
  const b = unpackExt(bBits, XB);
  rem.q = 0;
  rem.complete = true;
  if (isNaNU(a) || isNaNU(b)) {
    rem.value = propagate(a, b);
    return;
  }
  if (a.cls === CLS_INF || b.cls === CLS_ZERO) {
    rem.value = invalid();
    return;
  }
  noteDen(a, b);
  if (a.cls === CLS_ZERO || b.cls === CLS_INF) {
    rem.value = aBits;
    return;
  }
  const ea = a.exp + bitLen(a.mant);
  const eb = b.exp + bitLen(b.mant);
  const d = ea - eb;
  const lo = Math.min(a.exp, b.exp);
  let ma = a.mant << BigInt(a.exp - lo);
  const mb = b.mant << BigInt(b.exp - lo);
  if (d >= 64) {
    // partial reduction by 2^(d - N), N = 32 + ((d - 64) mod 32) (the AMD-documented choice)
    const n = d - (32 + ((d - 64) % 32));
    const mbs = mb << BigInt(n);
    const q = ma / mbs;
    ma -= q * mbs;
    rem.complete = false;
    rem.value = ma === 0n ? signed(a.sign) : roundPackExt(a.sign, ma, lo, 64);
    return;
  }
  let q = ma / mb;
  let r = ma - q * mb;
  if (ieee) {
    const twice = r * 2n;
    if (twice > mb || (twice === mb && (q & 1n) === 1n)) {
      r -= mb;
      q += 1n;
    }
  }
  rem.q = Number(q & 7n);
  let sign = a.sign;
  if (r < 0n) {
    r = -r;
    sign ^= 1;
  }
  rem.value = r === 0n ? signed(a.sign) : roundPackExt(sign, r, lo, 64);
}

export { F32, F64, FL_IE, FL_ZE, FL_PE, FL_DE, FL_OE, FL_UE };
