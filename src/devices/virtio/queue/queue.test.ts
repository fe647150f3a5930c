import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../machine/memory.js';
import {
  DescriptorChain, SplitQueue, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
  VirtqueueError, type VirtqueueErrorCode,
} from './queue.js';
import { DriverQueue } from './testing.js';

const MiB = 1 << 20;
const HOLE = 0xc000_0000;

/** 2 MiB of RAM at 0 and 64 KiB above the hole at 4 GiB. */
function setup(size = 16, opts: { indirect?: boolean; eventIdx?: boolean } = {}) {
  const mem = new GuestMemory([{ base: 0, size: 2 * MiB }, { base: 0x1_0000_0000, size: 0x10000 }]);
  const drv = new DriverQueue(mem, size, 0x10000);
  const q = new SplitQueue(size);
  q.descAddr = drv.descAddr;
  q.availAddr = drv.availAddr;
  q.usedAddr = drv.usedAddr;
  expect(q.activate(mem, { indirect: opts.indirect ?? false, eventIdx: opts.eventIdx ?? false })).toBeUndefined();
  return { mem, drv, q, chain: new DescriptorChain(2) };
}

function expectError(r: unknown, code: VirtqueueErrorCode): void {
  expect(r).toBeInstanceOf(VirtqueueError);
  expect((r as VirtqueueError).code).toBe(code);
  expect((r as VirtqueueError).message).toMatch(/must reset the device/);
}

describe('SplitQueue activation', () => {
  const mem = new GuestMemory([{ base: 0, size: 2 * MiB }]);
  const make = (size: number, desc = 0x1000, avail = 0x2000, used = 0x3000) => {
    const q = new SplitQueue(256);
    q.size = size;
    q.descAddr = desc;
    q.availAddr = avail;
    q.usedAddr = used;
    return q.activate(mem, { indirect: true, eventIdx: true });
  };

  it('accepts a power-of-two size up to the maximum with aligned rings in RAM', () => {
    expect(make(256)).toBeUndefined();
    expect(make(1)).toBeUndefined();
  });

  it('refuses sizes that are not powers of two or exceed the maximum', () => {
    for (const n of [0, 3, 100, 512, 65536, -4]) expectError(make(n), 'bad-queue-size');
    expect(() => new SplitQueue(3)).toThrow(RangeError);
    expect(() => new SplitQueue(65536)).toThrow(RangeError);
  });

  it('refuses misaligned rings and rings outside RAM or in the MMIO hole', () => {
    expectError(make(16, 0x1008), 'ring-misaligned');
    expectError(make(16, 0x1000, 0x2001), 'ring-misaligned');
    expectError(make(16, 0x1000, 0x2000, 0x3002), 'ring-misaligned');
    expectError(make(16, 2 * MiB - 16), 'ring-outside-ram');
    expectError(make(16, HOLE), 'ring-outside-ram');
    expectError(make(16, 0x1000, 0x2000, 2 ** 60), 'ring-outside-ram');
  });

  it('reset returns to the maximum size, not ready', () => {
    const q = new SplitQueue(64);
    q.size = 8;
    q.ready = true;
    q.lastAvail = 5;
    q.reset();
    expect([q.size, q.ready, q.lastAvail]).toEqual([64, false, 0]);
  });
});

