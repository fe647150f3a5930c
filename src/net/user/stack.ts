/**
 * `--net user`: typevisor's own user-mode network, QEMU user-net style. The guest's frames come
 * in through `transmit` (from the NIC), are parsed and validated layer by layer, and leave as
 * this process's own sockets: TCP and UDP to any host address (10.0.2.2 is the host's
 * loopback), DNS through the relay at 10.0.2.3, DHCP, ARP and ICMP echo answered here. Frames
 * to the guest wait in one bounded queue until the NIC takes them (`receive` false → wait for
 * `onRxSpace`); senders of data stop while that queue is above its high-water mark.
 *
 * Every frame from the guest is hostile: a malformed one is dropped and counted by reason
 * (`stats`), and nothing a frame does can throw out of `transmit`.
 *
 * Published ports (`--publish`) are host listeners bound in `connect()`, before the guest boots,
 * so a port in use is one clear error.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { NetError, type NetDevice } from '../stream.js';
import { ARP_REQUEST, arpReply, parseArp } from './arp.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, dhcpAnswer, parseDhcp } from './dhcp.js';
import { DnsRelay, type DnsRelayOptions } from './dns.js';
import { ETH_HEADER, etherType, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from './ethernet.js';
import { echoReply } from './icmp.js';
import { parseIpv4, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from './ipv4.js';
import { BROADCAST, BROADCAST_MAC, DNS, GATEWAY, GATEWAY_MAC, inNetwork, LIMITED_BROADCAST, NETWORK } from './layout.js';
import type { Link } from './link.js';
import { parseTcp } from './tcp-segment.js';
import { TcpNat } from './tcp.js';
import { parseUdp, udpFrame } from './udp-frame.js';
import { UdpNat } from './udp.js';

/** Bytes queued to the guest above which data senders wait, and below which they resume. */
export const QUEUE_HIGH = 256 * 1024;
export const QUEUE_LOW = 128 * 1024;
/** Hard cap: beyond it even control frames are dropped (counted). */
export const QUEUE_MAX = 1024 * 1024;

/** `--publish [ADDR:]HOSTPORT:GUESTPORT[/udp]`. */
export interface PublishSpec {
  protocol: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

export interface UserNetOptions {
  publish?: readonly PublishSpec[];
  dns?: DnsRelayOptions;
  log?: (line: string) => void;
}

export class UserNetBackend implements Link {
  /** The guest's MAC (learned from its frames; broadcast until the first one). */
  guestMac: Uint8Array = BROADCAST_MAC;
  /** Frames each way and drops by reason. */
  readonly stats = new Map<string, number>();
  framesIn = 0;
  framesOut = 0;
  readonly tcp: TcpNat;
  readonly udp: UdpNat;
  readonly dns: DnsRelay;
  private queue: Uint8Array[] = [];
  /** Each queued frame's segment size (0: an ordinary frame). */
  private gsoSizes: number[] = [];
  private head = 0;
  private queuedBytes = 0;
  private flushScheduled = false;
  private roomWaiters: (() => void)[] = [];
  private device: NetDevice | undefined;
  private readonly servers: net.Server[] = [];
  private readonly udpListeners: dgram.Socket[] = [];
  private readonly logged = new Set<string>();
  private readonly logLine: (line: string) => void;
  private closed = false;

  constructor(private readonly opts: UserNetOptions = {}) {
    this.logLine = opts.log ?? (() => {});
    this.tcp = new TcpNat(this);
    this.udp = new UdpNat(this);
    this.dns = new DnsRelay(opts.dns);
  }

