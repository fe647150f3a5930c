/**
 * virtio on the KVM engine: the machine `typevisor run --engine kvm` builds (virtio-rng on PCI,
 * in-kernel irqchip) driven by a small guest that finds the function, programs its BAR, sets up
 * a virtqueue by hand and gets 16 random bytes — once with MSI-X (KVM_SIGNAL_MSI from the device
 * thread) and once with INTx (KVM_IRQ_LINE on the in-kernel IOAPIC's pin for the slot).
 */
import { describe, expect, it } from 'vitest';
import { kvmSkipReason, PRODUCT_MACHINE_MODULE, runGuest } from './harness.js';
import { FAIL, VIRTIO_GUEST_OK, virtioRngGuest } from './virtio-guest.js';

const skip = kvmSkipReason();
if (skip) console.warn(`skipping KVM virtio tests: ${skip}`);

const failure = (value: number): string => Object.entries(FAIL).find(([, v]) => v === value)?.[0] ?? `value 0x${value.toString(16)}`;

describe.skipIf(skip)('virtio-rng on the KVM engine', () => {
  for (const intx of [false, true]) {
    it(`serves a virtqueue set up by a small guest and interrupts it through ${intx ? 'INTx (IOAPIC)' : 'MSI-X'}`, async () => {
      const r = await runGuest(virtioRngGuest({ intx, rounds: 3 }), { machine: PRODUCT_MACHINE_MODULE, timeoutMs: 20_000 });
      // A guest still waiting for its interrupt after 20 s is stopped with `quit`.
      const got = r.reason.kind === 'debug-exit' ? failure(r.reason.value) : JSON.stringify(r.reason);
      expect(r.reason, got).toEqual({ kind: 'debug-exit', value: VIRTIO_GUEST_OK });
      expect(r.out).toBe('S');
    });
  }
});
