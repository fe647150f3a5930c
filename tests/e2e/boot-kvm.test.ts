/**
 * The Debian cloud kernel under the KVM engine. It needs hardware virtualization: on a host
 * without it (this project's machines have kvm_pvm) the test is skipped and says why.
 */
import { describe, expect, it } from 'vitest';
import { kvmAvailability } from '../../src/kvm/detect.js';
import { VmProcess } from '../support/guest-process.js';

const kvm = kvmAvailability();
const TIMEOUT = 5 * 60_000;

describe('Debian cloud kernel on the kvm engine', () => {
  it.skipIf(!kvm.usable)(`boots to a shell and powers off${kvm.usable ? '' : ` (skipped: ${kvm.reason})`}`, async () => {
    const vm = new VmProcess(['--engine', 'kvm']);
    try {
      await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
      expect(await vm.sh('echo $((6*7))', TIMEOUT)).toBe('42');
      expect(await vm.sh('uname -r', TIMEOUT)).toMatch(/-cloud-amd64$/);
      vm.send('poweroff\n');
      expect((await vm.exited).code).toBe(0);
    } finally {
      vm.kill();
    }
  }, 2 * TIMEOUT);
});
