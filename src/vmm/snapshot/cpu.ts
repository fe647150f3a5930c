/**
 * The vCPU's architectural state as engine-neutral data, and back into the software CPU.
 *
 * Names follow KVM's structures so the kvm engine maps them one to one: `regs` is kvm_regs,
 * `sregs` kvm_sregs (segments as kvm_segment: selector, base, limit, type, s, dpl, present,
 * avl, l, db, g), `fpu` kvm_fpu (x87 registers in stack order ST(0)..ST(7) as 80-bit values,
 * as FXSAVE stores them; the tag word is the full 16-bit one, two bits per physical register),
 * `msrs` kvm_msrs entries, `debugRegs` kvm_debugregs, `events` the part of kvm_vcpu_events and
 * kvm_mp_state an instruction boundary can hold. 64-bit values are unsigned "0x..." hex.
 *
 * Everything implicit in the software CPU is made explicit: the lazy arithmetic flags are read
 * through getRflags(), a lazy-flag record the wasm back end left is synced first, segment caches
 * are saved whole, x87 registers as their exact 80-bit images, the MSRs without a CpuState
 * field (MTRRs, kvm-clock...) from the MSR module's side table, NMI blocking from the interrupt
 * module's. The TSC is saved as its value at the snapshot's clock time (MSR 0x10), so a machine
 * whose clock continues from that time continues the TSC without a jump.
 *
 * Restore validates everything first (`parseCpu`), then writes (`applyCpu`) and clears every
 * cache derived from the old state (TLBs, translated code, mode fields).
 */
import type { Cpu } from '../../cpu/core/cpu.js';
import { F64_ZERO, type CpuState } from '../../cpu/state.js';
import { computeMode, cr4ValidBits } from '../../cpu/system/control.js';
import { isNmiBlocked, setNmiBlocked } from '../../cpu/system/interrupts.js';
import {
  MSR_APIC_BASE, MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_MISC_ENABLE, MSR_PAT, MSR_SFMASK, MSR_STAR, MSR_SYSENTER_CS,
  MSR_SYSENTER_EIP, MSR_SYSENTER_ESP, MSR_TSC, MSR_TSC_AUX, isStoredMsrIndex, setStoredMsrs, storedMsrList, storedMsrValueOk,
} from '../../cpu/system/msr.js';
import { ext } from '../../cpu/fpu/f80.js';
import { physOf, regExt, setRegExt } from '../../cpu/fpu/x87.js';
import { MXCSR_MASK } from '../../cpu/fpu/fxsave.js';
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import { MSR_KVM_SYSTEM_TIME, MSR_KVM_SYSTEM_TIME_NEW, refreshSystemTime } from '../../cpu/system/pvclock.js';
import {
  arr, bool, halvesOf, opt, hex, hex64, hex64Of, hex64OfHalves, int, invalid, obj, parse, signedOf, u16, u32, unsignedOf, type Schema,
} from './check.js';

/** kvm_segment. */
export interface SegmentSnapshot {
  selector: number;
  base: string;
  limit: number;
  type: number;
  s: number;
  dpl: number;
  present: number;
  avl: number;
  l: number;
  db: number;
  g: number;
}

/** kvm_dtable. */
export interface DtableSnapshot {
  base: string;
  limit: number;
}

export const GPR_NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
export type GprName = (typeof GPR_NAMES)[number];
const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

