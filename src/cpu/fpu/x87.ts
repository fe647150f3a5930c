/**
 * The x87 FPU (opcodes D8..DF). Registers hold exact 80-bit images (X87Side, per physical
 * register) and `cpu.st` mirrors them as doubles. Loads, stores, + - × ÷, square root, compares,
 * FRNDINT, FSCALE, FXTRACT, FPREM/FPREM1 and integer/BCD conversions are exact (extfloat.ts)
 * under the control word's precision and rounding control, with IE DE ZE OE UE PE, C1 =
 * "rounded up", stack faults (IE|SF, masked → QNaN indefinite) and pending-exception #MF.
 * Transcendentals (F2XM1 FYL2X FYL2XP1 FPTAN FPATAN FSIN FCOS FSINCOS) are computed in double.
 *
 * This file is the dispatcher (memory and register forms of D8..DF, compares, FCMOVcc); the
 * register stack and arithmetic glue are in x87-stack.ts, loads/stores, BCD and the environment
 * in x87-env.ts, the D9 register forms (constants, transcendentals) in x87-d9.ts.
 */
import type { CpuState } from '../state.js';
import type { SimdInsn, SimdMemory } from '../simd-api.js';
import { ea, ud } from './common.js';
import { F32, F64 } from './softfloat.js';
import { compareExt, fromFloat, fromIntExt } from './extfloat.js';
import { d9Reg } from './x87-d9.js';
import { fbld, fbstp, fldenv, frstor, fsave, fstenv, loadExt, pushX, storeExt, storeFloat, storeInt, updateES } from './x87-env.js';
import {
  SW_B, SW_C1, TAG_EMPTY, arith, begin, checkPending, copyReg, end, fninit, fxch, getX, phys, pop, readArithOperand,
  readF32Bits, readF64Bits, setCC, setEflagsFromCompare, setIndefinite, setTag, tag, underflow,
} from './x87-stack.js';

export { fninit, fwait, physOf, regExt, setRegExt, tagOfExt } from './x87-stack.js';
export { fullTagWord } from './x87-env.js';

// ---- the dispatcher -----------------------------------------------------------------------------------

export function x87(cpu: CpuState, mem: SimdMemory, i: SimdInsn): void {
  const op = i.opcode;
  const reg = i.reg & 7;
  const modrm = (i.mod << 6) | (reg << 3) | (i.rm & 7);
  // non-waiting control instructions: FNINIT, FNCLEX, FNSTSW, FNSTCW, FNSTENV, FNSAVE (and FLDCW...)
  const control = (op === 0xdb && i.mod === 3 && (modrm === 0xe2 || modrm === 0xe3)) ||
    (op === 0xdf && modrm === 0xe0) || (i.mod !== 3 && ((op === 0xd9 && reg >= 4) || (op === 0xdd && (reg === 4 || reg === 6 || reg === 7))));
  if (!control) {
    checkPending(cpu, mem);
    cpu.fpuOpcode = ((op & 7) << 8) | modrm;
    cpu.fpuIp = cpu.rip;
    if (i.mod !== 3) cpu.fpuDp = i.ea;
  }
  if (i.mod !== 3) x87Mem(cpu, mem, i, op, reg);
  else x87Reg(cpu, mem, op, reg, i.rm & 7);
}

