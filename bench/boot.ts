/**
 * Boot benchmark: typevisor's bt engine vs QEMU's binary translator (TCG), same kernel and
 * initramfs, runs interleaved.
 *
 *   boot-to-init: process start until /init prints its marker line
 *   compute:      `dd if=/dev/zero bs=1M count=64 | sha256sum` in the guest, host wall time
 *                 from sending the command to its output
 *
 * Usage: npm run bench:boot [-- --runs N] [-- --vmlinux]
 * QEMU comes from Debian (qemu-system-x86); the script installs it when it is missing.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { prepareDefaultGuest } from '../src/guest/default-guest.js';
import { VmProcess } from '../tests/support/guest-process.js';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1]) || 3;
const useVmlinux = args.includes('--vmlinux');
const TIMEOUT = 20 * 60_000;
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';
const COMPUTE = 'dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum';
const ZERO64M_SHA = '3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351';

function ensureQemu(): void {
  if (spawnSync('qemu-system-x86_64', ['--version']).status === 0) return;
  console.error('bench: installing qemu-system-x86 from Debian ...');
  execFileSync('apt-get', ['install', '-y', '-qq', 'qemu-system-x86'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

interface Sample {
  boot: number;
  compute: number;
}

async function measure(vm: VmProcess): Promise<Sample> {
  try {
    await vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT);
    const boot = (performance.now() - vm.startedAt) / 1000;
    await vm.sh('true', TIMEOUT); // the shell is up
    const t0 = performance.now();
    const out = await vm.sh(COMPUTE, TIMEOUT);
    const compute = (performance.now() - t0) / 1000;
    if (!out.includes(ZERO64M_SHA)) throw new Error(`guest computed a wrong hash: ${out}`);
    vm.send('poweroff\n');
    await Promise.race([vm.exited, new Promise((r) => setTimeout(r, 30_000))]);
    return { boot, compute };
  } finally {
    vm.kill();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  ensureQemu();
  const guest = await prepareDefaultGuest();
  const qemuVersion = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  console.log(`kernel ${guest.kernelVersion}, ${runs} interleaved runs each; peer: ${qemuVersion} -accel tcg`);
  const tv: Sample[] = [];
  const qemu: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    const tvArgs = ['--engine', 'bt', '-m', '512M', '--kernel', guest.kernelPath, '--initrd', guest.initrdPath, '--cmdline', CMDLINE];
    if (useVmlinux) tvArgs.push('--vmlinux');
    tv.push(await measure(new VmProcess(tvArgs)));
    console.log(`  typevisor run ${i + 1}: boot ${tv.at(-1)!.boot.toFixed(2)} s, compute ${tv.at(-1)!.compute.toFixed(2)} s`);
    const q = new VmProcess([], {}, [
      'qemu-system-x86_64',
      ['-M', 'pc', '-accel', 'tcg', '-m', '512', '-smp', '1', '-nographic', '-no-reboot', '-kernel', guest.kernelPath, '-initrd', guest.initrdPath, '-append', CMDLINE],
    ]);
    qemu.push(await measure(q));
    console.log(`  qemu      run ${i + 1}: boot ${qemu.at(-1)!.boot.toFixed(2)} s, compute ${qemu.at(-1)!.compute.toFixed(2)} s`);
  }
  const row = (name: string, pick: (s: Sample) => number) => {
    const a = median(tv.map(pick));
    const b = median(qemu.map(pick));
    console.log(`${name.padEnd(14)} typevisor ${a.toFixed(2)} s   qemu-tcg ${b.toFixed(2)} s   ratio ${(a / b).toFixed(2)}`);
  };
  console.log(`medians${useVmlinux ? ' (typevisor booting the extracted vmlinux)' : ''}:`);
  row('boot-to-init', (s) => s.boot);
  row('compute-64MiB', (s) => s.compute);
}

await main();
