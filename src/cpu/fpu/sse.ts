/**
 * The 0F-map SIMD opcodes: MMX (no prefix, MMX registers), SSE/SSE2 (XMM; 66/F2/F3 select
 * the form). This file decodes them and holds data movement, shuffles and the integer forms
 * (lane arithmetic in sse-int.ts); floating point and conversions are in sse-fp.ts, the 0F AE
 * group (FXSAVE/FXRSTOR/LDMXCSR/STMXCSR) in fxsave.ts and xsave.ts (XSAVE/XRSTOR/XSAVEOPT), the
 * SSE3 forms of the 0F map in sse3.ts, and the 0F 38 / 0F 3A maps (SSSE3, SSE4.1, SSE4.2) in
 * sse-maps.ts.
 *
 * Legacy-SSE alignment: every 128-bit memory operand must be 16-byte aligned (#GP(0)) except
 * MOVUPS/MOVUPD/MOVDQU; scalar and 64-bit operands have no requirement.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import {
  D, S, T, checkAlign16, ea, getGpr32, getX, loadSrcScalar, loadSrcX, needSse, readMem, setGpr32, setGpr64, setX,
  ud, writeMem,
} from './common.js';
import { group15 } from './fxsave.js';
import { xsaveGroup } from './xsave.js';
import { emms, getMmx, loadSrcMmx, mmxEnter, setMmx } from './mmx.js';
import { OP_ADD, OP_DIV, OP_MUL, OP_SUB } from './softfloat.js';
import {
  FP_MAX, FP_MIN, FP_RCP, FP_RSQRT, FP_SQRT, comis, cvt2A, cvt5A, cvt5B, cvtE6, cvtToInt, fpArith, fpCmp,
} from './sse-fp.js';
import { byteShift, intOp, isIntBinary, shift } from './sse-int.js';
import { sse0F38, sse0F3A } from './sse-maps.js';
import { sse3 } from './sse3.js';

export function handles0F(op: number): boolean {
  return (op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x7f && op !== 0x78 &&
    op !== 0x79 && op !== 0x7a && op !== 0x7b) || op === 0xae || (op >= 0xc2 && op <= 0xc6) || (op >= 0xd0 && op <= 0xfe);
}

// ---- integer MMX/SSE2 ----------------------------------------------------------------------------

function intBinary(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  if (i.prefix === 0x66) {
    needSse(cpu, mem);
    loadSrcX(cpu, mem, i, true);
    getX(cpu, i.reg, D.d);
    intOp(op, 16);
    setX(cpu, i.reg, D.d);
  } else if (i.prefix === 0) {
    if (op === 0x6c || op === 0x6d) ud(mem); // PUNPCK*QDQ: XMM only
    loadSrcMmx(cpu, mem, i);
    mmxEnter(cpu);
    getMmx(cpu, i.reg & 7, D.d, 0);
    intOp(op, 8);
    setMmx(cpu, i.reg & 7, D.d[0]!, D.d[1]!);
  } else {
    ud(mem);
  }
}

/** 70: PSHUFW / PSHUFD / PSHUFHW / PSHUFLW. */
function pshuf(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const imm = i.imm8;
  const pfx = i.prefix;
  if (pfx === 0) {
    loadSrcMmx(cpu, mem, i);
    mmxEnter(cpu);
    for (let k = 0; k < 4; k++) T.w[k] = S.w[(imm >> (2 * k)) & 3]!;
    setMmx(cpu, i.reg & 7, T.d[0]!, T.d[1]!);
    return;
  }
  needSse(cpu, mem);
  loadSrcX(cpu, mem, i, true);
  if (pfx === 0x66) {
    for (let k = 0; k < 4; k++) T.d[k] = S.d[(imm >> (2 * k)) & 3]!;
  } else if (pfx === 0xf3) {
    T.d[0] = S.d[0]!;
    T.d[1] = S.d[1]!;
    for (let k = 0; k < 4; k++) T.w[4 + k] = S.w[4 + ((imm >> (2 * k)) & 3)]!;
  } else {
    T.d[2] = S.d[2]!;
    T.d[3] = S.d[3]!;
    for (let k = 0; k < 4; k++) T.w[k] = S.w[(imm >> (2 * k)) & 3]!;
  }
  setX(cpu, i.reg, T.d);
}

