/**
 * Interrupt rules a test kernel checks (guests/interrupt-rules.asm): the STI window with two
 * interrupts pending, NMIs held and collapsed while the NMI handler runs, CPUID hiding a globally
 * disabled APIC. The kernel's expected output is recorded here; it runs on the bt engine and, where
 * QEMU is installed, under QEMU TCG, which must print the same (the recorded output is QEMU's).
 */
import { describe, expect, it } from 'vitest';
import { assembleKernel, exitStatus, hasNasm, hasQemu, runOnBt, runOnQemu } from '../support/test-kernel.js';

const EXPECTED = 'window: 10\nnmi: 2 1\napic-off: 0\n';
const PASSED = exitStatus(0x21);

describe.skipIf(!hasNasm)('interrupt rules test kernel', () => {
  const kernel = (): string => assembleKernel('interrupt-rules');

  it('prints the expected lines on the bt engine', () => {
    const r = runOnBt(kernel());
    expect(r.stdout, r.stderr).toBe(EXPECTED);
    expect(r.status).toBe(PASSED);
  });

  it.skipIf(!hasQemu)(`prints the same under QEMU TCG${hasQemu ? '' : ' (skipped: QEMU is not installed)'}`, () => {
    const r = runOnQemu(kernel());
    expect(r.stdout, r.stderr).toBe(EXPECTED);
    expect(r.status).toBe(PASSED);
  });
});
