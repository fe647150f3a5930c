/** The committed KVM constants match what linux/kvm.h and libc say on this host. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OUTPUT_PATH, canGenerate, generate } from '../../scripts/gen-kvm-constants.js';
import * as C from '../../src/kvm/constants.generated.js';

const skip = canGenerate() ? undefined : 'gcc or /usr/include/linux/kvm.h missing (apt-get install gcc linux-libc-dev)';
if (skip) console.warn(`skipping KVM constants check: ${skip}`);

describe('constants.generated.ts', () => {
  it.skipIf(skip)('is what the generator produces from the installed headers', () => {
    expect(readFileSync(OUTPUT_PATH, 'utf8')).toBe(generate());
  });

  it('has the values measured by hand in shared/notes/kvm-from-node.md', () => {
    expect(C.KVM_CREATE_IRQCHIP).toBe(0xae60);
    expect(C.KVM_IRQ_LINE).toBe(0x4008ae61);
    expect(C.KVM_IRQFD).toBe(0x4020ae76);
    expect(C.KVM_IOEVENTFD).toBe(0x4040ae79);
    expect([C.KVM_RUN_EXIT_REASON, C.KVM_RUN_IMMEDIATE_EXIT, C.KVM_RUN_IO_PORT, C.KVM_RUN_IO_DATA_OFFSET]).toEqual([8, 1, 0x22, 0x28]);
    expect([C.KVM_RUN_MMIO_DATA, C.KVM_RUN_MMIO_LEN, C.KVM_RUN_MMIO_IS_WRITE]).toEqual([0x28, 0x30, 0x34]);
    // io-facts.md: one MSI is one KVM_SIGNAL_MSI with a 32-byte struct kvm_msi.
    expect(C.KVM_SIGNAL_MSI).toBe(0x4020aea5);
    expect([C.KVM_MSI_SIZE, C.KVM_MSI_ADDRESS_LO, C.KVM_MSI_ADDRESS_HI, C.KVM_MSI_DATA, C.KVM_MSI_FLAGS, C.KVM_MSI_DEVID]).toEqual([32, 0, 4, 8, 12, 16]);
  });
});
