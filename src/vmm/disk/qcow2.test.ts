/**
 * The qcow2 backend against images made and checked by QEMU's own tools (Debian's qemu-utils):
 * data written by qemu-io reads back, compressed images read like the raw they came from, our
 * writes leave images `qemu-img check` calls clean and `qemu-img compare` equal to a raw file
 * that got the same writes, overlays leave their backing files untouched, and malformed or
 * unsupported images are refused with one clear Qcow2Error (also under fuzzing).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../../../tests/support/rng.js';
import type { DiskBackend } from '../../devices/virtio/blk/backend.js';
import { createQcow2, createQcow2Overlay, openQcow2, Qcow2Error, type Qcow2Backend } from './qcow2.js';

const hasQemuImg = spawnSync('qemu-img', ['--version']).status === 0 && spawnSync('qemu-io', ['--version']).status === 0;
/** Said in the names of the tests that need QEMU's tools, so a skip says why. */
const needs = hasQemuImg ? '' : ' (SKIPPED: qemu-img/qemu-io not found: apt-get install qemu-utils)';
const KiB = 1024;
const MiB = 1024 * 1024;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'typevisor-qcow2-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const file = (name: string): string => path.join(dir, name);
const qemuImg = (...args: string[]): string => execFileSync('qemu-img', args, { encoding: 'utf8' });
const qemuIo = (img: string, ...cmds: string[]): void => {
  execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), img], { encoding: 'utf8' });
};
/** qemu-img check: status and output. */
const check = (img: string): { status: number | null; out: string } => {
  const r = spawnSync('qemu-img', ['check', '-f', 'qcow2', img], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
};
/** qemu-img check finds neither errors nor leaks. */
const expectClean = (img: string): void => {
  const c = check(img);
  expect(c.out).toContain('No errors were found');
  expect(c.status).toBe(0);
};
/** qemu-img compare of a qcow2 against a raw file: true when the contents are equal. */
const sameAs = (img: string, raw: string): boolean => spawnSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', img, raw]).status === 0;
const sha = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');

const p = (f: (done: (e?: Error) => void) => void): Promise<void> => new Promise((resolve, reject) => f((e) => (e ? reject(e) : resolve())));
async function readAll(b: DiskBackend, offset = 0, length = b.size, chunk = 256 * KiB): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += chunk) {
    const n = Math.min(chunk, length - at);
    // two buffers per request, split unevenly, as a guest's chain might be
    const split = Math.min(n, 512 * Math.max(1, Math.floor(n / 1536)));
    await p((d) => b.read(offset + at, [out.subarray(at, at + split), out.subarray(at + split, at + n)], d));
  }
  return out;
}
const write = (b: DiskBackend, offset: number, data: Uint8Array): Promise<void> => p((d) => b.write(offset, [data], d));

