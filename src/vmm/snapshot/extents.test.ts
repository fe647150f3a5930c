import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dataExtents } from './extents.js';

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-extents-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dataExtents', () => {
  it('finds the data of a sparse file and skips its holes (or says it cannot)', () => {
    const p = path.join(dir, 'sparse');
    const fd = openSync(p, 'w');
    writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 1 << 20);
    writeSync(fd, Buffer.alloc(8192, 2), 0, 8192, 5 << 20);
    ftruncateSync(fd, 8 << 20);
    closeSync(fd);
    const r = openSync(p, 'r');
    try {
      const e = dataExtents(r, 8 << 20);
      if (e === undefined) return; // a file system without SEEK_DATA: the caller reads everything
      // every byte written is inside an extent; the extents are ordered and within the file
      const covered = (at: number): boolean => e.some(([s, t]) => s <= at && at < t);
      for (const at of [1 << 20, (1 << 20) + 4095, 5 << 20, (5 << 20) + 8191]) expect(covered(at)).toBe(true);
      for (let i = 1; i < e.length; i++) expect(e[i]![0]).toBeGreaterThanOrEqual(e[i - 1]![1]);
      expect(e.at(-1)![1]).toBeLessThanOrEqual(8 << 20);
      expect(covered(0)).toBe(false);
    } finally {
      closeSync(r);
    }
  });

  it('an empty file has no extents', () => {
    const p = path.join(dir, 'empty');
    closeSync(openSync(p, 'w'));
    const r = openSync(p, 'r');
    expect(dataExtents(r, 0) ?? []).toEqual([]);
    closeSync(r);
  });
});
