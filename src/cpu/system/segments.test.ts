import { describe, it, expect } from 'vitest';
import { CpuFault } from '../system-api.js';
import { Mode, SReg } from '../state.js';
import { farCall, farJump, farReturn, lar, lgdt, lidt, lldt, loadSegment, lsl, ltr, sgdt, verr, verw } from './segments.js';
import { GDT, K_CS, K_DS, RSP0, TSS, TSS_SEL, U_CS, U_CS32, U_DS, longModeHost, segDesc, setSeg, writeSysDesc64, fault } from './testhost.js';

describe('loadSegment', () => {
  it('loads a data segment, setting the accessed bit in the GDT', () => {
    const h = longModeHost();
    h.memory.write64(GDT + 0x50, segDesc(0x1000, 0xffff, 0x92)); // not yet accessed
    h.s.gdtrLimit = 0x57;
    loadSegment(h, SReg.FS, 0x50);
    expect(h.s.segSel[SReg.FS]).toBe(0x50);
    expect(h.s.segBase[SReg.FS]).toBe(0x1000);
    expect(h.s.segLimit[SReg.FS]).toBe(0xffff);
    expect(h.s.segAttr[SReg.FS]).toBe(0x93);
    expect(h.memory.read8(GDT + 0x50 + 5)).toBe(0x93);
  });

  it('allows a null SS in 64-bit mode below ring 3 only', () => {
    const h = longModeHost();
    loadSegment(h, SReg.SS, 0);
    expect(h.s.segSel[SReg.SS]).toBe(0);
    setSeg(h, SReg.CS, U_CS);
    h.s.cpl = 3;
    h.modeChanged();
    expect(fault(() => loadSegment(h, SReg.SS, 3))).toEqual(new CpuFault(13, 0));
  });

  it('checks SS RPL/DPL against CPL and data segment privilege', () => {
    const h = longModeHost();
    expect(fault(() => loadSegment(h, SReg.SS, U_DS))).toEqual(new CpuFault(13, U_DS & ~3));
    expect(fault(() => loadSegment(h, SReg.SS, K_CS))).toEqual(new CpuFault(13, K_CS));
    setSeg(h, SReg.CS, U_CS);
    h.s.cpl = 3;
    h.modeChanged();
    expect(fault(() => loadSegment(h, SReg.DS, K_DS))).toEqual(new CpuFault(13, K_DS));
    loadSegment(h, SReg.DS, U_DS);
    expect(h.s.segSel[SReg.DS]).toBe(U_DS);
    loadSegment(h, SReg.DS, 0);
    expect(h.s.segAttr[SReg.DS]).toBe(0);
  });

  it('raises #NP / #SS for not-present segments and #GP beyond the GDT limit', () => {
    const h = longModeHost();
    h.memory.write64(GDT + 0x50, segDesc(0, 0xfffff, 0x13)); // P = 0
    h.s.gdtrLimit = 0x4f;
    expect(fault(() => loadSegment(h, SReg.DS, 0x50))).toEqual(new CpuFault(13, 0x50));
    h.s.gdtrLimit = 0x57;
    expect(fault(() => loadSegment(h, SReg.DS, 0x50))).toEqual(new CpuFault(11, 0x50));
    expect(fault(() => loadSegment(h, SReg.SS, 0x50))).toEqual(new CpuFault(12, 0x50));
  });

  it('uses selector * 16 in real mode', () => {
    const h = longModeHost();
    h.s.cr0 = 0x10;
    h.s.efer = 0;
    h.modeChanged();
    loadSegment(h, SReg.ES, 0xb800);
    expect(h.s.segBase[SReg.ES]).toBe(0xb8000);
  });
});

