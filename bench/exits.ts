/**
 * Port-I/O exit cost of the KVM engine against QEMU -accel kvm, and process start -> first
 * guest output.  `npm run bench:exits`
 *
 * The guest (real mode, the same 64 KiB image for both: it is QEMU's -bios and sits at
 * f000:0000 in our RAM) does N `out 0x80, al`, then writes 0 to the debug-exit port 0xf4.
 * Per-exit cost = (time(N_LARGE) - time(N_SMALL)) / (N_LARGE - N_SMALL), which cancels start-up
 * and teardown. Runs are interleaved; medians are reported.
 *
 * This module is also the machine module of its own KVM runs (createKvmMachine, imported in the
 * vCPU worker) and, with `--child first-output`, the tiny typevisor process that is timed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { KvmEngine } from '../src/kvm/engine.js';
import type { KvmMachineContext } from '../src/kvm/machine-factory.js';
import { createKvmGuestMemory } from '../src/kvm/memory.js';
import { Machine } from '../src/machine/machine.js';
import { MiB, PORT_COM1, PORT_DEBUG_EXIT, PORT_POST } from '../src/machine/layout.js';

const N_SMALL = 2_000;
const N_LARGE = 50_000;
const ROUNDS = 7;
const BIOS_BASE = 0xf0000;
const SELF = fileURLToPath(import.meta.url);
const ROOT = join(dirname(SELF), '..');
const NASM = '/usr/bin/nasm';

/** The bench machine: a no-op POST port, the debug exit, and a UART data port writing to fd 1. */
export function createKvmMachine(ctx: KvmMachineContext): Machine {
  const m = new Machine(ctx.memory);
  // Timestamps of the first and last POST write: the in-guest exit rate, free of start-up.
  let first = 0;
  let last = 0;
  let count = 0;
  m.pio.insert(PORT_POST, 1, {
    read: () => 0,
    write: () => {
      last = performance.now();
      if (count++ === 0) first = last;
    },
  }, 'post');
  m.onStop(() => ctx.post({ first, last, count }));
  m.pio.insert(PORT_DEBUG_EXIT, 4, { read: () => 0, write: (_o, _s, v) => m.requestStop({ kind: 'debug-exit', value: v }) }, 'debug-exit');
  m.pio.insert(PORT_COM1, 8, { read: () => 0, write: (o, _s, v) => { if (o === 0) writeSync(1, Uint8Array.of(v)); } }, 'uart');
  return m;
}

