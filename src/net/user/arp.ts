/**
 * ARP for IPv4 over Ethernet (RFC 826): the gateway answers requests for the addresses it owns
 * (10.0.2.2, 10.0.2.3) and nothing else — in particular not for the guest's own address, so
 * udhcpc's conflict probe for 10.0.2.15 finds it free. Replies and other operations are ignored.
 */
import { ETH_HEADER, ETHERTYPE_ARP, newFrame } from './ethernet.js';

export const ARP_SIZE = 28;
const HTYPE_ETHERNET = 1;
const PTYPE_IPV4 = 0x0800;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpPacket {
  op: number;
  senderMac: Uint8Array;
  senderIp: number;
  targetIp: number;
}

/** Parse the ARP payload of a frame; undefined when it is not Ethernet/IPv4 ARP or too short. */
export function parseArp(frame: Uint8Array): ArpPacket | undefined {
  const o = ETH_HEADER;
  if (frame.length < o + ARP_SIZE) return undefined;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (v.getUint16(o) !== HTYPE_ETHERNET || v.getUint16(o + 2) !== PTYPE_IPV4 || frame[o + 4] !== 6 || frame[o + 5] !== 4) return undefined;
  return {
    op: v.getUint16(o + 6),
    senderMac: frame.slice(o + 8, o + 14),
    senderIp: v.getUint32(o + 14),
    targetIp: v.getUint32(o + 24),
  };
}

/** The reply to `req`: `mac` owns `req.targetIp`. */
export function arpReply(req: ArpPacket, mac: Uint8Array): Uint8Array {
  const f = newFrame(req.senderMac, mac, ETHERTYPE_ARP, ARP_SIZE);
  const v = new DataView(f.buffer);
  const o = ETH_HEADER;
  v.setUint16(o, HTYPE_ETHERNET);
  v.setUint16(o + 2, PTYPE_IPV4);
  f[o + 4] = 6;
  f[o + 5] = 4;
  v.setUint16(o + 6, ARP_REPLY);
  f.set(mac, o + 8);
  v.setUint32(o + 14, req.targetIp);
  f.set(req.senderMac, o + 18);
  v.setUint32(o + 24, req.senderIp);
  return f;
}
