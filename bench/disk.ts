/**
 * Disk benchmark: typevisor's virtio-blk (bt engine, `--disk IMG`, raw) vs QEMU's binary
 * translator (TCG, `-M pc -accel tcg`, `-drive file=IMG,if=virtio,format=raw,cache=none`), same
 * kernel, same initramfs (the default guest, which loads virtio_blk, plus a small static program
 * for the random reads as a second cpio archive), same kind of image, runs interleaved.
 *
 *   boot-with-disk: process start until /init prints its marker line (the disk attached)
 *   seq-write:      `dd if=/dev/zero of=/dev/vda bs=1M count=256 oflag=direct conv=fsync`
 *   seq-read:       `dd if=/dev/vda of=/dev/null bs=1M count=256 iflag=direct`
 *   rand-read-4k:   bench/guest/randread.c: N preads of 4 KiB at pseudo-random 4 KiB-aligned
 *                   offsets of /dev/vda with O_DIRECT (fixed seed: both hypervisors read the same
 *                   offsets), timed by the guest's clock; also from host wall time, which adds
 *                   the program's exec
 *
 * Throughput is host wall time from sending the command to its output (as bench/boot.ts).
 * Each VM gets a fresh 256 MiB sparse raw image in a temp dir, removed afterwards; the write
 * runs first, so the reads read allocated blocks. QEMU also gets a virtio-rng-pci device, as
 * typevisor has one by default (an unseeded RNG changes the boot time).
 *
 * Host caching differs: typevisor's raw images use the host page cache (buffered readv/writev,
 * FLUSH = fdatasync); QEMU's cache=none opens the image O_DIRECT. `--qemu-cache writeback`
 * gives QEMU the same buffered I/O as typevisor.
 *
 * Usage: npm run bench:disk [-- --runs N] [-- --reads N] [-- --qemu-cache none|writeback|...]
 * Needs gcc and libc6-dev (static libc) on the host. QEMU comes from Debian
 * (qemu-system-x86); the script installs it when it is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { prepareDefaultGuest } from '../src/guest/default-guest.js';
import { initrdWithFiles } from '../tests/support/extra-initrd.js';
import { VmProcess } from '../tests/support/guest-process.js';
import { ensureQemu, median, timed as timedFor, unlessExited } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const runs = Number(opt('--runs')) || 3;
const reads = Number(opt('--reads')) || 5000;
const qemuCache = opt('--qemu-cache') ?? 'none';
const TIMEOUT = 20 * 60_000;
const timed = (vm: VmProcess, cmd: string, expect: RegExp) => timedFor(vm, cmd, expect, TIMEOUT);
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';
const MIB = 1 << 20;
const IMAGE_SIZE = 256 * MIB;
const SEQ_MIB = 256;
const GCC = '/usr/bin/gcc';
const LIBC_A = '/usr/lib/x86_64-linux-gnu/libc.a';

const SEQ_WRITE = `dd if=/dev/zero of=/dev/vda bs=1M count=${SEQ_MIB} oflag=direct conv=fsync 2>&1; echo rc=$?`;
const SEQ_READ = `dd if=/dev/vda of=/dev/null bs=1M count=${SEQ_MIB} iflag=direct 2>&1; echo rc=$?`;
const RAND_READ = `/bin/randread /dev/vda ${reads}`;

interface Sample {
  /** seconds */
  boot: number;
  /** MB/s (10^6 bytes per second) */
  writeMBs: number;
  readMBs: number;
  /** IOPS timed by the guest's clock, and from host wall time (with the program's exec) */
  randIops: number;
  randIopsWall: number;
}

async function measure(vm: VmProcess): Promise<Sample> {
  runningVm = vm;
  try {
    await unlessExited(vm, vm.waitFor(/TYPEVISOR-INIT-OK/, TIMEOUT));
    const boot = (performance.now() - vm.startedAt) / 1000;
    // the shell is up and the driver has the disk
    await timed(vm, `i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /sys/block/vda/size`, new RegExp(`^${IMAGE_SIZE / 512}$`));
    const bytes = SEQ_MIB * MIB;
    // this busybox prints only the record counts
    const copied = new RegExp(`^${SEQ_MIB}\\+0 records in\\n${SEQ_MIB}\\+0 records out[\\s\\S]*rc=0$`);
    const w = await timed(vm, SEQ_WRITE, copied);
    await unlessExited(vm, vm.sh('sync; echo 3 > /proc/sys/vm/drop_caches', TIMEOUT));
    const r = await timed(vm, SEQ_READ, copied);
    const rr = await timed(vm, RAND_READ, /^randread \d+ reads in [\d.]+ s = \d+ IOPS$/);
    const randIops = Number(/= (\d+) IOPS/.exec(rr.out)![1]);
    vm.send('poweroff\n');
    await Promise.race([vm.exited, new Promise((res) => setTimeout(res, 30_000).unref())]);
    return { boot, writeMBs: bytes / 1e6 / w.s, readMBs: bytes / 1e6 / r.s, randIops, randIopsWall: reads / rr.s };
  } finally {
    vm.kill();
    runningVm = undefined;
  }
}

