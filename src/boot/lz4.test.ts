import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BootError } from './errors.js';
import { lz4DecodeBlock, lz4DecodeLegacy, LZ4_LEGACY_MAGIC } from './lz4.js';

const LZ4_BIN = ['/usr/bin/lz4', '/bin/lz4'].find((p) => existsSync(p));
const enc = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];

function block(bytes: number[], cap = 1024): string {
  const src = Uint8Array.from(bytes);
  const dst = new Uint8Array(cap);
  const n = lz4DecodeBlock(src, 0, src.length, dst, 0);
  return new TextDecoder().decode(dst.subarray(0, n));
}

/** A legacy frame around the given raw blocks. */
function frame(blocks: number[][], trailer?: number): Uint8Array {
  const out = [...u32(LZ4_LEGACY_MAGIC)];
  for (const b of blocks) out.push(...u32(b.length), ...b);
  if (trailer !== undefined) out.push(...u32(trailer));
  return Uint8Array.from(out);
}

/** Deterministic, compressible test data. */
function sample(size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x >>> 24) % 7 === 0 ? x & 0xff : 0x41 + ((i >> 6) % 26);
  }
  return out;
}

describe('lz4DecodeBlock', () => {
  it('decodes literals, matches, overlapping matches and long lengths', () => {
    expect(block([0x50, ...enc('hello')])).toBe('hello');
    // 1 literal 'a', match offset 1 length 9 (overlapping run), then a final literal 'b'.
    expect(block([0x15, ...enc('a'), 1, 0, 0x10, ...enc('b')])).toBe('aaaaaaaaaab');
    // 'abcd' then copy offset 4 length 8, then 'x'.
    expect(block([0x44, ...enc('abcd'), 4, 0, 0x10, ...enc('x')])).toBe('abcdabcdabcdx');
    // Literal length 15 + 255 + 10 = 280.
    const lits = new Array(280).fill(0x7a);
    expect(block([0xf0, 255, 10, ...lits])).toBe('z'.repeat(280));
    // Match length 4 + 15 + 40 = 59 (copyWithin path for a non-overlapping long match).
    const src64 = new Array(64).fill(0).map((_, i) => 0x30 + (i % 40));
    const out = block([0xff, 49, ...src64, 64, 0, 40, 0x10, ...enc('!')]);
    expect(out.length).toBe(64 + 59 + 1);
    expect(out.slice(64, 123)).toBe(out.slice(0, 59));
  });

  it('rejects hostile blocks instead of reading or writing out of bounds', () => {
    expect(() => block([0x15, ...enc('a'), 0, 0, 0x10, ...enc('b')])).toThrow(/offset 0/);
    expect(() => block([0x15, ...enc('a'), 2, 0, 0x10, ...enc('b')])).toThrow(/before the start/);
    expect(() => block([0x50, ...enc('hel')])).toThrow(/past the end/);
    expect(() => block([0xf0, 255])).toThrow(/truncated literal length/);
    expect(() => block([0x15, ...enc('a'), 1])).toThrow(/truncated match offset/);
    expect(() => block([0x15, ...enc('a'), 1, 0])).toThrow(/ends inside a sequence/);
    expect(() => block([0x50, ...enc('hello')], 4)).toThrow(/size limit/);
    expect(() => block([0x1f, ...enc('a'), 1, 0, 255, 255, 255, 0, 0x10, ...enc('b')], 100)).toThrow(/size limit/);
    expect(() => block([])).toThrow(BootError);
  });
});

describe('lz4DecodeLegacy', () => {
  it('decodes handmade frames, concatenated frames and the appended size', () => {
    const a = [0x50, ...enc('hello')];
    const b = [0x15, ...enc('a'), 1, 0, 0x10, ...enc('b')];
    const td = (u: Uint8Array): string => new TextDecoder().decode(u);
    expect(td(lz4DecodeLegacy(frame([a, b]), { maxOutput: 100 }))).toBe('helloaaaaaaaaaab');
    expect(td(lz4DecodeLegacy(frame([a, b], 16), { maxOutput: 100, sizeHint: 16 }))).toBe('helloaaaaaaaaaab');
    const two = Uint8Array.from([...frame([a]), ...frame([b]), ...u32(16)]);
    expect(td(lz4DecodeLegacy(two, { maxOutput: 100 }))).toBe('helloaaaaaaaaaab');
  });

  it('enforces the output cap and rejects truncation and bad magic', () => {
    const a = [0x50, ...enc('hello')];
    expect(() => lz4DecodeLegacy(frame([a, a]), { maxOutput: 8 })).toThrow(/limit/);
    const f = frame([a, a]);
    expect(() => lz4DecodeLegacy(f.subarray(0, f.length - 2), { maxOutput: 100 })).toThrow(/truncated|stray/);
    expect(() => lz4DecodeLegacy(Uint8Array.from([1, 2, 3, 4, 5]), { maxOutput: 100 })).toThrow(/magic/);
    expect(() => lz4DecodeLegacy(Uint8Array.from([...u32(LZ4_LEGACY_MAGIC), ...u32(0xffff_ff00), 0, 0, 0, 0]), { maxOutput: 100 })).toThrow(
      /invalid block size/,
    );
  });

  it.skipIf(!LZ4_BIN)('matches the lz4 tool (lz4 -l) on multi-block data', () => {
    const data = sample(20 * 1024 * 1024 + 777); // three 8 MiB legacy blocks
    const compressed = new Uint8Array(execFileSync(LZ4_BIN!, ['-l', '-c'], { input: data, maxBuffer: 64 << 20 }));
    expect(new DataView(compressed.buffer, compressed.byteOffset).getUint32(0, true)).toBe(LZ4_LEGACY_MAGIC);
    const withSize = new Uint8Array(compressed.length + 4);
    withSize.set(compressed);
    new DataView(withSize.buffer).setUint32(compressed.length, data.length, true);
    const out = lz4DecodeLegacy(withSize, { maxOutput: 64 << 20, sizeHint: data.length });
    expect(out.length).toBe(data.length);
    expect(Buffer.from(out).equals(Buffer.from(data))).toBe(true);
    expect(() => lz4DecodeLegacy(withSize, { maxOutput: 10 << 20 })).toThrow(/limit/);
  });
});
