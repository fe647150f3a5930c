/**
 * The machine factory the KVM engine's device thread imports (see src/kvm/machine-factory.ts):
 * the same devices as under the bt engine, minus the interrupt controllers and the PIT, which
 * KVM provides in the kernel. Console bytes travel to and from the main thread as messages.
 * virtio-rng is on, as under bt: its MSI-X messages leave through the KvmMsiSink the engine
 * installs on machine.msi, its INTx through KVM_IRQ_LINE; its BAR is served from the MMIO exits
 * of this (the device) thread, over this thread's views of the guest RAM memfd.
 *
 * virtio-blk (`--disk`): the main thread has checked and locked the images (Vm.open, vm.ts); this
 * thread opens them again, without locking, by the same code (src/vmm/disk/open.ts), so the
 * backends' asynchronous positional I/O moves data straight between the files and this thread's
 * views of guest RAM. Completions arrive on this thread's event loop, which runs only when the
 * thread leaves KVM_RUN: IoPoll (src/kvm/io-poll.ts) keeps a timer kick due while I/O is in
 * flight. The files are closed when the thread ends (ctx.onExit), on every path.
 *
 * virtio-net (`--net`): the network back end stays on the main thread (Vm, vm.ts); frames cross
 * as messages through the relay (src/net/relay.ts), in moved ArrayBuffers, with a credit window
 * each way so back-pressure carries across and what is in flight is bounded. Frames for the guest
 * need no timer: engine.post kicks this thread out of KVM_RUN and the frames are handed to the
 * card before it re-enters; the guest's frames leave in the microtask flush before KVM_RUN.
 */
import { randomFillSync } from 'node:crypto';
import { buildMachine } from '../machine/builder.js';
import type { Machine } from '../machine/machine.js';
import type { KvmMachineContext, KvmMachineHooks, KvmMachineWarmUp } from '../kvm/machine-factory.js';
import { GuestMemory } from '../machine/memory.js';
import { MiB } from '../machine/layout.js';
import type { DiskBackend } from '../devices/virtio/blk/backend.js';
import { IoPoll, polledDisk } from '../kvm/io-poll.js';
import type { DiskConfig } from './config.js';
import { openDisks } from './disk/open.js';
import { kvmMachineHooks } from './snapshot/kvm-devices.js';
import { NetRelayDevice } from '../net/relay.js';

export type ConsoleMessage = { type: 'serial-out'; bytes: Uint8Array } | { type: 'serial-in'; bytes: Uint8Array } | { type: 'power-button' };

/** What the Vm (vm.ts, bootKvm) passes the device thread (structured-cloned). */
export interface KvmMachineConfig {
  /** `--disk` images, already checked and locked by the main thread. */
  disks?: DiskConfig[];
  /** IoPoll's interval (ns) while disk I/O is in flight; default IO_POLL_INTERVAL_NS. */
  ioPollNs?: number;
  /**
   * A virtio-net card, its frames relayed to the main thread's back end (NetRelayHost): its MAC
   * (6 bytes) and whether the back end's frames carry correct checksums (the user network).
   */
  net?: { mac: number[]; rxChecksumsValid?: boolean; guestTso?: boolean };
  /** ACPI S3: the DSDT offers \_S3 (one vCPU only); the vCPU thread sleeps and wakes the guest. */
  s3?: boolean;
}

export async function createKvmMachine(ctx: KvmMachineContext): Promise<Machine> {
  const config = (ctx.config ?? {}) as KvmMachineConfig;
  const poll = new IoPoll(config.ioPollNs);
  let disks: { backend: DiskBackend; serial?: string }[] = [];
  if (config.disks?.length) {
    const open = await openDisks(config.disks, { lock: false });
    ctx.onExit(() => open.close()); // waits for I/O in flight, then closes the files
    disks = open.disks.map((d) => ({ backend: polledDisk(d.backend, poll), serial: d.serial }));
  }
  const net = config.net;
  if (net !== undefined && (!Array.isArray(net.mac) || net.mac.length !== 6 || !net.mac.every((b) => Number.isInteger(b) && b >= 0 && b <= 255))) {
    throw new RangeError('the kvm machine config\'s net.mac is not 6 bytes');
  }
  const relay = net ? new NetRelayDevice((m, transfer) => ctx.post(m, transfer)) : undefined;
  const built = buildMachine({
    memory: ctx.memory,
    interruptModel: 'in-kernel',
    fillRandom: (bytes) => randomFillSync(bytes), // virtio-rng
    serialOut: (bytes) => ctx.post({ type: 'serial-out', bytes: bytes.slice() } satisfies ConsoleMessage),
    disks, // virtio-blk
    s3: config.s3 === true, // the vCPU thread keeps out of KVM_RUN in S3 (vcpu-worker.ts, sleepInS3)
    // virtio-net: the guest's frames to the main thread (copied once, then moved)
    net: relay && net ? { mac: Uint8Array.from(net.mac), transmit: (f) => relay.transmit(f), txReady: () => relay.txReady(), rxChecksumsValid: net.rxChecksumsValid, guestTso: net.guestTso } : undefined,
  });
  const { machine, uart, pm, virtioNet } = built;
  ctx.provide(kvmMachineHooks(built)); // pause drains the disks; snapshots save the devices
  if (relay && virtioNet) relay.attach(virtioNet);
  poll.attach(machine.timers);
  // Input the UART could not take yet waits here until the guest drains its FIFO.
  const backlog: Uint8Array[] = [];
  const pump = (): void => {
    while (backlog.length) {
      const head = backlog[0]!;
      const n = uart.receive(head);
      if (n < head.length) {
        backlog[0] = head.subarray(n);
        return;
      }
      backlog.shift();
    }
  };
  uart.onRxSpace(pump);
  ctx.onMessage((m) => {
    if (relay?.handle(m)) return; // frames for the guest, credit for its frames
    const msg = m as ConsoleMessage;
    if (msg?.type === 'power-button') pm.pressPowerButton(); // Vm.stop(): the guest shuts down
    else if (msg?.type === 'serial-in' && msg.bytes instanceof Uint8Array) {
      if (msg.bytes.length) pm.wakeEvent(); // a key typed wakes a guest in S3
      backlog.push(msg.bytes);
      pump();
    }
  });
  // Serial output is batched per microtask; under KVM the thread returns to its loop often.
  return machine;
}

/**
 * Build a throwaway machine and restore its own saved devices into it, in a thread waiting for
 * its vCPU (src/kvm/machine-factory.ts, KvmMachineWarmUp). Why: the first run of this code pays
 * for V8 compiling it, measured on a restore's device thread (256 MiB, median of 11): building
 * the machine 3.3 ms and checking and restoring its devices 3.6 ms cold, against ~0.5 ms each
 * warm. Over 2 MiB of plain memory, no disk and no network card: nothing outside this thread.
 */
export const warmUp: KvmMachineWarmUp = async (more) => {
  let hooks: KvmMachineHooks | undefined;
  const noop = (): void => {};
  await createKvmMachine({ memory: new GuestMemory([{ base: 0, size: 2 * MiB }]), config: { s3: true }, cpus: 1, post: noop, onMessage: noop, onExit: noop, provide: (h) => (hooks = h) });
  if (!hooks || !(await more())) return;
  // through JSON, as a state file brings it
  hooks.restore(JSON.parse(JSON.stringify(hooks.save())));
};
