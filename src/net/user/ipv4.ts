/**
 * IPv4 (RFC 791): parse and validate a guest's packet, build ours. A packet from the guest is
 * accepted only when the version is 4, the header length is 20..60 bytes and fits, the total
 * length covers the header and fits the frame (Ethernet padding after it is ignored), and the
 * header checksum is right. Fragments are not reassembled: any packet with More Fragments or a
 * fragment offset is dropped (the guest's TCP sets DF and uses MSS; its UDP over the 1500-byte
 * MTU would need reassembly, which a NAT of small datagrams does not).
 */
import { checksum } from './checksum.js';
import { ETH_HEADER, ETHERTYPE_IPV4, newFrame } from './ethernet.js';

export const IP_HEADER = 20;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
const DEFAULT_TTL = 64;
const FLAG_DF = 0x4000;

/** A parsed packet: offsets into the frame it came in (borrowed). */
export interface Ipv4Packet {
  src: number;
  dst: number;
  protocol: number;
  /** Offset of the payload (the transport header) in the frame. */
  payloadOffset: number;
  payloadLength: number;
}

/** Why a packet was dropped (a counter name). */
export type Ipv4Drop = 'short' | 'version' | 'header-length' | 'total-length' | 'checksum' | 'fragment';

/** Parse the IPv4 packet after the Ethernet header: a packet, or why it is dropped. */
export function parseIpv4(frame: Uint8Array): Ipv4Packet | Ipv4Drop {
  const o = ETH_HEADER;
  if (frame.length < o + IP_HEADER) return 'short';
  const vihl = frame[o]!;
  if (vihl >>> 4 !== 4) return 'version';
  const ihl = (vihl & 0xf) * 4;
  if (ihl < IP_HEADER || o + ihl > frame.length) return 'header-length';
  const total = (frame[o + 2]! << 8) | frame[o + 3]!;
  if (total < ihl || o + total > frame.length) return 'total-length';
  if (checksum(frame, o, ihl) !== 0) return 'checksum';
  const frag = (frame[o + 6]! << 8) | frame[o + 7]!;
  if ((frag & 0x3fff) !== 0) return 'fragment'; // MF or an offset
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return {
    src: v.getUint32(o + 12),
    dst: v.getUint32(o + 16),
    protocol: frame[o + 9]!,
    payloadOffset: o + ihl,
    payloadLength: total - ihl,
  };
}

let nextId = 1;

/**
 * A new Ethernet + IPv4 frame with `payloadLength` bytes of payload at offset ETH_HEADER +
 * IP_HEADER; the IP header is complete (with its checksum), the payload is the caller's to fill.
 */
export function newIpv4Frame(dstMac: Uint8Array, srcMac: Uint8Array, src: number, dst: number, protocol: number, payloadLength: number): Uint8Array {
  const f = newFrame(dstMac, srcMac, ETHERTYPE_IPV4, IP_HEADER + payloadLength);
  const v = new DataView(f.buffer);
  const o = ETH_HEADER;
  f[o] = 0x45;
  v.setUint16(o + 2, IP_HEADER + payloadLength);
  v.setUint16(o + 4, nextId);
  nextId = (nextId + 1) & 0xffff;
  v.setUint16(o + 6, FLAG_DF);
  f[o + 8] = DEFAULT_TTL;
  f[o + 9] = protocol;
  v.setUint32(o + 12, src);
  v.setUint32(o + 16, dst);
  v.setUint16(o + 10, checksum(f, o, IP_HEADER));
  return f;
}

/** Offset of the payload in a frame from newIpv4Frame. */
export const IP_PAYLOAD = ETH_HEADER + IP_HEADER;
