/**
 * One vCPU's setup, issued from the thread that will run it: KVM_CREATE_VCPU, the kvm_run
 * mapping, per-vCPU CPUID, the boot CPU's entry state (real, 32-bit protected or 64-bit long
 * mode), the MSRs and FPU state the Linux boot protocol expects, LAPIC LINT0/LINT1, and the
 * signal mask that lets a kick (SIGUSR2) interrupt KVM_RUN without a race.
 */
import { decodeGdtEntry } from '../boot/x86-setup.js';
import type { EntryState } from '../machine/engine.js';
import type { GuestMemory } from '../machine/memory.js';
import { BOOT_IDT_START } from '../machine/layout.js';
import { C, KvmSysError, addressOf, check, errno, mmapChecked, sigsetOf, sys, viewOf, type Pointer } from './sys.js';

// ---- architectural values (Intel SDM vol. 3) -----------------------------------------------
const CR0_PE = 1 << 0; // protection enable
const CR0_PG = 0x8000_0000; // paging
const CR4_PAE = 1 << 5;
const EFER_LME = 1 << 8; // long mode enable
const EFER_LMA = 1 << 10; // long mode active
const RFLAGS_RESERVED1 = 1 << 1; // bit 1 always reads 1

const MSR_IA32_TSC = 0x10;
const MSR_IA32_SYSENTER_CS = 0x174;
const MSR_IA32_SYSENTER_ESP = 0x175;
const MSR_IA32_SYSENTER_EIP = 0x176;
const MSR_IA32_MISC_ENABLE = 0x1a0;
const MISC_ENABLE_FAST_STRING = 1n;
const MSR_MTRR_DEF_TYPE = 0x2ff;
const MTRR_ENABLE = 1n << 11n;
const MTRR_TYPE_WRBACK = 6n;
const MSR_STAR = 0xc000_0081;
const MSR_LSTAR = 0xc000_0082;
const MSR_CSTAR = 0xc000_0083;
const MSR_SYSCALL_MASK = 0xc000_0084;
const MSR_KERNEL_GS_BASE = 0xc000_0102;

const FPU_CONTROL_DEFAULT = 0x37f; // FNINIT value of the x87 control word
const MXCSR_DEFAULT = 0x1f80; // all SSE exceptions masked

const APIC_LVT0 = 0x350;
const APIC_LVT1 = 0x360;
const APIC_MODE_NMI = 4;
const APIC_MODE_EXTINT = 7;

// CPUID leaves patched per vCPU.
const CPUID_FEATURES = 0x1;
const CPUID_FEATURES_EBX_APIC_ID_SHIFT = 24;
const CPUID_FEATURES_EBX_COUNT_SHIFT = 16;
const CPUID_FEATURES_ECX_HYPERVISOR = 1 << 31;
const CPUID_FEATURES_EDX_HTT = 1 << 28;
const CPUID_CACHE_PARAMS = 0x4;
const CPUID_TOPOLOGY = 0xb;
const CPUID_TOPOLOGY_V2 = 0x1f;
const CPUID_TOPOLOGY_LEVEL_SMT = 1;
const CPUID_TOPOLOGY_LEVEL_CORE = 2;
const CPUID_AMD_SIZES = 0x8000_0008;

export interface Vcpu {
  fd: number;
  /** The kvm_run page(s). */
  run: DataView;
  runBytes: Uint8Array;
  runAddress: bigint;
  runSize: number;
}

export function createVcpu(vmFd: number, index: number, mmapSize: number): Vcpu {
  const fd = check(sys.ioctlVal(vmFd, C.KVM_CREATE_VCPU, index), `KVM_CREATE_VCPU ${index}`);
  let p: Pointer;
  try {
    p = mmapChecked(mmapSize, C.PROT_READ | C.PROT_WRITE, C.MAP_SHARED, fd, 'kvm_run');
  } catch (e) {
    sys.close(fd);
    throw e;
  }
  const ab = viewOf(p, mmapSize);
  return { fd, run: new DataView(ab), runBytes: new Uint8Array(ab), runAddress: addressOf(p), runSize: mmapSize };
}

