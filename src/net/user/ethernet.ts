/**
 * Ethernet II framing: destination MAC, source MAC, EtherType (IEEE 802.3, big-endian). Frames
 * from the guest are parsed in place; frames to the guest are built whole in a fresh array (the
 * NIC copies them into guest memory, and a frame the guest has no room for waits in a queue).
 */

export const ETH_HEADER = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;

export function etherType(frame: Uint8Array): number {
  return (frame[12]! << 8) | frame[13]!;
}

/** A new frame of `payloadLength` bytes after the Ethernet header, the header written. */
export function newFrame(dst: Uint8Array, src: Uint8Array, type: number, payloadLength: number): Uint8Array {
  const f = new Uint8Array(ETH_HEADER + payloadLength);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = type >>> 8;
  f[13] = type & 0xff;
  return f;
}

export function isBroadcastMac(frame: Uint8Array, off: number): boolean {
  for (let i = 0; i < 6; i++) if (frame[off + i] !== 0xff) return false;
  return true;
}

export function sameMac(frame: Uint8Array, off: number, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (frame[off + i] !== mac[i]) return false;
  return true;
}
