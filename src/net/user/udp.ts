/**
 * UDP NAT: each guest flow (its address and port → a destination address and port) gets its own
 * host dgram socket; datagrams from the destination's address (any port: TFTP answers from a
 * new one) come back to the guest as if from it (the host's loopback appears as 10.0.2.2);
 * datagrams from other addresses are dropped. Flows end after IDLE_MS without traffic; at most
 * MAX_FLOWS exist (the least recently used is closed to make room).
 *
 * Published UDP ports (`--publish HOSTPORT:GUESTPORT/udp`) work the other way: a host client's
 * datagram to the listening socket reaches the guest's port from 10.0.2.2 and a port picked for
 * that client; the guest's replies to that port go back to the client from the listening socket.
 *
 * Datagrams from the host are sent only while the queue to the guest has room (UDP may drop),
 * and only when they fit the guest's MTU (no fragmentation).
 */
import dgram from 'node:dgram';
import { GATEWAY, GUEST, guestAddressFor, hostAddressFor, ipString, MTU } from './layout.js';
import { IP_HEADER } from './ipv4.js';
import type { Link } from './link.js';
import { UDP_HEADER, udpFrame } from './udp-frame.js';

export const MAX_FLOWS = 256;
export const IDLE_MS = 60_000;
/** The largest payload that fits the guest's MTU. */
export const MAX_PAYLOAD = MTU - IP_HEADER - UDP_HEADER;
/** Ports the stack picks for published flows' gateway side. */
const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_COUNT = 16384;

interface NatFlow {
  socket: dgram.Socket;
  guestIp: number;
  guestPort: number;
  dst: number;
  dstPort: number;
  lastUsed: number;
}

interface PublishedFlow {
  listener: PublishedUdp;
  clientAddr: string;
  clientPort: number;
  gatewayPort: number;
  lastUsed: number;
}

export interface PublishedUdp {
  socket: dgram.Socket;
  guestPort: number;
}

export class UdpNat {
  private readonly flows = new Map<string, NatFlow>();
  /** Published flows by the gateway port the guest sees, and by client. */
  private readonly published = new Map<number, PublishedFlow>();
  private readonly publishedByClient = new Map<string, PublishedFlow>();
  private nextPort = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly link: Link, private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), 5000);
    this.sweeper.unref();
  }

  get flowCount(): number {
    return this.flows.size + this.published.size;
  }

  /** A datagram from the guest (data borrowed) to anything but DHCP and the DNS relay. */
  input(src: number, srcPort: number, dst: number, dstPort: number, data: Uint8Array): void {
    // a reply to a published port's client?
    if (dst === GATEWAY) {
      const pf = this.published.get(dstPort);
      if (pf && srcPort === pf.listener.guestPort) {
        pf.lastUsed = this.now();
        pf.listener.socket.send(data.slice(), pf.clientPort, pf.clientAddr);
        return;
      }
    }
    const host = hostAddressFor(dst);
    if (host === undefined) {
      this.link.count('udp-unroutable');
      return;
    }
    const key = `${src}:${srcPort}>${dst}:${dstPort}`;
    let flow = this.flows.get(key);
    if (flow) {
      this.flows.delete(key); // re-insert: the map's order is least recently used first
      this.flows.set(key, flow);
    } else {
      if (this.flowCount >= MAX_FLOWS) this.evictOne();
      const socket = dgram.createSocket('udp4');
      const f: NatFlow = { socket, guestIp: src, guestPort: srcPort, dst, dstPort, lastUsed: 0 };
      socket.on('error', () => {
        this.link.count('udp-socket-error');
        this.closeFlow(key, f);
      });
      socket.on('message', (m, rinfo) => {
        // only the host this flow was opened to (address-restricted, as a NAT should); any of
        // its ports, for protocols that answer from another one (TFTP)
        if (guestAddressFor(rinfo.address) !== f.dst) {
          this.link.count('udp-foreign-source');
          return;
        }
        f.lastUsed = this.now();
        this.toGuest(f.dst, rinfo.port, f.guestIp, f.guestPort, m);
      });
      this.flows.set(key, f);
      flow = f;
    }
    flow.lastUsed = this.now();
    flow.socket.send(data.slice(), dstPort, host);
  }

  /** Serve a published UDP port: datagrams to `socket` reach the guest's `guestPort`. */
  addPublished(socket: dgram.Socket, guestPort: number): void {
    const listener: PublishedUdp = { socket, guestPort };
    socket.on('message', (m, rinfo) => {
      const ck = `${rinfo.address}|${rinfo.port}`;
      let pf = this.publishedByClient.get(ck);
      if (!pf) {
        const port = this.freeGatewayPort();
        if (port === undefined) {
          this.link.count('udp-no-port');
          return;
        }
        if (this.flowCount >= MAX_FLOWS) this.evictOne();
        pf = { listener, clientAddr: rinfo.address, clientPort: rinfo.port, gatewayPort: port, lastUsed: 0 };
        this.published.set(port, pf);
        this.publishedByClient.set(ck, pf);
      }
      pf.lastUsed = this.now();
      this.toGuest(GATEWAY, pf.gatewayPort, GUEST, guestPort, m);
    });
  }

  private toGuest(src: number, srcPort: number, dst: number, dstPort: number, m: Uint8Array): void {
    if (m.length > MAX_PAYLOAD) {
      this.link.count('udp-too-large');
      return;
    }
    if (!this.link.hasRoom()) {
      this.link.count('udp-queue-full');
      return;
    }
    this.link.send(udpFrame(this.link.guestMac, src, srcPort, dst, dstPort, m));
  }

  private freeGatewayPort(): number | undefined {
    for (let i = 0; i < EPHEMERAL_COUNT; i++) {
      const port = EPHEMERAL_FIRST + ((this.nextPort + i) % EPHEMERAL_COUNT);
      if (!this.published.has(port)) {
        this.nextPort = (this.nextPort + i + 1) % EPHEMERAL_COUNT;
        return port;
      }
    }
    return undefined;
  }

  private evictOne(): void {
    const first = this.flows.entries().next();
    if (!first.done) {
      this.closeFlow(first.value[0], first.value[1]);
      return;
    }
    const pf = this.published.values().next();
    if (!pf.done) this.dropPublished(pf.value);
  }

  private closeFlow(key: string, f: NatFlow): void {
    if (this.flows.get(key) !== f) return;
    this.flows.delete(key);
    try {
      f.socket.close();
    } catch {
      // already closed
    }
  }

  private dropPublished(pf: PublishedFlow): void {
    this.published.delete(pf.gatewayPort);
    this.publishedByClient.delete(`${pf.clientAddr}|${pf.clientPort}`);
  }

  /** Close flows idle for IDLE_MS. */
  sweep(): void {
    const old = this.now() - IDLE_MS;
    for (const [key, f] of this.flows) if (f.lastUsed < old) this.closeFlow(key, f);
    for (const pf of this.published.values()) if (pf.lastUsed < old) this.dropPublished(pf);
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const [key, f] of this.flows) this.closeFlow(key, f);
    this.published.clear();
    this.publishedByClient.clear();
  }

  /** For tests and statistics: a flow's description. */
  describe(): string[] {
    return [...this.flows.values()].map((f) => `${ipString(f.guestIp)}:${f.guestPort} > ${ipString(f.dst)}:${f.dstPort}`);
  }
}
