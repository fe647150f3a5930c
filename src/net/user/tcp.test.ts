/**
 * TCP through the stack against real host sockets on the loopback: the guest's end is the small
 * endpoint in testing.ts, the host's a node:net server or client.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { GATEWAY, GUEST, ip } from './layout.js';
import { UserNetBackend } from './stack.js';
import { ACK, FIN, RST, SYN } from './tcp-segment.js';
import { MAX_CONNS, RCV_BUF, SND_BUF } from './tcp.js';
import { concat, FakeNic, GuestTcp, guestTcp, parseOut, until } from './testing.js';

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

async function server(onConn: (s: net.Socket) => void): Promise<number> {
  const srv = net.createServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
let nextPort = 40000;

describe('TCP: guest connections spliced onto host sockets', () => {
  it('handshake, data both ways across a sequence wrap, FIN both ways', async () => {
    let hostGot = Buffer.alloc(0);
    let hostEnded = false;
    const port = await server((s) => {
      s.on('data', (d) => (hostGot = Buffer.concat([hostGot, d])));
      s.on('end', () => {
        hostEnded = true;
        s.end('bye from the host');
      });
    });
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    await g.connect();
    expect(g.synAck?.mss).toBe(1460);
    const up = randomBytes(100_000);
    await g.write(up);
    await until(() => hostGot.length === up.length, 5000, 'the host to get the data');
    expect(sha(hostGot)).toBe(sha(up));
    g.fin();
    await until(() => {
      g.poll();
      return g.gotFin;
    }, 5000, 'the host FIN');
    expect(hostEnded).toBe(true);
    expect(Buffer.from(g.consume()).toString()).toBe('bye from the host');
    await until(() => stack.tcp.connCount === 0, 2000, 'the connection to be forgotten');
  });

  it('host closes first: the guest\'s later FIN is acknowledged (not reset) and the connection forgotten', async () => {
    const port = await server((s) => s.end('done'));
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    await g.connect();
    await until(() => {
      g.poll();
      return g.gotFin;
    }, 3000, 'the host FIN');
    expect(Buffer.from(g.consume()).toString()).toBe('done');
    g.fin();
    await until(() => nic.frames.length > 0, 3000, 'the ACK of the guest FIN');
    const last = parseOut(nic.take()[0]!).tcp!;
    expect(last.flags).toBe(ACK);
    expect(last.ack).toBe(g.seq);
    expect(stack.tcp.connCount).toBe(0);
  });

  it('reordered, duplicated and overlapping guest segments: the host gets each byte once, in order', async () => {
    let hostGot = Buffer.alloc(0);
    const port = await server((s) => s.on('data', (d) => (hostGot = Buffer.concat([hostGot, d]))));
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port, { seq: 0xfffffc00 }); // wraps within the data
    await g.connect();
    const data = randomBytes(4000);
    const base = g.seq;
    const seg = (from: number, to: number): void => {
      stack.transmit(guestTcp({ srcPort: g.port, dst: GATEWAY, dstPort: port, seq: (base + from) >>> 0, ack: g.rcvNxt, flags: ACK, data: data.subarray(from, to) }));
    };
    const acks = async (): Promise<number[]> => {
      await new Promise((r) => setTimeout(r, 5));
      return nic.take().map((f) => (parseOut(f).tcp!.ack - base) | 0);
    };
    seg(0, 1000);
    expect(await acks()).toEqual([1000]);
    seg(2000, 3000); // from the future: dropped, a duplicate ACK
    expect(await acks()).toEqual([1000]);
    seg(1000, 2000);
    seg(1000, 2000); // duplicated
    expect((await acks()).at(-1)).toBe(2000);
    seg(1500, 3000); // overlaps what was taken: only the new half is written
    seg(0, 500); // entirely old
    expect((await acks()).at(-1)).toBe(3000);
    seg(3000, 4000);
    expect((await acks()).at(-1)).toBe(4000);
    await until(() => hostGot.length >= 4000, 3000, 'the bytes at the host');
    await new Promise((r) => setTimeout(r, 20));
    expect(hostGot.length).toBe(4000);
    expect(sha(hostGot)).toBe(sha(data));
  });

  it('a refused connection is a RST to the guest', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    await g.connect();
    expect(g.gotRst).toBe(true);
    expect(stack.tcp.connCount).toBe(0);
  });

  it('segments to nowhere are refused: 10.0.2.3 TCP, a non-SYN to an unknown connection', async () => {
    const { stack, nic } = setup();
    stack.transmit(guestTcp({ srcPort: 1234, dst: ip(10, 0, 2, 3), dstPort: 80, seq: 5, flags: SYN }));
    stack.transmit(guestTcp({ srcPort: 1235, dst: GATEWAY, dstPort: 80, seq: 5, ack: 77, flags: ACK }));
    await until(() => nic.frames.length === 2);
    const [a, b] = nic.take().map((f) => parseOut(f).tcp!);
    expect(a!.flags).toBe(RST | ACK);
    expect(a!.ack).toBe(6);
    expect(b!.flags).toBe(RST);
    expect(b!.seq).toBe(77);
  });

  it('half-close: after the guest\'s FIN the host still sends, then ends', async () => {
    const payload = randomBytes(300_000);
    const port = await server((s) => {
      s.on('end', () => {
        // the guest is done sending; answer after its FIN, then end
        s.end(payload);
      });
      s.resume();
    });
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port, { wscale: 7 });
    g.window = 1 << 20;
    await g.connect();
    await g.write(Buffer.from('request'));
    g.fin();
    const parts: Uint8Array[] = [];
    await until(() => {
      g.poll();
      parts.push(g.consume());
      g.ack();
      return g.gotFin;
    }, 10_000, 'the host\'s data and FIN');
    expect(sha(concat(parts))).toBe(sha(payload));
  });

  it('a guest RST resets the host connection; a host reset is a RST to the guest', async () => {
    const closes: string[] = [];
    const sockets: net.Socket[] = [];
    const port = await server((s) => {
      sockets.push(s);
      s.on('error', (e: NodeJS.ErrnoException) => closes.push(e.code ?? 'error'));
      s.on('close', () => closes.push('close'));
    });
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    await g.connect();
    await until(() => sockets.length === 1);
    g.rst();
    await until(() => closes.includes('close'), 3000, 'the host to see the reset');
    expect(closes).toContain('ECONNRESET');
    expect(stack.tcp.connCount).toBe(0);

    const g2 = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    await g2.connect();
    await until(() => sockets.length === 2);
    sockets[1]!.resetAndDestroy();
    await until(() => {
      g2.poll();
      return g2.gotRst;
    }, 3000, 'a RST to the guest');
    expect(stack.tcp.connCount).toBe(0);
  });

  it('back-pressure host → guest: a guest that does not read closes the window; the stack buffers at most SND_BUF and pauses the host socket', async () => {
    // more than the host's socket buffers can take (tcp_wmem's maximum is 4 MiB, and the
    // receiving socket's window stays small while it is paused): the rest must wait in the
    // sending socket, or the check below would depend on the host's buffer tuning
    const blob = randomBytes(16 << 20);
    let hostSocket: net.Socket | undefined;
    const port = await server((s) => {
      hostSocket = s;
      s.end(blob);
    });
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    g.window = 32 * 1024;
    await g.connect();
    await until(() => {
      g.poll();
      return g.receivedBytes >= 32 * 1024;
    }, 5000, 'the window to fill');
    await new Promise((r) => setTimeout(r, 200));
    g.poll();
    expect(g.receivedBytes).toBe(32 * 1024); // not a byte past the window
    const conn = [...(stack.tcp as unknown as { conns: Map<string, { buf: { length: number } }> }).conns.values()][0]!;
    expect(conn.buf.length).toBeLessThanOrEqual(SND_BUF + 65536);
    expect(hostSocket!.writableLength).toBeGreaterThan(0); // the host is held back
    expect(stack.queued).toBeLessThan(64 * 1024);
    // the guest reads: everything arrives, in order
    expect(sha(await g.readToEnd(20_000, 'the rest of the data'))).toBe(sha(blob));
  }, 30_000);

  it('to a NIC that takes receive offloads (GUEST_TSO4), host data goes in frames of up to 64 KiB with the guest\'s MSS as their segment size', async () => {
    const blob = randomBytes(1 << 20);
    const port = await server((s) => s.end(blob));
    const run = async (gso: number, mss: number): Promise<{ length: number; gsoSize: number }[]> => {
      const { stack, nic } = setup();
      nic.gso = gso;
      const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port, { wscale: 3, mss });
      g.window = 256 * 1024;
      await g.connect();
      expect(sha(await g.readToEnd(20_000, 'all the data'))).toBe(sha(blob));
      return nic.log;
    };
    const big = await run(65550, 1200);
    const data = big.filter((f) => f.length > 54);
    expect(Math.max(...data.map((f) => f.length))).toBeGreaterThan(32 * 1024);
    expect(Math.max(...data.map((f) => f.length))).toBeLessThanOrEqual(14 + 0xffff);
    for (const f of data) expect(f.gsoSize).toBe(f.length - 54 > 1200 ? 1200 : 0);
    // a NIC without the offload gets MSS-sized segments only
    const plain = await run(0, 1460);
    expect(Math.max(...plain.map((f) => f.length))).toBe(54 + 1460);
    expect(plain.every((f) => f.gsoSize === 0)).toBe(true);
  }, 30_000);

  it('back-pressure guest → host: a host that does not read closes the advertised window; its socket buffers at most RCV_BUF', async () => {
    let hostSocket: net.Socket | undefined;
    const port = await server((s) => {
      hostSocket = s;
      s.pause();
    });
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port, { wscale: 7 });
    await g.connect();
    await until(() => hostSocket !== undefined);
    const blob = randomBytes(8 << 20);
    const writing = g.write(blob, 1460, 30_000);
    // the window closes while the host does not read
    await until(() => {
      g.poll();
      return g.peerWnd === 0;
    }, 10_000, 'a zero window');
    const conn = [...(stack.tcp as unknown as { conns: Map<string, { socket: net.Socket }> }).conns.values()][0]!;
    expect(conn.socket.writableLength).toBeLessThanOrEqual(RCV_BUF);
    // the host reads: the window reopens and every byte arrives
    const got: Buffer[] = [];
    hostSocket!.on('data', (d) => got.push(d));
    hostSocket!.resume();
    await writing;
    await until(() => got.reduce((n, b) => n + b.length, 0) === blob.length, 20_000, 'all bytes at the host');
    expect(sha(Buffer.concat(got))).toBe(sha(blob));
  }, 40_000);

  it('retransmits a segment the guest did not acknowledge (go-back-N after the RTO)', async () => {
    const port = await server((s) => s.end('x'.repeat(3000)));
    const { stack, nic } = setup();
    const g = new GuestTcp(stack, nic, nextPort++, GATEWAY, port);
    await g.connect();
    // lose the first data segment: drop whatever arrives before the guest polls
    await until(() => nic.frames.length > 0, 3000);
    nic.take();
    await until(() => {
      g.poll();
      return g.gotFin;
    }, 5000, 'the retransmission');
    expect(Buffer.from(g.consume()).toString()).toBe('x'.repeat(3000));
    expect(stack.stats.get('tcp-retransmit')).toBeGreaterThan(0);
  });

  it('a SYN flood fills at most MAX_CONNS entries; the rest get RST', async () => {
    const port = await server(() => {});
    const { stack, nic } = setup();
    for (let i = 0; i < MAX_CONNS + 50; i++) stack.transmit(guestTcp({ srcPort: 10000 + i, dst: GATEWAY, dstPort: port, seq: i, flags: SYN, mss: 1460 }));
    expect(stack.tcp.connCount).toBe(MAX_CONNS);
    await until(() => nic.frames.length >= 50);
    expect(nic.take().slice(0, 50).every((f) => parseOut(f).tcp!.flags === (RST | ACK))).toBe(true);
    expect(stack.stats.get('tcp-table-full')).toBe(50);
  });
});

describe('TCP: published ports', () => {
  it('a host connection to the published port reaches the guest\'s port; data both ways; FIN both ways', async () => {
    const { stack, nic } = setup({ publish: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 8080 }] });
    await stack.connect();
    const [addr] = stack.publishedAddresses();
    const hostPort = Number(/:(\d+)\/tcp$/.exec(addr!)![1]);
    const client = net.connect({ port: hostPort, host: '127.0.0.1', allowHalfOpen: true });
    let clientGot = '';
    let clientEnded = false;
    client.on('data', (d) => (clientGot += d.toString()));
    client.on('end', () => (clientEnded = true));
    client.write('hello guest');
    // the stack's SYN to 10.0.2.15:8080
    await until(() => nic.frames.length > 0, 3000, 'the SYN to the guest');
    const syn = parseOut(nic.take()[0]!);
    expect(syn.dst).toBe(GUEST);
    expect(syn.src).toBe(GATEWAY);
    expect(syn.tcp!.dstPort).toBe(8080);
    expect(syn.tcp!.flags).toBe(SYN);
    const t = syn.tcp!;
    let seq = 1000;
    let rcv = (t.seq + 1) >>> 0;
    const send = (flags: number, data?: Uint8Array): void => {
      stack.transmit(guestTcp({ srcPort: 8080, dst: GATEWAY, dstPort: t.srcPort, seq, ack: rcv, flags, data, mss: flags & SYN ? 1460 : undefined, wscale: flags & SYN ? 2 : undefined }));
      seq = (seq + (data?.length ?? 0) + (flags & (SYN | FIN) ? 1 : 0)) >>> 0;
    };
    send(SYN | ACK);
    let guestGot = '';
    let sawFin = false;
    const pollGuest = (): void => {
      for (const f of nic.take()) {
        const s = parseOut(f).tcp!;
        if (s.data.length && s.seq === rcv) {
          guestGot += Buffer.from(s.data).toString();
          rcv = (rcv + s.data.length) >>> 0;
        }
        if (s.flags & FIN) {
          sawFin = true;
          rcv = (rcv + 1) >>> 0;
        }
        if (s.data.length || (s.flags & FIN)) send(ACK);
      }
    };
    await until(() => {
      pollGuest();
      return guestGot === 'hello guest';
    }, 3000, 'the client\'s bytes in the guest');
    send(ACK | 0x08, Buffer.from('hello host'));
    await until(() => clientGot === 'hello host', 3000, 'the guest\'s bytes at the client');
    client.end();
    await until(() => {
      pollGuest();
      return sawFin;
    }, 3000, 'the client FIN in the guest');
    send(FIN | ACK);
    await until(() => clientEnded, 3000, 'the guest FIN at the client');
    await until(() => stack.tcp.connCount === 0, 3000, 'the connection to be forgotten');
    client.destroy();
  });

  it('nothing listening in the guest (RST) ends the host connection', async () => {
    const { stack, nic } = setup({ publish: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 0, guestPort: 9}] });
    await stack.connect();
    const hostPort = Number(/:(\d+)\/tcp$/.exec(stack.publishedAddresses()[0]!)![1]);
    const client = net.connect({ port: hostPort, host: '127.0.0.1' });
    let closed = false;
    client.on('error', () => {});
    client.on('close', () => (closed = true));
    await until(() => nic.frames.length > 0, 3000);
    const t = parseOut(nic.take()[0]!).tcp!;
    stack.transmit(guestTcp({ srcPort: 9, dst: GATEWAY, dstPort: t.srcPort, seq: 0, ack: (t.seq + 1) >>> 0, flags: RST | ACK }));
    await until(() => closed, 3000, 'the host connection to end');
    expect(stack.tcp.connCount).toBe(0);
  });

  it('a published port already in use is one clear error before anything runs', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    cleanups.push(() => busy.close());
    const port = (busy.address() as net.AddressInfo).port;
    const stack = new UserNetBackend({ publish: [{ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: port, guestPort: 80 }] });
    await expect(stack.connect()).rejects.toThrow(new RegExp(`^--publish 127\\.0\\.0\\.1:${port}:80: TCP port ${port} on 127\\.0\\.0\\.1 is already in use: stop what uses it or publish another host port`));
  });
});
