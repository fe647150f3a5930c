/**
 * The x87 D9 register forms (D9 C0..FF): FLD ST(i), FXCH, FNOP, FCHS FABS FTST FXAM, the
 * constant loads (FLD1 FLDL2T ... FLDZ), F2XM1 FYL2X FPTAN FPATAN FXTRACT FPREM1 FDECSTP
 * FINCSTP, and FPREM FYL2XP1 FSQRT FSINCOS FRNDINT FSCALE FSIN FCOS. FPREM/FPREM1, FXTRACT,
 * FSQRT, FRNDINT and FSCALE are exact (extfloat.ts); the transcendentals are computed in double.
 */
import type { CpuState } from '../state.js';
import type { SimdMemory } from '../simd-api.js';
import { ud } from './common.js';
import { ext } from './f80.js';
import { RC_DOWN, RC_UP, sf } from './softfloat.js';
import { compareExt, fromIntExt, premExt, rem, roundIntExt, scaleExt, sqrtExt } from './extfloat.js';
import {
  SW_C0, SW_C1, SW_C2, SW_C3, SW_CC, SW_DE, SW_IE, SW_ZE, TAG_EMPTY, begin, copyReg, end, fxch, getX, phys, pop,
  precision, push, pushValue, putX, raise, rc, regExt, setApprox, setCC, setIndefinite, setRegExt, setTop, tag, top,
  underflow,
} from './x87-stack.js';

/** Set by st() when it met an empty register; the caller checks it and raises the underflow. */
let stackFault = false;
/** ST(i) value; an empty register sets `stackFault` and gives NaN. */
function st(cpu: CpuState, i: number): number {
  const p = phys(cpu, i);
  if (tag(cpu, p) === TAG_EMPTY) {
    stackFault = true;
    return NaN;
  }
  return cpu.st[p]!;
}

// ---- transcendental helpers --------------------------------------------------------------------------

const TWO63 = 9223372036854775808;

/** ST(0) and ST(1) both present? Otherwise handles the underflow (indefinite into `dst`). */
function twoOperands(cpu: CpuState, dst: number): boolean {
  if (tag(cpu, phys(cpu, 0)) !== TAG_EMPTY && tag(cpu, phys(cpu, 1)) !== TAG_EMPTY) return true;
  if (underflow(cpu)) setIndefinite(cpu, dst);
  return false;
}

function fprem(cpu: CpuState, ieee: boolean): void {
  const pa = phys(cpu, 0);
  if (!twoOperands(cpu, pa)) return;
  begin(cpu);
  premExt(getX(cpu, pa), getX(cpu, phys(cpu, 1)), ieee);
  if (!end(cpu)) return;
  putX(cpu, pa, rem.value);
  let cc = 0;
  if (!rem.complete) cc |= SW_C2;
  else {
    if (rem.q & 1) cc |= SW_C1;
    if (rem.q & 2) cc |= SW_C3;
    if (rem.q & 4) cc |= SW_C0;
  }
  cpu.fpuStatus = (cpu.fpuStatus & ~SW_CC) | cc;
}

/** FXTRACT results. */
const xt = { exp: 0n, sig: 0n };

function fxtract(x: bigint): void {
  const se = Number(x >> 64n);
  const e = se & 0x7fff;
  let mant = x & 0xffffffffffffffffn;
  const sign = BigInt(se & 0x8000) << 64n;
  if (e === 0x7fff) {
    if ((mant & 0x7fffffffffffffffn) === 0n) { // infinity
      xt.exp = 0x7fffn << 64n | (1n << 63n);
      xt.sig = x;
      return;
    }
    if (!(mant & (1n << 62n))) sf.flags |= SW_IE;
    xt.exp = x | (1n << 62n);
    xt.sig = xt.exp;
    return;
  }
  if (mant === 0n) {
    sf.flags |= SW_ZE;
    xt.exp = (0xffffn << 64n) | (1n << 63n); // -infinity
    xt.sig = x;
    return;
  }
  let ue = (e === 0 ? 1 : e) - 16383;
  if (e === 0) sf.flags |= SW_DE;
  while (!(mant & (1n << 63n))) {
    mant <<= 1n;
    ue--;
  }
  xt.exp = fromIntExt(BigInt(ue));
  xt.sig = sign | (0x3fffn << 64n) | mant;
}

// ---- the D9 register forms ---------------------------------------------------------------------------

/** Loads of the FLD constant group (D9 E8..EE): exact 80-bit images (round-to-nearest values). */
const CONSTS: readonly (readonly [number, number, number])[] = [
  [0, 0x80000000, 0x3fff], // 1
  [0xcd1b8afe, 0xd49a784b, 0x4000], // log2(10)
  [0x5c17f0bc, 0xb8aa3b29, 0x3fff], // log2(e)
  [0x2168c235, 0xc90fdaa2, 0x4000], // pi
  [0xfbcff799, 0x9a209a84, 0x3ffd], // log10(2)
  [0xd1cf79ac, 0xb17217f7, 0x3ffe], // ln(2)
  [0, 0, 0], // +0
];

