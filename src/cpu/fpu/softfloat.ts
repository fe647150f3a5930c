/**
 * IEEE-754 binary32/binary64 arithmetic with x86 SSE semantics, exact in every rounding mode:
 * operands are unpacked to (sign, integer significand, exponent), the exact result is formed with
 * BigInt (sticky bit for division and square root) and rounded once by `roundPack`, which also
 * produces the MXCSR exception flags (IE DE ZE OE UE PE), flush-to-zero and tininess detected
 * after rounding (as x86 does). Denormals-are-zero is applied when operands are unpacked.
 *
 * x86 NaN rules: an SNaN operand raises IE; the result is the first operand's NaN (quieted) if
 * it is a NaN, else the second's; invalid operations with no NaN operand return the default
 * "QNaN indefinite" (sign set, quiet bit set, zero payload).
 *
 * State (rounding mode, FTZ, DAZ, accumulated flags) lives in the module-level `sf` object: set it
 * before a sequence of operations and read `sf.flags` afterwards.
 */

export const FL_IE = 0x01;
export const FL_DE = 0x02;
export const FL_ZE = 0x04;
export const FL_OE = 0x08;
export const FL_UE = 0x10;
export const FL_PE = 0x20;

/** Rounding control (MXCSR.RC / x87 CW.RC encoding). */
export const RC_NEAREST = 0;
export const RC_DOWN = 1;
export const RC_UP = 2;
export const RC_ZERO = 3;

export const sf = { flags: 0, rc: 0, ftz: false, daz: false };

/** Loads rounding mode, FTZ and DAZ from an MXCSR value and clears the flag accumulator. */
export function sfFromMxcsr(mxcsr: number): void {
  sf.flags = 0;
  sf.rc = (mxcsr >> 13) & 3;
  sf.ftz = (mxcsr & 0x8000) !== 0;
  sf.daz = (mxcsr & 0x40) !== 0;
}

export interface Fmt {
  /** Significand bits including the hidden bit. */
  readonly p: number;
  readonly fracBits: bigint;
  readonly bias: number;
  /** All-ones biased exponent. */
  readonly maxE: number;
  /** Exponent of the least significant bit of a denormal. */
  readonly lsbMin: number;
  /** Unbiased exponent of the smallest normal. */
  readonly emin: number;
  readonly signBit: bigint;
  readonly fracMask: bigint;
  readonly quietBit: bigint;
  readonly defaultNaN: bigint;
  readonly maxFinite: bigint;
  readonly inf: bigint;
}

function fmt(p: number, expBits: number): Fmt {
  const bias = (1 << (expBits - 1)) - 1;
  const fracBits = BigInt(p - 1);
  const signBit = 1n << BigInt(p - 1 + expBits);
  const maxE = (1 << expBits) - 1;
  const inf = BigInt(maxE) << fracBits;
  const quietBit = 1n << (fracBits - 1n);
  return {
    p, fracBits, bias, maxE, lsbMin: 1 - bias - (p - 1), emin: 1 - bias, signBit, fracMask: (1n << fracBits) - 1n,
    quietBit, defaultNaN: signBit | inf | quietBit, maxFinite: inf - 1n, inf,
  };
}

export const F32 = fmt(24, 8);
export const F64 = fmt(53, 11);

// ---- unpacking ---------------------------------------------------------------------------------

export const CLS_ZERO = 0;
export const CLS_FINITE = 1;
export const CLS_INF = 2;
export const CLS_QNAN = 3;
export const CLS_SNAN = 4;

export class Unpacked {
  sign = 0;
  /** Exponent of the significand's least significant bit. */
  exp = 0;
  mant = 0n;
  cls = CLS_ZERO;
  denormal = false;
  bits = 0n;
}

export const UA = new Unpacked();
export const UB = new Unpacked();

/** Unpacks `bits`; applies DAZ (denormal → signed zero). Does not raise DE (see `noteDenormal`). */
export function unpack(bits: bigint, f: Fmt, u: Unpacked): Unpacked {
  u.bits = bits;
  u.sign = bits & f.signBit ? 1 : 0;
  const e = Number((bits >> f.fracBits) & BigInt(f.maxE));
  const frac = bits & f.fracMask;
  u.denormal = false;
  if (e === f.maxE) {
    u.cls = frac === 0n ? CLS_INF : frac & f.quietBit ? CLS_QNAN : CLS_SNAN;
    u.mant = frac;
    u.exp = 0;
  } else if (e === 0) {
    if (frac === 0n || sf.daz) {
      u.cls = CLS_ZERO;
      u.mant = 0n;
    } else {
      u.cls = CLS_FINITE;
      u.denormal = true;
      u.mant = frac;
      u.exp = f.lsbMin;
    }
  } else {
    u.cls = CLS_FINITE;
    u.mant = frac | (1n << f.fracBits);
    u.exp = e - f.bias - (f.p - 1);
  }
  return u;
}

