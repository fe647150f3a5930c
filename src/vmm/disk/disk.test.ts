/**
 * The host side of `--disk`: the raw-file backend (real files, async positional I/O), the
 * snapshot overlay, the image lock and the checks `openDisks` makes before a guest starts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDiskBackend, type DiskBackend } from '../../devices/virtio/blk/backend.js';
import { ConfigError, parseDiskSpec, validateDisks } from '../config.js';
import { checkNotLocked, LOCK_SUFFIX, lockImage } from './lock.js';
import { DiskError, openDisks } from './open.js';
import { SnapshotOverlay } from './overlay.js';
import { RawFileBackend } from './raw.js';

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-disktest-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Promise form of a backend call. */
const io = (f: (done: (e?: Error) => void) => void): Promise<void> => new Promise((resolve, reject) => f((e) => (e ? reject(e) : resolve())));

function image(name: string, bytes: Uint8Array | number): string {
  const p = path.join(dir, name);
  writeFileSync(p, typeof bytes === 'number' ? new Uint8Array(bytes) : bytes);
  return p;
}
const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 13 + (i >> 9)) & 0xff);

describe('--disk specs', () => {
  it('parses a path and the options ro, snapshot, serial=ID', () => {
    expect(parseDiskSpec('/x/y.img')).toEqual({ path: '/x/y.img', readOnly: false, snapshot: false });
    expect(parseDiskSpec('y.img,ro,snapshot,serial=abc-1.2_3')).toEqual({ path: 'y.img', readOnly: true, snapshot: true, serial: 'abc-1.2_3' });
  });
  it('refuses unknown options, bad serials, no path and too many disks', () => {
    expect(() => parseDiskSpec('y.img,rw')).toThrow(/--disk option "rw" is not known/);
    expect(() => parseDiskSpec('y.img,serial=')).toThrow(ConfigError);
    expect(() => parseDiskSpec('y.img,serial=123456789012345678901')).toThrow(/1 to 20/);
    expect(() => parseDiskSpec('')).toThrow(/no image path/);
    expect(() => validateDisks(Array.from({ length: 17 }, () => parseDiskSpec('a')))).toThrow(/at most 16/);
  });
});

describe('raw file backend', () => {
  it('reads and writes scattered buffers at byte offsets, writes zeros, flushes', async () => {
    const p = image('raw.img', pattern(64 * 1024));
    const b = new RawFileBackend(openSync(p, 'r+'), 64 * 1024, false, p);
    const x = new Uint8Array(512);
    const y = new Uint8Array(1024);
    await io((d) => b.read(1024, [x, y], d));
    expect(x).toEqual(pattern(64 * 1024).subarray(1024, 1536));
    expect(y).toEqual(pattern(64 * 1024).subarray(1536, 2560));
    await io((d) => b.write(4096, [new Uint8Array(512).fill(0xaa), new Uint8Array(512).fill(0xbb)], d));
    await io((d) => b.writeZeroes(8192, 4096, d));
    await io((d) => b.flush(d));
    await io((d) => b.discard(0, 512, d));
    await b.close();
    const after = readFileSync(p);
    expect(after.subarray(4096, 4608).every((v) => v === 0xaa)).toBe(true);
    expect(after.subarray(4608, 5120).every((v) => v === 0xbb)).toBe(true);
    expect(after.subarray(8192, 12288).every((v) => v === 0)).toBe(true);
    expect(after[12288]).toBe(pattern(64 * 1024)[12288]);
  });

  it('discard punches a hole: the range reads as zeros and its blocks go back to the host', async () => {
    const size = 4 << 20;
    const p = image('discard.img', pattern(size));
    const blocks = (): number => Number(spawnSync('stat', ['-c', '%b', p], { encoding: 'utf8' }).stdout.trim());
    const before = blocks();
    const b = new RawFileBackend(openSync(p, 'r+'), size, false, p);
    await io((d) => b.discard(1 << 20, 2 << 20, d));
    const x = new Uint8Array(4096);
    await io((d) => b.read((2 << 20) - 2048, [x], d));
    await b.close();
    const after = readFileSync(p);
    expect(after.length).toBe(size);
    // the file system may keep partial blocks at the edges; the middle is a hole of zeros
    expect(after.subarray((1 << 20) + 65536, (3 << 20) - 65536).every((v) => v === 0)).toBe(true);
    expect(new Uint8Array(after.subarray(0, 1 << 20))).toEqual(pattern(size).subarray(0, 1 << 20));
    expect(new Uint8Array(after.subarray(3 << 20))).toEqual(pattern(size).subarray(3 << 20));
    expect(x.every((v) => v === 0)).toBe(true);
    expect(blocks()).toBeLessThan(before);
  });

  it('a read-only backend refuses writes; close waits for I/O in flight', async () => {
    const p = image('ro.img', pattern(4096));
    const b = new RawFileBackend(openSync(p, 'r'), 4096, true, p);
    await expect(io((d) => b.write(0, [new Uint8Array(512)], d))).rejects.toThrow(/read-only/);
    const x = new Uint8Array(4096);
    let done = false;
    b.read(0, [x], () => (done = true));
    await b.close();
    expect(done).toBe(true);
    expect(x).toEqual(pattern(4096));
  });
});

