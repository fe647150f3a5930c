/**
 * Two of the smaller results a test kernel checks (guests/msr-apic.asm): IA32_MISC_ENABLE keeps its
 * upper half, and IA32_APIC_BASE moves the local APIC. The expected output is recorded here; it
 * runs on the bt engine and, where QEMU is installed, under QEMU TCG, which prints the same.
 */
import { describe, expect, it } from 'vitest';
import { assembleKernel, exitStatus, hasNasm, hasQemu, runOnBt, runOnQemu } from '../support/test-kernel.js';

const EXPECTED = 'misc-enable: 1\napic-moved: 00000014\n';
const PASSED = exitStatus(0x21);

describe.skipIf(!hasNasm)('MSR and APIC-base test kernel', () => {
  const kernel = (): string => assembleKernel('msr-apic');

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
