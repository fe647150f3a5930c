/**
 * The saveable state of a bt-engine machine: the vCPUs, every device and the machine clock as
 * one versioned, engine-independent, JSON-serializable object — and back into a freshly built
 * machine of the same configuration, so that the guest continues exactly where it was.
 *
 * Guest RAM is not part of it (the caller writes and loads the memory file); neither is the
 * machine configuration (the caller keeps it beside). What the caller must do around it:
 *
 *   save:    pause the vCPU at an instruction boundary and let disk I/O drain (nothing may be
 *            in flight: saveMachine refuses otherwise), then saveMachine + copy RAM.
 *   restore: build a machine and a Cpu from the same configuration (same RAM size, disks,
 *            network card, console), with a clock that can be set (HostClock); load RAM;
 *            restoreMachine; run. Nothing is changed when restoreMachine throws.
 *
 * Time: `clockNs` is the machine clock at the save. Restore sets the new machine's clock to it,
 * so guest time (TSC, PIT, RTC, ACPI PM timer, local APIC timer) continues from there: it does
 * not jump back, and it does not leap over the time the snapshot was stored. Device timers are
 * re-armed relative to the restored clock; the TSC continues from its saved value.
 */
import type { Cpu } from '../../cpu/core/cpu.js';
import type { BuiltMachine } from '../../machine/builder.js';
import type { Clock } from '../../machine/clock.js';
import { BlockDevice } from '../../devices/virtio/blk/blk.js';
import { SnapshotError, check, invalid, num, show } from './check.js';
import { applyCpu, parseCpu, saveCpu, type CpuSnapshot } from './cpu.js';
import { deviceSections } from './devices.js';

export { SnapshotError } from './check.js';
export type { CpuSnapshot, SegmentSnapshot, DtableSnapshot } from './cpu.js';

/** Version of the state format; a restore refuses any other. */
export const STATE_VERSION = 1;

export interface MachineState {
  version: number;
  /** The machine clock (ns) at the save: the restored machine's clock continues from it. */
  clockNs: number;
  cpu: CpuSnapshot;
  /**
   * The other vCPUs (application processors), in order, with several: each one's registers and
   * whether it waits for a STARTUP IPI (not started yet, or sent INIT). Absent with one vCPU.
   */
  aps?: ApSnapshot[];
  /** Each device's state, by device name ("uart", "lapic", "lapic1", "virtio-blk0", ...). */
  devices: Record<string, unknown>;
}

export interface ApSnapshot {
  cpu: CpuSnapshot;
  waitingSipi: boolean;
}

/**
 * An application processor as saveMachine takes it and restoreMachine fills it: a Cpu on this
 * thread, or (`thread`) one on a thread of its own, which saved its state when it paused and
 * takes a restored one before it runs.
 */
export type Ap =
  | { cpu: Cpu; waitingSipi: boolean; thread?: undefined }
  | { cpu?: undefined; waitingSipi: boolean; thread: { saved(): CpuSnapshot; restore(snap: CpuSnapshot, clockNs: number): void } };

/** A clock a restore can move (HostClock is one). */
interface SettableClock extends Clock {
  setNowNs(ns: number): void;
}

function settable(clock: Clock): clock is SettableClock {
  return typeof (clock as Partial<SettableClock>).setNowNs === 'function';
}

/**
 * The state of `built` and its vCPU `cpu` now. The vCPU must be stopped between instructions
 * (not inside cpu.run) and no disk request in flight. Pending UART output is flushed to the
 * console first (it is output, not state).
 */
export function saveMachine(built: BuiltMachine, cpu: Cpu, aps: readonly Ap[] = []): MachineState {
  for (const c of [cpu, ...aps.flatMap((a) => (a.cpu ? [a.cpu] : []))]) {
    if (c.memory !== built.machine.memory) throw new SnapshotError('Cannot save the machine: the CPU given does not run this machine (another guest memory)');
    if (c.shutdown !== undefined) throw new SnapshotError(`Cannot save the machine: its CPU has shut down (${c.shutdown}); there is nothing to resume`);
  }
  if (aps.length !== Math.max(0, built.lapics.length - 1)) throw new SnapshotError(`Cannot save the machine: it has ${Math.max(1, built.lapics.length)} vCPUs, and ${aps.length + 1} were given`);
  for (const { name, fn } of built.virtioFunctions) {
    if (fn.device instanceof BlockDevice && fn.device.inFlight !== 0) {
      throw new SnapshotError(`Cannot save the machine: ${name} has ${fn.device.inFlight} disk requests in flight; pause the VM first (pausing drains disk I/O)`);
    }
  }
  built.uart.flush();
  const clockNs = built.machine.clock.nowNs();
  const devices: Record<string, unknown> = {};
  for (const s of deviceSections(built)) devices[s.name] = s.save();
  const state: MachineState = { version: STATE_VERSION, clockNs, cpu: saveCpu(cpu, clockNs), devices };
  if (aps.length) state.aps = aps.map((a) => ({ cpu: a.cpu ? saveCpu(a.cpu, clockNs) : a.thread.saved(), waitingSipi: a.waitingSipi }));
  return state;
}

