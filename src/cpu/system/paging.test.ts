import { describe, it, expect, beforeEach } from 'vitest';
import { Access, type WalkResult } from '../system-api.js';
import { CpuState, Cr0, Cr4, Efer, Flag } from '../state.js';
import { GuestMemory } from '../../machine/memory.js';
import { PfErr, pageFaultCode, walk } from './paging.js';

const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n, G = 0x100n, XD = 1n << 63n;

function result(): WalkResult {
  return { phys: -1, writable: false, user: false, nx: false, global: false };
}

describe('walk: paging off', () => {
  it('maps identity with full permissions', () => {
    const s = new CpuState();
    const mem = new GuestMemory([{ base: 0, size: 0x10000 }]);
    const out = result();
    expect(walk(s, mem, 0x12345, Access.Write | Access.User, out)).toBe(-1);
    expect(out).toEqual({ phys: 0x12000, writable: true, user: true, nx: false, global: false });
  });
});

describe('walk: 4-level long mode', () => {
  let s: CpuState;
  let mem: GuestMemory;
  // 0xffffffff81234567 as a signed canonical number.
  const kernelLin = -(2 ** 32) + 0x81234567;
  const PML4 = 0x1000, PDPT = 0x2000, PD = 0x3000, PT = 0x4000;

  beforeEach(() => {
    s = new CpuState();
    mem = new GuestMemory([{ base: 0, size: 0x400000 }]);
    s.cr0 = Cr0.PE | Cr0.PG | Cr0.WP;
    s.cr4 = Cr4.PAE | Cr4.PGE;
    s.efer = Efer.LME | Efer.LMA | Efer.NXE;
    s.cr3 = PML4;
    // 0xffffffff81234567: PML4 511, PDPT 510, PD 9, PT 0x34.
    mem.write64(PML4 + 511 * 8, BigInt(PDPT) | P | RW);
    mem.write64(PDPT + 510 * 8, BigInt(PD) | P | RW);
    mem.write64(PD + 9 * 8, BigInt(PT) | P | RW);
    mem.write64(PT + 0x34 * 8, 0x200000n | P | RW | G);
  });

  it('translates a 4 KiB page and sets accessed bits at every level', () => {
    const out = result();
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(-1);
    expect(out.phys).toBe(0x200000);
    expect(out.global).toBe(true);
    expect(out.user).toBe(false);
    expect(out.writable).toBe(false); // dirty not yet set: a write must walk again
    expect(mem.read64(PML4 + 511 * 8) & A).toBe(A);
    expect(mem.read64(PDPT + 510 * 8) & A).toBe(A);
    expect(mem.read64(PD + 9 * 8) & A).toBe(A);
    expect(mem.read64(PT + 0x34 * 8) & (A | D)).toBe(A);
  });

  it('sets the dirty bit on writes only in the leaf', () => {
    const out = result();
    expect(walk(s, mem, kernelLin, Access.Write, out)).toBe(-1);
    expect(out.writable).toBe(true);
    expect(mem.read64(PT + 0x34 * 8) & D).toBe(D);
    expect(mem.read64(PD + 9 * 8) & D).toBe(0n);
  });

  it('reports not-present faults with W/U/ID bits', () => {
    const out = result();
    mem.write64(PT + 0x34 * 8, 0n);
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(0);
    expect(walk(s, mem, kernelLin, Access.Write, out)).toBe(PfErr.W);
    expect(walk(s, mem, kernelLin, Access.Write | Access.User, out)).toBe(PfErr.W | PfErr.U);
    expect(walk(s, mem, kernelLin, Access.Fetch, out)).toBe(PfErr.ID);
  });

  it('denies user access to supervisor pages', () => {
    expect(walk(s, mem, kernelLin, Access.Read | Access.User, result())).toBe(PfErr.P | PfErr.U);
  });

  it('applies CR0.WP to supervisor writes of read-only pages', () => {
    mem.write64(PT + 0x34 * 8, 0x200000n | P);
    expect(walk(s, mem, kernelLin, Access.Write, result())).toBe(PfErr.P | PfErr.W);
    s.cr0 &= ~Cr0.WP;
    const out = result();
    expect(walk(s, mem, kernelLin, Access.Write, out)).toBe(-1);
    expect(out.writable).toBe(false);
    // A read-only bit in an upper level counts too.
    s.cr0 |= Cr0.WP;
    mem.write64(PT + 0x34 * 8, 0x200000n | P | RW);
    mem.write64(PDPT + 510 * 8, BigInt(PD) | P);
    expect(walk(s, mem, kernelLin, Access.Write, result())).toBe(PfErr.P | PfErr.W);
  });

  it('faults instruction fetches from XD pages with NXE, and treats XD as reserved without it', () => {
    mem.write64(PD + 9 * 8, BigInt(PT) | P | RW | XD);
    const out = result();
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(-1);
    expect(out.nx).toBe(true);
    expect(walk(s, mem, kernelLin, Access.Fetch, out)).toBe(PfErr.P | PfErr.ID);
    s.efer &= ~Efer.NXE;
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(PfErr.P | PfErr.RSVD);
  });

  it('raises RSVD faults for physical-address bits above MAXPHYADDR and PS in a PML4E', () => {
    mem.write64(PT + 0x34 * 8, (1n << 45n) | P | RW);
    expect(walk(s, mem, kernelLin, Access.Read, result())).toBe(PfErr.P | PfErr.RSVD);
    mem.write64(PML4 + 511 * 8, BigInt(PDPT) | P | RW | PS);
    expect(walk(s, mem, kernelLin, Access.Write | Access.User, result())).toBe(PfErr.P | PfErr.RSVD | PfErr.W | PfErr.U);
  });

  it('translates 2 MiB and 1 GiB pages, with reserved low bits checked', () => {
    mem.write64(PD + 9 * 8, 0x3400000n | P | RW | PS);
    const out = result();
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(-1);
    expect(out.phys).toBe(0x3400000 + 0x34000);
    mem.write64(PD + 9 * 8, 0x3402000n | P | RW | PS);
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(PfErr.P | PfErr.RSVD);
    mem.write64(PDPT + 510 * 8, 0x40000000n | (5n << 32n) | P | RW | PS);
    expect(walk(s, mem, kernelLin, Access.Read, out)).toBe(-1);
    expect(out.phys).toBe(5 * 2 ** 32 + 0x40000000 + 0x01234000);
  });

  it('maps user pages at low canonical addresses', () => {
    mem.write64(PML4, BigInt(PDPT) | P | RW | US);
    mem.write64(PDPT, BigInt(PD) | P | RW | US);
    mem.write64(PD, 0x200000n | P | RW | US | PS);
    const out = result();
    expect(walk(s, mem, 0x1234, Access.Write | Access.User, out)).toBe(-1);
    expect(out).toMatchObject({ phys: 0x201000, user: true, writable: true, global: false });
  });

  it('treats page-table pointers outside RAM as not present', () => {
    mem.write64(PD + 9 * 8, 0x7000000000n | P | RW);
    expect(walk(s, mem, kernelLin, Access.Read, result())).toBe(0);
  });
});