/** 71/72/73: shift-by-immediate groups on the rm register. */
function shiftImm(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  const op = i.opcode;
  const sub = i.reg & 7;
  const c = i.imm8;
  const xmmForm = i.prefix === 0x66;
  if (!xmmForm && i.prefix !== 0) ud(mem);
  const e = op === 0x71 ? 2 : op === 0x72 ? 4 : 8;
  let kind: number;
  if (sub === 2) kind = 1;
  else if (sub === 4 && op !== 0x73) kind = 2;
  else if (sub === 6) kind = 0;
  else if (op === 0x73 && xmmForm && (sub === 3 || sub === 7)) kind = sub === 7 ? 3 : 4;
  else return ud(mem);
  if (xmmForm) {
    needSse(cpu, mem);
    getX(cpu, i.rm, D.d);
    if (kind >= 3) byteShift(kind === 3, c);
    else shift(kind, e, c, 16);
    setX(cpu, i.rm, D.d);
  } else {
    mmxEnter(cpu);
    getMmx(cpu, i.rm & 7, D.d, 0);
    shift(kind, e, c, 8);
    setMmx(cpu, i.rm & 7, D.d[0]!, D.d[1]!);
  }
}

// ---- moves ----------------------------------------------------------------------------------------

/** 10/11 and 28/29: MOVUPS/MOVUPD/MOVSS/MOVSD, MOVAPS/MOVAPD (load form when !store). */
function movPacked(cpu: CpuState, mem: SimdMemory, i: SimdInsn, store: boolean, aligned: boolean): void {
  const pfx = i.prefix;
  if (pfx === 0xf3 || pfx === 0xf2) {
    if (aligned) ud(mem);
    const n = pfx === 0xf3 ? 4 : 8;
    const x = cpu.xmm;
    const r = i.reg << 2;
    if (i.mod === 3) {
      const [dst, src] = store ? [i.rm << 2, r] : [r, i.rm << 2];
      x[dst] = x[src]!;
      if (n === 8) x[dst + 1] = x[src + 1]!;
    } else if (store) {
      writeMem(mem, i, n, x, r);
    } else {
      readMem(mem, i, n, S.d);
      setX(cpu, i.reg, S.d);
    }
    return;
  }
  if (store) {
    if (i.mod === 3) {
      getX(cpu, i.reg, T.d);
      setX(cpu, i.rm, T.d);
    } else {
      if (aligned) checkAlign16(mem, i);
      writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
    }
  } else {
    loadSrcX(cpu, mem, i, aligned);
    setX(cpu, i.reg, S.d);
  }
}

/** 12/13/16/17: MOVLPS/MOVLPD/MOVHLPS (12,13) and MOVHPS/MOVHPD/MOVLHPS (16,17). */
function movHalf(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem); // F2/F3 12 and F3 16 are SSE3's (sse3.ts)
  const x = cpu.xmm;
  const r = i.reg << 2;
  const high = op >= 0x16 ? 2 : 0;
  if (op === 0x13 || op === 0x17) { // store
    if (i.mod === 3) ud(mem);
    writeMem(mem, i, 8, x, r + high);
    return;
  }
  if (i.mod === 3) {
    if (i.prefix === 0x66) ud(mem);
    const s = i.rm << 2;
    if (op === 0x12) { // MOVHLPS: low ← src high
      x[r] = x[s + 2]!;
      x[r + 1] = x[s + 3]!;
    } else { // MOVLHPS: high ← src low
      x[r + 2] = x[s]!;
      x[r + 3] = x[s + 1]!;
    }
    return;
  }
  const lo = mem.read32(ea(i, 0));
  const hi = mem.read32(ea(i, 4));
  x[r + high] = lo;
  x[r + high + 1] = hi;
}

function unpckFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  const d = D.d;
  const s = S.d;
  const t = T.d;
  const high = i.opcode === 0x15;
  if (i.prefix === 0) {
    const o = high ? 2 : 0;
    t[0] = d[o]!; t[1] = s[o]!; t[2] = d[o + 1]!; t[3] = s[o + 1]!;
  } else {
    const o = high ? 2 : 0;
    t[0] = d[o]!; t[1] = d[o + 1]!; t[2] = s[o]!; t[3] = s[o + 1]!;
  }
  setX(cpu, i.reg, t);
}

function logicFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  const d = D.d;
  const s = S.d;
  for (let k = 0; k < 4; k++) {
    switch (i.opcode) {
      case 0x54: d[k] = d[k]! & s[k]!; break;
      case 0x55: d[k] = ~d[k]! & s[k]!; break;
      case 0x56: d[k] = d[k]! | s[k]!; break;
      default: d[k] = d[k]! ^ s[k]!; break;
    }
  }
  setX(cpu, i.reg, d);
}

function shufFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.prefix !== 0 && i.prefix !== 0x66) ud(mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  const d = D.d;
  const s = S.d;
  const t = T.d;
  const imm = i.imm8;
  if (i.prefix === 0) {
    t[0] = d[imm & 3]!;
    t[1] = d[(imm >> 2) & 3]!;
    t[2] = s[(imm >> 4) & 3]!;
    t[3] = s[(imm >> 6) & 3]!;
  } else {
    const a = imm & 1 ? 2 : 0;
    const b = imm & 2 ? 2 : 0;
    t[0] = d[a]!; t[1] = d[a + 1]!; t[2] = s[b]!; t[3] = s[b + 1]!;
  }
  setX(cpu, i.reg, t);
}

/** 6E: MOVD/MOVQ mm/xmm, r/m32/64. */
function movdToVec(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  let lo: number;
  let hi = 0;
  if (i.mod === 3) {
    lo = cpu.gpr[2 * i.rm]!;
    if (i.rexW) hi = cpu.gpr[2 * i.rm + 1]!;
  } else {
    lo = mem.read32(ea(i, 0));
    if (i.rexW) hi = mem.read32(ea(i, 4));
  }
  if (i.prefix === 0x66) {
    needSse(cpu, mem);
    const x = cpu.xmm;
    const r = i.reg << 2;
    x[r] = lo; x[r + 1] = hi; x[r + 2] = 0; x[r + 3] = 0;
  } else if (i.prefix === 0) {
    mmxEnter(cpu);
    setMmx(cpu, i.reg & 7, lo, hi);
  } else ud(mem);
}

/** 7E: MOVD/MOVQ r/m, mm/xmm; F3 7E: MOVQ xmm, xmm/m64. */
function movdFromVec(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  if (pfx === 0xf3) {
    needSse(cpu, mem);
    loadSrcScalar(cpu, mem, i, 8);
    const x = cpu.xmm;
    const r = i.reg << 2;
    x[r] = S.d[0]!; x[r + 1] = S.d[1]!; x[r + 2] = 0; x[r + 3] = 0;
    return;
  }
  if (pfx === 0x66) {
    needSse(cpu, mem);
    getX(cpu, i.reg, T.d);
  } else if (pfx === 0) {
    getMmx(cpu, i.reg & 7, T.d, 0);
  } else ud(mem);
  if (i.mod === 3) {
    if (i.rexW) setGpr64(cpu, i.rm, T.d[0]!, T.d[1]!);
    else setGpr32(cpu, i.rm, T.d[0]!);
  } else {
    writeMem(mem, i, i.rexW ? 8 : 4, T.d);
  }
  if (pfx === 0) mmxEnter(cpu);
}

/** 6F / 7F: MOVQ mm (0), MOVDQA (66), MOVDQU (F3). */
function movdq(cpu: CpuState, mem: SimdMemory, i: SimdInsn, store: boolean): void {
  const pfx = i.prefix;
  if (pfx === 0) {
    if (store) {
      getMmx(cpu, i.reg & 7, T.d, 0);
      if (i.mod === 3) {
        mmxEnter(cpu);
        setMmx(cpu, i.rm & 7, T.d[0]!, T.d[1]!);
      } else {
        writeMem(mem, i, 8, T.d);
        mmxEnter(cpu);
      }
    } else {
      loadSrcMmx(cpu, mem, i);
      mmxEnter(cpu);
      setMmx(cpu, i.reg & 7, S.d[0]!, S.d[1]!);
    }
    return;
  }
  if (pfx === 0xf2) ud(mem);
  needSse(cpu, mem);
  const aligned = pfx === 0x66;
  if (store) {
    if (i.mod === 3) {
      getX(cpu, i.reg, T.d);
      setX(cpu, i.rm, T.d);
    } else {
      if (aligned) checkAlign16(mem, i);
      writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
    }
  } else {
    loadSrcX(cpu, mem, i, aligned);
    setX(cpu, i.reg, S.d);
  }
}

