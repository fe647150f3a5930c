/**
 * The guest's network as QEMU's user networking lays it out, so users find what they know:
 * 10.0.2.0/24, the gateway 10.0.2.2 (which is also the host's loopback), the DNS relay 10.0.2.3
 * and the guest 10.0.2.15 (by DHCP). Addresses are 32-bit unsigned numbers in this stack.
 */

/** a.b.c.d as a 32-bit unsigned number. */
export function ip(a: number, b: number, c: number, d: number): number {
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** "10.0.2.15" from 0x0a00020f. */
export function ipString(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/** 0x0a00020f from "10.0.2.15"; undefined for anything that is not a dotted IPv4 address. */
export function parseIp(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ip(parts[0]!, parts[1]!, parts[2]!, parts[3]!);
}

export const NETWORK = ip(10, 0, 2, 0);
export const NETMASK = ip(255, 255, 255, 0);
export const PREFIX_LENGTH = 24;
export const BROADCAST = ip(10, 0, 2, 255);
/** The gateway: answers ARP, ICMP echo and DHCP; TCP/UDP to it reach the host's 127.0.0.1. */
export const GATEWAY = ip(10, 0, 2, 2);
/** The DNS relay (UDP port 53). */
export const DNS = ip(10, 0, 2, 3);
/** The address DHCP gives the guest. */
export const GUEST = ip(10, 0, 2, 15);
export const LOOPBACK = ip(127, 0, 0, 1);
export const LIMITED_BROADCAST = 0xffffffff;

/** The MAC the gateway and DNS answer with (QEMU's slirp uses 52:55:0a:00:02:02 too). */
export const GATEWAY_MAC = Uint8Array.of(0x52, 0x55, 0x0a, 0x00, 0x02, 0x02);
export const BROADCAST_MAC = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

/** The guest's MTU (virtio-net advertises 1500): the largest IP packet either way. */
export const MTU = 1500;

export function inNetwork(addr: number): boolean {
  return ((addr & NETMASK) >>> 0) === NETWORK;
}

/**
 * Where a guest's connection to `dst` goes on the host: the gateway is the host's loopback;
 * other addresses inside 10.0.2.0/24, loopback, multicast, broadcast and 0.0.0.0/8 go nowhere
 * (undefined). Everything else is itself (NAT through the host's own sockets).
 */
export function hostAddressFor(dst: number): string | undefined {
  if (dst === GATEWAY) return '127.0.0.1';
  if (inNetwork(dst)) return undefined;
  const first = dst >>> 24;
  if (first === 0 || first === 127 || first >= 224) return undefined;
  return ipString(dst);
}

/** The guest-side address of a host peer: the host's loopback appears as the gateway. */
export function guestAddressFor(hostAddr: string): number | undefined {
  const v4 = parseIp(hostAddr.startsWith('::ffff:') ? hostAddr.slice(7) : hostAddr);
  if (v4 === undefined) return undefined;
  return v4 >>> 24 === 127 ? GATEWAY : v4;
}
