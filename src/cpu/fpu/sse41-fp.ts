/**
 * SSE4.1 floating point: ROUNDPS/PD/SS/SD (0F 3A 08-0B: the imm8's rounding mode or MXCSR.RC,
 * and its precision-exception suppression bit) and the dot products DPPS/DPPD (0F 3A 40/41),
 * through softfloat.ts. Flags accumulate into MXCSR; an unmasked exception raises #XM (or #UD)
 * before any result is written back.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { D, S, T, getX, loadSrcScalar, loadSrcX, setX } from './common.js';
import {
  F32, F64, FL_PE, OP_ADD, OP_MUL, arith, bits32, bits64, hi32, lo32, roundIntegral, sf, sfFromMxcsr,
} from './softfloat.js';
import { commitFlags } from './sse-fp.js';

/** ROUNDPS (08), ROUNDPD (09), ROUNDSS (0A), ROUNDSD (0B) xmm, xmm/m, imm8. */
export function roundFp(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  const imm = i.imm8;
  sfFromMxcsr(cpu.mxcsr);
  if (!(imm & 4)) sf.rc = imm & 3;
  getX(cpu, i.reg, D.d);
  if (op <= 0x09) loadSrcX(cpu, mem, i, true);
  else loadSrcScalar(cpu, mem, i, op === 0x0a ? 4 : 8);
  const sd = S.d;
  const td = T.d;
  for (let k = 0; k < 4; k++) td[k] = D.d[k]!;
  if (op === 0x08 || op === 0x0a) {
    const n = op === 0x08 ? 4 : 1;
    for (let k = 0; k < n; k++) td[k] = lo32(roundIntegral(bits32(sd[k]!), F32));
  } else {
    const n = op === 0x09 ? 2 : 1;
    for (let k = 0; k < n; k++) {
      const r = roundIntegral(bits64(sd[2 * k]!, sd[2 * k + 1]!), F64);
      td[2 * k] = lo32(r);
      td[2 * k + 1] = hi32(r);
    }
  }
  if (imm & 8) sf.flags &= ~FL_PE;
  commitFlags(cpu, mem);
  setX(cpu, i.reg, td);
}

const ZERO = 0n;

/**
 * DPPS (40) / DPPD (41) xmm, xmm/m128, imm8: the products of the lanes selected by imm8[7:4]
 * (others +0.0) are summed pairwise — DPPS as (p0 + p1) + (p2 + p3) — each step rounded; the sum
 * goes to the lanes selected by imm8[3:0], +0.0 to the rest.
 */
export function dotProduct(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const imm = i.imm8;
  sfFromMxcsr(cpu.mxcsr);
  getX(cpu, i.reg, D.d);
  loadSrcX(cpu, mem, i, true);
  const dd = D.d;
  const sd = S.d;
  const td = T.d;
  if (i.opcode === 0x40) {
    const p0 = imm & 0x10 ? arith(OP_MUL, bits32(dd[0]!), bits32(sd[0]!), F32) : ZERO;
    const p1 = imm & 0x20 ? arith(OP_MUL, bits32(dd[1]!), bits32(sd[1]!), F32) : ZERO;
    const p2 = imm & 0x40 ? arith(OP_MUL, bits32(dd[2]!), bits32(sd[2]!), F32) : ZERO;
    const p3 = imm & 0x80 ? arith(OP_MUL, bits32(dd[3]!), bits32(sd[3]!), F32) : ZERO;
    const a = arith(OP_ADD, p0, p1, F32);
    const b = arith(OP_ADD, p2, p3, F32);
    const r = lo32(arith(OP_ADD, a, b, F32));
    for (let k = 0; k < 4; k++) td[k] = imm & (1 << k) ? r : 0;
  } else {
    const p0 = imm & 0x10 ? arith(OP_MUL, bits64(dd[0]!, dd[1]!), bits64(sd[0]!, sd[1]!), F64) : ZERO;
    const p1 = imm & 0x20 ? arith(OP_MUL, bits64(dd[2]!, dd[3]!), bits64(sd[2]!, sd[3]!), F64) : ZERO;
    const r = arith(OP_ADD, p0, p1, F64);
    for (let k = 0; k < 2; k++) {
      const on = (imm & (1 << k)) !== 0;
      td[2 * k] = on ? lo32(r) : 0;
      td[2 * k + 1] = on ? hi32(r) : 0;
    }
  }
  commitFlags(cpu, mem);
  setX(cpu, i.reg, td);
}
