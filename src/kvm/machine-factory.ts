/**
 * The contract between the KVM engine and the code that builds the machine.
 *
 * Under KVM the devices must live in the thread that runs the boot vCPU (exits are handled in
 * that thread; a JS object cannot be shared between threads). So the engine does not take a
 * Machine: it takes a module URL and an export name, and the boot vCPU's worker imports that
 * module and calls the factory with a GuestMemory over the same RAM pages the main thread (and
 * the loader) see, plus a serializable config. The factory attaches devices to the buses exactly
 * as for the bt engine, minus the interrupt controllers and PIT (KVM emulates PIC, IOAPIC, LAPIC
 * and PIT in the kernel: ports 0x20/0xa0/0x4d0/0x40-0x43/0x61 and the IOAPIC/LAPIC pages never
 * reach userspace).
 */
import type { GuestMemory } from '../machine/memory.js';
import type { Machine } from '../machine/machine.js';

export interface KvmMachineContext {
  /** Guest RAM (views of the shared mapping made in this thread). */
  memory: GuestMemory;
  /** The `config` given to the KvmEngine (structured-cloned). */
  config: unknown;
  cpus: number;
  /**
   * Send a message to the engine's `onMessage` in the main thread (console output...); the
   * ArrayBuffers in `transfer` are moved, not copied.
   */
  post(message: unknown, transfer?: ArrayBuffer[]): void;
  /** Receive what the main thread sends with `engine.post()` (console input...). */
  onMessage(handler: (message: unknown) => void): void;
  /**
   * Run `handler` when the device thread ends, on every path (stop, error), after its vCPU has
   * left KVM_RUN and before the engine ends the thread: close files the machine opened here
   * (disk images). The thread waits for a returned promise.
   */
  onExit(handler: () => void | Promise<void>): void;
  /**
   * Make the machine's devices pausable and saveable (pause and snapshots on the kvm engine).
   * A machine that provides none can still pause (its clock stops), but not be snapshotted.
   */
  provide(hooks: KvmMachineHooks): void;
}

/** What pause and snapshots need from the devices, in the device thread. */
export interface KvmMachineHooks {
  /** Let host I/O the devices started complete (disk requests in flight): a pause waits for it. */
  quiesce(): Promise<void>;
  /** The devices' state and the machine clock (JSON-ready); called while paused. */
  save(): unknown;
  /**
   * Check saved state (untrusted: from a file) against this freshly built machine and apply it.
   * Throws one clear error and changes nothing when it does not fit.
   */
  restore(state: unknown): void;
}

/** What the machine module exports (default export name: `createKvmMachine`). */
export type KvmMachineFactory = (ctx: KvmMachineContext) => Machine | Promise<Machine>;

/**
 * A machine module may also export `warmUp`: a vCPU thread started ahead (prestart.ts) that
 * preloads the module calls it while it waits for its vCPU, so the machine's code has run once
 * (V8 compiles a function when it first runs) before a boot or a restore needs it. It must have
 * no effect outside its thread, and returns at the points where it may stop (`more()` false:
 * the vCPU arrived; the thread then does the real work at once).
 */
export type KvmMachineWarmUp = (more: () => Promise<boolean>) => Promise<void>;
