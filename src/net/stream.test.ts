import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NetError, StreamNetBackend, type NetDevice } from './stream.js';

/** A NIC that takes `room` frames, then none until `space()`. */
function fakeNic(room: number) {
  const got: number[][] = [];
  let cb: () => void = () => {};
  const nic: NetDevice & { room: number } = {
    room,
    receive: (f) => {
      if (nic.room === 0) return false;
      nic.room--;
      got.push([...f]);
      return true;
    },
    onRxSpace: (l) => (cb = l),
  };
  return { nic, got, space: (n: number) => ((nic.room += n), cb()) };
}

const framed = (f: number[]): Buffer => Buffer.concat([Buffer.from([0, 0, (f.length >> 8) & 0xff, f.length & 0xff]), Buffer.from(f)]);

async function pair(room: number) {
  const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-net-'));
  const sock = path.join(dir, 's');
  let peer!: net.Socket;
  const server = net.createServer((c) => (peer = c));
  await new Promise<void>((r) => server.listen(sock, r));
  const nic = fakeNic(room);
  const be = new StreamNetBackend(sock, 2000);
  await be.connect();
  be.attach(nic.nic);
  await new Promise((r) => setTimeout(r, 20));
  return { be, peer, server, ...nic };
}

const tick = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('StreamNetBackend', () => {
  it('passes frames both ways with QEMU stream framing, whatever the chunking', async () => {
    const { be, peer, server, got } = await pair(10);
    const received: Buffer[] = [];
    peer.on('data', (d: Buffer) => received.push(d));
    be.transmit(Uint8Array.of(1, 2, 3));
    const both = Buffer.concat([framed([9, 8, 7]), framed([6])]);
    for (let i = 0; i < both.length; i++) peer.write(both.subarray(i, i + 1));
    await tick();
    expect(Buffer.concat(received)).toEqual(framed([1, 2, 3]));
    expect(got).toEqual([[9, 8, 7], [6]]);
    be.close();
    server.close();
  });

  it('keeps a frame the guest cannot take and delivers it when buffers come: nothing dropped', async () => {
    const { be, peer, server, got, space } = await pair(1);
    peer.write(Buffer.concat([framed([1]), framed([2]), framed([3])]));
    await tick();
    expect(got).toEqual([[1]]);
    space(5);
    await tick();
    expect(got).toEqual([[1], [2], [3]]);
    be.close();
    server.close();
  });

  it('closes a connection that sends an impossible length', async () => {
    const { peer, server } = await pair(5);
    const closed = new Promise((r) => peer.on('close', r));
    peer.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await closed;
    server.close();
  });

  it('says what to do when the socket is missing', async () => {
    const nic = fakeNic(1);
    const be = new StreamNetBackend('/nonexistent/typevisor.sock', 2000);
    be.attach(nic.nic);
    await expect(be.connect()).rejects.toThrow(NetError);
    await expect(be.connect()).rejects.toThrow(/\(no such socket\): start the network back end first/);
  });
});