export interface CpuSnapshot {
  /** kvm_regs: the 16 general registers, RIP, RFLAGS. */
  regs: Record<GprName | 'rip' | 'rflags', string>;
  /** kvm_sregs. */
  sregs: {
    cs: SegmentSnapshot; ds: SegmentSnapshot; es: SegmentSnapshot; fs: SegmentSnapshot; gs: SegmentSnapshot; ss: SegmentSnapshot;
    tr: SegmentSnapshot; ldt: SegmentSnapshot;
    gdt: DtableSnapshot; idt: DtableSnapshot;
    cr0: string; cr2: string; cr3: string; cr4: string; cr8: string; efer: string; apicBase: string;
  };
  /** XCR0 (kvm_xcrs). */
  xcr0: string;
  /** Current privilege level (SS.DPL on hardware; kept so a conforming CS cannot blur it). */
  cpl: number;
  /** kvm_fpu. */
  fpu: {
    /** ST(0)..ST(7), 80-bit values (sign/exponent in the top 16 bits). */
    fpr: string[];
    fcw: number;
    fsw: number;
    /** Full tag word (two bits per physical register, 3 = empty). */
    ftw: number;
    lastOpcode: number;
    lastIp: string;
    lastDp: string;
    mxcsr: number;
    /** XMM0..XMM15, 128-bit values. */
    xmm: string[];
  };
  /** kvm_msrs entries: every MSR the CPU models that holds state (EFER and FS/GS base are in sregs). */
  msrs: { index: number; data: string }[];
  /** kvm_debugregs. */
  debugRegs: { db: string[]; dr6: string; dr7: string };
  /** At an instruction boundary: HLT waiting, STI/MOV SS shadow, NMIs blocked until IRET. */
  events: { halted: boolean; interruptShadow: boolean; nmiMasked: boolean };
  /**
   * kvm-clock time minus TSC / rate, in ns (CpuState.kvmClockOffsetNs): present only for a guest
   * whose kvm-clock began under KVM (moved from the kvm engine); absent means 0.
   */
  kvmClockOffsetNs?: number;
}

const bit1 = int(0, 1);
const segSchema = obj({ selector: u16, base: hex64, limit: u32, type: int(0, 15), s: bit1, dpl: int(0, 3), present: bit1, avl: bit1, l: bit1, db: bit1, g: bit1 });
const dtSchema = obj({ base: hex64, limit: u16 });
const regsFields: Record<string, Schema> = { rip: hex64, rflags: hex64 };
for (const n of GPR_NAMES) regsFields[n] = hex64;

/** Most MSR entries a snapshot may carry (the modelled set is about 40). */
const MAX_MSRS = 128;

export const cpuSchema: Schema = obj({
  regs: obj(regsFields),
  sregs: obj({
    cs: segSchema, ds: segSchema, es: segSchema, fs: segSchema, gs: segSchema, ss: segSchema, tr: segSchema, ldt: segSchema,
    gdt: dtSchema, idt: dtSchema,
    cr0: hex64, cr2: hex64, cr3: hex64, cr4: hex64, cr8: hex64, efer: hex64, apicBase: hex64,
  }),
  xcr0: hex64,
  cpl: int(0, 3),
  fpu: obj({ fpr: arr(hex(80), 8), fcw: u16, fsw: u16, ftw: u16, lastOpcode: int(0, 0x7ff), lastIp: hex64, lastDp: hex64, mxcsr: u32, xmm: arr(hex(128), 16) }),
  msrs: arr(obj({ index: u32, data: hex64 }), 0, MAX_MSRS),
  debugRegs: obj({ db: arr(hex64, 4), dr6: hex64, dr7: hex64 }),
  events: obj({ halted: bool, interruptShadow: bool, nmiMasked: bool }),
  kvmClockOffsetNs: opt(int(-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)),
});

// ---- segments --------------------------------------------------------------------------------

/** Our attribute word (descriptor bits 8..23 >> 8, limit bits cleared) as kvm_segment fields. */
function segOf(sel: number, base: number, limit: number, attr: number): SegmentSnapshot {
  return {
    selector: sel & 0xffff,
    base: hex64Of(base),
    limit: limit >>> 0,
    type: attr & 0xf,
    s: (attr >> 4) & 1,
    dpl: (attr >> 5) & 3,
    present: (attr >> 7) & 1,
    avl: (attr >> 12) & 1,
    l: (attr >> 13) & 1,
    db: (attr >> 14) & 1,
    g: (attr >> 15) & 1,
  };
}

function attrOf(g: SegmentSnapshot): number {
  return g.type | (g.s << 4) | (g.dpl << 5) | (g.present << 7) | (g.avl << 12) | (g.l << 13) | (g.db << 14) | (g.g << 15);
}

