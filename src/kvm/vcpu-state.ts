/**
 * One vCPU's complete state, read and written from the vCPU's own thread: what a pause keeps
 * and a snapshot saves (the list Firecracker and QEMU save): kvm_regs, kvm_sregs, the XSAVE
 * area (x87/SSE/AVX), XCRs, every MSR KVM_GET_MSR_INDEX_LIST names, the local APIC, pending
 * events (kvm_vcpu_events), the MP state (halted, waiting for SIPI), debug registers, the CPUID
 * table the vCPU was given and its TSC frequency.
 *
 * The form is JSON-ready: registers and segments by name (the same names as the bt engine's
 * CpuSnapshot, src/vmm/snapshot/cpu.ts), 64-bit values as "0x..." hex; the structures whose
 * layout is KVM's own ABI (XSAVE area, LAPIC page, vcpu events, debug registers, CPUID) as
 * base64 of the structure, checked for size on restore and for content by KVM itself (a bad
 * one fails its KVM_SET_* ioctl, which becomes one error naming the ioctl).
 *
 * Restore order is Firecracker's: CPUID, MP state, regs, sregs, XSAVE, XCRs, debug registers,
 * LAPIC, MSRs (TSC before the TSC deadline), events last.
 */
import { C, KvmSysError, check, errno, errnoName, sys } from './sys.js';
import { writeSegment, type Vcpu } from './vcpu.js';

export const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type RegName = (typeof REG_NAMES)[number];
export const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
export type SegmentName = (typeof SEGMENT_NAMES)[number];
export const SREG_VALUE_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;
export type SregValueName = (typeof SREG_VALUE_NAMES)[number];

