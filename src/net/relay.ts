/**
 * Frames between a virtio-net card and its network back end when they live in different
 * threads: under the kvm engine the card is in the boot vCPU's thread (src/vmm/kvm-machine.ts)
 * and the back ends (user network, tap, stream) on the main thread (src/vmm/vm.ts).
 *
 * Each direction is a credit window: a sender has at most `frames` frames and about `bytes`
 * bytes in flight (sent, not yet finished with by the other side); the receiver gives credit
 * back with `done`/`doneBytes`. So what sits between the threads is bounded, and back-pressure
 * carries across:
 *   - to the guest (RX): the main thread's half is the back end's NetDevice. `receive` takes a
 *     frame while there is credit — and then it is never dropped: the device thread's half keeps
 *     it until the card takes it (the guest posted buffers), then gives the credit back — and
 *     returns false when there is none; the back end keeps the frame and waits for `onRxSpace`,
 *     which fires when credit returns, exactly as with the card itself (bt engine).
 *   - from the guest (TX): the card asks `txReady` before each frame; without credit it leaves
 *     the guest's frames in its transmit queue, and `resumeTx` runs when credit returns.
 *
 * Frames travel in their own ArrayBuffers, moved (transfer list), not cloned: one copy out of the
 * sender's (borrowed) view, none on the way. Messages go out once per microtask, batching what
 * was sent meanwhile; credit goes back with any message, or on its own once a quarter of the
 * window is owed or as soon as the sender said it is blocked (so a blocked sender always hears
 * back, and a busy one does not cost a message per frame).
 *
 * Receive offloads cross too: a frame for the guest carries its segment size (`gso`, GUEST_TSO4),
 * and the device half tells the main thread's the largest such frame the card takes now
 * (`gsoMax`, whenever it changes: the guest's driver negotiates it), which the back end reads
 * through the host half's gsoMax().
 *
 * Core code: no node:* imports; the two halves only see a `send` function and the messages.
 */

/** A relay message (both ways). */
export interface NetRelayMessage {
  type: 'net';
  /** Frames, one ArrayBuffer each (in the transfer list). */
  frames: ArrayBuffer[];
  /** Frames of the other direction, and their bytes, the sender finished with since its last message. */
  done: number;
  doneBytes: number;
  /** The sender has a frame it cannot send for want of credit: send credit as soon as any is owed. */
  blocked: boolean;
  /** Each frame's segment size (receive offload; 0: an ordinary frame). Absent: all 0. */
  gso?: number[];
  /** Device → host: the largest offload frame the card takes now (sent when it changes). */
  gsoMax?: number;
}

export interface NetRelayLimits {
  /** Frames in flight each way. */
  frames: number;
  /** Bytes in flight each way (a frame is let through when nothing else is in flight). */
  bytes: number;
  /** Longest frame (longer ones are dropped and counted). */
  maxFrame: number;
}

export const NET_RELAY_LIMITS: NetRelayLimits = { frames: 128, bytes: 512 * 1024, maxFrame: 65550 };

export type NetRelaySend = (message: NetRelayMessage, transfer: ArrayBuffer[]) => void;

/** True when `m` has the shape of a relay message (it crossed a thread boundary: check before use). */
export function isNetRelayMessage(m: unknown): m is NetRelayMessage {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Partial<NetRelayMessage>;
  if (!(r.type === 'net' && Array.isArray(r.frames) && Number.isSafeInteger(r.done) && Number.isSafeInteger(r.doneBytes) && typeof r.blocked === 'boolean')) return false;
  const u16 = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff;
  if (r.gso !== undefined && !(Array.isArray(r.gso) && r.gso.length === r.frames.length && r.gso.every(u16))) return false;
  return r.gsoMax === undefined || (Number.isSafeInteger(r.gsoMax) && r.gsoMax >= 0);
}

/** What one side of the relay keeps: its outgoing window and the credit it owes the peer. */
class RelayEnd {
  private out: ArrayBuffer[] = [];
  /** Each outgoing frame's segment size; `outGsoAny`: one of them is not 0. */
  private outGso: number[] = [];
  private outGsoAny = false;
  /** A gsoMax to announce in the next message. */
  private gsoMaxPending: number | undefined;
  private inFlight = 0;
  private inFlightBytes = 0;
  private owed = 0;
  private owedBytes = 0;
  /** The peer said it is blocked: credit goes back at once. */
  private peerBlocked = false;
  /** We are blocked: tell the peer in the next message (sent: wait for credit). */
  private blockedPending = false;
  private blockedSent = false;
  private scheduled = false;
  private readonly ackFrames: number;
  private readonly ackBytes: number;
  closed = false;
  /** Credit came back after we were blocked. */
  onCredit: (() => void) | undefined;

