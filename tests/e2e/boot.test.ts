/**
 * End to end on the real Debian kernel: boot the default guest on the software engine, run
 * commands in its shell over the serial console, power off. Both the bzImage path and the
 * extracted-vmlinux path.
 *
 * The guest artifacts come from the default-guest cache (`.ci/run` fetches them first).
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { VmProcess } from '../support/guest-process.js';

const BOOT_TIMEOUT = 15 * 60_000;
const CMD_TIMEOUT = 5 * 60_000;

let vm: VmProcess | undefined;
afterEach(() => vm?.kill());

const sh = (v: VmProcess, cmd: string): Promise<string> => v.sh(cmd, CMD_TIMEOUT);

async function bootAndCheck(args: string[]): Promise<void> {
  vm = new VmProcess(['--engine', 'bt', ...args]);
  await vm.waitFor(/TYPEVISOR-INIT-OK/, BOOT_TIMEOUT);
  const banner = await vm.waitFor(/kernel (\S+)\)/, CMD_TIMEOUT);

  const release = await sh(vm, 'uname -r');
  expect(release).toMatch(/^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
  expect(release).toBe(banner[1]);

  expect(await sh(vm, 'echo $((6*7))')).toBe('42');

  const guestNow = Number(await sh(vm, 'date +%s'));
  expect(Math.abs(guestNow - Date.now() / 1000)).toBeLessThan(60);

  const data = 'typevisor boots Debian\n';
  const want = createHash('sha256').update(data).digest('hex');
  expect(await sh(vm, `printf 'typevisor boots Debian\\n' | sha256sum`)).toBe(`${want}  -`);

  const cpuinfo = await sh(vm, 'cat /proc/cpuinfo');
  expect(cpuinfo).toMatch(/^processor\s*: 0$/m);
  expect(cpuinfo).toMatch(/^flags\s*:.* sse2 /m);

  vm.send('poweroff\n');
  const { code } = await vm.exited;
  expect(code).toBe(0);
}

describe('Debian cloud kernel on the bt engine', () => {
  it('boots the bzImage to a shell, runs commands and powers off', async () => {
    await bootAndCheck([]);
  }, BOOT_TIMEOUT + 10 * CMD_TIMEOUT);

  it('takes its commands from a pipe, as in `printf \'uname -r\\npoweroff\\n\' | typevisor run`', async () => {
    vm = new VmProcess(['--engine', 'bt']);
    vm.send('uname -r\npoweroff\n'); // sent before the guest is up: held back, not lost
    const { code } = await vm.exited;
    expect(code).toBe(0);
    expect(vm.output).toMatch(/# uname -r\r?\n\d+\.\d+\.\d+-\d+-cloud-amd64\r?\n/);
  }, BOOT_TIMEOUT);

  it('boots the extracted vmlinux the same way', async () => {
    await bootAndCheck(['--vmlinux']);
  }, BOOT_TIMEOUT + 10 * CMD_TIMEOUT);
});