describe('SplitQueue chains', () => {
  it('pops a chain with readable buffers first, then writable; pushes used entries', () => {
    const { mem, drv, q, chain } = setup();
    expect(q.pop(mem, chain)).toBe(false);
    const head = drv.add([{ addr: 0x40000, len: 16 }, { addr: 0x41000, len: 512, write: true }, { addr: 0x42000, len: 1, write: true }]);
    expect(q.pop(mem, chain)).toBe(true);
    expect(chain.head).toBe(head);
    expect([chain.count, chain.readable, chain.writable]).toEqual([3, 1, 2]);
    expect([chain.readableBytes, chain.writableBytes]).toEqual([16, 513]);
    expect([...chain.addr.subarray(0, 3)]).toEqual([0x40000, 0x41000, 0x42000]);
    expect([...chain.len.subarray(0, 3)]).toEqual([16, 512, 1]);
    expect(q.pop(mem, chain)).toBe(false);
    expect(q.pushUsed(mem, chain.head, 100)).toBeUndefined();
    expect(drv.takeUsed()).toEqual([{ id: head, len: 100 }]);
    expectError(q.pushUsed(mem, 16, 0), 'bad-used-head');
  });

  it('accepts buffers in RAM above 4 GiB', () => {
    const { mem, drv, q, chain } = setup();
    drv.add([{ addr: 0x1_0000_0000, len: 0x10000, write: true }]);
    expect(q.pop(mem, chain)).toBe(true);
    expect(chain.addr[0]).toBe(0x1_0000_0000);
  });

  it('wraps the 16-bit ring indices', () => {
    const { mem, drv, q, chain } = setup(4);
    let bad = 0;
    for (let k = 0; k < 70000; k += 1) {
      const head = drv.add([{ addr: 0x40000, len: 8, write: true }]);
      if (q.pop(mem, chain) !== true || chain.head !== head) bad++;
      q.pushUsed(mem, head, 8);
      const used = drv.takeUsed();
      if (used.length !== 1 || used[0]!.id !== head) bad++;
    }
    expect(bad).toBe(0);
    expect(q.lastAvail).toBe(70000 & 0xffff);
  });

  it('refuses an avail index too far ahead and a head beyond the queue', () => {
    const a = setup(8);
    a.mem.write16(a.drv.availAddr + 2, 9);
    expectError(a.q.pop(a.mem, a.chain), 'bad-avail-index');
    const b = setup(8);
    b.drv.publish(8);
    expectError(b.q.pop(b.mem, b.chain), 'bad-head-index');
  });

  it('ends loops by the TTL and refuses next indices beyond the queue', () => {
    const a = setup(8);
    a.drv.writeDesc(0, 0x40000, 8, VIRTQ_DESC_F_NEXT, 1);
    a.drv.writeDesc(1, 0x40000, 8, VIRTQ_DESC_F_NEXT, 0);
    a.drv.publish(0);
    expectError(a.q.pop(a.mem, a.chain), 'chain-too-long');
    const b = setup(8);
    b.drv.writeDesc(3, 0x40000, 8, VIRTQ_DESC_F_NEXT, 3); // points at itself
    b.drv.publish(3);
    expectError(b.q.pop(b.mem, b.chain), 'chain-too-long');
    const c = setup(8);
    c.drv.writeDesc(0, 0x40000, 8, VIRTQ_DESC_F_NEXT, 8);
    c.drv.publish(0);
    expectError(c.q.pop(c.mem, c.chain), 'bad-next-index');
  });

  it('refuses buffers outside RAM, in the MMIO hole, crossing into it, or at 64-bit addresses', () => {
    for (const [addr, len] of [[2 * MiB, 1], [2 * MiB - 4, 8], [HOLE, 4], [HOLE - 4096, 8192], [0xfee0_0000, 4], [2 ** 63, 1], [0x1_0000_fff0, 0x20], [0xffff_ffff_ffff_f000, 0x2000]] as const) {
      const { mem, drv, q, chain } = setup();
      drv.add([{ addr, len, write: true }]);
      expectError(q.pop(mem, chain), 'buffer-outside-ram');
    }
  });

  it('refuses a readable buffer after a writable one', () => {
    const { mem, drv, q, chain } = setup();
    drv.add([{ addr: 0x40000, len: 8, write: true }, { addr: 0x40000, len: 8 }]);
    expectError(q.pop(mem, chain), 'readable-after-writable');
  });

  it('stops before the total length overflows 32 bits', () => {
    const n = 8192;
    const mem = new GuestMemory([{ base: 0, size: 2 * MiB }]);
    const drv = new DriverQueue(mem, n, 0x100000);
    const q = new SplitQueue(n);
    Object.assign(q, { descAddr: drv.descAddr, availAddr: drv.availAddr, usedAddr: drv.usedAddr });
    expect(q.activate(mem, { indirect: false, eventIdx: false })).toBeUndefined();
    for (let i = 0; i < 4097; i++) drv.writeDesc(i, 0, MiB, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, i + 1);
    drv.publish(0);
    expectError(q.pop(mem, new DescriptorChain()), 'length-overflow');
  });
});