export function isNaNCls(u: Unpacked): boolean {
  return u.cls >= CLS_QNAN;
}

/** NaN result of a two-operand op: IE on SNaN; first operand's NaN wins; quieted. */
export function propagateNaN(a: Unpacked, b: Unpacked | undefined, f: Fmt): bigint {
  if (a.cls === CLS_SNAN || (b !== undefined && b.cls === CLS_SNAN)) sf.flags |= FL_IE;
  const src = isNaNCls(a) ? a : b!;
  return src.bits | f.quietBit;
}

function invalid(f: Fmt): bigint {
  sf.flags |= FL_IE;
  return f.defaultNaN;
}

function noteDenormals(a: Unpacked, b?: Unpacked): void {
  if (a.denormal || (b !== undefined && b.denormal)) sf.flags |= FL_DE;
}

// ---- rounding ----------------------------------------------------------------------------------

export function bitLen(x: bigint): number {
  // x > 0
  let n = 0;
  while (x >= 0x100000000n) {
    x >>= 32n;
    n += 32;
  }
  return n + (32 - Math.clz32(Number(x)));
}

let inexact = false;

/** Whether the last `roundShift` discarded non-zero bits (cleared by the caller). */
export const shiftState = { get inexact(): boolean { return inexact; }, set inexact(v: boolean) { inexact = v; } };

/** mant >> sh rounded per sf.rc (sets `inexact`); sh <= 0 shifts left exactly. */
export function roundShift(mant: bigint, sh: number, sign: number): bigint {
  if (sh <= 0) return mant << BigInt(-sh);
  const bs = BigInt(sh);
  let q = mant >> bs;
  const rem = mant - (q << bs);
  if (rem === 0n) return q;
  inexact = true;
  switch (sf.rc) {
    case RC_NEAREST: {
      const half = 1n << (bs - 1n);
      if (rem > half || (rem === half && (q & 1n) === 1n)) q += 1n;
      break;
    }
    case RC_DOWN: if (sign) q += 1n; break;
    case RC_UP: if (!sign) q += 1n; break;
    default: break;
  }
  return q;
}

/** Rounds sign × mant × 2^exp (mant > 0, exact) to `f`; returns the encoding and raises OE/UE/PE. */
export function roundPack(sign: number, mant: bigint, exp: number, f: Fmt): bigint {
  const sbit = sign ? f.signBit : 0n;
  if (mant === 0n) return sbit;
  const p = f.p;
  const L = bitLen(mant);
  const E = exp + L - 1;
  let tiny = false;
  const saveInexact = inexact;
  if (E < f.emin - 1) tiny = true;
  else if (E === f.emin - 1) {
    const q = roundShift(mant, L - p, sign);
    tiny = bitLen(q) <= p;
  }
  inexact = false;
  const lsb = Math.max(E - p + 1, f.lsbMin);
  let q = roundShift(mant, lsb - exp, sign);
  let lsbExp = lsb;
  const wasInexact = inexact;
  inexact = saveInexact;
  if (tiny && sf.ftz) {
    sf.flags |= FL_UE | FL_PE;
    return sbit;
  }
  if (wasInexact) {
    sf.flags |= FL_PE;
    if (tiny) sf.flags |= FL_UE;
  }
  if (bitLen(q) > p) {
    q >>= 1n;
    lsbExp++;
  }
  if (q < 1n << f.fracBits) return sbit | q; // denormal (or zero after rounding)
  const biased = lsbExp + p - 1 + f.bias;
  if (biased >= f.maxE) {
    sf.flags |= FL_OE | FL_PE;
    const toInf = sf.rc === RC_NEAREST || (sf.rc === RC_UP && !sign) || (sf.rc === RC_DOWN && sign);
    return sbit | (toInf ? f.inf : f.maxFinite);
  }
  return sbit | (BigInt(biased) << f.fracBits) | (q & f.fracMask);
}

// ---- arithmetic ---------------------------------------------------------------------------------

export const OP_ADD = 0;
export const OP_SUB = 1;
export const OP_MUL = 2;
export const OP_DIV = 3;

