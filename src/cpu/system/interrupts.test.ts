import { describe, it, expect } from 'vitest';
import { CpuFault, EventKind, TripleFault } from '../system-api.js';
import { Flag, Mode, SReg } from '../state.js';
import { deliver, iret, isNmiBlocked } from './interrupts.js';
import { GDT, IDT, IST1, K_CS, K_DS, RSP0, TSS, U_CS, U_DS, TestHost, longModeHost, segDesc, setSeg, writeGate32, writeGate64 } from './testhost.js';

const HANDLER = 0x6000n;

function q(h: TestHost, addr: number): number {
  return Number(h.memory.read64(addr));
}

describe('long-mode delivery', () => {
  it('delivers INT3 at CPL 0 through a DPL-3 interrupt gate and returns with IRETQ', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 3, K_CS, HANDLER, { dpl: 3 });
    h.s.rflagsRest = 0x202;
    h.s.rip = 0x5000;
    deliver(h, 3, -1, EventKind.Software, 0x5001);
    const rsp = 0x70000 - 40;
    expect(h.s.rip).toBe(0x6000);
    expect(h.s.gpr[8]).toBe(rsp);
    expect(q(h, rsp)).toBe(0x5001);
    expect(q(h, rsp + 8)).toBe(K_CS);
    expect(q(h, rsp + 16)).toBe(0x202);
    expect(q(h, rsp + 24)).toBe(0x70000);
    expect(q(h, rsp + 32)).toBe(K_DS);
    expect(h.s.rflagsRest & Flag.IF).toBe(0);
    expect(h.s.mode).toBe(Mode.Long64);
    iret(h, 8);
    expect(h.s.rip).toBe(0x5001);
    expect(h.s.gpr[8]).toBe(0x70000);
    expect(h.s.rflagsRest & Flag.IF).toBe(Flag.IF);
  });

  it('aligns the stack to 16 bytes and keeps IF for trap gates', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 0x30, K_CS, HANDLER, { type: 0xf });
    h.s.gpr[8] = 0x70008;
    h.s.rflagsRest = 0x202;
    deliver(h, 0x30, -1, EventKind.External, 0x5000);
    expect(h.s.gpr[8]).toBe(0x70000 - 40);
    expect(q(h, 0x70000 - 16)).toBe(0x70008);
    expect(h.s.rflagsRest & Flag.IF).toBe(Flag.IF);
  });

  it('switches to RSP0 and a null SS on an interrupt from ring 3, and IRETQ returns to ring 3', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 0x20, K_CS, -0x7f000000n);
    setSeg(h, SReg.CS, U_CS);
    setSeg(h, SReg.SS, U_DS);
    h.s.cpl = 3;
    h.modeChanged();
    h.s.gpr[8] = 0x7fff8;
    h.s.rflagsRest = 0x202;
    deliver(h, 0x20, -1, EventKind.External, 0x400000);
    const rsp = RSP0 - 40;
    expect(h.s.cpl).toBe(0);
    expect(h.s.segSel[SReg.SS]).toBe(0);
    expect(h.s.segSel[SReg.CS]).toBe(K_CS);
    expect(h.s.rip).toBe(-0x7f000000);
    expect(h.s.gpr[8]).toBe(rsp);
    expect([q(h, rsp), q(h, rsp + 8), q(h, rsp + 16), q(h, rsp + 24), q(h, rsp + 32)]).toEqual([0x400000, U_CS, 0x202, 0x7fff8, U_DS]);
    iret(h, 8);
    expect(h.s.cpl).toBe(3);
    expect(h.s.segSel[SReg.CS]).toBe(U_CS);
    expect(h.s.segSel[SReg.SS]).toBe(U_DS);
    expect(h.s.gpr[8]).toBe(0x7fff8);
    expect(h.s.rip).toBe(0x400000);
    expect(h.s.mode).toBe(Mode.Long64);
    expect(h.s.rflagsRest & Flag.IF).toBe(Flag.IF);
  });

  it('uses the IST stack for an NMI and blocks NMIs until IRET', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 2, K_CS, HANDLER, { ist: 1 });
    deliver(h, 2, -1, EventKind.Nmi, 0x5000);
    expect(h.s.gpr[8]).toBe(IST1 - 8 - 40);
    expect(isNmiBlocked(h.s)).toBe(true);
    iret(h, 8);
    expect(isNmiBlocked(h.s)).toBe(false);
    expect(h.s.gpr[8]).toBe(0x70000);
  });

  it('pushes the error code of a page fault', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 14, K_CS, HANDLER);
    deliver(h, 14, 0x6, EventKind.Exception, 0x5000);
    expect(h.s.gpr[8]).toBe(0x70000 - 48);
    expect(q(h, 0x70000 - 48)).toBe(6);
    expect(q(h, 0x70000 - 40)).toBe(0x5000);
  });

  it('raises #GP(vector*8+2) for INT n through a gate with DPL < CPL, changing nothing', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 0x80, K_CS, HANDLER, { dpl: 0 });
    setSeg(h, SReg.CS, U_CS);
    setSeg(h, SReg.SS, U_DS);
    h.s.cpl = 3;
    h.modeChanged();
    h.s.rip = 0x400000;
    let fault: unknown;
    try {
      deliver(h, 0x80, -1, EventKind.Software, 0x400002);
    } catch (e) {
      fault = e;
    }
    expect(fault).toEqual(new CpuFault(13, 0x80 * 8 + 2));
    expect(h.s.rip).toBe(0x400000);
    expect(h.s.cpl).toBe(3);
    expect(h.s.gpr[8]).toBe(0x70000);
  });

  it('delivers #NP with the IDT error code (EXT set) when the gate is not present', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 6, K_CS, HANDLER, { present: false });
    writeGate64(h.memory, IDT, 11, K_CS, 0x7000n);
    deliver(h, 6, -1, EventKind.Exception, 0x5000);
    expect(h.s.rip).toBe(0x7000);
    expect(q(h, h.s.gpr[8]!)).toBe(6 * 8 + 3);
  });

  it('escalates a contributory fault during #GP delivery to #DF', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 8, K_CS, 0x8000n);
    deliver(h, 13, 0, EventKind.Exception, 0x5000);
    expect(h.s.rip).toBe(0x8000);
    expect(q(h, h.s.gpr[8]!)).toBe(0);
  });

  it('escalates a page fault while pushing a #PF frame to #DF on its IST stack', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 14, K_CS, HANDLER);
    writeGate64(h.memory, IDT, 8, K_CS, 0x8000n, { ist: 1 });
    h.s.gpr[8] = 0x2000000; // beyond the 16 MiB mapping
    deliver(h, 14, 0, EventKind.Exception, 0x5000);
    expect(h.s.rip).toBe(0x8000);
    expect(h.s.gpr[8]).toBe(IST1 - 8 - 48);
    expect(q(h, IST1 - 8 - 16)).toBe(0x2000000); // interrupted RSP
  });

  it('throws TripleFault when #DF cannot be delivered', () => {
    const h = longModeHost();
    h.s.idtrLimit = 0;
    expect(() => deliver(h, 13, 0, EventKind.Exception, 0x5000)).toThrow(TripleFault);
  });

  it('rejects a gate whose target is not 64-bit code', () => {
    const h = longModeHost();
    writeGate64(h.memory, IDT, 0x40, 0x08, HANDLER); // 32-bit code segment
    writeGate64(h.memory, IDT, 13, K_CS, 0x9000n);
    deliver(h, 0x40, -1, EventKind.External, 0x5000);
    expect(h.s.rip).toBe(0x9000);
    expect(q(h, h.s.gpr[8]!)).toBe(0x08 + 1);
  });
});