  /** Bind the published ports (before the guest boots): a port in use is a NetError. */
  async connect(): Promise<void> {
    try {
      for (const p of this.opts.publish ?? []) {
        if (p.protocol === 'tcp') await this.listenTcp(p);
        else await this.listenUdp(p);
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The host addresses the published ports are bound to (`host:port/proto`), for messages and tests. */
  publishedAddresses(): string[] {
    const out: string[] = [];
    for (const s of this.servers) {
      const a = s.address() as net.AddressInfo;
      out.push(`${a.address}:${a.port}/tcp`);
    }
    for (const s of this.udpListeners) {
      const a = s.address();
      out.push(`${a.address}:${a.port}/udp`);
    }
    return out;
  }

  private listenTcp(p: PublishSpec): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      if (this.closed) socket.destroy();
      else this.tcp.accept(socket, p.guestPort);
    });
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(publishError(p, e)));
      server.listen({ host: p.hostAddress, port: p.hostPort, exclusive: true }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.log(`typevisor: published port ${p.hostAddress}:${p.hostPort}: ${e.message}`));
        this.servers.push(server);
        resolve();
      });
    });
  }

  private listenUdp(p: PublishSpec): Promise<void> {
    const socket = dgram.createSocket(net.isIPv6(p.hostAddress) ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      socket.once('error', (e: NodeJS.ErrnoException) => {
        socket.close();
        reject(publishError(p, e));
      });
      socket.bind({ address: p.hostAddress, port: p.hostPort, exclusive: true }, () => {
        socket.removeAllListeners('error');
        socket.on('error', (e) => this.log(`typevisor: published port ${p.hostAddress}:${p.hostPort}/udp: ${e.message}`));
        this.udp.addPublished(socket, p.guestPort);
        this.udpListeners.push(socket);
        resolve();
      });
    });
  }

  /** The NIC frames go to (again after a guest reset: the old guest's connections are dropped). */
  attach(device: NetDevice): void {
    if (this.device && this.device !== device) {
      this.tcp.close();
      this.queue = [];
      this.gsoSizes = [];
      this.head = 0;
      this.queuedBytes = 0;
      this.guestMac = BROADCAST_MAC;
    }
    this.device = device;
    device.onRxSpace(() => this.flush());
    this.flush();
  }

  /** A frame the guest sent (borrowed). Never throws: a bad frame is dropped and counted. */
  transmit(frame: Uint8Array): void {
    this.framesOut++;
    try {
      this.input(frame);
    } catch (e) {
      this.count('exception');
      const msg = e instanceof Error ? e.message : String(e);
      this.log(`typevisor: user network: dropped a frame that raised ${msg} (a bug: please report it)`);
    }
  }

  close(): void {
    this.closed = true;
    for (const s of this.servers) s.close();
    for (const s of this.udpListeners) s.close();
    this.servers.length = 0;
    this.udpListeners.length = 0;
    this.tcp.close();
    this.udp.close();
    this.dns.close();
    this.queue = [];
    this.gsoSizes = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.roomWaiters = [];
  }

  // ---- Link ----

  send(frame: Uint8Array, gsoSize = 0): boolean {
    if (this.closed) return false;
    if (this.queuedBytes + frame.length > QUEUE_MAX) {
      this.count('queue-overflow');
      return false;
    }
    this.queue.push(frame);
    this.gsoSizes.push(gsoSize);
    this.queuedBytes += frame.length;
    this.scheduleFlush();
    return true;
  }

  gsoMax(): number {
    return this.device?.gsoMax?.() ?? 0;
  }

  hasRoom(): boolean {
    return this.queuedBytes < QUEUE_HIGH;
  }

  whenRoom(fn: () => void): void {
    this.roomWaiters.push(fn);
  }

  count(name: string): void {
    this.stats.set(name, (this.stats.get(name) ?? 0) + 1);
  }

  /** Log a line once per distinct text (a hostile guest must not flood the terminal). */
  log(line: string): void {
    if (this.logged.has(line) || this.logged.size > 100) return;
    this.logged.add(line);
    this.logLine(line);
  }

  /** Bytes waiting for the guest (tests). */
  get queued(): number {
    return this.queuedBytes;
  }

  requestFlush(): void {
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Give the guest what it can take; wake data senders when the queue has drained. */
  flush(): void {
    if (this.closed) return;
    this.tcp.flushAcks();
    const dev = this.device;
    if (dev) {
      while (this.head < this.queue.length) {
        const f = this.queue[this.head]!;
        if (!dev.receive(f, this.gsoSizes[this.head])) break;
        this.head++;
        this.queuedBytes -= f.length;
        this.framesIn++;
      }
      if (this.head === this.queue.length) {
        this.queue = [];
        this.gsoSizes = [];
        this.head = 0;
      } else if (this.head > 1024) {
        this.queue = this.queue.slice(this.head);
        this.gsoSizes = this.gsoSizes.slice(this.head);
        this.head = 0;
      }
    }
    if (this.queuedBytes < QUEUE_LOW && this.roomWaiters.length > 0) {
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const w of waiters) w();
    }
  }

  // ---- input ----

  private input(frame: Uint8Array): void {
    if (frame.length < ETH_HEADER) return this.count('eth-short');
    // the guest's unicast source address is where our frames go
    if ((frame[6]! & 1) === 0 && !sameMac(frame, this.guestMac)) this.guestMac = frame.slice(6, 12);
    const type = etherType(frame);
    if (type === ETHERTYPE_ARP) return this.inputArp(frame);
    if (type !== ETHERTYPE_IPV4) return this.count('eth-type');
    const p = parseIpv4(frame);
    if (typeof p === 'string') return this.count(`ip-${p}`);
    switch (p.protocol) {
      case PROTO_UDP: {
        const d = parseUdp(frame, p);
        if (typeof d === 'string') return this.count(`udp-${d}`);
        if (d.dstPort === DHCP_SERVER_PORT && d.srcPort === DHCP_CLIENT_PORT) return this.inputDhcp(d.data);
        if (!isGuestSource(p.src)) return this.count('ip-source');
        if (p.dst === DNS) {
          if (d.dstPort !== 53) return this.count('udp-unroutable');
          const { src, srcPort } = { src: p.src, srcPort: d.srcPort };
          this.dns.query(d.data, (answer) => this.send(udpFrame(this.guestMac, DNS, 53, src, srcPort, answer)));
          return;
        }
        this.udp.input(p.src, d.srcPort, p.dst, d.dstPort, d.data);
        return;
      }
      case PROTO_TCP: {
        const s = parseTcp(frame, p);
        if (typeof s === 'string') return this.count(`tcp-${s}`);
        if (!isGuestSource(p.src)) return this.count('ip-source');
        this.tcp.input(p.src, p.dst, s);
        return;
      }
      case PROTO_ICMP: {
        if (p.dst !== GATEWAY && p.dst !== DNS) return this.count('icmp-unroutable');
        const r = echoReply(frame, p, this.guestMac);
        if (typeof r === 'string') return this.count(`icmp-${r}`);
        this.send(r);
        return;
      }
      default:
        this.count('ip-protocol');
    }
  }

  private inputArp(frame: Uint8Array): void {
    const a = parseArp(frame);
    if (!a) return this.count('arp-malformed');
    if (a.op !== ARP_REQUEST) return;
    if (a.targetIp !== GATEWAY && a.targetIp !== DNS) return; // not ours (a probe for the guest's own address, too)
    if (a.senderMac[0]! & 1) return this.count('arp-malformed'); // a multicast sender
    this.send(arpReply(a, GATEWAY_MAC));
  }

  private inputDhcp(data: Uint8Array): void {
    const req = parseDhcp(data);
    if (!req) return this.count('dhcp-malformed');
    if (req.chaddr[0]! & 1) return this.count('dhcp-malformed');
    const answer = dhcpAnswer(req);
    if (!answer) return;
    // a client that has an address (renewing) gets the answer there; one without, broadcast (RFC 2131 4.1)
    const to = req.ciaddr !== 0 && isGuestSource(req.ciaddr) ? req.ciaddr : LIMITED_BROADCAST;
    this.send(udpFrame(req.chaddr, GATEWAY, DHCP_SERVER_PORT, to, DHCP_CLIENT_PORT, answer));
  }
}