/** Unmap kvm_run and close the vCPU fd. The caller must not touch `v.run` afterwards. */
export function destroyVcpu(v: Vcpu): void {
  sys.munmap(v.runAddress, v.runSize);
  sys.close(v.fd);
}

/**
 * The host's supported CPUID, made this vCPU's: APIC id in leaf 1 and the x2APIC topology
 * leaves, the logical-processor count, the hypervisor bit.
 */
export function vcpuCpuid(supported: Uint8Array, apicId: number, cpus: number): Uint8Array {
  const buf = supported.slice();
  const dv = new DataView(buf.buffer);
  const n = dv.getUint32(C.KVM_CPUID2_NENT, true);
  const coreBits = cpus > 1 ? Math.ceil(Math.log2(cpus)) : 0;
  for (let i = 0; i < n; i++) {
    const e = C.KVM_CPUID2_ENTRIES + i * C.KVM_CPUID_ENTRY2_SIZE;
    const fn = dv.getUint32(e + C.KVM_CPUID_ENTRY2_FUNCTION, true);
    const index = dv.getUint32(e + C.KVM_CPUID_ENTRY2_INDEX, true);
    const get = (off: number): number => dv.getUint32(e + off, true);
    const set = (off: number, v: number): void => dv.setUint32(e + off, v >>> 0, true);
    switch (fn) {
      case CPUID_FEATURES: {
        const ebx = (get(C.KVM_CPUID_ENTRY2_EBX) & 0xffff) |
          ((apicId & 0xff) << CPUID_FEATURES_EBX_APIC_ID_SHIFT) |
          ((cpus & 0xff) << CPUID_FEATURES_EBX_COUNT_SHIFT);
        set(C.KVM_CPUID_ENTRY2_EBX, ebx);
        set(C.KVM_CPUID_ENTRY2_ECX, get(C.KVM_CPUID_ENTRY2_ECX) | CPUID_FEATURES_ECX_HYPERVISOR);
        const edx = get(C.KVM_CPUID_ENTRY2_EDX);
        set(C.KVM_CPUID_ENTRY2_EDX, cpus > 1 ? edx | CPUID_FEATURES_EDX_HTT : edx & ~CPUID_FEATURES_EDX_HTT);
        break;
      }
      case CPUID_CACHE_PARAMS: {
        // EAX[31:26]: cores per package - 1.
        set(C.KVM_CPUID_ENTRY2_EAX, (get(C.KVM_CPUID_ENTRY2_EAX) & 0x03ff_ffff) | (((cpus - 1) & 0x3f) << 26));
        break;
      }
      case CPUID_TOPOLOGY:
      case CPUID_TOPOLOGY_V2: {
        // One thread per core, `cpus` cores in one package.
        if (index === 0) {
          set(C.KVM_CPUID_ENTRY2_EAX, 0);
          set(C.KVM_CPUID_ENTRY2_EBX, 1);
          set(C.KVM_CPUID_ENTRY2_ECX, (CPUID_TOPOLOGY_LEVEL_SMT << 8) | index);
        } else if (index === 1) {
          set(C.KVM_CPUID_ENTRY2_EAX, coreBits);
          set(C.KVM_CPUID_ENTRY2_EBX, cpus);
          set(C.KVM_CPUID_ENTRY2_ECX, (CPUID_TOPOLOGY_LEVEL_CORE << 8) | index);
        } else {
          set(C.KVM_CPUID_ENTRY2_EAX, 0);
          set(C.KVM_CPUID_ENTRY2_EBX, 0);
          set(C.KVM_CPUID_ENTRY2_ECX, index);
        }
        set(C.KVM_CPUID_ENTRY2_EDX, apicId);
        break;
      }
      case CPUID_AMD_SIZES: {
        // ECX[7:0]: number of cores - 1; ECX[15:12]: APIC id bits for cores.
        set(C.KVM_CPUID_ENTRY2_ECX, (get(C.KVM_CPUID_ENTRY2_ECX) & ~0xf0ff) | ((cpus - 1) & 0xff) | (coreBits << 12));
        break;
      }
    }
  }
  return buf;
}

