/**
 * TCP NAT: each guest connection is spliced onto a host `net.Socket`, and each connection to a
 * published host port becomes a connection the stack opens to the guest. The stack is the
 * guest's peer (RFC 9293): it keeps sequence numbers, acknowledges, advertises a window, sends
 * and retransmits, and ends the connection with FIN or RST both ways.
 *
 * - Guest → host: a guest SYN makes the host connect; the SYN-ACK is sent only once the host
 *   connection is up (refused or unreachable → RST to the guest, as a real peer would). Data is
 *   written to the host socket; the window advertised is what the socket may still buffer
 *   (RCV_BUF minus its writableLength), so a slow host peer closes the window and the guest waits.
 *   A guest FIN ends the host socket's writing side (half-close); the host can still send.
 * - Host → guest: data read from the socket waits in a queue of at most SND_BUF bytes until the
 *   guest acknowledges it; the socket is paused while the queue is full, and segments are sent
 *   only within the guest's window and while the queue of frames to the guest has room. The
 *   host's end (FIN) is sent after the last byte.
 * - Retransmission: go-back-N from the oldest unacknowledged byte after RTO (doubling, up to
 *   MAX_RETRIES); a zero window is probed with one byte.
 * - Limits: at most MAX_CONNS connections (SYNs beyond are answered with RST); every buffer is
 *   bounded; segments from the guest are validated before they touch any state.
 */
import net from 'node:net';
import { ByteQueue } from './byte-queue.js';
import { GATEWAY, GUEST, hostAddressFor, MTU } from './layout.js';
import { IP_HEADER } from './ipv4.js';
import type { Link } from './link.js';
import { ACK, FIN, newTcpFrame, PSH, RST, sealTcp, seqDiff, SYN, TCP_HEADER, tcpDataOffset, type SegmentOut, type TcpSegment } from './tcp-segment.js';

export const MAX_CONNS = 512;
/** Host-to-guest bytes a connection holds (unacknowledged + unsent) before pausing its socket. */
export const SND_BUF = 256 * 1024;
/** Guest-to-host bytes a host socket may have buffered: the most window we advertise. */
export const RCV_BUF = 256 * 1024;
/** Our window scale shift: 65535 << 3 covers RCV_BUF. */
export const RCV_SCALE = 3;
/** The largest segment either way on a 1500-byte MTU. */
export const MSS = MTU - IP_HEADER - TCP_HEADER;
/** The most payload one large frame to the guest carries (its IPv4 total length is 16 bits). */
const MAX_GSO_PAYLOAD = 0xffff - IP_HEADER - TCP_HEADER;
/** RFC 9293 3.7.1: the MSS to assume when a SYN carries none. */
const DEFAULT_MSS = 536;
const RTO_INITIAL_MS = 1000;
const RTO_MAX_MS = 30_000;
export const MAX_RETRIES = 8;
const CONNECT_TIMEOUT_MS = 30_000;
const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 16384;

const enum Phase {
  /** Guest SYN received; the host socket is connecting. */
  Connecting,
  /** SYN-ACK sent to the guest; waiting for its ACK. */
  SynReceived,
  /** Published port: SYN sent to the guest; waiting for its SYN-ACK. */
  SynSent,
  /** Data may flow (including half-closed either way). */
  Established,
  Closed,
}

export class TcpConn {
  phase: Phase;
  // send side (host → guest)
  iss = (Math.random() * 0x100000000) >>> 0;
  sndUna = this.iss;
  sndNxt = this.iss;
  sndWnd = 0;
  sndScale = 0;
  mss = DEFAULT_MSS;
  readonly buf = new ByteQueue();
  /** The host ended its side: a FIN follows the last byte. */
  hostEof = false;
  finSent = false;
  finAcked = false;
  // receive side (guest → host)
  irs = 0;
  rcvNxt = 0;
  rcvScale = 0;
  guestFin = false;
  /** Window last advertised (bytes). */
  advertised = 0;
  needAck = false;
  // timers
  private timer: NodeJS.Timeout | undefined;
  private rto = RTO_INITIAL_MS;
  private retries = 0;
  private probe = false;
  private waitingForRoom = false;
  /** The host socket starts paused; it reads once the connection is established. */
  private socketPaused = true;
  socketClosed = false;

  constructor(
    private readonly tcp: TcpNat,
    readonly key: string,
    readonly guestIp: number,
    readonly guestPort: number,
    /** The peer's address and port as the guest sees them. */
    readonly peerIp: number,
    readonly peerPort: number,
    readonly socket: net.Socket,
    phase: Phase,
  ) {
    this.phase = phase;
    socket.pause();
  }

