/**
 * SSE3 instructions of the 0F map (the feature check is the core's: core/ops/simd.ts):
 * ADDSUBPS/PD (F2/66 0F D0), HADDPS/PD (F2/66 0F 7C), HSUBPS/PD (F2/66 0F 7D), MOVSLDUP (F3 0F 12),
 * MOVSHDUP (F3 0F 16), MOVDDUP (F2 0F 12) and LDDQU (F2 0F F0). FISTTP is x87 (x87.ts).
 *
 * Alignment: the 128-bit operands of ADDSUB/HADD/HSUB and MOVSLDUP/MOVSHDUP must be aligned;
 * MOVDDUP reads 64 bits and LDDQU exists for unaligned loads.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { D, S, T, getX, loadSrcScalar, loadSrcX, readMem, setX, ud } from './common.js';
import { F32, F64, OP_ADD, OP_SUB, arith, bits32, bits64, hi32, lo32, sfFromMxcsr } from './softfloat.js';
import { commitFlags } from './sse-fp.js';

/** T.d[2k..2k+1] ← a op b on doubles given as 32-bit halves. */
function pd(op: number, k: number, aLo: number, aHi: number, bLo: number, bHi: number): void {
  const r = arith(op, bits64(aLo, aHi), bits64(bLo, bHi), F64);
  T.d[2 * k] = lo32(r);
  T.d[2 * k + 1] = hi32(r);
}

function ps(op: number, k: number, a: number, b: number): void {
  T.d[k] = lo32(arith(op, bits32(a), bits32(b), F32));
}

/** D0 / 7C / 7D: ADDSUB, HADD, HSUB (F2: single, 66: double). */
function horizontal(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const pfx = i.prefix;
  if (pfx !== 0x66 && pfx !== 0xf2) ud(mem);
  sfFromMxcsr(cpu.mxcsr);
  getX(cpu, i.reg, D.d);
  loadSrcX(cpu, mem, i, true);
  const d = D.d;
  const s = S.d;
  const op = i.opcode;
  if (pfx === 0xf2) {
    if (op === 0xd0) {
      ps(OP_SUB, 0, d[0]!, s[0]!);
      ps(OP_ADD, 1, d[1]!, s[1]!);
      ps(OP_SUB, 2, d[2]!, s[2]!);
      ps(OP_ADD, 3, d[3]!, s[3]!);
    } else {
      const o = op === 0x7c ? OP_ADD : OP_SUB;
      ps(o, 0, d[0]!, d[1]!);
      ps(o, 1, d[2]!, d[3]!);
      ps(o, 2, s[0]!, s[1]!);
      ps(o, 3, s[2]!, s[3]!);
    }
  } else if (op === 0xd0) {
    pd(OP_SUB, 0, d[0]!, d[1]!, s[0]!, s[1]!);
    pd(OP_ADD, 1, d[2]!, d[3]!, s[2]!, s[3]!);
  } else {
    const o = op === 0x7c ? OP_ADD : OP_SUB;
    pd(o, 0, d[0]!, d[1]!, d[2]!, d[3]!);
    pd(o, 1, s[0]!, s[1]!, s[2]!, s[3]!);
  }
  commitFlags(cpu, mem);
  setX(cpu, i.reg, T.d);
}

/** F2/F3 0F 12 and F3 0F 16: MOVDDUP, MOVSLDUP, MOVSHDUP. */
function movdup(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const t = T.d;
  const s = S.d;
  if (i.prefix === 0xf2) {
    if (i.opcode !== 0x12) ud(mem);
    loadSrcScalar(cpu, mem, i, 8);
    t[0] = s[0]!; t[1] = s[1]!; t[2] = s[0]!; t[3] = s[1]!;
  } else {
    loadSrcX(cpu, mem, i, true);
    const o = i.opcode === 0x12 ? 0 : 1;
    t[0] = s[o]!; t[1] = s[o]!; t[2] = s[o + 2]!; t[3] = s[o + 2]!;
  }
  setX(cpu, i.reg, t);
}

/** The SSE3 form of 0F `i.opcode`, or false when the prefix selects an older instruction. */
export function sse3(cpu: CpuState, mem: SimdMemory, i: SimdInsn): boolean {
  const pfx = i.prefix;
  switch (i.opcode) {
    case 0x12: case 0x16:
      if (pfx !== 0xf2 && pfx !== 0xf3) return false;
      movdup(cpu, mem, i);
      return true;
    case 0x7c: case 0x7d: case 0xd0:
      horizontal(cpu, mem, i);
      return true;
    case 0xf0: // LDDQU xmm, m128
      if (pfx !== 0xf2 || i.mod === 3) ud(mem);
      readMem(mem, i, 16, S.d);
      setX(cpu, i.reg, S.d);
      return true;
    default:
      return false;
  }
}