function sameMac(frame: Uint8Array, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (frame[6 + i] !== mac[i]) return false;
  return true;
}

/** A source the guest may use: a host address inside 10.0.2.0/24 that is not ours. */
function isGuestSource(src: number): boolean {
  return inNetwork(src) && src !== NETWORK && src !== BROADCAST && src !== GATEWAY && src !== DNS;
}

function publishError(p: PublishSpec, e: NodeJS.ErrnoException): NetError {
  const where = `${p.hostAddress.includes(':') ? `[${p.hostAddress}]` : p.hostAddress}:${p.hostPort}`;
  const spec = `--publish ${where}:${p.guestPort}${p.protocol === 'udp' ? '/udp' : ''}`;
  let why: string;
  switch (e.code) {
    case 'EADDRINUSE':
      why = `${p.protocol.toUpperCase()} port ${p.hostPort} on ${p.hostAddress} is already in use: stop what uses it or publish another host port (e.g. --publish ${p.hostPort === 65535 ? 8080 : p.hostPort + 1}:${p.guestPort})`;
      break;
    case 'EACCES':
      why = `not allowed to bind port ${p.hostPort} on ${p.hostAddress} (ports below 1024 need privileges): publish a host port of 1024 or more`;
      break;
    case 'EADDRNOTAVAIL':
      why = `${p.hostAddress} is not an address of this host: give one it has, e.g. 127.0.0.1 (the default)`;
      break;
    default:
      why = `cannot bind ${where}: ${e.message}`;
  }
  return new NetError(`${spec}: ${why}`, { cause: e });
}