function x87Mem(cpu: CpuState, mem: SimdMemory, i: SimdInsn, op: number, reg: number): void {
  switch (op) {
    case 0xd8: case 0xdc: case 0xda: case 0xde: {
      begin(cpu);
      const b = readArithOperand(mem, i);
      const p = phys(cpu, 0);
      if (tag(cpu, p) === TAG_EMPTY) {
        if (underflow(cpu) && reg !== 2 && reg !== 3) setIndefinite(cpu, p);
        if (reg === 2 || reg === 3) {
          setCC(cpu, 2);
          if (reg === 3) pop(cpu);
        }
        return;
      }
      if (reg === 2 || reg === 3) {
        const r = compareExt(getX(cpu, p), b, true);
        if (!end(cpu)) return;
        setCC(cpu, r);
        if (reg === 3) pop(cpu);
        return;
      }
      arith(cpu, reg, getX(cpu, p), b, p);
      return;
    }
    case 0xd9:
      switch (reg) {
        case 0: // FLD m32
          begin(cpu);
          pushX(cpu, fromFloat(readF32Bits(mem, i), F32));
          return;
        case 2: storeFloat(cpu, mem, i, 4, false); return;
        case 3: storeFloat(cpu, mem, i, 4, true); return;
        case 4: fldenv(cpu, mem, i); return;
        case 5: // FLDCW
          cpu.fpuControl = (mem.read16(ea(i, 0)) & 0x1f7f) | 0x40;
          updateES(cpu);
          return;
        case 6: // FNSTENV: also masks all exceptions
          fstenv(cpu, mem, i);
          cpu.fpuControl |= 0x3f;
          return;
        case 7: mem.write16(ea(i, 0), cpu.fpuControl); return;
        default: ud(mem);
      }
      return;
    case 0xdb:
      switch (reg) {
        case 0: begin(cpu); pushX(cpu, fromIntExt(BigInt(mem.read32(ea(i, 0)) | 0))); return;
        case 1: storeInt(cpu, mem, i, 4, true, true); return;
        case 2: storeInt(cpu, mem, i, 4, false, false); return;
        case 3: storeInt(cpu, mem, i, 4, false, true); return;
        case 5: loadExt(cpu, mem, i); return;
        case 7: storeExt(cpu, mem, i); return;
        default: ud(mem);
      }
      return;
    case 0xdd:
      switch (reg) {
        case 0: // FLD m64
          begin(cpu);
          pushX(cpu, fromFloat(readF64Bits(mem, i), F64));
          return;
        case 1: storeInt(cpu, mem, i, 8, true, true); return;
        case 2: storeFloat(cpu, mem, i, 8, false); return;
        case 3: storeFloat(cpu, mem, i, 8, true); return;
        case 4: frstor(cpu, mem, i); return;
        case 6: fsave(cpu, mem, i); return;
        case 7: mem.write16(ea(i, 0), cpu.fpuStatus); return;
        default: ud(mem);
      }
      return;
    case 0xdf:
      switch (reg) {
        case 0: begin(cpu); pushX(cpu, fromIntExt(BigInt((mem.read16(ea(i, 0)) << 16) >> 16))); return;
        case 1: storeInt(cpu, mem, i, 2, true, true); return;
        case 2: storeInt(cpu, mem, i, 2, false, false); return;
        case 3: storeInt(cpu, mem, i, 2, false, true); return;
        case 4: fbld(cpu, mem, i); return;
        case 5: begin(cpu); pushX(cpu, fromIntExt(BigInt.asIntN(64, readF64Bits(mem, i)))); return;
        case 6: fbstp(cpu, mem, i); return;
        default: storeInt(cpu, mem, i, 8, false, true); return;
      }
    default:
      ud(mem);
  }
}

/** FCMOVcc condition from RFLAGS: sub 0 B (CF), 1 E (ZF), 2 BE (CF|ZF), 3 U (PF). */
function fcmovCond(rflags: number, sub: number): boolean {
  switch (sub) {
    case 0: return (rflags & 1) !== 0;
    case 1: return (rflags & 0x40) !== 0;
    case 2: return (rflags & 0x41) !== 0;
    default: return (rflags & 4) !== 0;
  }
}

