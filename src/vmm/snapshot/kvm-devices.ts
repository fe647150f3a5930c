/**
 * The devices of a kvm-engine machine (src/vmm/kvm-machine.ts) as snapshot state: the same
 * device sections as the bt engine's (devices.ts: UART, i8042, RTC, ACPI PM, pvpanic, the virtio
 * functions, the PCI host), without the interrupt controllers and the PIT, which KVM keeps in
 * the kernel (their state is the engine's, src/kvm/vm.ts). Runs in the device thread, as the
 * machine's KvmMachineHooks.
 *
 *   { clockNs, devices: { uart: ..., "virtio-blk0": ..., ... } }
 *
 * `clockNs` is the machine clock (frozen by the pause) that device timers and counters run on;
 * the restored machine's clock continues from it.
 */
import type { KvmMachineHooks } from '../../kvm/machine-factory.js';
import type { BuiltMachine } from '../../machine/builder.js';
import type { Clock } from '../../machine/clock.js';
import { BlockDevice } from '../../devices/virtio/blk/blk.js';
import { SnapshotError, invalid, show } from './check.js';
import { deviceSections } from './devices.js';

export interface KvmDevicesState {
  clockNs: number;
  devices: Record<string, unknown>;
}

interface SettableClock extends Clock {
  setNowNs(ns: number): void;
}

const blocks = (built: BuiltMachine): { name: string; dev: BlockDevice }[] =>
  built.virtioFunctions.flatMap(({ name, fn }) => (fn.device instanceof BlockDevice ? [{ name, dev: fn.device }] : []));

/** How long a pause waits for disk I/O in flight before giving up (a stuck host file system). */
const QUIESCE_LIMIT_MS = 30_000;

export function kvmMachineHooks(built: BuiltMachine): KvmMachineHooks {
  return {
    async quiesce() {
      const started = performance.now();
      for (;;) {
        const busy = blocks(built).find((b) => b.dev.inFlight > 0);
        if (!busy) return;
        if (performance.now() - started > QUIESCE_LIMIT_MS) {
          throw new SnapshotError(`${busy.name} still has ${busy.dev.inFlight} disk requests in flight after ${QUIESCE_LIMIT_MS / 1000} s: the host's disk is not answering`);
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    },
    save(): KvmDevicesState {
      for (const { name, dev } of blocks(built)) {
        if (dev.inFlight !== 0) throw new SnapshotError(`Cannot save the machine: ${name} has ${dev.inFlight} disk requests in flight; pause the VM first (pausing drains disk I/O)`);
      }
      built.uart.flush(); // pending output is output, not state
      const devices: Record<string, unknown> = {};
      for (const s of deviceSections(built)) devices[s.name] = s.save();
      return { clockNs: built.machine.clock.nowNs(), devices };
    },
    restore(raw: unknown) {
      restoreKvmDevices(built, raw);
    },
  };
}

/** Check `raw` against `built` (a fresh machine of the snapshot's configuration), then apply it. */
export function restoreKvmDevices(built: BuiltMachine, raw: unknown): void {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('kvm.devices', `is ${show(raw)}, not an object (a corrupt state file)`);
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (k !== 'clockNs' && k !== 'devices') throw new SnapshotError(`Cannot restore the snapshot: kvm.devices has a field "${k}" this typevisor does not know (a corrupt state file)`);
  }
  const clockNs = r.clockNs;
  if (typeof clockNs !== 'number' || !Number.isFinite(clockNs) || clockNs < 0 || clockNs > Number.MAX_SAFE_INTEGER) {
    throw invalid('kvm.devices.clockNs', `is ${show(clockNs)}, not a machine time in nanoseconds`);
  }
  const devices = r.devices;
  if (typeof devices !== 'object' || devices === null || Array.isArray(devices)) throw invalid('kvm.devices.devices', `is ${show(devices)}, not an object of device states`);
  const clock = built.machine.clock as Partial<SettableClock>;
  if (typeof clock.setNowNs !== 'function') throw new SnapshotError('Cannot restore the snapshot: this machine\'s clock cannot be set (build it with a HostClock)');

  const sections = deviceSections(built);
  const mine = sections.map((s) => s.name);
  const theirs = Object.keys(devices);
  const missing = mine.filter((n) => !theirs.includes(n));
  const extra = theirs.filter((n) => !mine.includes(n));
  if (missing.length || extra.length) {
    const parts = [extra.length ? `the snapshot has ${extra.join(', ')}, which this machine lacks` : '', missing.length ? `this machine has ${missing.join(', ')}, which the snapshot lacks` : ''].filter(Boolean);
    throw new SnapshotError(`Cannot restore the snapshot: it was taken on a machine with other devices (${parts.join('; ')}); build the machine with the snapshot's configuration`);
  }
  // Every field first, then apply: the clock (devices re-arm their timers relative to it), then
  // the devices in order (they re-drive their interrupt lines into KVM's irqchip, whose own
  // state the engine puts back afterwards).
  const dev = devices as Record<string, unknown>;
  const parsed = sections.map((s) => s.parse(dev[s.name], `kvm.devices.devices.${s.name}`));
  clock.setNowNs(clockNs);
  sections.forEach((s, i) => s.apply(parsed[i]));
}
