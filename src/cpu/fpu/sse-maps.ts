/**
 * The 0F 38 and 0F 3A maps (SSSE3, SSE4.1, SSE4.2): operand loading, prefix checks and
 * write-back around the lane operations of ssse3.ts, sse41.ts, sse41-fp.ts and pcmpstr.ts, plus
 * the element inserts and extracts. Whether each feature is on is checked by the core before it
 * calls the unit (core/ops/simd.ts); CRC32 (F2 0F 38 F0/F1) is the core's too.
 *
 * No prefix selects the MMX form (SSSE3 only), 66 the XMM form; any other prefix is #UD.
 * Alignment as the hardware has it: every 128-bit memory operand must be 16-byte aligned except
 * PCMPxSTRx's; the narrower ones (PMOVSX/ZX, INSERTPS, ROUNDSS/SD, PINSR*) have no requirement.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import {
  D, S, checkAlign16, ea, getX, loadSrcX, needSse, readMem, setGpr32, setGpr64, setX, ud, writeMem,
} from './common.js';
import { getMmx, loadSrcMmx, mmxEnter, setMmx } from './mmx.js';
import { pcmpstr } from './pcmpstr.js';
import {
  blendImm, blendVar, isSse41Binary, mpsadbw, phminposuw, pmovSourceBytes, pmovx, sse41Binary,
} from './sse41.js';
import { dotProduct, roundFp } from './sse41-fp.js';
import { isSsse3, palignr, ssse3Op } from './ssse3.js';

/** An SSSE3 operation (0F 38 `op`, or PALIGNR when `align`) on MMX (no prefix) or XMM (66) registers. */
function ssse3(cpu: CpuState, mem: SimdMemory, i: SimdInsn, align: boolean): void {
  if (i.prefix === 0) {
    loadSrcMmx(cpu, mem, i);
    mmxEnter(cpu);
    getMmx(cpu, i.reg & 7, D.d, 0);
    if (align) palignr(i.imm8, 8);
    else ssse3Op(i.opcode, 8);
    setMmx(cpu, i.reg & 7, D.d[0]!, D.d[1]!);
    return;
  }
  if (i.prefix !== 0x66) ud(mem);
  needSse(cpu, mem);
  loadSrcX(cpu, mem, i, true);
  getX(cpu, i.reg, D.d);
  if (align) palignr(i.imm8, 16);
  else ssse3Op(i.opcode, 16);
  setX(cpu, i.reg, D.d);
}

/** PMOVSX/PMOVZX xmm, xmm/m64|m32|m16. */
function pmov(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const n = pmovSourceBytes(i.opcode);
  if (i.mod === 3) getX(cpu, i.rm, S.d);
  else if (n === 2) S.d[0] = mem.read16(ea(i, 0));
  else readMem(mem, i, n, S.d);
  pmovx(i.opcode);
  setX(cpu, i.reg, D.d);
}

/** 0F 38 xx. */
export function sse0F38(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  if (isSsse3(op)) {
    ssse3(cpu, mem, i, false);
    return;
  }
  if (i.prefix !== 0x66) ud(mem);
  needSse(cpu, mem);
  if (isSse41Binary(op)) {
    loadSrcX(cpu, mem, i, true);
    getX(cpu, i.reg, D.d);
    sse41Binary(op);
    setX(cpu, i.reg, D.d);
    return;
  }
  switch (op) {
    case 0x10: case 0x14: case 0x15: // PBLENDVB / BLENDVPS / BLENDVPD xmm, xmm/m128, <XMM0>
      loadSrcX(cpu, mem, i, true);
      getX(cpu, i.reg, D.d);
      blendVar(op, cpu.xmm, 0);
      setX(cpu, i.reg, D.d);
      return;
    case 0x17: { // PTEST: ZF = (D AND S) = 0, CF = (NOT D AND S) = 0, the others cleared
      loadSrcX(cpu, mem, i, true);
      getX(cpu, i.reg, D.d);
      let and = 0;
      let andn = 0;
      for (let k = 0; k < 4; k++) {
        and |= D.d[k]! & S.d[k]!;
        andn |= ~D.d[k]! & S.d[k]!;
      }
      mem.setArithFlags((and === 0 ? 0x40 : 0) | (andn === 0 ? 1 : 0));
      return;
    }
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25:
    case 0x30: case 0x31: case 0x32: case 0x33: case 0x34: case 0x35:
      pmov(cpu, mem, i);
      return;
    case 0x2a: // MOVNTDQA xmm, m128
      if (i.mod === 3) ud(mem);
      checkAlign16(mem, i);
      readMem(mem, i, 16, S.d);
      setX(cpu, i.reg, S.d);
      return;
    case 0x41: // PHMINPOSUW
      loadSrcX(cpu, mem, i, true);
      phminposuw();
      setX(cpu, i.reg, D.d);
      return;
    default:
      ud(mem);
  }
}

