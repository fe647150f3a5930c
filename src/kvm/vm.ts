/**
 * The KVM virtual machine (main thread): /dev/kvm, the VM fd, in-kernel irqchip and PIT, guest
 * RAM registered as memory slots, and the host's supported CPUID table. vCPUs are created by
 * their own worker threads (KVM wants vCPU ioctls issued from the thread that runs the vCPU).
 */
import { KvmSysError, C, addressOf, check, errno, mmapChecked, sys } from './sys.js';
import type { KvmMemoryHandle } from './memory.js';

/**
 * Where KVM may put the real-mode TSS (3 pages) and the EPT identity-map page on Intel: just
 * below the BIOS area at the top of 4 GiB, inside our MMIO hole and clear of the IOAPIC/LAPIC
 * (the same addresses QEMU and Firecracker use).
 */
export const KVM_TSS_ADDRESS = 0xfffb_d000;
export const KVM_IDENTITY_MAP_ADDRESS = 0xfffb_c000;

/** Room for the supported-CPUID table; grown on E2BIG. */
const CPUID_INITIAL_ENTRIES = 128;
const CPUID_MAX_ENTRIES = 4096;

export function openKvm(): number {
  const fd = sys.open('/dev/kvm', C.O_RDWR | C.O_CLOEXEC);
  if (fd < 0) {
    const e = errno();
    if (e === C.ENOENT) throw new KvmSysError('Cannot open /dev/kvm: it does not exist (load kvm_intel or kvm_amd, or use --engine bt)', e);
    if (e === C.EACCES || e === C.EPERM) {
      throw new KvmSysError('Cannot open /dev/kvm: permission denied (add your user to group `kvm`, or use --engine bt)', e);
    }
    check(fd, 'open(/dev/kvm)');
  }
  return fd;
}

/** KVM_GET_SUPPORTED_CPUID as a raw struct kvm_cpuid2 (nent + entries). */
export function supportedCpuid(kvmFd: number): Uint8Array {
  for (let n = CPUID_INITIAL_ENTRIES; n <= CPUID_MAX_ENTRIES; n *= 2) {
    const buf = new Uint8Array(C.KVM_CPUID2_SIZE + n * C.KVM_CPUID_ENTRY2_SIZE);
    new DataView(buf.buffer).setUint32(C.KVM_CPUID2_NENT, n, true);
    if (sys.ioctlPtr(kvmFd, C.KVM_GET_SUPPORTED_CPUID, buf) >= 0) {
      const nent = new DataView(buf.buffer).getUint32(C.KVM_CPUID2_NENT, true);
      return buf.slice(0, C.KVM_CPUID2_SIZE + nent * C.KVM_CPUID_ENTRY2_SIZE);
    }
    if (errno() !== C.E2BIG) check(-1, 'KVM_GET_SUPPORTED_CPUID');
  }
  throw new KvmSysError('KVM_GET_SUPPORTED_CPUID: table larger than 4096 entries', C.E2BIG);
}

/** This host's KVM_GET_SUPPORTED_CPUID, without a VM (opens /dev/kvm and closes it again). */
export function hostSupportedCpuid(): Uint8Array {
  const fd = openKvm();
  try {
    return supportedCpuid(fd);
  } finally {
    sys.close(fd);
  }
}

/** KVM_GET_MSR_INDEX_LIST: every MSR this KVM saves and restores (struct kvm_msr_list). */
export function msrIndexList(kvmFd: number): number[] {
  for (let n = 256; n <= 16384; n *= 4) {
    const buf = new Uint8Array(4 + 4 * n);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, n, true);
    if (sys.ioctlPtr(kvmFd, C.KVM_GET_MSR_INDEX_LIST, buf) >= 0) {
      const count = dv.getUint32(0, true);
      return Array.from({ length: count }, (_, i) => dv.getUint32(4 + 4 * i, true));
    }
    if (errno() !== C.E2BIG) check(-1, 'KVM_GET_MSR_INDEX_LIST');
  }
  throw new KvmSysError('KVM_GET_MSR_INDEX_LIST: more than 16384 MSRs', C.E2BIG);
}

