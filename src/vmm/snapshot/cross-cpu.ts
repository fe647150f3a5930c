/**
 * One vCPU between the two engines' snapshot forms (cross-engine.ts):
 *
 *   kvm engine: KvmVcpuState — kvm_regs/kvm_sregs by name, and KVM's own ABI blobs (the XSAVE
 *               area, the vcpu events, the debug registers, the CPUID table it was given);
 *   bt engine:  CpuSnapshot (cpu.ts), whose register names were chosen to be KVM's.
 *
 * What needs translating: the x87/SSE state (the XSAVE area's legacy region, with its abridged
 * tag byte, against our full tag word); the events (KVM's MP state and event structure against
 * "halted", "interrupt shadow", "NMI blocked"); the MSRs (KVM lists every MSR it knows, the
 * bt CPU models fewer: the rest are paravirtual or performance MSRs a guest on the bt engine
 * does not have); and the CPU model: a guest only moves to an engine whose CPU offers every
 * feature the guest was offered (checkFeatures), since it may use any of them at any time.
 */
import * as C from '../../kvm/constants.generated.js';
import type { KvmSegment, KvmVcpuState } from '../../kvm/vcpu-state.js';
import { btCpuidLookup, btCpuidTable, kvmCpuidLookup, missingFeatures, type CpuidLookup } from '../../kvm/cpu-model.js';
import {
  MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_MISC_ENABLE, MSR_PAT, MSR_SFMASK, MSR_STAR, MSR_SYSENTER_CS, MSR_SYSENTER_EIP,
  MSR_SYSENTER_ESP, MSR_TSC, MSR_TSC_AUX, isStoredMsrIndex,
} from '../../cpu/system/msr.js';
import { tagOfExt } from '../../cpu/fpu/x87-stack.js';
import { MXCSR_MASK } from '../../cpu/fpu/fxsave.js';
import { SnapshotError } from './check.js';
import { GPR_NAMES, type CpuSnapshot, type SegmentSnapshot } from './cpu.js';

const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
const hex = (v: bigint | number): string => `0x${BigInt(v).toString(16)}`;

/** Message prefixes: which way the snapshot moves. */
const TO_BT = 'Cannot restore the kvm snapshot on the bt engine';
const TO_KVM = 'Cannot restore the bt snapshot on the kvm engine';

// ---- the XSAVE area's legacy region (FXSAVE layout, SDM vol. 1 table 10-2) -----------------------

const FX_FCW = 0;
const FX_FSW = 2;
const FX_FTW = 4;
const FX_FOP = 6;
const FX_FIP = 8;
const FX_FDP = 16;
const FX_MXCSR = 24;
const FX_MXCSR_MASK = 28;
const FX_ST = 32;
const FX_XMM = 160;
const XSAVE_HEADER = 512;
const XSTATE_X87 = 1n;
const XSTATE_SSE = 2n;
/** Power-on x87 control word (what the x87 component in its init state holds). */
const FCW_INIT = 0x37f;

function fpuFromXsave(area: Uint8Array): CpuSnapshot['fpu'] {
  const dv = new DataView(area.buffer, area.byteOffset, area.byteLength);
  const bv = dv.getBigUint64(XSAVE_HEADER, true);
  const x87 = (bv & XSTATE_X87) !== 0n;
  const sse = (bv & XSTATE_SSE) !== 0n;
  const fsw = x87 ? dv.getUint16(FX_FSW, true) : 0;
  const top = (fsw >> 11) & 7;
  const abridged = x87 ? dv.getUint8(FX_FTW) : 0;
  const fpr: string[] = [];
  const words: [number, number, number][] = [];
  for (let k = 0; k < 8; k++) {
    const at = FX_ST + 16 * k;
    const w: [number, number, number] = x87 ? [dv.getUint32(at, true), dv.getUint32(at + 4, true), dv.getUint16(at + 8, true)] : [0, 0, 0];
    words.push(w);
    fpr.push(hex((BigInt(w[2]) << 64n) | (BigInt(w[1]) << 32n) | BigInt(w[0])));
  }
  let ftw = 0;
  for (let p = 0; p < 8; p++) {
    const w = words[(p - top) & 7]!;
    ftw |= (abridged & (1 << p) ? tagOfExt(w[0] | 0, w[1] | 0, w[2]) : 3) << (2 * p);
  }
  const xmm: string[] = [];
  for (let r = 0; r < 16; r++) {
    const at = FX_XMM + 16 * r;
    xmm.push(sse ? hex((dv.getBigUint64(at + 8, true) << 64n) | dv.getBigUint64(at, true)) : '0x0');
  }
  return {
    fpr,
    fcw: x87 ? dv.getUint16(FX_FCW, true) : FCW_INIT,
    fsw,
    ftw,
    lastOpcode: x87 ? dv.getUint16(FX_FOP, true) & 0x7ff : 0,
    lastIp: x87 ? hex(dv.getBigUint64(FX_FIP, true)) : '0x0',
    lastDp: x87 ? hex(dv.getBigUint64(FX_FDP, true)) : '0x0',
    // the kernel fills MXCSR in (its init value when SSE is not in use)
    mxcsr: dv.getUint32(FX_MXCSR, true),
    xmm,
  };
}