/** PEXTRB (14), PEXTRW (15), PEXTRD/PEXTRQ (16), EXTRACTPS (17) r/m, xmm, imm8. */
function extract(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  const imm = i.imm8;
  getX(cpu, i.reg, D.d);
  const reg = i.mod === 3;
  if (op === 0x16 && i.rexW) {
    const k = 2 * (imm & 1);
    if (reg) setGpr64(cpu, i.rm, D.d[k]!, D.d[k + 1]!);
    else writeMem(mem, i, 8, D.d, k);
    return;
  }
  let v: number;
  let n: number;
  if (op === 0x14) {
    v = D.b[imm & 15]!;
    n = 1;
  } else if (op === 0x15) {
    v = D.w[imm & 7]!;
    n = 2;
  } else {
    v = D.d[imm & 3]!;
    n = 4;
  }
  if (reg) setGpr32(cpu, i.rm, v);
  else if (n === 1) mem.write8(ea(i, 0), v);
  else if (n === 2) mem.write16(ea(i, 0), v);
  else mem.write32(ea(i, 0), v);
}

/** PINSRB (20), INSERTPS (21), PINSRD/PINSRQ (22) xmm, r/m, imm8. */
function insert(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  const imm = i.imm8;
  const reg = i.mod === 3;
  const g = cpu.gpr;
  getX(cpu, i.reg, D.d);
  const d = D.d;
  if (op === 0x20) {
    D.b[imm & 15] = reg ? g[2 * i.rm]! : mem.read8(ea(i, 0));
  } else if (op === 0x21) { // INSERTPS: a register source's dword imm8[7:6] (memory: the m32) to dword imm8[5:4], then zero by imm8[3:0]
    const v = reg ? cpu.xmm[(i.rm << 2) + ((imm >> 6) & 3)]! : mem.read32(ea(i, 0));
    d[(imm >> 4) & 3] = v;
    for (let k = 0; k < 4; k++) if (imm & (1 << k)) d[k] = 0;
  } else if (i.rexW) {
    const k = 2 * (imm & 1);
    const lo = reg ? g[2 * i.rm]! : mem.read32(ea(i, 0));
    const hi = reg ? g[2 * i.rm + 1]! : mem.read32(ea(i, 4));
    d[k] = lo;
    d[k + 1] = hi;
  } else {
    d[imm & 3] = reg ? g[2 * i.rm]! : mem.read32(ea(i, 0));
  }
  setX(cpu, i.reg, d);
}

/** 0F 3A xx (every opcode takes an imm8). */
export function sse0F3A(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  if (op === 0x0f) {
    ssse3(cpu, mem, i, true);
    return;
  }
  if (i.prefix !== 0x66) ud(mem);
  needSse(cpu, mem);
  switch (op) {
    case 0x08: case 0x09: case 0x0a: case 0x0b: roundFp(cpu, mem, i); return;
    case 0x0c: case 0x0d: case 0x0e: // BLENDPS / BLENDPD / PBLENDW
      loadSrcX(cpu, mem, i, true);
      getX(cpu, i.reg, D.d);
      blendImm(op, i.imm8);
      setX(cpu, i.reg, D.d);
      return;
    case 0x14: case 0x15: case 0x16: case 0x17: extract(cpu, mem, i); return;
    case 0x20: case 0x21: case 0x22: insert(cpu, mem, i); return;
    case 0x40: case 0x41: dotProduct(cpu, mem, i); return;
    case 0x42: // MPSADBW
      loadSrcX(cpu, mem, i, true);
      getX(cpu, i.reg, D.d);
      mpsadbw(i.imm8);
      setX(cpu, i.reg, D.d);
      return;
    case 0x60: case 0x61: case 0x62: case 0x63: pcmpstr(cpu, mem, i); return;
    default:
      ud(mem);
  }
}
