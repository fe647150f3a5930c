/**
 * The debug facilities a test kernel checks (guests/debug-facilities.asm): single-step traps,
 * an instruction breakpoint with RF, a data write breakpoint, and RF in exception frames. The
 * expected output is recorded here; it runs on the bt engine and, where QEMU is installed, under
 * QEMU TCG, which prints the same except for RF: QEMU 7.2 pushes RF=0 in the frames of faults,
 * where the SDM (vol. 3, 17.3.1.1 and 6.12.1) has the processor set it for every fault but an
 * instruction breakpoint — typevisor follows the SDM.
 */
import { describe, expect, it } from 'vitest';
import { assembleKernel, exitStatus, hasNasm, hasQemu, runOnBt, runOnQemu } from '../support/test-kernel.js';

const COMMON = 'step: 6 1 int: 1\nibp: 1 1 1 7\ndbp: 1 2 1\n';
const PASSED = exitStatus(0x21);

describe.skipIf(!hasNasm)('debug facilities test kernel', () => {
  const kernel = (): string => assembleKernel('debug-facilities');

  it('prints the expected lines on the bt engine', () => {
    const r = runOnBt(kernel());
    expect(r.stdout, r.stderr).toBe(`${COMMON}rf: ud 1 de 1 bp 0\n`);
    expect(r.status).toBe(PASSED);
  });

  it.skipIf(!hasQemu)(`prints the same under QEMU TCG, but for RF${hasQemu ? '' : ' (skipped: QEMU is not installed)'}`, () => {
    const r = runOnQemu(kernel(), 'max');
    expect(r.stdout, r.stderr).toBe(`${COMMON}rf: ud 0 de 0 bp 0\n`);
    expect(r.status).toBe(PASSED);
  });
});
