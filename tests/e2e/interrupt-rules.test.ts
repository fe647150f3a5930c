/**
 * Interrupt rules a test kernel checks (guests/interrupt-rules.asm): the STI window with two
 * interrupts pending, NMIs held and collapsed while the NMI handler runs, CPUID hiding a globally
 * disabled APIC. The kernel's expected output is recorded here; it runs on the bt engine and, where
 * QEMU is installed, under QEMU TCG, which must print the same (the recorded output is QEMU's).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI } from '../support/guest-process.js';

const NASM = '/usr/bin/nasm';
const QEMU = '/usr/bin/qemu-system-x86_64';
const here = path.dirname(fileURLToPath(import.meta.url));
const EXPECTED = 'window: 10\nnmi: 2 1\napic-off: 0\n';
const PASSED = (0x21 << 1) | 1;

describe.skipIf(!existsSync(NASM))('interrupt rules test kernel', () => {
  const kernel = (): string => {
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'typevisor-irq-')), 'interrupt-rules.bin');
    execFileSync(NASM, ['-f', 'bin', '-o', out, path.join(here, 'guests/interrupt-rules.asm')]);
    return out;
  };

  it('prints the expected lines on the bt engine', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '-m', '64M', '--kernel', kernel()], {
      encoding: 'latin1', input: '', timeout: 60_000,
    });
    expect(r.stdout, r.stderr).toBe(EXPECTED);
    expect(r.status).toBe(PASSED);
  });

  it.skipIf(!existsSync(QEMU))(`prints the same under QEMU TCG${existsSync(QEMU) ? '' : ' (skipped: QEMU is not installed)'}`, () => {
    const r = spawnSync(QEMU, ['-accel', 'tcg', '-m', '64', '-kernel', kernel(), '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=4'], { encoding: 'latin1', input: '', timeout: 60_000 });
    expect(r.stdout, r.stderr).toBe(EXPECTED);
    expect(r.status).toBe(PASSED);
  });
});
