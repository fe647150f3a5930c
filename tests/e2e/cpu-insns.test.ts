/**
 * The small instructions of the x86-64-v2+ CPU model a test kernel checks (guests/cpu-insns.asm):
 * CPUID bits, IA32_TSC_AUX with RDTSCP and RDPID, RDTSCP under CR4.TSD at CPL 3, CLFLUSHOPT/CLWB,
 * the fences' #UD with a 66 prefix, RDFSBASE outside 64-bit mode, and UMIP at CPL 3 and 0. The
 * kernel's expected output is recorded here; it runs on the bt engine and, where QEMU is installed,
 * under QEMU TCG (-cpu max), whose output is recorded too where QEMU 7.2 departs from the SDM.
 */
import { describeKernel } from '../support/test-kernel.js';

const EXPECTED = [
  'cpuid: rdtscp 1 rdpid 1 clflushopt 1 clwb 1 fsgsbase 1 umip 1',
  'cpuid v2: sse3 1 ssse3 1 cx16 1 sse4_1 1 sse4_2 1 popcnt 1 lahf_lm 1',
  'tsc_aux: - 12345678 12345678 12345678 order 1',
  'tsc_aux hi: 13:0 12345678 00000000',
  'rdtscp cpl3: - 13:0',
  'flush: - - -',
  'np fences: 6 6 6 -',
  'fsgsbase 32: - 6',
  'umip cpl3 off: - - - - - set -',
  'umip cpl3 on: 13:0 13:0 13:0 13:0 13:0',
  'umip cpl0 on: - - - - -',
  '',
].join('\n');
/**
 * QEMU 7.2 TCG -cpu max prints the same but for three lines:
 * - its model has no RDPID (CPUID.7.0:ECX.RDPID 0) and raises #UD for it, as its CPUID says;
 * - it takes bits 63:32 of IA32_TSC_AUX, which the SDM reserves (WRMSR: #GP(0)) — we follow the SDM;
 * - it runs LFENCE/MFENCE/SFENCE with a 66 prefix, which the SDM marks NP (66 0F AE /6 register
 *   form is TPAUSE) and the host CPU (AMD EPYC) rejects with #UD — we follow the SDM and the host.
 */
const EXPECTED_QEMU = EXPECTED
  .replace('tsc_aux: - 12345678 12345678 12345678', 'tsc_aux: - 12345678 12345678 6')
  .replace('rdpid 1', 'rdpid 0')
  .replace('tsc_aux hi: 13:0 12345678 00000000', 'tsc_aux hi: - 00000001 00000001')
  .replace('np fences: 6 6 6 -', 'np fences: - - - -');

describeKernel({
  name: 'cpu-insns',
  title: 'x86-64-v2+ instructions test kernel',
  expected: EXPECTED,
  qemuExpected: EXPECTED_QEMU,
  qemuCpu: 'max',
});