/** Size of struct kvm_irqchip's `chip` union (PIC or IOAPIC state). */
export const IRQCHIP_STATE_SIZE = C.KVM_IRQCHIP_SIZE - C.KVM_IRQCHIP_CHIP;

/**
 * The VM-wide state a pause and a snapshot keep: the in-kernel PIC pair and IOAPIC
 * (kvm_irqchip.chip, as KVM lays it out), the PIT (kvm_pit_state2) and the kvm-clock
 * (kvm_clock_data.clock, ns). The vCPUs' state is each vCPU thread's (vcpu-state.ts).
 */
export interface KvmVmState {
  picMaster: Uint8Array;
  picSlave: Uint8Array;
  ioapic: Uint8Array;
  pit: Uint8Array;
  clockNs: bigint;
}

/** Capabilities pause and snapshots rely on, with what each keeps. */
const SNAPSHOT_CAPS = [
  [C.KVM_CAP_ADJUST_CLOCK, 'KVM_CAP_ADJUST_CLOCK', 'the guest clock'],
  [C.KVM_CAP_PIT_STATE2, 'KVM_CAP_PIT_STATE2', 'the PIT'],
  [C.KVM_CAP_XSAVE, 'KVM_CAP_XSAVE', 'x87/SSE/AVX registers'],
  [C.KVM_CAP_XCRS, 'KVM_CAP_XCRS', 'XCR0'],
  [C.KVM_CAP_VCPU_EVENTS, 'KVM_CAP_VCPU_EVENTS', 'pending exceptions and interrupts'],
  [C.KVM_CAP_DEBUGREGS, 'KVM_CAP_DEBUGREGS', 'debug registers'],
  [C.KVM_CAP_MP_STATE, 'KVM_CAP_MP_STATE', 'halted and waiting-for-SIPI vCPUs'],
  [C.KVM_CAP_GET_TSC_KHZ, 'KVM_CAP_GET_TSC_KHZ', 'the TSC frequency'],
] as const;

/** A VM before its guest RAM: the fds and what the host's KVM said about itself. */
interface BareVm {
  kvmFd: number;
  vmFd: number;
  vcpuMmapSize: number;
  cpuid: Uint8Array;
  maxVcpus: number;
  msrIndices: number[];
  xsaveSize: number;
}