describe('protected-mode delivery', () => {
  function pmHost(): TestHost {
    const h = new TestHost();
    const m = h.memory;
    m.write64(GDT + 0x08, segDesc(0, 0xfffff, 0xc09b));
    m.write64(GDT + 0x10, segDesc(0, 0xfffff, 0xc093));
    m.write64(GDT + 0x18, segDesc(0, 0xfffff, 0xc0fb));
    m.write64(GDT + 0x20, segDesc(0, 0xfffff, 0xc0f3));
    m.write64(GDT + 0x28, segDesc(TSS, 0x67, 0x89));
    m.write32(TSS + 4, RSP0);
    m.write32(TSS + 8, 0x10);
    const s = h.s;
    s.gdtrBase = GDT;
    s.gdtrLimit = 0x2f;
    s.idtrBase = IDT;
    s.idtrLimit = 0x7ff;
    s.cr0 = 0x11;
    s.trSel = 0x28;
    s.trBase = TSS;
    s.trLimit = 0x67;
    s.trAttr = 0x8b;
    return h;
  }

  it('switches to SS0:ESP0 from ring 3 and IRETD returns', () => {
    const h = pmHost();
    writeGate32(h.memory, IDT, 0x21, 0x08, 0x6000);
    setSeg(h, SReg.CS, 0x1b);
    for (const r of [SReg.SS, SReg.DS, SReg.ES]) setSeg(h, r, 0x23);
    h.s.cpl = 3;
    h.modeChanged();
    expect(h.s.mode).toBe(Mode.Protected32);
    h.s.gpr[8] = 0x7000;
    h.s.rflagsRest = 0x202;
    deliver(h, 0x21, -1, EventKind.External, 0x1234);
    const esp = RSP0 - 20;
    expect(h.s.gpr[8]).toBe(esp);
    expect(h.s.segSel[SReg.SS]).toBe(0x10);
    expect(h.s.segSel[SReg.CS]).toBe(0x08);
    expect(h.s.cpl).toBe(0);
    const m = h.memory;
    expect([m.read32(esp), m.read32(esp + 4), m.read32(esp + 8), m.read32(esp + 12), m.read32(esp + 16)]).toEqual([0x1234, 0x1b, 0x202, 0x7000, 0x23]);
    iret(h, 4);
    expect(h.s.cpl).toBe(3);
    expect(h.s.gpr[8]).toBe(0x7000);
    expect(h.s.segSel[SReg.SS]).toBe(0x23);
    expect(h.s.rip).toBe(0x1234);
  });

  it('pushes 16-bit frames through a 16-bit gate at the same privilege', () => {
    const h = pmHost();
    writeGate32(h.memory, IDT, 0x22, 0x08, 0x6000, { type: 0x6 });
    setSeg(h, SReg.CS, 0x08);
    setSeg(h, SReg.SS, 0x10);
    h.modeChanged();
    h.s.gpr[8] = 0x7000;
    deliver(h, 0x22, 5, EventKind.Exception, 0x1234);
    expect(h.s.gpr[8]).toBe(0x7000 - 8);
    expect(h.memory.read16(0x7000 - 8)).toBe(5);
    expect(h.memory.read16(0x7000 - 6)).toBe(0x1234);
  });
});

