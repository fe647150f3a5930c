/**
 * Pause, resume and snapshots of a running KvmEngine, from the main thread.
 *
 * Pause: the pause flag is set and every vCPU thread kicked out of KVM_RUN. Each vCPU completes
 * its last exit (KVM_RUN with immediate_exit), reads its TSC (what a snapshot saves) and reports
 * `paused`; the device
 * thread first serves the application processors until all of them hold (one may be in the
 * middle of an I/O exit that needs the devices), lets the disks' I/O in flight complete and
 * freezes the machine clock. Once all have reported, the kvm-clock and the PIT are read here
 * (KVM_GET_CLOCK, KVM_GET_PIT2), as QEMU does on a stop.
 *
 * Resume: the PIT and the kvm-clock are put back, so the guest's kvm-clock does not see the
 * paused time (QEMU's way), and the vCPUs run on. The TSC is not written back: KVM takes a
 * host-initiated TSC write within a second of the expected value as a "synchronization" and
 * ignores it (kvm_synchronize_tsc), and kvm_pvm ignores every such write (measured), so a TSC
 * rewind would be a jump of its own; QEMU leaves the TSC alone too.
 *
 * Snapshot (paused only): each vCPU thread reads its own state, the device thread also the
 * devices'; the VM-wide state (PIC, IOAPIC, PIT, clock) is read here. Restore is the reverse:
 * vCPUs and devices set theirs before reporting ready, the VM-wide state is put here before the
 * start barrier lets any vCPU run (see KvmEngine.run).
 */
import type { Worker } from 'node:worker_threads';
import { Control, CTL_PAUSE } from './control.js';
import type { KvmVcpuState } from './vcpu-state.js';
import type { KvmVm, KvmVmState } from './vm.js';

export class KvmLifecycleError extends Error {
  override name = 'KvmLifecycleError';
}

/** A whole machine's state under KVM (the JSON form is src/vmm/snapshot/kvm.ts's). */
export interface KvmMachineSnapshot {
  vm: KvmVmState;
  /** One per vCPU, in index order. */
  vcpus: KvmVcpuState[];
  /** What the machine's hooks saved (devices and machine clock), opaque here. */
  devices: unknown;
  /**
   * A state converted from the bt engine (src/vmm/snapshot/cross-engine.ts): its TSC ran at the
   * bt CPU's rate, and where KVM cannot scale the TSC to that rate it continues at the host's.
   */
  tscRateMayChange?: boolean;
}

/** What the engine sends a vCPU worker. */
export type VcpuCommand = { type: 'resume' } | { type: 'save' } | { type: 'wake' };

/** The worker messages this class consumes. */
export type LifecycleMessage =
  | { type: 'paused'; index: number }
  | { type: 'saved'; index: number; vcpu?: KvmVcpuState; devices?: unknown; error?: string };

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

export class KvmLifecycle {
  private vm: KvmVm | undefined;
  private workers: Worker[] = [];
  /** A pause was asked for (the flag is set) and not yet resumed. */
  private pausing = false;
  private pausedCount = 0;
  /** Set once every vCPU holds: the VM-wide time state read at the pause. */
  private held: { clockNs: bigint; pit: Uint8Array } | undefined;
  private pauseWaiters: Waiter<void>[] = [];
  private saving: { parts: (LifecycleMessage & { type: 'saved' })[]; waiter: Waiter<KvmMachineSnapshot>; held: { clockNs: bigint; pit: Uint8Array } } | undefined;
  private ended = false;

  constructor(
    private readonly cpus: number,
    private readonly control: Control,
  ) {}

  get paused(): boolean {
    return this.held !== undefined;
  }

  /** The engine's run has created the VM and its workers. */
  attach(vm: KvmVm, workers: Worker[]): void {
    this.vm = vm;
    this.workers = workers;
  }

  /** Stop every vCPU and quiesce the devices; resolves once all hold (or the VM ended). */
  pause(): Promise<void> {
    if (this.held) return Promise.resolve();
    if (this.ended) return Promise.reject(new KvmLifecycleError('the VM has stopped: there is nothing to pause'));
    const why = this.vm?.snapshotUnsupported();
    if (why) return Promise.reject(new KvmLifecycleError(why));
    return new Promise<void>((resolve, reject) => {
      this.pauseWaiters.push({ resolve, reject });
      if (this.pausing) return;
      this.pausing = true;
      this.pausedCount = 0;
      Atomics.store(this.control.ctl, CTL_PAUSE, 1);
      for (let i = 0; i < this.cpus; i++) this.control.kick(i);
    });
  }