/** /dev/kvm opened, checked, a VM with its in-kernel irqchip and PIT; closed again on failure. */
function openBareVm(): BareVm {
  const kvmFd = openKvm();
  let vmFd = -1;
  try {
    const api = check(sys.ioctlVal(kvmFd, C.KVM_GET_API_VERSION, 0), 'KVM_GET_API_VERSION');
    if (api !== C.KVM_API_VERSION) throw new KvmSysError(`KVM API version ${api}, expected ${C.KVM_API_VERSION}`, 0);
    for (const [cap, name] of [
      [C.KVM_CAP_IRQCHIP, 'KVM_CAP_IRQCHIP'],
      [C.KVM_CAP_PIT2, 'KVM_CAP_PIT2'],
      [C.KVM_CAP_USER_MEMORY, 'KVM_CAP_USER_MEMORY'],
      [C.KVM_CAP_EXT_CPUID, 'KVM_CAP_EXT_CPUID'],
    ] as const) {
      if (sys.ioctlVal(kvmFd, C.KVM_CHECK_EXTENSION, cap) <= 0) {
        throw new KvmSysError(`this KVM lacks ${name}; use --engine bt`, 0);
      }
    }
    const maxVcpus = Math.max(1, sys.ioctlVal(kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_MAX_VCPUS));
    const vcpuMmapSize = check(sys.ioctlVal(kvmFd, C.KVM_GET_VCPU_MMAP_SIZE, 0), 'KVM_GET_VCPU_MMAP_SIZE');
    const cpuid = supportedCpuid(kvmFd);
    const msrIndices = msrIndexList(kvmFd);
    vmFd = check(sys.ioctlVal(kvmFd, C.KVM_CREATE_VM, 0), 'KVM_CREATE_VM');
    const xsaveSize = Math.max(C.KVM_XSAVE_SIZE, sys.ioctlVal(vmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_XSAVE2));
    // Intel needs these before the first vCPU runs; elsewhere they are harmless no-ops.
    if (sys.ioctlVal(kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_SET_TSS_ADDR) > 0) {
      check(sys.ioctlVal(vmFd, C.KVM_SET_TSS_ADDR, KVM_TSS_ADDRESS), 'KVM_SET_TSS_ADDR');
    }
    if (sys.ioctlVal(kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
      const a = new Uint8Array(8);
      new DataView(a.buffer).setBigUint64(0, BigInt(KVM_IDENTITY_MAP_ADDRESS), true);
      check(sys.ioctlPtr(vmFd, C.KVM_SET_IDENTITY_MAP_ADDR, a), 'KVM_SET_IDENTITY_MAP_ADDR');
    }
    // In-kernel PIC + IOAPIC + LAPICs, then the PIT (ports 0x40-0x43 and 0x61 stay in the kernel).
    check(sys.ioctlVal(vmFd, C.KVM_CREATE_IRQCHIP, 0), 'KVM_CREATE_IRQCHIP');
    const pit = new Uint8Array(C.KVM_PIT_CONFIG_SIZE);
    new DataView(pit.buffer).setUint32(C.KVM_PIT_CONFIG_FLAGS, C.KVM_PIT_SPEAKER_DUMMY, true);
    check(sys.ioctlPtr(vmFd, C.KVM_CREATE_PIT2, pit), 'KVM_CREATE_PIT2');
    return { kvmFd, vmFd, vcpuMmapSize, cpuid, maxVcpus, msrIndices, xsaveSize };
  } catch (e) {
    if (vmFd >= 0) sys.close(vmFd);
    sys.close(kvmFd);
    throw e;
  }
}

const slotBuffer = new Uint8Array(C.KVM_USERSPACE_MEMORY_REGION_SIZE);
/** KVM_SET_USER_MEMORY_REGION (a size of 0 deletes the slot). */
function setSlot(vmFd: number, slot: number, guestBase: number, size: number, address: bigint): void {
  const sv = new DataView(slotBuffer.buffer);
  sv.setUint32(C.KVM_USERSPACE_MEMORY_REGION_SLOT, slot, true);
  sv.setUint32(C.KVM_USERSPACE_MEMORY_REGION_FLAGS, 0, true);
  sv.setBigUint64(C.KVM_USERSPACE_MEMORY_REGION_GUEST_PHYS_ADDR, BigInt(guestBase), true);
  sv.setBigUint64(C.KVM_USERSPACE_MEMORY_REGION_MEMORY_SIZE, BigInt(size), true);
  sv.setBigUint64(C.KVM_USERSPACE_MEMORY_REGION_USERSPACE_ADDR, address, true);
  check(sys.ioctlPtr(vmFd, C.KVM_SET_USER_MEMORY_REGION, slotBuffer), `KVM_SET_USER_MEMORY_REGION (slot ${slot})`);
}

/**
 * A VM opened ahead of need (prepareKvmVm), taken by the next KvmVm. Why: on a restore, all of
 * KvmVm's kernel work but the guest's own memory slots can happen before the request. Measured
 * on kvm_pvm (2 shared cores): the supported CPUID table ~1 ms, KVM_CREATE_VM and the irqchip
 * ~1 ms, and above all the first KVM_SET_USER_MEMORY_REGION of a VM 4-8 ms whatever its size
 * (2 MiB or 2 GiB; the next slots 0.05-0.3 ms: a one-time cost of the VM in the kernel).
 */
let spare: BareVm | undefined;

/**
 * Open a VM now for the next KvmVm (a server waiting for its first request: Vm.preload): the
 * fds, the host's tables, irqchip and PIT, and a first memory slot added and deleted again so
 * the VM's one-time cost of its first slot is paid. Never throws: a host that cannot leaves
 * nothing behind, and KvmVm reports the problem when it opens its own.
 */
export function prepareKvmVm(): void {
  if (spare) return;
  let bare: BareVm | undefined;
  let page: bigint | undefined;
  try {
    bare = openBareVm();
    // the guest clock (KVM_SET_CLOCK) must be settable: a boot starts it at 0 (KvmVm)
    if (sys.ioctlVal(bare.kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_ADJUST_CLOCK) <= 0) throw new Error('no KVM_CAP_ADJUST_CLOCK');
    page = addressOf(mmapChecked(PAGE, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS, -1, 'a page for a first memory slot'));
    setSlot(bare.vmFd, 0, 0, PAGE, page);
    setSlot(bare.vmFd, 0, 0, 0, 0n);
    spare = bare;
  } catch {
    if (bare) closeBare(bare);
  } finally {
    if (page !== undefined) sys.munmap(page, PAGE);
  }
}

/** Close the VM prepareKvmVm opened, if nobody took it (a bt VM, a server ending). */
export function dropSpareKvmVm(): void {
  if (spare) closeBare(spare);
  spare = undefined;
}

function closeBare(b: BareVm): void {
  sys.close(b.vmFd);
  sys.close(b.kvmFd);
}

const PAGE = 4096;

export class KvmVm {
  readonly kvmFd: number;
  readonly vmFd: number;
  readonly vcpuMmapSize: number;
  readonly cpuid: Uint8Array;
  readonly maxVcpus: number;
  /** The MSRs a vCPU snapshot holds (KVM_GET_MSR_INDEX_LIST). */
  readonly msrIndices: number[];
  /** Bytes of a vCPU's XSAVE area (4096, or more with KVM_CAP_XSAVE2). */
  readonly xsaveSize: number;
  private closed = false;

  /** A VM with `memory` as its RAM: the one prepareKvmVm opened, else a new one. */
  constructor(memory: KvmMemoryHandle) {
    const prepared = spare;
    spare = undefined;
    const bare = prepared ?? openBareVm();
    ({ kvmFd: this.kvmFd, vmFd: this.vmFd, vcpuMmapSize: this.vcpuMmapSize, cpuid: this.cpuid, maxVcpus: this.maxVcpus, msrIndices: this.msrIndices, xsaveSize: this.xsaveSize } = bare);
    try {
      // a VM opened ahead: its guest clock ran since; a boot starts at 0, as in a new VM (a restore sets its own)
      if (prepared) this.setClock(0n);
      memory.regions.forEach((r, i) => setSlot(this.vmFd, i, r.guestBase, r.size, r.address));
    } catch (e) {
      closeBare(bare);
      throw e;
    }
  }

  /** Set the level of GSI `gsi` on the in-kernel PIC/IOAPIC. Callable from any thread. */
  setIrq(gsi: number, level: boolean): void {
    setIrqLine(this.vmFd, gsi, level);
  }

  /**
   * Why this KVM cannot pause or snapshot a VM (a capability it lacks, named with what it would
   * keep), or undefined when it can. Checked before a pause, so no state is silently dropped.
   */
  snapshotUnsupported(): string | undefined {
    for (const [cap, name, what] of SNAPSHOT_CAPS) {
      if (sys.ioctlVal(this.kvmFd, C.KVM_CHECK_EXTENSION, cap) <= 0) {
        return `this host's KVM lacks ${name} (${what} could not be saved): pause and snapshots need the bt engine here (--engine bt)`;
      }
    }
    return undefined;
  }

  /** The kvm-clock (ns): KVM_GET_CLOCK. */
  getClock(): bigint {
    const buf = new Uint8Array(C.KVM_CLOCK_DATA_SIZE);
    check(sys.ioctlPtr(this.vmFd, C.KVM_GET_CLOCK, buf), 'KVM_GET_CLOCK');
    return new DataView(buf.buffer).getBigUint64(C.KVM_CLOCK_DATA_CLOCK, true);
  }

  /** Set the kvm-clock to `ns` (no flags: the guest continues from exactly there). */
  setClock(ns: bigint): void {
    const buf = new Uint8Array(C.KVM_CLOCK_DATA_SIZE);
    new DataView(buf.buffer).setBigUint64(C.KVM_CLOCK_DATA_CLOCK, ns, true);
    check(sys.ioctlPtr(this.vmFd, C.KVM_SET_CLOCK, buf), 'KVM_SET_CLOCK');
  }

  /** The PIT's state (struct kvm_pit_state2). */
  getPit(): Uint8Array {
    const buf = new Uint8Array(C.KVM_PIT_STATE2_SIZE);
    check(sys.ioctlPtr(this.vmFd, C.KVM_GET_PIT2, buf), 'KVM_GET_PIT2');
    return buf;
  }

  setPit(state: Uint8Array): void {
    if (state.length !== C.KVM_PIT_STATE2_SIZE) throw new KvmSysError(`PIT state of ${state.length} bytes, KVM's kvm_pit_state2 has ${C.KVM_PIT_STATE2_SIZE}`, C.EINVAL);
    check(sys.ioctlPtr(this.vmFd, C.KVM_SET_PIT2, state.slice()), 'KVM_SET_PIT2');
  }

  /** One in-kernel interrupt controller's state (kvm_irqchip.chip): KVM_IRQCHIP_PIC_MASTER, _SLAVE or _IOAPIC. */
  getIrqchip(chip: number): Uint8Array {
    const buf = new Uint8Array(C.KVM_IRQCHIP_SIZE);
    new DataView(buf.buffer).setUint32(C.KVM_IRQCHIP_CHIP_ID, chip, true);
    check(sys.ioctlPtr(this.vmFd, C.KVM_GET_IRQCHIP, buf), `KVM_GET_IRQCHIP (chip ${chip})`);
    return buf.slice(C.KVM_IRQCHIP_CHIP);
  }

  setIrqchip(chip: number, state: Uint8Array): void {
    if (state.length !== IRQCHIP_STATE_SIZE) throw new KvmSysError(`irqchip ${chip} state of ${state.length} bytes, KVM's has ${IRQCHIP_STATE_SIZE}`, C.EINVAL);
    const buf = new Uint8Array(C.KVM_IRQCHIP_SIZE);
    new DataView(buf.buffer).setUint32(C.KVM_IRQCHIP_CHIP_ID, chip, true);
    buf.set(state, C.KVM_IRQCHIP_CHIP);
    check(sys.ioctlPtr(this.vmFd, C.KVM_SET_IRQCHIP, buf), `KVM_SET_IRQCHIP (chip ${chip})`);
  }

  /** Everything VM-wide, with the clock and PIT given (a pause keeps them from its start). */
  saveState(clockNs: bigint, pit: Uint8Array): KvmVmState {
    return {
      picMaster: this.getIrqchip(C.KVM_IRQCHIP_PIC_MASTER),
      picSlave: this.getIrqchip(C.KVM_IRQCHIP_PIC_SLAVE),
      ioapic: this.getIrqchip(C.KVM_IRQCHIP_IOAPIC),
      pit,
      clockNs,
    };
  }

  /** Put VM-wide state back (after the devices have re-driven their lines, before any vCPU runs). */
  restoreState(s: KvmVmState): void {
    this.setIrqchip(C.KVM_IRQCHIP_PIC_MASTER, s.picMaster);
    this.setIrqchip(C.KVM_IRQCHIP_PIC_SLAVE, s.picSlave);
    this.setIrqchip(C.KVM_IRQCHIP_IOAPIC, s.ioapic);
    this.setPit(s.pit);
    this.setClock(s.clockNs);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.close(this.vmFd);
    sys.close(this.kvmFd);
  }
}

const irqLevel = new Uint8Array(C.KVM_IRQ_LEVEL_SIZE);
const irqLevelView = new DataView(irqLevel.buffer);
/** KVM_IRQ_LINE on a VM fd (the fd number is valid in every thread of the process). */
export function setIrqLine(vmFd: number, gsi: number, level: boolean): void {
  irqLevelView.setUint32(C.KVM_IRQ_LEVEL_IRQ, gsi, true);
  irqLevelView.setUint32(C.KVM_IRQ_LEVEL_LEVEL, level ? 1 : 0, true);
  check(sys.ioctlPtr(vmFd, C.KVM_IRQ_LINE, irqLevel), `KVM_IRQ_LINE (gsi ${gsi})`);
}