  private get link(): Link {
    return this.tcp.link;
  }

  // ---- host socket events ----

  onHostData(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    this.buf.push(chunk);
    if (this.buf.length >= SND_BUF) this.pauseSocket();
    this.pump();
  }

  onHostEnd(): void {
    this.hostEof = true;
    this.pump();
  }

  onHostDrain(): void {
    // the host took what it had buffered: tell a guest that saw a small window
    if (this.phase === Phase.Established && !this.guestFin && this.advertised < RCV_BUF / 4) this.sendAck();
  }

  onHostClose(hadError: boolean): void {
    this.socketClosed = true;
    if (this.phase === Phase.Closed) return;
    if (hadError || this.phase !== Phase.Established || !this.hostEof) {
      // reset, or closed without an orderly end: the guest's connection is reset too
      if (this.phase === Phase.Established || this.phase === Phase.SynReceived) this.sendRst();
      else if (this.phase === Phase.Connecting) this.sendRstAck();
      this.tcp.remove(this);
      return;
    }
    this.maybeDone();
  }

  onHostConnected(): void {
    if (this.phase !== Phase.Connecting) return;
    this.phase = Phase.SynReceived;
    this.sndNxt = (this.iss + 1) >>> 0;
    this.sendSyn();
    this.armTimer();
  }

  // ---- guest segments ----

  input(seg: TcpSegment): void {
    switch (this.phase) {
      case Phase.Closed:
        return;
      case Phase.Connecting:
        // the host is not connected yet: a retransmitted SYN waits; a RST ends it
        if (seg.flags & RST) this.abortHost();
        return;
      case Phase.SynSent:
        this.inputSynSent(seg);
        return;
    }
    if (seg.flags & SYN) {
      // a retransmitted SYN (our SYN-ACK was lost) gets it again; anything else a challenge ACK
      if (this.phase === Phase.SynReceived && seg.seq === this.irs) this.sendSyn();
      else this.sendAck();
      return;
    }
    if (seg.flags & RST) {
      // RFC 5961 3.2: only an exact match resets; in-window gets a challenge ACK
      if (seg.seq === this.rcvNxt) this.abortHost();
      else if (this.inWindow(seg.seq)) this.sendAck();
      return;
    }
    if (!(seg.flags & ACK)) return;
    if (this.phase === Phase.SynReceived) {
      if (seg.ack !== this.sndNxt) {
        this.tcp.sendRstFor(this.guestIp, this.peerIp, seg);
        return;
      }
      this.phase = Phase.Established;
      this.sndUna = seg.ack;
      this.sndWnd = seg.window << this.sndScale;
      this.clearTimer();
      this.retries = 0;
      this.rto = RTO_INITIAL_MS;
      this.resumeSocket();
    } else {
      const acked = seqDiff(seg.ack, this.sndUna);
      if (seqDiff(seg.ack, this.sndNxt) > 0) {
        this.sendAck(); // acknowledges what we never sent
        return;
      }
      if (acked > 0) this.onAcked(acked);
      if (acked >= 0) {
        this.sndWnd = seg.window << this.sndScale;
        if (seg.window === 0) this.retries = 0; // a live guest with a full buffer: keep probing
      }
    }
    this.inputData(seg);
    if (this.phase !== Phase.Established) return;
    this.pump();
    this.maybeDone();
  }

  private inputSynSent(seg: TcpSegment): void {
    const ackOk = (seg.flags & ACK) !== 0 && seg.ack === this.sndNxt;
    if (seg.flags & RST) {
      if (ackOk) this.abortHost(); // the guest refused: nothing listens on its port
      return;
    }
    if ((seg.flags & ACK) && !ackOk) {
      this.tcp.sendRstFor(this.guestIp, this.peerIp, seg);
      return;
    }
    if (!(seg.flags & SYN) || !ackOk) return;
    this.irs = seg.seq;
    this.rcvNxt = (seg.seq + 1) >>> 0;
    this.sndUna = seg.ack;
    this.mss = Math.max(64, Math.min(seg.mss ?? DEFAULT_MSS, MSS));
    if (seg.wscale !== undefined) this.sndScale = seg.wscale;
    else this.rcvScale = 0; // no scaling unless both sides offer it
    this.sndWnd = seg.window; // never scaled in a SYN
    this.phase = Phase.Established;
    this.clearTimer();
    this.retries = 0;
    this.rto = RTO_INITIAL_MS;
    this.sendAck();
    this.resumeSocket();
    this.pump();
  }

