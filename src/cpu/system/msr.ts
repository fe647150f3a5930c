/**
 * RDMSR/WRMSR: ECX selects the MSR, EDX:EAX carry the value. The set is what Linux touches on
 * a CPU advertising our CPUID (cpuid.ts). Everything else is #GP(0): Linux probes optional
 * MSRs with rdmsr_safe/wrmsr_safe, and a #GP is the right answer for an absent MSR.
 *
 * MSRs without a CpuState field (MTRRs, MCG_STATUS, DEBUGCTL) are stored per CPU in a side
 * table here (not part of snapshots yet).
 */
import { CpuFault, type SystemHost } from '../system-api.js';
import { Cr0, Efer, Mode, Reg, SReg, Vec, type CpuState } from '../state.js';
import { features } from '../features.js';
import { MSR_KVM_SYSTEM_TIME, MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_WALL_CLOCK, MSR_KVM_WALL_CLOCK_NEW, writeSystemTime, writeWallClock } from './pvclock.js';
import { hi32, isCanonical, join64, joinU64, TWO32 } from './bits.js';

export const MSR_TSC = 0x10;
export const MSR_APIC_BASE = 0x1b;
export const MSR_UCODE_REV = 0x8b;
export const MSR_MTRRCAP = 0xfe;
export const MSR_SYSENTER_CS = 0x174;
export const MSR_SYSENTER_ESP = 0x175;
export const MSR_SYSENTER_EIP = 0x176;
export const MSR_MCG_CAP = 0x179;
export const MSR_MCG_STATUS = 0x17a;
export const MSR_MISC_ENABLE = 0x1a0;
export const MSR_DEBUGCTL = 0x1d9;
export const MSR_MTRR_PHYS_FIRST = 0x200;
export const MSR_MTRR_PHYS_LAST = 0x20f;
export const MSR_MTRR_FIX64K = 0x250;
export const MSR_MTRR_FIX16K_80000 = 0x258;
export const MSR_MTRR_FIX16K_A0000 = 0x259;
export const MSR_MTRR_FIX4K_FIRST = 0x268;
export const MSR_MTRR_FIX4K_LAST = 0x26f;
export const MSR_PAT = 0x277;
export const MSR_MTRR_DEF_TYPE = 0x2ff;
export const MSR_EFER = 0xc0000080;
export const MSR_STAR = 0xc0000081;
export const MSR_LSTAR = 0xc0000082;
export const MSR_CSTAR = 0xc0000083;
export const MSR_SFMASK = 0xc0000084;
export const MSR_FS_BASE = 0xc0000100;
export const MSR_GS_BASE = 0xc0000101;
export const MSR_KERNEL_GS_BASE = 0xc0000102;
export const MSR_TSC_AUX = 0xc0000103;

/** MTRRcap: 8 variable ranges, fixed ranges, write-combining. */
const MTRRCAP_VALUE = 0x508;
/**
 * MTRRdefType before the guest writes it: MTRRs enabled, default type write-back (what firmware
 * leaves behind; Firecracker sets the same). Linux keeps PAT enabled only when MTRRs are on.
 */
const MTRR_DEF_TYPE_RESET = 0x806;
/** MTRR memory types allowed in the fixed/default fields: UC WC WT WP WB. */
const MTRR_TYPE_OK = (t: number): boolean => t === 0 || t === 1 || t === 4 || t === 5 || t === 6;
/** PAT entry types: UC WC WT WP WB UC-. */
const PAT_TYPE_OK = (t: number): boolean => t === 0 || t === 1 || t === 4 || t === 5 || t === 6 || t === 7;

/** Stored MSRs without a CpuState field, per CPU: msr → [lo, hi]. */
const stored = new WeakMap<CpuState, Map<number, [number, number]>>();

function storedMsrs(s: CpuState): Map<number, [number, number]> {
  let m = stored.get(s);
  if (!m) {
    m = new Map();
    stored.set(s, m);
  }
  return m;
}

