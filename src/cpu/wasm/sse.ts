/**
 * SSE/SSE2 integer and move instructions in translated blocks, as WebAssembly SIMD: what the C
 * library's string and memory routines run (memset/memcpy/strlen/memchr: MOVAPS/MOVDQA/MOVDQU,
 * PXOR, PCMPEQB, PMOVMSKB, PMINUB, the unpacks and shuffles), and the XMM forms of the simple
 * SSSE3/SSE4 instructions (PSHUFB, PALIGNR, PABSx, PCMPEQQ, PCMPGTQ, PMINxx, PMAXxx, PMULLD,
 * PACKUSDW, PTEST, the immediate blends), which the library's SSSE3/SSE4 variants of those
 * routines use — only while their feature is on (features.ts). Every other SSE form, and any form while SSE is disabled (CR4.OSFXSR clear,
 * CR0.TS or CR0.EM set), runs in the interpreter.
 *
 * The XMM registers live in the arena (A_XMM): each instruction loads its operands from there and
 * stores its result back, so the interpreter always sees them. A 128-bit memory operand is two
 * 64-bit accesses through the inline TLB; the aligned forms raise #GP(0) on a misaligned address
 * first, as the hardware does.
 */
import type { D } from '../translate/decode.js';
import { fallbackKey } from '../translate/block.js';
import { features } from '../features.js';
import { F_EAGER } from '../core/consts.js';
import { A_SSE_OK, A_XMM } from './arena.js';
import { F_FAULT, F_STEP, isStack, load, produce, rt, setReg, store, loadRm, storeRm, type WGen } from './codegen.js';
import { Op, T, V } from './encoder.js';

/** Byte lanes of i8x16.shuffle(dst, src) for the unpack-low/high instructions (66 0F 60..62, 68..6A, 6C, 6D). */
function unpackLanes(elem: number, high: boolean): number[] {
  const lanes: number[] = [];
  const start = high ? 8 : 0;
  for (let i = 0; i < 8 / elem; i++) {
    for (let b = 0; b < elem; b++) lanes.push(start + i * elem + b);
    for (let b = 0; b < elem; b++) lanes.push(16 + start + i * elem + b);
  }
  return lanes;
}

/** Two-operand integer ops of the 66 0F map: xmm = op(xmm, xmm/m128). */
const BINARY = new Map<number, V | ((g: WGen) => void)>([
  [0xef, V.v128_xor], [0xeb, V.v128_or], [0xdb, V.v128_and],
  [0x74, V.i8x16_eq], [0x75, V.i16x8_eq], [0x76, V.i32x4_eq],
  [0x64, V.i8x16_gt_s], [0x65, V.i16x8_gt_s], [0x66, V.i32x4_gt_s],
  [0xda, V.i8x16_min_u], [0xde, V.i8x16_max_u], [0xea, V.i16x8_min_s], [0xee, V.i16x8_max_s],
  [0xf8, V.i8x16_sub], [0xf9, V.i16x8_sub], [0xfa, V.i32x4_sub], [0xfb, V.i64x2_sub],
  [0xfc, V.i8x16_add], [0xfd, V.i16x8_add], [0xfe, V.i32x4_add], [0xd4, V.i64x2_add],
  [0xd8, V.i8x16_sub_sat_u], [0xd9, V.i16x8_sub_sat_u], [0xdc, V.i8x16_add_sat_u], [0xdd, V.i16x8_add_sat_u],
  [0xe8, V.i8x16_sub_sat_s], [0xe9, V.i16x8_sub_sat_s], [0xec, V.i8x16_add_sat_s], [0xed, V.i16x8_add_sat_s],
  [0xe0, V.i8x16_avgr_u], [0xe3, V.i16x8_avgr_u], [0xd5, V.i16x8_mul],
  // PANDN: dst = ~dst & src = andnot(src, dst)
  [0xdf, (g) => swapAndnot(g)],
  [0x60, unpack(1, false)], [0x61, unpack(2, false)], [0x62, unpack(4, false)], [0x6c, unpack(8, false)],
  [0x68, unpack(1, true)], [0x69, unpack(2, true)], [0x6a, unpack(4, true)], [0x6d, unpack(8, true)],
]);