function x87Reg(cpu: CpuState, mem: SimdMemory, op: number, reg: number, r: number): void {
  switch (op) {
    case 0xd8: case 0xdc: case 0xde: {
      // D8: ST0 = ST0 op STi; DC: STi = STi op ST0 (sub/div reversed encodings); DE: same, then pop
      if ((reg === 2 || reg === 3) && op !== 0xd8) {
        if (op === 0xde && !(reg === 3 && r === 1)) return ud(mem);
      }
      const pa = phys(cpu, 0);
      const pb = phys(cpu, r);
      const empty = tag(cpu, pa) === TAG_EMPTY || tag(cpu, pb) === TAG_EMPTY;
      if (reg === 2 || reg === 3) { // FCOM / FCOMP / FCOMPP (DE D9)
        if (empty) {
          if (!underflow(cpu)) return;
          setCC(cpu, 2);
        } else {
          begin(cpu);
          const res = compareExt(getX(cpu, pa), getX(cpu, pb), true);
          if (!end(cpu)) return;
          setCC(cpu, res);
        }
        if (reg === 3) pop(cpu);
        if (op === 0xde) pop(cpu);
        return;
      }
      const dst = op === 0xd8 ? pa : pb;
      if (empty) {
        if (underflow(cpu)) {
          setIndefinite(cpu, dst);
          if (op === 0xde) pop(cpu);
        }
        return;
      }
      let k = reg;
      // DC/DE encodings swap SUB/SUBR and DIV/DIVR relative to D8
      if (op !== 0xd8 && k >= 4) k ^= 1;
      begin(cpu);
      if (op === 0xd8) arith(cpu, k, getX(cpu, pa), getX(cpu, pb), dst);
      else arith(cpu, k, getX(cpu, pb), getX(cpu, pa), dst);
      if (op === 0xde) pop(cpu);
      return;
    }
    case 0xd9: return d9Reg(cpu, mem, reg, r);
    case 0xda:
      if (reg <= 3) return fcmov(cpu, mem, fcmovCond(mem.getRflags(), reg), r);
      if (reg === 5 && r === 1) return fucomFamily(cpu, mem, 1, false, 2);
      return ud(mem);
    case 0xdb:
      if (reg <= 3) return fcmov(cpu, mem, !fcmovCond(mem.getRflags(), reg), r);
      if (reg === 4) {
        if (r === 2) { // FNCLEX
          cpu.fpuStatus &= ~(0x80ff | SW_B);
          return;
        }
        if (r === 3) return fninit(cpu);
        if (r <= 1 || r === 4) return; // FENI/FDISI/FSETPM: no-ops on 387+
        return ud(mem);
      }
      if (reg === 5) return fucomFamily(cpu, mem, r, false, -1); // FUCOMI
      if (reg === 6) return fucomFamily(cpu, mem, r, true, -1); // FCOMI
      return ud(mem);
    case 0xdd:
      switch (reg) {
        case 0: setTag(cpu, phys(cpu, r), TAG_EMPTY); return; // FFREE
        case 1: return fxch(cpu, r);
        case 2: case 3: { // FST / FSTP ST(i)
          const p0 = phys(cpu, 0);
          if (tag(cpu, p0) === TAG_EMPTY) {
            if (!underflow(cpu)) return;
            setIndefinite(cpu, phys(cpu, r));
          } else {
            copyReg(cpu, phys(cpu, r), p0);
            cpu.fpuStatus &= ~SW_C1;
          }
          if (reg === 3) pop(cpu);
          return;
        }
        case 4: return fucomFamily(cpu, mem, r, false, 0); // FUCOM
        case 5: return fucomFamily(cpu, mem, r, false, 1); // FUCOMP
        default: return ud(mem);
      }
    case 0xdf:
      switch (reg) {
        case 0: // FFREEP
          setTag(cpu, phys(cpu, r), TAG_EMPTY);
          pop(cpu);
          return;
        case 1: return fxch(cpu, r);
        case 2: case 3: { // FSTP alias
          const p0 = phys(cpu, 0);
          if (tag(cpu, p0) !== TAG_EMPTY) copyReg(cpu, phys(cpu, r), p0);
          pop(cpu);
          return;
        }
        case 4:
          if (r !== 0) return ud(mem);
          cpu.gpr[0] = (cpu.gpr[0]! & ~0xffff) | cpu.fpuStatus; // FNSTSW AX
          return;
        case 5: return fucomFamily(cpu, mem, r, false, -2); // FUCOMIP
        case 6: return fucomFamily(cpu, mem, r, true, -2); // FCOMIP
        default: return ud(mem);
      }
    default:
      return ud(mem);
  }
}

/**
 * FUCOM/FUCOMP/FUCOMPP (pops ≥ 0: set C3 C2 C0) and FCOMI/FUCOMI(P) (pops -1 = no pop,
 * -2 = pop: set ZF PF CF).
 */
function fucomFamily(cpu: CpuState, mem: SimdMemory, r: number, signal: boolean, pops: number): void {
  const p0 = phys(cpu, 0);
  const pr = phys(cpu, r);
  let res: number;
  if (tag(cpu, p0) === TAG_EMPTY || tag(cpu, pr) === TAG_EMPTY) {
    if (!underflow(cpu)) return;
    res = 2;
  } else {
    begin(cpu);
    res = compareExt(getX(cpu, p0), getX(cpu, pr), signal);
    if (!end(cpu)) return;
  }
  if (pops >= 0) {
    setCC(cpu, res);
    for (let k = 0; k < pops; k++) pop(cpu);
  } else {
    cpu.fpuStatus &= ~SW_C1;
    setEflagsFromCompare(mem, res);
    if (pops === -2) pop(cpu);
  }
}

function fcmov(cpu: CpuState, _mem: SimdMemory, cond: boolean, r: number): void {
  const p0 = phys(cpu, 0);
  const pr = phys(cpu, r);
  if (tag(cpu, p0) === TAG_EMPTY || tag(cpu, pr) === TAG_EMPTY) {
    if (underflow(cpu)) setIndefinite(cpu, p0);
    return;
  }
  if (cond) copyReg(cpu, p0, pr);
}
