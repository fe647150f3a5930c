/**
 * Test support for the user network (imported by the *.test.ts beside it, not by the stack): a
 * fake NIC that collects the frames the stack sends, builders of the frames a guest sends, and a
 * small guest-side TCP endpoint good enough to drive the stack's connections in tests.
 */
import type { NetDevice } from '../stream.js';
import { transportChecksum } from './checksum.js';
import { ETH_HEADER, ETHERTYPE_IPV4, newFrame } from './ethernet.js';
import { IP_HEADER, parseIpv4, PROTO_TCP, PROTO_UDP } from './ipv4.js';
import { checksum } from './checksum.js';
import { GATEWAY_MAC, GUEST } from './layout.js';
import type { UserNetBackend } from './stack.js';
import { ACK, FIN, parseTcp, RST, seqDiff, SYN, type TcpSegment } from './tcp-segment.js';
import { parseUdp, type UdpDatagram } from './udp-frame.js';

export const GUEST_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);

export class FakeNic implements NetDevice {
  readonly frames: Uint8Array[] = [];
  /** False: refuse frames (a guest without receive buffers). */
  accept = true;
  /** The largest receive-offload frame taken (0: none, as a NIC without GUEST_TSO4). */
  gso = 0;
  /** Each frame received and its segment size (0: an ordinary frame), in order. */
  readonly log: { length: number; gsoSize: number }[] = [];
  private space: (() => void) | undefined;
  onFrame: ((f: Uint8Array) => void) | undefined;

  gsoMax(): number {
    return this.gso;
  }

  receive(frame: Uint8Array, gsoSize = 0): boolean {
    if (!this.accept) return false;
    const f = frame.slice();
    this.log.push({ length: f.length, gsoSize });
    this.frames.push(f);
    this.onFrame?.(f);
    return true;
  }

  onRxSpace(listener: () => void): void {
    this.space = listener;
  }

  /** The guest posted buffers again. */
  open(): void {
    this.accept = true;
    this.space?.();
  }

  take(): Uint8Array[] {
    return this.frames.splice(0);
  }
}

/** Resolve when `cond()` holds (checked every turn of the event loop), or fail after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** An Ethernet + IPv4 frame from the guest with `payload` (checksummed IP header). */
export function guestIpFrame(src: number, dst: number, protocol: number, payload: Uint8Array, dstMac = GATEWAY_MAC): Uint8Array {
  const f = newFrame(dstMac, GUEST_MAC, ETHERTYPE_IPV4, IP_HEADER + payload.length);
  const v = new DataView(f.buffer);
  const o = ETH_HEADER;
  f[o] = 0x45;
  v.setUint16(o + 2, IP_HEADER + payload.length);
  v.setUint16(o + 6, 0x4000);
  f[o + 8] = 64;
  f[o + 9] = protocol;
  v.setUint32(o + 12, src);
  v.setUint32(o + 16, dst);
  v.setUint16(o + 10, checksum(f, o, IP_HEADER));
  f.set(payload, o + IP_HEADER);
  return f;
}

export function guestUdp(src: number, srcPort: number, dst: number, dstPort: number, data: Uint8Array, dstMac = GATEWAY_MAC): Uint8Array {
  const u = new Uint8Array(8 + data.length);
  const v = new DataView(u.buffer);
  v.setUint16(0, srcPort);
  v.setUint16(2, dstPort);
  v.setUint16(4, u.length);
  u.set(data, 8);
  v.setUint16(6, transportChecksum(u, 0, u.length, src, dst, PROTO_UDP) || 0xffff);
  return guestIpFrame(src, dst, PROTO_UDP, u, dstMac);
}

export interface GuestSegment {
  src?: number;
  srcPort: number;
  dst: number;
  dstPort: number;
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  data?: Uint8Array;
  mss?: number;
  wscale?: number;
}

