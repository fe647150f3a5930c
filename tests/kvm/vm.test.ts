/**
 * The Vm object on the kvm engine, in-process, with a small multiboot guest (a kvm_pvm host
 * runs no ordinary kernel): the console as a stream, the engine chosen, pause and resume (more
 * in snapshot.test.ts), and stop() ending the VM (the idle guest ignores the power button, so
 * the deadline kills it) with everything released.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MiB } from '../../src/machine/layout.js';
import { Vm } from '../../src/vmm/vm.js';
import { kvmSkipReason } from './harness.js';

const skip = kvmSkipReason();
const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-kvm-vm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skip)(`Vm on the kvm engine${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('runs a small guest: console stream, pause and resume, stop by deadline', async () => {
    const kernel = path.join(dir, 'idle.bin');
    execFileSync('nasm', ['-f', 'bin', '-o', kernel, fileURLToPath(new URL('../e2e/guests/idle.asm', import.meta.url))]);
    const vm = await Vm.create({ memoryBytes: 64 * MiB, cpus: 1, engine: 'kvm', kernel });
    expect(vm.config.engine).toBe('kvm');
    let out = '';
    vm.console.on('data', (b: Buffer) => (out += b.toString('latin1')));
    vm.start();
    while (!out.includes('idle kernel up')) await new Promise((r) => setTimeout(r, 20));
    await vm.pause();
    expect(vm.state).toBe('paused');
    vm.resume();
    expect(vm.state).toBe('running');
    await vm.pause();
    expect(await vm.stop(300)).toEqual({ kind: 'quit' }); // stop() resumes a paused VM first
    await expect(vm.pause()).rejects.toThrow(/cannot pause: it is stopped/);
    expect(vm.state).toBe('stopped');
  }, 60_000);

  it('50 create/start/kill cycles with a disk leave no fds, threads or locks behind', async () => {
    const kernel = path.join(dir, 'idle.bin');
    if (!existsSync(kernel)) execFileSync('nasm', ['-f', 'bin', '-o', kernel, fileURLToPath(new URL('../e2e/guests/idle.asm', import.meta.url))]);
    const image = path.join(dir, 'disk.img');
    writeFileSync(image, Buffer.alloc(MiB));
    const held = (): { fds: number; threads: number } => ({
      fds: readdirSync('/proc/self/fd').length,
      threads: Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]),
    });
    const cycle = async (): Promise<void> => {
      const vm = await Vm.create({ memoryBytes: 32 * MiB, cpus: 1, engine: 'kvm', kernel, disks: [{ path: image, readOnly: false, snapshot: false }] });
      let out = '';
      vm.console.on('data', (b: Buffer) => (out += b.toString('latin1')));
      vm.start();
      while (!out.includes('idle kernel up')) await new Promise((r) => setTimeout(r, 5));
      expect(await vm.kill()).toEqual({ kind: 'quit' });
    };
    for (let i = 0; i < 3; i++) await cycle(); // warm-up: lazily loaded modules, worker pools
    await new Promise((r) => setTimeout(r, 200));
    const before = held();
    for (let i = 0; i < 50; i++) await cycle();
    await new Promise((r) => setTimeout(r, 200)); // worker threads finish exiting
    const after = held();
    expect(after.fds).toBeLessThanOrEqual(before.fds);
    expect(after.threads).toBeLessThanOrEqual(before.threads);
    expect(existsSync(`${image}.typevisor-lock`)).toBe(false);
  }, 180_000);
});
