/**
 * Hostile bare-metal guests on the bt engine (small multiboot kernels assembled with nasm):
 * self-modifying code at scale, sweeps over every port and the MMIO hole, interrupt floods,
 * broken descriptor tables, a CPU halted for good. Each must end with its own status and at
 * most one line from typevisor, never a crash, and within a generous memory bound.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT_HALTED, EXIT_RESET, EXIT_TRIPLE_FAULT } from '../../src/machine/machine.js';
import { typevisorCommand } from '../support/guest-process.js';
import { RssSampler } from '../support/rss.js';
import { ASM_INCLUDE } from '../support/asm.js';

const NASM = '/usr/bin/nasm';
const here = path.dirname(fileURLToPath(import.meta.url));
const skip = existsSync(NASM) ? undefined : 'nasm missing';
/** The debug-exit status of a kernel that reports success (0x11). */
const PASSED = (0x11 << 1) | 1;

const kernels: Record<string, string> = {};
beforeAll(() => {
  if (skip) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-hostile-'));
  for (const name of ['jit-loop', 'hostile', 'halt-forever']) {
    kernels[name] = path.join(dir, `${name}.bin`);
    execFileSync(NASM, ['-f', 'bin', '-i', ASM_INCLUDE, '-w-zeroing', '-o', kernels[name], path.join(here, `guest/${name}.asm`)]);
  }
});

interface Run {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  peakMib: number;
}

function run(kernel: string, cmdline: string, timeoutMs = 120_000, extra: string[] = [], until?: (stdout: string) => boolean): Promise<Run> {
  const [file, argv] = typevisorCommand(['--engine', 'bt', '-m', '64M', '--kernel', kernels[kernel]!, '--cmdline', cmdline, ...extra]);
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const rss = new RssSampler(child.pid!, 50);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString('latin1');
    if (until?.(stdout)) {
      until = undefined;
      child.kill('SIGTERM');
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      rss.stop();
      resolve({ status, signal, stdout, stderr, peakMib: rss.peak });
    });
  });
}

describe.skipIf(skip !== undefined)(`hostile bare-metal guests${skip ? ` (skipped: ${skip})` : ''}`, () => {
  // Before translated code was a bounded cache, 10^6 patches ended in V8's out-of-memory abort
  // at ~2 GB, and 20,000 fresh hot functions held ~580 MB.
  it.each([
    ['jit', 'patches `mov eax, imm; ret` and calls it, 10^6 times', 300],
    ['data', 'stores 10^6 times to a counter in the line of a hot function', 300],
    ['fresh', 'writes 20,000 functions to new places and calls each 300 times', 400],
  ])('self-modifying code (%s): %s — no crash, bounded memory', async (mode, _what, boundMib) => {
    const r = await run('jit-loop', mode);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(PASSED);
    expect(r.peakMib).toBeLessThan(boundMib);
  }, 180_000);

  it.each([
    ['ports', 'reads every port at every size, writes all-ones to all but the stopping ones'],
    ['mmio', 'reads and writes every page of the MMIO hole, every IOAPIC and LAPIC register'],
    ['timers', 'PIT, LAPIC timer and RTC interrupts at their fastest, all unmasked'],
  ])('%s: %s — the guest carries on and exits through debug-exit', async (mode) => {
    const r = await run('hostile', mode);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(PASSED);
    expect(r.peakMib).toBeLessThan(300);
  }, 180_000);

  it.each([
    ['idt0', 'an empty IDT and INT 0x80'],
    ['gdt', 'a garbage GDT and a far jump through it'],
  ])('broken descriptor tables (%s: %s) — one triple-fault line, its own status', async (mode) => {
    const r = await run('hostile', mode);
    expect(r.status).toBe(EXIT_TRIPLE_FAULT);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^typevisor: the guest triple-faulted \(/);
  }, 180_000);

  it('a CPU halted with interrupts off — one line, its own status, no waiting for a signal', async () => {
    const r = await run('halt-forever', '', 60_000);
    expect(r.stdout).toContain('about to halt');
    expect(r.status).toBe(EXIT_HALTED);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^typevisor: the guest halted for good: the CPU stopped with interrupts disabled at rip 0x/)]);
  }, 90_000);

  it('a guest reset restarts the VM by default', async () => {
    const r = await run('hostile', 'reset', 60_000, [], (out) => out.split('reset kernel up').length > 3);
    expect(r.stdout.split('reset kernel up').length).toBeGreaterThan(3);
    expect(r.stderr).toMatch(/^typevisor: the guest reset the machine; restarting it/m);
    expect(r.status).toBe(128 + 15);
  }, 90_000);

  it('with --no-reboot a guest reset ends typevisor: one line, its own status', async () => {
    const r = await run('hostile', 'reset', 60_000, ['--no-reboot']);
    expect(r.stdout.split('reset kernel up').length).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['typevisor: the guest reset the machine']);
    expect(r.status).toBe(EXIT_RESET);
  }, 90_000);
});
