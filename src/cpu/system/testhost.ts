/**
 * A SystemHost test double for the system module's unit tests: linear accesses go through
 * `walk` (so paging tests and delivery tests share one path) byte by byte, flags live entirely
 * in rflagsRest, and TLB flushes / mode changes / port accesses are recorded for assertions.
 * Not used by the real CPU (src/cpu/core implements SystemHost itself).
 */
import { Access, CpuFault, type SystemHost, type WalkResult } from '../system-api.js';
import { CpuState, Cr0, Cr4, Efer, Mode, Vec } from '../state.js';
import { GuestMemory } from '../../machine/memory.js';
import { hi32 } from './bits.js';
import { computeMode } from './control.js';
import { walk } from './paging.js';
import { descAttr, descBase, descLimit } from './descriptor.js';

export class TestHost implements SystemHost {
  readonly s = new CpuState();
  scratchHi = 0;
  readonly flushes: string[] = [];
  modeChanges = 0;
  tsc = 0;
  readonly ports: string[] = [];
  private readonly out: WalkResult = { phys: 0, writable: false, user: false, nx: false, global: false };

  constructor(readonly memory: GuestMemory = new GuestMemory([{ base: 0, size: 16 * 1024 * 1024 }])) {}

  getRflags(): number {
    return this.s.rflagsRest | 2;
  }
  setRflags(value: number, mask: number): void {
    this.s.rflagsRest = ((this.s.rflagsRest & ~mask) | (value & mask) | 2) >>> 0;
  }

  private phys(lin: number, access: number, sup: boolean): number {
    const acc = access | (sup ? Access.Implicit : this.s.cpl === 3 ? Access.User : 0);
    const code = walk(this.s, this.memory, lin, acc, this.out);
    if (code >= 0) {
      this.s.cr2 = lin;
      throw new CpuFault(Vec.PF, code);
    }
    return this.out.phys + (lin & 0xfff);
  }
  private rd(lin: number, n: number, sup: boolean): number {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + this.memory.read8(this.phys(lin + i, Access.Read, sup));
    return v;
  }
  private wr(lin: number, n: number, v: number, sup: boolean): void {
    // Translate every byte first so a faulting write changes nothing.
    const addrs: number[] = [];
    for (let i = 0; i < n; i++) addrs.push(this.phys(lin + i, Access.Write, sup));
    for (let i = 0; i < n; i++) {
      this.memory.write8(addrs[i]!, v & 0xff);
      v = Math.floor(v / 256);
    }
  }
  readLin16(lin: number, sup: boolean): number {
    return this.rd(lin, 2, sup);
  }
  readLin32(lin: number, sup: boolean): number {
    return this.rd(lin, 4, sup);
  }
  readLin64(lin: number, sup: boolean): number {
    const lo = this.rd(lin, 4, sup);
    this.scratchHi = this.rd(lin + 4, 4, sup);
    return lo;
  }
  writeLin16(lin: number, v: number, sup: boolean): void {
    this.wr(lin, 2, v, sup);
  }
  writeLin32(lin: number, v: number, sup: boolean): void {
    this.wr(lin, 4, v >>> 0, sup);
  }
  writeLin64(lin: number, lo: number, hi: number, sup: boolean): void {
    this.wr(lin + 4, 4, hi >>> 0, sup);
    this.wr(lin, 4, lo >>> 0, sup);
  }
  flushTlb(keepGlobal: boolean): void {
    this.flushes.push(keepGlobal ? 'nonglobal' : 'all');
  }
  invlpg(lin: number): void {
    this.flushes.push(`page ${lin}`);
  }
  modeChanged(): void {
    const m = computeMode(this.s);
    if (m === Mode.Real) this.s.cpl = 0;
    if (m === Mode.V86) this.s.cpl = 3;
    this.modeChanges++;
  }
  portRead(port: number, size: 1 | 2 | 4): number {
    this.ports.push(`in ${port} ${size}`);
    return 0xff;
  }
  portWrite(port: number, size: 1 | 2 | 4, value: number): void {
    this.ports.push(`out ${port} ${size} ${value}`);
  }
  readTsc(): number {
    this.scratchHi = hi32(this.tsc) >>> 0;
    return this.tsc >>> 0;
  }
}

