/**
 * MSI delivery on the KVM engine: one message is one KVM_SIGNAL_MSI ioctl on the VM fd, with a
 * 32-byte `struct kvm_msi` {address_lo, address_hi, data, flags, devid, pad[12]} (layout from
 * constants.generated.ts). No GSI routing table is needed: the in-kernel LAPICs decode the
 * address (destination ID, mode) and data (vector, delivery mode) themselves.
 *
 * Which thread: the device thread (vCPU 0's worker) — the virtio transport signals from the
 * MMIO exit that served the doorbell, so the ioctl is made right where the exit is handled, with
 * no hop to another thread. A VM fd is valid in every thread of the process, and KVM takes
 * KVM_SIGNAL_MSI from any thread while vCPUs sit in KVM_RUN (it kicks the target vCPU itself).
 *
 * The guest chooses the message (it programs the MSI-X table), so a message KVM will not
 * deliver is the guest's problem: counted, never thrown. KVM returns > 0 when an APIC took it,
 * 0 when the guest blocked it (no APIC matched, APIC software-disabled), < 0 on error.
 */
import type { MsiSink } from '../machine/irq.js';
import { C, errno, sys } from './sys.js';

export class KvmMsiSink implements MsiSink {
  /** Messages an APIC accepted. */
  delivered = 0;
  /** Messages KVM reported as blocked by the guest (no APIC took them). */
  blockedCount = 0;
  /** Messages KVM refused (errno in lastErrno): a malformed address, say. */
  failedCount = 0;
  lastErrno = 0;
  /** Preallocated struct kvm_msi (one per sink; the sink lives in one thread). */
  private readonly msg = new Uint8Array(C.KVM_MSI_SIZE);
  private readonly view = new DataView(this.msg.buffer);

  constructor(private readonly vmFd: number) {}

  sendMsi(address: number, data: number): void {
    const v = this.view;
    v.setUint32(C.KVM_MSI_ADDRESS_LO, address >>> 0, true);
    v.setUint32(C.KVM_MSI_ADDRESS_HI, Math.floor(address / 0x1_0000_0000) >>> 0, true);
    v.setUint32(C.KVM_MSI_DATA, data >>> 0, true);
    // flags (no KVM_MSI_VALID_DEVID: x86 ignores devid), devid and pad stay zero.
    const r = sys.ioctlPtr(this.vmFd, C.KVM_SIGNAL_MSI, this.msg);
    if (r > 0) this.delivered++;
    else if (r === 0) this.blockedCount++;
    else {
      this.failedCount++;
      this.lastErrno = errno();
    }
  }
}
