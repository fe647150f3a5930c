/**
 * `--net tap=NAME` end to end on the bt engine with the default guest: the test makes a tap
 * (root with CAP_NET_ADMIN only; skipped with the reason otherwise), gives the host side
 * 192.168.214.1/24, boots with --net tap, sets the guest's address by hand (busybox ip), then
 * ping both ways, wget from a host HTTP server (sha256 checked) and the host fetching from
 * busybox httpd in the guest. The tap is deleted afterwards.
 * Also, everywhere: a tap that does not exist is one clear line before booting.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, VmProcess } from '../support/guest-process.js';

const TIMEOUT = 10 * 60_000;
const TAP = 'tvtap-e2e';
const HOST = '192.168.214.1';
const GUEST = '192.168.214.2';

function makeTap(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root with CAP_NET_ADMIN to make a tap device';
  spawnSync('ip', ['tuntap', 'del', TAP, 'mode', 'tap']); // a leftover of an interrupted run
  const r = spawnSync('ip', ['tuntap', 'add', TAP, 'mode', 'tap'], { encoding: 'utf8' });
  if (r.status !== 0) return `ip tuntap add failed: ${(r.stderr || r.error?.message || '').trim()}`;
  spawnSync('ip', ['addr', 'add', `${HOST}/24`, 'dev', TAP]);
  spawnSync('ip', ['link', 'set', TAP, 'up']);
  return undefined;
}

let server: http.Server | undefined;
let vm: VmProcess | undefined;
let noTap: string | undefined;

describe('--net tap', () => {
  it('refuses a tap that does not exist, in one line, before booting', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '--net', 'tap=tvnosuch9'], { encoding: 'utf8', input: '', timeout: 120_000 });
    expect(r.stderr).toMatch(/^typevisor: cannot use tap device tvnosuch9: there is no network interface tvnosuch9: create it first, e\.g\. sudo ip tuntap add tvnosuch9 mode tap user \$USER/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.status).not.toBe(0);
  }, 180_000);

  noTap = makeTap();
  afterAll(() => {
    vm?.kill();
    server?.close();
    if (!noTap) spawnSync('ip', ['tuntap', 'del', TAP, 'mode', 'tap']);
  });

  it.skipIf(noTap !== undefined)(noTap ? `ping, wget and httpd between host and guest (skipped: ${noTap})` : 'ping, wget and httpd between host and guest', async () => {
    const blob = randomBytes(1 << 20);
    const want = createHash('sha256').update(blob).digest('hex');
    server = http.createServer((_req, res) => res.end(blob));
    await new Promise<void>((r) => server!.listen(0, HOST, r));
    const port = (server.address() as AddressInfo).port;

    vm = new VmProcess(['--engine', 'bt', '--net', `tap=${TAP}`]);
    await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
    const sh = (cmd: string): Promise<string> => vm!.sh(cmd, TIMEOUT);
    await sh('dmesg -n 1');
    expect(await sh(`ip addr add ${GUEST}/24 dev eth0 && ip link set eth0 up && echo up`)).toBe('up');

    // ICMP both ways
    expect(await sh(`ping -c 2 -W 5 ${HOST} >/dev/null 2>&1; echo rc=$?`)).toBe('rc=0');
    const ping = spawnSync('ping', ['-c', '2', '-W', '5', GUEST], { encoding: 'utf8' });
    if (!ping.error) expect(ping.status).toBe(0); // (no ping on this host: the guest's side above suffices)

    // guest → host: 1 MiB over TCP, byte-exact
    expect(await sh(`wget -q -O - http://${HOST}:${port}/blob | sha256sum`)).toBe(`${want}  -`);

    // host → guest: busybox httpd
    await sh('mkdir -p /www && head -c 262144 /dev/urandom > /www/blob && httpd -p 8080 -h /www && echo started');
    const guestSum = (await sh('sha256sum /www/blob')).split(' ')[0];
    const fetched = await new Promise<Buffer>((resolve, reject) => {
      http.get({ host: GUEST, port: 8080, path: '/blob' }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve(Buffer.concat(parts)));
        res.on('error', reject);
      }).on('error', reject);
    });
    expect(fetched.length).toBe(262144);
    expect(createHash('sha256').update(fetched).digest('hex')).toBe(guestSum);
    vm.kill();
    await vm.exited;
  }, TIMEOUT);
});
