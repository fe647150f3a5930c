/**
 * Network benchmark: typevisor's virtio-net on its own user-mode network (bt engine, `--net user
 * --publish`) vs QEMU's binary translator (TCG, `-M pc -accel tcg`, `-netdev user` = libslirp,
 * `hostfwd`, virtio-net-pci), same kernel, same initramfs (the default guest), runs interleaved.
 * Both guests get 10.0.2.15 from their DHCP server (busybox udhcpc) and reach the host's loopback
 * at 10.0.2.2.
 *
 *   guest→host: `head -c N /dev/zero | nc 10.0.2.2 PORT` into a host server that counts the bytes
 *   host→guest: `wget -O - http://10.0.2.2:PORT/ | wc -c` from a host HTTP server sending N bytes
 *               (busybox nc ends the connection at its stdin's EOF, so it cannot only read)
 *   http req/s: sequential HTTP/1.0 GETs (a new connection each) from the host to busybox httpd
 *               in the guest through the published port / hostfwd, a 1 KiB file, for a fixed time
 *
 * Throughput is host wall time from sending the command to the guest until it has finished (as
 * bench/disk.ts), so the nc start-up is included: small next to N.
 *
 * Usage: npm run bench:net [-- --runs N] [-- --mib N] [-- --seconds S] [-- --only typevisor|qemu]
 * QEMU comes from Debian (qemu-system-x86); the script installs it when it is missing.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { prepareDefaultGuest } from '../src/guest/default-guest.js';
import { VmProcess } from '../tests/support/guest-process.js';
import { ensureQemu, median, timed as timedFor, unlessExited } from './support.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const runs = Number(opt('--runs')) || 2;
const mib = Number(opt('--mib')) || 64;
const seconds = Number(opt('--seconds')) || 10;
const only = opt('--only');
const TIMEOUT = 20 * 60_000;
const timed = (vm: VmProcess, cmd: string, expect: RegExp) => timedFor(vm, cmd, expect, TIMEOUT);
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';
const GUEST_HTTP_PORT = 8080;

interface Sample {
  /** MB/s (10^6 bytes per second) */
  upMBs: number;
  downMBs: number;
  /** HTTP requests per second */
  reqs: number;
}

/** Host servers: a sink that counts what one connection sends, an HTTP source that sends `bytes`. */
async function hostServers(bytes: number): Promise<{ sinkPort: number; sourcePort: number; received: () => number; close: () => void }> {
  let received = 0;
  const sink = net.createServer((c) => {
    c.on('data', (d: Buffer) => (received += d.length));
    c.on('end', () => c.end());
    c.on('error', () => {});
  });
  const chunk = Buffer.alloc(256 * 1024);
  const source = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': bytes, 'content-type': 'application/octet-stream' });
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => source.listen(0, '127.0.0.1', r));
  return {
    sinkPort: (sink.address() as AddressInfo).port,
    sourcePort: (source.address() as AddressInfo).port,
    received: () => {
      const r = received;
      received = 0;
      return r;
    },
    close: () => {
      sink.close();
      source.close();
    },
  };
}

/** Sequential GETs, each on a new connection, for `s` seconds: requests per second. */
async function httpRate(port: number, s: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: false });
  const get = (): Promise<number> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/small', agent }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    }).on('error', reject);
  });
  // warm up (the first fork of httpd, the guest's page cache)
  for (let i = 0; i < 3; i++) if ((await get()) !== 1024) throw new Error('httpd in the guest did not serve the 1 KiB file');
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < s * 1000) {
    if ((await get()) !== 1024) throw new Error('a short answer from httpd in the guest');
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function measure(start: (httpPort: number) => VmProcess): Promise<Sample> {
  const bytes = mib * (1 << 20);
  const servers = await hostServers(bytes);
  const httpPort = await freePort();
  const vm = start(httpPort);
  runningVm = vm;
  try {
    await unlessExited(vm, vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT));
    await unlessExited(vm, vm.sh('dmesg -n 1', TIMEOUT));
    await timed(vm, 'i=0; while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; udhcpc -i eth0 -n -q -t 10 >/dev/null 2>&1; ip -4 addr show eth0 | grep -o "inet [0-9.]*"', /^inet 10\.0\.2\.15$/);
    const up = await timed(vm, `head -c ${bytes} /dev/zero | nc 10.0.2.2 ${servers.sinkPort}; echo rc=$?`, /rc=0$/);
    // the sink has seen the end of the connection by the time nc exits, give it a moment
    await new Promise((r) => setTimeout(r, 200));
    const got = servers.received();
    if (got !== bytes) throw new Error(`guest→host: the host received ${got} bytes, not ${bytes}`);
    const down = await timed(vm, `wget -q -O - http://10.0.2.2:${servers.sourcePort}/ | wc -c`, new RegExp(`^\\s*${bytes}$`));
    await timed(vm, `mkdir -p /www && head -c 1024 /dev/urandom > /www/small && httpd -p ${GUEST_HTTP_PORT} -h /www && echo started`, /started$/);
    const reqs = await unlessExited(vm, httpRate(httpPort, seconds));
    process.stderr.write(`    ${reqs.toFixed(1)} req/s over ${seconds} s\n`);
    vm.send('poweroff\n');
    await Promise.race([vm.exited, new Promise((res) => setTimeout(res, 30_000).unref())]);
    return { upMBs: bytes / 1e6 / up.s, downMBs: bytes / 1e6 / down.s, reqs };
  } finally {
    vm.kill();
    runningVm = undefined;
    servers.close();
  }
}

