/**
 * Interrupt rules a test kernel checks (guests/interrupt-rules.asm): the STI window with two
 * interrupts pending, NMIs held and collapsed while the NMI handler runs, CPUID hiding a globally
 * disabled APIC. The kernel's expected output is recorded here; it runs on the bt engine and, where
 * QEMU is installed, under QEMU TCG, which must print the same (the recorded output is QEMU's).
 */
import { describeKernel } from '../support/test-kernel.js';

const EXPECTED = 'window: 10\nnmi: 2 1\napic-off: 0\n';

describeKernel({
  name: 'interrupt-rules',
  title: 'interrupt rules test kernel',
  expected: EXPECTED,
});