export function d9Reg(cpu: CpuState, mem: SimdMemory, reg: number, r: number): void {
  switch (reg) {
    case 0: { // FLD ST(i)
      const src = phys(cpu, r);
      if (tag(cpu, src) === TAG_EMPTY) {
        if (!underflow(cpu)) return;
        const p = push(cpu);
        if (p >= 0) setIndefinite(cpu, p);
        return;
      }
      const p = push(cpu);
      if (p >= 0) copyReg(cpu, p, src);
      return;
    }
    case 1: return fxch(cpu, r);
    case 2:
      if (r !== 0) ud(mem);
      return; // FNOP
    case 3: { // FSTP1 (undocumented alias of FSTP ST(i))
      const p0 = phys(cpu, 0);
      if (tag(cpu, p0) !== TAG_EMPTY) copyReg(cpu, phys(cpu, r), p0);
      pop(cpu);
      return;
    }
    case 4: return d9E0(cpu, mem, r);
    case 5: { // constants
      if (r === 7) return ud(mem);
      const c = CONSTS[r]!;
      let lo = c[0];
      const mode = rc(cpu);
      // log2(e), pi, log10(2), ln(2) are rounded up in nearest mode; log2(10) down
      if (r >= 2 && r <= 5 && (mode === RC_DOWN || mode === 3)) lo -= 1;
      if (r === 1 && mode === RC_UP) lo += 1;
      const p = push(cpu);
      if (p >= 0) setRegExt(cpu, p, lo >>> 0, c[1], c[2]);
      return;
    }
    case 6: return d9F0(cpu, mem, r);
    default: return d9F8(cpu, mem, r);
  }
}

/** D9 E0..E7: FCHS FABS FTST FXAM. */
function d9E0(cpu: CpuState, mem: SimdMemory, r: number): void {
  const p = phys(cpu, 0);
  const empty = tag(cpu, p) === TAG_EMPTY;
  switch (r) {
    case 0: case 1: { // FCHS / FABS: flip/clear the sign on the exact image
      if (empty) {
        if (underflow(cpu)) setIndefinite(cpu, p);
        return;
      }
      regExt(cpu, p);
      const se = r === 0 ? ext.se ^ 0x8000 : ext.se & 0x7fff;
      setRegExt(cpu, p, ext.lo, ext.hi, se);
      cpu.fpuStatus &= ~SW_C1;
      return;
    }
    case 4: { // FTST
      if (empty) {
        underflow(cpu);
        setCC(cpu, 2);
        return;
      }
      begin(cpu);
      const res = compareExt(getX(cpu, p), 0n, true);
      if (!end(cpu)) return;
      setCC(cpu, res);
      return;
    }
    case 5: { // FXAM
      let cc: number;
      regExt(cpu, p);
      const sign = ext.se & 0x8000 ? SW_C1 : 0;
      if (empty) cc = SW_C3 | SW_C0;
      else {
        const e = ext.se & 0x7fff;
        const mantZero = ext.hi === 0 && ext.lo === 0;
        if (e === 0x7fff) cc = (ext.hi & 0x7fffffff) === 0 && ext.lo === 0 ? SW_C2 | SW_C0 : SW_C0;
        else if (e === 0) cc = mantZero ? SW_C3 : SW_C3 | SW_C2;
        else cc = ext.hi & 0x80000000 ? SW_C2 : 0;
      }
      cpu.fpuStatus = (cpu.fpuStatus & ~SW_CC) | cc | sign;
      return;
    }
    default: ud(mem);
  }
}

/** ST(0) for a unary op; an empty register raises the stack underflow, stores the indefinite when it is masked, and gives undefined. */
function unaryOperand(cpu: CpuState): number | undefined {
  const p = phys(cpu, 0);
  if (tag(cpu, p) === TAG_EMPTY) {
    if (underflow(cpu)) setIndefinite(cpu, p);
    return undefined;
  }
  return cpu.st[p]!;
}

/**
 * ST(0) and ST(1) of an instruction that writes ST(1) and pops (FYL2X, FPATAN, FYL2XP1), or
 * undefined when either is empty: the stack underflow is raised, ST(1) gets the indefinite when
 * it is masked, and the stack pops.
 */
function popPairOperands(cpu: CpuState): { x: number; y: number } | undefined {
  const x = st(cpu, 0);
  const y = st(cpu, 1);
  if (!stackFault) return { x, y };
  stackFault = false;
  if (underflow(cpu)) setIndefinite(cpu, phys(cpu, 1));
  pop(cpu);
  return undefined;
}

/**
 * ST(0) for FSIN, FCOS, FSINCOS and FPTAN, or undefined when the instruction is done: an empty
 * register (underflow), |x| >= 2^63 (C2 set, operand left as it is: the caller must reduce it)
 * or an infinity (invalid operation). C2 is cleared otherwise.
 */
