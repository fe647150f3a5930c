/**
 * Several VMs in one process, and what a VM leaves behind (bt engine, in-process, small
 * bare-metal guests from guests/compute.asm assembled with nasm):
 *  - two VMs running at once each compute their own value (translated to WebAssembly) and end
 *    through the debug-exit port with it; stopping, pausing or killing one leaves the others
 *    running to their correct results;
 *  - 50 create/start/stop cycles — run to the end, stop (power button, then the deadline), with
 *    a raw disk attached, paused and killed while paused — leave no open files, threads,
 *    memory mappings, timers, process listeners or Vm objects behind, and the RSS does not grow
 *    beyond noise (a full GC before each sample).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fullGc } from '../../src/engine/bt/gc.js';
import { MiB } from '../../src/machine/layout.js';
import type { DiskConfig } from '../../src/vmm/config.js';
import { Vm } from '../../src/vmm/vm.js';
import { ASM_INCLUDE } from '../support/asm.js';

const NASM = '/usr/bin/nasm';
const here = path.dirname(fileURLToPath(import.meta.url));
const skip = existsSync(NASM) ? undefined : 'nasm missing';
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-lifecycle-'));
const kernel = path.join(dir, 'compute.bin');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => {
  if (!skip) execFileSync(NASM, ['-f', 'bin', '-i', ASM_INCLUDE, '-w-zeroing', '-o', kernel, path.join(here, 'guests/compute.asm')]);
});

/** What compute.asm's "hash N SEED" ends with. */
function expectedHash(n: number, seed: number): number {
  let x = (seed | 1) >>> 0;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    acc = (Math.imul(acc, 31) + x + seed) >>> 0;
  }
  return acc;
}

/** A VM of the compute kernel; `up` resolves once the guest printed its first line. */
async function computeVm(cmdline: string, disks?: DiskConfig[]): Promise<{ vm: Vm; up: Promise<void> }> {
  const vm = await Vm.create({ memoryBytes: 16 * MiB, cpus: 1, engine: 'bt', kernel, cmdline, disks });
  let text = '';
  const up = new Promise<void>((resolve) => {
    const onData = (b: Buffer): void => {
      text += b.toString('latin1');
      if (/ up\n/.test(text)) {
        vm.console.off('data', onData);
        resolve();
      }
    };
    vm.console.on('data', onData);
  });
  return { vm, up };
}

/** Never ends on its own (2^31 - 1 rounds): stopped, paused or killed by the test. */
const FOREVER = 0x7fffffff;