function xsaveFromFpu(f: CpuSnapshot['fpu']): Uint8Array {
  const area = new Uint8Array(C.KVM_XSAVE_SIZE);
  const dv = new DataView(area.buffer);
  dv.setUint16(FX_FCW, f.fcw, true);
  dv.setUint16(FX_FSW, f.fsw, true);
  let abridged = 0;
  for (let p = 0; p < 8; p++) if (((f.ftw >> (2 * p)) & 3) !== 3) abridged |= 1 << p;
  dv.setUint8(FX_FTW, abridged);
  dv.setUint16(FX_FOP, f.lastOpcode, true);
  dv.setBigUint64(FX_FIP, BigInt.asUintN(64, BigInt(f.lastIp)), true);
  dv.setBigUint64(FX_FDP, BigInt.asUintN(64, BigInt(f.lastDp)), true);
  dv.setUint32(FX_MXCSR, f.mxcsr, true);
  dv.setUint32(FX_MXCSR_MASK, MXCSR_MASK, true);
  f.fpr.forEach((h, k) => {
    const v = BigInt(h);
    const at = FX_ST + 16 * k;
    dv.setBigUint64(at, v & 0xffff_ffff_ffff_ffffn, true);
    dv.setUint16(at + 8, Number(v >> 64n), true);
  });
  f.xmm.forEach((h, r) => {
    const v = BigInt(h);
    dv.setBigUint64(FX_XMM + 16 * r, v & 0xffff_ffff_ffff_ffffn, true);
    dv.setBigUint64(FX_XMM + 16 * r + 8, v >> 64n, true);
  });
  dv.setBigUint64(XSAVE_HEADER, XSTATE_X87 | XSTATE_SSE, true);
  return area;
}

// ---- MSRs ----------------------------------------------------------------------------------------

const BT_MSRS = new Set([
  MSR_TSC, MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, MSR_MISC_ENABLE, MSR_PAT, MSR_STAR, MSR_LSTAR, MSR_CSTAR,
  MSR_SFMASK, MSR_KERNEL_GS_BASE, MSR_TSC_AUX,
]);
/** MSRs the bt CPU models (a kvm vCPU's other MSRs are left behind). */
export const btModelsMsr = (index: number): boolean => BT_MSRS.has(index) || isStoredMsrIndex(index);

// ---- the vCPU ------------------------------------------------------------------------------------

const SEGS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

/** How a move treats CPU features the guest was offered and the new engine lacks. */
export interface CpuMismatch {
  /** Go on with a warning instead of refusing (as QEMU's -cpu without `enforce` does). */
  allow?: boolean;
  warn?: (line: string) => void;
}

function mismatch(missing: string, refusal: string, m: CpuMismatch): void {
  if (!missing) return;
  if (!m.allow) throw new SnapshotError(refusal);
  m.warn?.(`typevisor: warning: the guest was offered CPU features the engine it moves to lacks (${missing}); it faults if it uses them`);
}

/**
 * The bt engine's snapshot of kvm vCPU `index`, the part of it the bt engine keeps in its local
 * APIC, and whether it waits for a STARTUP IPI (an application processor not started yet, or sent
 * INIT: KVM's UNINITIALIZED and INIT_RECEIVED). `checkModel`: compare the CPU model with the bt
 * CPU's (once per machine: every vCPU was given the same one).
 */
