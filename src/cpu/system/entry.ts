/**
 * Apply a loader's EntryState (src/machine/engine.ts) to the software CPU: 64-bit long mode
 * with the loader's page tables (Linux boot protocol), 32-bit flat protected mode with paging
 * off (multiboot), or real mode at CS:IP.
 *
 * Segment caches come from the GDT the loader wrote (read from guest-physical memory; it sits
 * in identity-mapped low memory), falling back to flat descriptors when the loader gave none.
 */
import type { SystemHost } from '../system-api.js';
import type { EntryState } from '../../machine/engine.js';
import { Cr0, Cr4, Efer, Reg, SReg } from '../state.js';
import { setGpr64 } from './bits.js';
import { computeMode } from './control.js';
import { ATTR_CODE32, ATTR_CODE64, ATTR_DATA32, descAttr, descBase, descLimit } from './descriptor.js';

export class EntryStateError extends Error {
  override name = 'EntryStateError';
}

const REG_INDEX = { rax: Reg.RAX, rbx: Reg.RBX, rcx: Reg.RCX, rdx: Reg.RDX, rsi: Reg.RSI, rdi: Reg.RDI, rsp: Reg.RSP, rbp: Reg.RBP } as const;

/** Load segment `sreg` from the loader's GDT in physical memory, or flat with `fallbackAttr`. */
function loadFromGdt(h: SystemHost, sreg: SReg, sel: number, fallbackAttr: number): void {
  const s = h.s;
  const off = sel & 0xfff8;
  if (off !== 0 && off + 7 <= s.gdtrLimit && h.memory.isRam(s.gdtrBase + off, 8)) {
    const lo = h.memory.read32(s.gdtrBase + off) | 0;
    const hi = h.memory.read32(s.gdtrBase + off + 4) | 0;
    if (hi & 0x8000) {
      s.segSel[sreg] = sel;
      s.segBase[sreg] = descBase(lo, hi);
      s.segLimit[sreg] = descLimit(lo, hi);
      s.segAttr[sreg] = descAttr(hi) | 1;
      return;
    }
  }
  s.segSel[sreg] = sel;
  s.segBase[sreg] = 0;
  s.segLimit[sreg] = 0xffffffff;
  s.segAttr[sreg] = fallbackAttr;
}

export function applyEntryState(h: SystemHost, entry: EntryState): void {
  const s = h.s;
  s.gpr.fill(0);
  for (const [name, value] of Object.entries(entry.regs)) {
    const r = REG_INDEX[name as keyof typeof REG_INDEX];
    if (r === undefined || value === undefined) continue;
    if (!Number.isSafeInteger(value)) throw new EntryStateError(`Cannot apply entry state: register ${name} = ${value} is not an integer`);
    setGpr64(s.gpr, r, value);
  }
  h.setRflags(2, 0xffffffff);
  s.halted = false;
  s.interruptShadow = false;
  s.cr2 = 0;
  s.cr8 = 0;
  s.ldtrSel = 0;
  s.ldtrBase = 0;
  s.ldtrLimit = 0;
  // A TR that is valid enough for an I/O-bitmap check (denies everything) until the guest loads its own.
  s.trSel = 0;
  s.trBase = 0;
  s.trLimit = 0;
  s.trAttr = 0x8b;
  s.idtrBase = 0;
  s.idtrLimit = 0;
  if (entry.gdt) {
    s.gdtrBase = entry.gdt.base;
    s.gdtrLimit = entry.gdt.limit & 0xffff;
  }

  switch (entry.mode) {
    case 'long64': {
      if (entry.cr3 === undefined) throw new EntryStateError('Cannot enter long mode: the entry state has no cr3 (page tables)');
      s.cr0 = Cr0.PE | Cr0.MP | Cr0.ET | Cr0.NE | Cr0.WP | Cr0.PG;
      s.cr4 = Cr4.PAE;
      s.efer = Efer.LME | Efer.LMA;
      s.cr3 = entry.cr3;
      s.cpl = 0;
      const cs = entry.gdt?.cs ?? 0x10;
      const ds = entry.gdt?.ds ?? 0x18;
      loadFromGdt(h, SReg.CS, cs, ATTR_CODE64);
      for (const r of [SReg.DS, SReg.ES, SReg.SS, SReg.FS, SReg.GS]) loadFromGdt(h, r, ds, ATTR_DATA32);
      s.rip = entry.rip;
      break;
    }
    case 'protected32': {
      s.cr0 = Cr0.PE | Cr0.ET;
      s.cr4 = 0;
      s.efer = 0;
      s.cr3 = 0;
      s.cpl = 0;
      const cs = entry.gdt?.cs ?? 0x10;
      const ds = entry.gdt?.ds ?? 0x18;
      loadFromGdt(h, SReg.CS, cs, ATTR_CODE32);
      for (const r of [SReg.DS, SReg.ES, SReg.SS, SReg.FS, SReg.GS]) loadFromGdt(h, r, ds, ATTR_DATA32);
      s.rip = entry.rip >>> 0;
      break;
    }
    case 'real16': {
      s.cr0 = Cr0.ET;
      s.cr4 = 0;
      s.efer = 0;
      s.cr3 = 0;
      s.cpl = 0;
      s.idtrLimit = 0x3ff;
      const cs = (entry.realCs ?? 0) & 0xffff;
      for (let r = 0; r < 6; r++) {
        s.segSel[r] = 0;
        s.segBase[r] = 0;
        s.segLimit[r] = 0xffff;
        s.segAttr[r] = 0x93;
      }
      s.segSel[SReg.CS] = cs;
      s.segBase[SReg.CS] = cs * 16;
      s.segAttr[SReg.CS] = 0x9b;
      // `rip` is linear: IP = rip - CS * 16 (a plain offset is accepted when CS is 0).
      const ip = entry.rip - cs * 16;
      if (ip < 0 || ip > 0xffff) {
        throw new EntryStateError(`Cannot enter real mode: rip 0x${entry.rip.toString(16)} is not within CS 0x${cs.toString(16)}`);
      }
      s.rip = ip;
      break;
    }
    default:
      throw new EntryStateError(`Cannot apply entry state: unknown mode ${String((entry as { mode: unknown }).mode)}`);
  }
  computeMode(s);
  h.flushTlb(false);
  h.modeChanged();
}
