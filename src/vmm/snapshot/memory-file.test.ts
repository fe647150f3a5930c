import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../machine/memory.js';
import { SnapshotError } from './check.js';
import { mappableBuffer, restoreMemoryFile, writeMemoryFile } from './memory-file.js';

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-memfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1 << 20;
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

/** Two regions (as below and above 4 GiB), some random data, some zero. */
function source(): GuestMemory {
  const m = new GuestMemory([{ base: 0, size: 2 * MiB }, { base: 0x1_0000_0000, size: MiB }]);
  randomFillSync(m.regions[0]!.bytes, 4096, 3 * 4096); // data among zeros: a sparse file
  randomFillSync(m.regions[0]!.bytes, MiB + 100, 5000);
  randomFillSync(m.regions[1]!.bytes, 65536, 65536);
  return m;
}

describe('the snapshot memory file', () => {
  it('maps into wasm-backed regions, reads into plain ones: the same bytes, and the file never changes', () => {
    const src = source();
    const file = path.join(dir, 'mem');
    writeMemoryFile(file, src);
    const fileSum = md5(readFileSync(file));
    const mapped = mappableBuffer(2 * MiB)!;
    expect(mapped).toBeDefined();
    // the region the guest had dirtied before: a restore replaces every byte, holes included
    new Uint8Array(mapped).fill(0xee);
    const dst = new GuestMemory([{ base: 0, size: 2 * MiB, buffer: mapped }, { base: 0x1_0000_0000, size: MiB }]);
    const n = restoreMemoryFile(file, dst, new Set([mapped]));
    expect(n).toBe(2 * MiB); // the first region mapped, the second (a plain ArrayBuffer) read
    for (let i = 0; i < 2; i++) expect(md5(dst.regions[i]!.bytes)).toBe(md5(src.regions[i]!.bytes));
    // the guest writes its RAM: copy on write, the file stays as it was
    dst.regions[0]!.bytes.fill(7, 0, 3 * 4096);
    dst.regions[0]!.bytes[MiB + 200] = 1;
    expect(dst.regions[0]!.bytes[4096]).toBe(7);
    expect(md5(readFileSync(file))).toBe(fileSum);
    // a second restore from the same file gets the snapshot's bytes again
    const again = new GuestMemory([{ base: 0, size: 2 * MiB, buffer: mappableBuffer(2 * MiB)! }, { base: 0x1_0000_0000, size: MiB }]);
    restoreMemoryFile(file, again, new Set([again.regions[0]!.bytes.buffer]));
    expect(md5(again.regions[0]!.bytes)).toBe(md5(src.regions[0]!.bytes));
  });

  it('reads everything when no region may be mapped', () => {
    const src = source();
    const file = path.join(dir, 'mem-read');
    writeMemoryFile(file, src);
    const dst = new GuestMemory([{ base: 0, size: 2 * MiB }, { base: 0x1_0000_0000, size: MiB }]);
    expect(restoreMemoryFile(file, dst, new Set())).toBe(0);
    for (let i = 0; i < 2; i++) expect(md5(dst.regions[i]!.bytes)).toBe(md5(src.regions[i]!.bytes));
  });

  it('refuses a file shorter than the RAM, before mapping anything (a mapping past its end would fault)', () => {
    const file = path.join(dir, 'short');
    writeFileSync(file, Buffer.alloc(MiB, 1));
    const buffer = mappableBuffer(2 * MiB)!;
    const dst = new GuestMemory([{ base: 0, size: 2 * MiB, buffer }]);
    expect(() => restoreMemoryFile(file, dst, new Set([buffer]))).toThrow(SnapshotError);
    expect(() => restoreMemoryFile(file, dst, new Set([buffer]))).toThrow(/shorter than the guest's RAM/);
    expect(dst.regions[0]!.bytes.every((b) => b === 0)).toBe(true);
  });

  it('gives mappable buffers only for sizes a wasm Memory holds', () => {
    expect(mappableBuffer(64 * 1024)?.byteLength).toBe(64 * 1024);
    expect(mappableBuffer(4096)).toBeUndefined(); // not whole 64 KiB pages
    expect(mappableBuffer(0)).toBeUndefined();
    expect(mappableBuffer(5 * 1024 * MiB)).toBeUndefined(); // over 4 GiB
  });
});