function isStoredMsr(msr: number): boolean {
  return (
    (msr >= MSR_MTRR_PHYS_FIRST && msr <= MSR_MTRR_PHYS_LAST) ||
    msr === MSR_MTRR_FIX64K || msr === MSR_MTRR_FIX16K_80000 || msr === MSR_MTRR_FIX16K_A0000 ||
    (msr >= MSR_MTRR_FIX4K_FIRST && msr <= MSR_MTRR_FIX4K_LAST) ||
    msr === MSR_MTRR_DEF_TYPE || msr === MSR_MCG_STATUS || msr === MSR_DEBUGCTL ||
    (features.kvmClock &&
      (msr === MSR_KVM_SYSTEM_TIME_NEW || msr === MSR_KVM_SYSTEM_TIME || msr === MSR_KVM_WALL_CLOCK_NEW || msr === MSR_KVM_WALL_CLOCK))
  );
}

/** MSRs kept in the side table (snapshots): [msr, lo, hi], by index. */
export function storedMsrList(s: CpuState): [number, number, number][] {
  return [...storedMsrs(s)].map(([msr, [lo, hi]]): [number, number, number] => [msr, lo >>> 0, hi >>> 0]).sort((x, y) => x[0] - y[0]);
}

/** Replace the side table (snapshot restore; the caller validated the values). */
export function setStoredMsrs(s: CpuState, list: readonly (readonly [number, number, number])[]): void {
  const m = storedMsrs(s);
  m.clear();
  for (const [msr, lo, hi] of list) m.set(msr, [lo >>> 0, hi >>> 0]);
}

/** Is `msr` one the side table keeps (MTRRs, MCG_STATUS, DEBUGCTL, kvm-clock)? */
export function isStoredMsrIndex(msr: number): boolean {
  return isStoredMsr(msr);
}

/** Reserved-bit check of a side-table MSR value, as WRMSR does it (false: WRMSR would #GP). */
export function storedMsrValueOk(msr: number, lo: number, hi: number): boolean {
  if (msr === MSR_MCG_STATUS || msr === MSR_KVM_SYSTEM_TIME_NEW || msr === MSR_KVM_SYSTEM_TIME || msr === MSR_KVM_WALL_CLOCK_NEW || msr === MSR_KVM_WALL_CLOCK) return true;
  try {
    validateMtrr(msr, lo >>> 0, hi >>> 0);
    return true;
  } catch {
    return false;
  }
}

const gp0 = (): CpuFault => new CpuFault(Vec.GP, 0);

function requireCpl0(s: CpuState): void {
  if (s.mode === Mode.V86 || (s.mode !== Mode.Real && s.cpl !== 0)) throw gp0();
}