describe('walk: legacy PAE', () => {
  it('walks PDPT → PD → PT and rejects reserved PDPTE bits', () => {
    const s = new CpuState();
    const mem = new GuestMemory([{ base: 0, size: 0x100000 }]);
    s.cr0 = Cr0.PE | Cr0.PG;
    s.cr4 = Cr4.PAE;
    s.cr3 = 0x1020; // 32-byte aligned PDPT
    mem.write64(0x1020 + 3 * 8, 0x2000n | P);
    mem.write64(0x2000 + 0x1ff * 8, 0x3000n | P | RW | US);
    mem.write64(0x3000 + 0x1ff * 8, 0x5000n | P | RW | US);
    const out = result();
    expect(walk(s, mem, 0xfffff123, Access.Write | Access.User, out)).toBe(-1);
    expect(out.phys).toBe(0x5000);
    mem.write64(0x1020 + 3 * 8, 0x2000n | P | RW);
    expect(walk(s, mem, 0xfffff123, Access.Read, out)).toBe(PfErr.P | PfErr.RSVD);
  });
});

describe('walk: 32-bit paging', () => {
  it('walks 4 KiB pages and 4 MiB PSE pages with PSE-36 high bits', () => {
    const s = new CpuState();
    const mem = new GuestMemory([{ base: 0, size: 0x100000 }]);
    s.cr0 = Cr0.PE | Cr0.PG;
    s.cr3 = 0x1000;
    mem.write32(0x1000 + 0x300 * 4, 0x2000 | 0x7);
    mem.write32(0x2000 + 0x12 * 4, 0x9000 | 0x7);
    const out = result();
    expect(walk(s, mem, 0xc0012345, Access.Read | Access.User, out)).toBe(-1);
    expect(out.phys).toBe(0x9000);
    expect(mem.read32(0x1000 + 0x300 * 4) & 0x20).toBe(0x20);
    // 4 MiB page at 0x3_0040_0000 (PSE-36: PDE bits 20:13 = 3).
    mem.write32(0x1000 + 0x301 * 4, 0x00400000 | (3 << 13) | 0x83);
    expect(walk(s, mem, 0xc0412345, Access.Read, out)).toBe(0); // PSE off: PS ignored, PT at 0x400000 beyond RAM
    s.cr4 = Cr4.PSE;
    expect(walk(s, mem, 0xc0412345, Access.Read, out)).toBe(-1);
    expect(out.phys).toBe(3 * 2 ** 32 + 0x00400000 + 0x12000);
    expect(out.nx).toBe(false);
  });
});

