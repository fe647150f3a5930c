import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, lstatSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpioWriter, CpioError, writeCpio } from './cpio.js';

const CPIO = '/usr/bin/cpio';
const haveCpio = existsSync(CPIO);
const work = mkdtempSync(join(tmpdir(), 'typevisor-cpio-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function sample(): Uint8Array {
  const w = new CpioWriter({ mtime: 1_700_000_000 });
  w.addDirectory('bin');
  w.addDirectory('dev', { mode: 0o755 });
  w.addDirectory('etc');
  // Sizes 0..5 exercise every padding case of name and data.
  w.addFile('etc/empty', new Uint8Array(0));
  w.addFile('etc/a', new TextEncoder().encode('a'));
  w.addFile('etc/ab', new TextEncoder().encode('ab'));
  w.addFile('etc/abc', new TextEncoder().encode('abc'));
  w.addFile('etc/abcd', new TextEncoder().encode('abcd'));
  w.addFile('etc/abcde', new TextEncoder().encode('abcde'));
  const big = new Uint8Array(70_001);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
  w.addFile('/bin/tool', big, { mode: 0o755, uid: 1000, gid: 100 });
  w.addSymlink('bin/sh', 'tool');
  w.addSymlink('etc/abs-link', '/bin/tool');
  w.addCharDevice('dev/console', 5, 1, { mode: 0o600 });
  w.addCharDevice('dev/null', 1, 3, { mode: 0o666 });
  w.addCharDevice('dev/ttyS0', 4, 64, { mode: 0o660 });
  return w.finish();
}

const ORDER = [
  'bin', 'dev', 'etc', 'etc/empty', 'etc/a', 'etc/ab', 'etc/abc', 'etc/abcd', 'etc/abcde',
  'bin/tool', 'bin/sh', 'etc/abs-link', 'dev/console', 'dev/null', 'dev/ttyS0',
];

describe('CpioWriter (format)', () => {
  it('writes newc headers, 4-byte alignment and the trailer', () => {
    const a = sample();
    expect(a.length % 4).toBe(0);
    const text = new TextDecoder('latin1').decode(a);
    expect(text.startsWith('070701')).toBe(true);
    // Walk the archive by hand and check each header lands 4-aligned.
    let at = 0;
    const names: string[] = [];
    for (;;) {
      expect(at % 4).toBe(0);
      expect(text.slice(at, at + 6)).toBe('070701');
      const field = (i: number) => parseInt(text.slice(at + 6 + i * 8, at + 14 + i * 8), 16);
      const fileSize = field(6);
      const nameSize = field(11);
      const name = text.slice(at + 110, at + 110 + nameSize - 1);
      expect(a[at + 110 + nameSize - 1]).toBe(0);
      names.push(name);
      at += 110 + nameSize;
      at += (4 - (at % 4)) % 4;
      at += fileSize;
      at += (4 - (at % 4)) % 4;
      if (name === 'TRAILER!!!') break;
    }
    expect(names).toEqual([...ORDER, 'TRAILER!!!']);
    expect(at).toBe(a.length);
  });

  it('encodes mode, owner, mtime and device numbers in the header fields', () => {
    const a = writeCpio([
      { kind: 'dir', path: 'dev' },
      { kind: 'chardev', path: 'dev/ttyS0', major: 4, minor: 64, mode: 0o620, uid: 7, gid: 5, mtime: 0x1234 },
    ]);
    const text = new TextDecoder('latin1').decode(a);
    const second = text.indexOf('070701', 4);
    const field = (i: number) => parseInt(text.slice(second + 6 + i * 8, second + 14 + i * 8), 16);
    expect(field(1)).toBe(0o020620); // S_IFCHR | 0620
    expect(field(2)).toBe(7);
    expect(field(3)).toBe(5);
    expect(field(5)).toBe(0x1234);
    expect(field(9)).toBe(4);
    expect(field(10)).toBe(64);
  });

  it('rejects bad paths, missing parents, duplicates and use after finish', () => {
    const w = new CpioWriter();
    expect(() => w.addFile('a/b', new Uint8Array(1))).toThrow(/parent directory "a"/);
    expect(() => w.addDirectory('../x')).toThrow(CpioError);
    expect(() => w.addDirectory('/')).toThrow(CpioError);
    expect(() => w.addDirectory('TRAILER!!!')).toThrow(CpioError);
    w.addDirectory('a');
    expect(() => w.addDirectory('a')).toThrow(/already added/);
    expect(() => w.addFile('a/f', new Uint8Array(0), { mode: 0o100644 })).toThrow(/0o7777/);
    expect(() => w.addCharDevice('a/c', -1, 0)).toThrow(/32-bit/);
    expect(() => w.addSymlink('a/l', '')).toThrow(CpioError);
    expect(w.has('/a')).toBe(true);
    w.finish();
    expect(() => w.addDirectory('b')).toThrow(/already finished/);
    expect(() => w.finish()).toThrow(CpioError);
  });
});

describe.skipIf(!haveCpio)('CpioWriter against GNU cpio (/usr/bin/cpio)', () => {
  it('lists the same entries with cpio -t', () => {
    const file = join(work, 'list.cpio');
    writeFileSync(file, sample());
    const out = execFileSync(CPIO, ['-t', '--quiet', '-F', file], { encoding: 'utf8' });
    expect(out.trim().split('\n')).toEqual(ORDER);
    const verbose = execFileSync(CPIO, ['-tv', '-n', '--quiet', '-F', file], { encoding: 'utf8' });
    expect(verbose).toMatch(/^crw-------\s+1\s+0\s+0\s+5,\s+1 .* dev\/console$/m);
    expect(verbose).toMatch(/^lrwxrwxrwx .* bin\/sh -> tool$/m);
    expect(verbose).toMatch(/^-rwxr-xr-x\s+1\s+1000\s+100\s+70001 .* bin\/tool$/m);
  });

  it('extracts with cpio -i to the same contents, modes and symlink targets', () => {
    const dir = mkdtempSync(join(work, 'x-'));
    const file = join(work, 'extract.cpio');
    const archive = sample();
    writeFileSync(file, archive);
    // Device nodes need CAP_MKNOD; extract everything else and check the rest.
    const pattern = ['bin*', 'etc*'];
    execFileSync(CPIO, ['-i', '-d', '-m', '--quiet', '--no-absolute-filenames', '-F', file, ...pattern], { cwd: dir });
    expect(readFileSync(join(dir, 'etc/empty')).length).toBe(0);
    expect(readFileSync(join(dir, 'etc/abcde'), 'utf8')).toBe('abcde');
    expect(readFileSync(join(dir, 'etc/abc'), 'utf8')).toBe('abc');
    const tool = readFileSync(join(dir, 'bin/tool'));
    expect(tool.length).toBe(70_001);
    expect(tool[70_000]).toBe((70_000 * 7 + 3) & 0xff);
    expect(lstatSync(join(dir, 'bin/tool')).mode & 0o777).toBe(0o755);
    expect(lstatSync(join(dir, 'bin/sh')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dir, 'bin/sh'))).toBe('tool');
    expect(readlinkSync(join(dir, 'etc/abs-link'))).toBe('/bin/tool');
    expect(lstatSync(join(dir, 'etc/a')).mtimeMs).toBe(1_700_000_000_000);
  });
});