/** The same bitwise ops of the 0F map without a prefix (…PS) or with 66 (…PD): XORPS, ANDPS, ANDNPS, ORPS. */
const BITWISE_PS = new Map<number, V | ((g: WGen) => void)>([
  [0x57, V.v128_xor], [0x54, V.v128_and], [0x56, V.v128_or], [0x55, (g) => swapAndnot(g)],
]);

/** Two-operand ops of the 66 0F 38 map (SSSE3 .. SSE4.2): xmm = op(xmm, xmm/m128), with their feature. */
type Feature = 'ssse3' | 'sse41' | 'sse42';
const BINARY_38 = new Map<number, [V | ((g: WGen) => void), Feature]>([
  [0x00, [(g) => pshufb(g), 'ssse3']],
  [0x29, [V.i64x2_eq, 'sse41']], [0x37, [V.i64x2_gt_s, 'sse42']], [0x2b, [V.i16x8_narrow_i32x4_u, 'sse41']],
  [0x38, [V.i8x16_min_s, 'sse41']], [0x39, [V.i32x4_min_s, 'sse41']], [0x3a, [V.i16x8_min_u, 'sse41']], [0x3b, [V.i32x4_min_u, 'sse41']],
  [0x3c, [V.i8x16_max_s, 'sse41']], [0x3d, [V.i32x4_max_s, 'sse41']], [0x3e, [V.i16x8_max_u, 'sse41']], [0x3f, [V.i32x4_max_u, 'sse41']],
  [0x40, [V.i32x4_mul, 'sse41']],
]);

/** PABSB/W/D (66 0F 38 1C-1E): xmm = abs(xmm/m128); abs(-128) stays -128, as on x86. */
const ABS_38 = new Map<number, V>([[0x1c, V.i8x16_abs], [0x1d, V.i16x8_abs], [0x1e, V.i32x4_abs]]);

/** Stack: dst, src -> PSHUFB: a selector byte with bit 7 set gives 0, else dst's byte (selector & 15). */
function pshufb(g: WGen): void {
  // swizzle gives 0 for a lane index past 15: keep bit 7 (then >= 128) and the low four bits
  g.c.i32(0x8f).simd(V.i8x16_splat).simd(V.v128_and).simd(V.i8x16_swizzle);
}

function unpack(elem: number, high: boolean): (g: WGen) => void {
  const lanes = unpackLanes(elem, high);
  return (g) => g.c.shuffle(lanes);
}

/** Stack: dst, src -> ~dst & src. */
function swapAndnot(g: WGen): void {
  const f = g.c;
  const t = f.local(T.V128);
  f.set(t); // src
  const u = f.local(T.V128);
  f.set(u); // dst
  f.get(t).get(u).simd(V.v128_andnot);
}

/** Could d be one of the forms genSse handles (0F map, with SSE's prefixes)? A cheap pre-filter. */
export function isSseCandidate(d: D): boolean {
  const b = d.op & 0xff;
  return (d.opo || d.rep !== 0 || b === 0x28 || b === 0x29 || b === 0x10 || b === 0x11 || (b >= 0x54 && b <= 0x57)) &&
    !(b >= 0x40 && b <= 0x4f) && !(b >= 0x80 && b <= 0x9f) && b !== 0xaf && b !== 0xb6 && b !== 0xb7 && b !== 0xbe && b !== 0xbf;
}

/**
 * Generate d inline when it is one of the SSE forms handled here: 'cont', or false to leave it
 * to the interpreter (`k` counts the instructions of the block before d, `next` is d's end).
 */
