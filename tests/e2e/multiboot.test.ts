/**
 * A multiboot kernel on the bt engine: 32-bit protected-mode entry, the multiboot information
 * (command line, module, memory sizes), serial output and the debug-exit port's status; under
 * QEMU TCG too, where installed (the same command line and module at 1 MiB).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kvmAvailability } from '../../src/kvm/detect.js';
import { EXIT_TRIPLE_FAULT } from '../../src/machine/machine.js';
import { CLI } from '../support/guest-process.js';
import { hasQemu, runOnQemu } from '../support/test-kernel.js';

const NASM = '/usr/bin/nasm';
const here = path.dirname(fileURLToPath(import.meta.url));

const kvm = kvmAvailability();
const engines: { engine: string; skip: string | undefined }[] = [
  { engine: 'bt', skip: existsSync(NASM) ? undefined : 'nasm missing' },
  { engine: 'kvm', skip: !existsSync(NASM) ? 'nasm missing' : kvm.opens ? undefined : kvm.reason },
];

describe.each(engines)('multiboot kernel on the $engine engine', ({ engine, skip }) => {
  it.skipIf(skip !== undefined)(`gets its command line (its own path first) and module, and exits through port 0xf4, loaded at 1 MiB and at 0x8000${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-mb-'));
    const mod = path.join(dir, 'module.bin');
    writeFileSync(mod, 'MODULE42 and more');
    for (const load of [0x100000, 0x8000]) {
      const kernel = path.join(dir, `hello-${load.toString(16)}.bin`);
      execFileSync(NASM, ['-f', 'bin', `-DLOAD=${load}`, '-o', kernel, path.join(here, 'guests/multiboot-hello.asm')]);
      const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', engine, '-m', '64M', '--kernel', kernel, '--initrd', mod, '--cmdline', 'hello from the test'], {
        encoding: 'latin1',
        input: '',
        timeout: 60_000,
      });
      expect(r.stdout, r.stderr).toContain(`multiboot ok, cmdline: ${kernel} hello from the test\n`);
      expect(r.stdout).toContain('MODULE42\n');
      expect(r.status).toBe((0x21 << 1) | 1);
    }
  });
});

// QEMU's multiboot loader hands over the command line the same way (the kernel's path first). It
// cannot load this kernel at 0x8000 (the kernel prints a garbled command line there: QEMU puts
// its own boot data in low memory), which GRUB and typevisor do: only the 1 MiB case is compared.
it.skipIf(!existsSync(NASM) || !hasQemu)(`QEMU TCG passes the same command line and module${hasQemu ? '' : ' (skipped: QEMU is not installed)'}`, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-mb-'));
  const mod = path.join(dir, 'module.bin');
  writeFileSync(mod, 'MODULE42 and more');
  const kernel = path.join(dir, 'hello.bin');
  execFileSync(NASM, ['-f', 'bin', '-DLOAD=0x100000', '-o', kernel, path.join(here, 'guests/multiboot-hello.asm')]);
  const r = runOnQemu(kernel, 'qemu64', ['-initrd', mod, '-append', 'hello from the test']);
  expect(r.stdout, r.stderr).toContain(`multiboot ok, cmdline: ${kernel} hello from the test\n`);
  expect(r.stdout).toContain('MODULE42\n');
  expect(r.status).toBe((0x21 << 1) | 1);
});

describe('a guest that triple-faults', () => {
  it.skipIf(!existsSync(NASM))(`ends with one line and status 6${existsSync(NASM) ? '' : ' (skipped: nasm missing)'}`, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-tf-'));
    const kernel = path.join(dir, 'tf.bin');
    execFileSync(NASM, ['-f', 'bin', '-o', kernel, path.join(here, 'guests/triple-fault.asm')]);
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '-m', '64M', '--kernel', kernel], {
      encoding: 'utf8',
      input: '',
      timeout: 60_000,
    });
    expect(r.status).toBe(EXIT_TRIPLE_FAULT);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^typevisor: the guest triple-faulted .*: .*--kernel/);
  });
});
