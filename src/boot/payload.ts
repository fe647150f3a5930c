/**
 * The compression formats of a bzImage's payload (the compressed vmlinux that the kernel's own
 * decompressor unpacks), told apart by their magic numbers as Linux's decompressors are. Linux
 * x86 builds with gzip, bzip2, lzma, xz, lzo, lz4, zstd, or no compression (an ELF file): a
 * payload that starts with none of these is damaged, or the file is not a Linux kernel.
 */
import { isElf } from './elf.js';

export type PayloadFormat = 'lz4' | 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'lzma' | 'lzo' | 'elf' | 'unknown';

const MAGICS: readonly [PayloadFormat, readonly number[]][] = [
  ['lz4', [0x02, 0x21, 0x4c, 0x18]], // LZ4 legacy frame
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['bzip2', [0x42, 0x5a, 0x68]], // "BZh"
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]], // lzop
  ['lzma', [0x5d, 0x00, 0x00]], // lc=3 lp=0 pb=2, then the dictionary size
];

export function payloadFormat(payload: Uint8Array): PayloadFormat {
  if (isElf(payload)) return 'elf';
  for (const [name, magic] of MAGICS) if (magic.every((b, i) => payload[i] === b)) return name;
  return 'unknown';
}

/** The first bytes of a payload as "1f 8b 08 00", for messages. */
export function leadingBytes(payload: Uint8Array, n = 4): string {
  return [...payload.subarray(0, n)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}
