import { describe, expect, it } from 'vitest';
import { BOOT_GDT_START, BOOT_IDT_START, GiB, MiB, PDE_START, PDPTE_START, PML4_START } from '../machine/layout.js';
import { GuestMemory } from '../machine/memory.js';
import {
  BOOT_GDT,
  BOOT_GDT_LIMIT,
  decodeGdtEntry,
  gdtEntry,
  SELECTOR_CODE32,
  SELECTOR_CODE64,
  SELECTOR_DATA,
  setupLongModeEntry,
  setupProtected32Entry,
  writeIdentityPageTables,
} from './x86-setup.js';

const mem = (): GuestMemory => new GuestMemory([{ base: 0, size: 2 * MiB }]);

/** Walk the 4-level tables like the MMU would for a 2 MiB page. */
function translate(m: GuestMemory, cr3: number, va: number): number | undefined {
  const pml4e = m.read64(cr3 + Math.floor(va / 2 ** 39) % 512 * 8);
  if (!(pml4e & 1n)) return undefined;
  const pdpte = m.read64(Number(pml4e & 0xffff_f000n) + (Math.floor(va / 2 ** 30) % 512) * 8);
  if (!(pdpte & 1n)) return undefined;
  const pde = m.read64(Number(pdpte & 0xffff_f000n) + (Math.floor(va / 2 ** 21) % 512) * 8);
  if (!(pde & 1n) || !(pde & 0x80n)) return undefined;
  return Number(pde & 0xf_ffe0_0000n) + (va % (2 * MiB));
}

describe('boot page tables', () => {
  it('identity-map the first 4 GiB with 2 MiB pages', () => {
    const m = mem();
    const cr3 = writeIdentityPageTables(m);
    expect(cr3).toBe(PML4_START);
    expect(m.read64(PML4_START)).toBe(BigInt(PDPTE_START | 3));
    for (let i = 0; i < 4; i++) expect(m.read64(PDPTE_START + i * 8)).toBe(BigInt((PDE_START + i * 0x1000) | 3));
    expect(m.read64(PDPTE_START + 4 * 8)).toBe(0n);
    for (const va of [0, 0x1234, 16 * MiB + 5, 3 * GiB + 7, 4 * GiB - 1]) expect(translate(m, cr3, va)).toBe(va);
    expect(m.read64(PDE_START + 2047 * 8)).toBe(0xffe0_0083n);
    expect(translate(m, cr3, 4 * GiB)).toBeUndefined();
  });
});

describe('boot GDT', () => {
  it('encodes flat segments that decode back', () => {
    expect(gdtEntry(0xa09b, 0, 0xfffff)).toBe(0x00af_9b00_0000_ffffn);
    expect(gdtEntry(0xc093, 0, 0xfffff)).toBe(0x00cf_9300_0000_ffffn);
    const code64 = decodeGdtEntry(BOOT_GDT[SELECTOR_CODE64 / 8]!);
    expect(code64).toMatchObject({ base: 0, limit: 0xffff_ffff, type: 0xb, s: 1, dpl: 0, present: 1, l: 1, db: 0, g: 1 });
    const code32 = decodeGdtEntry(BOOT_GDT[SELECTOR_CODE32 / 8]!);
    expect(code32).toMatchObject({ l: 0, db: 1, type: 0xb, limit: 0xffff_ffff });
    const data = decodeGdtEntry(BOOT_GDT[SELECTOR_DATA / 8]!);
    expect(data).toMatchObject({ type: 0x3, s: 1, present: 1, db: 1, limit: 0xffff_ffff });
    const odd = decodeGdtEntry(gdtEntry(0x4093, 0x1234_5678, 0xabcde));
    expect(odd).toMatchObject({ base: 0x1234_5678, limit: 0xabcde, g: 0, db: 1 });
  });

  it('long-mode entry writes GDT, IDT and tables and selects __BOOT_CS/__BOOT_DS', () => {
    const m = mem();
    m.fill(0, 0x10000, 0xaa);
    const e = setupLongModeEntry(m, 0x100200, 0x7000);
    expect(e).toEqual({
      mode: 'long64',
      rip: 0x100200,
      regs: { rsi: 0x7000 },
      cr3: PML4_START,
      gdt: { base: BOOT_GDT_START, limit: BOOT_GDT_LIMIT, cs: 0x10, ds: 0x18 },
    });
    expect(m.read64(BOOT_GDT_START)).toBe(0n);
    expect(m.read64(BOOT_GDT_START + 0x10)).toBe(BOOT_GDT[2]);
    expect(m.read64(BOOT_IDT_START)).toBe(0n);
  });

  it('protected-mode entry uses the flat 32-bit code segment and no paging', () => {
    const e = setupProtected32Entry(mem(), 0x100000, { rax: 1 });
    expect(e.mode).toBe('protected32');
    expect(e.cr3).toBeUndefined();
    expect(e.gdt).toMatchObject({ cs: 0x08, ds: 0x18 });
  });
});