export function cpuFromKvm(v: KvmVcpuState, cpuMismatch: CpuMismatch = {}, index = 0, checkModel = true): { cpu: CpuSnapshot; nmiPending: boolean; waitingSipi: boolean } {
  const ev = unb64(v.events);
  const e = (off: number): number => ev[off] ?? 0;
  const busy = [
    [e(C.KVM_VCPU_EVENTS_EXCEPTION_INJECTED) || e(C.KVM_VCPU_EVENTS_EXCEPTION_PENDING), 'an exception'],
    [e(C.KVM_VCPU_EVENTS_INTERRUPT_INJECTED), 'an interrupt'],
    [e(C.KVM_VCPU_EVENTS_NMI_INJECTED), 'an NMI'],
    [e(C.KVM_VCPU_EVENTS_SMI_SMM), 'system management mode'],
    [e(C.KVM_VCPU_EVENTS_TRIPLE_FAULT_PENDING), 'a triple fault'],
  ].find(([on]) => on);
  if (busy) throw new SnapshotError(`${TO_BT}: KVM was in the middle of delivering ${busy[1]} when it was taken; take the snapshot again (pause, resume, pause)`);
  const waitingSipi = v.mpState === C.KVM_MP_STATE_UNINITIALIZED || v.mpState === C.KVM_MP_STATE_INIT_RECEIVED;
  if (v.mpState === C.KVM_MP_STATE_SIPI_RECEIVED) {
    throw new SnapshotError(`${TO_BT}: KVM had just delivered a STARTUP IPI to vCPU ${index} when it was taken; take the snapshot again (pause, resume, pause)`);
  }
  if (waitingSipi && index === 0) {
    throw new SnapshotError(`${TO_BT}: its boot vCPU waits for INIT/SIPI (KVM MP state ${v.mpState}), which the bt engine's boot CPU has no form for; take the snapshot once the guest runs`);
  }
  if (!waitingSipi && v.mpState !== C.KVM_MP_STATE_RUNNABLE && v.mpState !== C.KVM_MP_STATE_HALTED) {
    throw new SnapshotError(`${TO_BT}: vCPU ${index} is in KVM MP state ${v.mpState}, which the bt engine has no form for (a corrupt state file)`);
  }
  if (v.sregs.interruptBitmap.some((w) => BigInt(w) !== 0n)) throw new SnapshotError(`${TO_BT}: its vCPU has an external interrupt queued outside the in-kernel APIC (a corrupt state file)`);
  const missing = checkModel ? missingFeatures(kvmCpuidLookup(unb64(v.cpuid)), btCpuidLookup()) : '';
  mismatch(missing, `${TO_BT}: the guest was offered CPU features the bt engine's CPU lacks (${missing}); start the VM with --cpu-model typevisor on the kvm engine to take snapshots that move (or restore with --allow-cpu-mismatch)`, cpuMismatch);
  const seg = (g: KvmSegment): SegmentSnapshot => ({ selector: g.selector, base: g.base, limit: g.limit, type: g.type, s: g.s, dpl: g.dpl, present: g.present, avl: g.avl, l: g.l, db: g.db, g: g.g });
  const sr = v.sregs;
  const dr = unb64(v.debugregs);
  const ddv = new DataView(dr.buffer);
  const realMode = (BigInt(sr.cr0) & 1n) === 0n;
  const v86 = (BigInt(v.regs.rflags) & 0x20000n) !== 0n;
  const regs = {} as CpuSnapshot['regs'];
  for (const n of GPR_NAMES) regs[n] = v.regs[n];
  regs.rip = v.regs.rip;
  regs.rflags = v.regs.rflags;
  const evShadow = e(C.KVM_VCPU_EVENTS_INTERRUPT_SHADOW);
  return {
    cpu: {
      regs,
      sregs: {
        cs: seg(sr.cs), ds: seg(sr.ds), es: seg(sr.es), fs: seg(sr.fs), gs: seg(sr.gs), ss: seg(sr.ss), tr: seg(sr.tr), ldt: seg(sr.ldt),
        gdt: sr.gdt, idt: sr.idt,
        cr0: sr.cr0, cr2: sr.cr2, cr3: sr.cr3, cr4: sr.cr4, cr8: sr.cr8, efer: sr.efer, apicBase: sr.apicBase,
      },
      xcr0: v.xcrs.find((x) => x.xcr === 0)?.value ?? '0x1',
      cpl: realMode ? 0 : v86 ? 3 : sr.ss.dpl,
      fpu: fpuFromXsave(unb64(v.xsave)),
      msrs: v.msrs.filter((m) => btModelsMsr(m.index)),
      debugRegs: { db: [0, 1, 2, 3].map((i) => hex(ddv.getBigUint64(C.KVM_DEBUGREGS_DB + 8 * i, true))), dr6: hex(ddv.getBigUint64(C.KVM_DEBUGREGS_DR6, true)), dr7: hex(ddv.getBigUint64(C.KVM_DEBUGREGS_DR7, true)) },
      events: { halted: v.mpState === C.KVM_MP_STATE_HALTED, interruptShadow: evShadow !== 0, nmiMasked: e(C.KVM_VCPU_EVENTS_NMI_MASKED) !== 0 },
    },
    nmiPending: e(C.KVM_VCPU_EVENTS_NMI_PENDING) !== 0,
    waitingSipi,
  };
}

