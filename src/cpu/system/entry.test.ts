import { describe, it, expect } from 'vitest';
import { Mode, SReg } from '../state.js';
import { applyEntryState } from './entry.js';
import { TestHost, segDesc } from './testhost.js';
import { BOOT_GDT_START, PML4_START, ZERO_PAGE_START } from '../../machine/layout.js';

function gdtHost(): TestHost {
  const h = new TestHost();
  h.memory.write64(BOOT_GDT_START + 0x08, segDesc(0, 0xfffff, 0xc09b));
  h.memory.write64(BOOT_GDT_START + 0x10, segDesc(0, 0xfffff, 0xa09b));
  h.memory.write64(BOOT_GDT_START + 0x18, segDesc(0, 0xfffff, 0xc093));
  return h;
}

describe('applyEntryState', () => {
  it('enters 64-bit long mode with the loader GDT and CR3', () => {
    const h = gdtHost();
    applyEntryState(h, {
      mode: 'long64', rip: 0x1000200, regs: { rsi: ZERO_PAGE_START, rsp: 0x8ff0 }, cr3: PML4_START,
      gdt: { base: BOOT_GDT_START, limit: 0x1f, cs: 0x10, ds: 0x18 },
    });
    const s = h.s;
    expect(s.mode).toBe(Mode.Long64);
    expect(s.cr3).toBe(PML4_START);
    expect(s.segSel[SReg.CS]).toBe(0x10);
    expect(s.segAttr[SReg.CS]).toBe(0xa09b);
    expect(s.segSel[SReg.SS]).toBe(0x18);
    expect(s.gpr[2 * 6]).toBe(ZERO_PAGE_START);
    expect(s.gpr[2 * 4]).toBe(0x8ff0);
    expect(s.rip).toBe(0x1000200);
    expect(s.cpl).toBe(0);
    expect(h.flushes).toContain('all');
  });

  it('enters flat 32-bit protected mode for multiboot', () => {
    const h = gdtHost();
    applyEntryState(h, { mode: 'protected32', rip: 0x100000, regs: { rax: 0x2badb002, rbx: 0x10000 }, gdt: { base: BOOT_GDT_START, limit: 0x1f, cs: 0x08, ds: 0x18 } });
    expect(h.s.mode).toBe(Mode.Protected32);
    expect(h.s.gpr[0]! >>> 0).toBe(0x2badb002);
    expect(h.s.segLimit[SReg.DS]).toBe(0xffffffff);
    expect(h.s.cr0 & 0x80000001).toBe(1);
  });

  it('enters real mode at CS:IP', () => {
    const h = new TestHost();
    applyEntryState(h, { mode: 'real16', rip: 0x7c00, regs: {}, realCs: 0x07c0 });
    expect(h.s.mode).toBe(Mode.Real);
    expect(h.s.segBase[SReg.CS]).toBe(0x7c00);
    expect(h.s.rip).toBe(0);
  });
});