function nasm(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-bench-'));
  try {
    writeFileSync(join(dir, 'g.asm'), source);
    execFileSync('nasm', ['-f', 'bin', '-o', join(dir, 'g.bin'), join(dir, 'g.asm')]);
    return new Uint8Array(execFileSync('cat', [join(dir, 'g.bin')]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A 64 KiB BIOS image: `body` at f000:0000, reset vector jumping to it. */
function bios(body: string): Uint8Array {
  return nasm(`bits 16
org 0
start:
${body}
times 0xfff0 - ($ - $$) db 0
  jmp 0xf000:start
times 0x10000 - ($ - $$) db 0
`);
}
const loopGuest = (n: number): Uint8Array =>
  bios(`  mov cx, ${n}
  mov dx, 0x80
.l:
  out dx, al
  loop .l
  xor al, al
  out 0xf4, al
  hlt`);
const outputGuest = (): Uint8Array => bios(`  mov dx, 0x3f8
  mov al, 'X'
  out dx, al
  jmp $`);

/** µs per exit measured inside the device thread (first to last POST write) by the last run. */
let inGuestUs = NaN;

async function runTypevisor(image: Uint8Array): Promise<number> {
  const ram = createKvmGuestMemory(2 * MiB);
  try {
    ram.memory.writeBytes(BIOS_BASE, image);
    const engine = new KvmEngine({
      memory: ram,
      machine: { module: SELF },
      onMessage: (m) => {
        const { first, last, count } = m as { first: number; last: number; count: number };
        inGuestUs = count > 1 ? ((last - first) * 1000) / (count - 1) : NaN;
      },
    });
    const t0 = performance.now();
    const r = await engine.run({ mode: 'real16', rip: 0, realCs: BIOS_BASE >> 4, regs: {} });
    const t = performance.now() - t0;
    if (r.kind !== 'debug-exit') throw new Error(`bench guest stopped with ${JSON.stringify(r)}`);
    return t;
  } finally {
    ram.dispose();
  }
}

const QEMU = 'qemu-system-x86_64';
function qemuArgs(biosPath: string, serial: boolean): string[] {
  return [
    '-M', 'microvm,x-option-roms=off,rtc=off', '-accel', 'kvm', '-cpu', 'host,-arch-capabilities', '-m', '16',
    '-nodefaults', '-no-user-config', '-display', 'none', '-bios', biosPath,
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=4',
    ...(serial ? ['-serial', 'stdio'] : []),
  ];
}

function runQemu(biosPath: string): number {
  const t0 = performance.now();
  try {
    execFileSync(QEMU, qemuArgs(biosPath, false), { stdio: 'ignore' });
  } catch (e) {
    // isa-debug-exit: status (0 << 1) | 1 = 1 is the success path.
    if ((e as { status?: number }).status !== 1) throw e;
  }
  return performance.now() - t0;
}

/** Spawn, resolve with ms until the first byte on stdout, then kill. */
function firstOutput(cmd: string, args: string[], stderr: 'inherit' | 'ignore' = 'inherit'): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', stderr] });
    child.stdout.once('data', () => {
      resolve(performance.now() - t0);
      child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${cmd} exited (${code}) before printing`)));
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function ensureQemu(): boolean {
  try {
    execFileSync('which', [QEMU], { stdio: 'ignore' });
    return true;
  } catch {
    try {
      console.log('installing qemu-system-x86 from Debian...');
      execFileSync('apt-get', ['install', '-y', 'qemu-system-x86'], { stdio: 'inherit' });
      return true;
    } catch {
      console.log('qemu-system-x86 could not be installed: QEMU figures skipped');
      return false;
    }
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-bench-'));
  try {
    const small = loopGuest(N_SMALL);
    const large = loopGuest(N_LARGE);
    const smallPath = join(dir, 'small.bin');
    const largePath = join(dir, 'large.bin');
    const outPath = join(dir, 'out.bin');
    writeFileSync(smallPath, small);
    writeFileSync(largePath, large);
    writeFileSync(outPath, outputGuest());
    const haveQemu = ensureQemu();
    const tv: number[] = [];
    const qm: number[] = [];
    const inGuest: number[] = [];
    await runTypevisor(small); // warm up
    for (let i = 0; i < ROUNDS; i++) {
      const tLarge = await runTypevisor(large);
      inGuest.push(inGuestUs);
      tv.push((tLarge - (await runTypevisor(small))) * 1000 / (N_LARGE - N_SMALL));
      if (haveQemu) qm.push((runQemu(largePath) - runQemu(smallPath)) * 1000 / (N_LARGE - N_SMALL));
    }
    const fmt = (x: number): string => x.toFixed(2);
    console.log(`port-I/O exit round trip, µs/exit (median of ${ROUNDS}, ${N_LARGE - N_SMALL} exits each):`);
    console.log(`  typevisor kvm   ${fmt(median(tv))}   [${tv.map(fmt).join(' ')}]`);
    console.log(`  (typevisor, timed inside the device thread: ${fmt(median(inGuest))} [${inGuest.map(fmt).join(' ')}])`);
    if (haveQemu) {
      console.log(`  qemu -accel kvm ${fmt(median(qm))}   [${qm.map(fmt).join(' ')}]`);
      console.log(`  ratio typevisor/qemu ${(median(tv) / median(qm)).toFixed(2)} (target <= 1.2)`);
    }

    const tvStart: number[] = [];
    const qmStart: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      tvStart.push(await firstOutput(process.execPath, [...process.execArgv, SELF, '--child', 'first-output', outPath]));
      if (haveQemu) qmStart.push(await firstOutput(QEMU, qemuArgs(outPath, true)));
    }
    console.log(`process start -> first guest output, ms (median of ${ROUNDS}):`);
    console.log(`  typevisor kvm   ${fmt(median(tvStart))}   [${tvStart.map(fmt).join(' ')}]  (${process.execArgv.join(' ') || 'plain node'})`);
    if (haveQemu) console.log(`  qemu microvm    ${fmt(median(qmStart))}   [${qmStart.map(fmt).join(' ')}]`);

    // What a user sees: the built CLI (plain node, no TypeScript loader) booting a multiboot kernel.
    const cli = join(ROOT, 'dist', 'bundle', 'main.js');
    if (existsSync(cli) && existsSync(NASM)) {
      const kernel = join(dir, 'hello.bin');
      execFileSync(NASM, ['-f', 'bin', '-o', kernel, join(ROOT, 'tests', 'e2e', 'guests', 'multiboot-hello.asm')]);
      const cliStart: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        // (stderr ignored: the CLI warns that this host's KVM cannot boot ordinary kernels)
        cliStart.push(await firstOutput(process.execPath, ['--v8-pool-size=1', cli, 'run', '--engine', 'kvm', '-m', '64M', '--kernel', kernel], 'ignore'));
      }
      console.log(`  typevisor CLI   ${fmt(median(cliStart))}   [${cliStart.map(fmt).join(' ')}]  (node --v8-pool-size=1 dist/bundle/main.js run --engine kvm, multiboot kernel)`);
    } else console.log('  (typevisor CLI figure skipped: needs `npm run build` and nasm)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function child(imagePath: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  await runTypevisor(new Uint8Array(readFileSync(imagePath))).catch(() => undefined);
}

if (isMainThread && process.argv[1] === SELF) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) await child(process.argv[i + 2]!);
  else await main();
}
