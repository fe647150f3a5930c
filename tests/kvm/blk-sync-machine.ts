/**
 * For blk-cost.ts only: the product machine (src/vmm/kvm-machine.ts) with its one raw disk
 * served by synchronous positional I/O in the device thread (readvSync / writevSync /
 * fdatasyncSync while the vCPU waits), to compare with the asynchronous backends + IoPoll.
 */
import { closeSync, fdatasyncSync, fstatSync, openSync, readvSync, writevSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { buildMachine } from '../../src/machine/builder.js';
import type { Machine } from '../../src/machine/machine.js';
import type { KvmMachineContext } from '../../src/kvm/machine-factory.js';
import type { DiskBackend } from '../../src/devices/virtio/blk/backend.js';
import type { KvmMachineConfig } from '../../src/vmm/kvm-machine.js';

export function createKvmMachine(ctx: KvmMachineContext): Machine {
  const disk = (ctx.config as KvmMachineConfig).disks![0]!;
  const fd = openSync(disk.path, 'r+');
  ctx.onExit(() => closeSync(fd));
  const size = fstatSync(fd).size;
  const backend: DiskBackend = {
    size,
    readOnly: false,
    read: (offset, buffers, done) => (readvSync(fd, buffers, offset), done()),
    write: (offset, buffers, done) => (writevSync(fd, buffers, offset), done()),
    flush: (done) => (fdatasyncSync(fd), done()),
    discard: (_o, _l, done) => done(),
    writeZeroes: (_o, _l, done) => done(),
  };
  const { machine } = buildMachine({
    memory: ctx.memory,
    interruptModel: 'in-kernel',
    fillRandom: (bytes) => randomFillSync(bytes),
    serialOut: (bytes) => ctx.post({ type: 'serial-out', bytes: bytes.slice() }),
    disks: [{ backend, serial: disk.serial }],
  });
  return machine;
}
