/**
 * Boot benchmark: typevisor's bt engine vs QEMU's binary translator (TCG), same kernel and
 * initramfs, runs interleaved.
 *
 *   boot-to-init: process start until /init prints its marker line
 *   compute:      `dd if=/dev/zero bs=1M count=64 | sha256sum` in the guest, host wall time
 *                 from sending the command to its output
 *   true-x500:    `/bin/true` started 500 times from the shell (fork/exec/exit: process-heavy work)
 *   loop-100k:    a 100,000-iteration `while` loop in the shell (busybox ash)
 *   rss-at-prompt: the VM process's resident memory (VmRSS) once the shell answers, 512 MiB guest
 *
 * Usage: npm run bench:boot [-- --runs N] [-- --vmlinux]
 * QEMU comes from Debian (qemu-system-x86); the script installs it when it is missing.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { prepareDefaultGuest } from '../src/guest/default-guest.js';
import { VmProcess } from '../tests/support/guest-process.js';
import { ensureQemu, median } from './support.js';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 3;
const useVmlinux = args.includes('--vmlinux');
const TIMEOUT = 20 * 60_000;
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';
const COMPUTE = 'dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum';
const ZERO64M_SHA = '3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351';

interface Sample {
  boot: number;
  compute: number;
  trueX500: number;
  loop100k: number;
  /** MiB resident at the shell prompt. */
  rss: number;
}

/** VmRSS of a process, in MiB. */
function rssMiB(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  if (!Number.isFinite(kb)) throw new Error(`no VmRSS for process ${pid}`);
  return kb / 1024;
}

const TRUE_X500 = 'for i in $(seq 1 500); do /bin/true; done; echo done500';
const LOOP_100K = 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo $i';

/** Host wall time of one shell command in the guest, checking its output. */
async function timed(vm: VmProcess, cmd: string, expect: string): Promise<number> {
  const t0 = performance.now();
  const out = await vm.sh(cmd, TIMEOUT);
  const s = (performance.now() - t0) / 1000;
  if (!out.includes(expect)) throw new Error(`guest printed ${JSON.stringify(out)} for ${cmd}`);
  return s;
}

async function measure(vm: VmProcess): Promise<Sample> {
  try {
    await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
    const boot = (performance.now() - vm.startedAt) / 1000;
    await vm.sh('true', TIMEOUT); // the shell is up
    const rss = rssMiB(vm.child.pid);
    const compute = await timed(vm, COMPUTE, ZERO64M_SHA);
    const trueX500 = await timed(vm, TRUE_X500, 'done500');
    const loop100k = await timed(vm, LOOP_100K, '100000');
    vm.send('poweroff\n');
    await Promise.race([vm.exited, new Promise((r) => setTimeout(r, 30_000))]);
    return { boot, compute, trueX500, loop100k, rss };
  } finally {
    vm.kill();
  }
}

const fmt = (s: Sample): string =>
  `boot ${s.boot.toFixed(2)} s, compute ${s.compute.toFixed(2)} s, true-x500 ${s.trueX500.toFixed(2)} s, loop-100k ${s.loop100k.toFixed(2)} s, rss ${s.rss.toFixed(0)} MiB`;

async function main(): Promise<void> {
  ensureQemu();
  const guest = await prepareDefaultGuest();
  const qemuVersion = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const cpu = execFileSync('lscpu', { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('Model name'))?.replace(/^Model name:\s*/, '') ?? 'unknown CPU';
  console.log(`host: ${cpu}; kernel ${guest.kernelVersion}, ${runs} interleaved runs each; peer: ${qemuVersion} -accel tcg`);
  const tv: Sample[] = [];
  const qemu: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    const tvArgs = ['--engine', 'bt', '-m', '512M', '--kernel', guest.kernelPath, '--initrd', guest.initrdPath, '--cmdline', CMDLINE];
    if (useVmlinux) tvArgs.push('--vmlinux');
    tv.push(await measure(new VmProcess(tvArgs)));
    console.log(`  typevisor run ${i + 1}: ${fmt(tv.at(-1)!)}`);
    const q = new VmProcess([], {}, [
      'qemu-system-x86_64',
      ['-M', 'pc', '-accel', 'tcg', '-m', '512', '-smp', '1', '-nographic', '-no-reboot', '-kernel', guest.kernelPath, '-initrd', guest.initrdPath, '-append', CMDLINE],
    ]);
    qemu.push(await measure(q));
    console.log(`  qemu      run ${i + 1}: ${fmt(qemu.at(-1)!)}`);
  }
  const row = (name: string, pick: (s: Sample) => number, unit = 's', digits = 2) => {
    const a = median(tv.map(pick));
    const b = median(qemu.map(pick));
    console.log(`${name.padEnd(14)} typevisor ${a.toFixed(digits)} ${unit}   qemu-tcg ${b.toFixed(digits)} ${unit}   ratio ${(a / b).toFixed(2)}`);
  };
  console.log(`medians${useVmlinux ? ' (typevisor booting the extracted vmlinux)' : ''}:`);
  row('boot-to-init', (s) => s.boot);
  row('compute-64MiB', (s) => s.compute);
  row('true-x500', (s) => s.trueX500);
  row('loop-100k', (s) => s.loop100k);
  row('rss-at-prompt', (s) => s.rss, 'MiB', 0);
}

await main();