describe('snapshot overlay', () => {
  const make = () => {
    const base = new MemoryDiskBackend(64 * 1024);
    base.bytes.set(pattern(64 * 1024));
    const top = new MemoryDiskBackend(64 * 1024);
    return { base, top, o: new SnapshotOverlay(base, top) };
  };
  const read = async (o: DiskBackend, off: number, len: number): Promise<Uint8Array> => {
    const out = new Uint8Array(len);
    await io((d) => o.read(off, [out.subarray(0, 700), out.subarray(700)], d)); // a split that is not sector-aligned
    return out;
  };

  it('writes land in the overlay only; reads mix overlay and image sector by sector', async () => {
    const { base, o } = make();
    const before = base.bytes.slice();
    await io((d) => o.write(1024, [new Uint8Array(1024).fill(0x11)], d));
    await io((d) => o.writeZeroes(4096, 512, d));
    expect(Buffer.compare(base.bytes, before)).toBe(0);
    const got = await read(o, 512, 4608); // sectors 1..9
    const want = before.slice(512, 5120);
    want.fill(0x11, 512, 1536);
    want.fill(0, 3584, 4096);
    expect(Buffer.compare(got, want)).toBe(0);
    expect(o.writtenSectors).toBe(3);
  });

  it('a failed overlay write leaves the image authoritative', async () => {
    const { top, o, base } = make();
    top.failWith = new Error('ENOSPC');
    await expect(io((d) => o.write(0, [new Uint8Array(512).fill(1)], d))).rejects.toThrow(/ENOSPC/);
    top.failWith = undefined;
    expect(await read(o, 0, 1024)).toEqual(base.bytes.subarray(0, 1024));
  });
});

describe('image lock', () => {
  it('one writer: a second lock and a reader are refused while it is held; released, the image is free', () => {
    const p = image('locked.img', 4096);
    const lock = lockImage(p);
    expect(readFileSync(p + LOCK_SUFFIX, 'utf8').trim()).toBe(String(process.pid));
    expect(() => lockImage(p)).toThrow(/in use by this typevisor \(is it given twice\?\)/);
    expect(() => checkNotLocked(p)).toThrow(/in use/);
    lock.release();
    expect(existsSync(p + LOCK_SUFFIX)).toBe(false);
    checkNotLocked(p);
    lockImage(p).release();
  });

  it('a lock held by a live process is refused with its PID; a dead owner\'s lock is taken over', () => {
    const p = image('other.img', 4096);
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(p + LOCK_SUFFIX, `${child.stdout}\n`); // that process has exited
    const lock = lockImage(p);
    lock.release();
    writeFileSync(p + LOCK_SUFFIX, '1\n'); // init is alive
    expect(() => lockImage(p)).toThrow(/in use by another typevisor \(pid 1\)/);
    rmSync(p + LOCK_SUFFIX);
  });
});

describe('openDisks', () => {
  it('names the problem: missing, directory, empty, not whole sectors', async () => {
    const sub = path.join(dir, 'subdir');
    mkdirSync(sub);
    const cases: [string, RegExp][] = [
      [path.join(dir, 'missing.img'), /missing\.img not found/],
      [sub, /subdir is a directory/],
      [image('empty.img', 0), /empty\.img is empty/],
      [image('odd.img', 700), /odd\.img is 700 bytes, not a whole number of 512-byte sectors/],
    ];
    for (const [p, re] of cases) {
      const e = await openDisks([{ path: p, readOnly: false, snapshot: false }]).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DiskError);
      expect((e as Error).message).toMatch(re);
    }
  });

  it('locks writable disks only, releases everything on close and when a later disk is refused', async () => {
    const a = image('a.img', 8192);
    const b = image('b.img', 8192);
    const d = await openDisks([{ path: a, readOnly: false, snapshot: false }, { path: b, readOnly: false, snapshot: true }]);
    expect(existsSync(a + LOCK_SUFFIX)).toBe(true);
    expect(existsSync(b + LOCK_SUFFIX)).toBe(false);
    expect(d.disks.map((x) => x.backend.readOnly)).toEqual([false, false]);
    await d.close();
    expect(existsSync(a + LOCK_SUFFIX)).toBe(false);
    await expect(openDisks([{ path: a, readOnly: false, snapshot: false }, { path: path.join(dir, 'nope'), readOnly: false, snapshot: false }])).rejects.toThrow(/not found/);
    expect(existsSync(a + LOCK_SUFFIX)).toBe(false);
  });
});
