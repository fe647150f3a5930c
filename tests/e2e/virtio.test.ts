/**
 * End to end on the real Debian kernel: the default guest's virtio drivers find typevisor's
 * virtio-pci functions. One boot on the bt engine: the PCI function is there (1af4:1044),
 * virtio_rng binds through MSI-X, /dev/hwrng yields random bytes, and poweroff ends with 0.
 *
 * The guest artifacts come from the default-guest cache (`.ci/run` fetches them first).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { VmProcess } from '../support/guest-process.js';

const BOOT_TIMEOUT = 15 * 60_000;
const CMD_TIMEOUT = 5 * 60_000;

let vm: VmProcess | undefined;
afterAll(() => vm?.kill());

describe('virtio on the bt engine (default guest)', () => {
  it('binds virtio_rng over virtio-pci with MSI-X and reads /dev/hwrng', async () => {
    vm = new VmProcess(['--engine', 'bt']);
    await vm.waitFor(/TYPEVISOR-INIT-OK/, BOOT_TIMEOUT);
    const sh = (cmd: string): Promise<string> => vm!.sh(cmd, CMD_TIMEOUT);

    const pci = await sh('for d in /sys/bus/pci/devices/*; do echo $(cat $d/vendor $d/device $d/revision $d/class); done');
    expect(pci.split('\n')).toContain('0x1af4 0x1044 0x01 0x00ff00');

    expect((await sh('ls /sys/bus/virtio/drivers')).split(/\s+/)).toContain('virtio_rng');
    expect(await sh('cat /sys/class/misc/hw_random/rng_current')).toBe('virtio_rng.0');
    expect(await sh('grep -c "PCI-MSI.*virtio0" /proc/interrupts')).toBe('2'); // config + request queue

    // 64 bytes as hex, twice: bytes arrive, and they are not a constant pattern.
    const a = await sh('head -c 64 /dev/hwrng | od -An -v -tx1 | tr -d " \\n"');
    const b = await sh('head -c 64 /dev/hwrng | od -An -v -tx1 | tr -d " \\n"');
    expect(a).toMatch(/^[0-9a-f]{128}$/);
    expect(b).toMatch(/^[0-9a-f]{128}$/);
    expect(a).not.toBe(b);
    expect(new Set(a.match(/../g)).size).toBeGreaterThan(16);

    vm.send('poweroff\n');
    const { code } = await vm.exited;
    expect(code).toBe(0);
  }, BOOT_TIMEOUT + 6 * CMD_TIMEOUT);
});
