/**
 * SMP benchmark (issue 12): two CPU-bound jobs at once in one guest, on typevisor's bt engine
 * with 1 and 2 vCPUs and on QEMU TCG with -smp 1 and -smp 2 (MTTCG: a host thread per vCPU),
 * same kernel and initramfs, runs interleaved. Also the boot to /init with each count. The jobs:
 *
 *   two-files  two `sha256sum` of one 64 MiB file in the guest's RAM (made before the clock
 *              starts), in the background, then `wait`: the jobs share nothing but the CPUs
 *   two-pipes  two `dd if=/dev/zero bs=1M count=64 | sha256sum`: each job is a writer and a
 *              reader waking each other through a pipe, across CPUs once there are two (the
 *              guest kernel's wakeups and IPIs weigh as much as the hashing)
 *
 * typevisor's 2 vCPUs run both ways: with the application processor on a thread of its own (the
 * default, "typevisor-2t"), and taking turns on one thread (TYPEVISOR_BT_THREADS=0, "typevisor-2").
 *
 *   scaling: wall time with 1 vCPU / wall time with 2 (2.0 = both host cores used)
 *   ratio:   typevisor's wall time / QEMU's, for the same vCPU count
 *
 * Usage: npm run bench:smp [-- --runs N]
 */
import { execFileSync } from 'node:child_process';
import { prepareDefaultGuest } from '../src/guest/default-guest.js';
import { VmProcess } from '../tests/support/guest-process.js';
import { ensureQemu, median } from './support.js';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 3;
const TIMEOUT = 20 * 60_000;
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';
const ZERO64M_SHA = '3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351';
const PIPE_JOB = 'dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum';
const TWO_PIPES = `(${PIPE_JOB}) & (${PIPE_JOB}) & wait`;
const FILE = '/tmp/zero64m';
const TWO_FILES = `(sha256sum ${FILE}) & (sha256sum ${FILE}) & wait`;

interface Sample {
  boot: number;
  twoFiles: number;
  twoPipes: number;
}

/** Wall time of a command that prints the 64 MiB zero file's hash twice. */
async function timeTwoJobs(vm: VmProcess, cmd: string): Promise<number> {
  const t0 = performance.now();
  const out = await vm.sh(cmd, TIMEOUT);
  const s = (performance.now() - t0) / 1000;
  if (out.split(ZERO64M_SHA).length !== 3) throw new Error(`guest printed ${JSON.stringify(out)} for ${cmd}`);
  return s;
}

async function measure(vm: VmProcess): Promise<Sample> {
  try {
    await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
    const boot = (performance.now() - vm.startedAt) / 1000;
    await vm.sh(`dmesg -n 1; dd if=/dev/zero of=${FILE} bs=1M count=64 2>/dev/null`, TIMEOUT);
    const twoFiles = await timeTwoJobs(vm, TWO_FILES);
    const twoPipes = await timeTwoJobs(vm, TWO_PIPES);
    vm.send('poweroff\n');
    await Promise.race([vm.exited, new Promise((r) => setTimeout(r, 30_000))]);
    return { boot, twoFiles, twoPipes };
  } finally {
    vm.kill();
  }
}

async function main(): Promise<void> {
  ensureQemu();
  const guest = await prepareDefaultGuest();
  const qemuVersion = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  const cpu = execFileSync('lscpu', { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('Model name'))?.replace(/^Model name:\s*/, '') ?? 'unknown CPU';
  const cores = execFileSync('nproc', { encoding: 'utf8' }).trim();
  console.log(`host: ${cpu}, ${cores} cores; kernel ${guest.kernelVersion}, ${runs} interleaved runs each; peer: ${qemuVersion} -accel tcg`);
  const results: Record<string, Sample[]> = {};
  const add = (k: string, s: Sample): void => {
    (results[k] ??= []).push(s);
    console.log(`  ${k.padEnd(12)} boot ${s.boot.toFixed(2)} s, two files ${s.twoFiles.toFixed(2)} s, two pipes ${s.twoPipes.toFixed(2)} s`);
  };
  for (let i = 0; i < runs; i++) {
    for (const n of [1, 2]) {
      const tvArgs = ['--engine', 'bt', '-m', '512M', '--cpus', String(n), '--kernel', guest.kernelPath, '--initrd', guest.initrdPath, '--cmdline', CMDLINE];
      add(`typevisor-${n}`, await measure(new VmProcess(tvArgs, { TYPEVISOR_BT_THREADS: '0' })));
      if (n === 2) add('typevisor-2t', await measure(new VmProcess(tvArgs, { TYPEVISOR_BT_THREADS: '1' })));
      add(`qemu-${n}`, await measure(new VmProcess([], {}, [
        'qemu-system-x86_64',
        ['-M', 'pc', '-accel', 'tcg', '-m', '512', '-smp', String(n), '-nographic', '-no-reboot', '-kernel', guest.kernelPath, '-initrd', guest.initrdPath, '-append', CMDLINE],
      ])));
    }
  }
  const med = (k: string, pick: (s: Sample) => number): number => median(results[k]!.map(pick));
  console.log('medians:');
  for (const [name, pick] of [['boot-to-init', (s: Sample) => s.boot], ['two-files', (s: Sample) => s.twoFiles], ['two-pipes', (s: Sample) => s.twoPipes]] as const) {
    const t1 = med('typevisor-1', pick), t2 = med('typevisor-2', pick), t2t = med('typevisor-2t', pick), q1 = med('qemu-1', pick), q2 = med('qemu-2', pick);
    console.log(`${name.padEnd(13)} typevisor 1 vCPU ${t1.toFixed(2)} s, 2 vCPUs taking turns ${t2.toFixed(2)} s (scaling ${(t1 / t2).toFixed(2)}), ` +
      `2 vCPUs on threads ${t2t.toFixed(2)} s (scaling ${(t1 / t2t).toFixed(2)})   ` +
      `qemu-tcg 1 vCPU ${q1.toFixed(2)} s, 2 vCPUs ${q2.toFixed(2)} s (scaling ${(q1 / q2).toFixed(2)})   ratio at 2 vCPUs: turns ${(t2 / q2).toFixed(2)}, threads ${(t2t / q2).toFixed(2)}`);
  }
}

await main();
