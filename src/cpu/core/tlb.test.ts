import { describe, expect, it } from 'vitest';
import { NO_TAG, P_GLOBAL, P_SR, P_SW, TLB_MASK, TLB_SIZE } from './consts.js';
import { Tlb } from './tlb.js';

const RAM = 64 << 20;
const held = (t: Tlb, vpn: number): boolean => t.tag[vpn & TLB_MASK] === vpn;

describe('Tlb.flush', () => {
  it('a CR3-style flush drops the non-global entries filled since the last flush and keeps the global ones', () => {
    const t = new Tlb(undefined, 0, RAM);
    t.fill(0x10, 0x1000, P_SR | P_SW);
    t.fill(0x11, 0x2000, P_SR | P_GLOBAL);
    t.fill(0x12, 0x3000, P_SR);
    t.flush(true);
    expect(held(t, 0x10)).toBe(false);
    expect(held(t, 0x11)).toBe(true);
    expect(held(t, 0x12)).toBe(false);
    expect(t.perm[0x10]).toBe(0);
    // the next flush sees only what was filled after this one
    t.fill(0x13, 0x4000, P_SR);
    t.flush(true);
    expect(held(t, 0x13)).toBe(false);
    expect(held(t, 0x11)).toBe(true);
  });

  it('keeps a global page that took over a slot listed for a non-global one', () => {
    const t = new Tlb(undefined, 0, RAM);
    t.fill(0x20, 0x1000, P_SR);
    t.fill(0x20 + TLB_SIZE, 0x2000, P_SR | P_GLOBAL); // same slot
    t.flush(true);
    expect(held(t, 0x20 + TLB_SIZE)).toBe(true);
  });

  it('scans the whole TLB when more non-global pages were filled than it lists', () => {
    const t = new Tlb(undefined, 0, RAM);
    for (let v = 0; v < TLB_SIZE; v++) t.fill(v, v * 4096, v % 3 === 0 ? P_SR | P_GLOBAL : P_SR);
    t.flush(true);
    for (let v = 0; v < TLB_SIZE; v++) expect(held(t, v)).toBe(v % 3 === 0);
    // and the list starts again empty: a new non-global fill is dropped by the next flush
    t.fill(1, 4096, P_SR);
    t.flush(true);
    expect(held(t, 1)).toBe(false);
  });

  it('a full flush drops the global entries too', () => {
    const t = new Tlb(undefined, 0, RAM);
    t.fill(0x30, 0x1000, P_SR | P_GLOBAL);
    t.fill(0x31, 0x2000, P_SR);
    t.flush(false);
    expect(t.tag[0x30]).toBe(NO_TAG);
    expect(t.tag[0x31]).toBe(NO_TAG);
  });
});