export function guestTcp(s: GuestSegment): Uint8Array {
  const opts: number[] = [];
  if (s.mss !== undefined) opts.push(2, 4, s.mss >>> 8, s.mss & 0xff);
  if (s.wscale !== undefined) opts.push(1, 3, 3, s.wscale);
  const data = s.data ?? new Uint8Array(0);
  const hl = 20 + opts.length;
  const t = new Uint8Array(hl + data.length);
  const v = new DataView(t.buffer);
  const src = s.src ?? GUEST;
  v.setUint16(0, s.srcPort);
  v.setUint16(2, s.dstPort);
  v.setUint32(4, s.seq >>> 0);
  v.setUint32(8, (s.ack ?? 0) >>> 0);
  t[12] = (hl / 4) << 4;
  t[13] = s.flags;
  v.setUint16(14, s.window ?? 65535);
  t.set(opts, 20);
  t.set(data, hl);
  v.setUint16(16, transportChecksum(t, 0, t.length, src, s.dst, PROTO_TCP));
  return guestIpFrame(src, s.dst, PROTO_TCP, t);
}

/** A frame the stack sent, parsed (throws when it is not valid IPv4). */
export function parseOut(f: Uint8Array): { src: number; dst: number; tcp?: TcpSegment; udp?: UdpDatagram; protocol: number } {
  const p = parseIpv4(f);
  if (typeof p === 'string') throw new Error(`the stack sent a bad IPv4 packet: ${p}`);
  const out: { src: number; dst: number; tcp?: TcpSegment; udp?: UdpDatagram; protocol: number } = { src: p.src, dst: p.dst, protocol: p.protocol };
  if (p.protocol === PROTO_TCP) {
    const s = parseTcp(f, p);
    if (typeof s === 'string') throw new Error(`the stack sent a bad TCP segment: ${s}`);
    out.tcp = s;
  } else if (p.protocol === PROTO_UDP) {
    const d = parseUdp(f, p);
    if (typeof d === 'string') throw new Error(`the stack sent a bad UDP datagram: ${d}`);
    out.udp = d;
  }
  return out;
}

/**
 * The guest's end of one TCP connection through the stack: in-order receive with a window the
 * test controls, ACKs for what it got, and sending in MSS-sized segments within the stack's
 * window. Frames for this connection are taken from the NIC by `poll()`.
 */
export class GuestTcp {
  /** Just below 2^32: the guest's sequence numbers wrap around within the first bytes. */
  seq = 0xfffffff0;
  rcvNxt = 0;
  sndUna = 0;
  peerWnd = 0;
  peerScale = 0;
  /** What the guest has received. */
  received: Uint8Array[] = [];
  receivedBytes = 0;
  gotFin = false;
  gotRst = false;
  synAck: TcpSegment | undefined;
  /** The window the guest advertises (bytes; scaled by `scale` when sent). */
  window = 65535;
  /** Don't ACK received data (a guest that stops reading and acknowledging). */
  silent = false;
  readonly scale: number;
  /** The MSS the guest's SYN announces. */
  readonly mss: number;

  constructor(
    private readonly stack: UserNetBackend,
    private readonly nic: FakeNic,
    readonly port: number,
    readonly dst: number,
    readonly dstPort: number,
    opts: { wscale?: number; seq?: number; mss?: number } = {},
  ) {
    this.scale = opts.wscale ?? 0;
    this.mss = opts.mss ?? 1460;
    if (opts.seq !== undefined) this.seq = opts.seq;
  }

  private send(flags: number, data?: Uint8Array, extra: Partial<GuestSegment> = {}): void {
    this.stack.transmit(guestTcp({ srcPort: this.port, dst: this.dst, dstPort: this.dstPort, seq: this.seq, ack: this.rcvNxt, flags, window: Math.min(0xffff, this.window >>> this.scale), data, ...extra }));
  }

