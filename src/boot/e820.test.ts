import { describe, expect, it } from 'vitest';
import { EBDA_START, GiB, HIGH_MEMORY_START, MiB, MMIO32_START, RAM_ABOVE_4G_START } from '../machine/layout.js';
import { GuestMemory } from '../machine/memory.js';
import { buildE820, E820_RAM, E820_RESERVED, e820RamBytes } from './e820.js';
import { BootError } from './errors.js';

describe('buildE820', () => {
  it('splits low memory around the EBDA/BIOS hole', () => {
    const m = new GuestMemory([{ base: 0, size: 64 * MiB }]);
    expect(buildE820(m)).toEqual([
      { addr: 0, size: EBDA_START, type: E820_RAM },
      { addr: EBDA_START, size: HIGH_MEMORY_START - EBDA_START, type: E820_RESERVED },
      { addr: HIGH_MEMORY_START, size: 63 * MiB, type: E820_RAM },
    ]);
  });

  it('adds RAM above 4 GiB as its own entry', () => {
    const m = new GuestMemory([
      { base: 0, size: 16 * MiB },
      { base: RAM_ABOVE_4G_START, size: 2 * MiB },
    ]);
    const map = buildE820(m);
    expect(map.at(-1)).toEqual({ addr: RAM_ABOVE_4G_START, size: 2 * MiB, type: E820_RAM });
    expect(map).toHaveLength(4);
    expect(e820RamBytes(map)).toBe(EBDA_START + 15 * MiB + 2 * MiB);
    expect(map.every((e) => e.addr + e.size <= MMIO32_START || e.addr >= 4 * GiB)).toBe(true);
  });

  it('rejects overlapping extra entries and RAM smaller than 1 MiB', () => {
    const m = new GuestMemory([{ base: 0, size: 4 * MiB }]);
    expect(() => buildE820(m, { extra: [{ addr: 2 * MiB, size: MiB, type: E820_RESERVED }] })).toThrow(/overlap/);
    expect(() => buildE820(new GuestMemory([{ base: 0, size: 512 * 1024 }]))).toThrow(BootError);
  });
});