  /** Published port: send the SYN to the guest (retransmitted by the timer). */
  openToGuest(): void {
    this.sndNxt = (this.iss + 1) >>> 0;
    this.sendSyn();
    this.armTimer();
  }

  /** The guest's payload and FIN, in order only (a segment from the future is answered with a duplicate ACK). */
  private inputData(seg: TcpSegment): void {
    const fin = (seg.flags & FIN) !== 0;
    const len = seg.data.length;
    if (len === 0 && !fin) return;
    const off = seqDiff(this.rcvNxt, seg.seq);
    if (off < 0 || off > len || this.guestFin) {
      this.needAckSoon(); // out of order, or old: tell the guest where we are
      return;
    }
    const data = seg.data.subarray(off);
    let take = 0;
    if (data.length > 0) {
      if (this.socketClosed || this.socket.destroyed) {
        this.sendRst(); // nobody to write to
        this.tcp.remove(this);
        return;
      }
      take = Math.min(data.length, this.receiveWindow());
      if (take > 0) {
        this.socket.write(Buffer.from(data.subarray(0, take))); // copies: the frame is borrowed
        this.rcvNxt = (this.rcvNxt + take) >>> 0;
      } else {
        this.link.count('tcp-zero-window-data');
      }
    }
    if (fin && take === data.length) {
      this.rcvNxt = (this.rcvNxt + 1) >>> 0;
      this.guestFin = true;
      if (!this.socketClosed) this.socket.end();
    }
    this.needAckSoon();
  }

  private onAcked(acked: number): void {
    const dataAcked = Math.min(acked, this.buf.length);
    this.buf.drop(dataAcked);
    if (acked > dataAcked && this.finSent) this.finAcked = true;
    this.sndUna = (this.sndUna + acked) >>> 0;
    this.retries = 0;
    this.rto = RTO_INITIAL_MS;
    this.probe = false;
    if (this.sndNxt === this.sndUna) this.clearTimer();
    else this.armTimer(true);
    if (this.buf.length < SND_BUF / 2) this.resumeSocket();
  }

  /** What the host socket can still take. */
  private receiveWindow(): number {
    if (this.guestFin || this.socketClosed) return 0;
    return Math.max(0, RCV_BUF - this.socket.writableLength);
  }

  private inWindow(seq: number): boolean {
    const d = seqDiff(seq, this.rcvNxt);
    return d >= 0 && d < Math.max(this.advertised, 1);
  }

  // ---- sending ----

  /** Send what the guest's window and the frame queue allow; then FIN if the host has ended. */
  pump(): void {
    if (this.phase !== Phase.Established || this.finSent) return;
    for (;;) {
      const offset = seqDiff(this.sndNxt, this.sndUna);
      const avail = this.buf.length - offset;
      if (avail > 0) {
        let usable = this.sndWnd - offset;
        if (usable <= 0) {
          if (!this.probe) {
            if (offset === 0) this.armTimer(); // nothing in flight: the persist timer probes
            return;
          }
          usable = 1; // a zero-window probe
        }
        if (!this.link.hasRoom()) {
          this.waitForRoom();
          return;
        }
        // one large frame where the guest's NIC takes receive offloads (it cuts nothing: its
        // stack takes the frame as mss-sized segments), else one segment
        const gso = this.link.gsoMax();
        const most = gso > tcpDataOffset(0) ? Math.min(gso - tcpDataOffset(0), MAX_GSO_PAYLOAD) : this.mss;
        const n = Math.min(avail, usable, most);
        this.sendData(offset, n, n === avail && !this.probe);
        this.probe = false;
        this.sndNxt = (this.sndNxt + n) >>> 0;
        if (!this.timer) this.armTimer();
        continue;
      }
      if (this.hostEof && !this.finSent) {
        this.sendFlags(FIN | ACK, this.sndNxt);
        this.sndNxt = (this.sndNxt + 1) >>> 0;
        this.finSent = true;
        if (!this.timer) this.armTimer();
      }
      return;
    }
  }

  private waitForRoom(): void {
    if (this.waitingForRoom) return;
    this.waitingForRoom = true;
    this.link.whenRoom(() => {
      this.waitingForRoom = false;
      this.pump();
    });
  }

  private segment(flags: number, seq: number): SegmentOut {
    const wnd = this.receiveWindow();
    const field = Math.min(0xffff, Math.floor(wnd / 2 ** this.rcvScale));
    this.advertised = field * 2 ** this.rcvScale;
    this.needAck = false;
    return { src: this.peerIp, srcPort: this.peerPort, dst: this.guestIp, dstPort: this.guestPort, seq, ack: this.rcvNxt, flags, window: field };
  }