/** D6: MOVQ xmm/m64, xmm (66); MOVQ2DQ (F3); MOVDQ2Q (F2). */
function opD6(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const x = cpu.xmm;
  const r = i.reg << 2;
  switch (i.prefix) {
    case 0x66:
      if (i.mod === 3) {
        const d = i.rm << 2;
        x[d] = x[r]!; x[d + 1] = x[r + 1]!; x[d + 2] = 0; x[d + 3] = 0;
      } else writeMem(mem, i, 8, x, r);
      return;
    case 0xf3: // MOVQ2DQ xmm, mm
      if (i.mod !== 3) ud(mem);
      getMmx(cpu, i.rm & 7, T.d, 0);
      mmxEnter(cpu);
      x[r] = T.d[0]!; x[r + 1] = T.d[1]!; x[r + 2] = 0; x[r + 3] = 0;
      return;
    case 0xf2: { // MOVDQ2Q mm, xmm
      if (i.mod !== 3) ud(mem);
      const s = i.rm << 2;
      mmxEnter(cpu);
      setMmx(cpu, i.reg & 7, x[s]!, x[s + 1]!);
      return;
    }
    default: ud(mem);
  }
}

function pmovmskb(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  let m = 0;
  if (i.prefix === 0x66) {
    const b = cpu.xmmU8;
    const o = i.rm << 4;
    for (let k = 0; k < 16; k++) m |= (b[o + k]! >> 7) << k;
  } else if (i.prefix === 0) {
    getMmx(cpu, i.rm & 7, T.d, 0);
    mmxEnter(cpu);
    for (let k = 0; k < 8; k++) m |= (T.b[k]! >> 7) << k;
  } else ud(mem);
  setGpr32(cpu, i.reg, m);
}

function movmskFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  const x = cpu.xmm;
  const o = i.rm << 2;
  let m: number;
  if (i.prefix === 0) m = (x[o]! >>> 31) | ((x[o + 1]! >>> 31) << 1) | ((x[o + 2]! >>> 31) << 2) | ((x[o + 3]! >>> 31) << 3);
  else if (i.prefix === 0x66) m = (x[o + 1]! >>> 31) | ((x[o + 3]! >>> 31) << 1);
  else return ud(mem);
  setGpr32(cpu, i.reg, m);
}

function pinsrw(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const v = i.mod === 3 ? cpu.gpr[2 * i.rm]! & 0xffff : mem.read16(ea(i, 0));
  if (i.prefix === 0x66) {
    needSse(cpu, mem);
    getX(cpu, i.reg, D.d);
    D.w[i.imm8 & 7] = v;
    setX(cpu, i.reg, D.d);
  } else if (i.prefix === 0) {
    getMmx(cpu, i.reg & 7, D.d, 0);
    mmxEnter(cpu);
    D.w[i.imm8 & 3] = v;
    setMmx(cpu, i.reg & 7, D.d[0]!, D.d[1]!);
  } else ud(mem);
}

function pextrw(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  let v: number;
  if (i.prefix === 0x66) {
    getX(cpu, i.rm, T.d);
    v = T.w[i.imm8 & 7]!;
  } else if (i.prefix === 0) {
    getMmx(cpu, i.rm & 7, T.d, 0);
    mmxEnter(cpu);
    v = T.w[i.imm8 & 3]!;
  } else return ud(mem);
  setGpr32(cpu, i.reg, v);
}

/** F7: MASKMOVQ / MASKMOVDQU — byte-masked store to DS:rDI. */
function maskmov(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.mod !== 3) ud(mem);
  const n = i.prefix === 0x66 ? 16 : 8;
  if (n === 16) {
    getX(cpu, i.reg, D.d);
    getX(cpu, i.rm, S.d);
  } else if (i.prefix === 0) {
    getMmx(cpu, i.reg & 7, D.d, 0);
    getMmx(cpu, i.rm & 7, S.d, 0);
    mmxEnter(cpu);
  } else ud(mem);
  // implicit destination DS:rDI (address-size override not visible here: 64/32-bit by mode)
  const rdi = i.long ? cpu.gpr[15]! * 4294967296 + (cpu.gpr[14]! >>> 0) : cpu.segBase[3]! + (cpu.gpr[14]! >>> 0);
  for (let k = 0; k < n; k++) {
    if (S.b[k]! & 0x80) {
      const a = rdi + k;
      mem.write8(i.long ? a : a >>> 0, D.b[k]!);
    }
  }
}

// ---- dispatch ----------------------------------------------------------------------------------