  constructor(
    private readonly send: NetRelaySend,
    readonly limits: NetRelayLimits,
  ) {
    if (!(limits.frames >= 1 && limits.bytes >= 1 && limits.maxFrame >= 1)) throw new RangeError('net relay: the limits must be at least 1');
    this.ackFrames = Math.ceil(limits.frames / 4);
    this.ackBytes = Math.ceil(limits.bytes / 4);
  }

  /** Credit for a frame of `len` bytes (len 0: for any frame, asked before its length is known). */
  room(len: number): boolean {
    if (this.closed || this.inFlight >= this.limits.frames) return false;
    return this.inFlightBytes === 0 || this.inFlightBytes + len <= this.limits.bytes;
  }

  /** Send a copy of `frame` (borrowed), with its segment size. The caller checked room(). */
  push(frame: Uint8Array, gsoSize = 0): void {
    const buf = new ArrayBuffer(frame.length);
    new Uint8Array(buf).set(frame);
    this.out.push(buf);
    this.outGso.push(gsoSize);
    if (gsoSize !== 0) this.outGsoAny = true;
    this.inFlight++;
    this.inFlightBytes += frame.length;
    this.schedule();
  }

  /** Tell the peer the largest offload frame taken now (in the next message). */
  announceGsoMax(n: number): void {
    this.gsoMaxPending = n;
    this.schedule();
  }

  /** No credit for a frame we have: tell the peer (once until credit comes). */
  blocked(): void {
    if (this.blockedPending || this.blockedSent || this.closed) return;
    this.blockedPending = true;
    this.schedule();
  }

  /** We finished with an incoming frame of `bytes` bytes: the peer gets the credit back. */
  consumed(bytes: number): void {
    this.owed++;
    this.owedBytes += bytes;
    if (this.peerBlocked || this.owed >= this.ackFrames || this.owedBytes >= this.ackBytes) this.schedule();
  }

  /** A message's credit and blocked flag (its frames are the caller's). */
  take(m: NetRelayMessage): void {
    if (m.blocked) {
      this.peerBlocked = true;
      if (this.owed > 0) this.schedule();
    }
    const done = Math.min(Math.max(0, m.done), this.inFlight);
    if (done === 0) return;
    this.inFlight -= done;
    this.inFlightBytes = this.inFlight === 0 ? 0 : Math.max(0, this.inFlightBytes - Math.max(0, m.doneBytes));
    if (this.blockedSent || this.blockedPending) {
      this.blockedSent = false;
      this.blockedPending = false;
      this.onCredit?.();
    }
  }

  get framesInFlight(): number {
    return this.inFlight;
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    const frames = this.out;
    const ack = this.owed > 0 && (this.peerBlocked || frames.length > 0 || this.owed >= this.ackFrames || this.owedBytes >= this.ackBytes);
    if (frames.length === 0 && !ack && !this.blockedPending && this.gsoMaxPending === undefined) return;
    const m: NetRelayMessage = { type: 'net', frames, done: ack ? this.owed : 0, doneBytes: ack ? this.owedBytes : 0, blocked: this.blockedPending };
    if (this.outGsoAny) m.gso = this.outGso;
    if (this.gsoMaxPending !== undefined) m.gsoMax = this.gsoMaxPending;
    this.gsoMaxPending = undefined;
    this.out = [];
    this.outGso = [];
    this.outGsoAny = false;
    if (ack) {
      this.owed = 0;
      this.owedBytes = 0;
      this.peerBlocked = false;
    }
    if (this.blockedPending) {
      this.blockedPending = false;
      this.blockedSent = true;
    }
    this.send(m, frames);
  }
}

/** What the relay's device half needs of the card (VirtioNet). */
export interface RelayedNic {
  receive(frame: Uint8Array, gsoSize?: number): boolean;
  onRxSpace(listener: () => void): void;
  resumeTx(): void;
  /** The largest receive-offload frame the card takes now (VirtioNet.gsoMax). */
  gsoMax?(): number;
}

/**
 * The main thread's half: the back end's NetDevice (`attach` it to the back end), and the
 * frames the guest sent handed to `transmit`. `handle` takes the messages from the device thread.
 */
export class NetRelayHost {
  private readonly end: RelayEnd;
  private rxSpace: (() => void) | undefined;
  /** The card's gsoMax as the device thread last told it. */
  private peerGsoMax = 0;
  /** Frames each way; frames dropped for being longer than maxFrame. */
  framesIn = 0;
  framesOut = 0;
  dropped = 0;

  constructor(
    send: NetRelaySend,
    private readonly transmit: (frame: Uint8Array) => void,
    private readonly limits: NetRelayLimits = NET_RELAY_LIMITS,
  ) {
    this.end = new RelayEnd(send, limits);
    this.end.onCredit = () => this.rxSpace?.();
  }

  /** The largest receive-offload frame the card takes (the back end's NetDevice.gsoMax). */
  gsoMax(): number {
    return this.peerGsoMax;
  }

