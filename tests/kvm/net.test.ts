/**
 * virtio-net on the KVM engine: the card lives in the device thread (src/vmm/kvm-machine.ts), the
 * network back end on the main thread, and frames cross through the relay (src/net/relay.ts).
 * A small guest (net-guest.ts) checks the card's MAC, sends an ARP request for the user
 * network's gateway 10.0.2.2 and must get src/net/user's answer back:
 *  - with the machine and a relay built here, the guest posts its receive buffer only after
 *    the answer has reached the relay, so the answer must wait there (back-pressure: never
 *    dropped) until the guest refills;
 *  - through the CLI (`typevisor run --engine kvm --net user,mac=...`), the whole path Vm uses.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/guest-process.js';
import type { KvmMachineConfig } from '../../src/vmm/kvm-machine.js';
import { NetRelayHost } from '../../src/net/relay.js';
import { UserNetBackend } from '../../src/net/user/stack.js';
import { kvmSkipReason, PRODUCT_MACHINE_MODULE, runGuest } from './harness.js';
import { NET_FAIL, NET_GO_FLAG, NET_GUEST_OK, virtioNetGuest } from './net-guest.js';

const skip = kvmSkipReason();
if (skip) console.warn(`skipping KVM virtio-net tests: ${skip}`);

const failure = (value: number): string => Object.entries(NET_FAIL).find(([, v]) => v === value)?.[0] ?? `value 0x${value.toString(16)}`;

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-kvm-net-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skip)('virtio-net on the KVM engine', () => {
  it('relays an ARP request to the user network and its answer back, held until the guest posts a buffer', async () => {
    const mac = [0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c];
    const backend = new UserNetBackend({});
    await backend.connect();
    let relay: NetRelayHost | undefined;
    let go: NodeJS.Timeout | undefined;
    let heldMs = 0;
    try {
      const config: KvmMachineConfig = { net: { mac, rxChecksumsValid: true } };
      const r = await runGuest(virtioNetGuest({ mac, waitGo: true }), {
        machine: PRODUCT_MACHINE_MODULE,
        machineConfig: config,
        timeoutMs: 20_000,
        onStart: (engine, memory) => {
          relay = new NetRelayHost((m, transfer) => engine.post(m, transfer), (frame) => backend.transmit(frame));
          backend.attach(relay);
          // once the answer is in the relay, give the device thread time to try the card (no
          // buffers yet), then let the guest post its buffer
          const since = Date.now();
          go = setInterval(() => {
            if (relay!.framesIn === 0) return;
            clearInterval(go);
            go = setTimeout(() => {
              heldMs = Date.now() - since;
              memory.writeBytes(NET_GO_FLAG, Uint8Array.of(1));
            }, 100);
          }, 2);
        },
        onMessage: (m) => relay?.handle(m) ?? false,
      });
      const got = r.reason.kind === 'debug-exit' ? failure(r.reason.value) : JSON.stringify(r.reason);
      expect(r.reason, got).toEqual({ kind: 'debug-exit', value: NET_GUEST_OK });
      expect(r.out).toBe('S');
      expect(relay!.framesOut).toBe(1); // the request
      expect(relay!.framesIn).toBe(1); // the answer
      expect(heldMs).toBeGreaterThanOrEqual(100);
      expect(backend.guestMac).toEqual(Uint8Array.from(mac)); // learned from the request
    } finally {
      clearInterval(go);
      clearTimeout(go);
      backend.close();
    }
  });

  it('typevisor run --engine kvm --net user,mac=...: the guest has that MAC and the gateway answers it', () => {
    const mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0e];
    const kernel = path.join(dir, 'net.bin');
    writeFileSync(`${kernel}.asm`, virtioNetGuest({ mac, multiboot: true }));
    execFileSync('nasm', ['-f', 'bin', '-o', kernel, `${kernel}.asm`]);
    const args = ['--import', 'tsx', CLI, 'run', '--engine', 'kvm', '-m', '64M', '--kernel', kernel, '--net', 'user,mac=52:54:00:AB:CD:0E'];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', input: '', timeout: 60_000 });
    const value = r.status === null ? -1 : r.status >> 1;
    expect(r.status, `${failure(value)}: ${r.stderr}`).toBe((NET_GUEST_OK << 1) | 1);
    expect(r.stdout).toBe('S');
  });
});
