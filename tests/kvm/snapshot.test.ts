/**
 * Pause/resume and snapshot/restore on the kvm engine, with a small guest that counts on the
 * serial port (tests/e2e/guests/counter.asm: the count in ESI, its complement in EDI, a copy in
 * memory, the UART's scratch register set — it prints BAD if any of them disagree):
 *   - pause stops the output, resume continues it, the guest's kvm-clock skips the paused time;
 *   - a snapshot restored in a new Vm continues the count (no gap, no repeat, no BAD);
 *   - two vCPUs (the AP counts too) pause, resume and restore;
 *   - a pause while a guest does disk I/O waits for the requests in flight, and the guest's
 *     virtio-blk driver sees every request complete (blk-guest.ts);
 *   - corrupt snapshots, and kvm ones whose guest saw the host's CPU, are refused in one line
 *     (moves between the engines: cross-engine.test.ts), and the API drives it all.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiServer } from '../../src/api/server.js';
import { MiB } from '../../src/machine/layout.js';
import { Vm, type SnapshotFiles } from '../../src/vmm/vm.js';
import type { KvmEngine } from '../../src/kvm/engine.js';
import type { KvmMachineConfig } from '../../src/vmm/kvm-machine.js';
import { BLK_GUEST_OK, virtioBlkGuest } from './blk-guest.js';
import { PRODUCT_MACHINE_MODULE, kvmSkipReason, runGuest } from './harness.js';

const skip = kvmSkipReason();
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-kvm-snapshot-'));
const kernel = path.join(dir, 'counter.bin');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A state file's JSON, edited freely by the tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A started counter VM and its console text so far. */
async function counterVm(cpus: number, vm?: Vm, disk?: string): Promise<{ vm: Vm; out: () => string }> {
  const disks = disk ? [{ path: disk, readOnly: false, snapshot: false }] : undefined;
  const v = vm ?? (await Vm.create({ memoryBytes: 32 * MiB, cpus, engine: 'kvm', kernel, disks }));
  let text = '';
  v.console.on('data', (b: Buffer) => (text += b.toString('latin1')));
  v.start();
  return { vm: v, out: () => text };
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Complete lines of the form "n=XXXXXXXX ap=XXXXXXXX" as numbers. */
function counts(text: string): { n: number; ap: number }[] {
  return text.split('\n').slice(0, -1).map((l) => {
    const m = /^n=([0-9a-f]{8}) ap=([0-9a-f]{8})$/.exec(l);
    if (!m) throw new Error(`unexpected console line ${JSON.stringify(l)}`);
    return { n: parseInt(m[1]!, 16), ap: parseInt(m[2]!, 16) };
  });
}

/** Every count follows the one before it: the guest lost nothing and repeated nothing. */
function expectConsecutive(text: string): void {
  expect(text).not.toContain('BAD');
  const c = counts(text);
  c.forEach((x, i) => expect(x.n).toBe(i));
}

const lines = (text: string): number => text.split('\n').length - 1;

/** Read the MSR and clock of a snapshot's state file. */
function stateOf(files: SnapshotFiles): { tsc: bigint; clockNs: bigint; tscKhz: number; raw: Record<string, unknown> } {
  const raw = JSON.parse(readFileSync(files.statePath, 'utf8')) as Record<string, unknown>;
  const kvm = raw.kvm as { vm: { clockNs: string }; vcpus: { msrs: { index: number; data: string }[]; tscKhz: number }[] };
  const tsc = BigInt(kvm.vcpus[0]!.msrs.find((m) => m.index === 0x10)!.data);
  return { tsc, clockNs: BigInt(kvm.vm.clockNs), tscKhz: kvm.vcpus[0]!.tscKhz, raw };
}

describe.skipIf(skip)(`pause and snapshots on the kvm engine${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(() => {
    execFileSync('nasm', ['-f', 'bin', '-o', kernel, fileURLToPath(new URL('../e2e/guests/counter.asm', import.meta.url))]);
  });

  it('pause stops the output, resume continues it; the guest\'s kvm-clock does not see the paused time', async () => {
    const { vm, out } = await counterVm(1);
    try {
      await until(() => lines(out()) >= 5, 'five counts');
      await vm.pause();
      expect(vm.state).toBe('paused');
      await vm.pause(); // a second pause is a no-op
      await sleep(50); // console bytes already posted by the device thread
      const held = out();
      await sleep(400);
      expect(out()).toBe(held);
      const first = { statePath: path.join(dir, 'a.state'), memPath: path.join(dir, 'a.mem') };
      await vm.snapshot(first);

      // paused 1 s more, then ~100 ms of running: the guest's kvm-clock advances by about the
      // running time only (the TSC is the host's on kvm_pvm, and QEMU leaves it running too)
      await sleep(1000);
      vm.resume();
      expect(vm.state).toBe('running');
      await until(() => out().length > held.length, 'output after resume');
      await sleep(100);
      await vm.pause();
      const second = { statePath: path.join(dir, 'b.state'), memPath: path.join(dir, 'b.mem') };
      await vm.snapshot(second);
      const a = stateOf(first);
      const b = stateOf(second);
      const tscMs = Number(b.tsc - a.tsc) / b.tscKhz;
      const clockMs = Number(b.clockNs - a.clockNs) / 1e6;
      expect(tscMs).toBeGreaterThan(50);
      expect(clockMs).toBeGreaterThan(50);
      expect(clockMs).toBeLessThan(900); // would be > 1400 had the paused time counted
      console.log(`kvm pause: guest kvm-clock advanced ${clockMs.toFixed(0)} ms and TSC ${tscMs.toFixed(0)} ms across ~1450 ms paused and ~100+ ms running`);
      vm.resume();
      await until(() => lines(out()) >= lines(held) + 60, 'counting on');
      expectConsecutive(out());
    } finally {
      await vm.kill();
    }
  }, 60_000);

  it('a snapshot restored in a new Vm continues the count where it was (with its disk)', async () => {
    const files = { statePath: path.join(dir, 'c.state'), memPath: path.join(dir, 'c.mem') };
    const disk = path.join(dir, 'c.img');
    writeFileSync(disk, new Uint8Array(MiB));
    const { vm, out } = await counterVm(1, undefined, disk);
    await until(() => lines(out()) >= 20, 'twenty counts');
    await vm.pause();
    let t = performance.now();
    await vm.snapshot(files);
    const snapshotMs = performance.now() - t;
    const before = out();
    expect(await vm.kill()).toEqual({ kind: 'quit' });

    // the memory file is sparse: 32 MiB long, a few pages of data
    const st = statSync(files.memPath);
    const memHash = createHash('sha256').update(readFileSync(files.memPath)).digest('hex');
    expect(st.size).toBe(32 * MiB);
    expect(st.blocks * 512).toBeLessThan(4 * MiB);

    // the disk it names must be there
    renameSync(disk, `${disk}.away`);
    await expect(Vm.restore(files)).rejects.toThrow(/c\.img/);
    renameSync(`${disk}.away`, disk);
    expect((stateOf(files).raw.kvm as { devices: { devices: Record<string, unknown> } }).devices.devices).toHaveProperty('virtio-blk0');

    t = performance.now();
    const restored = await Vm.restore(files);
    const restoreMs = performance.now() - t;
    expect(restored.config.engine).toBe('kvm');
    const r = await counterVm(1, restored);
    try {
      await until(() => r.out().includes('\n'), 'the first count after the restore');
      const firstOutputMs = performance.now() - t;
      await until(() => lines(r.out()) >= 10, 'ten counts after the restore');
      // no count printed twice, none skipped, registers, memory and the UART's scratch intact
      const all = before + r.out();
      expectConsecutive(all);
      expect(counts(all).length).toBeGreaterThan(counts(before).length + 9);
      console.log(`kvm snapshot (32 MiB guest): snapshot ${snapshotMs.toFixed(1)} ms, Vm.restore ${restoreMs.toFixed(1)} ms, restore to first output ${firstOutputMs.toFixed(1)} ms, memory file ${st.blocks / 2} KiB allocated`);

      // The restored RAM is the memory file mapped copy-on-write: the guest's writes never
      // reach the file, and a snapshot of the restored VM holds them (its memfd does not).
      expect(readFileSync('/proc/self/maps', 'utf8')).toContain(files.memPath);
      await restored.pause();
      const again = { statePath: path.join(dir, 'd.state'), memPath: path.join(dir, 'd.mem') };
      await restored.snapshot(again);
      const middle = r.out();
      expect(await restored.kill()).toEqual({ kind: 'quit' });
      expect(createHash('sha256').update(readFileSync(files.memPath)).digest('hex')).toBe(memHash);
      const third = await counterVm(1, await Vm.restore(again));
      try {
        await until(() => lines(third.out()) >= 10, 'ten counts after the second restore');
        expectConsecutive(before + middle + third.out());
      } finally {
        await third.vm.kill();
      }
    } finally {
      await restored.kill();
    }
  }, 60_000);

  it('two vCPUs: both hold on pause, both continue after resume and after a restore', async () => {
    const files = { statePath: path.join(dir, 'smp.state'), memPath: path.join(dir, 'smp.mem') };
    const { vm, out } = await counterVm(2);
    try {
      await until(() => counts(out()).some((c) => c.ap >= 2), 'the AP counting');
      await vm.pause();
      await sleep(50);
      const held = out();
      await sleep(300);
      expect(out()).toBe(held);
      await vm.snapshot(files);
      const apBefore = counts(held).at(-1)!.ap;
      vm.resume();
      await until(() => counts(out()).at(-1)!.ap > apBefore + 1, 'the AP counting after resume');
      expectConsecutive(out());
    } finally {
      await vm.kill();
    }
    const restored = await Vm.restore(files);
    expect(restored.config.cpus).toBe(2);
    const r = await counterVm(2, restored);
    try {
      const state = stateOf(files);
      expect((state.raw.kvm as { vcpus: unknown[] }).vcpus).toHaveLength(2);
      await until(() => lines(r.out()) >= 3, 'counts after the restore');
      const after = counts(r.out().slice(r.out().indexOf('\n') + 1));
      const savedAp = after[0]!.ap;
      expect(savedAp).toBeGreaterThan(0); // the AP's memory counter was restored, not reset
      await until(() => counts(r.out().slice(r.out().indexOf('\n') + 1)).at(-1)!.ap > savedAp, 'the restored AP counting');
      expect(r.out()).not.toContain('BAD');
    } finally {
      await restored.kill();
    }
  }, 60_000);

  it('pauses and snapshots with disk I/O going on: requests in flight complete, the guest finishes', async () => {
    const img = path.join(dir, 'io.img');
    writeFileSync(img, new Uint8Array(64 * 1024).fill(0xee));
    const config: KvmMachineConfig = { disks: [{ path: img, readOnly: false, snapshot: false, serial: 'io' }] };
    let cycles = 0;
    let devices: { devices: Record<string, unknown> } | undefined;
    let failure: unknown;
    // after 'S' the guest reads the same sector again and again: pause, snapshot, resume meanwhile
    const cycle = async (engine: KvmEngine): Promise<void> => {
      try {
        for (; cycles < 5; cycles++) {
          await sleep(20);
          await engine.pause();
          const saved = await engine.saveState();
          devices ??= saved.devices as typeof devices;
          engine.resume();
        }
      } catch (e) {
        failure = e;
      }
    };
    const r = await runGuest(virtioBlkGuest({ intx: false, serial: 'io', extraReads: 4000 }), {
      machine: PRODUCT_MACHINE_MODULE,
      machineConfig: config,
      timeoutMs: 50_000,
      onEvent: (e, engine) => {
        if ('out' in e && e.out === 'S'.charCodeAt(0)) void cycle(engine);
      },
    });
    expect(failure).toBeUndefined();
    expect(r.reason).toEqual({ kind: 'debug-exit', value: BLK_GUEST_OK });
    expect(cycles).toBe(5);
    expect(Object.keys(devices!.devices)).toContain('virtio-blk0');
  }, 60_000);

  it('refuses corrupt and cross-engine snapshots in one line', async () => {
    const files = { statePath: path.join(dir, 'c.state'), memPath: path.join(dir, 'c.mem') };
    const good = readFileSync(files.statePath, 'utf8');
    const bad = path.join(dir, 'bad.state');
    const edit = (f: (s: Json) => void): SnapshotFiles => {
      const s = JSON.parse(good) as Json;
      f(s);
      writeFileSync(bad, JSON.stringify(s));
      return { statePath: bad, memPath: files.memPath };
    };
    // moving to the other engine (cross-engine.test.ts): this guest saw the host's CPU model
    await expect(Vm.restore(files, { engine: 'bt' })).rejects.toThrow(/^Cannot restore the kvm snapshot on the bt engine: the guest was offered CPU features the bt engine's CPU lacks/);
    await expect(Vm.restore(edit((s) => (s.engine = 'bt')), { engine: 'kvm' })).rejects.toThrow(/^Cannot restore the snapshot: its bt machine state is missing or not an object \(a corrupt state file\)$/);
    await expect(Vm.restore(edit((s) => (s.kvm.vcpus[0].lapic = 'AAAA')))).rejects.toThrow(/kvm\.vcpus\[0\]\.lapic holds 3 bytes, not 1024 bytes in base64/);
    await expect(Vm.restore(edit((s) => (s.kvm.vcpus[0].regs.rip = 12)))).rejects.toThrow(/kvm\.vcpus\[0\]\.regs\.rip is 12, not a 64-bit value/);
    await expect(Vm.restore(edit((s) => s.kvm.vcpus.push(s.kvm.vcpus[0])))).rejects.toThrow(/kvm\.vcpus holds 2 vCPUs, but the snapshot's configuration has 1/);
    await expect(Vm.restore(edit((s) => delete s.kvm.vm.pit))).rejects.toThrow(/kvm\.vm\.pit is missing/);
    await expect(Vm.restore(edit((s) => (s.engine = 'hyperv')))).rejects.toThrow(/names the engine "hyperv"/);
    // a device section that does not fit this machine: found by the device thread, the VM stops with it
    const r = await Vm.restore(edit((s) => (s.kvm.devices.devices.uart.rxTrigger = 3)));
    r.start();
    const why = await r.wait();
    expect(why).toMatchObject({ kind: 'error' });
    expect((why as { message: string }).message).toMatch(/kvm\.devices\.devices\.uart\.rxTrigger is 3, not 1, 4, 8 or 14/);
    // the snapshot's own files are untouched by all this
    expect(readFileSync(files.statePath, 'utf8')).toBe(good);
  }, 60_000);

  it('the Firecracker API pauses, snapshots and loads a kvm VM', async () => {
    const files = { statePath: path.join(dir, 'api.state'), memPath: path.join(dir, 'api.mem') };
    let text = '';
    let vm1: Vm | undefined;
    const s = new ApiServer({ onVm: (vm) => ((vm1 = vm), vm.console.on('data', (b: Buffer) => (text += b.toString('latin1')))) });
    const put = (p: string, body: unknown) => s.handle('PUT', p, JSON.stringify(body));
    expect(await put('/boot-source', { kernel_image_path: kernel })).toEqual({ status: 204 });
    expect(await put('/machine-config', { vcpu_count: 1, mem_size_mib: 32, typevisor_engine: 'kvm' })).toEqual({ status: 204 });
    expect(await put('/actions', { action_type: 'InstanceStart' })).toEqual({ status: 204 });
    await until(() => lines(text) >= 3, 'counts through the API');
    expect(await s.handle('PATCH', '/vm', JSON.stringify({ state: 'Paused' }))).toEqual({ status: 204 });
    expect((await s.handle('GET', '/', '')).body).toMatchObject({ state: 'Paused' });
    expect(await put('/snapshot/create', { snapshot_path: files.statePath, mem_file_path: files.memPath })).toEqual({ status: 204 });
    expect(await s.handle('PATCH', '/vm', JSON.stringify({ state: 'Resumed' }))).toEqual({ status: 204 });
    expect((await s.handle('GET', '/', '')).body).toMatchObject({ state: 'Running' });
    await vm1?.kill();
    const before = text;

    let text2 = '';
    let vm2: Vm | undefined;
    const s2 = new ApiServer({ onVm: (vm) => ((vm2 = vm), vm.console.on('data', (b: Buffer) => (text2 += b.toString('latin1')))) });
    try {
      expect(await s2.handle('PUT', '/snapshot/load', JSON.stringify({ snapshot_path: files.statePath, mem_backend: { backend_type: 'File', backend_path: files.memPath }, resume_vm: false }))).toEqual({ status: 204 });
      expect((await s2.handle('GET', '/', '')).body).toMatchObject({ state: 'Paused' });
      await sleep(200);
      expect(text2).toBe(''); // loaded paused: nothing runs
      expect(await s2.handle('PATCH', '/vm', JSON.stringify({ state: 'Resumed' }))).toEqual({ status: 204 });
      await until(() => lines(text2) >= 3, 'counts after the load');
      const resumedAt = counts(text2.slice(text2.indexOf('\n') + 1))[0]!.n;
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThanOrEqual(counts(before).length + 1);
    } finally {
      await vm1?.kill();
      await vm2?.kill();
    }
  }, 60_000);
});