  private sendData(offset: number, n: number, push: boolean): void {
    const s = this.segment(ACK | (push ? PSH : 0), this.sndNxt);
    const f = newTcpFrame(this.link.guestMac, s, n);
    this.buf.copyTo(f, tcpDataOffset(0), offset, n);
    this.link.send(sealTcp(f, s.src, s.dst), n > this.mss ? this.mss : 0);
  }

  private sendFlags(flags: number, seq: number): void {
    const s = this.segment(flags, seq);
    this.link.send(sealTcp(newTcpFrame(this.link.guestMac, s, 0), s.src, s.dst));
  }

  sendAck(): void {
    this.sendFlags(ACK, this.sndNxt);
  }

  /** SYN (published port) or SYN-ACK (guest's connection), with MSS and window scale. */
  sendSyn(): void {
    const synAck = this.phase === Phase.SynReceived;
    const s = this.segment(synAck ? SYN | ACK : SYN, this.iss);
    s.window = Math.min(0xffff, RCV_BUF); // a SYN's window is never scaled
    s.mss = MSS;
    // window scale: always on our SYN; on a SYN-ACK only if the guest's SYN had it
    if (!synAck || this.rcvScale > 0) s.wscale = this.rcvScale;
    this.link.send(sealTcp(newTcpFrame(this.link.guestMac, s, 0), s.src, s.dst));
  }

  private sendRst(): void {
    this.sendFlags(RST | ACK, this.sndNxt);
  }

  private sendRstAck(): void {
    const s = this.segment(RST | ACK, 0);
    this.link.send(sealTcp(newTcpFrame(this.link.guestMac, s, 0), s.src, s.dst));
  }

  needAckSoon(): void {
    if (this.needAck) return;
    this.needAck = true;
    this.tcp.ackLater(this);
  }

  // ---- timers ----

  private armTimer(restart = false): void {
    if (this.timer && !restart) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimer(), this.rto);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimer(): void {
    this.timer = undefined;
    if (this.phase === Phase.Closed) return;
    if (++this.retries > MAX_RETRIES) {
      // the guest stopped answering: give up on both sides
      this.link.count('tcp-timeout');
      if (this.phase !== Phase.SynSent) this.sendRst();
      this.abortHost();
      return;
    }
    this.rto = Math.min(this.rto * 2, RTO_MAX_MS);
    if (this.phase === Phase.SynReceived || this.phase === Phase.SynSent) {
      this.sendSyn();
      this.armTimer();
      return;
    }
    if (this.phase !== Phase.Established) return;
    if (this.sndNxt !== this.sndUna) {
      // go back to the oldest unacknowledged byte (and resend FIN after it)
      this.sndNxt = this.sndUna;
      if (this.finSent && !this.finAcked) this.finSent = false;
      this.link.count('tcp-retransmit');
    } else {
      this.probe = true;
    }
    this.pump();
    if (!this.timer && (this.sndNxt !== this.sndUna || this.buf.length > 0)) this.armTimer();
  }

  // ---- the end ----

  private pauseSocket(): void {
    if (this.socketPaused) return;
    this.socketPaused = true;
    this.socket.pause();
  }

  resumeSocket(): void {
    if (!this.socketPaused || this.phase !== Phase.Established || this.buf.length >= SND_BUF / 2) return;
    this.socketPaused = false;
    this.socket.resume();
  }

  /** Both directions finished: forget the connection. */
  private maybeDone(): void {
    if (this.phase === Phase.Established && this.guestFin && this.finAcked) {
      if (this.needAck) this.sendAck(); // the ACK of the guest's FIN, before we forget it
      this.socket.destroy();
      this.tcp.remove(this);
    }
  }

  /** The guest reset (or never answered): the host's connection is reset too. */
  abortHost(): void {
    try {
      if (!this.socket.destroyed) this.socket.resetAndDestroy();
    } catch {
      // not a TCP handle any more: destroy() in remove() is all that is left to do
    }
    this.tcp.remove(this);
  }

