/**
 * System instructions: privilege checks, segment register loads, POPF's flag mask, far pointer
 * loads (LDS/LES/LSS/LFS/LGS), and groups 6 (0F 00: SLDT/STR/LLDT/LTR/VERR/VERW), 7 (0F 01:
 * descriptor tables, SMSW/LMSW, INVLPG, SWAPGS, RDTSCP, CLAC/STAC, XGETBV/XSETBV), 9 (0F C7:
 * CMPXCHG8B/16B, RDPID) and 15 (0F AE: fences, CLFLUSH/CLFLUSHOPT/CLWB, RDFSBASE & co; FXSAVE,
 * XSAVE & co go to the SIMD unit). The work itself is in src/cpu/system/.
 */
import type { Cpu } from '../cpu.js';
import { features } from '../../features.js';
import { loadSegment, lgdt, lidt, sgdt, sidt, lldt, ltr, verr, verw } from '../../system/segments.js';
import { lmsw } from '../../system/control.js';
import { Cr4, Flag, Mode } from '../../state.js';
import { swapgs } from '../../system/syscall.js';
import { hi32, isCanonical, join64 } from '../../system/bits.js';
import { xgetbv, xsetbv } from '../../system/xcr.js';
import { fault, getReg, setReg, modrm, eaLin, readRM, segAdd } from './operands.js';
import { runSse, runXsave } from './simd.js';
import { CpuFault } from '../../system-api.js';

const UD = 6;
const GP = 13;

// ==== helpers for system instructions =======================================================

export function requireCpl0(c: Cpu): void {
  if (c.s.cpl !== 0) fault(GP, 0);
}

export function requireProtected(c: Cpu): void {
  if (c.realLike) fault(UD);
}

/** IOPL check for CLI/STI (protected mode): CPL <= IOPL. */
export function iopl(c: Cpu): boolean {
  if (c.s.mode === 0) return true;
  return c.s.cpl <= ((c.s.rflagsRest >> 12) & 3);
}

export function sregLoad(c: Cpu, sreg: number, sel: number): void {
  loadSegment(c, sreg, sel);
  if (sreg === 2) {
    c.ssChanged();
    c.s.interruptShadow = true;
    c.dbgInhibit = true;
  }
}

export function popf(c: Cpu, v: number, sz: number): void {
  const s = c.s;
  // CF PF AF ZF SF TF DF OF NT AC ID always; IF when CPL <= IOPL; IOPL at CPL 0; VM/VIP/VIF kept; RF cleared
  let mask = 0x244dd5;
  const cpl = s.cpl;
  const io = (s.rflagsRest >> 12) & 3;
  if (s.mode === 0 || cpl === 0) mask |= 0x3000 | 0x200;
  else if (cpl <= io) mask |= 0x200;
  if (s.mode === 6) mask &= ~0x3000;
  if (sz === 2) mask &= 0xffff;
  c.setRflags(v & ~0x10000, mask | 0x10000);
}

export function loadFarPointer(c: Cpu, sreg: number): void {
  const lin = eaLin(c);
  const osz = c.opsize;
  const off = osz === 8 ? c.read64(lin) : osz === 4 ? c.read32(lin) : c.read16(lin);
  const offHi = osz === 8 ? c.hi : 0;
  const sel = c.read16(segAdd(c, lin, osz));
  sregLoad(c, sreg, sel);
  setReg(c, c.reg, osz, off, offHi);
}

export function group6(c: Cpu): void {
  const s = c.s;
  requireProtected(c);
  modrm(c, 0);
  const op = c.reg & 7;
  switch (op) {
    case 0: // SLDT
    case 1: { // STR
      umip(c);
      const v = op === 0 ? s.ldtrSel : s.trSel;
      if (c.mod === 3) setReg(c, c.rm, c.opsize, v, 0);
      else c.write16(eaLin(c), v);
      return;
    }
    case 2:
    case 3: {
      requireCpl0(c);
      const sel = readRM(c, 2);
      if (op === 2) lldt(c, sel);
      else ltr(c, sel);
      return;
    }
    case 4:
    case 5: {
      const sel = readRM(c, 2);
      const ok = op === 4 ? verr(c, sel) : verw(c, sel);
      c.setArith((c.getArith() & ~0x40) | (ok ? 0x40 : 0));
      return;
    }
    default:
      fault(UD);
  }
}