// ---- MSRs ------------------------------------------------------------------------------------

const PAT_TYPE_OK = (t: number): boolean => t === 0 || t === 1 || t === 4 || t === 5 || t === 6 || t === 7;
/** IA32_APIC_BASE bits we model: BSP (8) and global enable (11); the base is fixed. */
const APIC_BASE_FLAGS = 0x900;
const TWO47 = 2 ** 47;
const RFLAGS_VALID = 0x3f7fd7;
const EFER_VALID = 0x1 | 0x100 | 0x400 | 0x800;
const TSC_PER_NS = TSC_FREQUENCY_HZ / 1e9;

const hexMsr = (i: number): string => `0x${i.toString(16)}`;

/** The TSC at machine time `clockNs` (as readTsc computes it). */
function tscAt(s: CpuState, clockNs: number): number {
  return Math.floor(clockNs * TSC_PER_NS) + s.tscOffset;
}

// ---- save ------------------------------------------------------------------------------------

/** The CPU's architectural state at machine time `clockNs` (the time the TSC is read at). */
export function saveCpu(cpu: Cpu, clockNs: number): CpuSnapshot {
  cpu.wasm?.syncFlags();
  const s = cpu.s;
  const regs = {} as CpuSnapshot['regs'];
  GPR_NAMES.forEach((n, r) => (regs[n] = hex64OfHalves(s.gpr[2 * r]!, s.gpr[2 * r + 1]!)));
  regs.rip = hex64Of(s.rip);
  regs.rflags = hex64Of(cpu.getRflags());
  const seg = (i: number): SegmentSnapshot => segOf(s.segSel[i]!, s.segBase[i]!, s.segLimit[i]!, s.segAttr[i]!);
  const [es, cs, ss, ds, fs, gs] = SEG_NAMES.map((_, i) => seg(i)) as [SegmentSnapshot, SegmentSnapshot, SegmentSnapshot, SegmentSnapshot, SegmentSnapshot, SegmentSnapshot];
  // LDTR has no attribute word here: an LDT descriptor (type 2), present when loaded
  const ldt = segOf(s.ldtrSel, s.ldtrBase, s.ldtrLimit, 0x2 | ((s.ldtrSel & 0xfffc) !== 0 ? 0x80 : 0));
  const fpr: string[] = [];
  for (let k = 0; k < 8; k++) {
    regExt(s, physOf(s, k));
    fpr.push(`0x${((BigInt(ext.se & 0xffff) << 64n) | (BigInt(ext.hi >>> 0) << 32n) | BigInt(ext.lo >>> 0)).toString(16)}`);
  }
  const xmm: string[] = [];
  for (let r = 0; r < 16; r++) {
    let v = 0n;
    for (let lane = 3; lane >= 0; lane--) v = (v << 32n) | BigInt(s.xmm[4 * r + lane]! >>> 0);
    xmm.push(`0x${v.toString(16)}`);
  }
  const msrs: { index: number; data: string }[] = [];
  const put = (index: number, n: number): void => void msrs.push({ index, data: hex64Of(n) });
  put(MSR_TSC, tscAt(s, clockNs));
  put(MSR_SYSENTER_CS, s.sysenterCs & 0xffff);
  put(MSR_SYSENTER_ESP, s.sysenterEsp);
  put(MSR_SYSENTER_EIP, s.sysenterEip);
  msrs.push({ index: MSR_MISC_ENABLE, data: hex64OfHalves(s.miscEnable, s.miscEnableHi) });
  msrs.push({ index: MSR_PAT, data: `0x${BigInt.asUintN(64, s.pat).toString(16)}` });
  msrs.push({ index: MSR_STAR, data: hex64OfHalves(s.star, s.starHi) });
  put(MSR_LSTAR, s.lstar);
  put(MSR_CSTAR, s.cstar);
  put(MSR_SFMASK, s.sfmask >>> 0);
  put(MSR_KERNEL_GS_BASE, s.kernelGsBase);
  put(MSR_TSC_AUX, s.tscAux >>> 0);
  for (const [index, lo, hi] of storedMsrList(s)) msrs.push({ index, data: hex64OfHalves(lo, hi) });
  const snap: CpuSnapshot = {
    regs,
    sregs: {
      cs, ds, es, fs, gs, ss,
      tr: segOf(s.trSel, s.trBase, s.trLimit, s.trAttr),
      ldt,
      gdt: { base: hex64Of(s.gdtrBase), limit: s.gdtrLimit & 0xffff },
      idt: { base: hex64Of(s.idtrBase), limit: s.idtrLimit & 0xffff },
      cr0: hex64Of(s.cr0 >>> 0),
      cr2: hex64Of(s.cr2),
      cr3: hex64Of(s.cr3),
      cr4: hex64Of(s.cr4 >>> 0),
      cr8: hex64Of(s.cr8),
      efer: hex64Of(s.efer >>> 0),
      apicBase: hex64Of(s.apicBase >>> 0),
    },
    xcr0: hex64Of(s.xcr0),
    cpl: s.cpl,
    fpu: {
      fpr,
      fcw: s.fpuControl & 0xffff,
      fsw: s.fpuStatus & 0xffff,
      ftw: s.fpuTag & 0xffff,
      lastOpcode: s.fpuOpcode & 0x7ff,
      lastIp: hex64Of(s.fpuIp),
      lastDp: hex64Of(s.fpuDp),
      mxcsr: s.mxcsr >>> 0,
      xmm,
    },
    msrs,
    debugRegs: { db: [0, 1, 2, 3].map((i) => hex64Of(s.dr[i]!)), dr6: hex64Of(s.dr[6]!), dr7: hex64Of(s.dr[7]!) },
    events: { halted: s.halted, interruptShadow: s.interruptShadow, nmiMasked: isNmiBlocked(s) },
  };
  if (s.kvmClockOffsetNs !== 0) snap.kvmClockOffsetNs = Math.round(s.kvmClockOffsetNs);
  return snap;
}

