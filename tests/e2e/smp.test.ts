/**
 * Several vCPUs on the bt engine (issue 12).
 *
 * - guests/smp.asm: the application processors start through INIT and STARTUP into long mode;
 *   every vCPU adds to one counter with LOCK XADD (the exact sum); the boot CPU rewrites code
 *   another vCPU runs translated (that vCPU must see it); each application processor's own
 *   LAPIC timer ticks while it halts; fixed IPIs by APIC ID.
 * - Debian's kernel with --cpus 2 and --cpus 4: nproc, every CPU online and taking its own
 *   local timer interrupts, none of the kernel's SMP complaints in dmesg; with 2, a guest idle at
 *   its prompt costs the host almost no CPU time.
 * Both ways the engine runs them: with the application processors on threads of their own (the
 * default), and taking turns on one thread (TYPEVISOR_BT_THREADS=0).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { exitStatus } from '../../src/machine/machine.js';
import { MiB } from '../../src/machine/layout.js';
import { Vm } from '../../src/vmm/vm.js';
import { CLI, VmProcess } from '../support/guest-process.js';
import { ASM_INCLUDE } from '../support/asm.js';

const NASM = '/usr/bin/nasm';
const here = path.dirname(fileURLToPath(import.meta.url));
const hasNasm = existsSync(NASM);
const ITERS = 300_000;

function kernel(): string {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'typevisor-smp-')), 'smp.bin');
  execFileSync(NASM, ['-f', 'bin', '-i', ASM_INCLUDE, '-w-zeroing', '-o', out, path.join(here, 'guests/smp.asm')]);
  return out;
}

function expected(cpus: number): string {
  return `sum=${cpus * ITERS}\n${cpus > 1 ? 'xmc=ok\n' : ''}timers=ok\nipi=${cpus - 1}\ndone\n`;
}

describe.skipIf(!hasNasm)('several vCPUs on the bt engine: the smp test kernel', () => {
  it.each([[1, 'one thread'], [2, 'one thread'], [4, 'one thread'], [2, 'threads'], [4, 'threads']] as const)('with %i vCPU(s) on %s: an exact LOCK XADD sum, code rewritten by another vCPU, per-vCPU timers, IPIs', (cpus, how) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '-m', '64M', '--cpus', String(cpus), '--kernel', kernel(), '--cmdline', `${cpus} ${ITERS}`], {
      encoding: 'latin1',
      input: '',
      timeout: 120_000,
      env: { ...process.env, TYPEVISOR_BT_THREADS: how === 'threads' ? '1' : '0' },
    });
    expect(r.stdout, r.stderr).toBe(expected(cpus));
    expect(r.status).toBe(exitStatus({ kind: 'debug-exit', value: 0x10 }));
  });

  it('pauses mid-count with 2 vCPUs, snapshots both, and the restored VM ends with the exact sum', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-smp-snap-'));
    const files = { statePath: path.join(dir, 'vm.state'), memPath: path.join(dir, 'vm.mem') };
    const iters = 200_000_000;
    const vm = await Vm.create({ memoryBytes: 64 * MiB, cpus: 2, engine: 'bt', kernel: kernel(), cmdline: `2 ${iters}` });
    let out = '';
    vm.console.on('data', (b: Buffer) => (out += b.toString('latin1')));
    vm.start();
    await new Promise((r) => setTimeout(r, 400));
    await vm.pause();
    await vm.snapshot(files);
    await vm.kill();
    expect(out).toBe(''); // still counting when it was saved
    const state = JSON.parse(readFileSync(files.statePath, 'utf8')) as { machine: { aps: { waitingSipi: boolean }[]; devices: Record<string, unknown> } };
    expect(state.machine.aps).toHaveLength(1);
    expect(state.machine.aps[0]!.waitingSipi).toBe(false);
    expect(Object.keys(state.machine.devices)).toContain('lapic1');

    const restored = await Vm.restore(files);
    restored.console.on('data', (b: Buffer) => (out += b.toString('latin1')));
    restored.start();
    const reason = await restored.wait();
    expect(out).toBe(`sum=${2 * iters}\nxmc=ok\ntimers=ok\nipi=1\ndone\n`);
    expect(reason).toEqual({ kind: 'debug-exit', value: 0x10 });
  }, 120_000);

  // QEMU TCG -smp 2 printed the same lines when run by hand, but in CI (a loaded 2-core host) its
  // vCPU 1 kept running the old code for over a minute: not a reliable oracle for this kernel.
});

const BOOT_TIMEOUT = 10 * 60_000;
const CMD_TIMEOUT = 3 * 60_000;
/** Clock ticks per second of /proc/PID/stat's utime and stime (Linux's USER_HZ). */
const USER_HZ = 100;

let vm: VmProcess | undefined;
afterEach(() => vm?.kill());

/** The host CPU time (s) process `pid` used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ; // utime, stime (fields 14 and 15)
}

describe("Debian's kernel with several vCPUs on the bt engine", () => {
  it.each([[2, 'threads'], [4, 'threads'], [2, 'one thread']] as const)('--cpus %i on %s: every CPU online with its own timer, no SMP complaints; idle costs the host next to nothing', async (cpus, how) => {
    vm = new VmProcess(['--engine', 'bt', '--cpus', String(cpus)], { TYPEVISOR_BT_THREADS: how === 'threads' ? '1' : '0' });
    await vm.waitFor(/TYPEVISOR-INIT-OK/, BOOT_TIMEOUT);
    const sh = (cmd: string): Promise<string> => vm!.sh(cmd, CMD_TIMEOUT);
    await sh('dmesg -n 1'); // kernel messages stay off the console: they would land inside outputs
    expect(await sh('nproc')).toBe(String(cpus));
    expect(await sh('cat /sys/devices/system/cpu/online')).toBe(`0-${cpus - 1}`);
    expect(await sh('grep -c ^processor /proc/cpuinfo')).toBe(String(cpus));
    expect(await sh('dmesg | grep "smp: Brought up"')).toMatch(new RegExp(`Brought up 1 node, ${cpus} CPUs`));
    // every CPU took local APIC timer interrupts of its own
    const loc = (await sh('grep LOC: /proc/interrupts')).trim().split(/\s+/).slice(1, 1 + cpus).map(Number);
    expect(loc).toHaveLength(cpus);
    for (const n of loc) expect(n).toBeGreaterThan(0);
    // work on every CPU (the shell's children land where the scheduler puts them) and a quiet log
    expect(await sh(`for i in $(seq 1 ${cpus * 2}); do (echo $((i*i)) > /dev/null) & done; wait; echo ok`)).toBe('ok');
    expect(await sh('dmesg | grep -i -E "unsynchroni|soft lockup|hard lockup|rcu.*stall|BUG:|WARNING:|Call Trace" || echo clean')).toBe('clean');
    if (cpus === 2) {
      // every vCPU halted at the prompt: the engine sleeps (generous bound: a fifth of one core)
      const pid = vm.child.pid!;
      const before = cpuSeconds(pid);
      await new Promise((r) => setTimeout(r, 5000));
      expect(cpuSeconds(pid) - before).toBeLessThan(1);
    }
    vm.send('poweroff\n');
    const { code } = await vm.exited;
    expect(code).toBe(0);
  }, BOOT_TIMEOUT + 10 * CMD_TIMEOUT);
});
