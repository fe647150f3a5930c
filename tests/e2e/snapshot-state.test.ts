/**
 * The snapshot state layer on a real guest: the default Debian kernel and initramfs boot to a
 * shell on a bt machine built in this process; a shell loop counts in the background (sleep
 * needs timer interrupts); the machine's state and RAM go to a second machine built the same
 * way; there the shell answers, the count continues from where it was, and guest time went on
 * from the snapshot's time (no jump back, no leap over the time between save and restore).
 *
 * This drives the CPU with a small loop of its own (the bt engine's: slices, due timers, sleep
 * while halted) rather than BtEngine, so it tests saveMachine/restoreMachine alone.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bootImage } from '../../src/boot/loader.js';
import { Cpu } from '../../src/cpu/core/cpu.js';
import { simdUnit } from '../../src/cpu/fpu/index.js';
import { applyEntryState } from '../../src/cpu/system/entry.js';
import { withArena } from '../../src/cpu/wasm/arena.js';
import { MemoryDiskBackend } from '../../src/devices/virtio/blk/backend.js';
import { prepareDefaultGuest } from '../../src/guest/default-guest.js';
import { buildMachine, type BuiltMachine } from '../../src/machine/builder.js';
import { HostClock } from '../../src/machine/clock.js';
import { MiB } from '../../src/machine/layout.js';
import { GuestMemory } from '../../src/machine/memory.js';
import { ramRegionSpecs } from '../../src/machine/ram.js';
import { restoreMachine, saveMachine, type MachineState } from '../../src/vmm/snapshot/state.js';
import { copyRam } from '../../src/vmm/snapshot/testing.js';
import { findKernel, NO_KERNEL_REASON } from '../support/kernel.js';

const RAM = 256 * MiB;
const DISK_BYTES = 4 * MiB;
const CMDLINE = 'console=ttyS0 reboot=k panic=-1';

/** One machine: built like runBtOnce builds it, driven like the bt engine drives it. */
class Guest {
  readonly memory = new GuestMemory(withArena(ramRegionSpecs(RAM)));
  readonly built: BuiltMachine;
  readonly cpu: Cpu;
  output = '';
  private input: number[] = [];

  constructor(readonly disk: MemoryDiskBackend) {
    this.built = buildMachine({
      memory: this.memory,
      interruptModel: 'emulated',
      serialOut: (b) => (this.output += Buffer.from(b).toString('latin1')),
      clock: new HostClock(),
      fillRandom: (b) => randomFillSync(b),
      disks: [{ backend: disk, serial: 'snapdisk' }],
    });
    const m = this.built.machine;
    this.cpu = new Cpu({ memory: this.memory, pio: m.pio, mmio: m.mmio, interrupts: this.built.lapic!, clock: m.clock, simd: simdUnit });
    this.memory.onDmaWrite((a, n) => this.cpu.notifyPhysWrite(a, n));
  }

  send(text: string): void {
    this.input.push(...Buffer.from(text, 'latin1'));
  }

