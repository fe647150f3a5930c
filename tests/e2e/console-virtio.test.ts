/**
 * `--console virtio`: the default guest's console on virtio-console (hvc0) instead of the UART,
 * with stdin piped in before the guest is up, as `printf '...' | typevisor run --console virtio`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { VmProcess } from '../support/guest-process.js';

const TIMEOUT = 10 * 60_000;
let vm: VmProcess | undefined;
afterEach(() => vm?.kill());

describe('the virtio console', () => {
  it('runs the shell on hvc0, takes piped input sent before the guest is up, and powers off', async () => {
    vm = new VmProcess(['--engine', 'bt', '--console', 'virtio']);
    vm.send('tty; cat /proc/consoles; echo "sum=$((40+2))"\npoweroff\n'); // held until the guest's console is live
    const { code } = await vm.exited;
    expect(code).toBe(0);
    expect(vm.output).toMatch(/^\/dev\/hvc0\r?$/m);
    expect(vm.output).toMatch(/^hvc0 .*\(EC/m);
    expect(vm.output).toMatch(/^sum=42\r?$/m);
    expect(vm.output).toContain('TYPEVISOR-INIT-OK');
  }, TIMEOUT);
});
