import { describe, expect, it } from 'vitest';
import { DHCPACK, DHCPDISCOVER, DHCPNAK, DHCPOFFER, DHCPREQUEST, LEASE_SECONDS } from './dhcp.js';
import { BROADCAST_MAC, DNS, GATEWAY, GUEST, ip, NETMASK } from './layout.js';
import { UserNetBackend } from './stack.js';
import { FakeNic, GUEST_MAC, guestUdp, parseOut, until } from './testing.js';

/** A client message as udhcpc sends it (options: type, then `extra`). */
function dhcpMessage(type: number, extra: number[] = [], xid = 0x12345678): Uint8Array {
  const m = new Uint8Array(240 + 3 + extra.length + 1);
  const v = new DataView(m.buffer);
  m[0] = 1;
  m[1] = 1;
  m[2] = 6;
  v.setUint32(4, xid);
  m.set(GUEST_MAC, 28);
  v.setUint32(236, 0x63825363);
  m.set([53, 1, type, ...extra, 255], 240);
  return m;
}

function options(reply: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  let i = 240;
  while (i < reply.length && reply[i] !== 255) {
    if (reply[i] === 0) {
      i++;
      continue;
    }
    out.set(reply[i]!, reply.subarray(i + 2, i + 2 + reply[i + 1]!));
    i += 2 + reply[i + 1]!;
  }
  return out;
}

const u32 = (b: Uint8Array | undefined): number => new DataView(b!.buffer, b!.byteOffset).getUint32(0);

async function exchange(stack: UserNetBackend, nic: FakeNic, msg: Uint8Array): Promise<{ reply: Uint8Array; frame: Uint8Array }> {
  stack.transmit(guestUdp(0, 68, 0xffffffff, 67, msg, BROADCAST_MAC));
  await until(() => nic.frames.length > 0, 2000, 'a DHCP reply');
  const frame = nic.take()[0]!;
  const p = parseOut(frame);
  expect(p.udp?.srcPort).toBe(67);
  expect(p.udp?.dstPort).toBe(68);
  return { reply: p.udp!.data.slice(), frame };
}

describe('DHCP server', () => {
  it('DISCOVER → OFFER of 10.0.2.15, REQUEST → ACK, with router, DNS, mask and lease', async () => {
    const stack = new UserNetBackend();
    const nic = new FakeNic();
    stack.attach(nic);
    const offer = await exchange(stack, nic, dhcpMessage(DHCPDISCOVER));
    expect(offer.frame.subarray(0, 6)).toEqual(GUEST_MAC); // to the client's hardware address
    expect(new DataView(offer.reply.buffer).getUint32(4)).toBe(0x12345678); // xid echoed
    expect(u32(offer.reply.subarray(16, 20))).toBe(GUEST);
    let o = options(offer.reply);
    expect(o.get(53)).toEqual(Uint8Array.of(DHCPOFFER));
    expect(u32(o.get(54))).toBe(GATEWAY);
    expect(u32(o.get(1))).toBe(NETMASK);
    expect(u32(o.get(3))).toBe(GATEWAY);
    expect(u32(o.get(6))).toBe(DNS);
    expect(u32(o.get(51))).toBe(LEASE_SECONDS);

    const ack = await exchange(stack, nic, dhcpMessage(DHCPREQUEST, [50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 2]));
    o = options(ack.reply);
    expect(o.get(53)).toEqual(Uint8Array.of(DHCPACK));
    expect(u32(ack.reply.subarray(16, 20))).toBe(GUEST);

    // renewing: ciaddr set, no requested-IP option; the answer is unicast to it
    const renew = dhcpMessage(DHCPREQUEST);
    renew.set([10, 0, 2, 15], 12);
    stack.transmit(guestUdp(GUEST, 68, GATEWAY, 67, renew));
    await until(() => nic.frames.length > 0, 2000, 'the renewal ACK');
    const r = parseOut(nic.take()[0]!);
    expect(r.dst).toBe(GUEST);
    expect(options(r.udp!.data).get(53)).toEqual(Uint8Array.of(DHCPACK));

    const nak = await exchange(stack, nic, dhcpMessage(DHCPREQUEST, [50, 4, 192, 168, 1, 9]));
    expect(options(nak.reply).get(53)).toEqual(Uint8Array.of(DHCPNAK));
    stack.close();
  });

  it('ignores a REQUEST for another server, and drops malformed messages (counted)', async () => {
    const stack = new UserNetBackend();
    const nic = new FakeNic();
    stack.attach(nic);
    stack.transmit(guestUdp(0, 68, 0xffffffff, 67, dhcpMessage(DHCPREQUEST, [50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 9]), BROADCAST_MAC));
    const runaway = dhcpMessage(DHCPDISCOVER);
    runaway[runaway.length - 1] = 12; // an option whose length runs past the end
    stack.transmit(guestUdp(0, 68, 0xffffffff, 67, runaway, BROADCAST_MAC));
    stack.transmit(guestUdp(0, 68, 0xffffffff, 67, dhcpMessage(DHCPDISCOVER).subarray(0, 200), BROADCAST_MAC));
    const noCookie = dhcpMessage(DHCPDISCOVER);
    noCookie[236] = 0;
    stack.transmit(guestUdp(0, 68, 0xffffffff, 67, noCookie, BROADCAST_MAC));
    await new Promise((r) => setTimeout(r, 10));
    expect(nic.frames).toHaveLength(0);
    expect(stack.stats.get('dhcp-malformed')).toBe(3);
    expect(ip(10, 0, 2, 15)).toBe(GUEST);
    stack.close();
  });
});