function trigOperand(cpu: CpuState): number | undefined {
  const x = unaryOperand(cpu);
  if (x === undefined) return undefined;
  if (Math.abs(x) >= TWO63) {
    cpu.fpuStatus |= SW_C2;
    return undefined;
  }
  cpu.fpuStatus &= ~SW_C2;
  if (!Number.isFinite(x) && x === x) {
    if (raise(cpu, SW_IE)) setIndefinite(cpu, phys(cpu, 0));
    return undefined;
  }
  return x;
}

/** D9 F0..F7: F2XM1 FYL2X FPTAN FPATAN FXTRACT FPREM1 FDECSTP FINCSTP. */
function d9F0(cpu: CpuState, _mem: SimdMemory, r: number): void {
  switch (r) {
    case 0: { // F2XM1
      const x = unaryOperand(cpu);
      if (x === undefined) return;
      setApprox(cpu, phys(cpu, 0), x !== x ? x : Math.expm1(x * Math.LN2));
      return;
    }
    case 1: case 3: { // FYL2X / FPATAN: ST1 = f(ST1, ST0), pop
      const ops = popPairOperands(cpu);
      if (ops === undefined) return;
      const { x, y } = ops;
      const p1 = phys(cpu, 1);
      let v: number;
      if (r === 3) v = Math.atan2(y, x);
      else {
        if (x === 0 && y !== 0 && Number.isFinite(y) && !raise(cpu, SW_ZE)) return;
        v = y * Math.log2(x);
        if (x === 1 && !Number.isFinite(y)) v = NaN;
        if (v !== v && !(x !== x || y !== y) && !raise(cpu, SW_IE)) return;
      }
      setApprox(cpu, p1, v);
      pop(cpu);
      return;
    }
    case 2: { // FPTAN
      const x = trigOperand(cpu);
      if (x === undefined) return;
      setApprox(cpu, phys(cpu, 0), Math.tan(x));
      pushValue(cpu, 1);
      return;
    }
    case 4: { // FXTRACT: ST0 = exponent, push significand
      const p = phys(cpu, 0);
      if (unaryOperand(cpu) === undefined) return;
      begin(cpu);
      const x = getX(cpu, p);
      fxtract(x);
      if (!end(cpu)) return;
      putX(cpu, p, xt.exp);
      const q = push(cpu);
      if (q >= 0) putX(cpu, q, xt.sig);
      return;
    }
    case 5: fprem(cpu, true); return;
    case 6: setTop(cpu, top(cpu) - 1); cpu.fpuStatus &= ~SW_C1; return; // FDECSTP
    default: setTop(cpu, top(cpu) + 1); cpu.fpuStatus &= ~SW_C1; return; // FINCSTP
  }
}

/** D9 F8..FF: FPREM FYL2XP1 FSQRT FSINCOS FRNDINT FSCALE FSIN FCOS. */
function d9F8(cpu: CpuState, _mem: SimdMemory, r: number): void {
  switch (r) {
    case 0: fprem(cpu, false); return;
    case 1: { // FYL2XP1
      const ops = popPairOperands(cpu);
      if (ops === undefined) return;
      const { x, y } = ops;
      const p1 = phys(cpu, 1);
      setApprox(cpu, p1, (y * Math.log1p(x)) / Math.LN2);
      pop(cpu);
      return;
    }
    case 2: { // FSQRT
      const p = phys(cpu, 0);
      if (unaryOperand(cpu) === undefined) return;
      begin(cpu);
      const v = sqrtExt(getX(cpu, p), precision(cpu));
      if (end(cpu)) putX(cpu, p, v);
      return;
    }
    case 3: { // FSINCOS: ST0 = sin, push cos
      const x = trigOperand(cpu);
      if (x === undefined) return;
      setApprox(cpu, phys(cpu, 0), Math.sin(x));
      pushValue(cpu, Math.cos(x));
      return;
    }
    case 4: { // FRNDINT
      const p = phys(cpu, 0);
      if (unaryOperand(cpu) === undefined) return;
      begin(cpu);
      const v = roundIntExt(getX(cpu, p));
      if (end(cpu)) putX(cpu, p, v);
      return;
    }
    case 5: { // FSCALE: ST0 × 2^trunc(ST1)
      const p = phys(cpu, 0);
      if (!twoOperands(cpu, p)) return;
      begin(cpu);
      const v = scaleExt(getX(cpu, p), getX(cpu, phys(cpu, 1)), precision(cpu));
      if (end(cpu)) putX(cpu, p, v);
      return;
    }
    default: { // FSIN / FCOS
      const x = trigOperand(cpu);
      if (x === undefined) return;
      setApprox(cpu, phys(cpu, 0), r === 6 ? Math.sin(x) : Math.cos(x));
    }
  }
}
