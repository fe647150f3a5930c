import { describe, expect, it } from 'vitest';
import { CrossThreadCode } from './cross-thread.js';
import { INVAL_SLOTS } from '../wasm/arena.js';

/** Two vCPUs' state areas in one shared buffer: vCPU 0 posts, vCPU 1 drains. */
function pair(): { poster: CrossThreadCode; owner: CrossThreadCode; drain: () => { ranges: [number, number][]; all: boolean } } {
  const buf = new SharedArrayBuffer(2 * 4096);
  const bases = [0, 4096];
  const poster = new CrossThreadCode(buf, bases, 0);
  const owner = new CrossThreadCode(buf, bases, 1);
  const drain = (): { ranges: [number, number][]; all: boolean } => {
    const ranges: [number, number][] = [];
    let all = false;
    owner.drain((off, len) => ranges.push([off, len]), () => (all = true));
    return { ranges, all };
  };
  return { poster, owner, drain };
}

describe('CrossThreadCode', () => {
  it('posts only to the owners named, never to itself', () => {
    const { poster, owner, drain } = pair();
    poster.post(0b01, 0x1000, 8);
    expect(owner.pending()).toBe(false);
    poster.post(0b11, 0x1000, 8);
    expect(owner.pending()).toBe(true);
    expect(drain()).toEqual({ ranges: [[0x1000, 8]], all: false });
    expect(owner.pending()).toBe(false);
  });

  it('joins stores that touch or overlap on one page: a page cleared store by store is one entry', () => {
    const { poster, drain } = pair();
    for (let off = 0; off < 4096; off += 8) poster.post(0b10, 0x5000 + off, 8);
    expect(drain()).toEqual({ ranges: [[0x5000, 4096]], all: false });
  });

  it('keeps stores apart on a page while there is room, exact', () => {
    const { poster, drain } = pair();
    poster.post(0b10, 0x5000, 4);
    poster.post(0b10, 0x5100, 4);
    poster.post(0b10, 0x5004, 4);
    expect(drain()).toEqual({ ranges: [[0x5000, 8], [0x5100, 4]], all: false });
  });

  it('does not join ranges of different pages even when they touch', () => {
    const { poster, drain } = pair();
    poster.post(0b10, 0x5ff8, 8);
    poster.post(0b10, 0x6000, 8);
    expect(drain().ranges).toEqual([[0x5ff8, 8], [0x6000, 8]]);
  });

  it('with a full queue widens an entry of the same page, and overflows only for a new page', () => {
    const { poster, drain } = pair();
    for (let i = 0; i < INVAL_SLOTS; i++) poster.post(0b10, 0x10000 + i * 0x1000, 4);
    poster.post(0b10, 0x10800, 4); // page 0x10 again, not touching: widened
    const first = drain();
    expect(first.all).toBe(false);
    expect(first.ranges[0]).toEqual([0x10000, 0x804]);
    expect(first.ranges).toHaveLength(INVAL_SLOTS);
    for (let i = 0; i < INVAL_SLOTS; i++) poster.post(0b10, 0x10000 + i * 0x1000, 4);
    poster.post(0b10, 0x90000, 4);
    expect(drain()).toEqual({ ranges: [], all: true });
  });
});
