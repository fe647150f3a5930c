import { describe, expect, it } from 'vitest';
import { ARP_REPLY, ARP_SIZE, parseArp } from './arp.js';
import { BROADCAST_MAC, DNS, GATEWAY, GATEWAY_MAC, GUEST, ip } from './layout.js';
import { ETH_HEADER, ETHERTYPE_ARP, newFrame } from './ethernet.js';
import { UserNetBackend } from './stack.js';
import { FakeNic, GUEST_MAC, until } from './testing.js';

function arpRequest(target: number, sender = GUEST, op = 1): Uint8Array {
  const f = newFrame(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, ARP_SIZE);
  const v = new DataView(f.buffer);
  const o = ETH_HEADER;
  v.setUint16(o, 1);
  v.setUint16(o + 2, 0x0800);
  f[o + 4] = 6;
  f[o + 5] = 4;
  v.setUint16(o + 6, op);
  f.set(GUEST_MAC, o + 8);
  v.setUint32(o + 14, sender);
  v.setUint32(o + 24, target);
  return f;
}

async function setup(): Promise<{ stack: UserNetBackend; nic: FakeNic }> {
  const stack = new UserNetBackend();
  const nic = new FakeNic();
  stack.attach(nic);
  return { stack, nic };
}

describe('ARP', () => {
  it('answers for the gateway and the DNS relay with the gateway MAC', async () => {
    const { stack, nic } = await setup();
    for (const target of [GATEWAY, DNS]) {
      stack.transmit(arpRequest(target));
      await until(() => nic.frames.length > 0);
      const r = parseArp(nic.take()[0]!)!;
      expect(r.op).toBe(ARP_REPLY);
      expect(r.senderMac).toEqual(GATEWAY_MAC);
      expect(r.senderIp).toBe(target);
      expect(r.targetIp).toBe(GUEST);
    }
    stack.close();
  });

  it('stays silent for the guest\'s own address (udhcpc\'s conflict probe), others, and replies', async () => {
    const { stack, nic } = await setup();
    stack.transmit(arpRequest(GUEST, 0));
    stack.transmit(arpRequest(ip(10, 0, 2, 99)));
    stack.transmit(arpRequest(GATEWAY, GUEST, 2));
    await new Promise((r) => setTimeout(r, 10));
    expect(nic.frames).toHaveLength(0);
    stack.close();
  });

  it('drops truncated and non-IPv4 ARP, counted', async () => {
    const { stack, nic } = await setup();
    stack.transmit(arpRequest(GATEWAY).subarray(0, ETH_HEADER + 20));
    const bad = arpRequest(GATEWAY);
    bad[ETH_HEADER + 5] = 16; // IPv6-sized protocol addresses
    stack.transmit(bad);
    await new Promise((r) => setTimeout(r, 10));
    expect(nic.frames).toHaveLength(0);
    expect(stack.stats.get('arp-malformed')).toBe(2);
    stack.close();
  });
});
