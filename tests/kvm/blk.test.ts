/**
 * virtio-blk on the KVM engine: the machine `typevisor run --engine kvm --disk IMG` builds, with
 * the image opened in the device thread (src/vmm/kvm-machine.ts), driven by a small guest
 * (blk-guest.ts) that writes a sector, reads it back, asks for the serial and flushes — once
 * with MSI-X, once with INTx. Afterwards the image on the host holds the pattern at that sector
 * and nothing else changed (with `snapshot`, nothing at all). Then the CLI: `--disk` with `--engine kvm` runs (a multiboot kernel
 * that exits at once), the lock is held while the guest runs and gone afterwards (also when a
 * signal ends the VM), and the main thread's refusals still apply.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/guest-process.js';
import type { KvmMachineConfig } from '../../src/vmm/kvm-machine.js';
import { LOCK_SUFFIX } from '../../src/vmm/disk/lock.js';
import { kvmSkipReason, PRODUCT_MACHINE_MODULE, runGuest } from './harness.js';
import { BLK_FAIL, BLK_GUEST_OK, BLK_SECTOR, blkPattern, virtioBlkGuest } from './blk-guest.js';

const skip = kvmSkipReason();
if (skip) console.warn(`skipping KVM virtio-blk tests: ${skip}`);

const failure = (value: number): string => Object.entries(BLK_FAIL).find(([, v]) => v === value)?.[0] ?? `value 0x${value.toString(16)}`;

const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-kvm-blk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 64 KiB raw image filled with 0xee, so that zeros would not pass for the guest's write. */
function image(name: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, new Uint8Array(64 * 1024).fill(0xee));
  return file;
}

describe.skipIf(skip)('virtio-blk on the KVM engine', () => {
  for (const intx of [false, true]) {
    it(`writes, reads back, GET_ID and FLUSH from a small guest, through ${intx ? 'INTx (IOAPIC)' : 'MSI-X'}`, async () => {
      const img = image(`disk-${intx ? 'intx' : 'msix'}.img`);
      const serial = 'tv-kvm-blk.1';
      const config: KvmMachineConfig = { disks: [{ path: img, readOnly: false, snapshot: false, serial }] };
      const r = await runGuest(virtioBlkGuest({ intx, serial }), { machine: PRODUCT_MACHINE_MODULE, machineConfig: config, timeoutMs: 20_000 });
      // A guest still waiting for its interrupt after 20 s is stopped with `quit`.
      const got = r.reason.kind === 'debug-exit' ? failure(r.reason.value) : JSON.stringify(r.reason);
      expect(r.reason, got).toEqual({ kind: 'debug-exit', value: BLK_GUEST_OK });
      expect(r.out).toBe('S');
      // The device thread has closed the image: the write is in the file, nothing else moved.
      const bytes = new Uint8Array(readFileSync(img));
      const at = BLK_SECTOR * 512;
      expect(Buffer.from(bytes.subarray(at, at + 512)).equals(blkPattern())).toBe(true);
      expect(bytes.subarray(0, at).every((b) => b === 0xee)).toBe(true);
      expect(bytes.subarray(at + 512).every((b) => b === 0xee)).toBe(true);
    });
  }

  it('with snapshot, the guest reads back its write from the overlay and the image stays as it was', async () => {
    const img = image('disk-snapshot.img');
    const config: KvmMachineConfig = { disks: [{ path: img, readOnly: false, snapshot: true, serial: 'snap' }] };
    const r = await runGuest(virtioBlkGuest({ intx: false, serial: 'snap' }), { machine: PRODUCT_MACHINE_MODULE, machineConfig: config, timeoutMs: 20_000 });
    const got = r.reason.kind === 'debug-exit' ? failure(r.reason.value) : JSON.stringify(r.reason);
    expect(r.reason, got).toEqual({ kind: 'debug-exit', value: BLK_GUEST_OK });
    expect(new Uint8Array(readFileSync(img)).every((b) => b === 0xee)).toBe(true);
  });
});

/** A multiboot (v1) kernel that exits through port 0xf4 with 0x21 at once: status 0x43. */
const EXIT_KERNEL = `
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, image_end, image_end, start
start:
  mov dx, 0xf4
  mov eax, 0x21
  out dx, eax
  cli
  hlt
image_end:
`;

describe.skipIf(skip)('typevisor run --engine kvm --disk', () => {
  const kernel = path.join(dir, 'exit.bin');
  const run = (...disk: string[]) => {
    if (!existsSync(kernel)) {
      writeFileSync(`${kernel}.asm`, EXIT_KERNEL);
      execFileSync('nasm', ['-f', 'bin', '-o', kernel, `${kernel}.asm`]);
    }
    const args = ['--import', 'tsx', CLI, 'run', '--engine', 'kvm', '-m', '64M', '--kernel', kernel, ...disk.flatMap((d) => ['--disk', d])];
    return spawnSync(process.execPath, args, { encoding: 'utf8', input: '', timeout: 60_000 });
  };
  /** stderr without the warning a kvm_pvm host gets ("no hardware virtualization"). */
  const refusals = (stderr: string): string[] => stderr.trim().split('\n').filter((l) => !l.startsWith('typevisor: warning:'));

  it('runs the guest with the disk attached and releases the lock at the end', () => {
    const img = image('cli.img');
    const r = run(img, `${image('cli-ro.img')},ro`, `${image('cli-snap.img')},snapshot,serial=snap1`);
    expect(r.stderr).not.toMatch(/needs the bt engine/);
    expect(r.status, r.stderr).toBe((0x21 << 1) | 1);
    expect(existsSync(img + LOCK_SUFFIX)).toBe(false);
  });

  it('holds the lock while the guest runs and releases it when a signal ends the VM (status 143)', async () => {
    const idle = path.join(dir, 'idle.bin');
    execFileSync('nasm', ['-f', 'bin', '-o', idle, fileURLToPath(new URL('../e2e/guests/idle.asm', import.meta.url))]);
    const img = image('signal.img');
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'run', '--engine', 'kvm', '-m', '64M', '--kernel', idle, '--disk', img], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const up = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString('latin1');
        if (out.includes('idle kernel up')) resolve();
      }),
    );
    const status = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await Promise.race([up, status]);
      expect(out).toContain('idle kernel up');
      expect(readFileSync(img + LOCK_SUFFIX, 'utf8')).toBe(`${child.pid}\n`);
      child.kill('SIGTERM');
      expect(await status).toBe(143);
      expect(existsSync(img + LOCK_SUFFIX)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('still refuses in the main thread: a missing image (one line, status 12), an image in use (status 12)', () => {
    const missing = run(path.join(dir, 'nope.img'));
    expect(missing.status).toBe(12);
    expect(refusals(missing.stderr)).toEqual([expect.stringMatching(/nope\.img not found/)]);

    const img = image('busy.img');
    writeFileSync(img + LOCK_SUFFIX, `${process.pid}\n`); // held by a live process: this one
    try {
      const busy = run(img);
      expect(busy.status).toBe(12);
      expect(refusals(busy.stderr)).toEqual([expect.stringMatching(/busy\.img.*in use|in use.*busy\.img/)]);
      expect(readFileSync(img + LOCK_SUFFIX, 'utf8')).toBe(`${process.pid}\n`); // not taken over
    } finally {
      rmSync(img + LOCK_SUFFIX, { force: true });
    }
  });
});