describe('far transfers', () => {
  it('reloads CS with lretq (the kernel startup idiom) and far-jumps to compatibility mode', () => {
    const h = longModeHost();
    h.s.gpr[8] = 0x70000 - 16;
    h.memory.write64(0x70000 - 16, 0x123456n);
    h.memory.write64(0x70000 - 8, BigInt(K_CS));
    farReturn(h, 8, 0);
    expect(h.s.rip).toBe(0x123456);
    expect(h.s.gpr[8]).toBe(0x70000);
    expect(h.s.mode).toBe(Mode.Long64);
    farJump(h, 0x08, 0x2000, 4);
    expect(h.s.mode).toBe(Mode.Compat32);
    expect(h.s.rip).toBe(0x2000);
  });

  it('far-calls and far-returns to an outer ring with SS:RSP', () => {
    const h = longModeHost();
    farCall(h, K_CS, 0x3000, 8, 0x1111);
    expect(h.s.gpr[8]).toBe(0x70000 - 16);
    expect(Number(h.memory.read64(0x70000 - 16))).toBe(0x1111);
    expect(Number(h.memory.read64(0x70000 - 8))).toBe(K_CS);
    // Build a return frame to ring 3: RIP, CS, RSP, SS.
    const sp = 0x60000;
    h.memory.write64(sp, 0x401000n);
    h.memory.write64(sp + 8, BigInt(U_CS));
    h.memory.write64(sp + 16, 0x7ff000n);
    h.memory.write64(sp + 24, BigInt(U_DS));
    h.s.gpr[8] = sp;
    farReturn(h, 8, 0);
    expect(h.s.cpl).toBe(3);
    expect(h.s.segSel[SReg.SS]).toBe(U_DS);
    expect(h.s.gpr[8]).toBe(0x7ff000);
    expect(h.s.rip).toBe(0x401000);
    // DS held a kernel (DPL 0) selector: nulled on the way out.
    expect(h.s.segSel[SReg.DS]).toBe(0);
  });

  it('rejects a far jump to a more privileged non-conforming segment', () => {
    const h = longModeHost();
    setSeg(h, SReg.CS, U_CS32);
    h.s.cpl = 3;
    h.modeChanged();
    expect(fault(() => farJump(h, K_CS, 0, 4))).toEqual(new CpuFault(13, K_CS));
    expect(fault(() => farJump(h, 0, 0, 4))).toEqual(new CpuFault(13, 0));
  });

  it('uses selector * 16 in real mode', () => {
    const h = longModeHost();
    h.s.cr0 = 0x10;
    h.s.efer = 0;
    h.modeChanged();
    farJump(h, 0xf000, 0xfff0, 2);
    expect(h.s.segBase[SReg.CS]).toBe(0xf0000);
    expect(h.s.rip).toBe(0xfff0);
  });
});

describe('call gates', () => {
  /** A 16-byte 64-bit call gate at GDT + 0x50 (selector 0x50, DPL 3) to K_CS:target. */
  function gateHost(target: number) {
    const h = longModeHost();
    h.s.gdtrLimit = 0x5f;
    const m = h.memory;
    m.write32(GDT + 0x50, ((target & 0xffff) | (K_CS << 16)) >>> 0);
    m.write32(GDT + 0x54, ((target & 0xffff0000) | 0x8000 | (3 << 13) | (0xc << 8)) >>> 0);
    m.write32(GDT + 0x58, 0);
    m.write32(GDT + 0x5c, 0);
    setSeg(h, SReg.CS, U_CS);
    setSeg(h, SReg.SS, U_DS);
    h.s.cpl = 3;
    h.modeChanged();
    h.s.gpr[8] = 0x7ff00;
    return h;
  }

  it('CALL through a 64-bit gate switches to RSP0 and RETF returns to ring 3', () => {
    const h = gateHost(0x4000);
    farCall(h, 0x53, 0, 4, 0x401005);
    expect(h.s.cpl).toBe(0);
    expect(h.s.rip).toBe(0x4000);
    expect(h.s.segSel[SReg.SS]).toBe(0);
    const rsp = RSP0 - 32;
    expect(h.s.gpr[8]).toBe(rsp);
    const q = (a: number) => Number(h.memory.read64(a));
    expect([q(rsp), q(rsp + 8), q(rsp + 16), q(rsp + 24)]).toEqual([0x401005, U_CS, 0x7ff00, U_DS]);
    farReturn(h, 8, 0);
    expect(h.s.cpl).toBe(3);
    expect(h.s.rip).toBe(0x401005);
    expect(h.s.gpr[8]).toBe(0x7ff00);
    expect(h.s.segSel[SReg.SS]).toBe(U_DS);
  });

  it('JMP through a gate to a more privileged non-conforming segment is #GP', () => {
    const h = gateHost(0x4000);
    expect(fault(() => farJump(h, 0x53, 0, 4))).toEqual(new CpuFault(13, K_CS));
  });

  it('a gate with DPL < CPL is #GP(gate)', () => {
    const h = gateHost(0x4000);
    h.memory.write8(GDT + 0x55, 0x8c); // DPL 0
    expect(fault(() => farCall(h, 0x53, 0, 4, 0))).toEqual(new CpuFault(13, 0x50));
  });
});

