/**
 * TCP segments (RFC 9293 3.1): parse and validate a guest's segment, build ours. Options read:
 * MSS (kind 2) and window scale (kind 3, RFC 7323) on SYNs; everything else is skipped by its
 * length. Ours carry MSS and window scale on SYNs only (no timestamps, no SACK: the link to the
 * guest does not reorder or lose frames, so they buy nothing).
 */
import { transportChecksum } from './checksum.js';
import { IP_PAYLOAD, newIpv4Frame, PROTO_TCP, type Ipv4Packet } from './ipv4.js';
import { GATEWAY_MAC } from './layout.js';

export const TCP_HEADER = 20;
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;

const OPT_EOL = 0;
const OPT_NOP = 1;
const OPT_MSS = 2;
const OPT_WSCALE = 3;
/** RFC 7323 2.3: a shift above 14 is treated as 14. */
export const MAX_WSCALE = 14;

export interface TcpSegment {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** MSS option (SYN only), if present. */
  mss?: number;
  /** Window scale option (SYN only), if present (clamped to 14). */
  wscale?: number;
  /** The payload (borrowed view into the frame). */
  data: Uint8Array;
}

export type TcpDrop = 'short' | 'header-length' | 'checksum' | 'port' | 'flags' | 'option';

export function parseTcp(frame: Uint8Array, p: Ipv4Packet): TcpSegment | TcpDrop {
  const o = p.payloadOffset;
  const len = p.payloadLength;
  if (len < TCP_HEADER) return 'short';
  const hl = (frame[o + 12]! >>> 4) * 4;
  if (hl < TCP_HEADER || hl > len) return 'header-length';
  if (transportChecksum(frame, o, len, p.src, p.dst, PROTO_TCP) !== 0) return 'checksum';
  const srcPort = (frame[o]! << 8) | frame[o + 1]!;
  const dstPort = (frame[o + 2]! << 8) | frame[o + 3]!;
  if (srcPort === 0 || dstPort === 0) return 'port';
  const flags = frame[o + 13]!;
  // SYN with FIN or RST is nonsense a stack must not act on
  if ((flags & SYN) && (flags & (FIN | RST))) return 'flags';
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const seg: TcpSegment = {
    srcPort,
    dstPort,
    seq: v.getUint32(o + 4),
    ack: v.getUint32(o + 8),
    flags,
    window: v.getUint16(o + 14),
    data: frame.subarray(o + hl, o + len),
  };
  if (flags & SYN) {
    let i = o + TCP_HEADER;
    const end = o + hl;
    while (i < end) {
      const kind = frame[i]!;
      if (kind === OPT_EOL) break;
      if (kind === OPT_NOP) {
        i++;
        continue;
      }
      if (i + 1 >= end) return 'option';
      const olen = frame[i + 1]!;
      if (olen < 2 || i + olen > end) return 'option';
      if (kind === OPT_MSS && olen === 4) seg.mss = v.getUint16(i + 2);
      else if (kind === OPT_WSCALE && olen === 3) seg.wscale = Math.min(frame[i + 2]!, MAX_WSCALE);
      i += olen;
    }
  }
  return seg;
}

export interface SegmentOut {
  src: number;
  srcPort: number;
  dst: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss?: number;
  wscale?: number;
}

/** The offset of the payload in a frame from newTcpFrame with `options` option bytes. */
export function tcpDataOffset(optionBytes: number): number {
  return IP_PAYLOAD + TCP_HEADER + optionBytes;
}

/**
 * A frame with the segment's header and room for `dataLength` payload bytes at
 * tcpDataOffset(...); fill the payload, then call sealTcp.
 */
export function newTcpFrame(dstMac: Uint8Array, s: SegmentOut, dataLength: number): Uint8Array {
  const optionBytes = (s.mss !== undefined ? 4 : 0) + (s.wscale !== undefined ? 4 : 0);
  const len = TCP_HEADER + optionBytes + dataLength;
  const f = newIpv4Frame(dstMac, GATEWAY_MAC, s.src, s.dst, PROTO_TCP, len);
  const o = IP_PAYLOAD;
  const v = new DataView(f.buffer);
  v.setUint16(o, s.srcPort);
  v.setUint16(o + 2, s.dstPort);
  v.setUint32(o + 4, s.seq >>> 0);
  v.setUint32(o + 8, s.flags & ACK ? s.ack >>> 0 : 0);
  f[o + 12] = ((TCP_HEADER + optionBytes) / 4) << 4;
  f[o + 13] = s.flags;
  v.setUint16(o + 14, s.window);
  let i = o + TCP_HEADER;
  if (s.mss !== undefined) {
    f[i] = OPT_MSS;
    f[i + 1] = 4;
    v.setUint16(i + 2, s.mss);
    i += 4;
  }
  if (s.wscale !== undefined) {
    f[i] = OPT_NOP;
    f[i + 1] = OPT_WSCALE;
    f[i + 2] = 3;
    f[i + 3] = s.wscale;
  }
  return f;
}

/** Write the checksum of a frame from newTcpFrame (after its payload is in place). */
export function sealTcp(f: Uint8Array, src: number, dst: number): Uint8Array {
  const o = IP_PAYLOAD;
  const sum = transportChecksum(f, o, f.length - o, src, dst, PROTO_TCP);
  f[o + 16] = sum >>> 8;
  f[o + 17] = sum & 0xff;
  return f;
}

/** `a` - `b` in sequence space, as a signed 32-bit number (RFC 9293 3.4: compare modulo 2^32). */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}