export function genSse(g: WGen, d: D, L: number, k: number, next: number): 'cont' | false {
  const op = d.op;
  if (op >= 0x200) return d.opo && d.rep === 0 && !d.lock ? genSse4(g, d, L, k, next) : false;
  if (op < 0x100 || (d.opo && d.rep !== 0) || d.lock) return false;
  const b = op & 0xff;
  const mem = d.mod !== 3;
  const p66 = d.opo;
  const pf3 = d.rep === 0xf3;
  const pf2 = d.rep === 0xf2;
  const none = !p66 && d.rep === 0;
  const xr = d.reg; // XMM register of the reg field (REX.R included)
  switch (b) {
    // ---- 128-bit moves ----
    case 0x28: case 0x10: // MOVAPS/MOVAPD, MOVUPS/MOVUPD xmm, xmm/m128
      if (!(none || p66)) return false;
      enter(g, d, k, next);
      moveX(g, d, L, xr, b === 0x28);
      return 'cont';
    case 0x6f: // MOVDQA (66) / MOVDQU (F3) xmm, xmm/m128
      if (!(p66 || pf3)) return false;
      enter(g, d, k, next);
      moveX(g, d, L, xr, p66);
      return 'cont';
    case 0x29: case 0x11: case 0x7f: { // MOVAPS/MOVUPS (none/66) and MOVDQA/MOVDQU (66/F3) xmm/m128, xmm
      if (b === 0x7f ? !(p66 || pf3) : !(none || p66)) return false;
      enter(g, d, k, next);
      const aligned = b === 0x29 || (b === 0x7f && p66);
      if (!mem) setX(g, d.rm, () => getX(g, xr));
      else storeX(g, d, L, xr, aligned);
      return 'cont';
    }
    // ---- 32/64-bit moves between XMM and general registers or memory ----
    case 0x6e: { // MOVD/MOVQ xmm, r/m32/64
      if (!p66) return false;
      enter(g, d, k, next);
      const v = loadRm(g, d, d.rexW ? 8 : 4, L);
      setXQ(g, xr, v);
      return 'cont';
    }
    case 0x7e: {
      if (p66) { // MOVD/MOVQ r/m32/64, xmm
        enter(g, d, k, next);
        const v = g.tmp64();
        g.st().mem(Op.i64_load, xaddr(g, xr)).set(v);
        storeRm(g, d, d.rexW ? 8 : 4, L, v);
        return 'cont';
      }
      if (!pf3) return false;
      // MOVQ xmm, xmm/m64 (upper half cleared)
      enter(g, d, k, next);
      setXQ(g, xr, q64(g, d, L));
      return 'cont';
    }
    case 0xd6: { // MOVQ xmm/m64, xmm
      if (!p66) return false;
      enter(g, d, k, next);
      const v = g.tmp64();
      g.st().mem(Op.i64_load, xaddr(g, xr)).set(v);
      if (mem) store(g, 8, L, v, d.rip, isStack(d));
      else setXQ(g, d.rm, v);
      return 'cont';
    }
    // ---- shuffles, masks, shifts by an immediate ----
    case 0x70: { // PSHUFD (66), PSHUFHW (F3), PSHUFLW (F2) xmm, xmm/m128, imm8
      if (!(p66 || pf3 || pf2)) return false;
      const lanes = pshufLanes(p66 ? 'd' : pf3 ? 'hw' : 'lw', d.imm & 0xff);
      enter(g, d, k, next);
      const s = g.c.local(T.V128);
      srcX(g, d, L, true);
      g.c.set(s);
      setX(g, xr, () => g.c.get(s).get(s).shuffle(lanes));
      return 'cont';
    }
    case 0xd7: { // PMOVMSKB r32, xmm
      if (!p66 || mem) return false;
      enter(g, d, k, next);
      const v = g.tmp64();
      g.st().simdMem(V.v128_load, xaddr(g, d.rm)).simd(V.i8x16_bitmask).op(Op.i64_extend_i32_u).set(v);
      setReg(g, d, xr, 4, v);
      return 'cont';
    }
    case 0x71: case 0x72: case 0x73:
      if (!p66 || mem) return false;
      return shiftImm(g, d, k, next) ? 'cont' : false;
    default:
      break;
  }
  const bin = p66 ? BINARY.get(b) : undefined;
  const bit = none || p66 ? BITWISE_PS.get(b) : undefined;
  const how = bin ?? bit;
  if (how === undefined) return false;
  enter(g, d, k, next);
  const s = g.c.local(T.V128);
  srcX(g, d, L, true);
  g.c.set(s);
  setX(g, xr, () => {
    getX(g, xr);
    g.c.get(s);
    if (typeof how === 'function') how(g);
    else g.c.simd(how);
  });
  return 'cont';
}

