/**
 * Fuzz: random descriptor tables, avail rings and indirect tables (seeded, reproducible).
 * Whatever the guest wrote, `pop` returns (true, false or a VirtqueueError), never throws, never
 * touches memory outside guest RAM, and every chain it accepts lies in RAM with a total length
 * below 2^32.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../../../../tests/support/rng.js';
import { GuestMemory } from '../../../machine/memory.js';
import { DescriptorChain, SplitQueue, VirtqueueError, type QueueMemory } from './queue.js';

const RAM = 0x40000;
const HIGH = 0x1_0000_0000;
const HIGH_SIZE = 0x8000;

/** Guest memory that records any access outside RAM instead of trusting the bounds checks. */
function guardedMemory(mem: GuestMemory): QueueMemory & { outside: number } {
  const g = {
    outside: 0,
    isRam: (a: number, l: number) => mem.isRam(a, l),
    read16: (a: number) => (check(a, 2), mem.read16(a)),
    read32: (a: number) => (check(a, 4), mem.read32(a)),
    write16: (a: number, v: number) => (check(a, 2), mem.write16(a, v)),
    write32: (a: number, v: number) => (check(a, 4), mem.write32(a, v)),
  };
  const check = (a: number, n: number) => {
    if (!mem.isRam(a, n)) g.outside++;
  };
  return g;
}

describe('virtqueue fuzz', () => {
  it('survives 4000 random rings', () => {
    const r = rng(0x5eed_f00d);
    const int = (n: number) => Math.floor(r() * n);
    const mem = new GuestMemory([{ base: 0, size: RAM }, { base: HIGH, size: HIGH_SIZE }]);
    const guarded = guardedMemory(mem);
    const chain = new DescriptorChain(4);
    const interesting = [0, RAM - 16, RAM - 1, RAM, 0xc000_0000, 0xfee0_0000, HIGH - 8, HIGH, HIGH + HIGH_SIZE - 8, 2 ** 52 - 16, 2 ** 63, 2 ** 64 - 4096];
    const randomAddr = (): number => {
      const k = r();
      if (k < 0.5) return int(RAM);
      if (k < 0.6) return HIGH + int(HIGH_SIZE);
      if (k < 0.8) return interesting[int(interesting.length)]!;
      return int(2 ** 32) * 2 ** 32 * (r() < 0.5 ? 0 : 1) + int(2 ** 32);
    };
    const randomLen = (): number => {
      const k = r();
      if (k < 0.6) return int(4096);
      if (k < 0.8) return 16 * int(64);
      return [0, 0xffff_ffff, 0x8000_0000, RAM, RAM + 1][int(5)]!;
    };
    let accepted = 0;
    const errors = new Map<string, number>();
    for (let iter = 0; iter < 4000; iter++) {
      mem.fill(0, RAM, 0);
      const size = 1 << int(9); // 1..256
      const q = new SplitQueue(256);
      q.size = size;
      q.descAddr = 0x1000;
      q.availAddr = 0x1000 + 16 * size;
      q.usedAddr = 0x8000;
      const act = q.activate(guarded, { indirect: r() < 0.7, eventIdx: r() < 0.5 });
      expect(act).toBeUndefined();
      // Random descriptors in the queue's table and in a few candidate indirect tables.
      const writeRandomDesc = (at: number) => {
        mem.write32(at, 0);
        const a = randomAddr();
        mem.write32(at, a % 2 ** 32);
        mem.write32(at + 4, Math.floor(a / 2 ** 32) >>> 0);
        mem.write32(at + 8, randomLen());
        mem.write16(at + 12, int(8)); // NEXT | WRITE | INDIRECT, any combination
        mem.write16(at + 14, r() < 0.8 ? int(size + 1) : int(65536));
      };
      for (let i = 0; i < size; i++) writeRandomDesc(q.descAddr + 16 * i);
      for (let i = 0; i < 256; i++) writeRandomDesc(0x20000 + 16 * i); // indirect tables often land here
      for (let i = 0; i < 64; i++) {
        const d = q.descAddr + 16 * int(size);
        if (r() < 0.5) {
          // point some descriptors at the pre-filled table area
          mem.write32(d, 0x20000 + 16 * int(200));
          mem.write32(d + 4, 0);
        }
      }
      for (let i = 0; i < size; i++) mem.write16(q.availAddr + 4 + 2 * i, r() < 0.9 ? int(size) : int(65536));
      mem.write16(q.availAddr + 2, r() < 0.8 ? int(size + 1) : int(65536));
      q.lastAvail = r() < 0.2 ? int(65536) : 0;
      for (let k = 0; k < size + 2; k++) {
        let res: boolean | VirtqueueError;
        try {
          res = q.pop(guarded, chain);
        } catch (e) {
          throw new Error(`iteration ${iter}: pop threw ${String(e)}`);
        }
        if (res === false) break;
        if (res instanceof VirtqueueError) {
          errors.set(res.code, (errors.get(res.code) ?? 0) + 1);
          break;
        }
        accepted++;
        expect(chain.count).toBeGreaterThan(0);
        expect(chain.readableBytes + chain.writableBytes).toBeLessThanOrEqual(0xffff_ffff);
        for (let b = 0; b < chain.count; b++) {
          expect(mem.isRam(chain.addr[b]!, Math.max(1, chain.len[b]!))).toBe(true);
        }
        q.pushUsed(guarded, chain.head, chain.writableBytes);
        q.needsInterrupt(guarded);
      }
    }
    expect(guarded.outside).toBe(0);
    // The fuzzer reaches both accepted chains and most error kinds.
    expect(accepted).toBeGreaterThan(100);
    for (const code of ['bad-avail-index', 'bad-head-index', 'bad-next-index', 'chain-too-long', 'nested-indirect', 'buffer-outside-ram', 'readable-after-writable', 'indirect-with-next']) {
      expect(errors.get(code) ?? 0, code).toBeGreaterThan(0);
    }
  });
});
