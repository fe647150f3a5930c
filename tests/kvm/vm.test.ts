/**
 * The Vm object on the kvm engine, in-process, with a small multiboot guest (a kvm_pvm host
 * runs no ordinary kernel): the console as a stream, the engine chosen, pause refused with a
 * clear line, and stop() ending the VM (the idle guest ignores the power button, so the
 * deadline kills it) with everything released.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
  it('runs a small guest: console stream, no pause, stop by deadline', async () => {
    const kernel = path.join(dir, 'idle.bin');
    execFileSync('nasm', ['-f', 'bin', '-o', kernel, fileURLToPath(new URL('../e2e/guests/idle.asm', import.meta.url))]);
    const vm = await Vm.create({ memoryBytes: 64 * MiB, cpus: 1, engine: 'kvm', kernel });
    expect(vm.config.engine).toBe('kvm');
    let out = '';
    vm.console.on('data', (b: Buffer) => (out += b.toString('latin1')));
    vm.start();
    while (!out.includes('idle kernel up')) await new Promise((r) => setTimeout(r, 20));
    await expect(vm.pause()).rejects.toThrow(/pausing needs the bt engine/);
    expect(await vm.stop(300)).toEqual({ kind: 'quit' });
    expect(vm.state).toBe('stopped');
  }, 60_000);
});