describe('pageFaultCode', () => {
  it('builds error codes from the access', () => {
    const s = new CpuState();
    expect(pageFaultCode(s, Access.Fetch | Access.User, true, false)).toBe(PfErr.P | PfErr.U);
    s.cr4 = Cr4.PAE;
    s.efer = Efer.NXE;
    expect(pageFaultCode(s, Access.Fetch | Access.User, true, false)).toBe(PfErr.P | PfErr.U | PfErr.ID);
    expect(pageFaultCode(s, Access.Write, false, true)).toBe(PfErr.P | PfErr.W | PfErr.RSVD);
    s.cr4 = Cr4.SMEP;
    s.efer = 0;
    expect(pageFaultCode(s, Access.Fetch, true, false)).toBe(PfErr.P | PfErr.ID);
  });
});

describe('walk: SMEP and SMAP (SDM vol. 3 §4.6.1)', () => {
  let s: CpuState;
  let mem: GuestMemory;
  // 32-bit paging: 0x400000 a user page (U/S at both levels), 0x401000 a supervisor page behind a
  // user PDE, 0x402000 a read-only user page
  const USER = 0x400000, KERNEL = 0x401000, USER_RO = 0x402000;

  beforeEach(() => {
    s = new CpuState();
    mem = new GuestMemory([{ base: 0, size: 0x100000 }]);
    s.cr0 = Cr0.PE | Cr0.PG | Cr0.WP;
    s.cr3 = 0x1000;
    s.cpl = 0;
    mem.write32(0x1000 + 1 * 4, 0x2000 | 0x7);
    mem.write32(0x2000 + 0 * 4, 0x9000 | 0x7);
    mem.write32(0x2000 + 1 * 4, 0xa000 | 0x3);
    mem.write32(0x2000 + 2 * 4, 0xb000 | 0x5);
  });

  it('SMEP: supervisor fetches from user pages fault with I/D set (even without PAE/NXE)', () => {
    expect(walk(s, mem, USER, Access.Fetch, result())).toBe(-1);
    s.cr4 = Cr4.SMEP;
    expect(walk(s, mem, USER, Access.Fetch, result())).toBe(PfErr.P | PfErr.ID);
    expect(walk(s, mem, KERNEL, Access.Fetch, result())).toBe(-1);
    expect(walk(s, mem, USER, Access.Fetch | Access.User, result())).toBe(-1);
    expect(walk(s, mem, USER, Access.Read, result())).toBe(-1); // data: SMAP's business
    // a not-present fault reports I/D under SMEP too
    expect(walk(s, mem, 0x403000, Access.Fetch, result())).toBe(PfErr.ID);
  });

  it('SMEP: a page is a user page only with U/S at every level', () => {
    s.cr4 = Cr4.SMEP;
    mem.write32(0x1000 + 1 * 4, 0x2000 | 0x3); // PDE supervisor: every page under it is a supervisor page
    expect(walk(s, mem, USER, Access.Fetch, result())).toBe(-1);
  });

  it('SMAP: supervisor data accesses to user pages fault unless AC is set', () => {
    s.cr4 = Cr4.SMAP;
    expect(walk(s, mem, USER, Access.Read, result())).toBe(PfErr.P);
    expect(walk(s, mem, USER, Access.Write, result())).toBe(PfErr.P | PfErr.W);
    expect(walk(s, mem, KERNEL, Access.Write, result())).toBe(-1);
    expect(walk(s, mem, USER, Access.Write | Access.User, result())).toBe(-1);
    expect(walk(s, mem, USER, Access.Fetch, result())).toBe(-1); // fetches: SMEP's business
    s.rflagsRest |= Flag.AC;
    expect(walk(s, mem, USER, Access.Read, result())).toBe(-1);
    expect(walk(s, mem, USER, Access.Write, result())).toBe(-1);
  });

  it('SMAP: implicit supervisor accesses fault whatever AC says, and so does everything supervisor at CPL 3', () => {
    s.cr4 = Cr4.SMAP;
    s.rflagsRest |= Flag.AC;
    expect(walk(s, mem, USER, Access.Read | Access.Implicit, result())).toBe(PfErr.P);
    expect(walk(s, mem, USER, Access.Write | Access.Implicit, result())).toBe(PfErr.P | PfErr.W);
    expect(walk(s, mem, KERNEL, Access.Read | Access.Implicit, result())).toBe(-1);
    s.cpl = 3;
    expect(walk(s, mem, USER, Access.Read, result())).toBe(PfErr.P);
    expect(walk(s, mem, USER, Access.Read | Access.User, result())).toBe(-1);
  });

  it('SMAP with AC: CR0.WP still decides writes to read-only user pages', () => {
    s.cr4 = Cr4.SMAP;
    s.rflagsRest |= Flag.AC;
    expect(walk(s, mem, USER_RO, Access.Write, result())).toBe(PfErr.P | PfErr.W);
    s.cr0 &= ~Cr0.WP;
    expect(walk(s, mem, USER_RO, Access.Write, result())).toBe(-1);
    s.rflagsRest &= ~Flag.AC;
    expect(walk(s, mem, USER_RO, Access.Write, result())).toBe(PfErr.P | PfErr.W);
  });
});
