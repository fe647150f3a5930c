import { describe, expect, it } from 'vitest';
import { BlockDirectory, sameAsTranslated, type SharedBlockInfo, type SharedModule } from './share.js';

const mod = (): SharedModule => ({ module: {} as WebAssembly.Module, exits: [] });
const info = (id: number, rip: number, off: number): SharedBlockInfo => ({ id, rip, off, lo: off, end: off + 4, n: 1, bytes: new Uint8Array([1, 2, 3, 4]) });

describe('the directory of blocks other threads made', () => {
  it('finds a block by RIP and RAM offset, the newest translation of the same code first', () => {
    const d = new BlockDirectory();
    const a = mod();
    const b = mod();
    d.addModule(a, [info(8, 0x1000, 0x5000), info(16, 0x2000, 0x6000)]);
    expect(d.find(0x1000, 0x5000)?.src).toBe(a);
    expect(d.find(0x1000, 0x7000)).toBeUndefined(); // another mapping of that RIP
    d.addModule(b, [info(24, 0x1000, 0x5000)]);
    expect(d.find(0x1000, 0x5000)?.info.id).toBe(24);
    expect(d.find(0x2000, 0x6000)?.idx).toBe(1);
  });

  it('follows a merge, forgets a changed block, and everything from a sender that restarted', () => {
    const d = new BlockDirectory();
    d.addModule(mod(), [info(9, 0x1000, 0x5000), info(17, 0x2000, 0x6000), info(10, 0x3000, 0x7000)]);
    const merged = mod();
    d.moveToMerged(merged, [17, 9]);
    expect(d.find(0x1000, 0x5000)).toMatchObject({ src: merged, idx: 1 });
    d.forget(d.find(0x2000, 0x6000)!);
    expect(d.find(0x2000, 0x6000)).toBeUndefined();
    d.forgetFrom(1); // ids 9 and 17: vCPU 1's
    expect(d.find(0x1000, 0x5000)).toBeUndefined();
    expect(d.find(0x3000, 0x7000)?.info.id).toBe(10);
  });

  it('holds a bounded number of posted modules (each keeps its code alive)', () => {
    const d = new BlockDirectory();
    for (let i = 0; i < 5000; i++) d.addModule(mod(), [info(i * 8 + 1, 0x1000 + i, 0x5000)]);
    expect(d.find(0x1000, 0x5000)).toBeUndefined(); // cleared on the way
    expect(d.find(0x1000 + 4999, 0x5000)).toBeDefined();
  });

  it('compares RAM with the bytes a block was made from', () => {
    const ram = new Uint8Array(16);
    ram.set([1, 2, 3, 4], 8);
    expect(sameAsTranslated(ram, 8, new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect(sameAsTranslated(ram, 7, new Uint8Array([1, 2, 3, 4]))).toBe(false);
    expect(sameAsTranslated(ram, 14, new Uint8Array([0, 0, 0, 0]))).toBe(false); // past the end
  });
});
