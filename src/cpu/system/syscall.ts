/**
 * Fast system calls: SYSCALL/SYSRET (Intel semantics: 64-bit mode only), SWAPGS, and
 * SYSENTER/SYSEXIT (only when features.sep is on). The segment caches are loaded with fixed
 * flat descriptors, as the SDM specifies — the GDT is not read.
 */
import { CpuFault, type SystemHost } from '../system-api.js';
import { Efer, Flag, Mode, Reg, SReg, Vec, type CpuState } from '../state.js';
import { features } from '../features.js';
import { getGpr64, isCanonical, setGpr64 } from './bits.js';
import { ATTR_CODE32, ATTR_CODE64, ATTR_DATA32 } from './descriptor.js';

const ud = (): CpuFault => new CpuFault(Vec.UD);
const gp0 = (): CpuFault => new CpuFault(Vec.GP, 0);

function flat(s: CpuState, sreg: SReg, sel: number, attr: number): void {
  s.segSel[sreg] = sel;
  s.segBase[sreg] = 0;
  s.segLimit[sreg] = 0xffffffff;
  s.segAttr[sreg] = attr;
}

/** SYSCALL: RCX = next RIP, R11 = RFLAGS, RFLAGS &= ~SFMASK, CS/SS from STAR[47:32], RIP = LSTAR. */
export function syscall(h: SystemHost, nextRip: number): void {
  const s = h.s;
  if (!(s.efer & Efer.SCE) || s.mode !== Mode.Long64) throw ud();
  const flags = h.getRflags();
  setGpr64(s.gpr, Reg.RCX, nextRip);
  s.gpr[2 * Reg.R11] = (flags & ~Flag.RF) | 0;
  s.gpr[2 * Reg.R11 + 1] = 0;
  const sel = s.starHi & 0xfffc; // STAR[47:32]
  flat(s, SReg.CS, sel, ATTR_CODE64);
  flat(s, SReg.SS, (sel + 8) & 0xffff, ATTR_DATA32);
  s.cpl = 0;
  h.setRflags(0, (s.sfmask | Flag.RF) >>> 0);
  s.rip = s.lstar;
  h.modeChanged();
}

/** SYSRET (opsize 8: to 64-bit code at STAR[63:48]+16; 4: to compat code at STAR[63:48]). */
export function sysret(h: SystemHost, opsize: 4 | 8): void {
  const s = h.s;
  if (!(s.efer & Efer.SCE) || s.mode !== Mode.Long64) throw ud();
  if (s.cpl !== 0) throw gp0();
  const base = (s.starHi >>> 16) & 0xffff; // STAR[63:48]
  let rip: number;
  if (opsize === 8) {
    rip = getGpr64(s.gpr, Reg.RCX);
    if (!isCanonical(rip)) throw gp0(); // Intel raises #GP in ring 0 here
    flat(s, SReg.CS, ((base + 16) & 0xfffc) | 3, ATTR_CODE64 | (3 << 5));
  } else {
    rip = s.gpr[2 * Reg.RCX]! >>> 0;
    flat(s, SReg.CS, (base & 0xfffc) | 3, ATTR_CODE32 | (3 << 5));
  }
  flat(s, SReg.SS, ((base + 8) & 0xfffc) | 3, ATTR_DATA32 | (3 << 5));
  s.cpl = 3;
  h.setRflags((s.gpr[2 * Reg.R11]! & 0x3c7fd7) | 2, 0x3f7fd7);
  s.rip = rip;
  h.modeChanged();
}

/** SWAPGS: exchange GS.base with KERNEL_GS_BASE (64-bit mode, CPL 0). */
export function swapgs(h: SystemHost): void {
  const s = h.s;
  if (s.mode !== Mode.Long64) throw ud();
  if (s.cpl !== 0) throw gp0();
  const t = s.segBase[SReg.GS]!;
  s.segBase[SReg.GS] = s.kernelGsBase;
  s.kernelGsBase = t;
}

/** SYSENTER: CS = SYSENTER_CS, SS = +8, RIP/RSP from the MSRs, IF/VM/RF cleared. */
export function sysenter(h: SystemHost): void {
  const s = h.s;
  if (!features.sep) throw ud();
  if (s.mode === Mode.Real) throw gp0();
  const sel = s.sysenterCs & 0xfffc;
  if (sel === 0) throw gp0();
  const long = (s.efer & Efer.LMA) !== 0;
  flat(s, SReg.CS, sel, long ? ATTR_CODE64 : ATTR_CODE32);
  flat(s, SReg.SS, (sel + 8) & 0xffff, ATTR_DATA32);
  s.cpl = 0;
  h.setRflags(0, Flag.IF | Flag.VM | Flag.RF);
  if (long) {
    s.rip = s.sysenterEip;
    setGpr64(s.gpr, Reg.RSP, s.sysenterEsp);
  } else {
    s.rip = s.sysenterEip >>> 0;
    s.gpr[2 * Reg.RSP] = s.sysenterEsp | 0;
  }
  h.modeChanged();
}

/** SYSEXIT (opsize 8 with REX.W: to 64-bit code): RIP = RDX, RSP = RCX, CPL 3. */
export function sysexit(h: SystemHost, opsize: 4 | 8): void {
  const s = h.s;
  if (!features.sep) throw ud();
  if (s.mode === Mode.Real || s.mode === Mode.V86 || s.cpl !== 0) throw gp0();
  const base = s.sysenterCs & 0xfffc;
  if (base === 0) throw gp0();
  if (opsize === 8) {
    const rip = getGpr64(s.gpr, Reg.RDX);
    const rsp = getGpr64(s.gpr, Reg.RCX);
    if (!isCanonical(rip) || !isCanonical(rsp)) throw gp0();
    flat(s, SReg.CS, (base + 32) | 3, ATTR_CODE64 | (3 << 5));
    flat(s, SReg.SS, (base + 40) | 3, ATTR_DATA32 | (3 << 5));
    s.rip = rip;
    setGpr64(s.gpr, Reg.RSP, rsp);
  } else {
    flat(s, SReg.CS, (base + 16) | 3, ATTR_CODE32 | (3 << 5));
    flat(s, SReg.SS, (base + 24) | 3, ATTR_DATA32 | (3 << 5));
    s.rip = s.gpr[2 * Reg.RDX]! >>> 0;
    s.gpr[2 * Reg.RSP] = s.gpr[2 * Reg.RCX]!;
  }
  s.cpl = 3;
  h.modeChanged();
}
