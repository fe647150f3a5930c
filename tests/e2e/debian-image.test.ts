/**
 * End to end: `typevisor image debian` builds a Debian 12 image (mmdebstrap + fakeroot +
 * mkfs.ext4; cached under the typevisor cache, so a second run of the suite reuses it), and
 * `typevisor run --disk` boots it on the bt engine through the default initramfs to systemd
 * and a root shell on ttyS0: dpkg and systemctl work, systemd-networkd gets an address on the
 * user network by DHCP and the guest fetches from a server on the host, a file written
 * persists, and `poweroff` ends typevisor with 0.
 *
 * One boot: a systemd boot on the bt engine takes minutes (figures in the report of issue 8), so
 * persistence is checked in the image file on the host with debugfs after the poweroff, not by
 * a second boot.
 *
 * Skipped, saying why, when the image is not cached and mmdebstrap (or fakeroot, e2fsprogs) is
 * missing or the Debian mirror is unreachable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { imagePlan } from '../../src/guest/image/build.js';
import { SUITE } from '../../src/guest/image/config.js';
import { CLI, VmProcess } from '../support/guest-process.js';

const BUILD_TIMEOUT = 15 * 60_000;
// measured: root shell at ~110-130 s on a quiet 2-core host, ~290 s with the cores shared
const BOOT_TIMEOUT = 8 * 60_000;
const CMD_TIMEOUT = 5 * 60_000;
const DEBUGFS = '/sbin/debugfs';
// not anchored at the end: systemd may print status lines right after the prompt
const PROMPT = /root@typevisor:~# /;

const plan = await imagePlan();

/** Why the test cannot run here, or undefined. Only probes the mirror when the cache lacks the image. */
async function skipReason(): Promise<string | undefined> {
  if (!existsSync(DEBUGFS)) return 'debugfs missing (Debian e2fsprogs)';
  if (existsSync(plan.cached)) return undefined;
  for (const [tool, pkg] of [['/usr/bin/mmdebstrap', 'mmdebstrap'], ['/usr/bin/fakeroot', 'fakeroot'], ['/sbin/mkfs.ext4', 'e2fsprogs']]) {
    if (!existsSync(tool!)) return `${pkg} is not installed and the image is not cached`;
  }
  const archive = plan.mirrors[0]!.split(' ')[1]!;
  const release = `${archive}/dists/${SUITE}/InRelease`;
  try {
    const r = await fetch(release, { method: 'HEAD', signal: AbortSignal.timeout(15_000) });
    if (!r.ok) return `the Debian mirror answers ${r.status} for ${release}`;
  } catch (e) {
    return `the Debian mirror is unreachable (${release}: ${(e as Error).message})`;
  }
  return undefined;
}
const skip = await skipReason();

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-debian-'));
const image = path.join(dir, 'debian.img');
let vm: VmProcess | undefined;
afterAll(() => {
  vm?.kill();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[], timeout: number) => spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { encoding: 'utf8', timeout, input: '' });