/**
 * User-mode instruction prevention: with CR4.UMIP, SGDT, SIDT, SLDT, SMSW and STR raise #GP(0)
 * at CPL > 0 (V86 mode included), before their memory operand is touched.
 */
function umip(c: Cpu): void {
  if (c.s.cr4 & Cr4.UMIP && c.s.cpl !== 0) fault(GP, 0);
}

/** SMSW's source, CR0: allowed at any CPL unless CR4.UMIP (unlike MOV from CR0). */
function smsw(c: Cpu): number {
  umip(c);
  return c.s.cr0 >>> 0;
}

/** INVLPG's linear address; undefined for a non-canonical one, which invalidates nothing (no #GP). */
function invlpgLin(c: Cpu): number | undefined {
  try {
    return eaLin(c);
  } catch (e) {
    if (e instanceof CpuFault) return undefined; // eaLin's only fault: a non-canonical address
    throw e;
  }
}

export function group7(c: Cpu): void {
  const s = c.s;
  const g = s.gpr;
  modrm(c, 0);
  const op = c.reg & 7;
  if (c.mod !== 3) {
    switch (op) {
      case 0: umip(c); sgdt(c, eaLin(c)); return;
      case 1: umip(c); sidt(c, eaLin(c)); return;
      case 2: requireCpl0(c); lgdt(c, eaLin(c), c.long ? 8 : c.opsize); return;
      case 3: requireCpl0(c); lidt(c, eaLin(c), c.long ? 8 : c.opsize); return;
      case 4: c.write16(eaLin(c), smsw(c) & 0xffff); return;
      case 6: requireCpl0(c); lmsw(c, c.read16(eaLin(c))); return;
      case 7: {
        requireCpl0(c);
        const lin = invlpgLin(c);
        if (lin !== undefined) c.invlpg(lin);
        return;
      }
      default: fault(UD);
    }
  }
  const rm = c.rm & 7;
  switch (op) {
    case 4: { // SMSW r
      const v = smsw(c);
      setReg(c, c.rm, c.opsize, c.opsize === 2 ? v & 0xffff : v >>> 0, 0);
      return;
    }
    case 6:
      requireCpl0(c);
      lmsw(c, getReg(c, c.rm, 2));
      return;
    case 1:
      if (rm === 2 || rm === 3) { // CLAC, STAC (NP: #UD with 66/F2/F3; not in V86 mode, V86 is CPL 3)
        if (!features.smap || c.s.cpl !== 0 || c.opOverride || c.rep !== 0) fault(UD);
        c.setRflags(rm === 3 ? Flag.AC : 0, Flag.AC);
        return;
      }
      fault(UD); // MONITOR/MWAIT, ENCLS... not advertised
      return;
    case 7:
      if (rm === 0) { // SWAPGS
        if (!c.long) fault(UD);
        requireCpl0(c);
        swapgs(c);
        return;
      }
      if (rm === 1) { // RDTSCP
        if (!features.rdtscp) fault(UD);
        if (s.cr4 & 4 && s.cpl !== 0) fault(GP, 0);
        g[0] = c.readTsc();
        g[1] = 0;
        g[4] = c.scratchHi;
        g[5] = 0;
        g[2] = s.tscAux;
        g[3] = 0;
        return;
      }
      fault(UD);
      return;
    case 2:
      // XGETBV, XSETBV: NP (66/F2/F3 and LOCK: #UD)
      if (rm > 1 || c.rep !== 0 || c.opOverride || c.lock) fault(UD);
      if (rm === 0) xgetbv(c);
      else xsetbv(c);
      return;
    default:
      fault(UD); // MONITOR/MWAIT, VMX/SVM...
  }
}

