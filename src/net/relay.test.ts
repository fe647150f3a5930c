/** The network relay between threads (relay.ts), its two halves joined by a real MessageChannel. */
import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { isNetRelayMessage, NetRelayDevice, NetRelayHost, type NetRelayLimits, type NetRelayMessage, type RelayedNic } from './relay.js';

const frame = (n: number, tag: number): Uint8Array => Uint8Array.from({ length: n }, (_v, i) => (i * 7 + tag) & 0xff);
/** Let both ports deliver and the microtask flushes run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
};

/** A card that takes frames while it has `space` (receive buffers), and records what it sent the host. */
class FakeNic implements RelayedNic {
  got: number[][] = [];
  /** Each received frame's segment size. */
  gso: number[] = [];
  space = Infinity;
  resumed = 0;
  /** What gsoMax() answers (the card's negotiated receive offload). */
  offload = 0;
  private listener: (() => void) | undefined;
  receive(f: Uint8Array, gsoSize = 0): boolean {
    if (this.space <= 0) return false;
    this.space--;
    this.got.push([...f]);
    this.gso.push(gsoSize);
    return true;
  }
  gsoMax(): number {
    return this.offload;
  }
  onRxSpace(l: () => void): void {
    this.listener = l;
  }
  post(n: number): void {
    this.space = n;
    this.listener?.();
  }
  resumeTx(): void {
    this.resumed++;
  }
}

/** A back end as the real ones are: it keeps a refused frame and retries on onRxSpace. */
class FakeBackend {
  queue: Uint8Array[] = [];
  refused = 0;
  constructor(private readonly dev: NetRelayHost) {
    dev.onRxSpace(() => this.drain());
  }
  drain(): void {
    while (this.queue.length) {
      if (!this.dev.receive(this.queue[0]!)) {
        this.refused++;
        return;
      }
      this.queue.shift();
    }
  }
}

const channels: MessageChannel[] = [];
afterEach(() => {
  for (const c of channels.splice(0)) {
    c.port1.close();
    c.port2.close();
  }
});

function pair(limits?: NetRelayLimits) {
  const ch = new MessageChannel();
  channels.push(ch);
  const sent: number[][] = [];
  const toDevice: NetRelayMessage[] = [];
  const toHost: NetRelayMessage[] = [];
  const host = new NetRelayHost((m, t) => (toDevice.push(m), ch.port1.postMessage(m, t)), (f) => sent.push([...f]), limits);
  const device = new NetRelayDevice((m, t) => (toHost.push(m), ch.port2.postMessage(m, t)), limits);
  ch.port1.on('message', (m) => expect(host.handle(m)).toBe(true));
  ch.port2.on('message', (m) => expect(device.handle(m)).toBe(true));
  const nic = new FakeNic();
  device.attach(nic);
  return { host, device, nic, sent, toDevice, toHost };
}