  /** Run until `re` appears in the output after `from` (or the timeout). */
  async runUntil(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const { cpu, built } = this;
    const { timers, clock } = built.machine;
    const end = performance.now() + timeoutMs;
    let lastYield = performance.now();
    for (;;) {
      const m = this.output.slice(from).match(re);
      if (m) return m;
      if (performance.now() > end) throw new Error(`timed out waiting for ${re}; output ends: ${JSON.stringify(this.output.slice(-400))}`);
      if (this.input.length && built.uart.canReceive()) this.input.splice(0, built.uart.receive(Uint8Array.from(this.input)));
      cpu.run(50_000);
      built.uart.flush();
      if (cpu.shutdown !== undefined) throw new Error(`the guest triple-faulted: ${cpu.shutdown}`);
      if (built.machine.stopReason) throw new Error(`the guest stopped: ${JSON.stringify(built.machine.stopReason)}`);
      if (timers.nextDeadline() <= clock.nowNs()) timers.runDue();
      if (cpu.s.halted && !built.lapic!.hasInterrupt()) {
        const ms = Math.min(5, Math.max(0, (timers.nextDeadline() - clock.nowNs()) / 1e6));
        await new Promise((r) => setTimeout(r, ms));
        timers.runDue();
        lastYield = performance.now();
      } else if (performance.now() - lastYield > 8) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
  }

  /**
   * A shell command's output (between markers the shell builds, so the echo does not match),
   * without the kernel's console messages that may land in between ("[   25.16] hrtimer: ...").
   */
  async sh(cmd: string, timeoutMs = 120_000): Promise<string> {
    const tag = Math.random().toString(36).slice(2, 8);
    const from = this.output.length;
    this.send(`echo "<<$((1))${tag}"; ${cmd}; echo "${tag}$((2))>>"\n`);
    const m = await this.runUntil(new RegExp(`<<1${tag}\\r?\\n([\\s\\S]*?)${tag}2>>`), timeoutMs, from);
    return m[1]!.replace(/\r/g, '').split('\n').filter((l) => !/^\[\s*\d+\.\d+\] /.test(l)).join('\n').trimEnd();
  }
}

const kernel = findKernel();

describe.skipIf(kernel === undefined)(`saveMachine/restoreMachine with Linux${kernel === undefined ? ` (skipped: ${NO_KERNEL_REASON})` : ''}`, () => {
  it('a booted guest restored into a new machine: the shell answers, a counting loop continues, time goes on from the snapshot', async () => {
    const guest = await prepareDefaultGuest({ log: () => {} });
    const disk = new MemoryDiskBackend(DISK_BYTES);
    randomFillSync(disk.bytes);
    const md5 = (from: number, len: number): string => createHash('md5').update(disk.bytes.subarray(from, from + len)).digest('hex');
    const a = new Guest(disk);
    const booted = bootImage(a.memory, readFileSync(guest.kernelPath), { cmdline: CMDLINE, initrd: readFileSync(guest.initrdPath), rngSeed: randomBytes(32), cpus: 1, acpi: { pci: true } });
    applyEntryState(a.cpu, booted.entry);
    await a.runUntil(/TYPEVISOR-INIT-OK/, 10 * 60_000);
    expect(await a.sh('echo $((6*7))')).toBe('42');
    // the disk's queue in use before the snapshot: a read, and a write that B must see
    expect(await a.sh('dd if=/dev/vda bs=4096 count=16 2>/dev/null | md5sum')).toBe(`${md5(0, 65536)}  -`);
    await a.sh('printf snap-before | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; sync');
    // (written to a new file and renamed: a reader never sees a half-written count)
    a.send('(i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.2; done) &\n');
    await a.sh('sleep 1');
    const before = Number(await a.sh('cat /tmp/count'));
    expect(before).toBeGreaterThan(1);
    const uptimeA = Number((await a.sh('cut -d" " -f1 /proc/uptime')));

    // pause (A is not running: we are between slices), save, copy RAM; wait as a stored snapshot would
    const state = JSON.parse(JSON.stringify(saveMachine(a.built, a.cpu))) as MachineState;
    await new Promise((r) => setTimeout(r, 4000));
    // the disk as the host left it (B opens the same image)
    const diskB = new MemoryDiskBackend(DISK_BYTES);
    diskB.bytes.set(disk.bytes);
    expect(Buffer.from(diskB.bytes.subarray(51200, 51211)).toString()).toBe('snap-before');
    const b = new Guest(diskB);
    copyRam(a.memory, b.memory);
    const t0 = performance.now();
    restoreMachine(b.built, b.cpu, state);
    const restoreMs = performance.now() - t0;
    expect(restoreMs).toBeLessThan(200);

    expect(await b.sh('echo $((6*7))')).toBe('42');
    const uptimeB = Number(await b.sh('cut -d" " -f1 /proc/uptime'));
    expect(uptimeB).toBeGreaterThanOrEqual(uptimeA);
    // not the 4 s the snapshot sat, nor B's own age: at most the host time since the restore (on
    // a loaded host the two shell commands above alone can take 3 s)
    expect(uptimeB - uptimeA).toBeLessThan((performance.now() - t0) / 1000 + 1);
    const first = Number(await b.sh('cat /tmp/count'));
    expect(first).toBeGreaterThanOrEqual(before);
    // timers fire: sleep 0.2 returns, again and again. (Each turn of the loop forks three
    // programs, which on a loaded host can take longer than the sleep: wait for three turns,
    // up to 30 s of guest time, rather than counting turns in a fixed second.)
    const laterText = await b.sh(`for k in $(seq 30); do sleep 1; [ "$(cat /tmp/count)" -gt ${first + 2} ] && break; done; cat /tmp/count`);
    expect(laterText, b.output.slice(-3000)).toMatch(/^\d+$/);
    expect(Number(laterText)).toBeGreaterThan(first + 2);
    // the disk's queue goes on where it was: reads past the page cache, a write
    await b.sh('echo 3 > /proc/sys/vm/drop_caches');
    expect(await b.sh('dd if=/dev/vda bs=4096 skip=32 count=64 2>/dev/null | md5sum')).toBe(`${md5(32 * 4096, 64 * 4096)}  -`);
    expect(await b.sh('dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 11')).toBe('snap-before');
    await b.sh('printf snap-after | dd of=/dev/vda bs=512 seek=200 conv=fsync 2>/dev/null; sync');
    expect(Buffer.from(diskB.bytes.subarray(102400, 102410)).toString()).toBe('snap-after');
    // the entropy device still serves requests
    expect(await b.sh('head -c 16 /dev/hwrng 2>/dev/null | wc -c || echo none')).toMatch(/^(16|none)$/);
    expect(await b.sh('dmesg | grep -ci -e "rcu.*stall" -e "clocksource.*unstable" -e "virtio.*error" || true')).toBe('0');
    expect(JSON.stringify(state).length).toBeLessThan(256 * 1024);
  }, 15 * 60_000);
});