export function group9(c: Cpu): void {
  modrm(c, 0);
  const op = c.reg & 7;
  if (op === 1 && c.mod !== 3) { // CMPXCHG8B / CMPXCHG16B
    const g = c.s.gpr;
    const lin = eaLin(c);
    if (c.rexW) {
      if (!features.cx16) fault(UD);
      if (((c.eaLo + (c.seg >= 4 ? c.s.segBase[c.seg]! : 0)) & 15) !== 0) fault(GP, 0);
      c.probeWrite(lin, 16);
      const m0 = c.read64(lin);
      const m1 = c.hi;
      const m2 = c.read64(lin + 8);
      const m3 = c.hi;
      const eq = m0 === (g[0]! >>> 0) && m1 === (g[1]! >>> 0) && m2 === (g[4]! >>> 0) && m3 === (g[5]! >>> 0);
      if (eq) {
        c.write64(lin, g[6]!, g[7]!);
        c.write64(lin + 8, g[2]!, g[3]!);
      } else {
        c.write64(lin, m0, m1);
        c.write64(lin + 8, m2, m3);
        g[0] = m0; g[1] = m1; g[4] = m2; g[5] = m3;
      }
      c.setArith((c.getArith() & ~0x40) | (eq ? 0x40 : 0));
      return;
    }
    let lo: number;
    let hi: number;
    if (c.tx && segAdd(c, lin, 4) === lin + 4) {
      // one 8-byte read: the locked instruction's operand (atomic.ts)
      lo = c.read64(lin);
      hi = c.hi;
    } else {
      lo = c.read32(lin);
      hi = c.read32(segAdd(c, lin, 4));
    }
    const eq = lo === (g[0]! >>> 0) && hi === (g[4]! >>> 0);
    if (eq) c.write64(lin, g[6]!, g[2]!);
    else {
      c.write64(lin, lo, hi);
      g[0] = lo; g[1] = 0; g[4] = hi; g[5] = 0;
    }
    c.setArith((c.getArith() & ~0x40) | (eq ? 0x40 : 0));
    return;
  }
  if (op === 7 && c.mod === 3 && c.rep === 0xf3) { // RDPID r: TSC_AUX, zero-extended (64-bit register in 64-bit mode)
    if (!features.rdpid) fault(UD);
    setReg(c, c.rm, 4, c.s.tscAux >>> 0, 0);
    return;
  }
  fault(UD); // RDRAND/RDSEED/VMPTRLD... not advertised
}

/**
 * RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE r (F3 0F AE /0../3, register form): 64-bit mode only, with
 * CR4.FSGSBASE set; 32-bit operand unless REX.W (a 32-bit read zero-extends, a 32-bit write
 * clears the base's upper half); a non-canonical 64-bit base is #GP(0). The translator reads
 * the FS/GS bases from the arena at each access, so a new base is seen by the next instruction.
 */
function fsgsbase(c: Cpu, op: number): void {
  const s = c.s;
  if (!features.fsgsbase || s.mode !== Mode.Long64 || !(s.cr4 & Cr4.FSGSBASE)) fault(UD);
  const sreg = op & 1 ? 5 : 4; // GS : FS
  const sz = c.rexW ? 8 : 4;
  if (op < 2) {
    const base = s.segBase[sreg]!;
    setReg(c, c.rm, sz, base >>> 0, sz === 8 ? hi32(base) : 0);
    return;
  }
  const lo = getReg(c, c.rm, sz);
  const base = sz === 8 ? join64(lo, c.hi) : lo;
  if (!isCanonical(base)) fault(GP, 0);
  s.segBase[sreg] = base;
}

export function group15(c: Cpu): void {
  // peek ModRM to decide between fences/CLFLUSH (core) and FXSAVE & co (SIMD unit)
  const save = c.ip;
  const b = c.fetch8();
  c.ip = save;
  const mod = b >> 6;
  const op = (b >> 3) & 7;
  if (mod === 3) {
    modrm(c, 0);
    if (op <= 3 && c.rep === 0xf3) {
      fsgsbase(c, op);
      return;
    }
    // LFENCE/MFENCE/SFENCE take no 66/F2/F3 prefix ("NP"; 66 /6 is TPAUSE, WAITPKG, not
    // advertised): #UD with one, as on the host CPU
    if (op >= 5 && c.rep === 0 && !c.opOverride) {
      if (op === 6) c.atomic?.fence(); // MFENCE: among threads, stores before later loads
      return;
    }
    fault(UD);
  }
  if (op <= 3) {
    runSse(c, 1, 0xae);
    return;
  }
  if (op <= 6 && c.rep === 0 && !c.opOverride) { // XSAVE, XRSTOR, XSAVEOPT
    runXsave(c);
    return;
  }
  modrm(c, 0);
  // CLFLUSH (/7), and with 66 CLFLUSHOPT (/7) and CLWB (/6): no effect on our memory, but "subject
  // to all permission checking and faults associated with a byte load" (SDM): #GP/#SS for a
  // non-canonical address, #PF for an unmapped page. No store, no flags.
  if (op === 7 || (op === 6 && c.opOverride)) {
    if (c.opOverride && !(op === 7 ? features.clflushopt : features.clwb)) fault(UD);
    c.probeRead(eaLin(c), 1);
    return;
  }
  fault(UD); // 66 /4../6, F3 /4...
}