/** Read MSR `msr` → lo returned, hi in `msrHi`; throws #GP(0) for unknown MSRs. */
let msrHi = 0;
export function readMsr(h: SystemHost, msr: number): number {
  const s = h.s;
  msrHi = 0;
  switch (msr) {
    case MSR_TSC: {
      const lo = h.readTsc();
      msrHi = h.scratchHi >>> 0;
      return lo >>> 0;
    }
    case MSR_APIC_BASE: return s.apicBase >>> 0;
    case MSR_UCODE_REV: return 0;
    case MSR_MTRRCAP: return MTRRCAP_VALUE;
    case MSR_SYSENTER_CS: return s.sysenterCs & 0xffff;
    case MSR_SYSENTER_ESP: return split(s.sysenterEsp);
    case MSR_SYSENTER_EIP: return split(s.sysenterEip);
    case MSR_MCG_CAP:
      if (!features.mca) throw gp0();
      return 0; // no banks, no MCG_CTL
    case MSR_MISC_ENABLE:
      msrHi = s.miscEnableHi >>> 0;
      return s.miscEnable >>> 0;
    case MSR_PAT:
      msrHi = Number((s.pat >> 32n) & 0xffffffffn);
      return Number(s.pat & 0xffffffffn);
    case MSR_EFER: return s.efer >>> 0;
    case MSR_STAR:
      msrHi = s.starHi >>> 0;
      return s.star >>> 0;
    case MSR_LSTAR: return split(s.lstar);
    case MSR_CSTAR: return split(s.cstar);
    case MSR_SFMASK: return s.sfmask >>> 0;
    case MSR_FS_BASE: return split(s.segBase[SReg.FS]!);
    case MSR_GS_BASE: return split(s.segBase[SReg.GS]!);
    case MSR_KERNEL_GS_BASE: return split(s.kernelGsBase);
    case MSR_TSC_AUX:
      if (!features.rdtscp && !features.rdpid) throw gp0();
      return s.tscAux >>> 0;
    default:
      if (msr === MSR_MCG_STATUS && !features.mca) throw gp0();
      if (isStoredMsr(msr)) {
        const v = storedMsrs(s).get(msr);
        msrHi = v ? v[1] : 0;
        if (!v && msr === MSR_MTRR_DEF_TYPE) return MTRR_DEF_TYPE_RESET;
        return v ? v[0] : 0;
      }
      throw gp0();
  }
}

function split(n: number): number {
  msrHi = hi32(n) >>> 0;
  return n >>> 0;
}

/** High half of the value returned by the last readMsr. */
export function readMsrHi(): number {
  return msrHi;
}

/** Write MSR `msr` = hi:lo; throws #GP(0) for unknown MSRs and reserved bits. */
export function writeMsr(h: SystemHost, msr: number, lo: number, hi: number): void {
  const s = h.s;
  lo >>>= 0;
  hi >>>= 0;
  const canonical = (): number => {
    const v = join64(lo, hi);
    if (!isCanonical(v)) throw gp0();
    return v;
  };
  switch (msr) {
    case MSR_TSC: {
      const now = h.readTsc();
      const cur = joinU64(now, h.scratchHi);
      s.tscOffset += joinU64(lo, hi) - cur;
      return;
    }
    case MSR_APIC_BASE:
      // base (page aligned, below 4 GiB here) and EN; BSP is read-only; x2APIC (EXTD, 0x400) is
      // not offered; reserved bits #GP
      if (hi !== 0 || lo & 0x6ff) throw gp0();
      s.apicBase = ((lo & ~0x100) | (s.apicBase & 0x100)) >>> 0;
      h.apicBaseChanged?.(s.apicBase);
      return;
    case MSR_UCODE_REV:
      return; // Linux writes 0 before CPUID to latch the revision
    case MSR_SYSENTER_CS:
      s.sysenterCs = lo & 0xffff;
      return;
    case MSR_SYSENTER_ESP:
      s.sysenterEsp = canonical();
      return;
    case MSR_SYSENTER_EIP:
      s.sysenterEip = canonical();
      return;
    case MSR_MISC_ENABLE:
      s.miscEnable = lo;
      s.miscEnableHi = hi;
      return;
    case MSR_PAT: {
      for (let i = 0; i < 4; i++) {
        if (!PAT_TYPE_OK((lo >>> (8 * i)) & 0xff) || !PAT_TYPE_OK((hi >>> (8 * i)) & 0xff)) throw gp0();
      }
      s.pat = (BigInt(hi) << 32n) | BigInt(lo);
      return;
    }
    case MSR_EFER: {
      let valid = Efer.SCE | Efer.LME | Efer.NXE;
      valid |= Efer.LMA; // read-only: writes must keep its current value
      if (hi !== 0 || lo & ~valid) throw gp0();
      if ((lo ^ s.efer) & Efer.LMA) throw gp0();
      if ((lo ^ s.efer) & Efer.LME && s.cr0 & Cr0.PG) throw gp0();
      const old = s.efer;
      s.efer = lo;
      if ((old ^ lo) & Efer.NXE) h.flushTlb(false);
      if (old !== lo) h.modeChanged();
      return;
    }
    case MSR_STAR:
      s.star = lo;
      s.starHi = hi;
      return;
    case MSR_LSTAR:
      s.lstar = canonical();
      return;
    case MSR_CSTAR:
      s.cstar = canonical();
      return;
    case MSR_SFMASK:
      s.sfmask = lo;
      return;
    case MSR_FS_BASE:
      s.segBase[SReg.FS] = canonical();
      return;
    case MSR_GS_BASE:
      s.segBase[SReg.GS] = canonical();
      return;
    case MSR_KERNEL_GS_BASE:
      s.kernelGsBase = canonical();
      return;
    case MSR_TSC_AUX:
      if ((!features.rdtscp && !features.rdpid) || hi !== 0) throw gp0();
      s.tscAux = lo;
      return;
    case MSR_MCG_STATUS:
      if (!features.mca) throw gp0();
      storedMsrs(s).set(msr, [lo, hi]);
      return;
    case MSR_KVM_SYSTEM_TIME_NEW:
    case MSR_KVM_SYSTEM_TIME:
      if (!features.kvmClock) throw gp0();
      writeSystemTime(h, lo, hi);
      storedMsrs(s).set(msr, [lo, hi]);
      return;
    case MSR_KVM_WALL_CLOCK_NEW:
    case MSR_KVM_WALL_CLOCK:
      if (!features.kvmClock) throw gp0();
      writeWallClock(h, lo, hi);
      storedMsrs(s).set(msr, [lo, hi]);
      return;
    default:
      if (isStoredMsr(msr)) {
        validateMtrr(msr, lo, hi);
        storedMsrs(s).set(msr, [lo, hi]);
        return;
      }
      throw gp0();
  }
}

