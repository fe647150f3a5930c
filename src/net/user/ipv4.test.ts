import { describe, expect, it } from 'vitest';
import { checksum, transportChecksum } from './checksum.js';
import { ETH_HEADER } from './ethernet.js';
import { parseIpv4 } from './ipv4.js';
import { GATEWAY, GUEST } from './layout.js';
import { FIN, parseTcp, SYN } from './tcp-segment.js';
import { guestIpFrame, guestTcp } from './testing.js';

/** Change a header byte and fix the IPv4 header checksum. */
function withHeader(f: Uint8Array, at: number, value: number): Uint8Array {
  const g = f.slice();
  g[ETH_HEADER + at] = value;
  const ihl = Math.max(20, (g[ETH_HEADER]! & 0xf) * 4);
  g[ETH_HEADER + 10] = 0;
  g[ETH_HEADER + 11] = 0;
  if (ETH_HEADER + ihl <= g.length) {
    const c = checksum(g, ETH_HEADER, ihl);
    g[ETH_HEADER + 10] = c >>> 8;
    g[ETH_HEADER + 11] = c & 0xff;
  }
  return g;
}

describe('IPv4 parsing', () => {
  const good = guestIpFrame(GUEST, GATEWAY, 17, new Uint8Array(30));

  it('accepts a valid packet and ignores Ethernet padding after it', () => {
    const padded = new Uint8Array(good.length + 18);
    padded.set(good);
    const p = parseIpv4(padded);
    expect(p).toMatchObject({ src: GUEST, dst: GATEWAY, protocol: 17, payloadOffset: 34, payloadLength: 30 });
  });

  it('drops short frames, other versions, bad header lengths, lengths past the frame, bad checksums and fragments', () => {
    expect(parseIpv4(good.subarray(0, 30))).toBe('short');
    expect(parseIpv4(withHeader(good, 0, 0x65))).toBe('version');
    expect(parseIpv4(withHeader(good, 0, 0x44))).toBe('header-length'); // 16 bytes
    expect(parseIpv4(withHeader(good, 0, 0x4f).subarray(0, 40))).toBe('header-length'); // 60 bytes, frame shorter
    expect(parseIpv4(withHeader(good, 2, 0xff))).toBe('total-length');
    expect(parseIpv4(withHeader(withHeader(good, 2, 0), 3, 10))).toBe('total-length'); // shorter than the header
    const bad = good.slice();
    bad[ETH_HEADER + 8] ^= 1; // TTL changed, checksum not
    expect(parseIpv4(bad)).toBe('checksum');
    expect(parseIpv4(withHeader(good, 6, 0x20))).toBe('fragment'); // MF
    expect(parseIpv4(withHeader(good, 7, 0x01))).toBe('fragment'); // an offset
  });
});

/** A SYN with data offset byte `off` and `options`, checksummed. */
function raw(off: number, options: number[]): Uint8Array {
  const t = new Uint8Array(20 + options.length);
  t.set([0, 1, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, off, SYN, 0xff, 0xff], 0);
  t.set(options, 20);
  const c = transportChecksum(t, 0, t.length, GUEST, GATEWAY, 6);
  t[16] = c >>> 8;
  t[17] = c & 0xff;
  return guestIpFrame(GUEST, GATEWAY, 6, t);
}

describe('TCP segment parsing', () => {
  const parse = (f: Uint8Array) => parseTcp(f, parseIpv4(f) as Exclude<ReturnType<typeof parseIpv4>, string>);

  it('reads MSS and window scale from a SYN; a shift above 14 counts as 14 (RFC 7323)', () => {
    const s = parse(guestTcp({ srcPort: 1, dst: GATEWAY, dstPort: 80, seq: 1, flags: SYN, mss: 1400, wscale: 15 }));
    expect(s).toMatchObject({ mss: 1400, wscale: 14, flags: SYN });
  });

  it('drops nonsense: SYN+FIN, port 0, a bad checksum, a header longer than the segment, an option running past the header', () => {
    expect(parse(guestTcp({ srcPort: 1, dst: GATEWAY, dstPort: 80, seq: 1, flags: SYN | FIN }))).toBe('flags');
    expect(parse(guestTcp({ srcPort: 0, dst: GATEWAY, dstPort: 80, seq: 1, flags: SYN }))).toBe('port');
    expect(parse(guestTcp({ srcPort: 1, dst: GATEWAY, dstPort: 65535, seq: 1, flags: SYN }))).not.toBeTypeOf('string'); // 65535 is a port
    const f = guestTcp({ srcPort: 1, dst: GATEWAY, dstPort: 80, seq: 1, flags: SYN, data: Uint8Array.of(1, 2, 3) });
    const sum = f.slice();
    sum[sum.length - 1] ^= 0xff;
    expect(parse(sum)).toBe('checksum');
    expect(parse(raw(0xf0, []))).toBe('header-length'); // says 60 bytes of header in a 20-byte segment
    expect(parse(raw(0x60, [2, 10, 0, 0]))).toBe('option'); // an MSS option 10 bytes long in 4
    expect(parse(raw(0x60, [3, 1, 0, 0]))).toBe('option'); // an option shorter than its own header
    expect(parse(raw(0x60, [1, 1, 1, 0]))).toMatchObject({ flags: SYN }); // NOPs, then EOL
  });
});
