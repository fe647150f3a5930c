/**
 * SSE4.2 string compares: PCMPESTRM (0F 3A 60), PCMPESTRI (61), PCMPISTRM (62), PCMPISTRI (63)
 * xmm1, xmm2/m128, imm8. The imm8 selects the element type (bits 1:0: unsigned bytes, unsigned
 * words, signed bytes, signed words), the aggregation (3:2: equal any, ranges, equal each,
 * equal ordered), the polarity (5:4: positive, negative, masked positive, masked negative) and
 * the output (6: least or most significant index; bit mask or element mask).
 *
 * Lengths: explicit (E forms) from EAX for xmm1 and EDX for xmm2/m128 (RAX/RDX with REX.W),
 * their absolute value saturated to the element count; implicit (I forms) up to the first zero
 * element. Elements past a length are invalid, which the aggregations treat as the SDM's
 * override table says. Results: ECX (index forms, the element count when no bit is set) or XMM0
 * (mask forms); CF = result ≠ 0, ZF = xmm2's length < count, SF = xmm1's length < count,
 * OF = result bit 0, AF = PF = 0. The memory operand has no alignment requirement.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { D, S, getX, loadSrcX, setGpr32 } from './common.js';

/** Element k of vector v (D or S) for the imm8's element type. */
function elem(v: typeof D, imm: number, k: number): number {
  switch (imm & 3) {
    case 0: return v.b[k]!;
    case 1: return v.w[k]!;
    case 2: return v.sb[k]!;
    default: return v.sw[k]!;
  }
}

/** |RAX| or |RDX| (REX.W) or |EAX| / |EDX|, saturated to n. */
function explicitLen(cpu: CpuState, r: number, wide: boolean, n: number): number {
  const lo = cpu.gpr[2 * r]! | 0;
  if (wide) {
    const hi = cpu.gpr[2 * r + 1]! | 0;
    if (hi === 0) return lo >>> 0 > n ? n : lo;
    if (hi !== -1 || lo >= 0) return n;
  }
  const abs = Math.abs(lo);
  return abs > n ? n : abs;
}

function implicitLen(v: typeof D, imm: number, n: number): number {
  for (let k = 0; k < n; k++) if (elem(v, imm, k) === 0) return k;
  return n;
}

/** The aggregation's result bits (IntRes1) for xmm1 = D (length la) and xmm2 = S (length lb). */
function aggregate(imm: number, n: number, la: number, lb: number): number {
  let r = 0;
  switch ((imm >> 2) & 3) {
    case 0: // equal any: S's element j is one of D's
      for (let j = 0; j < lb; j++) {
        const b = elem(S, imm, j);
        for (let k = 0; k < la; k++) {
          if (elem(D, imm, k) === b) {
            r |= 1 << j;
            break;
          }
        }
      }
      return r;
    case 1: // ranges: S's element j lies in one of D's (low, high) pairs
      for (let j = 0; j < lb; j++) {
        const b = elem(S, imm, j);
        for (let k = 0; k + 1 < la; k += 2) {
          if (elem(D, imm, k) <= b && b <= elem(D, imm, k + 1)) {
            r |= 1 << j;
            break;
          }
        }
      }
      return r;
    case 2: // equal each: both invalid is a match, one invalid is not
      for (let j = 0; j < n; j++) {
        if (j >= la || j >= lb) {
          if (j >= la && j >= lb) r |= 1 << j;
        } else if (elem(D, imm, j) === elem(S, imm, j)) r |= 1 << j;
      }
      return r;
    default: // equal ordered: D (the needle, invalid elements match anything) starts at S's element j
      for (let j = 0; j < n; j++) {
        let ok = true;
        for (let k = 0; k < n - j && k < la; k++) {
          if (j + k >= lb || elem(D, imm, k) !== elem(S, imm, j + k)) {
            ok = false;
            break;
          }
        }
        if (ok) r |= 1 << j;
      }
      return r;
  }
}

export function pcmpstr(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  const imm = i.imm8;
  const n = imm & 1 ? 8 : 16;
  getX(cpu, i.reg, D.d);
  loadSrcX(cpu, mem, i, false);
  let la: number;
  let lb: number;
  if (op <= 0x61) {
    la = explicitLen(cpu, 0, i.rexW, n);
    lb = explicitLen(cpu, 2, i.rexW, n);
  } else {
    la = implicitLen(D, imm, n);
    lb = implicitLen(S, imm, n);
  }
  let r = aggregate(imm, n, la, lb);
  const pol = (imm >> 4) & 3;
  if (pol === 1) r ^= (1 << n) - 1;
  else if (pol === 3) r ^= (1 << lb) - 1;
  if (op & 1) { // index into ECX
    const idx = r === 0 ? n : imm & 0x40 ? 31 - Math.clz32(r) : 31 - Math.clz32(r & -r);
    setGpr32(cpu, 1, idx);
  } else { // mask into XMM0
    const x = cpu.xmm;
    if (imm & 0x40) {
      const e = 16 / n;
      const b = cpu.xmmU8;
      for (let k = 0; k < n; k++) {
        const v = (r >> k) & 1 ? 0xff : 0;
        for (let j = 0; j < e; j++) b[e * k + j] = v;
      }
    } else {
      x[0] = r;
      x[1] = 0;
      x[2] = 0;
      x[3] = 0;
    }
  }
  mem.setArithFlags((r !== 0 ? 1 : 0) | (lb < n ? 0x40 : 0) | (la < n ? 0x80 : 0) | (r & 1 ? 0x800 : 0));
}