  /** Let the vCPUs run again (a no-op unless paused). */
  resume(): void {
    const held = this.held;
    if (!held || this.ended) return;
    const vm = this.vm!;
    // The PIT's counters and the kvm-clock as they were at the pause.
    vm.setPit(held.pit);
    vm.setClock(held.clockNs);
    this.held = undefined;
    this.pausing = false;
    Atomics.store(this.control.ctl, CTL_PAUSE, 0);
    for (const w of this.workers) w.postMessage({ type: 'resume' } satisfies VcpuCommand);
  }

  /** The whole machine's state; the VM must be paused. */
  save(): Promise<KvmMachineSnapshot> {
    if (!this.held || this.ended) return Promise.reject(new KvmLifecycleError('cannot snapshot the VM: it is not paused'));
    if (this.saving) return Promise.reject(new KvmLifecycleError('cannot snapshot the VM: a snapshot is being taken'));
    return new Promise<KvmMachineSnapshot>((resolve, reject) => {
      this.saving = { parts: [], waiter: { resolve, reject }, held: this.held! };
      for (const w of this.workers) w.postMessage({ type: 'save' } satisfies VcpuCommand);
    });
  }

  /** A worker message; true when it was one of ours. */
  onMessage(m: { type: string }): boolean {
    const msg = m as LifecycleMessage;
    if (msg.type === 'paused') {
      if (++this.pausedCount === this.cpus) this.allHeld();
      return true;
    }
    if (msg.type === 'saved') {
      const s = this.saving;
      if (!s) return true;
      s.parts.push(msg);
      if (s.parts.length === this.cpus) this.allSaved(s);
      return true;
    }
    return false;
  }

  /** The VM is stopping: wake held vCPUs so they see the stop flag. */
  wake(): void {
    for (const w of this.workers) w.postMessage({ type: 'wake' } satisfies VcpuCommand);
  }

  /** The run ended: nothing is paused any more; pending callers are answered. */
  end(): void {
    this.ended = true;
    this.held = undefined;
    for (const w of this.pauseWaiters.splice(0)) w.resolve(); // the caller sees the VM stopped
    this.saving?.waiter.reject(new KvmLifecycleError('cannot snapshot the VM: it stopped while the snapshot was taken'));
    this.saving = undefined;
  }

  private allHeld(): void {
    const vm = this.vm!;
    try {
      this.held = { clockNs: vm.getClock(), pit: vm.getPit() };
    } catch (e) {
      // Cannot keep the time state: run on rather than leave a VM that cannot resume exactly.
      this.pausing = false;
      Atomics.store(this.control.ctl, CTL_PAUSE, 0);
      for (const w of this.workers) w.postMessage({ type: 'resume' } satisfies VcpuCommand);
      for (const w of this.pauseWaiters.splice(0)) w.reject(new KvmLifecycleError(`cannot pause the VM: ${(e as Error).message}`));
      return;
    }
    for (const w of this.pauseWaiters.splice(0)) w.resolve();
  }

  private allSaved({ parts, waiter, held }: NonNullable<KvmLifecycle['saving']>): void {
    this.saving = undefined;
    const failed = parts.find((p) => p.error !== undefined);
    if (failed) return waiter.reject(new KvmLifecycleError(`cannot snapshot vCPU ${failed.index}: ${failed.error}`));
    const vcpus = parts.sort((a, b) => a.index - b.index).map((p) => p.vcpu!);
    const devices = parts.find((p) => p.index === 0)?.devices;
    try {
      // the irqchip as it is now: still the pause's, unless a resume raced the snapshot
      if (!this.held) throw new Error('the VM was resumed while the snapshot was taken');
      waiter.resolve({ vm: this.vm!.saveState(held.clockNs, held.pit), vcpus, devices });
    } catch (e) {
      waiter.reject(new KvmLifecycleError(`cannot snapshot the VM: ${(e as Error).message}`));
    }
  }
}