/** The 66 0F 38 / 66 0F 3A forms handled inline (see the module comment), or false. */
function genSse4(g: WGen, d: D, L: number, k: number, next: number): 'cont' | false {
  const b = d.op & 0xff;
  const xr = d.reg;
  const f = g.c;
  if (d.op >= 0x300) {
    if (d.op === 0x363) return pcmpistriBytes(g, d, L, k, next);
    const lanes = d.op === 0x30f ? (features.ssse3 ? palignrLanes(d.imm & 0xff) : undefined)
      : b >= 0x0c && b <= 0x0e && features.sse41 ? blendLanes(b, d.imm & 0xff) : undefined;
    if (lanes === undefined) return false;
    // lanes index shuffle(dst, src) for the blends, shuffle(src, dst) for PALIGNR (zeros: a third operand)
    enter(g, d, k, next);
    const s = f.local(T.V128);
    srcX(g, d, L, true);
    f.set(s);
    setX(g, xr, () => {
      if (d.op !== 0x30f) {
        getX(g, xr);
        f.get(s);
      } else if ((d.imm & 0xff) < 16) {
        f.get(s);
        getX(g, xr);
      } else {
        getX(g, xr);
        f.i64(0, 0).simd(V.i64x2_splat);
      }
      f.shuffle(lanes);
    });
    return 'cont';
  }
  if (b === 0x17) { // PTEST: ZF = (dst AND src) = 0, CF = (src AND NOT dst) = 0, the others cleared
    if (!features.sse41) return false;
    enter(g, d, k, next);
    const s = f.local(T.V128);
    srcX(g, d, L, true);
    f.set(s);
    const fl = g.tmp64();
    getX(g, xr);
    f.get(s).simd(V.v128_and).simd(V.v128_any_true).op(Op.i32_eqz).i32(6).op(Op.i32_shl);
    f.get(s);
    getX(g, xr);
    f.simd(V.v128_andnot).simd(V.v128_any_true).op(Op.i32_eqz).op(Op.i32_or).op(Op.i64_extend_i32_u).set(fl);
    produce(g, { kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 }, true);
    return 'cont';
  }
  const abs = ABS_38.get(b);
  const bin = BINARY_38.get(b);
  if (abs !== undefined ? !features.ssse3 : bin === undefined || !features[bin[1]]) return false;
  enter(g, d, k, next);
  const s = f.local(T.V128);
  srcX(g, d, L, true);
  f.set(s);
  setX(g, xr, () => {
    if (abs !== undefined) {
      f.get(s).simd(abs);
      return;
    }
    getX(g, xr);
    f.get(s);
    const how = bin![0];
    if (typeof how === 'function') how(g);
    else f.simd(how);
  });
  return 'cont';
}

/**
 * PCMPISTRI on bytes with the "equal any" or "equal each" aggregation, what the C library's
 * strcspn, strspn, strpbrk (equal any: bit j of the result is set when xmm2/m128's byte j comes
 * before its first zero byte and equals one of xmm1's bytes before xmm1's first zero byte) and
 * strcmp (equal each: byte j of both is valid and equal, or of neither) run; then the polarity,
 * ECX = the lowest (or, imm8 bit 6, highest) set bit's index or 16, and the flags as the
 * interpreter sets them (fpu/pcmpstr.ts). Word elements, ranges and "equal ordered" are
 * interpreted.
 */