/** a op b for OP_ADD/SUB/MUL/DIV with SSE semantics. */
export function arith(op: number, aBits: bigint, bBits: bigint, f: Fmt): bigint {
  const a = unpack(aBits, f, UA);
  const b = unpack(bBits, f, UB);
  if (isNaNCls(a) || isNaNCls(b)) return propagateNaN(a, b, f);
  const bSign = op === OP_SUB ? b.sign ^ 1 : b.sign;
  switch (op) {
    case OP_ADD:
    case OP_SUB: {
      if (a.cls === CLS_INF || b.cls === CLS_INF) {
        if (a.cls === CLS_INF && b.cls === CLS_INF && a.sign !== bSign) return invalid(f);
        noteDenormals(a, b);
        const s = a.cls === CLS_INF ? a.sign : bSign;
        return (s ? f.signBit : 0n) | f.inf;
      }
      noteDenormals(a, b);
      if (a.cls === CLS_ZERO && b.cls === CLS_ZERO) {
        const s = a.sign === bSign ? a.sign : sf.rc === RC_DOWN ? 1 : 0;
        return s ? f.signBit : 0n;
      }
      if (a.cls === CLS_ZERO) return roundPack(bSign, b.mant, b.exp, f);
      if (b.cls === CLS_ZERO) return roundPack(a.sign, a.mant, a.exp, f);
      const e = Math.min(a.exp, b.exp);
      const ma = a.mant << BigInt(a.exp - e);
      const mb = b.mant << BigInt(b.exp - e);
      const sum = (a.sign ? -ma : ma) + (bSign ? -mb : mb);
      if (sum === 0n) return sf.rc === RC_DOWN ? f.signBit : 0n;
      return sum < 0n ? roundPack(1, -sum, e, f) : roundPack(0, sum, e, f);
    }
    case OP_MUL: {
      const s = a.sign ^ b.sign;
      const sbit = s ? f.signBit : 0n;
      if (a.cls === CLS_INF || b.cls === CLS_INF) {
        if (a.cls === CLS_ZERO || b.cls === CLS_ZERO) return invalid(f);
        noteDenormals(a, b);
        return sbit | f.inf;
      }
      noteDenormals(a, b);
      if (a.cls === CLS_ZERO || b.cls === CLS_ZERO) return sbit;
      return roundPack(s, a.mant * b.mant, a.exp + b.exp, f);
    }
    default: {
      const s = a.sign ^ b.sign;
      const sbit = s ? f.signBit : 0n;
      if (a.cls === CLS_INF) {
        if (b.cls === CLS_INF) return invalid(f);
        noteDenormals(a, b);
        return sbit | f.inf;
      }
      if (b.cls === CLS_INF) {
        noteDenormals(a, b);
        return sbit;
      }
      if (b.cls === CLS_ZERO) {
        if (a.cls === CLS_ZERO) return invalid(f);
        sf.flags |= FL_ZE; // divide-by-zero takes precedence over a denormal dividend (no DE)
        return sbit | f.inf;
      }
      noteDenormals(a, b);
      if (a.cls === CLS_ZERO) return sbit;
      const k = Math.max(0, bitLen(b.mant) - bitLen(a.mant) + f.p + 3);
      const num = a.mant << BigInt(k);
      let q = num / b.mant;
      const r = num - q * b.mant;
      q = (q << 1n) | (r !== 0n ? 1n : 0n);
      return roundPack(s, q, a.exp - b.exp - k - 1, f);
    }
  }
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = BigInt(Math.ceil(Math.sqrt(Number(n)))) + 16n;
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) break;
    x = y;
  }
  while (x * x > n) x -= 1n;
  while ((x + 1n) * (x + 1n) <= n) x += 1n;
  return x;
}

export function sqrt(aBits: bigint, f: Fmt): bigint {
  const a = unpack(aBits, f, UA);
  if (isNaNCls(a)) return propagateNaN(a, undefined, f);
  if (a.cls === CLS_ZERO) return a.sign ? f.signBit : 0n;
  if (a.sign) return invalid(f);
  noteDenormals(a);
  if (a.cls === CLS_INF) return f.inf;
  let sh = Math.max(0, 2 * f.p + 6 - bitLen(a.mant));
  if ((a.exp - sh) & 1) sh++;
  const m = a.mant << BigInt(sh);
  let r = isqrt(m);
  const rem = m - r * r;
  r = (r << 1n) | (rem !== 0n ? 1n : 0n);
  return roundPack(0, r, (a.exp - sh) / 2 - 1, f);
}

/**
 * Ordered comparison: -1 (a < b), 0 (equal), 1 (a > b), 2 (unordered). `signalQNaN` raises IE
 * for quiet NaNs too (COMIS, CMP LT/LE/NLT/NLE, MIN/MAX); SNaNs always raise IE.
 */
