/**
 * What a virtio-blk read costs on the KVM engine, measured with the small guest of blk-guest.ts
 * (MSI-X) on the machine `typevisor run --engine kvm --disk` builds. Not a test:
 *
 *   node --import tsx tests/kvm/blk-cost.ts [reads]
 *
 * Each row runs the guest twice, with 20 and 20 + `reads` IN requests of one 512-byte sector
 * (page cache warm) after its checked ones, and divides the difference of wall (and process CPU)
 * time from the guest's 'S' mark to the end by `reads`. Rows: the device thread's asynchronous
 * backends (libuv's pool) with IoPoll at several intervals (the timer kick that lets the
 * thread's event loop run the completions), and synchronous I/O in the device thread
 * (blk-sync-machine.ts) for comparison.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { KvmMachineConfig } from '../../src/vmm/kvm-machine.js';
import { kvmSkipReason, PRODUCT_MACHINE_MODULE, runGuest } from './harness.js';
import { BLK_GUEST_OK, virtioBlkGuest } from './blk-guest.js';

const SYNC_MACHINE = new URL('./blk-sync-machine.ts', import.meta.url);

async function once(machine: URL, config: KvmMachineConfig, extraReads: number): Promise<{ wallUs: number; cpuUs: number }> {
  let t0 = 0n;
  let c0 = process.cpuUsage();
  const r = await runGuest(virtioBlkGuest({ intx: false, serial: 'cost', extraReads }), {
    machine,
    machineConfig: config,
    timeoutMs: 120_000,
    onEvent: (e) => {
      if ('out' in e && e.out === 'S'.charCodeAt(0)) {
        t0 = process.hrtime.bigint();
        c0 = process.cpuUsage();
      }
    },
  });
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  if (r.reason.kind !== 'debug-exit' || r.reason.value !== BLK_GUEST_OK) throw new Error(`guest failed: ${JSON.stringify(r.reason)}`);
  return { wallUs, cpuUs: cpu.user + cpu.system };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function row(label: string, machine: URL, config: KvmMachineConfig, reads: number): Promise<void> {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < 5; i++) {
    const a = await once(machine, config, 20);
    const b = await once(machine, config, 20 + reads);
    wall.push((b.wallUs - a.wallUs) / reads);
    cpu.push((b.cpuUs - a.cpuUs) / reads);
  }
  console.log(`${label.padEnd(40)} wall ${median(wall).toFixed(1).padStart(6)} µs   CPU ${median(cpu).toFixed(1).padStart(6)} µs   (runs: ${wall.map((w) => w.toFixed(1)).join(', ')})`);
}

const skip = kvmSkipReason();
if (skip) {
  console.log(`cannot measure: ${skip}`);
} else {
  const reads = Number(process.argv[2] ?? 1000);
  const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-blk-cost-'));
  try {
    const img = path.join(dir, 'disk.img');
    writeFileSync(img, new Uint8Array(64 * 1024));
    const disks = [{ path: img, readOnly: false, snapshot: false, serial: 'cost' }];
    console.log(`µs per 512-byte read request (MSI-X), median of 5 (differences of runs with ${reads} more reads)`);
    for (const us of [20, 50, 100, 200]) await row(`async (libuv pool), IoPoll every ${us} µs`, PRODUCT_MACHINE_MODULE, { disks, ioPollNs: us * 1000 }, reads);
    await row('sync (readvSync in the device thread)', SYNC_MACHINE, { disks }, reads);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
