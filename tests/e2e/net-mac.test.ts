/**
 * The network card's MAC across a VM's life, on the bt engine with the idle multiboot kernel (no
 * Linux boot: the guest's view of the MAC is checked in net-user.test.ts and tests/kvm/net.test.ts):
 * `--net user` without mac= has QEMU's 52:54:00:12:34:56; stream (and tap) get a random
 * 52:54:00:xx:xx:xx, logged once, recorded in the VM's config — and so in a snapshot, whose
 * restore rebuilds the card with it (restoreMachine refuses a card with another MAC: a state file
 * edited to name another one does not restore).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MiB } from '../../src/machine/layout.js';
import type { NetConfig } from '../../src/vmm/config.js';
import { Vm } from '../../src/vmm/vm.js';

const NASM = '/usr/bin/nasm';
const here = path.dirname(fileURLToPath(import.meta.url));
const skip = existsSync(NASM) ? undefined : 'nasm missing';
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-net-mac-'));
const kernel = path.join(dir, 'idle.bin');
if (!skip) execFileSync(NASM, ['-f', 'bin', '-o', kernel, path.join(here, 'guests/idle.asm')]);

const sockets: net.Socket[] = [];
const server = net.createServer((s) => {
  sockets.push(s);
  s.resume(); // a switch that takes every frame and sends none
});
afterAll(() => {
  for (const s of sockets) s.destroy();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

const macOf = (n: NetConfig | undefined): string | undefined => (n && n.mode !== 'none' ? n.mac : undefined);

describe.skipIf(skip)('the network card\'s MAC', () => {
  it('user: 52:54:00:12:34:56 unless given; stream: a random 52:54:00 address, logged, that a snapshot keeps', async () => {
    const base = { memoryBytes: 16 * MiB, cpus: 1, engine: 'bt' as const, kernel };
    const u = await Vm.create({ ...base, net: { mode: 'user', publish: [] } });
    expect(macOf(u.config.net)).toBe('52:54:00:12:34:56');
    await u.kill();
    const given = await Vm.create({ ...base, net: { mode: 'user', publish: [], mac: '52:54:00:00:00:4A' } });
    expect(macOf(given.config.net)).toBe('52:54:00:00:00:4a');
    await given.kill();
    // a program's config is checked as the CLI's is
    await expect(Vm.create({ ...base, net: { mode: 'user', publish: [], mac: '53:54:00:00:00:01' } })).rejects.toThrow(/^the network card's MAC \(net\.mac\): 53:54:00:00:00:01 is a multicast address/);

    const sock = path.join(dir, 'switch.sock');
    await new Promise<void>((r) => server.listen(sock, r));
    const lines: string[] = [];
    const a = await Vm.create({ ...base, net: { mode: 'stream', path: sock } }, { log: (l) => lines.push(l) });
    const mac = macOf(a.config.net)!;
    expect(mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(lines).toEqual([`typevisor: the network card's MAC is ${mac} (random; add ,mac=${mac} to --net to keep it)`]);
    const other = await Vm.create({ ...base, net: { mode: 'stream', path: sock } });
    expect(macOf(other.config.net)).not.toBe(mac); // (one chance in 16 million)
    await other.kill();

    const up = new Promise<void>((resolve) => {
      let out = '';
      a.on('console', (b) => (out += Buffer.from(b).toString('latin1')).includes('idle kernel up') && resolve());
    });
    a.start();
    await up;
    await a.pause();
    const files = { statePath: path.join(dir, 'vm.state'), memPath: path.join(dir, 'vm.mem') };
    await a.snapshot(files);
    await a.kill();

    const restored = await Vm.restore(files);
    expect(macOf(restored.config.net)).toBe(mac);
    restored.start();
    const within = (ms: number): Promise<unknown> => Promise.race([restored.wait(), new Promise((r) => setTimeout(() => r('running'), ms))]);
    expect(await within(300)).toBe('running');
    await restored.kill();

    // the card is built from the recorded MAC: a state file whose config names another fails to restore
    const state = JSON.parse(readFileSync(files.statePath, 'utf8')) as { config: { net: { mac: string } } };
    state.config.net.mac = '52:54:00:99:99:99';
    writeFileSync(files.statePath, JSON.stringify(state));
    const tampered = await Vm.restore(files);
    tampered.start();
    expect(await tampered.wait()).toEqual({ kind: 'error', message: expect.stringMatching(`holds MAC ${mac}, this machine's card has 52:54:00:99:99:99`) });
  }, 60_000);
});
