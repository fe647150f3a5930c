/**
 * SMEP and SMAP as a test kernel checks them (guests/smep-smap.asm): supervisor fetches and data
 * accesses to a user page, STAC/CLAC and the other ways EFLAGS.AC changes, CR0.WP with AC, the
 * implicit supervisor accesses of an LDT load at CPL 0 and CPL 3, STAC/CLAC at CPL 3, an interrupt
 * frame on a user-page stack. The expected output is recorded here (QEMU TCG 7.2, `-cpu max`,
 * prints it too, except where noted); it runs on the bt engine and, where QEMU is installed, under
 * QEMU.
 */
import { describeKernel } from '../support/test-kernel.js';

const EXPECTED = [
  'cpuid: smep=1 smap=1',
  'smap-off read: ok 12345678',
  'smep-off exec: ok',
  'smap-off ldt: ok',
  'stac/clac: 1 0',
  'cr4: 00300000',
  'read: #PF err=00000001 cr2=U+00000000',
  'write: #PF err=00000003 cr2=U+00000004',
  'exec: #PF err=00000011 cr2=U+00000108',
  'stac read: ok 12345678',
  'stac write: ok 0000abcd',
  'clac read: #PF err=00000001 cr2=U+00000008',
  'popf read: ok 12345678',
  'iret ac=0 read: #PF err=00000001 cr2=U+0000000c',
  'iret ac=1 read: ok 12345678',
  'int keeps ac: ok 12345678',
  'ro wp=1 ac=1: #PF err=00000003 cr2=U+00001000',
  'ro wp=0 ac=1: ok 00000002',
  'ro wp=0 ac=0: #PF err=00000003 cr2=U+00001000',
  'ldt ac=0: #PF err=00000001 cr2=U+00000100',
  'ldt ac=1: #PF err=00000001 cr2=U+00000100',
  'cpl3 ldt ac=0: #PF err=00000001 cr2=U+00000100',
  'cpl3 ldt ac=1: #PF err=00000001 cr2=U+00000100',
  'cpl3 stac: #UD',
  'cpl3 clac: #UD',
  'cpl3 ok: ok',
  'frame ac=1: ok',
  'done',
].join('\n') + '\n';

/**
 * QEMU 7.2 differs from the SDM in one line: it lets an implicit supervisor access (here the LDT
 * read of a segment load) made at CPL < 3 with EFLAGS.AC set reach a user page; the SDM (vol. 3
 * §4.6.1) denies implicit accesses user pages whatever AC says, which the bt engine follows.
 */
const EXPECTED_QEMU = EXPECTED.replace('\nldt ac=1: #PF err=00000001 cr2=U+00000100\n', '\nldt ac=1: ok\n');

describeKernel({
  name: 'smep-smap',
  title: 'SMEP/SMAP test kernel',
  expected: EXPECTED,
  qemuExpected: EXPECTED_QEMU,
  qemuCpu: 'max',
});