/** TR and a data segment in KVM's form: a segment that is not present is "unusable" to VMX. */
function kvmSegment(g: SegmentSnapshot, isTr = false): KvmSegment {
  // A TR never loaded (real-mode start) holds no type; VM entry wants a busy TSS in protected mode.
  const type = isTr && g.type === 0 ? 11 : g.type;
  const present = isTr ? 1 : g.present;
  return { selector: g.selector, base: g.base, limit: g.limit, type, present, dpl: g.dpl, db: g.db, s: g.s, l: g.l, g: g.g, avl: g.avl, unusable: present ? 0 : 1 };
}

/**
 * A kvm vCPU state for the bt snapshot `c`, whose local APIC page is `lapic`, NMI pending
 * `nmiPending`, TSC frequency `tscKhz` (the bt engine's), on a host whose KVM offers `host`;
 * `waitingSipi`: an application processor waiting for STARTUP (KVM's INIT_RECEIVED).
 * `checkModel` as in cpuFromKvm.
 */
export function cpuToKvm(
  c: CpuSnapshot, lapic: Uint8Array, nmiPending: boolean, tscKhz: number, host: CpuidLookup, cpuMismatch: CpuMismatch = {}, waitingSipi = false, checkModel = true,
): KvmVcpuState {
  const missing = checkModel ? missingFeatures(btCpuidLookup(), host) : '';
  mismatch(missing, `${TO_KVM}: the guest was offered CPU features this host's KVM lacks (${missing}); restore it on the bt engine (or with --allow-cpu-mismatch)`, cpuMismatch);
  const sr = c.sregs;
  const segs = {} as Record<(typeof SEGS)[number], KvmSegment>;
  for (const n of SEGS) segs[n] = kvmSegment(sr[n], n === 'tr');
  const ev = new Uint8Array(C.KVM_VCPU_EVENTS_SIZE);
  const edv = new DataView(ev.buffer);
  ev[C.KVM_VCPU_EVENTS_INTERRUPT_SHADOW] = c.events.interruptShadow ? C.KVM_X86_SHADOW_INT_STI : 0;
  ev[C.KVM_VCPU_EVENTS_NMI_MASKED] = +c.events.nmiMasked;
  ev[C.KVM_VCPU_EVENTS_NMI_PENDING] = +nmiPending;
  edv.setUint32(C.KVM_VCPU_EVENTS_FLAGS, C.KVM_VCPUEVENT_VALID_SHADOW | C.KVM_VCPUEVENT_VALID_NMI_PENDING, true);
  const dr = new Uint8Array(C.KVM_DEBUGREGS_SIZE);
  const ddv = new DataView(dr.buffer);
  c.debugRegs.db.forEach((h, i) => ddv.setBigUint64(C.KVM_DEBUGREGS_DB + 8 * i, BigInt.asUintN(64, BigInt(h)), true));
  ddv.setBigUint64(C.KVM_DEBUGREGS_DR6, BigInt(c.debugRegs.dr6), true);
  ddv.setBigUint64(C.KVM_DEBUGREGS_DR7, BigInt(c.debugRegs.dr7), true);
  const regs = {} as KvmVcpuState['regs'];
  for (const n of GPR_NAMES) regs[n] = c.regs[n];
  regs.rip = c.regs.rip;
  regs.rflags = c.regs.rflags;
  return {
    regs,
    sregs: {
      ...segs,
      gdt: sr.gdt, idt: sr.idt,
      cr0: sr.cr0, cr2: sr.cr2, cr3: sr.cr3, cr4: sr.cr4, cr8: sr.cr8, efer: sr.efer, apicBase: sr.apicBase,
      interruptBitmap: ['0x0', '0x0', '0x0', '0x0'],
    },
    mpState: waitingSipi ? C.KVM_MP_STATE_INIT_RECEIVED : c.events.halted ? C.KVM_MP_STATE_HALTED : C.KVM_MP_STATE_RUNNABLE,
    xsave: b64(xsaveFromFpu(c.fpu)),
    xcrs: [{ xcr: 0, value: c.xcr0 }],
    msrs: c.msrs,
    lapic: b64(lapic),
    events: b64(ev),
    debugregs: b64(dr),
    cpuid: b64(btCpuidTable()),
    tscKhz,
  };
}
