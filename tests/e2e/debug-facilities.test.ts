/**
 * The debug facilities a test kernel checks (guests/debug-facilities.asm): single-step traps,
 * an instruction breakpoint with RF, a data write breakpoint, an I/O breakpoint, general detect,
 * and RF in exception frames. The expected output is recorded here; it runs on the bt engine and,
 * where QEMU is installed, under QEMU TCG, which prints the same but for two lines where QEMU 7.2
 * does not do what the SDM says and typevisor follows the SDM: DR7.GD (QEMU does not fault on
 * MOV DR; SDM vol. 3, 17.2.4) and RF in the frames of faults (QEMU pushes 0; the SDM, 17.3.1.1 and
 * 6.12.1, has the processor set it for every fault but an instruction breakpoint).
 */
import { describeKernel } from '../support/test-kernel.js';

const COMMON = 'step: 6 1 int: 1\nibp: 1 1 1 7\ndbp: 1 2 1\nio: 1 8 1\n';

describeKernel({
  name: 'debug-facilities',
  title: 'debug facilities test kernel',
  expected: `${COMMON}gd: 1 1 1 0\nrf: ud 1 de 1 bp 0\n`,
  qemuExpected: `${COMMON}gd: 0 0 0 1\nrf: ud 0 de 0 bp 0\n`,
  qemuCpu: 'max',
});
