/**
 * Hostile frames: random bytes, and valid frames of every kind with random mutations (bytes
 * flipped, truncated, extended, length and offset fields set to edge values), checksums fixed
 * up half the time so the mutations reach the parsers behind them. Nothing may escape
 * `transmit`, and every table and queue stays within its bound.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../../../tests/support/rng.js';
import { checksum, transportChecksum } from './checksum.js';
import { ARP_SIZE } from './arp.js';
import { ETH_HEADER, ETHERTYPE_ARP, newFrame } from './ethernet.js';
import { DNS, GATEWAY, GUEST } from './layout.js';
import { QUEUE_MAX, UserNetBackend } from './stack.js';
import { ACK, FIN, PSH, RST, SYN } from './tcp-segment.js';
import { MAX_CONNS } from './tcp.js';
import { MAX_FLOWS } from './udp.js';
import { FakeNic, GUEST_MAC, guestIpFrame, guestTcp, guestUdp } from './testing.js';

let server: net.Server;
let port = 0;
beforeAll(async () => {
  server = net.createServer((s) => {
    s.on('error', () => {});
    s.end('some bytes from the host');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});
afterAll(() => server.close());

function seeds(): Uint8Array[] {
  const arp = newFrame(Uint8Array.of(255, 255, 255, 255, 255, 255), GUEST_MAC, ETHERTYPE_ARP, ARP_SIZE);
  arp.set([0, 1, 8, 0, 6, 4, 0, 1, ...GUEST_MAC, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2], ETH_HEADER);
  const dhcp = new Uint8Array(300);
  dhcp.set([1, 1, 6, 0, 1, 2, 3, 4]);
  dhcp.set(GUEST_MAC, 28);
  dhcp.set([0x63, 0x82, 0x53, 0x63, 53, 1, 1, 50, 4, 10, 0, 2, 15, 255], 236);
  const dns = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, ...Buffer.from('localhost'), 0, 0, 1, 0, 1]);
  const icmp = Uint8Array.from([8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4]);
  const c = checksum(icmp, 0, icmp.length);
  icmp[2] = c >>> 8;
  icmp[3] = c & 0xff;
  const sp = 30000;
  return [
    arp,
    guestUdp(0, 68, 0xffffffff, 67, dhcp),
    guestUdp(GUEST, 3333, DNS, 53, dns),
    guestUdp(GUEST, 3334, GATEWAY, port, Uint8Array.of(1, 2, 3)),
    guestIpFrame(GUEST, GATEWAY, 1, icmp),
    guestTcp({ srcPort: sp, dst: GATEWAY, dstPort: port, seq: 100, flags: SYN, mss: 1460, wscale: 7 }),
    guestTcp({ srcPort: sp, dst: GATEWAY, dstPort: port, seq: 101, ack: 1, flags: ACK | PSH, data: Uint8Array.of(1, 2, 3, 4) }),
    guestTcp({ srcPort: sp, dst: GATEWAY, dstPort: port, seq: 105, ack: 1, flags: FIN | ACK }),
    guestTcp({ srcPort: sp, dst: GATEWAY, dstPort: port, seq: 105, ack: 1, flags: RST }),
  ];
}

/** Recompute the IPv4 header checksum and the TCP/UDP checksum where the headers allow it. */
function fixChecksums(f: Uint8Array): void {
  const o = ETH_HEADER;
  if (f.length < o + 20 || f[12] !== 8 || f[13] !== 0) return;
  const ihl = (f[o]! & 0xf) * 4;
  if (ihl < 20 || o + ihl > f.length) return;
  f[o + 10] = 0;
  f[o + 11] = 0;
  const c = checksum(f, o, ihl);
  f[o + 10] = c >>> 8;
  f[o + 11] = c & 0xff;
  const total = (f[o + 2]! << 8) | f[o + 3]!;
  const len = Math.min(total, f.length - o) - ihl;
  const proto = f[o + 9]!;
  const t = o + ihl;
  const sumAt = proto === 6 ? 16 : proto === 17 ? 6 : -1;
  if (sumAt < 0 || len < sumAt + 2) return;
  f[t + sumAt] = 0;
  f[t + sumAt + 1] = 0;
  const v = new DataView(f.buffer);
  const s = transportChecksum(f, t, len, v.getUint32(o + 12), v.getUint32(o + 16), proto);
  f[t + sumAt] = s >>> 8;
  f[t + sumAt + 1] = s & 0xff;
}

