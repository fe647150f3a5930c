import { describe, expect, it } from 'vitest';
import { GiB, MiB, MMIO32_START, RAM_ABOVE_4G_START } from '../machine/layout.js';
import { MAX_REGION_SIZE, ramRegions } from './memory.js';

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