describe.skipIf(skip)(`Debian from a disk (typevisor image debian, bt engine)${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('builds the image (or takes it from the cache) and refuses to overwrite it', () => {
    const t0 = performance.now();
    const r = cli(['image', 'debian', '--out', image], BUILD_TIMEOUT);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    expect(r.stderr).toMatch(/^typevisor: image: (built|using the image built) /m);
    expect(r.status).toBe(0);
    console.log(`typevisor image debian: ${secs} s (${/using the image built/.test(r.stderr) ? 'cached' : 'built'})`);
    expect(statSync(image).size).toBe(2 * 1024 ** 3);
    expect(execFileSync(DEBUGFS, ['-R', 'cat /etc/fstab', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toMatch(/^\/dev\/vda\t\/\t/m);

    const again = cli(['image', 'debian', '--out', image], 60_000);
    expect(again.stderr.trim()).toBe(`typevisor: ${image} already exists: remove it or give another --out`);
    expect(again.status).toBe(12);
  }, BUILD_TIMEOUT + 60_000);

  it('boots to a root shell on the console; dpkg and systemctl work; networkd takes a DHCP lease and the host answers; a file written survives poweroff', async () => {
    expect(existsSync(image)).toBe(true);
    // a server on the host's loopback, which the guest reaches at the gateway 10.0.2.2
    const server = http.createServer((_req, res) => res.end(`hello from the host ${process.pid}\n`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    vm = new VmProcess(['--engine', 'bt', '--disk', image, '--net', 'user']);
    // a guest that stops early (a panic) fails at once, not at the timeout
    const until = (re: RegExp) => Promise.race([vm!.waitFor(re, BOOT_TIMEOUT), vm!.exited.then((e) => {
      throw new Error(`typevisor ended (status ${e.code}) before ${re}; output tail:\n${vm!.output.slice(-3000)}\nstderr:\n${vm!.stderr}`);
    })]);
    await until(/typevisor: booting \/dev\/vda/);
    const switched = performance.now() - vm.startedAt;
    await until(PROMPT);
    const shell = performance.now() - vm.startedAt;
    const sh = (cmd: string): Promise<string> => vm!.sh(cmd, CMD_TIMEOUT);

    // The console is also the kernel's and systemd's until the boot is done: a slow host had a
    // boot message land between a command's markers. Kernel messages off the console first,
    // then wait for the boot's jobs (--wait; degraded, a unit failed, is accepted), which ends
    // systemd's status lines; only then read command output exactly.
    await sh('dmesg -n 1');
    const state = await sh('systemctl is-system-running --wait');
    if (state.endsWith('degraded')) console.log(`failed units: ${await sh('systemctl --failed --no-legend --plain --no-pager')}`);
    expect(state).toMatch(/(running|degraded)$/);
    const ready = performance.now() - vm.startedAt;
    expect(Number(await sh('dpkg -l | grep -c "^ii"'))).toBeGreaterThan(80);
    expect(await sh('dpkg -l systemd-sysv apt login | grep -c "^ii"')).toBe('3');
    expect(await sh('findmnt -n -o SOURCE,OPTIONS /')).toMatch(/^\/dev\/vda\s+rw,/);
    expect(await sh('apt-get --version | head -n1')).toMatch(/^apt /);

    // systemd-networkd configured eth0 by DHCP: its state files (networkctl needs D-Bus, which
    // minbase lacks); then bash's /dev/tcp fetches from the host through the user network
    // (minbase has no curl or wget)
    const link = '/run/systemd/netif/links/$(cat /sys/class/net/eth0/ifindex)';
    expect(await sh(`for i in $(seq 60); do grep -q OPER_STATE=routable ${link} 2>/dev/null && break; sleep 1; done; grep -E '^(ADMIN|OPER)_STATE=' ${link} | sort | paste -sd ' '`))
      .toBe('ADMIN_STATE=configured OPER_STATE=routable');
    expect(await sh('grep ^ADDRESS= /run/systemd/netif/leases/$(cat /sys/class/net/eth0/ifindex)')).toBe('ADDRESS=10.0.2.15');
    expect(await sh(`exec 3<>/dev/tcp/10.0.2.2/${port}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; tail -n1 <&3; exec 3<&-`)).toBe(`hello from the host ${process.pid}`);
    server.close();

    const tag = `written-by-typevisor-${process.pid}`;
    await sh(`echo ${tag} > /root/file && sync`);
    vm.send('poweroff\n');
    expect((await vm.exited).code).toBe(0);
    const off = performance.now() - vm.startedAt;
    console.log(`debian boot (bt engine): switch_root ${(switched / 1000).toFixed(1)} s, root shell ${(shell / 1000).toFixed(1)} s, `
      + `system running ${(ready / 1000).toFixed(1)} s, powered off ${(off / 1000).toFixed(1)} s`);
    expect(existsSync(`${image}.typevisor-lock`)).toBe(false);

    // Persistence, read from the image file on the host.
    expect(execFileSync(DEBUGFS, ['-R', 'cat /root/file', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toBe(`${tag}\n`);
    expect(spawnSync('/sbin/e2fsck', ['-fn', image]).status).toBe(0);
  }, 2 * BOOT_TIMEOUT + 6 * CMD_TIMEOUT);
});