function pcmpistriBytes(g: WGen, d: D, L: number, k: number, next: number): 'cont' | false {
  const imm = d.imm & 0xff;
  const agg = (imm >> 2) & 3;
  if (!features.sse42 || (imm & 1) !== 0 || agg === 1 || agg === 3) return false;
  enter(g, d, k, next);
  const f = g.c;
  const b = f.local(T.V128);
  srcX(g, d, L, false);
  f.set(b);
  const a = f.local(T.V128);
  getX(g, d.reg);
  f.set(a);
  // the implicit lengths: the index of the first zero byte, 16 when there is none
  const len = (v: number, out: number): void => {
    f.get(v).i64(0, 0).simd(V.i64x2_splat).simd(V.i8x16_eq).simd(V.i8x16_bitmask);
    f.i32(0x10000).op(Op.i32_or).op(Op.i32_ctz).set(out);
  };
  const la = f.local(T.I32);
  const lb = f.local(T.I32);
  len(a, la);
  len(b, lb);
  const r = f.local(T.I32);
  const valid = (n: number): void => void f.i32(1).get(n).op(Op.i32_shl).i32(1).op(Op.i32_sub);
  if (agg === 0) {
    // equal any: r = bytes of b equal to byte kk of a, for each kk below la
    f.i32(0).set(r);
    for (let kk = 0; kk < 16; kk++) {
      f.get(r);
      f.get(b).get(a).get(a).shuffle(new Array<number>(16).fill(kk)).simd(V.i8x16_eq).simd(V.i8x16_bitmask);
      f.i32(kk).get(la).op(Op.i32_sub).i32(31).op(Op.i32_shr_s).op(Op.i32_and); // all ones when kk < la
      f.op(Op.i32_or).set(r);
    }
    // only b's valid bytes
    f.get(r);
    valid(lb);
    f.op(Op.i32_and);
  } else {
    // equal each: byte j matches when both are valid and equal, or both are invalid
    f.get(a).get(b).simd(V.i8x16_eq).simd(V.i8x16_bitmask);
    valid(la);
    f.op(Op.i32_and);
    valid(lb);
    f.op(Op.i32_and);
    valid(la);
    valid(lb);
    f.op(Op.i32_or).i32(0xffff).op(Op.i32_xor).op(Op.i32_or);
  }
  const pol = (imm >> 4) & 3;
  if (pol === 1) f.i32(0xffff).op(Op.i32_xor);
  else if (pol === 3) {
    valid(lb);
    f.op(Op.i32_xor);
  }
  f.set(r);
  // ECX: 16 when no bit is set
  const idx = g.tmp64();
  if (imm & 0x40) f.i32(16).i32(31).get(r).op(Op.i32_clz).op(Op.i32_sub).get(r).op(Op.i32_eqz).op(Op.select);
  else f.get(r).i32(0x10000).op(Op.i32_or).op(Op.i32_ctz);
  f.op(Op.i64_extend_i32_u).set(idx);
  setReg(g, d, 1, 4, idx);
  // CF = r != 0, ZF = lb < 16, SF = la < 16, OF = r bit 0, AF = PF = 0
  const fl = g.tmp64();
  f.get(r).op(Op.i32_eqz).op(Op.i32_eqz);
  f.get(lb).i32(16).op(Op.i32_lt_u).i32(6).op(Op.i32_shl).op(Op.i32_or);
  f.get(la).i32(16).op(Op.i32_lt_u).i32(7).op(Op.i32_shl).op(Op.i32_or);
  f.get(r).i32(1).op(Op.i32_and).i32(11).op(Op.i32_shl).op(Op.i32_or);
  f.op(Op.i64_extend_i32_u).set(fl);
  produce(g, { kind: F_EAGER, sz: 8, a: fl, b: fl, r: fl, cin: -1 }, true);
  return 'cont';
}

/**
 * Byte lanes for PALIGNR with immediate n: below 16, shuffle(src, dst) at n..n+15; from 16,
 * shuffle(dst, zero) at n-16.. (lanes past 31 read the zero vector's lane 16).
 */