const fmt = (s: Sample): string =>
  `boot ${s.boot.toFixed(2)} s, seq-write ${s.writeMBs.toFixed(1)} MB/s, seq-read ${s.readMBs.toFixed(1)} MB/s, ` +
  `rand-4k ${s.randIops.toFixed(0)} IOPS (${s.randIopsWall.toFixed(0)} by host wall time)`;

/** Temp dirs to remove and the VM to stop if the benchmark is interrupted (Ctrl-C, SIGTERM). */
const tempDirs = new Set<string>();
let runningVm: VmProcess | undefined;
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
  process.on(sig, () => {
    runningVm?.kill();
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    process.exit(128 + n);
  });
}

function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.add(dir);
  return {
    dir,
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
}

/** A fresh sparse raw image in its own temp dir; the returned function removes both. */
function freshImage(): { image: string; remove: () => void } {
  const { dir, remove } = tempDir('typevisor-bench-disk-');
  const image = path.join(dir, 'disk.img');
  writeFileSync(image, '');
  truncateSync(image, IMAGE_SIZE);
  return { image, remove };
}

async function main(): Promise<void> {
  if (!existsSync(GCC) || !existsSync(LIBC_A)) throw new Error('bench:disk needs gcc and a static libc: apt-get install gcc libc6-dev');
  ensureQemu();
  const guest = await prepareDefaultGuest();
  const { dir: work, remove: removeWork } = tempDir('typevisor-bench-initrd-');
  try {
    const prog = path.join(work, 'randread');
    execFileSync(GCC, ['-O2', '-static', '-o', prog, path.join(here, 'guest/randread.c')]);
    const initrd = await initrdWithFiles(path.join(work, 'initrd.img'), [{ path: 'bin/randread', bytes: readFileSync(prog) }]);

    const qemuVersion = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0];
    const cpu = execFileSync('lscpu', { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('Model name')) ?? 'Model name: unknown';
    console.log(`host: ${cpu.replace(/\s+/g, ' ')}; kernel ${guest.kernelVersion}, ${runs} interleaved runs each; ` +
      `peer: ${qemuVersion} -accel tcg, cache=${qemuCache}; ${SEQ_MIB} MiB sequential, ${reads} random 4 KiB reads; ` +
      `load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const tv: Sample[] = [];
    const qemu: Sample[] = [];
    for (let i = 0; i < runs; i++) {
      {
        const { image, remove } = freshImage();
        try {
          tv.push(await measure(new VmProcess(['--engine', 'bt', '-m', '512M', '--kernel', guest.kernelPath, '--initrd', initrd, '--cmdline', CMDLINE, '--disk', image])));
        } finally {
          remove();
        }
        console.log(`  typevisor run ${i + 1}: ${fmt(tv.at(-1)!)}`);
      }
      {
        const { image, remove } = freshImage();
        try {
          qemu.push(await measure(new VmProcess([], {}, [
            'qemu-system-x86_64',
            ['-M', 'pc', '-accel', 'tcg', '-m', '512', '-smp', '1', '-nographic', '-no-reboot',
              '-kernel', guest.kernelPath, '-initrd', initrd, '-append', CMDLINE,
              '-drive', `file=${image},if=virtio,format=raw,cache=${qemuCache}`, '-device', 'virtio-rng-pci'],
          ])));
        } finally {
          remove();
        }
        console.log(`  qemu      run ${i + 1}: ${fmt(qemu.at(-1)!)}`);
      }
    }
    /** ratio: typevisor over QEMU for rates (>= 1: typevisor at least as fast), QEMU over typevisor for times likewise */
    const row = (name: string, unit: string, digits: number, pick: (s: Sample) => number, time = false) => {
      const a = median(tv.map(pick));
      const b = median(qemu.map(pick));
      const ratio = time ? b / a : a / b;
      console.log(`${name.padEnd(24)} typevisor ${a.toFixed(digits).padStart(8)} ${unit.padEnd(5)} qemu-tcg ${b.toFixed(digits).padStart(8)} ${unit.padEnd(5)} ` +
        `${time ? 'speed ratio (qemu/tv)' : 'ratio (tv/qemu)'} ${ratio.toFixed(2)}`);
    };
    console.log('medians (ratio >= 1: typevisor at least as fast):');
    row('boot-with-disk', 's', 2, (s) => s.boot, true);
    row('seq-write 256 MiB', 'MB/s', 1, (s) => s.writeMBs);
    row('seq-read 256 MiB', 'MB/s', 1, (s) => s.readMBs);
    row('rand-read 4 KiB', 'IOPS', 0, (s) => s.randIops);
    row('rand-read 4 KiB (wall)', 'IOPS', 0, (s) => s.randIopsWall);
    console.log(`load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    removeWork();
  }
}

await main();
