import { readSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GiB, MiB, MMIO32_START, RAM_ABOVE_4G_START } from '../machine/layout.js';
import { MAX_REGION_SIZE, createKvmGuestMemory, guestMemoryOver, ramRegions } from './memory.js';

describe('ramRegions', () => {
  it('keeps small RAM in one region at 0', () => {
    expect(ramRegions(256 * MiB)).toEqual([{ guestBase: 0, size: 256 * MiB, offset: 0 }]);
  });

  it('splits around the PCI hole and never makes a region over MAX_REGION_SIZE', () => {
    const rs = ramRegions(8 * GiB);
    expect(rs.every((r) => r.size <= MAX_REGION_SIZE)).toBe(true);
    expect(rs.reduce((n, r) => n + r.size, 0)).toBe(8 * GiB);
    const below = rs.filter((r) => r.guestBase < MMIO32_START);
    expect(below.reduce((n, r) => n + r.size, 0)).toBe(MMIO32_START);
    expect(rs.find((r) => r.guestBase === RAM_ABOVE_4G_START)?.offset).toBe(MMIO32_START);
    for (const r of rs) expect(r.guestBase + r.size <= MMIO32_START || r.guestBase >= RAM_ABOVE_4G_START).toBe(true);
  });

  it('rejects sizes that are not whole pages', () => {
    expect(() => ramRegions(1000)).toThrow(/multiple of 4096/);
    expect(() => ramRegions(0)).toThrow();
  });
});

describe('createKvmGuestMemory', () => {
  it('gives every view the memfd\'s pages, and zeros after dispose', () => {
    const ram = createKvmGuestMemory(3 * MiB + 4096); // not a whole number of 64 KiB wasm pages
    try {
      expect(ram.handle.regions.every((r) => r.memory.buffer instanceof SharedArrayBuffer && r.address % 4096n === 0n)).toBe(true);
      ram.memory.writeBytes(3 * MiB, Uint8Array.of(1, 2, 3));
      const got = new Uint8Array(3);
      readSync(ram.memfd, got, 0, 3, 3 * MiB);
      expect([...got]).toEqual([1, 2, 3]); // the memfd holds what the view wrote
      const other = guestMemoryOver(ram.handle); // as a vCPU thread rebuilds it from the posted handle
      expect([...other.readBytes(3 * MiB, 3)]).toEqual([1, 2, 3]);
      other.writeBytes(0, Uint8Array.of(9));
      expect(ram.memory.readBytes(0, 1)[0]).toBe(9);
    } finally {
      ram.dispose();
    }
    expect([...ram.memory.readBytes(3 * MiB, 3)]).toEqual([0, 0, 0]); // a stale view reads zeros
  });
});