// ---- validate --------------------------------------------------------------------------------

/** A CPU snapshot checked field by field, in the software CPU's representation. */
export interface ParsedCpu {
  snap: CpuSnapshot;
  rip: number;
  rflags: number;
  segs: { sel: number; base: number; limit: number; attr: number }[];
  tr: { sel: number; base: number; limit: number; attr: number };
  ldt: { sel: number; base: number; limit: number };
  gdtBase: number;
  idtBase: number;
  cr0: number; cr2: number; cr3: number; cr4: number; cr8: number; efer: number; apicBase: number; xcr0: number;
  fpuIp: number;
  fpuDp: number;
  dr: number[];
  /** Values for the CpuState MSR fields, and the side-table MSRs. */
  msr: {
    tsc: number; sysenterCs: number; sysenterEsp: number; sysenterEip: number; miscEnable: number; miscEnableHi: number; pat: bigint;
    star: number; starHi: number; lstar: number; cstar: number; sfmask: number; kernelGsBase: number; tscAux: number;
  };
  stored: [number, number, number][];
}

/** Validate an untrusted CPU snapshot (throws SnapshotError) without touching any CPU. */
export function parseCpu(raw: unknown, path = 'cpu'): ParsedCpu {
  const snap = parse<CpuSnapshot>(cpuSchema, raw, path);
  const canonical = (h: string, where: string): number => {
    const v = signedOf(h);
    if (v === undefined || v < -TWO47 || v >= TWO47) throw invalid(`${path}.${where}`, `is ${h}, not a canonical address`);
    return v;
  };
  const unsigned = (h: string, where: string, limit: number): number => {
    const v = unsignedOf(h);
    if (v === undefined || v >= limit) throw invalid(`${path}.${where}`, `is ${h}, not below 0x${limit.toString(16)}`);
    return v;
  };
  const sr = snap.sregs;
  const cr0 = unsigned(sr.cr0, 'sregs.cr0', 2 ** 32);
  const cr4 = unsigned(sr.cr4, 'sregs.cr4', 2 ** 32);
  if (cr4 & ~cr4ValidBits()) throw invalid(`${path}.sregs.cr4`, `is ${sr.cr4}, with bits this CPU does not have (valid: 0x${cr4ValidBits().toString(16)})`);
  const efer = unsigned(sr.efer, 'sregs.efer', 2 ** 32);
  if (efer & ~EFER_VALID) throw invalid(`${path}.sregs.efer`, `is ${sr.efer}, with bits other than SCE, LME, LMA, NXE`);
  const lma = (efer & 0x400) !== 0;
  if (lma !== ((efer & 0x100) !== 0 && ((cr0 & 0x8000_0001) >>> 0) === 0x8000_0001 && (cr4 & 0x20) !== 0)) {
    throw invalid(`${path}.sregs.efer`, `LMA (${lma ? 1 : 0}) disagrees with EFER.LME, CR0.PG/PE and CR4.PAE`);
  }
  const apicBase = unsigned(sr.apicBase, 'sregs.apicBase', 2 ** 32);
  if (apicBase & ~APIC_BASE_FLAGS & 0xfff) throw invalid(`${path}.sregs.apicBase`, `is ${sr.apicBase}: only the page address, BSP (bit 8) and EN (bit 11) may be set (x2APIC is not supported)`);
  const xcr0 = unsigned(snap.xcr0, 'xcr0', 4);
  if ((xcr0 & 1) === 0) throw invalid(`${path}.xcr0`, 'has x87 (bit 0) clear, which XCR0 cannot');
  const cr8 = unsigned(sr.cr8, 'sregs.cr8', 16);
  const rflagsN = unsigned(snap.regs.rflags, 'regs.rflags', 2 ** 32);
  if (rflagsN & ~RFLAGS_VALID) throw invalid(`${path}.regs.rflags`, `is ${snap.regs.rflags}, with reserved bits set`);
  const long = lma && (sr.cs.l === 1);
  const rip = long ? canonical(snap.regs.rip, 'regs.rip') : unsigned(snap.regs.rip, 'regs.rip', 2 ** 32);
  const segs = SEG_NAMES.map((n) => {
    const g = sr[n];
    return { sel: g.selector, base: canonical(g.base, `sregs.${n}.base`), limit: g.limit, attr: attrOf(g) };
  });
  if (lma && sr.cs.l === 1 && sr.cs.db === 1) throw invalid(`${path}.sregs.cs`, 'has both L and D/B set (reserved in long mode)');
  const tr = { sel: sr.tr.selector, base: canonical(sr.tr.base, 'sregs.tr.base'), limit: sr.tr.limit, attr: attrOf(sr.tr) };
  const ldt = { sel: sr.ldt.selector, base: canonical(sr.ldt.base, 'sregs.ldt.base'), limit: sr.ldt.limit };
  const f = snap.fpu;
  if (f.mxcsr & ~MXCSR_MASK) throw invalid(`${path}.fpu.mxcsr`, `is 0x${f.mxcsr.toString(16)}, with reserved bits set`);
  const anyAddr = (h: string, where: string): number => {
    const v = signedOf(h);
    if (v === undefined) throw invalid(`${path}.${where}`, `is ${h}, beyond what this CPU holds (2^53)`);
    return v;
  };
  // DR4/DR5 are aliases of DR6/DR7 (never stored)
  const dr = [...snap.debugRegs.db.map((h, i) => canonical(h, `debugRegs.db[${i}]`)), 0, 0,
    unsigned(snap.debugRegs.dr6, 'debugRegs.dr6', 2 ** 32), unsigned(snap.debugRegs.dr7, 'debugRegs.dr7', 2 ** 32)];

  // MSRs: each once, only ones the CPU models, with values WRMSR would accept
  const seen = new Set<number>();
  const msr: ParsedCpu['msr'] = {
    tsc: NaN, sysenterCs: 0, sysenterEsp: 0, sysenterEip: 0, miscEnable: 1, miscEnableHi: 0, pat: 0x0007040600070406n,
    star: 0, starHi: 0, lstar: 0, cstar: 0, sfmask: 0, kernelGsBase: 0, tscAux: 0,
  };
  const stored: [number, number, number][] = [];
  snap.msrs.forEach(({ index, data }, i) => {
    const where = `msrs[${i}] (MSR ${hexMsr(index)})`;
    if (seen.has(index)) throw invalid(`${path}.${where}`, 'appears twice');
    seen.add(index);
    const [lo, hi] = halvesOf(data);
    switch (index) {
      case MSR_TSC: {
        const v = unsignedOf(data);
        if (v === undefined) throw invalid(`${path}.${where}`, `is ${data}, a TSC this CPU cannot hold (above 2^53)`);
        msr.tsc = v;
        return;
      }
      case MSR_SYSENTER_CS: msr.sysenterCs = unsigned(data, where, 0x10000); return;
      case MSR_SYSENTER_ESP: msr.sysenterEsp = canonical(data, where); return;
      case MSR_SYSENTER_EIP: msr.sysenterEip = canonical(data, where); return;
      case MSR_MISC_ENABLE: msr.miscEnable = lo >>> 0; msr.miscEnableHi = hi >>> 0; return;
      case MSR_PAT: {
        for (let b = 0; b < 8; b++) {
          if (!PAT_TYPE_OK(Number((BigInt(data) >> BigInt(8 * b)) & 0xffn))) throw invalid(`${path}.${where}`, `is ${data}, with an invalid memory type in entry ${b}`);
        }
        msr.pat = BigInt(data);
        return;
      }
      case MSR_STAR: msr.star = lo >>> 0; msr.starHi = hi >>> 0; return;
      case MSR_LSTAR: msr.lstar = canonical(data, where); return;
      case MSR_CSTAR: msr.cstar = canonical(data, where); return;
      case MSR_SFMASK: msr.sfmask = unsigned(data, where, 2 ** 32); return;
      case MSR_KERNEL_GS_BASE: msr.kernelGsBase = canonical(data, where); return;
      case MSR_TSC_AUX: msr.tscAux = unsigned(data, where, 2 ** 32); return;
      default:
        if (index === MSR_APIC_BASE) throw invalid(`${path}.${where}`, 'belongs in sregs.apicBase');
        if (!isStoredMsrIndex(index)) throw invalid(`${path}.${where}`, 'is not an MSR this CPU models (a state from another CPU model?)');
        if (!storedMsrValueOk(index, lo, hi)) throw invalid(`${path}.${where}`, `is ${data}, which WRMSR would refuse (reserved bits or memory type)`);
        stored.push([index, lo >>> 0, hi >>> 0]);
    }
  });
  if (Number.isNaN(msr.tsc)) throw invalid(`${path}.msrs`, `has no TSC (MSR ${hexMsr(MSR_TSC)}): the guest's TSC could not continue`);
  return {
    snap, rip, rflags: rflagsN, segs, tr, ldt,
    gdtBase: canonical(sr.gdt.base, 'sregs.gdt.base'),
    idtBase: canonical(sr.idt.base, 'sregs.idt.base'),
    cr0, cr2: canonical(sr.cr2, 'sregs.cr2'), cr3: unsigned(sr.cr3, 'sregs.cr3', 2 ** 52), cr4, cr8, efer, apicBase, xcr0,
    fpuIp: anyAddr(f.lastIp, 'fpu.lastIp'),
    fpuDp: anyAddr(f.lastDp, 'fpu.lastDp'),
    dr, msr, stored,
  };
}

