/**
 * The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
 * big-endian words, an odd last byte padded with zero. IPv4 headers, ICMP, UDP and TCP use it;
 * UDP and TCP also sum a pseudo-header (source, destination, zero, protocol, length: RFC 768,
 * RFC 9293 3.1).
 */

/** Add `bytes[off, off+len)` to a running 32-bit sum (not folded). */
export function sumBytes(bytes: Uint8Array, off: number, len: number, sum = 0): number {
  const end = off + len;
  let i = off;
  // 8 bytes a step: the sum stays far below 2^53 for any frame we handle
  for (; i + 7 < end; i += 8) {
    sum += ((bytes[i]! << 8) | bytes[i + 1]!) + ((bytes[i + 2]! << 8) | bytes[i + 3]!) + ((bytes[i + 4]! << 8) | bytes[i + 5]!) + ((bytes[i + 6]! << 8) | bytes[i + 7]!);
  }
  for (; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (i < end) sum += bytes[i]! << 8;
  return sum;
}

/** Fold a running sum to 16 bits and complement it: the value to store in a checksum field. */
export function finish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/** The checksum of a byte range (0 when a range that includes its checksum field is intact). */
export function checksum(bytes: Uint8Array, off: number, len: number): number {
  return finish(sumBytes(bytes, off, len));
}

/** The running sum of the IPv4 pseudo-header for UDP or TCP. */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** The UDP/TCP checksum of `bytes[off, off+len)` with its pseudo-header. */
export function transportChecksum(bytes: Uint8Array, off: number, len: number, src: number, dst: number, protocol: number): number {
  return finish(sumBytes(bytes, off, len, pseudoHeaderSum(src, dst, protocol, len)));
}