/** kvm_segment, by name. */
export interface KvmSegment {
  selector: number;
  base: string;
  limit: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface KvmSregs extends Record<SegmentName, KvmSegment>, Record<SregValueName, string> {
  gdt: { base: string; limit: number };
  idt: { base: string; limit: number };
  /** The pending external interrupt as a 256-bit map (four 64-bit words). */
  interruptBitmap: string[];
}

export interface KvmVcpuState {
  regs: Record<RegName, string>;
  sregs: KvmSregs;
  /** kvm_mp_state.mp_state (KVM_MP_STATE_*). */
  mpState: number;
  /** The XSAVE area (struct kvm_xsave, or larger with KVM_CAP_XSAVE2), base64. */
  xsave: string;
  xcrs: { xcr: number; value: string }[];
  msrs: { index: number; data: string }[];
  /** struct kvm_lapic_state (the APIC register page), base64. */
  lapic: string;
  /** struct kvm_vcpu_events, base64. */
  events: string;
  /** struct kvm_debugregs, base64. */
  debugregs: string;
  /** struct kvm_cpuid2 as the vCPU was given it, base64. */
  cpuid: string;
  /** The guest TSC frequency (kHz). */
  tscKhz: number;
}

export const MSR_IA32_TSC = 0x10;
const MSR_IA32_TSC_DEADLINE = 0x6e0;
/** Most entries kvm_xcrs holds (KVM_MAX_XCRS). */
export const MAX_XCRS = 16;

const hex = (v: bigint): string => `0x${v.toString(16)}`;
const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

function getStruct(v: Vcpu, request: number, size: number, name: string): Uint8Array {
  const buf = new Uint8Array(size);
  check(sys.ioctlPtr(v.fd, request, buf), name);
  return buf;
}

/** KVM_SET_*: one error naming the ioctl and the likely reason. */
function setStruct(v: Vcpu, request: number, buf: Uint8Array, name: string): void {
  if (sys.ioctlPtr(v.fd, request, buf) < 0) {
    const e = errno();
    throw new KvmSysError(`${name} refused the snapshot's value: ${errnoName(e)} (errno ${e}); the snapshot is corrupt or from a host whose KVM differs`, e);
  }
}

function readSegment(dv: DataView, at: number): KvmSegment {
  return {
    base: hex(dv.getBigUint64(at + C.KVM_SEGMENT_BASE, true)),
    limit: dv.getUint32(at + C.KVM_SEGMENT_LIMIT, true),
    selector: dv.getUint16(at + C.KVM_SEGMENT_SELECTOR, true),
    type: dv.getUint8(at + C.KVM_SEGMENT_TYPE),
    present: dv.getUint8(at + C.KVM_SEGMENT_PRESENT),
    dpl: dv.getUint8(at + C.KVM_SEGMENT_DPL),
    db: dv.getUint8(at + C.KVM_SEGMENT_DB),
    s: dv.getUint8(at + C.KVM_SEGMENT_S),
    l: dv.getUint8(at + C.KVM_SEGMENT_L),
    g: dv.getUint8(at + C.KVM_SEGMENT_G),
    avl: dv.getUint8(at + C.KVM_SEGMENT_AVL),
    unusable: dv.getUint8(at + C.KVM_SEGMENT_UNUSABLE),
  };
}

const REG_OFFSET: Record<RegName, number> = {
  rax: C.KVM_REGS_RAX, rbx: C.KVM_REGS_RBX, rcx: C.KVM_REGS_RCX, rdx: C.KVM_REGS_RDX, rsi: C.KVM_REGS_RSI, rdi: C.KVM_REGS_RDI,
  rsp: C.KVM_REGS_RSP, rbp: C.KVM_REGS_RBP, r8: C.KVM_REGS_R8, r9: C.KVM_REGS_R9, r10: C.KVM_REGS_R10, r11: C.KVM_REGS_R11,
  r12: C.KVM_REGS_R12, r13: C.KVM_REGS_R13, r14: C.KVM_REGS_R14, r15: C.KVM_REGS_R15, rip: C.KVM_REGS_RIP, rflags: C.KVM_REGS_RFLAGS,
};
const SEGMENT_OFFSET: Record<SegmentName, number> = {
  cs: C.KVM_SREGS_CS, ds: C.KVM_SREGS_DS, es: C.KVM_SREGS_ES, fs: C.KVM_SREGS_FS, gs: C.KVM_SREGS_GS, ss: C.KVM_SREGS_SS, tr: C.KVM_SREGS_TR, ldt: C.KVM_SREGS_LDT,
};
const SREG_VALUE_OFFSET: Record<SregValueName, number> = {
  cr0: C.KVM_SREGS_CR0, cr2: C.KVM_SREGS_CR2, cr3: C.KVM_SREGS_CR3, cr4: C.KVM_SREGS_CR4, cr8: C.KVM_SREGS_CR8, efer: C.KVM_SREGS_EFER, apicBase: C.KVM_SREGS_APIC_BASE,
};

// ---- MSRs ------------------------------------------------------------------------------------

function msrBuffer(entries: { index: number; data: bigint }[]): Uint8Array {
  const buf = new Uint8Array(C.KVM_MSRS_SIZE + entries.length * C.KVM_MSR_ENTRY_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setUint32(C.KVM_MSRS_NMSRS, entries.length, true);
  entries.forEach((m, i) => {
    const e = C.KVM_MSRS_ENTRIES + i * C.KVM_MSR_ENTRY_SIZE;
    dv.setUint32(e + C.KVM_MSR_ENTRY_INDEX, m.index, true);
    dv.setBigUint64(e + C.KVM_MSR_ENTRY_DATA, m.data, true);
  });
  return buf;
}

/**
 * Every MSR of `indices` this vCPU can read. KVM_GET_MSRS stops at the first MSR it cannot
 * read and returns how many it read: that one is left out (KVM lists a few MSRs that only exist
 * with CPU features the guest was not given) and the read goes on after it.
 */
export function readMsrs(v: Vcpu, indices: number[]): { index: number; data: bigint }[] {
  const out: { index: number; data: bigint }[] = [];
  let rest = indices;
  while (rest.length) {
    const buf = msrBuffer(rest.map((index) => ({ index, data: 0n })));
    const n = check(sys.ioctlPtr(v.fd, C.KVM_GET_MSRS, buf), 'KVM_GET_MSRS');
    const dv = new DataView(buf.buffer);
    for (let i = 0; i < n; i++) {
      const e = C.KVM_MSRS_ENTRIES + i * C.KVM_MSR_ENTRY_SIZE;
      out.push({ index: dv.getUint32(e + C.KVM_MSR_ENTRY_INDEX, true), data: dv.getBigUint64(e + C.KVM_MSR_ENTRY_DATA, true) });
    }
    rest = rest.slice(n + 1); // skip the one it refused
  }
  return out;
}

/** Write MSRs; every one must be taken (KVM_SET_MSRS returns how many were). */
export function writeMsrs(v: Vcpu, entries: { index: number; data: bigint }[]): void {
  if (!entries.length) return;
  const n = check(sys.ioctlPtr(v.fd, C.KVM_SET_MSRS, msrBuffer(entries)), 'KVM_SET_MSRS');
  if (n !== entries.length) {
    const m = entries[n]!;
    throw new KvmSysError(`KVM_SET_MSRS refused MSR 0x${m.index.toString(16)} = 0x${m.data.toString(16)} (entry ${n} of ${entries.length}): the snapshot is corrupt or from a host whose KVM knows other MSRs`, C.EINVAL);
  }
}

/** The guest's TSC now (a pause reads it: a snapshot saves the TSC of the moment it paused). */
export function readTsc(v: Vcpu): bigint {
  const [m] = readMsrs(v, [MSR_IA32_TSC]);
  if (!m) throw new KvmSysError('KVM_GET_MSRS could not read IA32_TSC', C.EINVAL);
  return m.data;
}

/**
 * Tell a guest that uses kvm-clock it was stopped (KVM_KVMCLOCK_CTRL sets the pvclock's
 * PVCLOCK_GUEST_STOPPED flag), so its soft-lockup watchdog does not fire for the paused time, as
 * QEMU and Firecracker do after a pause or restore. EINVAL means the guest has no kvm-clock: then
 * there is nobody to tell.
 */
export function noteGuestStopped(v: Vcpu): void {
  if (sys.ioctlVal(v.fd, C.KVM_KVMCLOCK_CTRL, 0) < 0 && errno() !== C.EINVAL) check(-1, 'KVM_KVMCLOCK_CTRL');
}

// ---- pending exits -----------------------------------------------------------------------------

/**
 * Finish the exit the vCPU last made before its state is read: an IN or MMIO read's data sits
 * in kvm_run and reaches the registers only on the next KVM_RUN. With immediate_exit set, KVM_RUN
 * completes it and returns EINTR without entering the guest (KVM_CAP_IMMEDIATE_EXIT).
 */
export function completePendingExit(v: Vcpu): void {
  v.run.setUint8(C.KVM_RUN_IMMEDIATE_EXIT, 1);
  try {
    const r = sys.ioctlVal(v.fd, C.KVM_RUN, 0);
    const e = r < 0 ? errno() : 0;
    if (r >= 0 || (e !== C.EINTR && e !== C.EAGAIN)) {
      throw new KvmSysError(`KVM_RUN with immediate_exit did not return EINTR (returned ${r}, ${errnoName(e)}): this KVM lacks KVM_CAP_IMMEDIATE_EXIT, so a pause cannot complete the vCPU's last I/O`, e);
    }
  } finally {
    v.run.setUint8(C.KVM_RUN_IMMEDIATE_EXIT, 0);
  }
}

// ---- whole state -------------------------------------------------------------------------------

/** Read everything; the vCPU must be out of KVM_RUN with its last exit completed. */
export function saveVcpuState(v: Vcpu, msrIndices: number[], xsaveSize: number): KvmVcpuState {
  const r = new DataView(getStruct(v, C.KVM_GET_REGS, C.KVM_REGS_SIZE, 'KVM_GET_REGS').buffer);
  const regs = {} as Record<RegName, string>;
  for (const n of REG_NAMES) regs[n] = hex(r.getBigUint64(REG_OFFSET[n], true));

  const s = new DataView(getStruct(v, C.KVM_GET_SREGS, C.KVM_SREGS_SIZE, 'KVM_GET_SREGS').buffer);
  const sregs = {
    gdt: { base: hex(s.getBigUint64(C.KVM_SREGS_GDT + C.KVM_DTABLE_BASE, true)), limit: s.getUint16(C.KVM_SREGS_GDT + C.KVM_DTABLE_LIMIT, true) },
    idt: { base: hex(s.getBigUint64(C.KVM_SREGS_IDT + C.KVM_DTABLE_BASE, true)), limit: s.getUint16(C.KVM_SREGS_IDT + C.KVM_DTABLE_LIMIT, true) },
    interruptBitmap: [0, 1, 2, 3].map((i) => hex(s.getBigUint64(C.KVM_SREGS_INTERRUPT_BITMAP + 8 * i, true))),
  } as KvmSregs;
  for (const n of SEGMENT_NAMES) sregs[n] = readSegment(s, SEGMENT_OFFSET[n]);
  for (const n of SREG_VALUE_NAMES) sregs[n] = hex(s.getBigUint64(SREG_VALUE_OFFSET[n], true));

  const mp = getStruct(v, C.KVM_GET_MP_STATE, C.KVM_MP_STATE_SIZE, 'KVM_GET_MP_STATE');
  const xsave = getStruct(v, xsaveSize > C.KVM_XSAVE_SIZE ? C.KVM_GET_XSAVE2 : C.KVM_GET_XSAVE, xsaveSize, 'KVM_GET_XSAVE');
  const x = new DataView(getStruct(v, C.KVM_GET_XCRS, C.KVM_XCRS_SIZE, 'KVM_GET_XCRS').buffer);
  const nx = Math.min(x.getUint32(C.KVM_XCRS_NR_XCRS, true), MAX_XCRS);
  const xcrs = Array.from({ length: nx }, (_, i) => {
    const e = C.KVM_XCRS_XCRS + i * C.KVM_XCR_SIZE;
    return { xcr: x.getUint32(e + C.KVM_XCR_XCR, true), value: hex(x.getBigUint64(e + C.KVM_XCR_VALUE, true)) };
  });
  const msrs = readMsrs(v, msrIndices).map((m) => ({ index: m.index, data: hex(m.data) }));
  const cpuid = readCpuid(v);
  const tscKhz = check(sys.ioctlVal(v.fd, C.KVM_GET_TSC_KHZ, 0), 'KVM_GET_TSC_KHZ');
  return {
    regs,
    sregs,
    mpState: new DataView(mp.buffer).getUint32(C.KVM_MP_STATE_MP_STATE, true),
    xsave: b64(xsave),
    xcrs,
    msrs,
    lapic: b64(getStruct(v, C.KVM_GET_LAPIC, C.KVM_LAPIC_STATE_SIZE, 'KVM_GET_LAPIC')),
    events: b64(getStruct(v, C.KVM_GET_VCPU_EVENTS, C.KVM_VCPU_EVENTS_SIZE, 'KVM_GET_VCPU_EVENTS')),
    debugregs: b64(getStruct(v, C.KVM_GET_DEBUGREGS, C.KVM_DEBUGREGS_SIZE, 'KVM_GET_DEBUGREGS')),
    cpuid: b64(cpuid),
    tscKhz,
  };
}

/** KVM_GET_CPUID2: the table this vCPU was given (grown on E2BIG). */
function readCpuid(v: Vcpu): Uint8Array {
  for (let n = 128; n <= 4096; n *= 2) {
    const buf = new Uint8Array(C.KVM_CPUID2_SIZE + n * C.KVM_CPUID_ENTRY2_SIZE);
    const dv = new DataView(buf.buffer);
    dv.setUint32(C.KVM_CPUID2_NENT, n, true);
    if (sys.ioctlPtr(v.fd, C.KVM_GET_CPUID2, buf) >= 0) return buf.slice(0, C.KVM_CPUID2_SIZE + dv.getUint32(C.KVM_CPUID2_NENT, true) * C.KVM_CPUID_ENTRY2_SIZE);
    if (errno() !== C.E2BIG) check(-1, 'KVM_GET_CPUID2');
  }
  throw new KvmSysError('KVM_GET_CPUID2: more than 4096 entries', C.E2BIG);
}

/**
 * Put a (validated, see src/vmm/snapshot/kvm.ts) state into a fresh vCPU of this thread, before
 * it first runs. Throws KvmSysError naming the ioctl that refused a value. `tscRateMayChange`:
 * the TSC continues at the host's rate where KVM cannot run it at the state's (a state from the
 * bt engine); otherwise that is an error.
 */
export function restoreVcpuState(v: Vcpu, st: KvmVcpuState, xsaveSize: number, tscRateMayChange = false): void {
  const hostKhz = check(sys.ioctlVal(v.fd, C.KVM_GET_TSC_KHZ, 0), 'KVM_GET_TSC_KHZ');
  if (hostKhz !== st.tscKhz && sys.ioctlVal(v.fd, C.KVM_SET_TSC_KHZ, st.tscKhz) < 0 && !tscRateMayChange) {
    throw new KvmSysError(`the snapshot's guest ran with a ${st.tscKhz} kHz TSC, this host's is ${hostKhz} kHz and its KVM cannot scale the TSC: restore on a host with the same TSC frequency`, errno());
  }
  setStruct(v, C.KVM_SET_CPUID2, unb64(st.cpuid), 'KVM_SET_CPUID2');

  const mp = new Uint8Array(C.KVM_MP_STATE_SIZE);
  new DataView(mp.buffer).setUint32(C.KVM_MP_STATE_MP_STATE, st.mpState, true);
  setStruct(v, C.KVM_SET_MP_STATE, mp, 'KVM_SET_MP_STATE');

  const regs = new Uint8Array(C.KVM_REGS_SIZE);
  const r = new DataView(regs.buffer);
  for (const n of REG_NAMES) r.setBigUint64(REG_OFFSET[n], BigInt(st.regs[n]), true);
  setStruct(v, C.KVM_SET_REGS, regs, 'KVM_SET_REGS');

  const sregs = new Uint8Array(C.KVM_SREGS_SIZE);
  const s = new DataView(sregs.buffer);
  for (const n of SEGMENT_NAMES) writeSegment(s, SEGMENT_OFFSET[n], st.sregs[n]);
  for (const n of SREG_VALUE_NAMES) s.setBigUint64(SREG_VALUE_OFFSET[n], BigInt(st.sregs[n]), true);
  for (const [at, t] of [[C.KVM_SREGS_GDT, st.sregs.gdt], [C.KVM_SREGS_IDT, st.sregs.idt]] as const) {
    s.setBigUint64(at + C.KVM_DTABLE_BASE, BigInt(t.base), true);
    s.setUint16(at + C.KVM_DTABLE_LIMIT, t.limit, true);
  }
  st.sregs.interruptBitmap.forEach((w, i) => s.setBigUint64(C.KVM_SREGS_INTERRUPT_BITMAP + 8 * i, BigInt(w), true));
  setStruct(v, C.KVM_SET_SREGS, sregs, 'KVM_SET_SREGS');

  // KVM_SET_XSAVE reads the host's full XSAVE size: a smaller saved area is zero-extended.
  const saved = unb64(st.xsave);
  if (saved.length > xsaveSize) {
    throw new KvmSysError(`the snapshot's XSAVE area has ${saved.length} bytes, this host's KVM keeps ${xsaveSize}: restore on a host with the same CPU features`, C.EINVAL);
  }
  const xsave = new Uint8Array(xsaveSize);
  xsave.set(saved);
  setStruct(v, C.KVM_SET_XSAVE, xsave, 'KVM_SET_XSAVE');

  const xcrs = new Uint8Array(C.KVM_XCRS_SIZE);
  const x = new DataView(xcrs.buffer);
  x.setUint32(C.KVM_XCRS_NR_XCRS, st.xcrs.length, true);
  st.xcrs.forEach((e, i) => {
    x.setUint32(C.KVM_XCRS_XCRS + i * C.KVM_XCR_SIZE + C.KVM_XCR_XCR, e.xcr, true);
    x.setBigUint64(C.KVM_XCRS_XCRS + i * C.KVM_XCR_SIZE + C.KVM_XCR_VALUE, BigInt(e.value), true);
  });
  setStruct(v, C.KVM_SET_XCRS, xcrs, 'KVM_SET_XCRS');

  setStruct(v, C.KVM_SET_DEBUGREGS, unb64(st.debugregs), 'KVM_SET_DEBUGREGS');
  setStruct(v, C.KVM_SET_LAPIC, unb64(st.lapic), 'KVM_SET_LAPIC');
  // The TSC deadline is relative to the TSC: set it after the TSC (Firecracker does the same).
  const msrs = st.msrs.map((m) => ({ index: m.index, data: BigInt(m.data) }));
  msrs.sort((a, b) => Number(a.index === MSR_IA32_TSC_DEADLINE) - Number(b.index === MSR_IA32_TSC_DEADLINE));
  writeMsrs(v, msrs);
  setStruct(v, C.KVM_SET_VCPU_EVENTS, unb64(st.events), 'KVM_SET_VCPU_EVENTS');
}