/** Reserved-bit checks for the MTRR MSRs (physical address width 40). */
function validateMtrr(msr: number, lo: number, hi: number): void {
  if (msr === MSR_MTRR_DEF_TYPE) {
    if (hi !== 0 || lo & ~0xcff || !MTRR_TYPE_OK(lo & 0xff)) throw gp0();
  } else if (msr >= MSR_MTRR_PHYS_FIRST && msr <= MSR_MTRR_PHYS_LAST) {
    if (hi & ~0xff) throw gp0();
    if (msr & 1 ? lo & 0x7ff : lo & 0xf00 || !MTRR_TYPE_OK(lo & 0xff)) throw gp0();
  } else if (msr !== MSR_DEBUGCTL) {
    for (let i = 0; i < 4; i++) {
      if (!MTRR_TYPE_OK((lo >>> (8 * i)) & 0xff) || !MTRR_TYPE_OK((hi >>> (8 * i)) & 0xff)) throw gp0();
    }
  }
}

/** RDMSR: ECX in, EDX:EAX out (upper halves of RAX/RDX cleared). */
export function rdmsr(h: SystemHost): void {
  const s = h.s;
  requireCpl0(s);
  const lo = readMsr(h, s.gpr[2 * Reg.RCX]! >>> 0);
  s.gpr[2 * Reg.RAX] = lo | 0;
  s.gpr[2 * Reg.RAX + 1] = 0;
  s.gpr[2 * Reg.RDX] = msrHi | 0;
  s.gpr[2 * Reg.RDX + 1] = 0;
}

/** WRMSR: ECX selects, EDX:EAX is the value. */
export function wrmsr(h: SystemHost): void {
  const s = h.s;
  requireCpl0(s);
  writeMsr(h, s.gpr[2 * Reg.RCX]! >>> 0, s.gpr[2 * Reg.RAX]! >>> 0, s.gpr[2 * Reg.RDX]! >>> 0);
}

/** TSC value helper for RDTSC(P) callers that want a plain number. */
export function tscNumber(h: SystemHost): number {
  const lo = h.readTsc();
  return (h.scratchHi >>> 0) * TWO32 + (lo >>> 0);
}
