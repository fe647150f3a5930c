/**
 * `--net user`, typevisor's own user-mode network, end to end on the bt engine with the default
 * guest, in one boot: the card has the MAC given with --net user,mac=; busybox udhcpc gets
 * 10.0.2.15 from the stack's DHCP server; the gateway answers ping; wget fetches a 1 MiB file
 * from an HTTP server on the host's loopback through 10.0.2.2 (sha256 checked; in large receive-
 * offload frames, counted by the guest's rx_packets); nslookup asks the
 * DNS relay at 10.0.2.3 for a name in the host's /etc/hosts; 50 concurrent connections; busybox
 * tftp (UDP both ways) from a host server; and --publish brings host connections to busybox httpd
 * and nc in the guest.
 * The boot ends with typevisor stopped by SIGTERM mid-download: the host client sees the end.
 * Also: a published port that is taken is one clear error before booting.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, VmProcess } from '../support/guest-process.js';

const TIMEOUT = 10 * 60_000;

let server: http.Server | undefined;
let vm: VmProcess | undefined;
afterAll(() => {
  vm?.kill();
  server?.close();
});

/** A TCP port nothing listens on right now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function httpGet(port: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve(Buffer.concat(parts)));
      res.on('error', reject);
    }).on('error', reject);
  });
}

describe('--net user: typevisor\'s own NAT network', () => {
  it('refuses a published port that is already in use, in one line, before booting', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as AddressInfo).port;
    try {
      const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '--publish', `${port}:80`], { encoding: 'utf8', input: '', timeout: 120_000 });
      expect(r.stderr).toMatch(new RegExp(`^typevisor: --publish 127\\.0\\.0\\.1:${port}:80: TCP port ${port} on 127\\.0\\.0\\.1 is already in use: `, 'm'));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.status).not.toBe(0);
    } finally {
      busy.close();
    }
    const bad = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--publish', '80'], { encoding: 'utf8', input: '', timeout: 60_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^typevisor: --publish "80" is not understood: give \[ADDR:\]HOSTPORT:GUESTPORT\[\/udp\]/);
    const mac = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--net', 'user,mac=01:00:5e:00:00:01'], { encoding: 'utf8', input: '', timeout: 60_000 });
    expect(mac.status).toBe(2);
    expect(mac.stderr).toBe('typevisor: --net "user,mac=01:00:5e:00:00:01": 01:00:5e:00:00:01 is a multicast address (bit 0 of the first octet is set), which no card may have: make the first octet even, e.g. mac=52:54:00:12:34:56\n');
  }, 180_000);

  it('DHCP, ping, wget from the host, DNS through the relay, and published ports into the guest', async () => {
    const blob = randomBytes(1 << 20);
    const want = createHash('sha256').update(blob).digest('hex');
    const small = randomBytes(20_000);
    const smallSum = createHash('sha256').update(small).digest('hex');
    // the small answers are held until 50 requests are open at once (or 30 s have passed)
    const held: http.ServerResponse[] = [];
    let maxConcurrent = 0;
    let release: NodeJS.Timeout | undefined;
    const releaseAll = (): void => {
      clearTimeout(release);
      release = undefined;
      for (const r of held.splice(0)) r.end(small);
    };
    server = http.createServer((req, res) => {
      if (req.url !== '/small') return res.end(blob);
      held.push(res);
      maxConcurrent = Math.max(maxConcurrent, held.length);
      release ??= setTimeout(releaseAll, 30_000);
      if (held.length === 50) releaseAll();
    });
    // a one-block TFTP server (RFC 1350): RRQ → DATA block 1 (under 512 bytes: the last) → ACK
    const tftpText = `tftp over the user network ${Date.now()}`;
    let tftpAcked = false;
    const tftp = dgram.createSocket('udp4');
    tftp.on('message', (m, r) => {
      const op = m.readUInt16BE(0);
      if (op === 1) tftp.send(Buffer.concat([Buffer.from([0, 3, 0, 1]), Buffer.from(tftpText)]), r.port, r.address);
      else if (op === 4 && m.readUInt16BE(2) === 1) tftpAcked = true;
    });
    await new Promise<void>((r) => tftp.bind(0, '127.0.0.1', r));
    const tftpPort = tftp.address().port;
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const httpdPort = await freePort();
    const ncPort = await freePort();

    vm = new VmProcess(['--engine', 'bt', '--net', 'user,mac=52:54:00:AB:cd:0e', '--publish', `${httpdPort}:8080`, '--publish', `127.0.0.1:${ncPort}:8081`]);
    await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
    const sh = (cmd: string): Promise<string> => vm!.sh(cmd, TIMEOUT);

    await sh('dmesg -n 1'); // kernel messages (eth0's link coming up) must not land in the output
    // the card has the MAC given with --net user,mac=
    expect(await sh('cat /sys/class/net/eth0/address')).toBe('52:54:00:ab:cd:0e');
    // DHCP: the address, the route and the resolver QEMU users know
    expect(await sh('udhcpc -i eth0 -n -q -t 5 >/dev/null 2>&1; echo rc=$?')).toBe('rc=0');
    expect(await sh('ip -4 addr show eth0')).toMatch(/inet 10\.0\.2\.15\/24 /);
    expect(await sh(`ip route | sed -n 's/default via \\([^ ]*\\).*/\\1/p'`)).toBe('10.0.2.2');
    expect(await sh('cat /etc/resolv.conf')).toBe('nameserver 10.0.2.3');

    // ICMP echo: the gateway answers itself
    expect(await sh('ping -c 2 -W 5 10.0.2.2 >/dev/null 2>&1; echo rc=$?')).toBe('rc=0');

    // TCP to the host's loopback through the gateway address: 1 MiB, byte-exact, in large frames
    // (GUEST_TSO4: up to 64 KiB each) where MTU-sized ones would take ~720
    const rxPackets = async (): Promise<number> => Number(await sh('cat /sys/class/net/eth0/statistics/rx_packets'));
    const before = await rxPackets();
    expect(await sh(`wget -q -O - http://10.0.2.2:${port}/blob | sha256sum`)).toBe(`${want}  -`);
    expect((await rxPackets()) - before).toBeLessThan(200);

    // 50 connections at once, each answer byte-exact
    expect(await sh(`for i in $(seq 50); do wget -q -O /tmp/c$i http://10.0.2.2:${port}/small & done; wait; cat /tmp/c* | wc -c; sha256sum /tmp/c* | cut -d' ' -f1 | sort -u`)).toBe(`${50 * small.length}\n${smallSum}`);
    expect(maxConcurrent).toBe(50);

    // UDP both ways through the NAT: busybox tftp fetches a file from the host
    expect(await sh(`tftp -g -r hello.txt -l /tmp/tftp 10.0.2.2 ${tftpPort} && cat /tmp/tftp`)).toBe(tftpText);
    expect(tftpAcked).toBe(true);
    tftp.close();

    // DNS through the relay: a name from the host's /etc/hosts
    expect(await sh('nslookup localhost 10.0.2.3 2>&1')).toMatch(/Address:?\s*(\d: )?127\.0\.0\.1/);

    // --publish: busybox httpd in the guest, fetched from the host
    await sh('mkdir -p /www && head -c 262144 /dev/urandom > /www/blob && httpd -p 8080 -h /www && echo started');
    const guestSum = (await sh('sha256sum /www/blob')).split(' ')[0];
    const fetched = await httpGet(httpdPort, '/blob');
    expect(fetched.length).toBe(262144);
    expect(createHash('sha256').update(fetched).digest('hex')).toBe(guestSum);

    // --publish: raw TCP into nc in the guest, host → guest, ended by the host's FIN
    await sh('(nc -l -p 8081 > /tmp/got; echo nc-done > /tmp/nc-status) & sleep 1; echo listening');
    const payload = `hello from the host ${Date.now()}\n`;
    await new Promise<void>((resolve, reject) => {
      const c = net.connect({ host: '127.0.0.1', port: ncPort }, () => c.end(payload));
      c.on('error', reject);
      c.on('close', () => resolve());
      c.resume();
    });
    expect(await sh('sleep 1; cat /tmp/nc-status /tmp/got')).toBe(`nc-done\n${payload.trimEnd()}`);

    // typevisor stopped (SIGTERM) in the middle of a download from the guest: the host client
    // sees its connection end, and the process exits with the signal's status
    await sh('head -c 16777216 /dev/zero > /www/big && echo ok');
    let got = 0;
    const ended = new Promise<string>((resolve) => {
      http.get({ host: '127.0.0.1', port: httpdPort, path: '/big' }, (res) => {
        res.on('data', (d: Buffer) => {
          got += d.length;
          if (got > 0 && vm!.child.exitCode === null && !vm!.child.killed) vm!.child.kill('SIGTERM');
        });
        res.on('error', () => resolve('error'));
        res.on('close', () => resolve(got < 16777216 ? 'cut short' : 'complete'));
      }).on('error', () => resolve('error'));
    });
    expect(await ended).toMatch(/cut short|error/);
    expect((await vm.exited).code).toBe(128 + 15);
    expect(vm.stderr).toMatch(/typevisor: stopped by SIGTERM/);
  }, TIMEOUT);
});
