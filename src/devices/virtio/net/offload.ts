/**
 * Transmit offloads of virtio-net (virtio 1.2, 5.1.6.2): completing a checksum the driver left
 * partial (VIRTIO_NET_F_CSUM, header flag NEEDS_CSUM) and cutting a TCP/IPv4 frame larger than
 * the MTU into MTU-sized segments (VIRTIO_NET_F_HOST_TSO4, gso_type TCPV4), so the backend only
 * ever sees ordinary, correctly summed frames.
 *
 * The header's numbers are the guest's: every offset is checked against the frame before a byte
 * is read or written, and a frame that does not add up is refused (false), never half-handled.
 */

// struct virtio_net_hdr.flags and gso_type (5.1.6)
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

const ETH_HLEN = 14;
const ETHERTYPE_IPV4 = 0x0800;
const IPPROTO_TCP = 6;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/**
 * The Ethernet + IPv4 + TCP header length of a TCP/IPv4 frame (options included), or 0 when the
 * frame is not one or its headers do not fit it.
 */
export function tcp4HeaderLength(f: Uint8Array): number {
  if (f.length < ETH_HLEN + 20 || ((f[12]! << 8) | f[13]!) !== ETHERTYPE_IPV4 || f[ETH_HLEN]! >> 4 !== 4 || f[ETH_HLEN + 9] !== IPPROTO_TCP) return 0;
  const ihl = (f[ETH_HLEN]! & 0xf) * 4;
  const tcp = ETH_HLEN + ihl;
  if (ihl < 20 || tcp + 20 > f.length) return 0;
  const end = tcp + (f[tcp + 12]! >> 4) * 4;
  return end >= tcp + 20 && end <= f.length ? end : 0;
}

/** Ones' complement sum of `b[off, off+len)` added to `sum` (not folded; RFC 1071). */
function sum16(b: Uint8Array, off: number, len: number, sum: number): number {
  const end = off + len;
  let i = off;
  for (; i + 7 < end; i += 8) {
    sum += ((b[i]! << 8) | b[i + 1]!) + ((b[i + 2]! << 8) | b[i + 3]!) + ((b[i + 4]! << 8) | b[i + 5]!) + ((b[i + 6]! << 8) | b[i + 7]!);
  }
  for (; i + 1 < end; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (i < end) sum += b[i]! << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * NEEDS_CSUM: sum `frame[csumStart, end)` — the field at csumStart + csumOffset already holds the
 * driver's pseudo-header sum — and store the complement in that field. False (frame untouched)
 * when the field is not inside the frame.
 */
export function completeChecksum(frame: Uint8Array, csumStart: number, csumOffset: number): boolean {
  const at = csumStart + csumOffset;
  if (csumStart >= frame.length || at + 2 > frame.length) return false;
  const c = ~fold(sum16(frame, csumStart, frame.length - csumStart, 0)) & 0xffff;
  frame[at] = c >> 8;
  frame[at + 1] = c & 0xff;
  return true;
}

/**
 * TCPV4 segmentation: cut the TCP payload of an Ethernet/IPv4/TCP `frame` into `mss`-byte
 * segments, each a whole frame with its own IPv4 total length, identification and header
 * checksum, TCP sequence number, flags (FIN and PSH on the last only, CWR on the first only) and
 * a full TCP checksum; `emit` gets each (a borrowed view of `scratch`). False when the frame is
 * not Ethernet/IPv4/TCP with sane lengths, or mss is 0 — nothing emitted then.
 * `scratch` must hold the headers plus `mss` bytes.
 */
export function segmentTcp4(frame: Uint8Array, mss: number, scratch: Uint8Array, emit: (segment: Uint8Array) => void): boolean {
  const n = frame.length;
  if (mss <= 0 || n < ETH_HLEN + 20 + 20) return false;
  if (((frame[12]! << 8) | frame[13]!) !== ETHERTYPE_IPV4) return false;
  const ip = ETH_HLEN;
  if (frame[ip]! >> 4 !== 4) return false;
  const ihl = (frame[ip]! & 0xf) * 4;
  if (ihl < 20 || frame[ip + 9] !== IPPROTO_TCP) return false;
  const tcp = ip + ihl;
  if (tcp + 20 > n) return false;
  const thl = (frame[tcp + 12]! >> 4) * 4;
  const data = tcp + thl;
  if (thl < 20 || data > n) return false;
  // the IP total length must not claim more than the frame has (trailing padding is cut)
  const ipLen = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  const end = ip + ipLen;
  if (end > n || end < data) return false;
  const payload = end - data;
  if (data + mss > scratch.length) return false;
  const flags = frame[tcp + 13]!;
  const seq0 = ((frame[tcp + 4]! << 24) | (frame[tcp + 5]! << 16) | (frame[tcp + 6]! << 8) | frame[tcp + 7]!) >>> 0;
  const id0 = (frame[ip + 4]! << 8) | frame[ip + 5]!;
  // pseudo-header without the length: source and destination addresses, protocol
  const pseudo = sum16(frame, ip + 12, 8, IPPROTO_TCP);
  scratch.set(frame.subarray(0, data), 0);
  let off = 0;
  let i = 0;
  do {
    const len = Math.min(mss, payload - off);
    const last = off + len >= payload;
    scratch.set(frame.subarray(data + off, data + off + len), data);
    // IPv4: total length, identification, header checksum
    const tot = ihl + thl + len;
    scratch[ip + 2] = tot >> 8;
    scratch[ip + 3] = tot & 0xff;
    const id = (id0 + i) & 0xffff;
    scratch[ip + 4] = id >> 8;
    scratch[ip + 5] = id & 0xff;
    scratch[ip + 10] = 0;
    scratch[ip + 11] = 0;
    const ipc = ~fold(sum16(scratch, ip, ihl, 0)) & 0xffff;
    scratch[ip + 10] = ipc >> 8;
    scratch[ip + 11] = ipc & 0xff;
    // TCP: sequence number, flags, checksum
    const seq = (seq0 + off) >>> 0;
    scratch[tcp + 4] = seq >>> 24;
    scratch[tcp + 5] = (seq >>> 16) & 0xff;
    scratch[tcp + 6] = (seq >>> 8) & 0xff;
    scratch[tcp + 7] = seq & 0xff;
    let f = flags;
    if (!last) f &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) f &= ~TCP_CWR;
    scratch[tcp + 13] = f;
    scratch[tcp + 16] = 0;
    scratch[tcp + 17] = 0;
    const tc = ~fold(sum16(scratch, tcp, thl + len, pseudo + thl + len)) & 0xffff;
    scratch[tcp + 16] = tc >> 8;
    scratch[tcp + 17] = tc & 0xff;
    emit(scratch.subarray(0, data + len));
    off += len;
    i++;
  } while (off < payload);
  return true;
}
