import { describe, it, expect } from 'vitest';
import { CpuFault } from '../system-api.js';
import { CpuState, Cr0, Cr4, Efer, Flag, Mode, SReg } from '../state.js';
import { clts, computeMode, lmsw, readCr, readDr, writeCr, writeDr } from './control.js';
import { TestHost, longModeHost, fault } from './testhost.js';
import { features } from '../features.js';

describe('computeMode', () => {
  it('derives the mode from CR0.PE, EFER.LMA, CS.L/D and RFLAGS.VM', () => {
    const s = new CpuState();
    expect(computeMode(s)).toBe(Mode.Real);
    s.cr0 |= Cr0.PE;
    expect(computeMode(s)).toBe(Mode.Protected16);
    s.segAttr[SReg.CS] = 0xc09b;
    expect(computeMode(s)).toBe(Mode.Protected32);
    s.rflagsRest |= Flag.VM;
    expect(computeMode(s)).toBe(Mode.V86);
    s.rflagsRest = 2;
    s.efer = Efer.LME | Efer.LMA;
    expect(computeMode(s)).toBe(Mode.Compat32);
    s.segAttr[SReg.CS] = 0xa09b;
    expect(computeMode(s)).toBe(Mode.Long64);
    s.segAttr[SReg.CS] = 0x009b;
    expect(computeMode(s)).toBe(Mode.Compat16);
    expect(s.mode).toBe(Mode.Compat16);
  });
});

describe('writeCr / readCr', () => {
  it('activates long mode when paging is enabled with EFER.LME and CR4.PAE', () => {
    const h = new TestHost();
    const s = h.s;
    s.cr0 = Cr0.PE | Cr0.ET;
    s.segAttr[SReg.CS] = 0xc09b;
    h.modeChanged();
    s.efer = Efer.LME;
    expect(fault(() => writeCr(h, 0, Cr0.PE | Cr0.PG, 0))).toEqual(new CpuFault(13, 0)); // no PAE
    writeCr(h, 4, Cr4.PAE, 0);
    writeCr(h, 0, (Cr0.PE | Cr0.PG) >>> 0, 0);
    expect(s.efer & Efer.LMA).toBe(Efer.LMA);
    expect(s.mode).toBe(Mode.Compat32);
    expect(h.flushes).toContain('all');
    expect(readCr(h, 0)).toBe((Cr0.PE | Cr0.PG | Cr0.ET) >>> 0);
  });

  it('rejects PG without PE, reserved CR0/CR4 bits and clearing PAE in long mode', () => {
    const h = longModeHost();
    expect(fault(() => writeCr(h, 0, Cr0.PG >>> 0, 0))).toEqual(new CpuFault(13, 0));
    expect(fault(() => writeCr(h, 0, Cr0.PE | 0x100, 0))).toEqual(new CpuFault(13, 0));
    expect(fault(() => writeCr(h, 4, 0, 0))).toEqual(new CpuFault(13, 0));
    expect(fault(() => writeCr(h, 4, Cr4.PAE | Cr4.PCIDE, 0))).toEqual(new CpuFault(13, 0));
    expect(fault(() => writeCr(h, 0, Cr0.PE | Cr0.ET, 0))).toEqual(new CpuFault(13, 0)); // leaving paging in 64-bit mode
    expect(fault(() => writeCr(h, 5, 0, 0))).toEqual(new CpuFault(6));
  });

  it('flushes non-global entries on CR3 writes and everything on PGE changes', () => {
    const h = longModeHost();
    writeCr(h, 3, 0x5000, 0x1);
    expect(h.s.cr3).toBe(0x1_0000_5000);
    expect(h.flushes).toEqual(['nonglobal']);
    writeCr(h, 4, Cr4.PAE | Cr4.PGE, 0);
    expect(h.flushes).toEqual(['nonglobal', 'all']);
    expect(readCr(h, 3)).toBe(0x5000);
    expect(h.scratchHi).toBe(1);
    expect(fault(() => writeCr(h, 3, 0, 0x80000000))).toEqual(new CpuFault(13, 0));
  });

  it('CR4.SMEP/SMAP: writable only while advertised; a change flushes everything', () => {
    const saved = [features.smep, features.smap];
    try {
      features.smep = false;
      features.smap = false;
      const h = longModeHost();
      expect(fault(() => writeCr(h, 4, Cr4.PAE | Cr4.SMEP, 0))).toEqual(new CpuFault(13, 0));
      expect(fault(() => writeCr(h, 4, Cr4.PAE | Cr4.SMAP, 0))).toEqual(new CpuFault(13, 0));
      features.smep = true;
      features.smap = true;
      writeCr(h, 4, Cr4.PAE | Cr4.SMEP, 0);
      expect(h.flushes).toEqual(['all']);
      writeCr(h, 4, Cr4.PAE | Cr4.SMEP | Cr4.SMAP, 0);
      expect(h.flushes).toEqual(['all', 'all']);
      expect(readCr(h, 4)).toBe((Cr4.PAE | Cr4.SMEP | Cr4.SMAP) >>> 0);
    } finally {
      [features.smep, features.smap] = saved as [boolean, boolean];
    }
  });

  it('holds CR2 as a signed canonical address and CR8 as the TPR', () => {
    const h = longModeHost();
    writeCr(h, 2, 0x81000000, 0xffffffff);
    expect(h.s.cr2).toBe(-0x7f000000);
    expect(readCr(h, 2)).toBe(0x81000000);
    expect(h.scratchHi).toBe(0xffffffff);
    writeCr(h, 8, 5, 0);
    expect(readCr(h, 8)).toBe(5);
    expect(fault(() => writeCr(h, 8, 16, 0))).toEqual(new CpuFault(13, 0));
  });

  it('requires CPL 0', () => {
    const h = longModeHost();
    h.s.cpl = 3;
    expect(fault(() => readCr(h, 0))).toEqual(new CpuFault(13, 0));
  });
});

describe('debug registers, CLTS, LMSW', () => {
  it('stores DR0..3/6/7 with fixed bits', () => {
    const h = longModeHost();
    writeDr(h, 0, 0x1234, 0);
    expect(readDr(h, 0)).toBe(0x1234);
    writeDr(h, 7, 0, 0);
    expect(readDr(h, 7)).toBe(0x400);
    expect(readDr(h, 6)).toBe(0xffff0ff0);
    h.s.cr4 |= Cr4.DE;
    expect(fault(() => readDr(h, 4))).toEqual(new CpuFault(6));
  });

  it('CLTS clears TS; LMSW cannot clear PE', () => {
    const h = new TestHost();
    h.s.cr0 = Cr0.PE | Cr0.TS | Cr0.ET;
    h.modeChanged();
    clts(h);
    expect(h.s.cr0 & Cr0.TS).toBe(0);
    lmsw(h, Cr0.TS | Cr0.MP);
    expect(h.s.cr0 & 0xf).toBe(Cr0.PE | Cr0.TS | Cr0.MP);
  });
});