  /** Send SYN and complete the handshake. */
  async connect(): Promise<void> {
    this.send(SYN, undefined, { mss: this.mss, wscale: this.scale || undefined, window: Math.min(0xffff, this.window) });
    this.seq = (this.seq + 1) >>> 0;
    await until(() => { this.poll(); return this.synAck !== undefined || this.gotRst; }, 5000, 'SYN-ACK');
    if (this.gotRst) return;
    this.send(ACK);
  }

  /** Process frames from the stack for this connection. */
  poll(): void {
    const keep: Uint8Array[] = [];
    for (const f of this.nic.take()) {
      const p = parseOut(f);
      const t = p.tcp;
      if (!t || t.dstPort !== this.port || t.srcPort !== this.dstPort) {
        keep.push(f);
        continue;
      }
      this.onSegment(t);
    }
    this.nic.frames.unshift(...keep);
  }

  private onSegment(t: TcpSegment): void {
    if (t.flags & RST) {
      this.gotRst = true;
      return;
    }
    if ((t.flags & (SYN | ACK)) === (SYN | ACK)) {
      this.synAck = t;
      this.rcvNxt = (t.seq + 1) >>> 0;
      this.sndUna = t.ack;
      this.peerScale = t.wscale ?? 0;
      this.peerWnd = t.window;
      return;
    }
    if (t.flags & ACK) {
      if (seqDiff(t.ack, this.sndUna) >= 0) {
        this.sndUna = t.ack;
        this.peerWnd = t.window << this.peerScale;
      }
    }
    const len = t.data.length;
    if (len > 0 || (t.flags & FIN)) {
      if (t.seq === this.rcvNxt) {
        const room = this.window - this.receivedBytes;
        if (len > 0) {
          this.received.push(t.data.slice());
          this.receivedBytes += len;
          this.rcvNxt = (this.rcvNxt + len) >>> 0;
          if (room < len) throw new Error(`the stack sent ${len} bytes into a window of ${room}`);
        }
        if (t.flags & FIN) {
          this.gotFin = true;
          this.rcvNxt = (this.rcvNxt + 1) >>> 0;
        }
      }
      if (!this.silent) this.ack();
    }
  }

  /** ACK what was received, advertising what is left of `window`. */
  ack(): void {
    const left = Math.max(0, this.window - this.receivedBytes);
    this.send(ACK, undefined, { window: Math.min(0xffff, left >>> this.scale) });
  }

  /** The guest's application read everything: the window opens again. */
  consume(): Uint8Array {
    const all = concat(this.received);
    this.received = [];
    this.receivedBytes = 0;
    return all;
  }

  /** Read (and acknowledge) until the stack's FIN: everything received since the last consume. */
  async readToEnd(timeoutMs: number, what: string): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    await until(() => {
      this.poll();
      const got = this.consume();
      if (got.length) {
        parts.push(got);
        this.ack();
      }
      return this.gotFin;
    }, timeoutMs, what);
    return concat(parts);
  }

  /** Send `data` within the stack's window, waiting for it to open. */
  async write(data: Uint8Array, mss = 1460, timeoutMs = 10_000): Promise<void> {
    let off = 0;
    const end = Date.now() + timeoutMs;
    while (off < data.length) {
      this.poll();
      const inFlight = seqDiff(this.seq, this.sndUna);
      const room = this.peerWnd - inFlight;
      if (room <= 0) {
        if (Date.now() > end) throw new Error(`window stayed closed (${off} of ${data.length} sent)`);
        await new Promise((r) => setTimeout(r, 2));
        continue;
      }
      const n = Math.min(mss, room, data.length - off);
      this.send(ACK | 0x08, data.subarray(off, off + n));
      this.seq = (this.seq + n) >>> 0;
      off += n;
      if (off % (16 * mss) === 0) await new Promise((r) => setImmediate(r));
    }
  }

  fin(): void {
    this.send(FIN | ACK);
    this.seq = (this.seq + 1) >>> 0;
  }

  rst(): void {
    this.send(RST | ACK);
  }
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
