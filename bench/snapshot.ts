/**
 * Snapshot create and restore, typevisor (bt engine, the built CLI's `typevisor serve` and its
 * API; the bench runs `npm run build` first) beside QEMU
 * TCG (HMP `migrate "exec:cat > FILE"` while stopped, and `-incoming "exec:cat FILE"`), for
 * guests of 256 MiB, 1 GiB and 4 GiB booted to the default guest's shell. Not a test.
 *
 * For each size and each VMM: boot, wait for the shell, start a counter in the guest, then
 *   create:           typevisor: PATCH /vm Paused + PUT /snapshot/create (host wall time);
 *                     QEMU: `stop` + `migrate` (synchronous in HMP) over the monitor socket
 *   restore→running:  typevisor: PUT /snapshot/load with resume_vm, request to 204 (the
 *                     machine built, the memory file mapped, every register and device
 *                     restored; the guest runs from the next turn of the event loop)
 *   spawn→answer:     from spawning the new process until the restored guest answers a
 *                     command on its console (process start, restore and warm-up together;
 *                     QEMU's whole restore happens at start-up, so this row compares them)
 * and the snapshot's size on disk (both write sparse or compressed-zero pages). Then the kvm
 * engine's rows with a small guest, where /dev/kvm opens (typevisorKvm below).
 *
 * Usage: npm run bench:snapshot [-- --sizes 256,1024,4096] [--engines bt,kvm]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiCall, apiRequest } from '../src/api/client.js';
import { prepareDefaultGuest } from '../src/guest/default-guest.js';
import { kvmAvailability } from '../src/kvm/detect.js';
import { VmProcess } from '../tests/support/guest-process.js';
import { ensureQemu } from './support.js';

const args = process.argv.slice(2);
const sizesArg = args.includes('--sizes') ? args[args.indexOf('--sizes') + 1]! : '256,1024,4096';
const SIZES = sizesArg.split(',').map(Number);
const ENGINES = (args.includes('--engines') ? args[args.indexOf('--engines') + 1]! : 'bt,kvm').split(',');
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';
const WAIT = 10 * 60_000;
const QEMU = '/usr/bin/qemu-system-x86_64';
const PROMPT = /typevisor:~# /;

ensureQemu();
const BUILT_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/bundle/main.js');
if (spawnSync('npm', ['run', 'build'], { stdio: 'ignore' }).status !== 0) throw new Error('npm run build failed: run it to see why');
const guest = await prepareDefaultGuest();
const work = mkdtempSync(path.join(tmpdir(), 'typevisor-bench-snap-'));
const procs: VmProcess[] = [];
const cleanup = (): void => {
  for (const p of procs) p.kill();
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => (cleanup(), process.exit(130)));

const ms = (t0: number): number => performance.now() - t0;
const diskBytes = (...files: string[]): number => files.reduce((n, f) => n + statSync(f).blocks * 512, 0);

/** Start a counter, wait until it counted, return nothing; the guest is then busy as a user's would be. */
async function startCounter(vm: VmProcess): Promise<void> {
  // (written to a new file and renamed: a reader never sees a half-written count)
  vm.send('i=0; while true; do i=$((i+1)); echo "count $i" > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.2; done &\n');
  await vm.sh('sleep 1; cat /tmp/count', WAIT);
}

/** Until the restored guest answers a command. */
async function answers(vm: VmProcess): Promise<void> {
  const out = await vm.sh('cat /tmp/count', WAIT);
  if (!/^count \d+$/.test(out)) throw new Error(`the restored guest printed ${JSON.stringify(out)}`);
}