export function setCpuid(v: Vcpu, cpuid: Uint8Array): void {
  check(sys.ioctlPtr(v.fd, C.KVM_SET_CPUID2, cpuid), 'KVM_SET_CPUID2');
}

/** MSR values the Linux boot protocol expects at 64-bit entry (as Firecracker sets them). */
export function setBootMsrs(v: Vcpu): void {
  const msrs: [number, bigint][] = [
    [MSR_IA32_SYSENTER_CS, 0n],
    [MSR_IA32_SYSENTER_ESP, 0n],
    [MSR_IA32_SYSENTER_EIP, 0n],
    [MSR_STAR, 0n],
    [MSR_CSTAR, 0n],
    [MSR_KERNEL_GS_BASE, 0n],
    [MSR_SYSCALL_MASK, 0n],
    [MSR_LSTAR, 0n],
    [MSR_IA32_TSC, 0n],
    [MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING],
    [MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK],
  ];
  const buf = new Uint8Array(C.KVM_MSRS_SIZE + msrs.length * C.KVM_MSR_ENTRY_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setUint32(C.KVM_MSRS_NMSRS, msrs.length, true);
  msrs.forEach(([index, data], i) => {
    const e = C.KVM_MSRS_ENTRIES + i * C.KVM_MSR_ENTRY_SIZE;
    dv.setUint32(e + C.KVM_MSR_ENTRY_INDEX, index, true);
    dv.setBigUint64(e + C.KVM_MSR_ENTRY_DATA, data, true);
  });
  // KVM_SET_MSRS stops at the first MSR it refuses; it returns how many it set. An MSR this
  // host's KVM does not know is not fatal for the small guests that run on such hosts.
  check(sys.ioctlPtr(v.fd, C.KVM_SET_MSRS, buf), 'KVM_SET_MSRS');
}

export function setFpu(v: Vcpu): void {
  const buf = new Uint8Array(C.KVM_FPU_SIZE);
  const dv = new DataView(buf.buffer);
  dv.setUint16(C.KVM_FPU_FCW, FPU_CONTROL_DEFAULT, true);
  dv.setUint32(C.KVM_FPU_MXCSR, MXCSR_DEFAULT, true);
  check(sys.ioctlPtr(v.fd, C.KVM_SET_FPU, buf), 'KVM_SET_FPU');
}

/** Boot CPU: LINT0 delivers the 8259's ExtINT, LINT1 NMI (virtual-wire mode). */
export function setLint(v: Vcpu): void {
  const buf = new Uint8Array(C.KVM_LAPIC_STATE_SIZE);
  check(sys.ioctlPtr(v.fd, C.KVM_GET_LAPIC, buf), 'KVM_GET_LAPIC');
  const dv = new DataView(buf.buffer);
  const mode = (reg: number, m: number): void =>
    dv.setUint32(C.KVM_LAPIC_STATE_REGS + reg, (dv.getUint32(C.KVM_LAPIC_STATE_REGS + reg, true) & ~0x700) | (m << 8), true);
  mode(APIC_LVT0, APIC_MODE_EXTINT);
  mode(APIC_LVT1, APIC_MODE_NMI);
  check(sys.ioctlPtr(v.fd, C.KVM_SET_LAPIC, buf), 'KVM_SET_LAPIC');
}

// ---- entry state ----------------------------------------------------------------------------

interface Segment {
  base: number;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
}

/** Decode the 8-byte descriptor for `selector` from a GDT in guest memory. */
export function segmentFromGdt(memory: GuestMemory, gdtBase: number, gdtLimit: number, selector: number): Segment {
  const index = selector & ~7;
  if (index === 0 || index + 7 > gdtLimit) {
    throw new KvmSysError(`entry selector 0x${selector.toString(16)} is outside the GDT (limit 0x${gdtLimit.toString(16)})`, 0);
  }
  return { ...decodeGdtEntry(memory.read64(gdtBase + index)), selector };
}

/** A struct kvm_segment at `at` of `dv` (base as a number or a decimal string; unusable default 0). */
export function writeSegment(dv: DataView, at: number, s: Omit<Segment, 'base'> & { base: number | string; unusable?: number }): void {
  dv.setBigUint64(at + C.KVM_SEGMENT_BASE, BigInt(s.base), true);
  dv.setUint32(at + C.KVM_SEGMENT_LIMIT, s.limit, true);
  dv.setUint16(at + C.KVM_SEGMENT_SELECTOR, s.selector, true);
  dv.setUint8(at + C.KVM_SEGMENT_TYPE, s.type);
  dv.setUint8(at + C.KVM_SEGMENT_PRESENT, s.present);
  dv.setUint8(at + C.KVM_SEGMENT_DPL, s.dpl);
  dv.setUint8(at + C.KVM_SEGMENT_DB, s.db);
  dv.setUint8(at + C.KVM_SEGMENT_S, s.s);
  dv.setUint8(at + C.KVM_SEGMENT_L, s.l);
  dv.setUint8(at + C.KVM_SEGMENT_G, s.g);
  dv.setUint8(at + C.KVM_SEGMENT_AVL, s.avl);
  dv.setUint8(at + C.KVM_SEGMENT_UNUSABLE, s.unusable ?? 0);
}

const DATA_SEGMENTS = [C.KVM_SREGS_DS, C.KVM_SREGS_ES, C.KVM_SREGS_FS, C.KVM_SREGS_GS, C.KVM_SREGS_SS];
const REG_OFFSETS: Record<keyof EntryState['regs'], number> = {
  rax: C.KVM_REGS_RAX,
  rbx: C.KVM_REGS_RBX,
  rcx: C.KVM_REGS_RCX,
  rdx: C.KVM_REGS_RDX,
  rsi: C.KVM_REGS_RSI,
  rdi: C.KVM_REGS_RDI,
  rsp: C.KVM_REGS_RSP,
  rbp: C.KVM_REGS_RBP,
};

/** Put the boot vCPU where the loader said: segment registers, control registers, GPRs. */
export function setEntryState(v: Vcpu, entry: EntryState, memory: GuestMemory): void {
  const sregs = new Uint8Array(C.KVM_SREGS_SIZE);
  check(sys.ioctlPtr(v.fd, C.KVM_GET_SREGS, sregs), 'KVM_GET_SREGS');
  const s = new DataView(sregs.buffer);
  const u64 = (off: number): number => Number(s.getBigUint64(off, true));
  const setU64 = (off: number, val: number): void => s.setBigUint64(off, BigInt(val >>> 0) + BigInt(Math.floor(val / 0x1_0000_0000)) * 0x1_0000_0000n, true);

  if (entry.mode === 'real16') {
    const seg = (entry.realCs ?? 0) & 0xffff;
    for (const at of [C.KVM_SREGS_CS, ...DATA_SEGMENTS]) {
      s.setBigUint64(at + C.KVM_SEGMENT_BASE, BigInt(seg << 4), true);
      s.setUint16(at + C.KVM_SEGMENT_SELECTOR, seg, true);
    }
  } else {
    const gdt = entry.gdt;
    if (!gdt) throw new KvmSysError(`${entry.mode} entry needs the GDT the loader wrote (EntryState.gdt)`, 0);
    writeSegment(s, C.KVM_SREGS_CS, segmentFromGdt(memory, gdt.base, gdt.limit, gdt.cs));
    const data = segmentFromGdt(memory, gdt.base, gdt.limit, gdt.ds);
    for (const at of DATA_SEGMENTS) writeSegment(s, at, data);
    setU64(C.KVM_SREGS_GDT + C.KVM_DTABLE_BASE, gdt.base);
    s.setUint16(C.KVM_SREGS_GDT + C.KVM_DTABLE_LIMIT, gdt.limit, true);
    setU64(C.KVM_SREGS_IDT + C.KVM_DTABLE_BASE, BOOT_IDT_START);
    s.setUint16(C.KVM_SREGS_IDT + C.KVM_DTABLE_LIMIT, 7, true);
    let cr0 = u64(C.KVM_SREGS_CR0) | CR0_PE;
    if (entry.mode === 'long64') {
      if (entry.cr3 === undefined) throw new KvmSysError('long64 entry needs CR3 (EntryState.cr3)', 0);
      cr0 = (cr0 | CR0_PG) >>> 0;
      setU64(C.KVM_SREGS_CR3, entry.cr3);
      setU64(C.KVM_SREGS_CR4, u64(C.KVM_SREGS_CR4) | CR4_PAE);
      setU64(C.KVM_SREGS_EFER, u64(C.KVM_SREGS_EFER) | EFER_LME | EFER_LMA);
    } else {
      cr0 = (cr0 & ~CR0_PG) >>> 0;
    }
    setU64(C.KVM_SREGS_CR0, cr0);
  }
  check(sys.ioctlPtr(v.fd, C.KVM_SET_SREGS, sregs), 'KVM_SET_SREGS');

  const regs = new Uint8Array(C.KVM_REGS_SIZE);
  const r = new DataView(regs.buffer);
  for (const [name, value] of Object.entries(entry.regs) as [keyof EntryState['regs'], number][]) {
    r.setBigUint64(REG_OFFSETS[name], BigInt.asUintN(64, BigInt(value)), true);
  }
  r.setBigUint64(C.KVM_REGS_RIP, BigInt.asUintN(64, BigInt(entry.rip)), true);
  r.setBigUint64(C.KVM_REGS_RFLAGS, BigInt(RFLAGS_RESERVED1), true);
  check(sys.ioctlPtr(v.fd, C.KVM_SET_REGS, regs), 'KVM_SET_REGS');
}

/** CR0.ET: what firmware hands the OS on an S3 wake (caches on, no protection, no paging). */
const CR0_ET = 1 << 4;

/**
 * An ACPI S3 wake (src/boot/acpi/wake.ts): the boot vCPU as firmware hands it to the OS's waking
 * vector, whatever the guest left in it before it slept — general registers 0, RFLAGS 2, no
 * paging, no long mode (EFER 0), CR3/CR4/CR8 0, the x87/SSE state reset, and then real mode at
 * CS:IP (every segment based at CS << 4, 64 KiB limits) or flat 32-bit protected mode (`gdt`'s
 * selectors, base 0, 4 GiB limits; the OS loads its own GDT). The LAPIC and the other MSRs
 * keep their state, as on the bt engine (the OS re-programs them).
 */
export function setWakeState(v: Vcpu, entry: EntryState): void {
  const sregs = new Uint8Array(C.KVM_SREGS_SIZE);
  check(sys.ioctlPtr(v.fd, C.KVM_GET_SREGS, sregs), 'KVM_GET_SREGS');
  const s = new DataView(sregs.buffer);
  const flat = entry.mode === 'protected32';
  if (entry.mode !== 'real16' && !flat) throw new KvmSysError(`an S3 wake enters real or 32-bit protected mode, not ${entry.mode}`, 0);
  const cs = flat ? (entry.gdt?.cs ?? 0x10) : (entry.realCs ?? 0) & 0xffff;
  const ds = flat ? (entry.gdt?.ds ?? 0x18) : cs;
  const segment = (selector: number, type: number) => ({
    base: flat ? 0 : selector << 4, limit: flat ? 0xffff_ffff : 0xffff, selector, type, present: 1, dpl: 0,
    db: flat ? 1 : 0, s: 1, l: 0, g: flat ? 1 : 0, avl: 0,
  });
  writeSegment(s, C.KVM_SREGS_CS, segment(cs, 0xb)); // code, execute/read, accessed
  for (const at of DATA_SEGMENTS) writeSegment(s, at, segment(ds, 0x3)); // data, read/write, accessed
  writeSegment(s, C.KVM_SREGS_TR, { base: 0, limit: 0xffff, selector: 0, type: 0xb, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0 });
  writeSegment(s, C.KVM_SREGS_LDT, { base: 0, limit: 0xffff, selector: 0, type: 0x2, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0 });
  for (const t of [C.KVM_SREGS_GDT, C.KVM_SREGS_IDT]) {
    s.setBigUint64(t + C.KVM_DTABLE_BASE, 0n, true);
    s.setUint16(t + C.KVM_DTABLE_LIMIT, flat ? 0 : 0x3ff, true);
  }
  s.setBigUint64(C.KVM_SREGS_CR0, BigInt(flat ? CR0_ET | CR0_PE : CR0_ET), true);
  for (const cr of [C.KVM_SREGS_CR2, C.KVM_SREGS_CR3, C.KVM_SREGS_CR4, C.KVM_SREGS_CR8, C.KVM_SREGS_EFER]) s.setBigUint64(cr, 0n, true);
  for (let i = 0; i < 4; i++) s.setBigUint64(C.KVM_SREGS_INTERRUPT_BITMAP + 8 * i, 0n, true);
  check(sys.ioctlPtr(v.fd, C.KVM_SET_SREGS, sregs), 'KVM_SET_SREGS');
  const regs = new Uint8Array(C.KVM_REGS_SIZE);
  const r = new DataView(regs.buffer);
  r.setBigUint64(C.KVM_REGS_RIP, BigInt(flat ? entry.rip >>> 0 : (entry.rip - cs * 16) & 0xffff), true);
  r.setBigUint64(C.KVM_REGS_RFLAGS, BigInt(RFLAGS_RESERVED1), true);
  check(sys.ioctlPtr(v.fd, C.KVM_SET_REGS, regs), 'KVM_SET_REGS');
  setFpu(v);
}

/** RIP (for error messages). */
export function readRip(v: Vcpu): number {
  const regs = new Uint8Array(C.KVM_REGS_SIZE);
  if (sys.ioctlPtr(v.fd, C.KVM_GET_REGS, regs) < 0) return -1;
  return Number(new DataView(regs.buffer).getBigUint64(C.KVM_REGS_RIP, true));
}

// ---- kicks ------------------------------------------------------------------------------------

/**
 * Block the kick signal in this thread and let KVM unblock it only while the guest runs
 * (KVM_SET_SIGNAL_MASK). A kick that arrives while this thread is in JS stays pending and makes
 * the next KVM_RUN return EINTR at once: no lost wake-up, no signal handler running JS.
 */
export function armKickSignal(v: Vcpu): void {
  const old = new Uint8Array(C.SIGSET_T_SIZE);
  check(sys.pthreadSigmask(C.SIG_BLOCK, sigsetOf(C.SIGUSR2), old), 'pthread_sigmask');
  const mask = new Uint8Array(C.KVM_SIGNAL_MASK_SIGSET + C.KERNEL_SIGSET_SIZE);
  new DataView(mask.buffer).setUint32(C.KVM_SIGNAL_MASK_LEN, C.KERNEL_SIGSET_SIZE, true);
  mask.set(old.subarray(0, C.KERNEL_SIGSET_SIZE), C.KVM_SIGNAL_MASK_SIGSET);
  const bit = C.SIGUSR2 - 1;
  mask[C.KVM_SIGNAL_MASK_SIGSET + (bit >> 3)] = mask[C.KVM_SIGNAL_MASK_SIGSET + (bit >> 3)]! & ~(1 << (bit & 7));
  check(sys.ioctlPtr(v.fd, C.KVM_SET_SIGNAL_MASK, mask), 'KVM_SET_SIGNAL_MASK');
}

const kickSet = sigsetOf(C.SIGUSR2);
const zeroTimeout = new Uint8Array(C.TIMESPEC_SIZE);
/** Consume a pending kick (after KVM_RUN returned EINTR). */
export function eatKick(): void {
  while (sys.sigtimedwait(kickSet, null, zeroTimeout) === C.SIGUSR2) {
    /* drained one */
  }
}

/** errno of the last failed call, for the run loop. */
export function lastErrno(): number {
  return errno();
}
