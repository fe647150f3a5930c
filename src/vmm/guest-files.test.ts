import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeBzImage, makeElf } from '../boot/testing/images.js';
import { checkInitrdSize, checkKernelImage, readGuestFiles } from './guest-files.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, data: Uint8Array | string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, data);
  return p;
};
/** A sparse file: stat reports `size`, and there is nothing to read. */
const sparse = (name: string, size: number): string => {
  const p = file(name, '');
  truncateSync(p, size);
  return p;
};
const vmlinux = makeElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: Uint8Array.of(0xf4) }] });

describe('readGuestFiles', () => {
  it('reads a kernel and an initrd and names the kernel format', () => {
    const r = readGuestFiles(file('vmlinux', vmlinux), file('initrd', 'INITRD'), 64 * MiB);
    expect(r.format).toBe('vmlinux');
    expect(new Uint8Array(r.image)).toEqual(vmlinux);
    expect(new TextDecoder().decode(r.initrd)).toBe('INITRD');
    expect(readGuestFiles(file('bz', makeBzImage()), undefined, 64 * MiB).format).toBe('bzimage');
  });

  it('names missing files, directories and the option to fix', () => {
    expect(() => readGuestFiles(path.join(dir, 'nope'), undefined, 64 * MiB)).toThrow(/^kernel file .*nope not found: check the path given to --kernel$/);
    expect(() => readGuestFiles(file('k', vmlinux), path.join(dir, 'gone'), 64 * MiB)).toThrow(/^initrd file .*gone not found: check the path given to --initrd$/);
    expect(() => readGuestFiles(dir, undefined, 64 * MiB)).toThrow(/^kernel .* is not a regular file/);
  });

  it('checks sizes from stat before reading: files Node could not even read are refused by size', () => {
    // 3 GiB is past what readFileSync takes: reaching these messages proves nothing was read.
    expect(() => readGuestFiles(file('k2', vmlinux), sparse('initrd-3g', 3 * GiB), 512 * MiB)).toThrow(
      /^initrd .*initrd-3g \(3072 MiB\) does not fit in guest RAM \(512 MiB\): give the guest more memory with --memory, or use a smaller initrd$/,
    );
    expect(() => readGuestFiles(sparse('kernel-3g', 3 * GiB), undefined, 512 * MiB)).toThrow(/^kernel .*kernel-3g is 3072 MiB, larger than any kernel image/);
    // the initrd is checked before the kernel is read
    expect(() => readGuestFiles(sparse('not-a-kernel', 64 * MiB), sparse('initrd-1g', GiB), 512 * MiB)).toThrow(/^initrd .*initrd-1g/);
  });

  it('refuses a truncated bzImage, naming the file', () => {
    const img = makeBzImage({ pm: new Uint8Array(64 * 1024) });
    const cut = file('cut', img.subarray(0, 16 * 1024));
    expect(() => readGuestFiles(cut, undefined, 64 * MiB)).toThrow(/^kernel .*cut: bzImage is truncated: .*copy or download the kernel again$/);
  });
});

describe('checkInitrdSize / checkKernelImage', () => {
  it('refuses initrds above guest RAM and above the 2 GiB Linux can use', () => {
    expect(() => checkInitrdSize('i', 512 * MiB, 512 * MiB)).not.toThrow();
    expect(() => checkInitrdSize('i', 512 * MiB + 1, 512 * MiB)).toThrow(/does not fit in guest RAM/);
    expect(() => checkInitrdSize('i', 3 * GiB, 4 * GiB)).toThrow(/^initrd i \(3072 MiB\) is larger than the 2048 MiB Linux can use on x86-64: use a smaller initrd$/);
  });
  it('lists the accepted formats for a file that is no kernel', () => {
    expect(() => checkKernelImage('notes.txt', new TextEncoder().encode('hello'.repeat(200)))).toThrow(/^notes\.txt is not a kernel image typevisor can boot: accepted formats are bzImage/);
  });
});
