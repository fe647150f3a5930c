/**
 * Control and debug registers: MOV to/from CR0/CR2/CR3/CR4/CR8 and DR0..DR7, CLTS, LMSW, and
 * `computeMode`, the one definition of the execution mode from CR0.PE, EFER.LMA, CS.L/D and
 * RFLAGS.VM.
 *
 * TLB rules: a CR3 write flushes non-global translations; a change of CR0.PG/WP/PE or
 * CR4.PGE/PAE/PSE/SMEP/SMAP (or EFER.NXE, in msr.ts) flushes everything. Long mode is activated
 * (EFER.LMA) when paging is enabled with EFER.LME and CR4.PAE set.
 */
import { CpuFault, type SystemHost } from '../system-api.js';
import { Cr0, Cr4, Efer, Flag, Mode, SReg, Vec, type CpuState } from '../state.js';
import { features } from '../features.js';
import { hi32, isCanonical, join64, joinU64 } from './bits.js';
import { ATTR_DB, ATTR_L } from './descriptor.js';
import { MAX_PHYS_BITS } from './paging.js';

/** Recompute s.mode from CR0.PE, EFER.LMA, CS.L/D and RFLAGS.VM (returns it too). */
export function computeMode(s: CpuState): Mode {
  const cs = s.segAttr[SReg.CS]!;
  let mode: Mode;
  if (!(s.cr0 & Cr0.PE)) mode = Mode.Real;
  else if (s.efer & Efer.LMA) mode = cs & ATTR_L ? Mode.Long64 : cs & ATTR_DB ? Mode.Compat32 : Mode.Compat16;
  else if (s.rflagsRest & Flag.VM) mode = Mode.V86;
  else mode = cs & ATTR_DB ? Mode.Protected32 : Mode.Protected16;
  s.mode = mode;
  return mode;
}

/** CR0 bits we implement (the rest are reserved: #GP). */
const CR0_VALID = Cr0.PE | Cr0.MP | Cr0.EM | Cr0.TS | Cr0.ET | Cr0.NE | Cr0.WP | Cr0.AM | Cr0.NW | Cr0.CD | Cr0.PG;

/** CR4 bits the CPU supports (CPUID-consistent). */
export function cr4ValidBits(): number {
  let v = Cr4.TSD | Cr4.DE | Cr4.PSE | Cr4.PAE | Cr4.MCE | Cr4.PGE | Cr4.PCE |
    Cr4.OSFXSR | Cr4.OSXMMEXCPT;
  if (features.fsgsbase) v |= Cr4.FSGSBASE;
  if (features.umip) v |= Cr4.UMIP;
  if (features.xsave) v |= Cr4.OSXSAVE;
  if (features.smep) v |= Cr4.SMEP;
  if (features.smap) v |= Cr4.SMAP;
  return v;
}

function requireCpl0(s: CpuState): void {
  if (s.mode === Mode.V86 || (s.mode !== Mode.Real && s.cpl !== 0)) throw new CpuFault(Vec.GP, 0);
}

const gp0 = (): CpuFault => new CpuFault(Vec.GP, 0);

/** MOV CRn, r: the new value as (lo, hi) halves. */
export function writeCr(h: SystemHost, n: number, lo: number, hi: number): void {
  const s = h.s;
  requireCpl0(s);
  const lma = (s.efer & Efer.LMA) !== 0;
  switch (n) {
    case 0:
      writeCr0(h, lo, hi);
      return;
    case 2:
      s.cr2 = lma ? join64(lo, hi) : lo >>> 0;
      return;
    case 3: {
      // Bits above MAXPHYADDR are reserved (bit 63 too: no PCID).
      if (lma && hi >>> 0 >= 1 << (MAX_PHYS_BITS - 32)) throw gp0();
      s.cr3 = lma ? joinU64(lo, hi) : lo >>> 0;
      h.flushTlb(true);
      return;
    }
    case 4:
      writeCr4(h, lo, hi);
      return;
    case 8:
      if (s.mode !== Mode.Long64) throw new CpuFault(Vec.UD);
      if (hi !== 0 || lo & ~0xf) throw gp0();
      s.cr8 = lo & 0xf;
      return;
    default:
      throw new CpuFault(Vec.UD);
  }
}

function writeCr0(h: SystemHost, lo: number, hi: number): void {
  const s = h.s;
  if (hi !== 0 || lo & ~CR0_VALID) throw gp0();
  let v = (lo | Cr0.ET) >>> 0;
  if (v & Cr0.PG && !(v & Cr0.PE)) throw gp0();
  if (v & Cr0.NW && !(v & Cr0.CD)) throw gp0();
  const old = s.cr0 >>> 0;
  let efer = s.efer;
  const enablingPaging = (v & Cr0.PG) !== 0 && !(old & Cr0.PG);
  const disablingPaging = !(v & Cr0.PG) && (old & Cr0.PG) !== 0;
  if (enablingPaging && efer & Efer.LME) {
    if (!(s.cr4 & Cr4.PAE)) throw gp0();
    if (s.segAttr[SReg.CS]! & ATTR_L) throw gp0();
    efer |= Efer.LMA;
  }
  if (disablingPaging && efer & Efer.LMA) {
    if (s.mode === Mode.Long64) throw gp0();
    efer &= ~Efer.LMA;
  }
  v = v | 0;
  s.cr0 = v;
  s.efer = efer;
  if ((old ^ v) & (Cr0.PG | Cr0.WP | Cr0.PE)) h.flushTlb(false);
  if (old !== (v >>> 0)) h.modeChanged();
}

