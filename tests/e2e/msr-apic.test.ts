/**
 * Two of the smaller results a test kernel checks (guests/msr-apic.asm): IA32_MISC_ENABLE keeps its
 * upper half, and IA32_APIC_BASE moves the local APIC. The expected output is recorded here; it
 * runs on the bt engine and, where QEMU is installed, under QEMU TCG, which prints the same.
 */
import { describeKernel } from '../support/test-kernel.js';

const EXPECTED = 'misc-enable: 1\napic-moved: 00000014\n';

describeKernel({
  name: 'msr-apic',
  title: 'MSR and APIC-base test kernel',
  expected: EXPECTED,
});
