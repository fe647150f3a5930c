/**
 * Lane generators shared by the SSE oracle tests: floating-point lanes drawn from special values
 * (signed zeros, infinities, quiet and signalling NaNs, denormals, extremes) and random numbers,
 * structured integer lanes, and MXCSR values with every exception masked.
 */
import type { Rng } from './oracle.js';

export const F32_SPECIAL = [
  0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001,
  0x7fa00000, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x4f000000, 0xcf000000, 0x5f000000,
  0x3effffff, 0x3f000000, 0x3fc00000, 0x40200000, 0x4b000001,
];
export const F64_SPECIAL = [
  0x0000000000000000n, 0x8000000000000000n, 0x3ff0000000000000n, 0xbff0000000000000n, 0x7ff0000000000000n,
  0xfff0000000000000n, 0x7ff8000000000000n, 0xfff8000000000000n, 0x7ff0000000000001n, 0x7ff4000000000000n,
  0x0000000000000001n, 0x800fffffffffffffn, 0x0010000000000000n, 0x7fefffffffffffffn, 0x41e0000000000000n,
  0xc1e0000000000000n, 0x43e0000000000000n, 0xc3e0000000000000n, 0x3fe0000000000000n, 0x3ff8000000000000n,
  0x4004000000000000n, 0x3fdfffffffffffffn, 0x4330000000000001n, 0x47efffffe0000000n,
];

export function f32Lane(rng: Rng): number {
  const k = rng.int(10);
  if (k < 4) return rng.pick(F32_SPECIAL);
  if (k < 8) {
    // a "normal-looking" number: random sign, exponent around 1, random mantissa
    const exp = 127 + rng.int(40) - 20;
    return ((rng.bool() ? 0x80000000 : 0) | (exp << 23) | (rng.u32() & 0x7fffff)) >>> 0;
  }
  return rng.u32();
}

export function f64Lane(rng: Rng): bigint {
  const k = rng.int(10);
  if (k < 4) return rng.pick(F64_SPECIAL);
  if (k < 8) {
    const exp = BigInt(1023 + rng.int(80) - 40);
    return (rng.bool() ? 1n << 63n : 0n) | (exp << 52n) | (rng.u64() & ((1n << 52n) - 1n));
  }
  return rng.u64();
}

export function putLanes(buf: Uint8Array, off: number, rng: Rng, kind: 'ps' | 'pd' | 'int'): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (kind === 'ps') for (let i = 0; i < 4; i++) dv.setUint32(off + 4 * i, f32Lane(rng), true);
  else if (kind === 'pd') for (let i = 0; i < 2; i++) dv.setBigUint64(off + 8 * i, f64Lane(rng), true);
  else if (rng.bool(0.3)) {
    // structured integers: lanes of boundary values
    const w = rng.pick([1, 2, 4, 8]);
    for (let i = 0; i < 16; i += w) {
      const v = rng.value(8 * w);
      for (let k = 0; k < w; k++) buf[off + i + k] = Number((v >> BigInt(8 * k)) & 0xffn);
    }
  }
}

/** MXCSR with all exceptions masked, random rounding mode and random sticky flags. */
export function randomMxcsr(rng: Rng, ftzDaz: boolean): number {
  let m = 0x1f80 | (rng.int(4) << 13);
  if (rng.bool(0.3)) m |= rng.u32() & 0x3f;
  if (ftzDaz) m |= (rng.bool() ? 0x8000 : 0) | (rng.bool() ? 0x40 : 0);
  return m;
}