async function socketUp(sock: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (existsSync(sock)) {
      try {
        await apiRequest(sock, 'GET', '/');
        return;
      } catch {
        // not yet
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${sock} did not come up`);
}

function serve(sock: string): VmProcess {
  // the built CLI, as the npm package runs it (from sources, tsx adds its own start-up)
  const p = new VmProcess([], {}, [process.execPath, ['--v8-pool-size=1', BUILT_CLI, 'serve', '--api-sock', sock]]);
  procs.push(p);
  return p;
}

interface Row { create: number; restore: number; answer: number; bytes: number }

/** Pause, snapshot (timed: the create row) and end the served VM. */
async function snapshotAndKill(vm: VmProcess, sock: string, dir: string): Promise<{ state: string; mem: string; create: number }> {
  const state = path.join(dir, 'vm.snapshot');
  const mem = path.join(dir, 'vm.mem');
  const t0 = performance.now();
  await apiCall(sock, 'PATCH', '/vm', { state: 'Paused' });
  await apiCall(sock, 'PUT', '/snapshot/create', { snapshot_type: 'Full', snapshot_path: state, mem_file_path: mem });
  const create = ms(t0);
  vm.kill();
  await vm.exited;
  return { state, mem, create };
}

async function typevisor(mib: number): Promise<Row> {
  const dir = mkdtempSync(path.join(work, 'tv-'));
  const sock = path.join(dir, 'api.sock');
  const vm = serve(sock);
  await socketUp(sock);
  await apiCall(sock, 'PUT', '/boot-source', { kernel_image_path: guest.kernelPath, initrd_path: guest.initrdPath, boot_args: CMDLINE });
  await apiCall(sock, 'PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: mib });
  await apiCall(sock, 'PUT', '/actions', { action_type: 'InstanceStart' });
  await vm.waitFor(PROMPT, WAIT);
  await startCounter(vm);
  const { state, mem, create } = await snapshotAndKill(vm, sock, dir);

  const sock2 = path.join(dir, 'api2.sock');
  const t0 = performance.now();
  const vm2 = serve(sock2);
  await socketUp(sock2);
  const t1 = performance.now();
  await apiCall(sock2, 'PUT', '/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: mem }, resume_vm: true });
  const restore = ms(t1);
  await answers(vm2);
  const answer = ms(t0);
  vm2.kill();
  return { create, restore, answer, bytes: diskBytes(state, mem) };
}

/** One HMP command over the monitor socket; resolves with its output at the next prompt. */
function hmp(sock: string, cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock);
    let out = '';
    let sent = false;
    c.on('data', (d: Buffer) => {
      out += d.toString();
      if (!sent && out.includes('(qemu) ')) {
        sent = true;
        out = '';
        c.write(`${cmd}\n`);
      } else if (sent && out.includes('(qemu) ')) {
        c.end();
        resolve(out);
      }
    });
    c.on('error', reject);
  });
}

function qemuArgs(mib: number, mon: string, extra: string[]): [string, string[]] {
  return [QEMU, ['-M', 'pc', '-accel', 'tcg', '-cpu', 'max', '-m', String(mib), '-smp', '1', '-nographic', '-no-reboot', '-serial', 'stdio',
    '-monitor', `unix:${mon},server,nowait`, '-kernel', guest.kernelPath, '-initrd', guest.initrdPath, '-append', CMDLINE,
    '-device', 'virtio-rng-pci', ...extra]];
}

async function qemu(mib: number): Promise<Row> {
  const dir = mkdtempSync(path.join(work, 'qemu-'));
  const mon = path.join(dir, 'mon.sock');
  const vm = new VmProcess([], {}, qemuArgs(mib, mon, []));
  procs.push(vm);
  await vm.waitFor(PROMPT, WAIT);
  await startCounter(vm);
  const file = path.join(dir, 'vm.migrate');
  let t0 = performance.now();
  await hmp(mon, 'stop');
  await hmp(mon, `migrate "exec:cat > ${file}"`);
  const create = ms(t0);
  vm.kill();
  await vm.exited;
  const mon2 = path.join(dir, 'mon2.sock');
  t0 = performance.now();
  const vm2 = new VmProcess([], {}, qemuArgs(mib, mon2, ['-incoming', `exec:cat ${file}`]));
  procs.push(vm2);
  // the incoming VM starts paused: continue it once the monitor answers and the state is in
  for (;;) {
    if (existsSync(mon2)) {
      const st = await hmp(mon2, 'info status').catch(() => '');
      if (/paused \(postmigrate|paused \(prelaunch|paused/.test(st) && !/inmigrate/.test(st)) break;
      if (/running/.test(st)) break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const restore = ms(t0);
  await hmp(mon2, 'cont');
  await answers(vm2);
  const answer = ms(t0);
  vm2.kill();
  return { create, restore, answer, bytes: diskBytes(file) };
}

/**
 * The kvm engine, where /dev/kvm opens: a small multiboot guest (tests/e2e/guests/counter.asm,
 * one console line every ~2 ms) in `typevisor serve`, RAM of `mib`; the same create and
 * restore→running rows, and load request → the guest's first line after the restore. (On a
 * kvm_pvm host a Linux guest cannot run under kvm, so QEMU's rows above are the peer figures.)
 */
async function typevisorKvm(mib: number, kernel: string): Promise<{ create: number; restore: number; firstLine: number }> {
  const dir = mkdtempSync(path.join(work, 'kvm-'));
  const sock = path.join(dir, 'api.sock');
  const vm = serve(sock);
  await socketUp(sock);
  await apiCall(sock, 'PUT', '/boot-source', { kernel_image_path: kernel });
  await apiCall(sock, 'PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: mib, typevisor_engine: 'kvm' });
  await apiCall(sock, 'PUT', '/actions', { action_type: 'InstanceStart' });
  await vm.waitFor(/(n=[0-9a-f]{8} ap=[0-9a-f]{8}\n.*){20}/s, WAIT);
  const { state, mem, create } = await snapshotAndKill(vm, sock, dir);
  const sock2 = path.join(dir, 'api2.sock');
  const vm2 = serve(sock2);
  await socketUp(sock2);
  await new Promise((r) => setTimeout(r, 500)); // serve's start-up done (its prestarted vCPU thread up)
  const t0 = performance.now();
  await apiCall(sock2, 'PUT', '/snapshot/load', { snapshot_path: state, mem_backend: { backend_type: 'File', backend_path: mem }, resume_vm: true });
  const restore = ms(t0);
  await vm2.waitFor(/n=[0-9a-f]{8} ap=[0-9a-f]{8}\n/, WAIT);
  const firstLine = ms(t0);
  vm2.kill();
  return { create, restore, firstLine };
}

const model = spawnSync('lscpu', { encoding: 'utf8' }).stdout.match(/^Model name:\s*(.*)$/m)?.[1] ?? 'unknown CPU';
const qv = spawnSync(QEMU, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
console.log(`host: ${model}; peer: ${qv} -accel tcg (migrate to a file); load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const f = (x: number): string => `${x.toFixed(0).padStart(7)} ms`;
try {
  for (const mib of ENGINES.includes('bt') ? SIZES : []) {
    const t = await typevisor(mib);
    const q = await qemu(mib);
    console.log(`${String(mib).padStart(5)} MiB  create: typevisor ${f(t.create)}  qemu ${f(q.create)}  ratio (qemu/tv) ${(q.create / t.create).toFixed(2)}`);
    console.log(`${' '.repeat(10)} restore→running: typevisor ${f(t.restore)} (load request to 204)  qemu ${f(q.restore)} (spawn to state loaded)`);
    console.log(`${' '.repeat(10)} spawn→answer: typevisor ${f(t.answer)}  qemu ${f(q.answer)}  ratio (qemu/tv) ${(q.answer / t.answer).toFixed(2)}`);
    console.log(`${' '.repeat(10)} on disk: typevisor ${(t.bytes / 2 ** 20).toFixed(1)} MiB  qemu ${(q.bytes / 2 ** 20).toFixed(1)} MiB`);
  }
  const kvm = kvmAvailability();
  if (!ENGINES.includes('kvm')) {
    // not asked for
  } else if (!kvm.opens) console.log(`kvm engine: skipped (${kvm.reason})`);
  else {
    const kernel = path.join(work, 'counter.bin');
    execFileSync('nasm', ['-f', 'bin', '-o', kernel, fileURLToPath(new URL('../tests/e2e/guests/counter.asm', import.meta.url))]);
    console.log(`kvm engine (${kvm.module ?? 'unknown module'}), multiboot counter guest:`);
    for (const mib of SIZES) {
      const k = await typevisorKvm(mib, kernel);
      console.log(`${String(mib).padStart(5)} MiB  create ${f(k.create)}  restore→running ${f(k.restore)} (load request to 204)  load→first guest line ${f(k.firstLine)}`);
    }
  }
} finally {
  cleanup();
}
console.log(`load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