export function compare(aBits: bigint, bBits: bigint, f: Fmt, signalQNaN: boolean): number {
  const a = unpack(aBits, f, UA);
  const b = unpack(bBits, f, UB);
  if (isNaNCls(a) || isNaNCls(b)) {
    if (signalQNaN || a.cls === CLS_SNAN || b.cls === CLS_SNAN) sf.flags |= FL_IE;
    return 2;
  }
  noteDenormals(a, b);
  const va = value(a);
  const vb = value(b);
  return va < vb ? -1 : va > vb ? 1 : 0;
}

/** Signed value of a non-NaN unpacked operand as a JS number (exact order is all that matters). */
function value(u: Unpacked): number {
  if (u.cls === CLS_ZERO) return 0;
  if (u.cls === CLS_INF) return u.sign ? -Infinity : Infinity;
  const v = Number(u.mant) * 2 ** u.exp;
  return u.sign ? -v : v;
}

// ---- conversions ---------------------------------------------------------------------------------

/** Float → float (binary32 ↔ binary64). */
export function convert(aBits: bigint, from: Fmt, to: Fmt): bigint {
  const a = unpack(aBits, from, UA);
  if (isNaNCls(a)) {
    if (a.cls === CLS_SNAN) sf.flags |= FL_IE;
    const frac = a.mant | from.quietBit;
    const shift = to.fracBits - from.fracBits;
    const nf = shift >= 0n ? frac << shift : frac >> -shift;
    return (a.sign ? to.signBit : 0n) | to.inf | nf;
  }
  const sbit = a.sign ? to.signBit : 0n;
  if (a.cls === CLS_ZERO) return sbit;
  if (a.cls === CLS_INF) return sbit | to.inf;
  noteDenormals(a);
  return roundPack(a.sign, a.mant, a.exp, to);
}

/**
 * Float → signed integer of `width` bits (32 or 64), rounding per sf.rc or truncating. NaN and
 * out-of-range give the integer indefinite (most negative value) with IE.
 */
export function toInt(aBits: bigint, f: Fmt, width: number, truncate: boolean): bigint {
  const a = unpack(aBits, f, UA);
  const indefinite = -(1n << BigInt(width - 1));
  if (isNaNCls(a) || a.cls === CLS_INF) {
    sf.flags |= FL_IE;
    return indefinite;
  }
  if (a.cls === CLS_ZERO) return 0n;
  let q: bigint;
  let lost = false;
  if (a.exp >= 0) {
    if (a.exp + bitLen(a.mant) > width + 1) {
      sf.flags |= FL_IE;
      return indefinite;
    }
    q = a.mant << BigInt(a.exp);
  } else {
    const saveRc = sf.rc;
    if (truncate) sf.rc = RC_ZERO;
    inexact = false;
    q = roundShift(a.mant, -a.exp, a.sign);
    sf.rc = saveRc;
    lost = inexact;
    inexact = false;
  }
  const v = a.sign ? -q : q;
  if (v < indefinite || v > -indefinite - 1n) {
    sf.flags |= FL_IE;
    return indefinite;
  }
  if (lost) sf.flags |= FL_PE;
  return v;
}

/**
 * Float → the integral value nearest per sf.rc, in the same format (ROUNDPS/PD/SS/SD): an SNaN
 * raises IE and is quieted; PE when the value changed (the caller may suppress it); no DE.
 */
export function roundIntegral(aBits: bigint, f: Fmt): bigint {
  const a = unpack(aBits, f, UA);
  if (isNaNCls(a)) return propagateNaN(a, undefined, f);
  if (a.cls === CLS_ZERO) return a.sign ? f.signBit : 0n;
  if (a.cls === CLS_INF || a.exp >= 0) return aBits;
  inexact = false;
  const q = roundShift(a.mant, -a.exp, a.sign);
  if (inexact) sf.flags |= FL_PE;
  inexact = false;
  if (q === 0n) return a.sign ? f.signBit : 0n;
  return roundPack(a.sign, q, 0, f);
}

/** Signed integer → float, rounded per sf.rc. */
export function fromInt(v: bigint, f: Fmt): bigint {
  if (v === 0n) return 0n;
  return v < 0n ? roundPack(1, -v, 0, f) : roundPack(0, v, 0, f);
}

// ---- bit helpers ---------------------------------------------------------------------------------

export function bits64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function bits32(v: number): bigint {
  return BigInt(v >>> 0);
}

export function lo32(b: bigint): number {
  return Number(b & 0xffffffffn) | 0;
}

export function hi32(b: bigint): number {
  return Number((b >> 32n) & 0xffffffffn) | 0;
}
