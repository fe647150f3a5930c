/**
 * Hostile programs in the default Debian guest (bt engine), one boot for all of them: a JIT that
 * patches and calls code a million times (typevisor's memory must stay flat), stores beside
 * hot code, and at the end a kernel panic, which must end typevisor with its own status and
 * line. The JIT program is built here with Debian's gcc (static) and added to the default
 * initramfs as a second cpio archive.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT_PANIC } from '../../src/machine/machine.js';
import { initrdWithFiles } from '../support/extra-initrd.js';
import { VmProcess } from '../support/guest-process.js';
import { RssSampler } from '../support/rss.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const GCC = '/usr/bin/gcc';
const LIBC_A = '/usr/lib/x86_64-linux-gnu/libc.a';
const skip = !existsSync(GCC) ? 'gcc missing (apt-get install gcc libc6-dev)' : !existsSync(LIBC_A) ? 'static libc missing (apt-get install libc6-dev)' : undefined;

const BOOT_TIMEOUT = 10 * 60_000;
const CMD_TIMEOUT = 10 * 60_000;
/** How far typevisor's RSS may rise above its level after boot while the JIT runs (MiB). */
const RSS_HEADROOM_MIB = 150;

let vm: VmProcess | undefined;
let rss: RssSampler | undefined;
afterAll(() => {
  rss?.stop();
  vm?.kill();
});

describe.skipIf(skip !== undefined)(`hostile programs in the default guest${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('boots with the JIT program in its initramfs', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-hostile-'));
    const jit = path.join(dir, 'jit');
    execFileSync(GCC, ['-O2', '-static', '-o', jit, path.join(here, 'guest/jit.c')]);
    const initrd = await initrdWithFiles(path.join(dir, 'initrd.img'), [{ path: 'bin/jit', bytes: readFileSync(jit) }]);
    vm = new VmProcess(['--engine', 'bt', '--initrd', initrd]);
    rss = new RssSampler(vm.child.pid!);
    await vm.waitFor(/TYPEVISOR-INIT-OK/, BOOT_TIMEOUT);
    expect(await vm.sh('jit 1000', CMD_TIMEOUT)).toBe('jit ok 1000');
    // the pvpanic driver found the device the DSDT describes
    expect(await vm.sh('ls /sys/bus/platform/drivers/pvpanic-mmio/', CMD_TIMEOUT)).toMatch(/QEMU0001:00/);
  }, BOOT_TIMEOUT + CMD_TIMEOUT);

  it('a JIT patching and calling code 10^6 times: no crash, memory flat', async () => {
    expect(vm).toBeDefined();
    // warm up: what a steady state of JIT work costs
    expect(await vm!.sh('jit 50000', CMD_TIMEOUT)).toBe('jit ok 50000');
    const base = rss!.mark();
    expect(await vm!.sh('jit 1000000', CMD_TIMEOUT)).toBe('jit ok 1000000');
    const peak = rss!.peak;
    process.stderr.write(`hostile: JIT 10^6 patches, typevisor RSS ${base.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB\n`);
    expect(peak - base).toBeLessThan(RSS_HEADROOM_MIB);
  }, CMD_TIMEOUT);

  it('stores to a counter beside hot code', async () => {
    expect(await vm!.sh('jit 300000 data', CMD_TIMEOUT)).toBe('jit ok 300000');
  }, CMD_TIMEOUT);

  it('a kernel panic ends typevisor with the panic status and one line saying so', async () => {
    vm!.send('echo c > /proc/sysrq-trigger\n');
    const { code } = await vm!.exited;
    expect(vm!.stderr).toMatch(/^typevisor: the guest kernel panicked: sysrq triggered crash$/m);
    expect(code).toBe(EXIT_PANIC);
  }, CMD_TIMEOUT);
});