  /** A frame for the guest (borrowed): true when taken (it will reach the guest), false: keep it, wait for onRxSpace. */
  receive(frame: Uint8Array, gsoSize = 0): boolean {
    if (this.end.closed) return false;
    if (frame.length > this.limits.maxFrame) {
      this.dropped++;
      return true; // refused for good, as the card does, so it cannot block the back end
    }
    if (!this.end.room(frame.length)) {
      this.end.blocked();
      return false;
    }
    this.end.push(frame, gsoSize);
    this.framesIn++;
    return true;
  }

  onRxSpace(listener: () => void): void {
    this.rxSpace = listener;
  }

  /** A message from the device thread: true when it was the relay's. */
  handle(m: unknown): boolean {
    if (!isNetRelayMessage(m)) return false;
    this.end.take(m);
    if (m.gsoMax !== undefined) this.peerGsoMax = Math.min(m.gsoMax, this.limits.maxFrame);
    for (const buf of m.frames) {
      if (!(buf instanceof ArrayBuffer)) continue;
      if (buf.byteLength <= this.limits.maxFrame) {
        this.framesOut++;
        this.transmit(new Uint8Array(buf));
      } else {
        this.dropped++;
      }
      this.end.consumed(buf.byteLength);
    }
    return true;
  }

  /** Frames sent to the device thread and not yet in the guest (or in its queue). */
  get inFlight(): number {
    return this.end.framesInFlight;
  }

  /** The device thread is gone: take no more frames. */
  close(): void {
    this.end.closed = true;
  }
}

/**
 * The device thread's half: `transmit`/`txReady` are the card's (NetOptions), `attach` the card
 * once built; `handle` takes the messages from the main thread. Frames for the guest wait here
 * (at most the window) until the card takes them.
 */
export class NetRelayDevice {
  private readonly end: RelayEnd;
  private nic: RelayedNic | undefined;
  private readonly backlog: ArrayBuffer[] = [];
  /** Each waiting frame's segment size. */
  private readonly backlogGso: number[] = [];
  private head = 0;
  /** The card's gsoMax as last announced to the main thread. */
  private announcedGso = 0;
  /** Frames dropped: longer than maxFrame, or beyond the window (a peer that broke the protocol). */
  dropped = 0;

  constructor(
    send: NetRelaySend,
    private readonly limits: NetRelayLimits = NET_RELAY_LIMITS,
  ) {
    this.end = new RelayEnd(send, limits);
    this.end.onCredit = () => this.nic?.resumeTx();
  }

  attach(nic: RelayedNic): void {
    this.nic = nic;
    nic.onRxSpace(() => this.pump());
    this.pump();
  }

  /** Tell the main thread when the card's gsoMax changed (its driver negotiated or reset). */
  private checkGso(): void {
    const n = this.nic?.gsoMax?.() ?? 0;
    if (n === this.announcedGso) return;
    this.announcedGso = n;
    this.end.announceGsoMax(n);
  }

  /** The card's transmit (a borrowed view). */
  transmit(frame: Uint8Array): void {
    this.checkGso();
    if (frame.length > this.limits.maxFrame || this.end.closed) {
      this.dropped++;
      return;
    }
    this.end.push(frame);
  }

  /** The card's txReady: credit for one more frame (a TSO frame's segments count as they go). */
  txReady(): boolean {
    if (this.end.room(0)) return true;
    this.end.blocked();
    return false;
  }

  /** A message from the main thread: true when it was the relay's. */
  handle(m: unknown): boolean {
    if (!isNetRelayMessage(m)) return false;
    this.end.take(m);
    m.frames.forEach((buf, i) => {
      if (!(buf instanceof ArrayBuffer)) return;
      if (buf.byteLength > this.limits.maxFrame || this.backlog.length - this.head >= 2 * this.limits.frames) {
        this.dropped++;
        this.end.consumed(buf.byteLength);
        return;
      }
      this.backlog.push(buf);
      this.backlogGso.push(m.gso?.[i] ?? 0);
    });
    this.pump();
    return true;
  }

  /** Frames waiting for the guest's receive buffers. */
  get waiting(): number {
    return this.backlog.length - this.head;
  }

  /** Give the card what it takes, in order; the rest waits for its onRxSpace. */
  private pump(): void {
    const nic = this.nic;
    if (!nic) return;
    this.checkGso();
    while (this.head < this.backlog.length) {
      const buf = this.backlog[this.head]!;
      if (!nic.receive(new Uint8Array(buf), this.backlogGso[this.head])) break;
      this.backlog[this.head++] = EMPTY;
      this.end.consumed(buf.byteLength);
    }
    if (this.head === this.backlog.length) {
      this.backlog.length = 0;
      this.backlogGso.length = 0;
      this.head = 0;
    } else if (this.head > 64) {
      this.backlog.splice(0, this.head);
      this.backlogGso.splice(0, this.head);
      this.head = 0;
    }
  }
}

const EMPTY = new ArrayBuffer(0);
