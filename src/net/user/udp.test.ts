/** UDP NAT, published UDP ports and the DNS relay, through the stack against host sockets. */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { DNS, GATEWAY, GUEST, ip } from './layout.js';
import { UserNetBackend } from './stack.js';
import { FakeNic, guestUdp, parseOut, until } from './testing.js';
import { MAX_FLOWS, MAX_PAYLOAD } from './udp.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup(opts: ConstructorParameters<typeof UserNetBackend>[0] = {}): { stack: UserNetBackend; nic: FakeNic } {
  const stack = new UserNetBackend(opts);
  const nic = new FakeNic();
  stack.attach(nic);
  cleanups.push(() => stack.close());
  return { stack, nic };
}

async function udpServer(onMessage: (s: dgram.Socket, m: Buffer, r: dgram.RemoteInfo) => void): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => onMessage(s, m, r));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  cleanups.push(() => s.close());
  return s.address().port;
}

/** A DNS query for `name` (type 1 = A, 28 = AAAA, 16 = TXT). */
function dnsQuery(name: string, type: number, id = 0x4242): Uint8Array {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Uint8Array.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, type >> 8, type & 0xff, 0, 1]);
}

describe('UDP NAT', () => {
  it('a guest datagram to 10.0.2.2:PORT reaches the host loopback; the reply comes back from 10.0.2.2', async () => {
    const port = await udpServer((s, m, r) => s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
    const { stack, nic } = setup();
    stack.transmit(guestUdp(GUEST, 5555, GATEWAY, port, Buffer.from('ping')));
    await until(() => nic.frames.length > 0, 3000, 'the reply');
    const p = parseOut(nic.take()[0]!);
    expect(p.src).toBe(GATEWAY);
    expect(p.dst).toBe(GUEST);
    expect(p.udp!.srcPort).toBe(port);
    expect(p.udp!.dstPort).toBe(5555);
    expect(Buffer.from(p.udp!.data).toString()).toBe('echo:ping');
  });

  it('drops datagrams to addresses that go nowhere, bad checksums, port 0, and replies too big for the MTU', async () => {
    const port = await udpServer((s, m, r) => s.send(Buffer.alloc(MAX_PAYLOAD + 1), r.port, r.address));
    const { stack, nic } = setup();
    stack.transmit(guestUdp(GUEST, 5555, ip(10, 0, 2, 77), 53, Buffer.from('x')));
    stack.transmit(guestUdp(GUEST, 5555, ip(127, 0, 0, 1), 53, Buffer.from('x')));
    stack.transmit(guestUdp(GUEST, 5555, ip(224, 0, 0, 251), 5353, Buffer.from('x')));
    const bad = guestUdp(GUEST, 5555, GATEWAY, port, Buffer.from('x'));
    bad[bad.length - 1] ^= 0xff;
    stack.transmit(bad);
    stack.transmit(guestUdp(GUEST, 0, GATEWAY, port, Buffer.from('x')));
    stack.transmit(guestUdp(GUEST, 5556, GATEWAY, port, Buffer.from('x')));
    await until(() => stack.stats.get('udp-too-large') === 1, 3000);
    expect(stack.stats.get('udp-unroutable')).toBe(3);
    expect(stack.stats.get('udp-checksum')).toBe(1);
    expect(stack.stats.get('udp-port')).toBe(1);
    expect(nic.frames).toHaveLength(0);
  });

  it('keeps at most MAX_FLOWS flows (least recently used closed first)', async () => {
    const port = await udpServer(() => {});
    const { stack } = setup();
    for (let i = 0; i < MAX_FLOWS + 40; i++) stack.transmit(guestUdp(GUEST, 1000 + i, GATEWAY, port, Buffer.from('x')));
    expect(stack.udp.flowCount).toBe(MAX_FLOWS);
  });

  it('a published UDP port: host datagrams reach the guest\'s port, its replies reach the host client', async () => {
    const { stack, nic } = setup({ publish: [{ protocol: 'udp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 5353 }] });
    await stack.connect();
    const hostPort = Number(/:(\d+)\/udp$/.exec(stack.publishedAddresses()[0]!)![1]);
    const client = dgram.createSocket('udp4');
    cleanups.push(() => client.close());
    const got: string[] = [];
    client.on('message', (m) => got.push(m.toString()));
    client.send('question', hostPort, '127.0.0.1');
    await until(() => nic.frames.length > 0, 3000, 'the datagram in the guest');
    const p = parseOut(nic.take()[0]!);
    expect(p.dst).toBe(GUEST);
    expect(p.src).toBe(GATEWAY);
    expect(p.udp!.dstPort).toBe(5353);
    expect(Buffer.from(p.udp!.data).toString()).toBe('question');
    stack.transmit(guestUdp(GUEST, 5353, GATEWAY, p.udp!.srcPort, Buffer.from('answer')));
    await until(() => got.length > 0, 3000, 'the reply at the client');
    expect(got).toEqual(['answer']);
  });
});

describe('DNS relay at 10.0.2.3', () => {
  async function ask(stack: UserNetBackend, nic: FakeNic, q: Uint8Array): Promise<Uint8Array> {
    stack.transmit(guestUdp(GUEST, 40000, DNS, 53, q));
    await until(() => nic.frames.length > 0, 5000, 'the DNS answer');
    const p = parseOut(nic.take()[0]!);
    expect(p.src).toBe(DNS);
    expect(p.udp!.srcPort).toBe(53);
    return p.udp!.data.slice();
  }

  it('answers A from the host resolver (localhost via /etc/hosts), NXDOMAIN for unknown names, NODATA for a missing type', async () => {
    const lookup = (name: string, cb: (e: NodeJS.ErrnoException | null, a: { address: string; family: number }[]) => void): void => {
      if (name === 'host.test') cb(null, [{ address: '192.0.2.7', family: 4 }, { address: '192.0.2.7', family: 4 }]);
      else if (name === 'v6.test') cb(null, [{ address: '2001:db8::1', family: 6 }]);
      else cb(Object.assign(new Error('nope'), { code: 'ENOTFOUND' }), []);
    };
    const { stack, nic } = setup({ dns: { lookup } });
    let a = await ask(stack, nic, dnsQuery('host.test', 1));
    expect(a[3]! & 0xf).toBe(0);
    expect((a[6]! << 8) | a[7]!).toBe(1); // one answer (duplicates merged)
    expect([...a.subarray(a.length - 4)]).toEqual([192, 0, 2, 7]);
    a = await ask(stack, nic, dnsQuery('v6.test', 28));
    expect([...a.subarray(a.length - 16)]).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    a = await ask(stack, nic, dnsQuery('v6.test', 1));
    expect(a[3]! & 0xf).toBe(0);
    expect((a[6]! << 8) | a[7]!).toBe(0);
    a = await ask(stack, nic, dnsQuery('missing.test', 1));
    expect(a[3]! & 0xf).toBe(3);
    expect((a[0]! << 8) | a[1]!).toBe(0x4242);
  });

  it('resolves localhost with the real host resolver', async () => {
    const { stack, nic } = setup();
    const a = await ask(stack, nic, dnsQuery('localhost', 1));
    expect([...a.subarray(a.length - 4)]).toEqual([127, 0, 0, 1]);
  });

  it('forwards other question types to the upstream server (a test DNS server on the host)', async () => {
    const upstreamPort = await udpServer((s, m, r) => {
      const reply = Buffer.from(m);
      reply[2] |= 0x80; // a response with no answers, the id kept
      s.send(reply, r.port, r.address);
    });
    const { stack, nic } = setup({ dns: { upstream: { host: '127.0.0.1', port: upstreamPort } } });
    const a = await ask(stack, nic, dnsQuery('example.test', 16, 0x1234));
    expect((a[0]! << 8) | a[1]!).toBe(0x1234);
    expect(a[2]! & 0x80).toBe(0x80);
  });

  it('drops malformed queries (compression in the question, two questions, a response, bad labels)', async () => {
    const { stack, nic } = setup({ dns: { lookup: (_n, cb) => cb(null, []) } });
    const q = dnsQuery('a.test', 1);
    const ptr = Uint8Array.from([...q.subarray(0, 12), 0xc0, 0x0c, 0, 1, 0, 1]);
    const two = q.slice();
    two[5] = 2;
    const resp = q.slice();
    resp[2] |= 0x80;
    const odd = dnsQuery('a b.test', 1);
    for (const m of [ptr, two, resp, odd, q.subarray(0, 14)]) stack.transmit(guestUdp(GUEST, 40000, DNS, 53, m));
    await new Promise((r) => setTimeout(r, 20));
    expect(nic.frames).toHaveLength(0);
    expect(stack.dns.dropped).toBe(5);
  });
});
