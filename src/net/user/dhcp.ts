/**
 * The DHCP server (RFC 2131, options RFC 2132) for one guest: every client gets 10.0.2.15 with
 * the gateway 10.0.2.2 (also the server identifier), the DNS relay 10.0.2.3, a /24 mask and a
 * day's lease. DISCOVER → OFFER, REQUEST for 10.0.2.15 → ACK (any other address → NAK),
 * INFORM → ACK without an address; RELEASE and DECLINE need no answer. Replies go to the
 * client's MAC, and to its IP address when it has one (ciaddr: renewing), else broadcast.
 */
import { DNS, GATEWAY, GUEST, MTU, NETMASK } from './layout.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
const BOOTP_FIXED = 236;
const MAGIC_COOKIE = 0x63825363;
const OP_REQUEST = 1;
const OP_REPLY = 2;
/** Reply size: the fixed part, the cookie and our options, padded to BOOTP's 300-byte minimum. */
const REPLY_SIZE = 300;
export const LEASE_SECONDS = 86400;

// Options (RFC 2132)
const OPT_PAD = 0;
const OPT_SUBNET_MASK = 1;
const OPT_ROUTER = 3;
const OPT_DNS = 6;
const OPT_MTU = 26;
const OPT_BROADCAST = 28;
const OPT_REQUESTED_IP = 50;
const OPT_LEASE_TIME = 51;
const OPT_MESSAGE_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_RENEWAL = 58;
const OPT_REBINDING = 59;
const OPT_END = 255;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

export interface DhcpRequest {
  type: number;
  xid: number;
  flags: number;
  ciaddr: number;
  chaddr: Uint8Array;
  requestedIp?: number;
  serverId?: number;
}

/** Parse a client's message (the UDP payload); undefined when it is not a well-formed request. */
export function parseDhcp(data: Uint8Array): DhcpRequest | undefined {
  if (data.length < BOOTP_FIXED + 4) return undefined;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data[0] !== OP_REQUEST || data[1] !== 1 || data[2] !== 6) return undefined; // Ethernet, 6-byte MAC
  if (v.getUint32(BOOTP_FIXED) !== MAGIC_COOKIE) return undefined;
  const req: DhcpRequest = { type: 0, xid: v.getUint32(4), flags: v.getUint16(10), ciaddr: v.getUint32(12), chaddr: data.slice(28, 34) };
  let i = BOOTP_FIXED + 4;
  while (i < data.length) {
    const code = data[i]!;
    if (code === OPT_END) break;
    if (code === OPT_PAD) {
      i++;
      continue;
    }
    if (i + 1 >= data.length) return undefined;
    const len = data[i + 1]!;
    const at = i + 2;
    if (at + len > data.length) return undefined; // an option running past the message
    if (code === OPT_MESSAGE_TYPE && len === 1) req.type = data[at]!;
    else if (code === OPT_REQUESTED_IP && len === 4) req.requestedIp = v.getUint32(at);
    else if (code === OPT_SERVER_ID && len === 4) req.serverId = v.getUint32(at);
    i = at + len;
  }
  return req.type === 0 ? undefined : req;
}

/** The server's answer to a request (a UDP payload for the client's port 68), or undefined. */
export function dhcpAnswer(req: DhcpRequest): Uint8Array | undefined {
  switch (req.type) {
    case DHCPDISCOVER:
      return reply(req, DHCPOFFER, GUEST);
    case DHCPREQUEST: {
      if (req.serverId !== undefined && req.serverId !== GATEWAY) return undefined; // chose another server
      const want = req.requestedIp ?? req.ciaddr;
      return want === GUEST ? reply(req, DHCPACK, GUEST) : reply(req, DHCPNAK, 0);
    }
    case DHCPINFORM:
      return reply(req, DHCPACK, 0);
    default:
      return undefined; // RELEASE, DECLINE, or not a client's message
  }
}

function reply(req: DhcpRequest, type: number, yiaddr: number): Uint8Array {
  const out = new Uint8Array(REPLY_SIZE);
  const v = new DataView(out.buffer);
  out[0] = OP_REPLY;
  out[1] = 1;
  out[2] = 6;
  v.setUint32(4, req.xid);
  v.setUint16(10, req.flags & 0x8000);
  v.setUint32(12, type === DHCPACK ? req.ciaddr : 0);
  v.setUint32(16, yiaddr);
  v.setUint32(20, GATEWAY); // siaddr
  out.set(req.chaddr, 28);
  v.setUint32(BOOTP_FIXED, MAGIC_COOKIE);
  let i = BOOTP_FIXED + 4;
  const u8 = (code: number, value: number): void => {
    out[i] = code;
    out[i + 1] = 1;
    out[i + 2] = value;
    i += 3;
  };
  const u16 = (code: number, value: number): void => {
    out[i] = code;
    out[i + 1] = 2;
    v.setUint16(i + 2, value);
    i += 4;
  };
  const u32 = (code: number, value: number): void => {
    out[i] = code;
    out[i + 1] = 4;
    v.setUint32(i + 2, value);
    i += 6;
  };
  u8(OPT_MESSAGE_TYPE, type);
  u32(OPT_SERVER_ID, GATEWAY);
  if (type !== DHCPNAK) {
    if (type !== DHCPACK || yiaddr !== 0) {
      u32(OPT_LEASE_TIME, LEASE_SECONDS);
      u32(OPT_RENEWAL, LEASE_SECONDS / 2);
      u32(OPT_REBINDING, (LEASE_SECONDS * 7) / 8);
    }
    u32(OPT_SUBNET_MASK, NETMASK);
    u32(OPT_ROUTER, GATEWAY);
    u32(OPT_DNS, DNS);
    u32(OPT_BROADCAST, (GUEST | ~NETMASK) >>> 0);
    u16(OPT_MTU, MTU);
  }
  out[i] = OPT_END;
  return out;
}
