/** UDP (RFC 768) headers: parse a guest's datagram, build one for the guest. */
import { transportChecksum } from './checksum.js';
import { IP_PAYLOAD, newIpv4Frame, PROTO_UDP, type Ipv4Packet } from './ipv4.js';
import { GATEWAY_MAC } from './layout.js';

export const UDP_HEADER = 8;

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  /** The payload (borrowed view into the frame). */
  data: Uint8Array;
}

/**
 * The datagram in an IPv4 packet, or why not: too short, a length field that disagrees with
 * the IP length, a bad checksum (0 = none, allowed by RFC 768), or a port 0.
 */
export function parseUdp(frame: Uint8Array, p: Ipv4Packet): UdpDatagram | 'short' | 'length' | 'checksum' | 'port' {
  const o = p.payloadOffset;
  if (p.payloadLength < UDP_HEADER) return 'short';
  const len = (frame[o + 4]! << 8) | frame[o + 5]!;
  if (len < UDP_HEADER || len > p.payloadLength) return 'length';
  const sum = (frame[o + 6]! << 8) | frame[o + 7]!;
  if (sum !== 0 && transportChecksum(frame, o, len, p.src, p.dst, PROTO_UDP) !== 0) return 'checksum';
  const srcPort = (frame[o]! << 8) | frame[o + 1]!;
  const dstPort = (frame[o + 2]! << 8) | frame[o + 3]!;
  if (srcPort === 0 || dstPort === 0) return 'port';
  return { srcPort, dstPort, data: frame.subarray(o + UDP_HEADER, o + len) };
}

/** A whole frame carrying `data` from src:srcPort to dst:dstPort, checksummed. */
export function udpFrame(dstMac: Uint8Array, src: number, srcPort: number, dst: number, dstPort: number, data: Uint8Array): Uint8Array {
  const len = UDP_HEADER + data.length;
  const f = newIpv4Frame(dstMac, GATEWAY_MAC, src, dst, PROTO_UDP, len);
  const o = IP_PAYLOAD;
  f[o] = srcPort >>> 8;
  f[o + 1] = srcPort & 0xff;
  f[o + 2] = dstPort >>> 8;
  f[o + 3] = dstPort & 0xff;
  f[o + 4] = len >>> 8;
  f[o + 5] = len & 0xff;
  f.set(data, o + UDP_HEADER);
  const sum = transportChecksum(f, o, len, src, dst, PROTO_UDP) || 0xffff; // 0 means "none"
  f[o + 6] = sum >>> 8;
  f[o + 7] = sum & 0xff;
  return f;
}