function pattern(seed: number, n: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

describe.skipIf(!hasQemuImg)('qcow2 images made by qemu-img' + needs, () => {
  const configs: [clusterSize: number, compat: string][] = [
    [512, '1.1'],
    [4096, '0.10'],
    [65536, '1.1'],
    [65536, '0.10'],
    [2 * MiB, '1.1'],
  ];
  it.each(configs)('reads what qemu-io wrote (cluster %i, compat %s)', async (cs, compat) => {
    const img = file(`qemu-${cs}-${compat}.qcow2`);
    const size = 8 * MiB;
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cs},compat=${compat}`, img, String(size));
    const writes: [fill: number, off: number, len: number][] = [
      [0xab, 0, 4 * KiB],
      [0xcd, MiB + 512, 12 * KiB],
      [0x11, 3 * MiB - 1024, 70 * KiB],
      [0x5a, size - 1536, 1536],
    ];
    qemuIo(img, ...writes.map(([f, o, l]) => `write -P ${f} ${o} ${l}`));
    const expected = new Uint8Array(size);
    for (const [f, o, l] of writes) expected.fill(f, o, o + l);
    const q = openQcow2(img, { readOnly: true });
    try {
      expect(q.size).toBe(size);
      expect(q.version).toBe(compat === '0.10' ? 2 : 3);
      expect(Buffer.from(await readAll(q)).equals(Buffer.from(expected))).toBe(true);
      // small reads straddling cluster boundaries
      const small = new Uint8Array(1024);
      await p((d) => q.read(MiB + 512 - 512, [small], d));
      expect(Buffer.from(small).equals(Buffer.from(expected.subarray(MiB, MiB + 1024)))).toBe(true);
    } finally {
      await q.close();
    }
  });

  it('reads the v3 zero flag as zeros', async () => {
    const img = file('zero.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
    qemuIo(img, 'write -P 0x77 0 256k', 'write -z 64k 64k');
    const q = openQcow2(img, { readOnly: true });
    const got = await readAll(q);
    await q.close();
    const expected = new Uint8Array(MiB).fill(0x77, 0, 256 * KiB).fill(0, 64 * KiB, 128 * KiB);
    expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
  });

  it('reads a compressed image like the raw file it came from, and writes over compressed clusters', async () => {
    const raw = file('comp.raw');
    const size = 4 * MiB;
    const data = new Uint8Array(size);
    // compressible text, random (incompressible) stretches and holes
    for (let i = 0; i < size; i++) data[i] = i % 4096 < 3000 ? 'typevisor qcow2 '.charCodeAt(i % 16) : 0;
    data.set(pattern(7, 300 * KiB), MiB + 100);
    writeFileSync(raw, data);
    for (const cs of [4096, 65536]) {
      const img = file(`comp-${cs}.qcow2`);
      qemuImg('convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, '-f', 'raw', raw, img);
      let q = openQcow2(img, { readOnly: true });
      expect(Buffer.from(await readAll(q)).equals(Buffer.from(data))).toBe(true);
      // many small reads of the same compressed clusters
      expect(Buffer.from(await readAll(q, 2 * MiB, 64 * KiB, 4 * KiB)).equals(Buffer.from(data.subarray(2 * MiB, 2 * MiB + 64 * KiB)))).toBe(true);
      await q.close();

      // partial writes into compressed clusters: copy-on-write from the inflated cluster
      q = openQcow2(img);
      const mirror = Buffer.from(data);
      const r = rng(cs);
      for (let k = 0; k < 40; k++) {
        const off = Math.floor(r() * (size / 512 - 16)) * 512;
        const chunk = pattern(k + cs, 512 * (1 + Math.floor(r() * 15)));
        await write(q, off, chunk);
        mirror.set(chunk, off);
      }
      await p((d) => q.writeZeroes(0, 3 * cs, d));
      mirror.fill(0, 0, 3 * cs);
      expect(Buffer.from(await readAll(q)).equals(mirror)).toBe(true);
      await q.close();
      const expectedRaw = file(`comp-${cs}.expected.raw`);
      writeFileSync(expectedRaw, mirror);
      expectClean(img);
      expect(sameAs(img, expectedRaw)).toBe(true);
    }
  });
});

/** Random writes, write-zeroes and discards through `q`, mirrored into `mirror`. */
async function randomWrites(q: Qcow2Backend, mirror: Uint8Array, seed: number, ops: number, maxLen: number, v3: boolean): Promise<void> {
  const r = rng(seed);
  const sectors = q.size / 512;
  const pending: Promise<void>[] = [];
  for (let k = 0; k < ops; k++) {
    const len = 512 * (1 + Math.floor(r() * (maxLen / 512)));
    const off = Math.min(Math.floor(r() * sectors), sectors - len / 512) * 512;
    const what = r();
    if (what < 0.8) {
      const data = pattern(seed * 1000 + k, len);
      mirror.set(data, off);
      // issued without waiting: the backend orders them
      pending.push(write(q, off, data));
    } else if (what < 0.9) {
      mirror.fill(0, off, off + len);
      pending.push(p((d) => q.writeZeroes(off, len, d)));
    } else if (what < 0.95) {
      // a read racing the writes: it must complete, with either version of the data
      pending.push(p((d) => q.read(off, [new Uint8Array(len)], d)));
    } else {
      // a discard may leave old data or zeros: make the mirror agree by zeroing what v3 zeroes
      pending.push(p((d) => q.discard(off, len, d)));
      if (v3) {
        const cs = q.clusterSize;
        for (let c = Math.ceil(off / cs) * cs; c + cs <= off + len; c += cs) mirror.fill(0, c, c + cs);
      }
    }
    if (pending.length >= 8) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await p((d) => q.flush(d));
}

describe.skipIf(!hasQemuImg)('writing qcow2' + needs, () => {
  const configs: [clusterSize: number, compat: string][] = [
    [512, '1.1'],
    [4096, '0.10'],
    [65536, '1.1'],
    [2 * MiB, '0.10'],
  ];
  it.each(configs)('random writes leave a clean image equal to a raw mirror (cluster %i, compat %s)', async (cs, compat) => {
    const img = file(`rw-${cs}-${compat}.qcow2`);
    const size = 16 * MiB;
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cs},compat=${compat}`, img, String(size));
    const mirror = new Uint8Array(size);
    // a small metadata cache: L2 tables and refcount blocks are dropped and reloaded all the time
    let q = openQcow2(img, { cacheBytes: cs === 512 ? 0 : undefined });
    await randomWrites(q, mirror, cs, 150, 64 * KiB, compat === '1.1');
    expect(Buffer.from(await readAll(q)).equals(Buffer.from(mirror))).toBe(true);
    await q.close();
    // reopened: the same again, and more writes over what is now allocated
    q = openQcow2(img);
    await randomWrites(q, mirror, cs + 1, 60, 16 * KiB, compat === '1.1');
    await q.close();
    const raw = file(`rw-${cs}-${compat}.raw`);
    writeFileSync(raw, mirror);
    expectClean(img);
    expect(sameAs(img, raw)).toBe(true);
  });

  it('grows past one refcount block and past its refcount table (512-byte clusters)', async () => {
    const img = file('grow.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', img, '64M');
    const mirror = new Uint8Array(64 * MiB);
    const q = openQcow2(img, { cacheBytes: 0 });
    // 10 MiB of data: one 512-byte refcount block counts 128 KiB, the initial table 8 MiB of file
    for (let at = 0; at < 10 * MiB; at += 256 * KiB) {
      const data = pattern(at, 256 * KiB);
      const off = (at * 5) % (60 * MiB);
      mirror.set(data, off);
      await write(q, off, data);
    }
    expect(Buffer.from(await readAll(q, 0, 64 * MiB, MiB)).equals(Buffer.from(mirror))).toBe(true);
    await q.close();
    const raw = file('grow.raw');
    writeFileSync(raw, mirror);
    expectClean(img);
    expect(sameAs(img, raw)).toBe(true);
    // the refcount table moved from cluster 1 (qemu-img's place) to a larger one
    const header = new DataView(readFileSync(img).buffer);
    expect(Number(header.getBigUint64(48))).toBeGreaterThan(512);
    expect(header.getUint32(56)).toBeGreaterThan(1);
  });

  it('a read-only open refuses writes and never changes the file', async () => {
    const img = file('ro.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
    qemuIo(img, 'write -P 0x42 0 64k');
    const before = sha(img);
    const q = openQcow2(img, { readOnly: true });
    expect(q.readOnly).toBe(true);
    await expect(write(q, 0, new Uint8Array(512))).rejects.toThrow(/read-only/);
    await expect(p((d) => q.writeZeroes(0, 65536, d))).rejects.toThrow(/read-only/);
    await p((d) => q.discard(0, 65536, d)); // a hint: ignored
    await p((d) => q.flush(d));
    await readAll(q);
    await q.close();
    expect(sha(img)).toBe(before);
  });

  it('creates an empty image qemu-img accepts', async () => {
    const img = file('created.qcow2');
    createQcow2(img, { size: 3 * MiB + 512, clusterBits: 12 });
    expect(check(img).status).toBe(0);
    const q = openQcow2(img);
    expect(q.size).toBe(3 * MiB + 512);
    const data = pattern(1, 4 * KiB + 512); // into the last, partial cluster
    await write(q, 3 * MiB - 4096, data);
    await q.close();
    const mirror = new Uint8Array(3 * MiB + 512);
    mirror.set(data, 3 * MiB - 4096);
    const raw = file('created.raw');
    writeFileSync(raw, mirror);
    expectClean(img);
    expect(sameAs(img, raw)).toBe(true);
    expect(() => createQcow2(img, { size: MiB })).toThrow(Qcow2Error); // exists
  });
});