describe('SplitQueue indirect descriptors', () => {
  const TABLE = 0x50000;

  it('follows an indirect table when INDIRECT_DESC is negotiated', () => {
    const { mem, drv, q, chain } = setup(16, { indirect: true });
    const head = drv.addIndirect(TABLE, [{ addr: 0x40000, len: 16 }, { addr: 0x41000, len: 4096, write: true }, { addr: 0x42000, len: 1, write: true }]);
    expect(q.pop(mem, chain)).toBe(true);
    expect(chain.head).toBe(head);
    expect([chain.count, chain.readable, chain.writableBytes]).toEqual([3, 1, 4097]);
  });

  it('refuses indirect without the feature, nested tables, INDIRECT|NEXT and bad table lengths', () => {
    const a = setup(16);
    a.drv.addIndirect(TABLE, [{ addr: 0x40000, len: 16 }]);
    expectError(a.q.pop(a.mem, a.chain), 'indirect-not-negotiated');

    const b = setup(16, { indirect: true });
    b.drv.writeDesc(0, TABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0, TABLE);
    b.drv.writeDesc(0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    b.drv.publish(0);
    expectError(b.q.pop(b.mem, b.chain), 'nested-indirect');

    const c = setup(16, { indirect: true });
    c.drv.writeDesc(0, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    c.drv.publish(0);
    expectError(c.q.pop(c.mem, c.chain), 'indirect-with-next');

    for (const len of [0, 15, 24, 16 * 32769]) {
      const d = setup(16, { indirect: true });
      d.drv.writeDesc(0, TABLE, len, VIRTQ_DESC_F_INDIRECT, 0);
      d.drv.publish(0);
      expectError(d.q.pop(d.mem, d.chain), 'bad-indirect-length');
    }
  });

  it('refuses tables outside RAM and loops inside a table', () => {
    const a = setup(16, { indirect: true });
    a.drv.writeDesc(0, HOLE, 64, VIRTQ_DESC_F_INDIRECT, 0);
    a.drv.publish(0);
    expectError(a.q.pop(a.mem, a.chain), 'buffer-outside-ram');

    const b = setup(16, { indirect: true });
    b.drv.writeDesc(0, 0x40000, 8, VIRTQ_DESC_F_NEXT, 1, TABLE);
    b.drv.writeDesc(1, 0x40000, 8, VIRTQ_DESC_F_NEXT, 0, TABLE);
    b.drv.writeDesc(0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
    b.drv.publish(0);
    expectError(b.q.pop(b.mem, b.chain), 'chain-too-long');

    const c = setup(16, { indirect: true });
    c.drv.writeDesc(0, 0x40000, 8, VIRTQ_DESC_F_NEXT, 2, TABLE); // beyond a 2-entry table
    c.drv.writeDesc(0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
    c.drv.publish(0);
    expectError(c.q.pop(c.mem, c.chain), 'bad-next-index');
  });
});

describe('SplitQueue interrupt suppression', () => {
  it('without EVENT_IDX: interrupts unless the driver sets NO_INTERRUPT', () => {
    const { mem, drv, q, chain } = setup();
    expect(q.needsInterrupt(mem)).toBe(false); // nothing used yet
    const serve = () => {
      drv.add([{ addr: 0x40000, len: 8, write: true }]);
      expect(q.pop(mem, chain)).toBe(true);
      q.pushUsed(mem, chain.head, 1);
    };
    serve();
    expect(q.needsInterrupt(mem)).toBe(true);
    expect(q.needsInterrupt(mem)).toBe(false); // nothing new
    serve();
    drv.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    expect(q.needsInterrupt(mem)).toBe(false);
  });

  it('with EVENT_IDX: publishes avail_event and interrupts only when used passes used_event', () => {
    const { mem, drv, q, chain } = setup(16, { eventIdx: true });
    const serve = () => {
      expect(q.pop(mem, chain)).toBe(true);
      q.pushUsed(mem, chain.head, 1);
    };
    drv.add([{ addr: 0x40000, len: 8, write: true }]);
    drv.add([{ addr: 0x40000, len: 8, write: true }]);
    serve();
    expect(drv.availEvent()).toBe(1);
    expect(q.needsInterrupt(mem)).toBe(true); // used_event 0 passed
    drv.setUsedEvent(5); // driver: interrupt me when used index goes past 5
    serve();
    expect(drv.availEvent()).toBe(2);
    expect(q.needsInterrupt(mem)).toBe(false); // used idx 2
    for (let k = 0; k < 4; k++) drv.add([{ addr: 0x40000, len: 8, write: true }]);
    for (let k = 0; k < 3; k++) serve(); // used idx 5
    expect(q.needsInterrupt(mem)).toBe(false);
    serve(); // used idx 6: passed 5
    expect(q.needsInterrupt(mem)).toBe(true);
    expect(q.needsInterrupt(mem)).toBe(false); // nothing new since
  });
});