/** Encode a code/data segment descriptor (8 bytes) as a bigint. */
export function segDesc(base: number, limit: number, attr: number): bigint {
  // attr: cached layout (type|S|DPL|P in bits 0..7, AVL L DB G in bits 12..15)
  const lo = ((limit & 0xffff) | ((base & 0xffff) << 16)) >>> 0;
  const hi = (((base >>> 16) & 0xff) | ((attr & 0xf0ff) << 8) | (limit & 0xf0000) | (base & 0xff000000)) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Write a 16-byte long-mode system descriptor (TSS/LDT) at `addr`. */
export function writeSysDesc64(mem: GuestMemory, addr: number, base: number, limit: number, type: number): void {
  const lo32 = base % 2 ** 32;
  mem.write64(addr, segDesc(lo32, limit, 0x80 | type));
  mem.write32(addr + 8, Math.floor(base / 2 ** 32) >>> 0);
  mem.write32(addr + 12, 0);
}

/** Write a 16-byte long-mode interrupt/trap gate. */
export function writeGate64(mem: GuestMemory, idt: number, vector: number, sel: number, offset: bigint, opts: { type?: number; dpl?: number; ist?: number; present?: boolean } = {}): void {
  const type = opts.type ?? 0xe;
  const off = BigInt.asUintN(64, offset);
  const lo = (Number(off & 0xffffn)) | (sel << 16);
  const hi = (Number(off & 0xffff0000n) | ((opts.present ?? true) ? 0x8000 : 0) | ((opts.dpl ?? 0) << 13) | (type << 8) | (opts.ist ?? 0)) >>> 0;
  mem.write32(idt + vector * 16, lo >>> 0);
  mem.write32(idt + vector * 16 + 4, hi);
  mem.write32(idt + vector * 16 + 8, Number((off >> 32n) & 0xffffffffn));
  mem.write32(idt + vector * 16 + 12, 0);
}

/** Write an 8-byte protected-mode gate (type 0xe/0xf 32-bit, 6/7 16-bit). */
export function writeGate32(mem: GuestMemory, idt: number, vector: number, sel: number, offset: number, opts: { type?: number; dpl?: number; present?: boolean } = {}): void {
  const type = opts.type ?? 0xe;
  mem.write32(idt + vector * 8, ((offset & 0xffff) | (sel << 16)) >>> 0);
  mem.write32(idt + vector * 8 + 4, ((offset & 0xffff0000) | ((opts.present ?? true) ? 0x8000 : 0) | ((opts.dpl ?? 0) << 13) | (type << 8)) >>> 0);
}

/** Selectors of the long-mode test environment (Linux's layout). */
export const K_CS = 0x10;
export const K_DS = 0x18;
export const U_CS32 = 0x23;
export const U_DS = 0x2b;
export const U_CS = 0x33;
export const TSS_SEL = 0x40;
export const GDT = 0x10000;
export const TSS = 0x11000;
export const IDT = 0x12000;
export const RSP0 = 0x80000;
export const IST1 = 0x90008;

/**
 * A host in 64-bit mode at CPL 0: identity-mapped first 16 MiB (2 MiB user-writable pages),
 * GDT with kernel/user segments and a 64-bit TSS (RSP0, IST1), an empty 256-entry IDT.
 */
export function longModeHost(): TestHost {
  const h = new TestHost();
  const m = h.memory;
  const s = h.s;
  m.write64(0x1000, 0x2000n | 7n);
  m.write64(0x2000, 0x3000n | 7n);
  for (let i = 0; i < 8; i++) m.write64(0x3000 + i * 8, BigInt(i * 0x200000) | 0x87n);
  m.write64(GDT + 0x08, segDesc(0, 0xfffff, 0xc09b));
  m.write64(GDT + K_CS, segDesc(0, 0xfffff, 0xa09b));
  m.write64(GDT + K_DS, segDesc(0, 0xfffff, 0xc093));
  m.write64(GDT + (U_CS32 & ~7), segDesc(0, 0xfffff, 0xc0fb));
  m.write64(GDT + (U_DS & ~7), segDesc(0, 0xfffff, 0xc0f3));
  m.write64(GDT + (U_CS & ~7), segDesc(0, 0xfffff, 0xa0fb));
  writeSysDesc64(m, GDT + TSS_SEL, TSS, 0x67, 0x9);
  m.write64(TSS + 4, BigInt(RSP0));
  m.write64(TSS + 0x24, BigInt(IST1));
  s.gdtrBase = GDT;
  s.gdtrLimit = 0x4f;
  s.idtrBase = IDT;
  s.idtrLimit = 256 * 16 - 1;
  s.cr0 = Cr0.PE | Cr0.PG | Cr0.WP | Cr0.ET;
  s.cr4 = Cr4.PAE;
  s.efer = Efer.LME | Efer.LMA | Efer.NXE | Efer.SCE;
  s.cr3 = 0x1000;
  s.cpl = 0;
  setSeg(h, 1, K_CS);
  for (const r of [0, 2, 3, 4, 5]) setSeg(h, r, K_DS);
  h.modeChanged();
  s.trSel = TSS_SEL;
  s.trBase = TSS;
  s.trLimit = 0x67;
  s.trAttr = 0x8b;
  s.gpr[8] = 0x70000;
  return h;
}

/** Load a segment cache straight from the test GDT (no checks). */
export function setSeg(h: TestHost, sreg: number, sel: number): void {
  const v = h.memory.read64(h.s.gdtrBase + (sel & 0xfff8));
  const lo = Number(v & 0xffffffffn) | 0;
  const hi = Number(v >> 32n) | 0;
  h.s.segSel[sreg] = sel;
  h.s.segBase[sreg] = descBase(lo, hi);
  h.s.segLimit[sreg] = descLimit(lo, hi);
  h.s.segAttr[sreg] = descAttr(hi);
}

/** Run `fn`; return the CpuFault it raised, or undefined when it completed. */
export function fault(fn: () => void): CpuFault | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof CpuFault) return e;
    throw e;
  }
  return undefined;
}
