/**
 * LZ4 decompression (block format and the "legacy" frame that Linux's `lz4 -l` produces for
 * CONFIG_KERNEL_LZ4 bzImages). Pure TypeScript; every read and write is bounds-checked and the
 * output is capped, so hostile input can only produce a BootError.
 *
 * Legacy frame: u32 magic 0x184c2102, then blocks { u32 compressed size, LZ4 block } each
 * decompressing to at most 8 MiB independently of the others. A repeated magic starts a new
 * frame (concatenated streams). Linux appends the u32 uncompressed size to the payload; a
 * trailing 4-byte word that cannot be a block header is that size and ends the stream.
 */
import { BootError } from './errors.js';

export const LZ4_LEGACY_MAGIC = 0x184c_2102;
/** Every legacy block decompresses to at most 8 MiB. */
export const LZ4_LEGACY_BLOCK_SIZE = 8 * 1024 * 1024;
/** LZ4_compressBound(8 MiB): no valid block is larger. */
const LZ4_LEGACY_MAX_COMPRESSED = LZ4_LEGACY_BLOCK_SIZE + Math.floor(LZ4_LEGACY_BLOCK_SIZE / 255) + 16;
const MIN_MATCH = 4;

/**
 * Decode one LZ4 block src[srcStart, srcEnd) into dst at dstStart. Matches may only refer back
 * to output of this block. Returns the number of bytes written; throws BootError when the input
 * is malformed or the output would not fit in dst.
 */
export function lz4DecodeBlock(src: Uint8Array, srcStart: number, srcEnd: number, dst: Uint8Array, dstStart: number): number {
  if (srcStart < 0 || srcEnd > src.length || srcStart > srcEnd) throw new BootError('lz4: block bounds are outside the input');
  let ip = srcStart;
  let op = dstStart;
  const dstEnd = dst.length;
  if (ip === srcEnd) throw new BootError('lz4: empty block');
  for (;;) {
    if (ip >= srcEnd) throw new BootError('lz4: block ends inside a sequence (truncated input)');
    const token = src[ip++]!;
    // Literals.
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= srcEnd) throw new BootError('lz4: truncated literal length');
        b = src[ip++]!;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > srcEnd) throw new BootError('lz4: literal run goes past the end of the block');
    if (op + lit > dstEnd) throw new BootError('lz4: output exceeds the size limit');
    if (lit < 32) {
      for (let i = 0; i < lit; i++) dst[op + i] = src[ip + i]!;
    } else {
      dst.set(src.subarray(ip, ip + lit), op);
    }
    ip += lit;
    op += lit;
    if (ip === srcEnd) return op - dstStart; // the last sequence has literals only
    // Match.
    if (ip + 2 > srcEnd) throw new BootError('lz4: truncated match offset');
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op - dstStart) throw new BootError(`lz4: match offset ${offset} points before the start of the block`);
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= srcEnd) throw new BootError('lz4: truncated match length');
        b = src[ip++]!;
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (op + len > dstEnd) throw new BootError('lz4: output exceeds the size limit');
    let from = op - offset;
    if (offset >= len && len >= 32) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      // Overlapping copies repeat the last `offset` bytes: copy forwards one byte at a time.
      const end = op + len;
      while (op < end) dst[op++] = dst[from++]!;
    }
  }
}

export interface Lz4Options {
  /** Hard cap on the decompressed size. */
  maxOutput: number;
  /** Expected size (e.g. the size Linux appends); used to size the buffer when within the cap. */
  sizeHint?: number;
}

/** Decompress an LZ4 legacy frame (possibly several concatenated). */
export function lz4DecodeLegacy(input: Uint8Array, opts: Lz4Options): Uint8Array {
  const v = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (input.length < 4 || v.getUint32(0, true) !== LZ4_LEGACY_MAGIC) {
    throw new BootError('lz4: no legacy frame magic (02 21 4c 18) at the start of the payload');
  }
  const hint = opts.sizeHint !== undefined && opts.sizeHint > 0 && opts.sizeHint <= opts.maxOutput ? opts.sizeHint : 0;
  let out = new Uint8Array(hint || Math.min(opts.maxOutput, LZ4_LEGACY_BLOCK_SIZE));
  // Each block is decoded here first: a block can only refer to itself, and this bounds it to 8 MiB.
  const scratch = new Uint8Array(LZ4_LEGACY_BLOCK_SIZE);
  let outLen = 0;
  let ip = 4;
  while (ip + 4 <= input.length) {
    const size = v.getUint32(ip, true);
    if (size === LZ4_LEGACY_MAGIC) {
      ip += 4;
      continue;
    }
    if (ip + 4 === input.length) break; // Linux's appended uncompressed size
    if (size === 0 || size > LZ4_LEGACY_MAX_COMPRESSED) throw new BootError(`lz4: invalid block size ${size} at offset ${ip}`);
    if (ip + 4 + size > input.length) throw new BootError(`lz4: block at offset ${ip} (${size} bytes) is truncated`);
    const n = lz4DecodeBlock(input, ip + 4, ip + 4 + size, scratch, 0);
    if (outLen + n > opts.maxOutput) throw new BootError(`lz4: decompressed size exceeds the limit of ${opts.maxOutput} bytes`);
    if (outLen + n > out.length) {
      const bigger = new Uint8Array(Math.min(Math.max(outLen + n, out.length * 2), opts.maxOutput));
      bigger.set(out.subarray(0, outLen));
      out = bigger;
    }
    out.set(scratch.subarray(0, n), outLen);
    outLen += n;
    ip += 4 + size;
  }
  if (ip < input.length && ip + 4 !== input.length) throw new BootError(`lz4: ${input.length - ip} stray bytes at the end of the payload`);
  return out.length === outLen ? out : out.slice(0, outLen);
}
