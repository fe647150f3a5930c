import { describe, expect, it } from 'vitest';
import { checksum, finish, pseudoHeaderSum, sumBytes, transportChecksum } from './checksum.js';
import { ip } from './layout.js';

describe('Internet checksum', () => {
  it('matches RFC 1071\'s worked example (sum 0xddf2 → checksum 0x220d)', () => {
    const b = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
    expect(finish(sumBytes(b, 0, b.length)) ^ 0xffff).toBe(0xddf2);
    expect(checksum(b, 0, b.length)).toBe(0x220d);
  });

  it('pads an odd last byte with zero', () => {
    expect(checksum(Uint8Array.of(0x12, 0x34, 0x56), 0, 3)).toBe(~(0x1234 + 0x5600) & 0xffff);
  });

  it('is 0 over data that includes its own checksum, for every length (8-byte fast path and tail)', () => {
    for (let len = 2; len < 40; len += 2) {
      const b = new Uint8Array(len).map((_, i) => (i * 37 + 11) & 0xff);
      b[0] = 0;
      b[1] = 0;
      const c = checksum(b, 0, len);
      b[0] = c >>> 8;
      b[1] = c & 0xff;
      expect(checksum(b, 0, len)).toBe(0);
    }
  });

  it('folds carries of large sums (a 64 KiB run of 0xff)', () => {
    const b = new Uint8Array(65536).fill(0xff);
    expect(checksum(b, 0, b.length)).toBe(0);
  });

  it('sums the IPv4 pseudo-header (a known UDP datagram)', () => {
    // 10.0.2.15:68 → 10.0.2.2:67, payload "hi": checked by hand against the RFC 768 rules
    const u = Uint8Array.of(0, 68, 0, 67, 0, 10, 0, 0, 0x68, 0x69);
    const c = transportChecksum(u, 0, u.length, ip(10, 0, 2, 15), ip(10, 0, 2, 2), 17);
    u[6] = c >>> 8;
    u[7] = c & 0xff;
    expect(finish(sumBytes(u, 0, u.length, pseudoHeaderSum(ip(10, 0, 2, 15), ip(10, 0, 2, 2), 17, u.length)))).toBe(0);
    expect(c).toBe(~(0x0a00 + 0x020f + 0x0a00 + 0x0202 + 17 + 10 + 68 + 67 + 10 + 0x6869) & 0xffff);
  });
});
