/**
 * Bad input gets one clear line, a non-zero status, and leaves nothing behind; a signal ends
 * the VM with 128 + the signal's number and gives the terminal back.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseBzImageHeader } from '../../src/boot/bzimage.js';
import { CLI, VmProcess } from '../support/guest-process.js';
import { findKernel, NO_KERNEL_REASON } from '../support/kernel.js';

const NASM = '/usr/bin/nasm';
const SCRIPT = '/usr/bin/script';
const here = path.dirname(fileURLToPath(import.meta.url));

function run(args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { encoding: 'utf8', timeout: 60_000, input: '' });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-cli-'));
const notKernel = path.join(dir, 'notes.txt');
writeFileSync(notKernel, 'this is not a kernel\n'.repeat(100));

function expectOneLine(r: { status: number | null; stderr: string }, re: RegExp, status?: number): void {
  expect(r.status).not.toBe(0);
  if (status !== undefined) expect(r.status).toBe(status);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('typevisor: engine'));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^typevisor: /);
  expect(lines[0]).toMatch(re);
}

describe('typevisor run with bad input', () => {
  it('names a missing kernel file', () => {
    expectOneLine(run(['run', '--engine', 'bt', '--kernel', path.join(dir, 'nope')]), /kernel .*nope.*(not found|does not exist)/i, 12);
  });
  it('refuses a file that is not a kernel and lists the accepted formats', () => {
    expectOneLine(run(['run', '--engine', 'bt', '--kernel', notKernel]), /bzImage.*vmlinux.*multiboot/i);
  });
  it('refuses memory of 0 and more than the host has', () => {
    expectOneLine(run(['run', '--engine', 'bt', '-m', '0', '--kernel', notKernel]), /more than 0/);
    expectOneLine(run(['run', '--engine', 'bt', '-m', '100T', '--kernel', notKernel]), /more than this host can give/);
  });
  it('refuses an unknown engine', () => {
    expectOneLine(run(['run', '--engine', 'qemu']), /unknown engine "qemu"/);
  });
  it('parses --cpus strictly: decimal digits only, 1 to 64, status 2', () => {
    for (const bad of ['abc', '0x2', '1e1', '1.5', '-1']) {
      expectOneLine(run(['run', '--engine', 'bt', '--kernel', notKernel, '--cpus', bad]), /^typevisor: --cpus ".*" is not a decimal whole number: give a count from 1 to 64$/, 2);
    }
    expectOneLine(run(['run', '--engine', 'bt', '--kernel', notKernel, '--cpus', '']), /^typevisor: --cpus is empty: give a count from 1 to 64$/, 2);
    expectOneLine(run(['run', '--engine', 'bt', '--kernel', notKernel, '--cpus', '65']), /--cpus 65 is out of range: use 1 to 64/, 2);
  });
  it('refuses an empty or garbage --memory instead of using 512M', () => {
    expectOneLine(run(['run', '--engine', 'bt', '--kernel', notKernel, '-m', '']), /^typevisor: --memory is empty: give a decimal number with an optional unit K, M, G or T/, 2);
    for (const bad of ['lots', '512Q', '0x200', '1e3', '-1G']) {
      expectOneLine(run(['run', '--engine', 'bt', '--kernel', notKernel, '-m', bad]), /^typevisor: --memory ".*" is not a memory size: give .*512M, 2G/, 2);
    }
  });
  it('refuses an initrd larger than guest RAM from its size alone, before reading it', () => {
    const huge = path.join(dir, 'huge.img');
    writeFileSync(huge, '');
    truncateSync(huge, 700 * 1024 * 1024); // sparse: nothing to read, but stat says 700 MiB
    // The kernel is not even a kernel: the initrd is refused first, from stat.
    expectOneLine(
      run(['run', '--engine', 'bt', '--kernel', notKernel, '--initrd', huge]),
      /^typevisor: initrd .*huge\.img \(700 MiB\) does not fit in guest RAM \(512 MiB\): give the guest more memory with --memory/,
    );
  });
  const kernel = findKernel();
  const noKernel = kernel ? '' : ` (skipped: ${NO_KERNEL_REASON})`;
  it.skipIf(!kernel)(`refuses an initrd that does not fit in RAM above the kernel${noKernel}`, () => {
    const big = path.join(dir, 'big.img');
    writeFileSync(big, '');
    truncateSync(big, 100 * 1024 * 1024); // fits in 128M by size, not above the kernel's footprint
    expectOneLine(run(['run', '--engine', 'bt', '-m', '128M', '--kernel', kernel!, '--initrd', big]), /initrd.*does not fit.*--memory/);
  });
  it.skipIf(!kernel)(`says a truncated bzImage is truncated, with or without --vmlinux${noKernel}`, () => {
    const image = readFileSync(kernel!);
    for (const [name, size] of [['first-64k', 64 * 1024], ['first-4m', 4 * 1024 * 1024]] as const) {
      const cut = path.join(dir, name);
      writeFileSync(cut, image.subarray(0, size));
      for (const extra of [[], ['--vmlinux']]) {
        expectOneLine(
          run(['run', '--engine', 'bt', '--kernel', cut, ...extra]),
          new RegExp(`^typevisor: kernel .*${name}: bzImage is truncated: .* but it has ${size}: .*copy or download the kernel again$`),
        );
      }
    }
  });
  it.skipIf(!kernel)(`says in plain words that a damaged payload is not in a known compression format${noKernel}`, () => {
    const image = new Uint8Array(readFileSync(kernel!));
    const h = parseBzImageHeader(image);
    image.fill(0, h.kernelOffset + h.payloadOffset, h.kernelOffset + h.payloadOffset + 8);
    const damaged = path.join(dir, 'damaged');
    writeFileSync(damaged, image);
    for (const extra of [[], ['--vmlinux']]) {
      const r = run(['run', '--engine', 'bt', '--kernel', damaged, ...extra]);
      expectOneLine(r, /^typevisor: kernel .*damaged: bzImage payload's compression format is not recognised .*: the file is damaged or is not a Linux kernel/);
      expect(r.stderr).not.toMatch(/unknown/);
    }
  });
  it('leaves no temporary files behind', () => {
    // a temp dir of its own: other test files make typevisor-* dirs in the shared one meanwhile
    const own = mkdtempSync(path.join(dir, 'tmp-'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'bt', '--kernel', notKernel], { encoding: 'utf8', timeout: 60_000, input: '', env: { ...process.env, TMPDIR: own } });
    expect(r.status).toBe(12);
    expect(readdirSync(own).filter((n) => n.startsWith('typevisor'))).toEqual([]);
  });
});

describe('typevisor run ended by a signal', () => {
  const skip = existsSync(NASM) ? undefined : 'nasm missing';
  const spin = (): string => {
    const kernel = path.join(dir, 'spin.bin');
    if (!existsSync(kernel)) execFileSync(NASM, ['-f', 'bin', '-o', kernel, path.join(here, 'guests/spin.asm')]);
    return kernel;
  };

  it.skipIf(skip !== undefined).each([
    ['SIGTERM', 143],
    ['SIGHUP', 129],
    ['SIGINT', 130],
  ] as const)(`exits 128 + the number of %s (%i)${skip ? ` (skipped: ${skip})` : ''}`, async (signal, status) => {
    const vm = new VmProcess(['--engine', 'bt', '-m', '64M', '--kernel', spin()]);
    try {
      await vm.waitFor(/spin kernel up/, 30_000);
      vm.child.kill(signal);
      const exit = await vm.exited;
      expect(exit).toEqual({ code: status, signal: null });
      expect(vm.stderr.trim()).toBe(`typevisor: stopped by ${signal}`);
    } finally {
      vm.kill();
    }
  });

  const ptySkip = skip ?? (existsSync(SCRIPT) ? undefined : 'script missing');
  it.skipIf(ptySkip !== undefined)(`restores the terminal when SIGTERM ends it${ptySkip ? ` (skipped: ${ptySkip})` : ''}`, async () => {
    // The inner shell prints its pid and execs typevisor in its place, on the pseudo-terminal.
    const inner = `echo "pid=$$"; exec ${process.execPath} --import tsx ${CLI} run --engine bt -m 64M --kernel ${spin()}`;
    const cmd = `sh -c '${inner}'; echo "status=$?"; stty -a`;
    const child = spawn(SCRIPT, ['-qefc', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    try {
      for (let i = 0; i < 600 && !out.includes('spin kernel up'); i++) await new Promise((r) => setTimeout(r, 50));
      const pid = Number(/pid=(\d+)/.exec(out)?.[1]);
      expect(out).toContain('spin kernel up');
      process.kill(pid, 'SIGTERM');
      await exited;
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    expect(out).toMatch(/status=143/);
    // stty -a lists a disabled flag with a leading '-': the terminal is back in cooked mode
    expect(out).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(out).toMatch(/(^|\s)echo(\s|$)/m);
  });
});
