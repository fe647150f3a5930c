/**
 * virtio-net with `--net stream=SOCKET`, end to end on the bt engine: passt (Debian's `passt`)
 * serves the guest's network over a Unix socket in QEMU's stream framing; the default guest
 * gets a DHCP lease with busybox udhcpc and fetches a file from an HTTP server on the host's
 * loopback (passt maps the gateway address to the host). Skips, saying why, without passt.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, VmProcess } from '../support/guest-process.js';

const PASST = '/usr/bin/passt';
const skip = existsSync(PASST) ? undefined : 'passt missing (apt-get install passt)';
const TIMEOUT = 10 * 60_000;

let passt: ChildProcess | undefined;
let server: http.Server | undefined;
let vm: VmProcess | undefined;
afterAll(() => {
  vm?.kill();
  passt?.kill();
  server?.close();
});

describe.skipIf(skip !== undefined)(`virtio-net over a passt socket${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('refuses a socket nobody listens on, in one line, before booting', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '--net', 'stream=/nonexistent/passt.sock'], { encoding: 'utf8', input: '', timeout: 60_000 });
    expect(r.status).toBe(12);
    expect(r.stderr).toMatch(/^typevisor: cannot connect to the network socket \/nonexistent\/passt\.sock \(no such socket\): start the network back end first/m);
  });

  it('gets a DHCP lease and fetches a file from the host with wget', async () => {
    const blob = randomBytes(1 << 20);
    const want = createHash('sha256').update(blob).digest('hex');
    server = http.createServer((_req, res) => res.end(blob));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;

    // passt started as root drops to nobody: its socket's directory must be writable by it
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-passt-'));
    chmodSync(dir, 0o777);
    const sock = path.join(dir, 'passt.sock');
    passt = spawn(PASST, ['-f', '-1', '-s', sock], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(sock)).toBe(true);

    vm = new VmProcess(['--engine', 'bt', '--net', `stream=${sock}`]);
    await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
    const sh = (cmd: string): Promise<string> => vm!.sh(cmd, TIMEOUT);
    await sh('dmesg -n 1'); // kernel messages (eth0's link coming up) must not land in the output
    // without ,mac= a stream card gets a random 52:54:00 address, which typevisor prints
    const mac = /the network card's MAC is (52:54:00(?::[0-9a-f]{2}){3}) \(random/.exec(vm.stderr)?.[1];
    expect(mac, vm.stderr).toBeDefined();
    expect(await sh('cat /sys/class/net/eth0/address')).toBe(mac);
    expect(await sh('udhcpc -i eth0 -n -q -t 5 >/dev/null 2>&1; echo rc=$?')).toBe('rc=0');
    expect(await sh('ip -4 addr show eth0')).toMatch(/inet \d+\.\d+\.\d+\.\d+\//);
    const gw = await sh(`ip route | sed -n 's/default via \\([^ ]*\\).*/\\1/p'`);
    expect(gw).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(await sh(`wget -q -O - http://${gw}:${port}/blob | sha256sum`)).toBe(`${want}  -`);
    vm.send('poweroff\n');
    expect((await vm.exited).code).toBe(0);
  }, TIMEOUT);
});
