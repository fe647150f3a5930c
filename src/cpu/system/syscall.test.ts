import { describe, it, expect } from 'vitest';
import { CpuFault } from '../system-api.js';
import { Efer, Flag, Mode, SReg } from '../state.js';
import { swapgs, syscall, sysenter, sysret } from './syscall.js';
import { K_CS, K_DS, U_CS, U_CS32, U_DS, longModeHost, setSeg, fault } from './testhost.js';

function userHost() {
  const h = longModeHost();
  // Linux: STAR[47:32] = __KERNEL_CS, STAR[63:48] = __USER32_CS (0x23) - so SYSRET64 → 0x33, SS 0x2b.
  h.s.starHi = (0x23 << 16) | K_CS;
  h.s.lstar = -0x7e000000;
  h.s.sfmask = Flag.IF | Flag.TF | Flag.DF | Flag.AC | Flag.NT;
  setSeg(h, SReg.CS, U_CS);
  setSeg(h, SReg.SS, U_DS);
  h.s.cpl = 3;
  h.modeChanged();
  return h;
}

describe('SYSCALL / SYSRET', () => {
  it('enters the kernel at LSTAR and returns to 64-bit user mode', () => {
    const h = userHost();
    h.s.rflagsRest = 0x10202 | Flag.DF;
    syscall(h, 0x401002);
    expect(h.s.rip).toBe(-0x7e000000);
    expect(h.s.cpl).toBe(0);
    expect(h.s.segSel[SReg.CS]).toBe(K_CS);
    expect(h.s.segSel[SReg.SS]).toBe(K_DS);
    expect(h.s.gpr[2]).toBe(0x401002); // RCX
    expect(h.s.gpr[22]).toBe(0x202 | Flag.DF); // R11 without RF
    expect(h.s.rflagsRest & (Flag.IF | Flag.DF | Flag.RF)).toBe(0);
    expect(h.s.mode).toBe(Mode.Long64);
    sysret(h, 8);
    expect(h.s.cpl).toBe(3);
    expect(h.s.segSel[SReg.CS]).toBe(U_CS);
    expect(h.s.segSel[SReg.SS]).toBe(U_DS);
    expect(h.s.rip).toBe(0x401002);
    expect(h.s.rflagsRest & Flag.IF).toBe(Flag.IF);
    expect(h.s.mode).toBe(Mode.Long64);
  });

  it('SYSRETL returns to compatibility mode; non-canonical RCX is #GP', () => {
    const h = userHost();
    syscall(h, 0x8000);
    sysret(h, 4);
    expect(h.s.segSel[SReg.CS]).toBe(U_CS32);
    expect(h.s.mode).toBe(Mode.Compat32);
    const h2 = userHost();
    syscall(h2, 0);
    h2.s.gpr[3] = 0x8000; // RCX high half: non-canonical
    expect(fault(() => sysret(h2, 8))).toEqual(new CpuFault(13, 0));
  });

  it('#UD without EFER.SCE; SYSRET at CPL 3 is #GP', () => {
    const h = userHost();
    expect(fault(() => sysret(h, 8))).toEqual(new CpuFault(13, 0));
    h.s.efer &= ~Efer.SCE;
    expect(fault(() => syscall(h, 0))).toEqual(new CpuFault(6));
    expect(fault(() => sysenter(h))).toEqual(new CpuFault(6)); // SEP not advertised
  });
});

describe('SWAPGS', () => {
  it('exchanges GS.base and KERNEL_GS_BASE at CPL 0 only', () => {
    const h = longModeHost();
    h.s.segBase[SReg.GS] = 0x1000;
    h.s.kernelGsBase = -0x777fffffe000;
    swapgs(h);
    expect(h.s.segBase[SReg.GS]).toBe(-0x777fffffe000);
    expect(h.s.kernelGsBase).toBe(0x1000);
    h.s.cpl = 3;
    expect(fault(() => swapgs(h))).toEqual(new CpuFault(13, 0));
  });
});