function mutate(seed: Uint8Array, r: () => number): Uint8Array {
  let f = seed.slice();
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const what = Math.floor(r() * 6);
    const at = Math.floor(r() * f.length);
    if (what <= 1) f[at] = Math.floor(r() * 256);
    else if (what === 2) f = f.subarray(0, at).slice();
    else if (what === 3) f = Uint8Array.from([...f, ...Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256))]);
    else if (what === 4) f[at] = [0, 0xff, 0x7f, 0x80, 1][Math.floor(r() * 5)]!;
    else {
      // a length or offset field at an edge: IHL, total length, TCP data offset, UDP length
      const fields = [ETH_HEADER, ETH_HEADER + 2, ETH_HEADER + 3, ETH_HEADER + 32, ETH_HEADER + 24, ETH_HEADER + 25, ETH_HEADER + 6];
      const i = fields[Math.floor(r() * fields.length)]!;
      if (i < f.length) f[i] = [0, 0xff, 0x45, 0x4f, 0x50, 0x20, 0xf0][Math.floor(r() * 7)]!;
    }
  }
  // keep destinations on this machine: the fuzzer must not send to random addresses
  if (f.length >= ETH_HEADER + 20 && f[12] === 8 && f[13] === 0) f.set(r() < 0.5 ? [10, 0, 2, 2] : [10, 0, 2, 3], ETH_HEADER + 16);
  if (r() < 0.5) fixChecksums(f);
  return f;
}

function checkBounds(stack: UserNetBackend): void {
  expect(stack.stats.get('exception')).toBeUndefined();
  expect(stack.queued).toBeLessThanOrEqual(QUEUE_MAX);
  expect(stack.tcp.connCount).toBeLessThanOrEqual(MAX_CONNS);
  expect(stack.udp.flowCount).toBeLessThanOrEqual(MAX_FLOWS);
}

describe('hostile frames', () => {
  it('random bytes of every length: dropped and counted, nothing thrown', async () => {
    const r = rng(0x5eed);
    const stack = new UserNetBackend({ dns: { lookup: (_n, cb) => cb(null, []) } });
    const nic = new FakeNic();
    stack.attach(nic);
    for (let i = 0; i < 20000; i++) {
      const f = Uint8Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256));
      if (i % 3 === 0 && f.length >= 14) {
        f[12] = 8; // IPv4 or ARP ethertype to get past the first check
        f[13] = i % 2 ? 0 : 6;
      }
      stack.transmit(f);
    }
    checkBounds(stack);
    expect([...stack.stats.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(10000);
    await new Promise((res) => setTimeout(res, 20));
    stack.close();
  });

  it('mutated valid frames (ARP, DHCP, DNS, UDP, ICMP, TCP) with fixed-up checksums: nothing thrown, bounded state', async () => {
    const r = rng(0xfeed);
    const stack = new UserNetBackend({ dns: { lookup: (_n, cb) => setImmediate(() => cb(null, [{ address: '127.0.0.1', family: 4 }])) } });
    const nic = new FakeNic();
    stack.attach(nic);
    const base = seeds();
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 500; i++) {
        stack.transmit(mutate(base[Math.floor(r() * base.length)]!, r));
        // now and then the guest stops taking frames
        nic.accept = r() > 0.1;
      }
      nic.open();
      nic.take();
      checkBounds(stack);
      await new Promise((res) => setImmediate(res));
    }
    checkBounds(stack);
    stack.close();
  });

  it('a guest that never takes frames: the queue to it stays bounded while host data waits', async () => {
    const big = Buffer.alloc(1 << 20, 7);
    const srv = net.createServer((s) => {
      s.on('error', () => {});
      s.end(big);
    });
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
    const p = (srv.address() as net.AddressInfo).port;
    const stack = new UserNetBackend();
    const nic = new FakeNic();
    nic.accept = false;
    stack.attach(nic);
    for (let i = 0; i < 64; i++) {
      stack.transmit(guestTcp({ srcPort: 20000 + i, dst: GATEWAY, dstPort: p, seq: 0, flags: SYN, mss: 1460, wscale: 9, window: 65535 }));
    }
    await new Promise((res) => setTimeout(res, 300));
    checkBounds(stack);
    expect(stack.queued).toBeLessThanOrEqual(QUEUE_MAX);
    stack.close();
    srv.close();
  });
});