const fmt = (s: Sample): string => `guest→host ${s.upMBs.toFixed(1)} MB/s, host→guest ${s.downMBs.toFixed(1)} MB/s, http ${s.reqs.toFixed(1)} req/s`;

/** The VM to stop if the benchmark is interrupted (Ctrl-C, SIGTERM). */
let runningVm: VmProcess | undefined;
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
  process.on(sig, () => {
    runningVm?.kill();
    process.exit(128 + n);
  });
}

async function main(): Promise<void> {
  if (only !== 'typevisor') ensureQemu();
  const guest = await prepareDefaultGuest();
  const qemuVersion = only === 'typevisor' ? 'none' : execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const cpu = execFileSync('lscpu', { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('Model name')) ?? 'Model name: unknown';
  console.log(`host: ${cpu.replace(/\s+/g, ' ')}; kernel ${guest.kernelVersion}, ${runs} interleaved runs each; ` +
    `peer: ${qemuVersion} -accel tcg -netdev user; ${mib} MiB each way (busybox nc up, wget down), HTTP GETs of 1 KiB for ${seconds} s; ` +
    `load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const tv: Sample[] = [];
  const qemu: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    if (only !== 'qemu') {
      tv.push(await measure((httpPort) => new VmProcess(['--engine', 'bt', '-m', '512M', '--kernel', guest.kernelPath, '--initrd', guest.initrdPath, '--cmdline', CMDLINE,
        '--net', 'user', '--publish', `${httpPort}:${GUEST_HTTP_PORT}`])));
      console.log(`  typevisor run ${i + 1}: ${fmt(tv.at(-1)!)}`);
    }
    if (only !== 'typevisor') {
      qemu.push(await measure((httpPort) => new VmProcess([], {}, [
        'qemu-system-x86_64',
        ['-M', 'pc', '-accel', 'tcg', '-m', '512', '-smp', '1', '-nographic', '-no-reboot',
          '-kernel', guest.kernelPath, '-initrd', guest.initrdPath, '-append', CMDLINE,
          '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${httpPort}-:${GUEST_HTTP_PORT}`, '-device', 'virtio-net-pci,netdev=n0',
          '-device', 'virtio-rng-pci'],
      ])));
      console.log(`  qemu      run ${i + 1}: ${fmt(qemu.at(-1)!)}`);
    }
  }
  if (tv.length === 0 || qemu.length === 0) return;
  const row = (name: string, unit: string, digits: number, pick: (s: Sample) => number) => {
    const a = median(tv.map(pick));
    const b = median(qemu.map(pick));
    console.log(`${name.padEnd(24)} typevisor ${a.toFixed(digits).padStart(8)} ${unit.padEnd(5)} qemu-tcg ${b.toFixed(digits).padStart(8)} ${unit.padEnd(5)} ratio (tv/qemu) ${(a / b).toFixed(2)}`);
  };
  console.log('medians (ratio >= 1: typevisor at least as fast):');
  row(`guest→host ${mib} MiB`, 'MB/s', 1, (s) => s.upMBs);
  row(`host→guest ${mib} MiB`, 'MB/s', 1, (s) => s.downMBs);
  row('http GET 1 KiB', 'req/s', 1, (s) => s.reqs);
  console.log(`load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

await main();