const TOP_FIELDS = ['version', 'clockNs', 'cpu', 'aps', 'devices'];

/**
 * Put `state` into a freshly built machine `built` and its vCPU `cpu` (same configuration as the
 * saved one). Everything is checked first: a state of another version, for other devices, or
 * with any malformed or impossible field throws a SnapshotError (one line saying what and what to
 * do) and leaves the machine, its clock and the CPU untouched.
 */
export function restoreMachine(built: BuiltMachine, cpu: Cpu, state: MachineState, aps: readonly Ap[] = []): void {
  // 1. The envelope: an object of this version.
  const raw: unknown = state;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SnapshotError('Cannot restore the snapshot: the state is not an object (a corrupt state file)');
  const version = (raw as { version?: unknown }).version;
  if (version !== STATE_VERSION) {
    throw new SnapshotError(`Cannot restore the snapshot: its state format is version ${typeof version === 'number' ? version : 'unknown'}, this typevisor reads version ${STATE_VERSION}; restore it with the typevisor that took it`);
  }
  const top = raw as Record<string, unknown>;
  for (const k of Object.keys(top)) {
    if (!TOP_FIELDS.includes(k)) throw new SnapshotError(`Cannot restore the snapshot: the state has a field "${k}" this typevisor does not know (a corrupt state file)`);
  }
  check(num, top.clockNs, 'state.clockNs');
  if (state.clockNs < 0 || state.clockNs > Number.MAX_SAFE_INTEGER) throw invalid('state.clockNs', `is ${state.clockNs}, not a machine time in nanoseconds`);
  const devices = top.devices;
  if (typeof devices !== 'object' || devices === null || Array.isArray(devices)) throw invalid('state.devices', `is ${show(devices)}, not an object of device states (a corrupt state file)`);
  if (cpu.memory !== built.machine.memory) throw new SnapshotError('Cannot restore the snapshot: the CPU given does not run this machine (another guest memory)');
  const clock = built.machine.clock;
  if (!settable(clock)) throw new SnapshotError('Cannot restore the snapshot: this machine\'s clock cannot be set (build it with a HostClock), so guest time could not continue');

  // 2. The same devices.
  const sections = deviceSections(built);
  const mine = sections.map((s) => s.name);
  const theirs = Object.keys(state.devices);
  const missing = mine.filter((n) => !theirs.includes(n));
  const extra = theirs.filter((n) => !mine.includes(n));
  if (missing.length || extra.length) {
    const parts = [extra.length ? `the snapshot has ${extra.join(', ')}, which this machine lacks` : '', missing.length ? `this machine has ${missing.join(', ')}, which the snapshot lacks` : ''].filter(Boolean);
    throw new SnapshotError(`Cannot restore the snapshot: it was taken on a machine with other devices (${parts.join('; ')}); build the machine with the snapshot's configuration`);
  }

  // 3. Every field, before anything changes; as many vCPUs as this machine has.
  const cpuState = parseCpu(state.cpu, 'cpu');
  const rawAps: unknown = top.aps ?? [];
  if (!Array.isArray(rawAps)) throw invalid('state.aps', `is ${show(rawAps)}, not a list of vCPU states (a corrupt state file)`);
  if (rawAps.length !== aps.length) {
    throw new SnapshotError(`Cannot restore the snapshot: it holds ${rawAps.length + 1} vCPUs and this machine has ${aps.length + 1}; build the machine with the snapshot's configuration`);
  }
  const apStates = rawAps.map((a: unknown, i) => {
    if (typeof a !== 'object' || a === null || typeof (a as ApSnapshot).waitingSipi !== 'boolean' || Object.keys(a).some((k) => k !== 'cpu' && k !== 'waitingSipi')) {
      throw invalid(`state.aps[${i}]`, `is ${show(a)}, not a vCPU state (cpu, waitingSipi) (a corrupt state file)`);
    }
    return { cpu: parseCpu((a as ApSnapshot).cpu, `aps[${i}].cpu`), waitingSipi: (a as ApSnapshot).waitingSipi };
  });
  for (const a of aps) if (a.cpu && a.cpu.memory !== built.machine.memory) throw new SnapshotError('Cannot restore the snapshot: the CPU given does not run this machine (another guest memory)');
  const parsed = sections.map((s) => s.parse(state.devices[s.name], `devices.${s.name}`));

  // 4. Apply: the clock first (devices re-arm their timers relative to it), then the devices in
  //    order (interrupt controllers last), then the CPU.
  clock.setNowNs(state.clockNs);
  sections.forEach((s, i) => s.apply(parsed[i]));
  applyCpu(cpu, cpuState, state.clockNs);
  aps.forEach((a, i) => {
    a.waitingSipi = apStates[i]!.waitingSipi;
    if (a.cpu) applyCpu(a.cpu, apStates[i]!.cpu, state.clockNs);
    else a.thread.restore(apStates[i]!.cpu.snap, state.clockNs);
  });
}