  /** Forget this connection (timers stopped, socket destroyed). */
  dispose(): void {
    this.phase = Phase.Closed;
    this.clearTimer();
    this.buf.clear();
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

export class TcpNat {
  private readonly conns = new Map<string, TcpConn>();
  private readonly acks = new Set<TcpConn>();
  private nextPort = 0;

  constructor(readonly link: Link) {}

  get connCount(): number {
    return this.conns.size;
  }

  /** A segment from the guest (validated by parseTcp; data borrowed). */
  input(src: number, dst: number, seg: TcpSegment): void {
    const key = connKey(src, seg.srcPort, dst, seg.dstPort);
    const c = this.conns.get(key);
    if (c) {
      c.input(seg);
      return;
    }
    if (seg.flags & RST) return;
    if ((seg.flags & (SYN | ACK)) !== SYN) {
      this.sendRstFor(src, dst, seg);
      return;
    }
    const host = hostAddressFor(dst);
    if (host === undefined || this.conns.size >= MAX_CONNS) {
      this.link.count(host === undefined ? 'tcp-unroutable' : 'tcp-table-full');
      this.sendRstFor(src, dst, seg);
      return;
    }
    const socket = new net.Socket({ allowHalfOpen: true });
    const conn = new TcpConn(this, key, src, seg.srcPort, dst, seg.dstPort, socket, Phase.Connecting);
    conn.irs = seg.seq;
    conn.rcvNxt = (seg.seq + 1) >>> 0;
    conn.mss = Math.max(64, Math.min(seg.mss ?? DEFAULT_MSS, MSS));
    if (seg.wscale !== undefined) {
      conn.sndScale = seg.wscale;
      conn.rcvScale = RCV_SCALE;
    }
    conn.sndWnd = seg.window;
    this.conns.set(key, conn);
    this.wire(conn);
    const timeout = setTimeout(() => socket.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timeout);
      conn.onHostConnected();
    });
    socket.once('close', () => clearTimeout(timeout));
    socket.connect({ host, port: seg.dstPort });
  }

  /** A connection to a published port: open a connection to the guest's `guestPort`. */
  accept(socket: net.Socket, guestPort: number): void {
    const port = this.freePort(guestPort);
    if (this.conns.size >= MAX_CONNS || port === undefined) {
      this.link.count('tcp-table-full');
      socket.destroy();
      return;
    }
    const key = connKey(GUEST, guestPort, GATEWAY, port);
    const conn = new TcpConn(this, key, GUEST, guestPort, GATEWAY, port, socket, Phase.SynSent);
    conn.rcvScale = RCV_SCALE;
    this.conns.set(key, conn);
    this.wire(conn);
    conn.openToGuest();
  }

  private wire(conn: TcpConn): void {
    const s = conn.socket;
    s.on('data', (d: Buffer) => conn.onHostData(d));
    s.on('end', () => conn.onHostEnd());
    s.on('drain', () => conn.onHostDrain());
    s.on('error', () => this.link.count('tcp-host-error'));
    s.on('close', (hadError: boolean) => conn.onHostClose(hadError));
  }

  private freePort(guestPort: number): number | undefined {
    for (let i = 0; i < EPHEMERAL_COUNT; i++) {
      const port = EPHEMERAL_FIRST + ((this.nextPort + i) % EPHEMERAL_COUNT);
      if (!this.conns.has(connKey(GUEST, guestPort, GATEWAY, port))) {
        this.nextPort = (this.nextPort + i + 1) % EPHEMERAL_COUNT;
        return port;
      }
    }
    return undefined;
  }

  ackLater(conn: TcpConn): void {
    this.acks.add(conn);
    this.link.requestFlush();
  }

  /** Send the ACKs owed (one per connection per batch of guest frames). */
  flushAcks(): void {
    if (this.acks.size === 0) return;
    for (const c of this.acks) if (c.needAck && this.conns.get(c.key) === c) c.sendAck();
    this.acks.clear();
  }

  /** RST in answer to a segment no connection takes (RFC 9293 3.10.7.1). */
  sendRstFor(src: number, dst: number, seg: TcpSegment): void {
    const base = { src: dst, srcPort: seg.dstPort, dst: src, dstPort: seg.srcPort, window: 0 };
    let s: SegmentOut;
    if (seg.flags & ACK) s = { ...base, seq: seg.ack, ack: 0, flags: RST };
    else {
      const len = seg.data.length + (seg.flags & SYN ? 1 : 0) + (seg.flags & FIN ? 1 : 0);
      s = { ...base, seq: 0, ack: (seg.seq + len) >>> 0, flags: RST | ACK };
    }
    this.link.send(sealTcp(newTcpFrame(this.link.guestMac, s, 0), s.src, s.dst));
  }

  remove(conn: TcpConn): void {
    if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key);
    this.acks.delete(conn);
    conn.dispose();
  }

  /** Drop every connection (the guest was reset, or the stack is closing). */
  close(): void {
    for (const c of [...this.conns.values()]) this.remove(c);
  }
}

function connKey(guestIp: number, guestPort: number, peerIp: number, peerPort: number): string {
  return `${guestIp}:${guestPort}>${peerIp}:${peerPort}`;
}