export function sse(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  if (i.map === 2) {
    sse0F38(cpu, mem, i);
    return;
  }
  if (i.map === 3) {
    sse0F3A(cpu, mem, i);
    return;
  }
  if (i.map !== 1) ud(mem);
  const op = i.opcode;
  if (isIntBinary(op)) {
    intBinary(cpu, mem, i);
    return;
  }
  const pfx = i.prefix;
  // all remaining forms except the pure-MMX ones need CR4.OSFXSR
  switch (op) {
    case 0x6e: movdToVec(cpu, mem, i); return;
    case 0x7e: movdFromVec(cpu, mem, i); return;
    case 0x6f: movdq(cpu, mem, i, false); return;
    case 0x7f: movdq(cpu, mem, i, true); return;
    case 0x70: pshuf(cpu, mem, i); return;
    case 0x71: case 0x72: case 0x73: shiftImm(cpu, mem, i); return;
    case 0x77:
      if (pfx !== 0) ud(mem);
      emms(cpu);
      return;
    case 0xd7: pmovmskb(cpu, mem, i); return;
    case 0xc4: pinsrw(cpu, mem, i); return;
    case 0xc5: pextrw(cpu, mem, i); return;
    case 0xe7: // MOVNTQ / MOVNTDQ
      if (i.mod === 3) ud(mem);
      if (pfx === 0) {
        getMmx(cpu, i.reg & 7, T.d, 0);
        writeMem(mem, i, 8, T.d);
        mmxEnter(cpu);
      } else if (pfx === 0x66) {
        needSse(cpu, mem);
        checkAlign16(mem, i);
        writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
      } else ud(mem);
      return;
    case 0xf7: maskmov(cpu, mem, i); return;
    case 0xc3: // MOVNTI m32/m64, r
      if (i.mod === 3 || pfx !== 0) ud(mem);
      T.d[0] = getGpr32(cpu, i.reg);
      T.d[1] = cpu.gpr[2 * i.reg + 1]!;
      writeMem(mem, i, i.rexW ? 8 : 4, T.d);
      return;
    case 0x2a: cvt2A(cpu, mem, i); return;
    case 0x2c: case 0x2d:
      needSse(cpu, mem);
      cvtToInt(cpu, mem, i);
      return;
    case 0xae:
      if ((i.reg & 7) < 4) group15(cpu, mem, i);
      else xsaveGroup(cpu, mem, i);
      return;
    default: break;
  }
  needSse(cpu, mem);
  switch (op) {
    case 0x10: movPacked(cpu, mem, i, false, false); return;
    case 0x11: movPacked(cpu, mem, i, true, false); return;
    case 0x28: movPacked(cpu, mem, i, false, true); return;
    case 0x29: movPacked(cpu, mem, i, true, true); return;
    case 0x12: case 0x16:
      if (!sse3(cpu, mem, i)) movHalf(cpu, mem, i);
      return;
    case 0x13: case 0x17: movHalf(cpu, mem, i); return;
    case 0x7c: case 0x7d: case 0xd0: case 0xf0: sse3(cpu, mem, i); return;
    case 0x14: case 0x15: unpckFp(cpu, mem, i); return;
    case 0x2b: // MOVNTPS / MOVNTPD
      if (i.mod === 3 || (pfx !== 0 && pfx !== 0x66)) ud(mem);
      checkAlign16(mem, i);
      writeMem(mem, i, 16, cpu.xmm, i.reg << 2);
      return;
    case 0x2e: case 0x2f:
      if (pfx !== 0 && pfx !== 0x66) ud(mem);
      comis(cpu, mem, i);
      return;
    case 0x50: movmskFp(cpu, mem, i); return;
    case 0x51: fpArith(cpu, mem, i, FP_SQRT); return;
    case 0x52: case 0x53:
      if (pfx !== 0 && pfx !== 0xf3) ud(mem);
      fpArith(cpu, mem, i, op === 0x52 ? FP_RSQRT : FP_RCP);
      return;
    case 0x54: case 0x55: case 0x56: case 0x57: logicFp(cpu, mem, i); return;
    case 0x58: fpArith(cpu, mem, i, OP_ADD); return;
    case 0x59: fpArith(cpu, mem, i, OP_MUL); return;
    case 0x5a: cvt5A(cpu, mem, i); return;
    case 0x5b: cvt5B(cpu, mem, i); return;
    case 0x5c: fpArith(cpu, mem, i, OP_SUB); return;
    case 0x5d: fpArith(cpu, mem, i, FP_MIN); return;
    case 0x5e: fpArith(cpu, mem, i, OP_DIV); return;
    case 0x5f: fpArith(cpu, mem, i, FP_MAX); return;
    case 0xc2: fpCmp(cpu, mem, i); return;
    case 0xc6: shufFp(cpu, mem, i); return;
    case 0xd6: opD6(cpu, mem, i); return;
    case 0xe6: cvtE6(cpu, mem, i); return;
    default: ud(mem);
  }
}
