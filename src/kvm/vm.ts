/**
 * The KVM virtual machine (main thread): /dev/kvm, the VM fd, in-kernel irqchip and PIT, guest
 * RAM registered as memory slots, and the host's supported CPUID table. vCPUs are created by
 * their own worker threads (KVM wants vCPU ioctls issued from the thread that runs the vCPU).
 */
import { KvmSysError, C, check, errno, sys } from './sys.js';
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

export class KvmVm {
  readonly kvmFd: number;
  readonly vmFd: number;
  readonly vcpuMmapSize: number;
  readonly cpuid: Uint8Array;
  readonly maxVcpus: number;
  private closed = false;

  constructor(memory: KvmMemoryHandle) {
    this.kvmFd = openKvm();
    let vmFd = -1;
    try {
      const api = check(sys.ioctlVal(this.kvmFd, C.KVM_GET_API_VERSION, 0), 'KVM_GET_API_VERSION');
      if (api !== C.KVM_API_VERSION) throw new KvmSysError(`KVM API version ${api}, expected ${C.KVM_API_VERSION}`, 0);
      for (const [cap, name] of [
        [C.KVM_CAP_IRQCHIP, 'KVM_CAP_IRQCHIP'],
        [C.KVM_CAP_PIT2, 'KVM_CAP_PIT2'],
        [C.KVM_CAP_USER_MEMORY, 'KVM_CAP_USER_MEMORY'],
        [C.KVM_CAP_EXT_CPUID, 'KVM_CAP_EXT_CPUID'],
      ] as const) {
        if (sys.ioctlVal(this.kvmFd, C.KVM_CHECK_EXTENSION, cap) <= 0) {
          throw new KvmSysError(`this KVM lacks ${name}; use --engine bt`, 0);
        }
      }
      this.maxVcpus = Math.max(1, sys.ioctlVal(this.kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_MAX_VCPUS));
      this.vcpuMmapSize = check(sys.ioctlVal(this.kvmFd, C.KVM_GET_VCPU_MMAP_SIZE, 0), 'KVM_GET_VCPU_MMAP_SIZE');
      this.cpuid = supportedCpuid(this.kvmFd);
      vmFd = check(sys.ioctlVal(this.kvmFd, C.KVM_CREATE_VM, 0), 'KVM_CREATE_VM');
      // Intel needs these before the first vCPU runs; elsewhere they are harmless no-ops.
      if (sys.ioctlVal(this.kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_SET_TSS_ADDR) > 0) {
        check(sys.ioctlVal(vmFd, C.KVM_SET_TSS_ADDR, KVM_TSS_ADDRESS), 'KVM_SET_TSS_ADDR');
      }
      if (sys.ioctlVal(this.kvmFd, C.KVM_CHECK_EXTENSION, C.KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        const a = new Uint8Array(8);
        new DataView(a.buffer).setBigUint64(0, BigInt(KVM_IDENTITY_MAP_ADDRESS), true);
        check(sys.ioctlPtr(vmFd, C.KVM_SET_IDENTITY_MAP_ADDR, a), 'KVM_SET_IDENTITY_MAP_ADDR');
      }
      // In-kernel PIC + IOAPIC + LAPICs, then the PIT (ports 0x40-0x43 and 0x61 stay in the kernel).
      check(sys.ioctlVal(vmFd, C.KVM_CREATE_IRQCHIP, 0), 'KVM_CREATE_IRQCHIP');
      const pit = new Uint8Array(C.KVM_PIT_CONFIG_SIZE);
      new DataView(pit.buffer).setUint32(C.KVM_PIT_CONFIG_FLAGS, C.KVM_PIT_SPEAKER_DUMMY, true);
      check(sys.ioctlPtr(vmFd, C.KVM_CREATE_PIT2, pit), 'KVM_CREATE_PIT2');
      const slot = new Uint8Array(C.KVM_USERSPACE_MEMORY_REGION_SIZE);
      const sv = new DataView(slot.buffer);
      memory.regions.forEach((r, i) => {
        sv.setUint32(C.KVM_USERSPACE_MEMORY_REGION_SLOT, i, true);
        sv.setUint32(C.KVM_USERSPACE_MEMORY_REGION_FLAGS, 0, true);
        sv.setBigUint64(C.KVM_USERSPACE_MEMORY_REGION_GUEST_PHYS_ADDR, BigInt(r.guestBase), true);
        sv.setBigUint64(C.KVM_USERSPACE_MEMORY_REGION_MEMORY_SIZE, BigInt(r.size), true);
        sv.setBigUint64(C.KVM_USERSPACE_MEMORY_REGION_USERSPACE_ADDR, memory.address + BigInt(r.offset), true);
        check(sys.ioctlPtr(vmFd, C.KVM_SET_USER_MEMORY_REGION, slot), `KVM_SET_USER_MEMORY_REGION (slot ${i})`);
      });
    } catch (e) {
      if (vmFd >= 0) sys.close(vmFd);
      sys.close(this.kvmFd);
      throw e;
    }
    this.vmFd = vmFd;
  }

  /** Set the level of GSI `gsi` on the in-kernel PIC/IOAPIC. Callable from any thread. */
  setIrq(gsi: number, level: boolean): void {
    setIrqLine(this.vmFd, gsi, level);
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