export function palignrLanes(n: number): number[] {
  const lanes: number[] = [];
  const base = n < 16 ? n : n - 16;
  for (let i = 0; i < 16; i++) lanes.push(Math.min(base + i, n < 16 ? 31 : 16));
  return lanes;
}

/** Byte lanes of shuffle(dst, src) for BLENDPS (0C), BLENDPD (0D), PBLENDW (0E) with immediate imm. */
export function blendLanes(b: number, imm: number): number[] {
  const size = b === 0x0c ? 4 : b === 0x0d ? 8 : 2;
  const lanes: number[] = [];
  for (let i = 0; i < 16; i++) lanes.push((imm >> Math.floor(i / size)) & 1 ? 16 + i : i);
  return lanes;
}

/** Byte lanes for PSHUFD / PSHUFHW / PSHUFLW with immediate imm (both shuffle operands the source). */
export function pshufLanes(kind: 'd' | 'hw' | 'lw', imm: number): number[] {
  const lanes: number[] = [];
  if (kind === 'd') {
    for (let i = 0; i < 4; i++) for (let b = 0; b < 4; b++) lanes.push(((imm >> (2 * i)) & 3) * 4 + b);
    return lanes;
  }
  const base = kind === 'hw' ? 8 : 0;
  for (let i = 0; i < 8; i++) lanes.push(i); // low quadword (PSHUFHW) placeholder, fixed below
  for (let i = 8; i < 16; i++) lanes.push(i);
  for (let i = 0; i < 4; i++) {
    const w = (imm >> (2 * i)) & 3;
    lanes[base + 2 * i] = base + 2 * w;
    lanes[base + 2 * i + 1] = base + 2 * w + 1;
  }
  return lanes;
}

/** XMM register r = the xmm/m128 source. */
function moveX(g: WGen, d: D, L: number, r: number, aligned: boolean): void {
  const s = g.c.local(T.V128);
  srcX(g, d, L, aligned);
  g.c.set(s);
  setX(g, r, () => g.c.get(s));
}

/** Address of XMM register r in the arena (relative to WGen.st()). */
function xaddr(g: WGen, r: number): number {
  return g.base + A_XMM + 16 * r;
}

/** Push XMM register r (v128). */
function getX(g: WGen, r: number): void {
  g.st().simdMem(V.v128_load, xaddr(g, r));
}

/** XMM register r = the v128 that `value` pushes. */
function setX(g: WGen, r: number, value: () => void): void {
  g.st();
  value();
  g.c.simdMem(V.v128_store, xaddr(g, r));
}

/** XMM register r = zero-extended i64 local v (MOVD/MOVQ into XMM). */
function setXQ(g: WGen, r: number, v: number): void {
  g.st().get(v).mem(Op.i64_store, xaddr(g, r));
  g.st().i64(0, 0).mem(Op.i64_store, xaddr(g, r) + 8);
}

/** The 64-bit source of MOVQ xmm, xmm/m64 into a fresh i64 local. */
function q64(g: WGen, d: D, L: number): number {
  if (d.mod !== 3) return load(g, 8, L, d.rip, isStack(d));
  const v = g.tmp64();
  g.st().mem(Op.i64_load, xaddr(g, d.rm)).set(v);
  return v;
}

/** Push the xmm/m128 source operand (v128); `aligned`: a memory operand must be 16-byte aligned. */
function srcX(g: WGen, d: D, L: number, aligned: boolean): void {
  if (d.mod === 3) {
    getX(g, d.rm);
    return;
  }
  if (aligned) alignCheck(g, d, L);
  const stack = isStack(d);
  const lo = load(g, 8, L, d.rip, stack);
  const L8 = g.tmp64();
  g.c.get(L).i64(8, 0).op(Op.i64_add).set(L8);
  const hi = load(g, 8, L8, d.rip, stack);
  g.c.get(lo).simd(V.i64x2_splat).get(hi).lane(V.i64x2_replace_lane, 1);
}

