import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { EM_X86_64, parseElf, pvhEntryOf } from './elf.js';
import { bzImagePayload, extractVmlinux, payloadFormat } from './extract.js';
import { makeBzImage, makeElf } from './testing/images.js';
import { LZ4_LEGACY_MAGIC } from './lz4.js';

function realKernel(): string | undefined {
  const env = process.env.TYPEVISOR_KERNEL;
  if (env) return existsSync(env) ? env : undefined;
  const dir = '/tmp/kernel/boot';
  const f = existsSync(dir) ? readdirSync(dir).find((n) => n.startsWith('vmlinuz-')) : undefined;
  return f ? join(dir, f) : undefined;
}
const KERNEL = realKernel();
const LZ4_BIN = ['/usr/bin/lz4', '/bin/lz4'].find((p) => existsSync(p));

const u32le = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};
const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));

const tinyElf = (): Uint8Array => makeElf({ entry: 0x1000000, segments: [{ paddr: 0x1000000, data: new Uint8Array(64).fill(0x90) }] });

describe('payloadFormat', () => {
  it('recognizes the compressors Linux supports', () => {
    expect(payloadFormat(Uint8Array.from([0x02, 0x21, 0x4c, 0x18]))).toBe('lz4');
    expect(payloadFormat(Uint8Array.from([0x1f, 0x8b, 8, 0]))).toBe('gzip');
    expect(payloadFormat(Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(payloadFormat(tinyElf())).toBe('elf');
    expect(payloadFormat(Uint8Array.from([1, 2, 3, 4]))).toBe('unknown');
  });
});

describe('extractVmlinux (synthetic)', () => {
  it('decodes an LZ4 payload with the appended size', () => {
    const elf = tinyElf();
    // Hand-encode as one all-literal LZ4 block.
    const lits = elf.length - 15;
    const lenBytes: number[] = [];
    let rest = lits;
    while (rest >= 255) {
      lenBytes.push(255);
      rest -= 255;
    }
    lenBytes.push(rest);
    const blk = Uint8Array.from([0xf0, ...lenBytes, ...elf]);
    const payload = cat(u32le(LZ4_LEGACY_MAGIC), u32le(blk.length), blk, u32le(elf.length));
    const img = makeBzImage({ payload });
    expect(bzImagePayload(img).format).toBe('lz4');
    expect(extractVmlinux(img)).toEqual(elf);
  });

  it('uses a caller-provided decompressor (gzip through node:zlib)', () => {
    const elf = tinyElf();
    const img = makeBzImage({ payload: gzipSync(elf) });
    expect(() => extractVmlinux(img)).toThrow(/gzip-compressed.*only LZ4/);
    const out = extractVmlinux(img, { decompressors: { gzip: (p, max) => new Uint8Array(gunzipSync(p, { maxOutputLength: max })) } });
    expect(parseElf(out).entry).toBe(0x1000000n);
  });

  it('refuses payloads outside the file and non-ELF output', () => {
    const img = makeBzImage({ payload: Uint8Array.from([0x1f, 0x8b]) });
    new DataView(img.buffer).setUint32(0x24c, 1 << 30, true);
    expect(() => extractVmlinux(img)).toThrow(/truncated/);
    const notElf = makeBzImage({ payload: Uint8Array.from([0x1f, 0x8b, 1, 2]) });
    expect(() => extractVmlinux(notElf, { decompressors: { gzip: () => new Uint8Array(100) } })).toThrow(/not an ELF/);
    const damaged = makeBzImage({ payload: Uint8Array.from([1, 2, 3, 4]) });
    expect(() => extractVmlinux(damaged)).toThrow(/compression format is not recognised .*: the file is damaged or is not a Linux kernel/);
    expect(() => extractVmlinux(damaged)).not.toThrow(/unknown/);
  });
});

describe.skipIf(!KERNEL)('extractVmlinux (Debian cloud kernel)', () => {
  it('extracts an ELF64 x86-64 vmlinux with a PVH entry note', () => {
    const img = new Uint8Array(readFileSync(KERNEL!));
    const { data, format } = bzImagePayload(img);
    expect(format).toBe('lz4');
    const vmlinux = extractVmlinux(img);
    const elf = parseElf(vmlinux, 'vmlinux');
    expect(elf.elfClass).toBe(64);
    expect(elf.machine).toBe(EM_X86_64);
    expect(elf.entry).toBe(0x1000000n); // phys_startup_64
    expect(pvhEntryOf(elf)).toBeGreaterThan(0x1000000);
    expect(new DataView(data.buffer, data.byteOffset + data.length - 4).getUint32(0, true)).toBe(vmlinux.length);

    if (LZ4_BIN) {
      // Cross-check against the lz4 tool (without Linux's appended size word).
      const dir = mkdtempSync(join(tmpdir(), 'tv-lz4-'));
      try {
        writeFileSync(join(dir, 'p.lz4'), data.subarray(0, data.length - 4));
        const ref = execFileSync(LZ4_BIN, ['-d', '-c', join(dir, 'p.lz4')], { maxBuffer: 1 << 30 });
        expect(Buffer.from(vmlinux).equals(ref)).toBe(true);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
