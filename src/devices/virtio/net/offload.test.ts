import { describe, expect, it } from 'vitest';
import { completeChecksum, segmentTcp4 } from './offload.js';

/** RFC 1071 reference: the folded, complemented sum of 16-bit big-endian words. */
function inet(b: Uint8Array, init = 0): number {
  let s = init;
  for (let i = 0; i < b.length; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const SRC = [10, 0, 2, 15];
const DST = [10, 0, 2, 2];

/** An Ethernet/IPv4/TCP frame with `payload`, checksums left zero. */
function tcpFrame(payload: Uint8Array, flags = 0x18, seq = 0xfffff000): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20 + payload.length);
  f.set([0x52, 0x55, 0x0a, 0, 2, 2, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00], 0);
  const tot = 40 + payload.length;
  f.set([0x45, 0, tot >> 8, tot & 0xff, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, ...SRC, ...DST], 14);
  f.set([0x9c, 0x40, 0x1f, 0x90, seq >>> 24, (seq >>> 16) & 0xff, (seq >>> 8) & 0xff, seq & 0xff, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0], 34);
  f.set(payload, 54);
  return f;
}

/** The TCP checksum of a frame's segment as a receiver checks it: 0 when intact. */
function tcpVerify(f: Uint8Array): number {
  const ip = f.subarray(14);
  const tot = (ip[2]! << 8) | ip[3]!;
  const seg = f.subarray(34, 14 + tot);
  const pseudo = ((SRC[0]! << 8) | SRC[1]!) + ((SRC[2]! << 8) | SRC[3]!) + ((DST[0]! << 8) | DST[1]!) + ((DST[2]! << 8) | DST[3]!) + 6 + seg.length;
  return inet(seg, pseudo);
}

const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_v, i) => (i * 31 + 7) & 0xff);

describe('virtio-net transmit offloads', () => {
  it('completes a partial checksum (NEEDS_CSUM) as the Linux driver leaves it', () => {
    const f = tcpFrame(bytes(333));
    // the driver stores the folded pseudo-header sum (not complemented) in the field
    const seg = 20 + 333;
    let p = ((SRC[0]! << 8) | SRC[1]!) + ((SRC[2]! << 8) | SRC[3]!) + ((DST[0]! << 8) | DST[1]!) + ((DST[2]! << 8) | DST[3]!) + 6 + seg;
    while (p > 0xffff) p = (p & 0xffff) + (p >>> 16);
    f[50] = p >> 8;
    f[51] = p & 0xff;
    expect(completeChecksum(f, 34, 16)).toBe(true);
    expect(tcpVerify(f)).toBe(0);
  });

  it('refuses checksum offsets outside the frame and touches nothing', () => {
    const f = tcpFrame(bytes(10));
    const copy = f.slice();
    for (const [start, off] of [[f.length, 0], [f.length - 1, 0], [34, f.length], [0xffff, 0xffff], [f.length - 2, 1]] as const) {
      expect(completeChecksum(f, start, off)).toBe(false);
    }
    expect(f).toEqual(copy);
    expect(completeChecksum(f, f.length - 2, 0)).toBe(true); // the last two bytes: allowed
  });

  it('cuts a TSO frame into MSS segments with their own lengths, ids, sequence numbers, flags and checksums', () => {
    const payload = bytes(4000);
    const f = tcpFrame(payload, 0x19 /* FIN PSH ACK */ | 0x80 /* CWR */);
    const out: Uint8Array[] = [];
    expect(segmentTcp4(f, 1460, new Uint8Array(65550), (s) => out.push(s.slice()))).toBe(true);
    expect(out.map((s) => s.length)).toEqual([54 + 1460, 54 + 1460, 54 + 1080]);
    const got = new Uint8Array(4000);
    out.forEach((s, i) => {
      expect(inet(s.subarray(14, 34))).toBe(0); // IPv4 header checksum
      expect(tcpVerify(s)).toBe(0);
      expect((s[16]! << 8) | s[17]!).toBe(40 + (i < 2 ? 1460 : 1080));
      expect((s[18]! << 8) | s[19]!).toBe(0x1234 + i);
      const seq = ((s[38]! << 24) | (s[39]! << 16) | (s[40]! << 8) | s[41]!) >>> 0;
      expect(seq).toBe((0xfffff000 + i * 1460) >>> 0); // wraps past 2^32
      expect(s[47]).toBe(i === 0 ? 0x90 : i === 1 ? 0x10 : 0x19);
      got.set(s.subarray(54), i * 1460);
    });
    expect(got).toEqual(payload);
  });

  it('refuses frames that are not TCP/IPv4 or whose lengths do not add up, emitting nothing', () => {
    const emit = (): void => {
      throw new Error('emitted');
    };
    const scratch = new Uint8Array(65550);
    const good = tcpFrame(bytes(100));
    const bad = (edit: (f: Uint8Array) => void, len = good.length): Uint8Array => {
      const f = good.slice(0, len);
      edit(f);
      return f;
    };
    expect(segmentTcp4(good, 0, scratch, emit)).toBe(false); // mss 0
    expect(segmentTcp4(bad((f) => (f[12] = 0x86)), 50, scratch, emit)).toBe(false); // not IPv4
    expect(segmentTcp4(bad((f) => (f[23] = 17)), 50, scratch, emit)).toBe(false); // UDP
    expect(segmentTcp4(bad((f) => (f[14] = 0x44)), 50, scratch, emit)).toBe(false); // IHL 4
    expect(segmentTcp4(bad((f) => (f[14] = 0x4f), 60), 50, scratch, emit)).toBe(false); // IHL past the frame
    expect(segmentTcp4(bad((f) => (f[46] = 0x40)), 50, scratch, emit)).toBe(false); // TCP header under 20 bytes
    expect(segmentTcp4(bad((f) => ((f[46] = 0xf0), (f[16] = 0), (f[17] = 60)), 74), 50, scratch, emit)).toBe(false); // TCP header past the end
    expect(segmentTcp4(bad((f) => ((f[16] = 0xff), (f[17] = 0xff))), 50, scratch, emit)).toBe(false); // IP length > frame
    expect(segmentTcp4(bad((f) => ((f[16] = 0), (f[17] = 20))), 50, scratch, emit)).toBe(false); // IP length < headers
    expect(segmentTcp4(bad(() => {}, 40), 50, scratch, emit)).toBe(false); // truncated
    expect(segmentTcp4(good, 65535, new Uint8Array(100), emit)).toBe(false); // MSS past the scratch
  });

  it('never throws on random headers and frames (fuzz)', () => {
    let seed = 12345;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    const scratch = new Uint8Array(2000);
    for (let i = 0; i < 2000; i++) {
      const f = tcpFrame(bytes(rnd() * 4));
      for (let k = 0; k < 4; k++) f[12 + (rnd() % 42)] = rnd();
      const n = Math.max(0, f.length - (rnd() % 8));
      const frame = f.subarray(0, n);
      segmentTcp4(frame, (rnd() << 8) | rnd(), scratch, (s) => expect(s.length).toBeLessThanOrEqual(scratch.length));
      completeChecksum(frame, (rnd() << 8) | rnd(), rnd());
    }
  });
});