describe.skipIf(skip !== undefined)(`several VMs in one process (bt engine)${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('two VMs running at once each exit through debug-exit with their own value', async () => {
    const n = 5_000_000;
    const a = await computeVm(`hash ${n} 11`);
    const b = await computeVm(`hash ${n} 22`);
    const events: string[] = [];
    void a.up.then(() => events.push('a up'));
    void b.up.then(() => events.push('b up'));
    a.vm.start();
    b.vm.start();
    const [ra, rb] = await Promise.all([
      a.vm.wait().then((r) => (events.push('a stopped'), r)),
      b.vm.wait().then((r) => (events.push('b stopped'), r)),
    ]);
    expect(ra).toEqual({ kind: 'debug-exit', value: expectedHash(n, 11) });
    expect(rb).toEqual({ kind: 'debug-exit', value: expectedHash(n, 22) });
    expect(expectedHash(n, 11)).not.toBe(expectedHash(n, 22));
    // both were running at the same time
    expect(events.slice(0, 2).sort()).toEqual(['a up', 'b up']);
  }, 60_000);

  it('stopping, pausing or killing one VM leaves the others running to their results', async () => {
    const n = 30_000_000; // about half a second of the host's CPU: it is still running after the kill
    const runs = await computeVm(`hash ${n} 33`); // runs to its end meanwhile
    const paused = await computeVm(`hash ${n} 44`); // paused while the others run, then resumed
    const stopped = await computeVm('idle'); // stop(): no ACPI in this guest, so the deadline
    const killed = await computeVm(`hash ${FOREVER} 55`); // killed while its translated code runs
    const all = [runs, paused, stopped, killed];
    for (const v of all) v.vm.start();
    await Promise.all(all.map((v) => v.up));

    await paused.vm.pause();
    expect(paused.vm.state).toBe('paused');
    expect(await stopped.vm.stop(50)).toEqual({ kind: 'quit' });
    expect(await killed.vm.kill()).toEqual({ kind: 'quit' });
    expect(runs.vm.state).toBe('running');
    expect(await runs.vm.wait()).toEqual({ kind: 'debug-exit', value: expectedHash(n, 33) });
    expect(paused.vm.state).toBe('paused');
    paused.vm.resume();
    expect(await paused.vm.wait()).toEqual({ kind: 'debug-exit', value: expectedHash(n, 44) });
    expect(all.map((v) => v.vm.state)).toEqual(['stopped', 'stopped', 'stopped', 'stopped']);
  }, 60_000);

  it('a dozen VMs with a disk each run at once: each its own result, no process warnings, every lock released', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const n = 1_000_000;
      const vms = await Promise.all(Array.from({ length: 12 }, (_, i) => {
        const image = path.join(dir, `many-${i}.img`);
        writeFileSync(image, Buffer.alloc(MiB));
        return computeVm(`hash ${n} ${100 + i}`, [{ path: image, readOnly: false, snapshot: false }]);
      }));
      for (const v of vms) v.vm.start();
      const reasons = await Promise.all(vms.map((v) => v.vm.wait()));
      expect(reasons).toEqual(vms.map((_, i) => ({ kind: 'debug-exit', value: expectedHash(n, 100 + i) })));
      for (let i = 0; i < vms.length; i++) expect(existsSync(path.join(dir, `many-${i}.img.typevisor-lock`))).toBe(false);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  }, 60_000);
});

/** What the process holds, from /proc/self and Node. */
interface Sample {
  fds: number;
  threads: number;
  maps: number;
  rssMib: number;
  /** Timers, sockets, ... keeping the event loop alive. */
  handles: number;
  /** Listeners on `process` (signals, exit). */
  processListeners: number;
}

async function settle(): Promise<void> {
  // a few rounds: finalizers and freed wasm memories need their own turns of the event loop
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 20));
    fullGc();
  }
}

function sample(): Sample {
  const status = readFileSync('/proc/self/status', 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)![1]);
  return {
    fds: readdirSync('/proc/self/fd').length,
    threads: field('Threads'),
    maps: readFileSync('/proc/self/maps', 'utf8').split('\n').length,
    rssMib: Math.round(field('VmRSS') / 1024),
    handles: process.getActiveResourcesInfo().length,
    processListeners: process.eventNames().reduce((n, e) => n + process.listenerCount(e), 0),
  };
}

describe.skipIf(skip !== undefined)(`a VM's stop frees everything (bt engine)${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const image = path.join(dir, 'disk.img');
  const lock = `${image}.typevisor-lock`;

  /** One create/start/stop cycle, of four kinds. */
  const refs: WeakRef<Vm>[] = [];
  /** The stopped VMs, held as a caller may hold them: the stop itself must free the machine. */
  const kept: Vm[] = [];
  const track = (vm: Vm): void => {
    refs.push(new WeakRef(vm));
    kept.push(vm);
  };

  async function cycle(i: number): Promise<void> {
    switch (i % 4) {
      case 0: { // runs to its end (hot code translated to WebAssembly)
        const { vm } = await computeVm(`hash 300000 ${i}`);
        track(vm);
        vm.start();
        expect(await vm.wait()).toEqual({ kind: 'debug-exit', value: expectedHash(300000, i) });
        break;
      }
      case 1: { // stop(): the power button, then the deadline
        const { vm, up } = await computeVm('idle');
        track(vm);
        vm.start();
        await up;
        expect(await vm.stop(20)).toEqual({ kind: 'quit' });
        break;
      }
      case 2: { // a raw disk attached: its file and lock go with the VM
        const { vm, up } = await computeVm('idle', [{ path: image, readOnly: false, snapshot: false }]);
        track(vm);
        vm.start();
        await up;
        expect(existsSync(lock)).toBe(true);
        expect(await vm.kill()).toEqual({ kind: 'quit' });
        expect(existsSync(lock)).toBe(false);
        break;
      }
      default: { // paused in the middle of translated code, killed while paused
        const { vm, up } = await computeVm(`hash ${FOREVER} ${i}`);
        track(vm);
        vm.start();
        await up;
        await vm.pause();
        expect(vm.state).toBe('paused');
        expect(await vm.kill()).toEqual({ kind: 'quit' });
        expect(vm.state).toBe('stopped');
      }
    }
  }

  it('50 create/start/stop cycles leave no fds, threads, mappings, timers or listeners behind, and no RSS growth', async () => {
    writeFileSync(image, Buffer.alloc(MiB));
    // warm up: modules loaded, V8's and libuv's threads started, code compiled
    for (let i = 0; i < 8; i++) await cycle(i);
    await settle();
    const before = sample();
    for (let i = 0; i < 50; i++) await cycle(i);
    await settle();
    const after = sample();
    console.log(`50 VM cycles: before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`);

    expect(after.fds).toBeLessThanOrEqual(before.fds);
    expect(after.threads).toBeLessThanOrEqual(before.threads);
    expect(after.handles).toBeLessThanOrEqual(before.handles);
    expect(after.processListeners).toBeLessThanOrEqual(before.processListeners);
    // a VM kept alive holds at least its wasm memory's mapping and ~9 MiB resident (guest RAM
    // touched by the boot, the arena's tables): 50 of them would be far above these bounds
    expect(after.maps - before.maps).toBeLessThan(25);
    expect(after.rssMib - before.rssMib).toBeLessThan(48);
    // and once the caller lets go, nothing else holds a Vm
    kept.length = 0;
    await settle();
    expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
  }, 120_000);
});