// ---- restore ---------------------------------------------------------------------------------

/** A number for a field that started as F64_ZERO: keep it a double (see F64_ZERO). */
const dbl = (v: number): number => (v === 0 ? F64_ZERO : v);

/**
 * Write a validated snapshot into `cpu` (its clock must read the snapshot's time, `clockNs`,
 * for the TSC to continue) and drop every cache derived from the old state.
 */
export function applyCpu(cpu: Cpu, p: ParsedCpu, clockNs: number): void {
  cpu.wasm?.syncFlags(); // a pending lazy-flag record must not land on top of the restored flags
  const s = cpu.s;
  const snap = p.snap;
  GPR_NAMES.forEach((n, r) => {
    const [lo, hi] = halvesOf(snap.regs[n]);
    s.gpr[2 * r] = lo;
    s.gpr[2 * r + 1] = hi;
  });
  p.segs.forEach((g, i) => {
    s.segSel[i] = g.sel;
    s.segBase[i] = g.base;
    s.segLimit[i] = g.limit;
    s.segAttr[i] = g.attr;
  });
  s.trSel = p.tr.sel;
  s.trBase = dbl(p.tr.base);
  s.trLimit = p.tr.limit;
  s.trAttr = p.tr.attr;
  s.ldtrSel = p.ldt.sel;
  s.ldtrBase = dbl(p.ldt.base);
  s.ldtrLimit = p.ldt.limit;
  s.gdtrBase = dbl(p.gdtBase);
  s.gdtrLimit = snap.sregs.gdt.limit;
  s.idtrBase = dbl(p.idtBase);
  s.idtrLimit = snap.sregs.idt.limit;
  s.cr0 = p.cr0 | 0;
  s.cr2 = dbl(p.cr2);
  s.cr3 = dbl(p.cr3);
  s.cr4 = p.cr4;
  s.cr8 = p.cr8;
  s.efer = p.efer;
  s.xcr0 = p.xcr0;
  s.apicBase = p.apicBase;
  s.cpl = snap.cpl;
  const m = p.msr;
  s.sysenterCs = m.sysenterCs;
  s.sysenterEsp = dbl(m.sysenterEsp);
  s.sysenterEip = dbl(m.sysenterEip);
  s.miscEnable = m.miscEnable;
  s.miscEnableHi = m.miscEnableHi;
  s.pat = m.pat;
  s.star = dbl(m.star);
  s.starHi = dbl(m.starHi);
  s.lstar = dbl(m.lstar);
  s.cstar = dbl(m.cstar);
  s.sfmask = dbl(m.sfmask);
  s.kernelGsBase = dbl(m.kernelGsBase);
  s.tscAux = m.tscAux;
  s.tscOffset = dbl(m.tsc - Math.floor(clockNs * TSC_PER_NS));
  setStoredMsrs(s, p.stored);
  for (let i = 0; i < 8; i++) s.dr[i] = p.dr[i]!;

  // x87: registers in stack order relative to TOP, then the words (setRegExt retags)
  const f = snap.fpu;
  s.fpuStatus = f.fsw;
  for (let k = 0; k < 8; k++) {
    const v = BigInt(f.fpr[k]!);
    setRegExt(s, physOf(s, k), Number(v & 0xffff_ffffn) | 0, Number((v >> 32n) & 0xffff_ffffn) | 0, Number(v >> 64n));
  }
  s.fpuControl = f.fcw;
  s.fpuTag = f.ftw;
  s.fpuOpcode = f.lastOpcode;
  s.fpuIp = dbl(p.fpuIp);
  s.fpuDp = dbl(p.fpuDp);
  s.mxcsr = f.mxcsr;
  f.xmm.forEach((h, r) => {
    const v = BigInt(h);
    for (let lane = 0; lane < 4; lane++) s.xmm[4 * r + lane] = Number((v >> BigInt(32 * lane)) & 0xffff_ffffn) | 0;
  });

  cpu.setRflags(p.rflags, 0xffff_ffff);
  s.rip = dbl(p.rip);
  s.halted = snap.events.halted;
  s.interruptShadow = snap.events.interruptShadow;
  setNmiBlocked(s, snap.events.nmiMasked);
  s.kvmClockOffsetNs = snap.kvmClockOffsetNs ?? 0;
  computeMode(s);
  cpu.discardDerivedState();
  // a kvm-clock structure KVM left (a guest moved from the kvm engine) gets our scale
  for (const [index, lo, hi] of p.stored) if (index === MSR_KVM_SYSTEM_TIME_NEW || index === MSR_KVM_SYSTEM_TIME) refreshSystemTime(cpu, lo, hi);
  // modeChanged() forces CPL 0 in real mode and 3 in V86; elsewhere the snapshot's CPL stands
}