describe('network relay between threads', () => {
  it('carries receive offloads: the card\'s gsoMax reaches the host half once negotiated, and each frame its segment size', async () => {
    const { host, nic, toHost } = pair();
    expect(host.gsoMax()).toBe(0);
    nic.offload = 65550; // the guest's driver negotiated GUEST_TSO4
    nic.post(100); // the device half looks again when the card has room (or the guest sends)
    await settle();
    expect(host.gsoMax()).toBe(65550);
    expect(toHost.some((m) => m.gsoMax === 65550)).toBe(true);
    expect(host.receive(frame(30_000, 1), 1400)).toBe(true);
    expect(host.receive(frame(60, 2))).toBe(true);
    await settle();
    expect(nic.gso).toEqual([1400, 0]);
    expect(nic.got[0]).toEqual([...frame(30_000, 1)]);
    // malformed offload fields from the other thread are not a relay message
    expect(isNetRelayMessage({ type: 'net', frames: [new ArrayBuffer(1)], done: 0, doneBytes: 0, blocked: false, gso: [1, 2] })).toBe(false);
    expect(isNetRelayMessage({ type: 'net', frames: [], done: 0, doneBytes: 0, blocked: false, gsoMax: -1 })).toBe(false);
  });

  it('carries frames both ways, batched per microtask, in moved buffers (the sender\'s view stays intact)', async () => {
    const { host, device, nic, sent, toDevice, toHost } = pair();
    const a = frame(60, 1);
    const b = frame(1514, 2);
    expect(host.receive(a)).toBe(true);
    expect(host.receive(b)).toBe(true);
    expect([...a]).toEqual([...frame(60, 1)]); // copied out of the borrowed view
    device.transmit(frame(42, 3));
    await settle();
    expect(nic.got).toEqual([[...frame(60, 1)], [...frame(1514, 2)]]);
    expect(sent).toEqual([[...frame(42, 3)]]);
    expect(toDevice[0]!.frames).toHaveLength(2); // one message for both
    // transferred, not cloned: the sender's buffers are detached once posted
    expect(toDevice[0]!.frames.every((f) => f.byteLength === 0)).toBe(true);
    expect(toHost[0]!.frames.every((f) => f.byteLength === 0)).toBe(true);
    expect(host.framesIn).toBe(2);
    expect(host.framesOut).toBe(1);
  });

  it('RX: a slow guest back-pressures the back end; no frame it accepted is lost, order kept, the window bounded', async () => {
    const limits = { frames: 8, bytes: 64 * 1024, maxFrame: 65550 };
    const { host, device, nic } = pair(limits);
    nic.space = 0; // the guest posted no receive buffers
    const be = new FakeBackend(host);
    for (let i = 0; i < 100; i++) be.queue.push(frame(100 + i, i));
    be.drain();
    expect(be.queue.length).toBe(100 - limits.frames); // the rest stays with the back end
    await settle();
    expect(device.waiting).toBe(limits.frames);
    expect(host.inFlight).toBe(limits.frames);
    // the guest trickles buffers in: everything arrives, in order, the window never exceeded
    for (let round = 0; nic.got.length < 100 && round < 500; round++) {
      nic.post(3);
      await settle();
      expect(device.waiting).toBeLessThanOrEqual(limits.frames);
      expect(host.inFlight).toBeLessThanOrEqual(limits.frames);
    }
    expect(nic.got.length).toBe(100);
    nic.got.forEach((f, i) => expect(f).toEqual([...frame(100 + i, i)]));
    expect(be.refused).toBeGreaterThan(0);
    expect(device.dropped + host.dropped).toBe(0);
  });

  it('RX: the byte window holds back big frames but always lets one through', async () => {
    const { host, nic } = pair({ frames: 64, bytes: 4000, maxFrame: 65550 });
    nic.space = 0;
    expect(host.receive(frame(3000, 1))).toBe(true);
    expect(host.receive(frame(3000, 2))).toBe(false); // 6000 > 4000
    expect(host.receive(frame(900, 3))).toBe(true);
    await settle();
    const empty = pair({ frames: 64, bytes: 4000, maxFrame: 65550 });
    expect(empty.host.receive(frame(9000, 4))).toBe(true); // alone, over the window: still taken
    expect(host.receive(frame(70_000, 5))).toBe(true); // over maxFrame: dropped for good, counted
    expect(host.dropped).toBe(1);
    nic.post(10);
    await settle();
    expect(nic.got.map((f) => f.length)).toEqual([3000, 900]);
  });

  it('TX: txReady says no once the window is full, and the card resumes when the host catches up', async () => {
    const limits = { frames: 4, bytes: 1 << 20, maxFrame: 65550 };
    const { device, nic, sent } = pair(limits);
    let n = 0;
    while (device.txReady()) device.transmit(frame(64, n++));
    expect(n).toBe(4);
    expect(nic.resumed).toBe(0);
    await settle();
    expect(sent.length).toBe(4);
    expect(nic.resumed).toBe(1); // credit came back to the blocked card
    expect(device.txReady()).toBe(true);
  });

  it('sends credit back without a message per frame while nobody is blocked', async () => {
    const { device, toHost, toDevice } = pair({ frames: 64, bytes: 1 << 20, maxFrame: 65550 });
    for (let i = 0; i < 10; i++) {
      device.transmit(frame(60, i));
      await settle();
    }
    expect(toHost.length).toBe(10);
    expect(toDevice.length).toBe(0); // 10 < a quarter of 64: the credit waits
    for (let i = 0; i < 10; i++) device.transmit(frame(60, i));
    await settle();
    expect(toDevice.length).toBe(1);
    expect(toDevice[0]!.done).toBe(20);
  });

  it('ignores what is not a relay message, and frames that are not ArrayBuffers', () => {
    const { host, device, sent } = pair();
    for (const junk of [null, 1, 'net', { type: 'net' }, { type: 'net', frames: [], done: 'x', doneBytes: 0, blocked: false }, { type: 'serial-out', bytes: new Uint8Array(1) }]) {
      expect(isNetRelayMessage(junk)).toBe(false);
      expect(host.handle(junk)).toBe(false);
      expect(device.handle(junk)).toBe(false);
    }
    expect(host.handle({ type: 'net', frames: [new Uint8Array(4), 'x'], done: 5, doneBytes: -1, blocked: false })).toBe(true);
    expect(sent).toEqual([]);
    expect(host.inFlight).toBe(0);
  });

  it('after close the host half takes nothing', async () => {
    const { host, nic } = pair();
    host.close();
    expect(host.receive(frame(60, 1))).toBe(false);
    await settle();
    expect(nic.got).toEqual([]);
  });
});
