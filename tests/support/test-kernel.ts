/**
 * The multiboot test kernels of tests/e2e/guests (issue 13): assemble one with nasm, run it on
 * typevisor's bt engine or under QEMU TCG, and collect what it printed on COM1 and the status it
 * left through the debug-exit port (0xf4: status (value << 1) | 1).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from './guest-process.js';

export const NASM = '/usr/bin/nasm';
export const QEMU = '/usr/bin/qemu-system-x86_64';
export const hasNasm = existsSync(NASM);
export const hasQemu = existsSync(QEMU);

const GUESTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../e2e/guests');

/** The exit status of a kernel that wrote `value` to the debug-exit port. */
export const exitStatus = (value: number): number => (value << 1) | 1;

export interface KernelRun {
  stdout: string;
  stderr: string;
  status: number | null;
}

/** Assemble tests/e2e/guests/NAME.asm (which may include lib/*.inc) into a fresh temporary file. */
export function assembleKernel(name: string): string {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'typevisor-kernel-')), `${name}.bin`);
  execFileSync(NASM, ['-f', 'bin', '-i', `${GUESTS}/`, '-o', out, path.join(GUESTS, `${name}.asm`)]);
  return out;
}

/** Run a test kernel on typevisor's bt engine. */
export function runOnBt(kernel: string, args: string[] = []): KernelRun {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '-m', '64M', ...args, '--kernel', kernel], {
    encoding: 'latin1', input: '', timeout: 60_000,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/**
 * Run a test kernel under QEMU TCG; `cpu` is QEMU's -cpu model (its default, qemu64, lacks most
 * features); `extra`: more QEMU arguments.
 */
export function runOnQemu(kernel: string, cpu = 'qemu64', extra: string[] = []): KernelRun {
  const r = spawnSync(QEMU, ['-accel', 'tcg', '-cpu', cpu, '-m', '64', '-kernel', kernel, '-display', 'none', '-serial', 'stdio',
    '-monitor', 'none', '-no-reboot', '-device', 'isa-debug-exit,iobase=0xf4,iosize=4', ...extra], { encoding: 'latin1', input: '', timeout: 60_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

export interface KernelSuite {
  /** The kernel: tests/e2e/guests/NAME.asm. */
  name: string;
  /** The describe block's title. */
  title: string;
  /** What it prints on the bt engine. */
  expected: string;
  /** What it prints under QEMU TCG where that differs (the test file says why); default `expected`. */
  qemuExpected?: string;
  /** QEMU's -cpu model (default qemu64). */
  qemuCpu?: string;
  /** The debug-exit status it ends with (default that of 0x21). */
  status?: number;
}

/**
 * The usual test of a test kernel: its recorded output on the bt engine, and under QEMU TCG where
 * QEMU is installed (QEMU is the oracle the output was taken from; it skips, saying so, without).
 */
export function describeKernel(k: KernelSuite): void {
  const status = k.status ?? exitStatus(0x21);
  describe.skipIf(!hasNasm)(k.title, () => {
    it('prints the expected lines on the bt engine', () => {
      const r = runOnBt(assembleKernel(k.name));
      expect(r.stdout, r.stderr).toBe(k.expected);
      expect(r.status).toBe(status);
    });

    const same = k.qemuExpected === undefined ? 'the same' : 'the recorded lines';
    it.skipIf(!hasQemu)(`prints ${same} under QEMU TCG${hasQemu ? '' : ' (skipped: QEMU is not installed)'}`, () => {
      const r = runOnQemu(assembleKernel(k.name), k.qemuCpu);
      expect(r.stdout, r.stderr).toBe(k.qemuExpected ?? k.expected);
      expect(r.status).toBe(status);
    });
  });
}
