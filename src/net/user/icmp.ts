/**
 * ICMP (RFC 792): the gateway and the DNS relay answer echo requests themselves. Echo to other
 * addresses is not forwarded (Node has no ICMP sockets; unprivileged ping sockets would need
 * native code) and is counted as dropped.
 */
import { checksum } from './checksum.js';
import { IP_PAYLOAD, newIpv4Frame, PROTO_ICMP, type Ipv4Packet } from './ipv4.js';
import { GATEWAY_MAC } from './layout.js';

const ECHO_REPLY = 0;
const ECHO_REQUEST = 8;
const ICMP_HEADER = 8;

/** The echo reply to an echo request in `frame`, or why none is sent. */
export function echoReply(frame: Uint8Array, p: Ipv4Packet, guestMac: Uint8Array): Uint8Array | 'short' | 'checksum' | 'not-echo' {
  const o = p.payloadOffset;
  const len = p.payloadLength;
  if (len < ICMP_HEADER) return 'short';
  if (checksum(frame, o, len) !== 0) return 'checksum';
  if (frame[o] !== ECHO_REQUEST || frame[o + 1] !== 0) return 'not-echo';
  const f = newIpv4Frame(guestMac, GATEWAY_MAC, p.dst, p.src, PROTO_ICMP, len);
  f.set(frame.subarray(o, o + len), IP_PAYLOAD);
  f[IP_PAYLOAD] = ECHO_REPLY;
  f[IP_PAYLOAD + 2] = 0;
  f[IP_PAYLOAD + 3] = 0;
  const sum = checksum(f, IP_PAYLOAD, len);
  f[IP_PAYLOAD + 2] = sum >>> 8;
  f[IP_PAYLOAD + 3] = sum & 0xff;
  return f;
}