/** Store XMM register r to the m128 at L. */
function storeX(g: WGen, d: D, L: number, r: number, aligned: boolean): void {
  if (aligned) alignCheck(g, d, L);
  const f = g.c;
  const stack = isStack(d);
  const lo = g.tmp64();
  const hi = g.tmp64();
  g.st().mem(Op.i64_load, xaddr(g, r)).set(lo);
  g.st().mem(Op.i64_load, xaddr(g, r) + 8).set(hi);
  store(g, 8, L, lo, d.rip, stack);
  const L8 = g.tmp64();
  f.get(L).i64(8, 0).op(Op.i64_add).set(L8);
  store(g, 8, L8, hi, d.rip, stack);
}

/** #GP(0) unless the address in L is 16-byte aligned (legacy SSE m128 operands). */
function alignCheck(g: WGen, d: D, L: number): void {
  const f = g.c;
  f.get(L).op(Op.i32_wrap_i64).i32(15).op(Op.i32_and);
  f.hint(0);
  g.begin(Op.if);
  g.sync();
  f.i32(13).f64(d.rip);
  rt(f, F_FAULT);
  f.op(Op.unreachable);
  g.end();
}

/**
 * Every inline SSE instruction first checks that SSE is enabled; when it is not, the
 * interpreter runs the instruction (raising #UD or #NM) and the block ends.
 */
function enter(g: WGen, d: D, k: number, next: number): void {
  const f = g.c;
  g.st().mem(Op.i32_load, g.base + A_SSE_OK).op(Op.i32_eqz);
  f.hint(0);
  g.begin(Op.if);
  g.sync();
  f.f64(d.rip).f64(next).i32(fallbackKey(d));
  rt(f, F_STEP);
  f.op(Op.drop);
  g.retK(k + 1);
  g.end();
}

/**
 * PSRLW/PSRAW/PSLLW (71), PSRLD/PSRAD/PSLLD (72), PSRLQ/PSRLDQ/PSLLQ/PSLLDQ (73) by an
 * immediate. Counts past the element width give zero (arithmetic shifts: the sign), where
 * WebAssembly would take the count modulo the width.
 */
function shiftImm(g: WGen, d: D, k: number, next: number): boolean {
  const f = g.c;
  const b = d.op & 0xff;
  const kind = d.reg & 7;
  const n = d.imm & 0xff;
  const r = d.rm;
  if (b === 0x73 && (kind === 3 || kind === 7)) {
    // PSRLDQ / PSLLDQ: whole-register byte shifts, a shuffle with a zero vector
    const lanes: number[] = [];
    for (let i = 0; i < 16; i++) {
      if (kind === 3) lanes.push(i + n < 16 ? i + n : 16);
      else lanes.push(i >= n ? i - n : 16);
    }
    enter(g, d, k, next);
    setX(g, r, () => {
      getX(g, r);
      f.i64(0, 0).simd(V.i64x2_splat).shuffle(lanes);
    });
    return true;
  }
  const width = b === 0x71 ? 16 : b === 0x72 ? 32 : 64;
  const ops: Record<number, [V, V, V | undefined]> = {
    16: [V.i16x8_shr_u, V.i16x8_shl, V.i16x8_shr_s],
    32: [V.i32x4_shr_u, V.i32x4_shl, V.i32x4_shr_s],
    64: [V.i64x2_shr_u, V.i64x2_shl, undefined],
  };
  const [srl, sll, sra] = ops[width]!;
  let vop: V | undefined;
  let count = n;
  if (kind === 2) vop = srl;
  else if (kind === 6) vop = sll;
  else if (kind === 4) {
    vop = sra;
    if (count >= width) count = width - 1;
  }
  if (vop === undefined) return false;
  enter(g, d, k, next);
  if (count >= width) {
    setX(g, r, () => f.i64(0, 0).simd(V.i64x2_splat));
    return true;
  }
  setX(g, r, () => {
    getX(g, r);
    f.i32(count).simd(vop);
  });
  return true;
}