describe('real-mode delivery', () => {
  it('uses the IVT and IRET restores CS:IP and FLAGS', () => {
    const h = new TestHost();
    const s = h.s;
    s.idtrBase = 0;
    s.idtrLimit = 0x3ff;
    h.memory.write32(0x10 * 4, (0x1234 << 16) | 0x5678);
    s.segSel[SReg.CS] = 0x100;
    s.segBase[SReg.CS] = 0x1000;
    s.segSel[SReg.SS] = 0x2000;
    s.segBase[SReg.SS] = 0x20000;
    s.gpr[8] = 0x100;
    s.rflagsRest = 0x202;
    h.modeChanged();
    deliver(h, 0x10, -1, EventKind.Software, 0x102);
    expect(s.segBase[SReg.CS]).toBe(0x12340);
    expect(s.rip).toBe(0x5678);
    expect(s.gpr[8]).toBe(0xfa);
    expect([h.memory.read16(0x200fa), h.memory.read16(0x200fc), h.memory.read16(0x200fe)]).toEqual([0x102, 0x100, 0x202]);
    expect(s.rflagsRest & Flag.IF).toBe(0);
    iret(h, 2);
    expect(s.rip).toBe(0x102);
    expect(s.segSel[SReg.CS]).toBe(0x100);
    expect(s.gpr[8]).toBe(0x100);
    expect(s.rflagsRest & Flag.IF).toBe(Flag.IF);
  });
});