describe('descriptor-table registers', () => {
  it('LGDT/LIDT read 10-byte operands in 64-bit mode; SGDT writes them back', () => {
    const h = longModeHost();
    h.memory.write16(0x5000, 0x7f);
    h.memory.write64(0x5002, 0xffff888000001000n);
    lgdt(h, 0x5000, 8);
    expect(h.s.gdtrLimit).toBe(0x7f);
    expect(h.s.gdtrBase).toBe(Number(BigInt.asIntN(64, 0xffff888000001000n)));
    sgdt(h, 0x5100);
    expect(h.memory.read16(0x5100)).toBe(0x7f);
    expect(h.memory.read64(0x5102)).toBe(0xffff888000001000n);
    h.memory.write64(0x5002, 0x0000900000000000n); // non-canonical
    expect(fault(() => lidt(h, 0x5000, 8))).toEqual(new CpuFault(13, 0));
  });

  it('LTR loads a 64-bit TSS and marks it busy; a busy TSS cannot be loaded again', () => {
    const h = longModeHost();
    writeSysDesc64(h.memory, GDT + TSS_SEL, 0x123000, 0x67, 0x9);
    ltr(h, TSS_SEL);
    expect(h.s.trSel).toBe(TSS_SEL);
    expect(h.s.trBase).toBe(0x123000);
    expect(h.s.trLimit).toBe(0x67);
    expect(h.memory.read8(GDT + TSS_SEL + 5) & 0xf).toBe(0xb);
    expect(fault(() => ltr(h, TSS_SEL))).toEqual(new CpuFault(13, TSS_SEL));
  });

  it('LTR/LLDT take the upper base dword of 16-byte descriptors', () => {
    const h = longModeHost();
    writeSysDesc64(h.memory, GDT + TSS_SEL, -(2 ** 32) + TSS + 2 ** 64, 0x67, 0x9);
    ltr(h, TSS_SEL);
    expect(h.s.trBase).toBe(-(2 ** 32) + TSS);
    h.s.gdtrLimit = 0x5f;
    writeSysDesc64(h.memory, GDT + 0x50, 0x4000, 0xff, 0x2);
    lldt(h, 0x50);
    expect(h.s.ldtrBase).toBe(0x4000);
    expect(h.s.ldtrLimit).toBe(0xff);
  });
});

describe('LAR/LSL/VERR/VERW', () => {
  it('probes visibility and types', () => {
    const h = longModeHost();
    expect(lar(h, K_CS)).toBe(0x00a09b00 >>> 0);
    expect(lsl(h, K_DS)).toBe(0xffffffff);
    expect(lsl(h, 0)).toBe(-1);
    expect(verr(h, K_CS)).toBe(true);
    expect(verw(h, K_CS)).toBe(false);
    expect(verw(h, K_DS)).toBe(true);
    expect(lsl(h, TSS_SEL)).toBe(0x67);
    setSeg(h, SReg.CS, U_CS);
    h.s.cpl = 3;
    h.modeChanged();
    expect(lar(h, K_DS)).toBe(-1);
    expect(verw(h, U_DS)).toBe(true);
    expect(lsl(h, TSS_SEL)).toBe(-1);
    expect(TSS).toBeGreaterThan(0);
  });
});
