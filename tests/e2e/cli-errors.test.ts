/**
 * Bad input gets one clear line, a non-zero status, and leaves nothing behind.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI } from '../support/guest-process.js';
import { findKernel, NO_KERNEL_REASON } from '../support/kernel.js';

function run(args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { encoding: 'utf8', timeout: 60_000, input: '' });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-cli-'));
const notKernel = path.join(dir, 'notes.txt');
writeFileSync(notKernel, 'this is not a kernel\n'.repeat(100));

function expectOneLine(r: { status: number | null; stderr: string }, re: RegExp): void {
  expect(r.status).not.toBe(0);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('typevisor: engine'));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^typevisor: /);
  expect(lines[0]).toMatch(re);
}

describe('typevisor run with bad input', () => {
  it('names a missing kernel file', () => {
    expectOneLine(run(['run', '--engine', 'bt', '--kernel', path.join(dir, 'nope')]), /kernel .*nope.*(not found|does not exist)/i);
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
  const kernel = findKernel();
  it.skipIf(!kernel)(`refuses an initrd that does not fit in RAM${kernel ? '' : ` (skipped: ${NO_KERNEL_REASON})`}`, () => {
    const big = path.join(dir, 'big.img');
    writeFileSync(big, Buffer.alloc(150 * 1024 * 1024));
    expectOneLine(run(['run', '--engine', 'bt', '-m', '128M', '--kernel', kernel!, '--initrd', big]), /initrd.*does not fit.*--memory/);
  });
  it('leaves no temporary files behind', () => {
    const before = readdirSync(tmpdir()).filter((n) => n.startsWith('typevisor')).length;
    run(['run', '--engine', 'bt', '--kernel', notKernel]);
    const after = readdirSync(tmpdir()).filter((n) => n.startsWith('typevisor')).length;
    expect(after).toBe(before);
  });
});