function writeCr4(h: SystemHost, lo: number, hi: number): void {
  const s = h.s;
  if (hi !== 0 || lo & ~cr4ValidBits()) throw gp0();
  if (s.efer & Efer.LMA && !(lo & Cr4.PAE)) throw gp0();
  const old = s.cr4;
  s.cr4 = lo;
  // SMEP/SMAP: the TLB holds permissions decided under the old bits
  if ((old ^ lo) & (Cr4.PGE | Cr4.PAE | Cr4.PSE | Cr4.SMEP | Cr4.SMAP)) h.flushTlb(false);
  if (old !== lo) h.modeChanged();
}

/** MOV r, CRn: returns the low 32 bits; the high 32 bits are left in h.scratchHi. */
export function readCr(h: SystemHost, n: number): number {
  const s = h.s;
  requireCpl0(s);
  let v: number;
  switch (n) {
    case 0: v = s.cr0 >>> 0; break;
    case 2: v = s.cr2; break;
    case 3: v = s.cr3; break;
    case 4: v = s.cr4 >>> 0; break;
    case 8:
      if (s.mode !== Mode.Long64) throw new CpuFault(Vec.UD);
      v = s.cr8;
      break;
    default:
      throw new CpuFault(Vec.UD);
  }
  h.scratchHi = hi32(v) >>> 0;
  return v >>> 0;
}

// ---- debug registers (the breakpoints they set are the core's: core/debug.ts) ----------------

const DR6_FIXED = 0xffff0ff0;
const DR7_FIXED = 0x400;

const DR6_BD = 1 << 13;
const DR7_GD = 1 << 13;

/**
 * General detect (DR7.GD): any MOV to or from a debug register faults with #DB, DR6.BD set; GD is
 * cleared as the handler is entered, so that it may use them.
 */
function generalDetect(s: CpuState): void {
  if (!(s.dr[7]! & DR7_GD)) return;
  s.dr[6] = (s.dr[6]! | DR6_BD) >>> 0;
  s.dr[7] = (s.dr[7]! & ~DR7_GD) >>> 0;
  throw new CpuFault(Vec.DB);
}

function drIndex(s: CpuState, n: number): number {
  if (n === 4 || n === 5) {
    if (s.cr4 & Cr4.DE) throw new CpuFault(Vec.UD);
    return n + 2;
  }
  if (n > 7) throw new CpuFault(Vec.UD);
  return n;
}

/** MOV DRn, r. */
export function writeDr(h: SystemHost, n: number, lo: number, hi: number): void {
  const s = h.s;
  requireCpl0(s);
  const i = drIndex(s, n);
  generalDetect(s);
  if (i >= 6) {
    if (s.efer & Efer.LMA && hi !== 0) throw gp0();
    s.dr[i] = i === 6 ? (lo | DR6_FIXED) >>> 0 : ((lo | DR7_FIXED) & ~0xd800) >>> 0;
    if (i === 7) h.debugChanged?.();
    return;
  }
  const v = s.efer & Efer.LMA ? join64(lo, hi) : lo >>> 0;
  if (!isCanonical(v)) throw gp0();
  s.dr[i] = v;
  h.debugChanged?.();
}

/** MOV r, DRn: low 32 bits returned, high in h.scratchHi. */
export function readDr(h: SystemHost, n: number): number {
  const s = h.s;
  requireCpl0(s);
  const i = drIndex(s, n);
  generalDetect(s);
  let v = s.dr[i]!;
  if (i === 6) v = (v | DR6_FIXED) >>> 0;
  if (i === 7) v = (v | DR7_FIXED) >>> 0;
  h.scratchHi = hi32(v) >>> 0;
  return v >>> 0;
}

/** CLTS: clear CR0.TS. */
export function clts(h: SystemHost): void {
  requireCpl0(h.s);
  if (!(h.s.cr0 & Cr0.TS)) return;
  h.s.cr0 &= ~Cr0.TS;
  h.modeChanged();
}

/** LMSW: load PE/MP/EM/TS (PE can be set, not cleared). */
export function lmsw(h: SystemHost, v: number): void {
  const s = h.s;
  requireCpl0(s);
  const bits = Cr0.PE | Cr0.MP | Cr0.EM | Cr0.TS;
  const nv = (s.cr0 & ~(Cr0.MP | Cr0.EM | Cr0.TS)) | (v & bits);
  writeCr0(h, nv >>> 0, 0);
}