describe.skipIf(!hasQemuImg)('qcow2 overlays and backing files' + needs, () => {
  it.each(['raw', 'qcow2'] as const)('an overlay over a %s backing file takes the writes and leaves the backing file alone', async (fmt) => {
    const size = 6 * MiB;
    const baseData = pattern(99, size);
    const baseRaw = file(`base-${fmt}.raw`);
    writeFileSync(baseRaw, baseData);
    let base = baseRaw;
    if (fmt === 'qcow2') {
      base = file('base.qcow2');
      qemuImg('convert', '-O', 'qcow2', '-f', 'raw', baseRaw, base);
    }
    const before = sha(base);
    const ov = file(`overlay-${fmt}.qcow2`);
    createQcow2Overlay(ov, path.basename(base), fmt); // relative to the overlay's directory
    const q = openQcow2(ov);
    expect(q.size).toBe(size);
    expect(q.backingFile).toBe(path.basename(base));
    expect(Buffer.from(await readAll(q)).equals(Buffer.from(baseData))).toBe(true);
    const mirror = Buffer.from(baseData);
    await randomWrites(q, mirror, fmt === 'raw' ? 5 : 6, 80, 20 * KiB, true);
    expect(Buffer.from(await readAll(q)).equals(mirror)).toBe(true);
    await q.close();
    const expected = file(`overlay-${fmt}.expected.raw`);
    writeFileSync(expected, mirror);
    expectClean(ov);
    expect(sameAs(ov, expected)).toBe(true);
    expect(sha(base)).toBe(before);
  });

  it('reads a chain made by qemu-img: raw <- qcow2 <- qcow2, with a backing file smaller than the image', async () => {
    const raw = file('chain.raw');
    writeFileSync(raw, new Uint8Array(MiB + 512).fill(0x31));
    const mid = file('chain-mid.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'chain.raw', '-F', 'raw', mid, '2M');
    qemuIo(mid, 'write -P 0x32 64k 64k');
    const top = file('chain-top.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', mid, '-F', 'qcow2', top, '3M');
    qemuIo(top, 'write -P 0x33 100k 8k', 'write -P 0x34 1M 8k');
    const expected = new Uint8Array(3 * MiB).fill(0x31, 0, MiB + 512).fill(0x32, 64 * KiB, 128 * KiB).fill(0x33, 100 * KiB, 108 * KiB).fill(0x34, MiB, MiB + 8 * KiB);
    const q = openQcow2(top, { readOnly: true });
    expect(q.backingChain).toEqual([mid, raw]);
    expect(Buffer.from(await readAll(q)).equals(Buffer.from(expected))).toBe(true);
    await q.close();
  });

  it('refuses a missing backing file, naming it', () => {
    const ov = file('orphan.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.raw', '-F', 'raw', ov, '1M');
    expect(() => openQcow2(ov)).toThrow(/backing file .*gone\.raw of .*orphan\.qcow2 not found/);
  });
});

/** A fresh 1 MiB v3 image with some data, its bytes patched by `patch`. */
function patched(name: string, patch: (dv: DataView, bytes: Uint8Array) => void, opts = ''): string {
  const img = file(name);
  qemuImg('create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, '1M');
  qemuIo(img, 'write -P 0x55 0 128k');
  const bytes = new Uint8Array(readFileSync(img));
  patch(new DataView(bytes.buffer), bytes);
  writeFileSync(img, bytes);
  return img;
}

describe.skipIf(!hasQemuImg)('refusing qcow2 images' + needs, () => {
  const refuse = (img: string, message: RegExp, readOnly = false): void => {
    let err: unknown;
    try {
      openQcow2(img, { readOnly }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Qcow2Error);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain(img);
  };

  it('not qcow2, truncated, bad cluster size, bad version', () => {
    const notQ = file('plain.raw');
    writeFileSync(notQ, new Uint8Array(4096));
    refuse(notQ, /not a qcow2 image/);
    const cut = patched('cut.qcow2', () => {});
    truncateSync(cut, 100);
    refuse(cut, /shorter than a version 3 header|outside the .*file/);
    const cutL1 = patched('cut-l1.qcow2', () => {});
    truncateSync(cutL1, 3 * 65536 + 4);
    refuse(cutL1, /L1 table .* outside the/);
    refuse(
      patched('cbits.qcow2', (dv) => dv.setUint32(20, 22)),
      /cluster_bits is 22/,
    );
    refuse(
      patched('v4.qcow2', (dv) => dv.setUint32(4, 4)),
      /version 4/,
    );
    refuse(
      patched('l1off.qcow2', (dv) => dv.setBigUint64(40, 0xffffffffffff0000n)),
      /L1 table/,
    );
  });

  it('encrypted, dirty, corrupt, zstd, extended L2, 8-bit refcounts, unknown features', () => {
    refuse(
      patched('enc.qcow2', (dv) => dv.setUint32(32, 2)),
      /encrypted qcow2 images are not supported/,
    );
    const dirty = patched('dirty.qcow2', (dv) => dv.setBigUint64(72, 1n));
    refuse(dirty, new RegExp(`qemu-img check -r all ${dirty.replace(/[.]/g, '\\.')}`));
    refuse(
      patched('corrupt.qcow2', (dv) => dv.setBigUint64(72, 2n)),
      /marked corrupt/,
    );
    refuse(
      patched('unknown.qcow2', (dv) => dv.setBigUint64(72, 1n << 10n)),
      /incompatible feature bit 10/,
    );
    // an unknown bit the image's feature name table names
    const named = patched('named.qcow2', (dv, bytes) => {
      dv.setBigUint64(72, 1n << 10n);
      let at = dv.getUint32(100);
      while (dv.getUint32(at) !== 0x6803f857) at += 8 + Math.ceil(dv.getUint32(at + 4) / 8) * 8;
      bytes[at + 8] = 0; // incompatible
      bytes[at + 9] = 10;
      bytes.fill(0, at + 10, at + 56);
      bytes.set(new TextEncoder().encode('future feature'), at + 10);
    });
    refuse(named, /"future feature" \(bit 10\)/);
    const zstd = file('zstd.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', zstd, '1M');
    refuse(zstd, /zstd compression/);
    const ext = file('extl2.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', ext, '1M');
    refuse(ext, /extended L2 entries/);
    const r8 = file('r8.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=8', r8, '1M');
    refuse(r8, /8-bit refcounts/);
  });

  it('images with internal snapshots open read-only only', async () => {
    const img = patched('snap.qcow2', () => {});
    qemuImg('snapshot', '-c', 'one', img);
    qemuIo(img, 'write -P 0x66 0 64k');
    refuse(img, /internal snapshot/);
    const q = openQcow2(img, { readOnly: true });
    const got = await readAll(q, 0, 192 * KiB);
    await q.close();
    expect(got.subarray(0, 64 * KiB).every((b) => b === 0x66)).toBe(true);
    expect(got.subarray(64 * KiB, 128 * KiB).every((b) => b === 0x55)).toBe(true);
  });
});

describe.skipIf(!hasQemuImg)('fuzzing the qcow2 parser' + needs, () => {
  it('mutated images give only clean errors', async () => {
    // Seeds: a v3 image with data and a zero cluster, a v2 image, a compressed one, an overlay.
    const seeds: string[] = [];
    const v3 = file('fz-v3.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', v3, '2M');
    qemuIo(v3, 'write -P 0x12 0 200k', 'write -z 64k 8k', 'write -P 0x13 1M 4k');
    seeds.push(v3);
    const v2 = file('fz-v2.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4096', v2, '1M');
    qemuIo(v2, 'write -P 0x21 4k 100k');
    seeds.push(v2);
    const raw = file('fz.raw');
    writeFileSync(raw, new Uint8Array(MiB).map((_, i) => (i >> 9) & 0xff));
    const comp = file('fz-comp.qcow2');
    qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', '-f', 'raw', raw, comp);
    seeds.push(comp);
    const ov = file('fz-ov.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'fz.raw', '-F', 'raw', ov, '1M');
    qemuIo(ov, 'write -P 0x44 8k 8k');
    seeds.push(ov);

    const r = rng(0x9c0f2);
    const target = file('fz-target.qcow2');
    let opened = 0;
    let refused = 0;
    let ioErrors = 0;
    for (let iter = 0; iter < 320; iter++) {
      const seed = seeds[iter % seeds.length]!;
      const bytes = new Uint8Array(readFileSync(seed));
      const dv = new DataView(bytes.buffer);
      const mutations = 1 + Math.floor(r() * 4);
      let length = bytes.length;
      for (let m = 0; m < mutations; m++) {
        const kind = r();
        if (kind < 0.35) {
          // a header field: random value
          const at = Math.floor(r() * 13) * 8;
          if (r() < 0.5) dv.setUint32(at + (r() < 0.5 ? 0 : 4), (r() * 2 ** 32) >>> 0);
          else dv.setUint32(at + 4, Math.floor(r() * 64));
        } else if (kind < 0.7) {
          // metadata (first clusters: header, refcount table/blocks, L1, L2): a random byte
          const at = Math.floor(r() * Math.min(bytes.length, 6 * 4096));
          bytes[at] = (r() * 256) | 0;
        } else if (kind < 0.9) {
          // anywhere
          bytes[Math.floor(r() * bytes.length)] ^= 1 << Math.floor(r() * 8);
        } else {
          length = Math.floor(r() * bytes.length);
        }
      }
      writeFileSync(target, bytes.subarray(0, length));
      let q: Qcow2Backend;
      try {
        q = openQcow2(target, { readOnly: r() < 0.5 });
      } catch (e) {
        if (!(e instanceof Qcow2Error)) throw e;
        refused++;
        continue;
      }
      opened++;
      const errors: unknown[] = [];
      const tryOp = (op: (d: (e?: Error) => void) => void): Promise<void> => p(op).catch((e: unknown) => void errors.push(e));
      // reads over the (bounded) disk, and a few writes
      const span = Math.min(q.size, 2 * MiB);
      for (let at = 0; at + 64 * KiB <= span; at += 64 * KiB) await tryOp((d) => q.read(at, [new Uint8Array(64 * KiB)], d));
      if (!q.readOnly && q.size >= 64 * KiB) {
        for (let k = 0; k < 4; k++) {
          const off = Math.floor((r() * (q.size - 8192)) / 512) * 512;
          await tryOp((d) => q.write(off, [new Uint8Array(4096).fill(k)], d));
        }
        await tryOp((d) => q.writeZeroes(0, 8192, d));
      }
      await q.close();
      for (const e of errors) {
        if (!(e instanceof Qcow2Error)) throw e;
      }
      ioErrors += errors.length;
    }
    // the mutations must exercise both the parser's refusals and the I/O paths
    expect(opened).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(20);
    expect(ioErrors).toBeGreaterThan(0);
  });
});

describe('qcow2 without qemu-img', () => {
  it('creates, writes and reads back an image on its own', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'typevisor-qcow2-self-'));
    try {
      const raw = path.join(d, 'base.raw');
      writeFileSync(raw, pattern(3, 256 * KiB));
      const ov = path.join(d, 'ov.qcow2');
      createQcow2Overlay(ov, raw);
      const q = openQcow2(ov);
      const data = pattern(4, 3000 - (3000 % 512));
      await write(q, 70 * KiB, data);
      const expected = Buffer.from(readFileSync(raw));
      expected.set(data, 70 * KiB);
      expect(Buffer.from(await readAll(q)).equals(expected)).toBe(true);
      await q.close();
      copyFileSync(ov, path.join(d, 'copy.qcow2'));
      const again = openQcow2(path.join(d, 'copy.qcow2'), { readOnly: true });
      expect(Buffer.from(await readAll(again)).equals(expected)).toBe(true);
      await again.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
