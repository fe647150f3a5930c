/**
 * `Vm`: one virtual machine as a library object — what the CLI uses, and what a program that
 * drives VMs uses (`typevisor`'s package root exports it):
 *
 *   await using vm = await Vm.create({ memoryBytes: 512 * MiB, cpus: 1, engine: 'bt' });
 *   vm.console.on('data', (b) => process.stdout.write(b));
 *   vm.start();
 *   vm.console.write('uname -a\n');
 *   await vm.pause(); ...; vm.resume();
 *   const why = await vm.stop();          // ACPI power button, then a deadline
 *
 * One path whichever way it is driven: `create` resolves the guest artifacts, checks the
 * configuration and opens the disks and the network (every problem one clear error, nothing
 * left open); `start` boots, and a guest reset boots a fresh machine again (unless
 * `reboot: false`); the VM ends once, with a StopReason (`wait()`, the `stopped` event).
 *
 * Engines: bt (everything above), and kvm where the host has /dev/kvm: boot, console, stop,
 * restart on reset, pause and snapshots (src/kvm/lifecycle.ts). A snapshot restores on the
 * engine that took it, or on the other one (src/vmm/snapshot/cross-engine.ts).
 */
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes, randomFillSync } from 'node:crypto';
import os from 'node:os';
import { Duplex } from 'node:stream';
import { bootImage } from '../boot/loader.js';
import { extractVmlinux } from '../boot/extract.js';
import type { BlockDevice } from '../devices/virtio/blk/blk.js';
import { MAX_FRAME } from '../devices/virtio/net/net.js';
import { describeCpu } from '../engine/bt/dump.js';
import type { BtEngine } from '../engine/bt/engine.js';
import { buildMachine, type BuiltMachine } from '../machine/builder.js';
import { HostClock } from '../machine/clock.js';
import { SharedClock } from '../engine/bt/shared-clock.js';
import { A_STOP } from '../cpu/wasm/arena.js';
import { MAX_THREAD_VCPUS } from '../cpu/translate/cross-thread.js';
import type { StopReason } from '../machine/machine.js';
import { GuestMemory, type RegionSpec } from '../machine/memory.js';
import { ramRegionSpecs } from '../machine/ram.js';
import { prepareDefaultGuest } from '../guest/default-guest.js';
import type { StreamNetBackend } from '../net/stream.js';
import type { TapNetBackend } from '../net/tap.js';
import type { UserNetBackend } from '../net/user/stack.js';
import { NetRelayHost } from '../net/relay.js';
import { ConfigError, DEFAULT_USER_MAC, macBytes, parseMac, randomMac, validateCpus, validateMemory, type NetConfig, type PublishConfig, type VmConfig } from './config.js';
import { openDisks, type OpenDisks } from './disk/open.js';
import { readGuestFiles } from './guest-files.js';
import { PanicWatch } from './panic-watch.js';
import { KVM_MACHINE_MODULE, prestartKvm } from './kvm-prestart.js';
import { dropVcpuThreads } from '../kvm/prestart.js';
import type { KvmEngine } from '../kvm/engine.js';
import { kvmAvailability } from '../kvm/detect.js';
import type { ConsoleMessage, KvmMachineConfig } from './kvm-machine.js';
import type { MachineState } from './snapshot/state.js';
import type { CpuMismatch } from './snapshot/cross-cpu.js';
import type { KvmMachineSnapshot } from '../kvm/lifecycle.js';
import { SnapshotError } from './snapshot/check.js';
import { dataExtents } from './snapshot/extents.js';
import { mappableBuffer, restoreMemoryFile, writeMemoryFile } from './snapshot/memory-file.js';

/**
 * The default kernel command line: serial console; reset through the keyboard controller, and
 * at once on a panic (the VM then stops with the panic's message).
 */
export const DEFAULT_CMDLINE = 'console=ttyS0 reboot=k panic=-1';
/** The default command line with a virtio console: the kernel's console is hvc0. */
export const DEFAULT_CMDLINE_HVC = 'console=hvc0 reboot=k panic=-1';

export class VmError extends Error {
  override name = 'VmError';
}

export type VmState = 'created' | 'running' | 'paused' | 'stopped';

/** What takes console input (the UART or the virtio console of the machine running now). */
export interface SerialPort {
  /** Offer bytes; returns how many the device accepted. */
  receive(bytes: Uint8Array): number;
  /** Register a callback for when the device has room for more input. */
  onRxSpace(cb: () => void): void;
}

export interface VmOptions {
  /** typevisor's own one-line notices (engine choice, restarts); default: none. */
  log?: (line: string) => void;
}

/** How Vm.restore runs a snapshot. */
export interface RestoreOptions {
  /**
   * The engine: the snapshot's (auto, the default; bt where this host cannot run kvm), or the
   * other one — the snapshot then moves (one vCPU; see src/vmm/snapshot/cross-engine.ts).
   */
  engine?: VmConfig['engine'];
  /**
   * Move a snapshot whose guest was offered CPU features the new engine lacks, with a warning
   * (default: refused, naming them).
   */
  allowCpuMismatch?: boolean;
}

/**
 * The bt engine's modules (the CPU, the translator, snapshot state), loaded when the first bt
 * VM is opened: a kvm VM, or `typevisor --help`, never pays for them.
 */
let btModules: {
  withArena: typeof import('../cpu/wasm/arena.js').withArena;
  arenaOf: typeof import('../cpu/wasm/arena.js').arenaOf;
  BtEngine: typeof import('../engine/bt/engine.js').BtEngine;
  restoreMachine: typeof import('./snapshot/state.js').restoreMachine;
} | undefined;

async function loadBtModules(): Promise<void> {
  if (btModules) return;
  const [arena, engine, state] = await Promise.all([import('../cpu/wasm/arena.js'), import('../engine/bt/engine.js'), import('./snapshot/state.js')]);
  btModules = { withArena: arena.withArena, arenaOf: arena.arenaOf, BtEngine: engine.BtEngine, restoreMachine: state.restoreMachine };
}

/**
 * Does this bt VM run its application processors on threads of their own? With 2 to
 * MAX_THREAD_VCPUS vCPUs that translate, unless TYPEVISOR_BT_THREADS=0 (they take turns on the
 * main thread then, as with more vCPUs or TYPEVISOR_JIT_THRESHOLD=off).
 */
function btThreads(cpus: number, jitThreshold: number | undefined): boolean {
  return process.env.TYPEVISOR_BT_THREADS !== '0' && cpus > 1 && cpus <= MAX_THREAD_VCPUS && jitThreshold !== Infinity;
}

/** Vm.preload opened a kvm VM ahead (a bt VM closes it). */
let kvmVmPrepared = false;

/** `auto`: kvm where the host's KVM can run an ordinary kernel, else bt (saying why). */
function chooseEngine(choice: VmConfig['engine'], log: (s: string) => void): 'bt' | 'kvm' {
  if (choice === 'bt') return 'bt';
  const kvm = kvmAvailability();
  if (choice === 'kvm') {
    if (!kvm.opens) throw new ConfigError(kvm.reason);
    if (!kvm.hardware) {
      log(`typevisor: warning: this host's KVM (${kvm.module ?? 'unknown module'}) has no hardware virtualization: small guests run, ordinary kernels will not boot with --engine kvm (use --engine bt)`);
    }
    return 'kvm';
  }
  const pick = kvm.usable ? 'kvm' : 'bt';
  log(`typevisor: engine ${pick}: ${kvm.reason}`);
  return pick;
}

/** How long after a frame either way the bt engine keeps yielding after every slice. */
const NET_ACTIVE_MS = 50;

/** TYPEVISOR_JIT_THRESHOLD: unset → the CPU's default, "off" → Infinity (interpret only), else a positive integer. */
export function jitThresholdFromEnv(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'off') return Infinity;
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new ConfigError(`TYPEVISOR_JIT_THRESHOLD=${value} is not valid: give a positive integer (executions before a block is translated) or "off" (interpret only)`);
  return Number(value);
}

/** A network back end: frames from the NIC go to transmit(), frames to it through attach(). */
type NetBackend = StreamNetBackend | TapNetBackend | UserNetBackend;

export class Vm extends EventEmitter<{ console: [Uint8Array]; stopped: [StopReason]; state: [VmState] }> {
  /**
   * The guest's console: read what it prints, write what it should read (flow-controlled).
   * Output is kept only once the stream is read (a `data` listener, pipe or iteration): start
   * reading before `start()` to see everything.
   */
  readonly console: Duplex;
  /** The console's input side as a serial port (the CLI's terminal handling uses it). */
  readonly serialPort: SerialPort;
  private status: VmState = 'created';
  private readonly panicWatch = new PanicWatch();
  private engine: BtEngine | undefined;
  /** Under the kvm engine: the running engine, the console's way in (the device thread), guest RAM. */
  /** memfd: the pages the guest touched, unless the RAM is a mapped snapshot (then null: scan all). */
  private kvm: { engine: KvmEngine; port: SerialPort; memory: GuestMemory; memfd: number | null } | undefined;
  /** pause() calls waiting for the kvm engine of a VM just started. */
  private kvmWaiters: (() => void)[] = [];
  private built: BuiltMachine | undefined;
  private clock: HostClock | SharedClock | undefined;
  private result: Promise<StopReason> | undefined;
  /** Set once a stop was asked for: a reset then ends the VM instead of booting again. */
  private stopWanted: StopReason | undefined;
  private readonly rxSpace: (() => void)[] = [];
  /** The snapshot the first start() resumes instead of booting. */
  private restoreFrom: LoadedSnapshot | undefined;
  /** Console input the device did not take yet. */
  private inputQueue: { bytes: Uint8Array; done: (e?: Error | null) => void }[] = [];

  private constructor(
    readonly config: VmConfig,
    private image: Uint8Array,
    private initrd: Uint8Array | undefined,
    private readonly disks: OpenDisks,
    private readonly net: NetBackend | undefined,
    private readonly log: (line: string) => void,
  ) {
    super();
    this.serialPort = {
      receive: (bytes) => {
        if (bytes.length) this.built?.pm.wakeEvent(); // a key typed wakes a guest in S3 (bt)
        return this.port()?.receive(bytes) ?? 0;
      },
      onRxSpace: (cb) => this.rxSpace.push(cb),
    };
    this.console = new Duplex({
      read: () => {},
      write: (chunk: Buffer, _enc, done) => {
        this.inputQueue.push({ bytes: chunk, done });
        this.pumpInput();
      },
    });
    this.rxSpace.push(() => this.pumpInput());
  }

  /**
   * Check the configuration, resolve and read the guest's kernel and initrd (the default Debian
   * guest is fetched and cached), open and lock the disks, connect the network. Throws
   * ConfigError / VmError (one line each) and leaves nothing open.
   */
  static async create(config: VmConfig, opts: VmOptions = {}): Promise<Vm> {
    return Vm.open(config, opts, undefined);
  }

  /**
   * Load the bt engine's modules now rather than when the first bt VM is opened. A server that
   * waits for its first request (`typevisor serve`) calls it, so that a snapshot load or a boot
   * does not wait for them. Never throws: a failure shows again where the modules are needed.
   */
  static async preload(): Promise<void> {
    // Where /dev/kvm opens, the kvm engine's main-thread modules and its boot vCPU thread too:
    // a snapshot load or a boot then hands that thread its vCPU (a bt VM ends it).
    // And a VM opened ahead, its first memory slot paid for (src/kvm/vm.ts, prepareKvmVm).
    if (kvmAvailability().opens) {
      prestartKvm(1);
      // And the state check run once (snapshot/kvm.ts, warmKvmStateCheck).
      const [{ prepareKvmVm }, , , { warmKvmStateCheck }] = await Promise.all([import('../kvm/vm.js'), import('../kvm/engine.js'), import('../kvm/memory.js'), import('./snapshot/kvm.js')]).catch(() => [{ prepareKvmVm: () => {} }, , , { warmKvmStateCheck: () => {} }] as const);
      prepareKvmVm();
      warmKvmStateCheck();
      kvmVmPrepared = true;
    }
    await loadBtModules().catch(() => {});
  }

  /**
   * A VM that resumes a snapshot (`snapshot()` wrote it) instead of booting: the machine is built
   * from the configuration the state file holds, the disks it names are opened again, the
   * memory file is mapped copy-on-write into guest RAM (or read where it cannot be mapped:
   * snapshot/memory-file.ts). A missing, corrupt, truncated or mismatched snapshot is
   * one clear error; the snapshot's files are only read. `start()` then resumes the guest.
   */
  static async restore(files: SnapshotFiles, opts: VmOptions & RestoreOptions = {}): Promise<Vm> {
    const snap = readSnapshot(files);
    const log = opts.log ?? (() => {});
    // The engine: the one asked for, else the snapshot's where this host runs it, else bt.
    let target = opts.engine === undefined || opts.engine === 'auto' ? snap.engine : opts.engine;
    if (target === 'kvm') {
      const kvm = kvmAvailability();
      if (!kvm.opens) {
        if (opts.engine === 'kvm') throw new SnapshotError(`cannot restore ${files.statePath} on the kvm engine: this host cannot run it (${kvm.reason}); restore it with --engine bt`);
        target = 'bt';
        log(`typevisor: restoring the kvm snapshot on the bt engine: ${kvm.reason}`);
      }
    }
    // every field checked before anything is created (the devices' in the device thread)
    if (snap.engine === 'kvm') snap.kvm = (await import('./snapshot/kvm.js')).parseKvmState(snap.state.kvm, snap.config.cpus);
    if (target !== snap.engine) await moveSnapshot(snap, target, { allow: opts.allowCpuMismatch, warn: log });
    return Vm.open(snap.config, opts, snap);
  }

  private static async open(config: VmConfig, opts: VmOptions, snap: LoadedSnapshot | undefined): Promise<Vm> {
    const log = opts.log ?? (() => {});
    validateMemory(config.memoryBytes, os.totalmem());
    validateCpus(config.cpus);
    // The engine (decided before memory is allocated: kvm wants memfd-backed RAM).
    const engineName = snap ? snap.engine : chooseEngine(config.engine, log);
    if (engineName === 'kvm' && config.console === 'virtio') {
      throw new ConfigError('--console virtio needs the bt engine for now (the kvm engine has no virtio console yet): use --engine bt or --console serial');
    }
    checkedMac(config.net); // before anything is opened
    if (engineName === 'bt' && config.cpuModel === 'host') throw new ConfigError('--cpu-model host needs the kvm engine: the bt engine runs typevisor\'s own CPU model (--cpu-model typevisor)');
    if (engineName === 'bt') {
      await dropVcpuThreads(); // kvm threads started in case (preload) are not needed
      if (kvmVmPrepared) (await import('../kvm/vm.js')).dropSpareKvmVm(); // nor the VM opened ahead
      await loadBtModules();
    } else prestartKvm(config.cpus); // the threads boot while the kernel is read and the disks opened
    // A restored VM needs no kernel: its memory holds the running one.
    let image: Uint8Array = new Uint8Array(0);
    let initrd: Uint8Array | undefined;
    if (!snap) {
      let kernelPath = config.kernel;
      let initrdPath = config.initrd;
      if (kernelPath === undefined) {
        const guest = await prepareDefaultGuest();
        kernelPath = guest.kernelPath;
        initrdPath ??= guest.initrdPath;
      }
      // Sizes are checked from stat before reading, and the kernel's header against the file.
      const files = readGuestFiles(kernelPath, initrdPath, config.memoryBytes);
      image = files.image;
      initrd = files.initrd;
      if (config.vmlinux) {
        if (files.format !== 'bzimage') throw new ConfigError('--vmlinux needs a bzImage kernel to extract the vmlinux from');
        image = extractVmlinux(image);
      }
    }
    // Disks: checked, locked and opened once; a guest reset keeps them.
    const disks = await openDisks(config.disks ?? []);
    // The network back end outlives guest resets (passt -1 serves one connection); --net user
    // binds the published ports here (one clear error if one is taken).
    // (imported on demand: a VM without a network, or under kvm, loads none of them)
    const mode = config.net?.mode;
    const net: NetBackend | undefined = mode === 'stream' ? new (await import('../net/stream.js')).StreamNetBackend((config.net as { path: string }).path, MAX_FRAME, log)
      : mode === 'tap' ? new (await import('../net/tap.js')).TapNetBackend((config.net as { name: string }).name, MAX_FRAME, log)
      : mode === 'user' ? new (await import('../net/user/stack.js')).UserNetBackend({ publish: (config.net as { publish: PublishConfig[] }).publish, log }) : undefined;
    try {
      await net?.connect();
    } catch (e) {
      await disks.close();
      throw e;
    }
    const vm = new Vm({ ...config, engine: engineName, net: withMac(config.net, snap !== undefined, log) }, image, initrd, disks, net, log);
    vm.restoreFrom = snap;
    return vm;
  }

  /**
   * Write a snapshot of the paused VM: the guest's RAM to `memPath`, and to `statePath` a
   * versioned JSON state (the configuration, every register, every device). Both are written
   * to temporary names and renamed, so a failure leaves no half-written snapshot.
   */
  async snapshot(files: SnapshotFiles): Promise<void> {
    if (this.status !== 'paused' || !((this.built && this.engine) || this.kvm)) throw new VmError(`cannot snapshot the VM: it is ${this.status}; pause it first`);
    if (this.built?.pm.suspended) throw new VmError('cannot snapshot the VM: the guest is suspended (ACPI S3); snapshots of a sleeping machine are not supported yet: wake it first');
    const snapshotDisk = this.config.disks?.find((d) => d.snapshot);
    if (snapshotDisk) throw new VmError(`cannot snapshot the VM: disk ${snapshotDisk.path} is in snapshot mode, and its overlay does not outlive this process`);
    let state: SnapshotState;
    let memory: GuestMemory;
    let extents: [number, number][] | undefined;
    if (this.kvm) {
      // every vCPU (in its own thread), the in-kernel irqchip, PIT and clock, the devices
      const [{ kvmStateToJson }, saved] = await Promise.all([import('./snapshot/kvm.js'), this.kvm.engine.saveState().catch((e: Error) => {
        throw new VmError(`cannot snapshot the VM: ${e.message}`, { cause: e });
      })]);
      memory = this.kvm.memory;
      // the pages the guest touched; a restored VM's RAM is a private mapping of its snapshot's
      // file, whose pages the memfd does not hold: then every page is looked at
      extents = this.kvm.memfd === null ? undefined : dataExtents(this.kvm.memfd, memory.size);
      state = { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, engine: 'kvm', config: this.config, memoryBytes: memory.size, kvm: kvmStateToJson(saved) };
    } else {
      const { saveMachine } = await import('./snapshot/state.js');
      const machine = saveMachine(this.built!, this.engine!.cpu, this.engine!.aps());
      memory = this.built!.machine.memory;
      state = { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, engine: 'bt', config: this.config, memoryBytes: memory.size, machine };
    }
    const tmpMem = `${files.memPath}.tmp-${process.pid}`;
    const tmpState = `${files.statePath}.tmp-${process.pid}`;
    try {
      writeMemoryFile(tmpMem, memory, extents);
      writeFileSync(tmpState, JSON.stringify(state));
      renameSync(tmpMem, files.memPath);
      renameSync(tmpState, files.statePath);
    } catch (e) {
      rmSync(tmpMem, { force: true });
      rmSync(tmpState, { force: true });
      throw new VmError(`cannot write the snapshot: ${(e as Error).message}`, { cause: e });
    }
  }

  get state(): VmState {
    return this.status;
  }

  /** Boot the guest. The VM runs until it stops; `wait()` (or the `stopped` event) says why. */
  start(): void {
    if (this.status !== 'created') throw new VmError(`the VM cannot start: it is ${this.status}`);
    this.setState('running');
    this.result = this.runLoop();
  }

  /** Resolves with why the VM stopped (after start). */
  wait(): Promise<StopReason> {
    if (!this.result) return Promise.reject(new VmError('the VM was not started'));
    return this.result;
  }

  /** Stop the vCPU at an instruction boundary, with the disks' I/O completed; time stops too. */
  async pause(): Promise<void> {
    if (this.status === 'paused') return;
    if (this.config.engine === 'kvm') {
      // the engine exists once bootKvm has loaded its modules: wait for it after a fresh start()
      if (this.status === 'running' && !this.kvm) await new Promise<void>((resolve) => this.kvmWaiters.push(resolve));
      const kvm = this.kvm;
      if (this.status !== 'running' || !kvm) throw new VmError(`the VM cannot pause: it is ${this.status}`);
      try {
        await kvm.engine.pause();
      } catch (e) {
        throw new VmError(`the VM cannot pause: ${(e as Error).message}`, { cause: e });
      }
      if (this.status === 'running' && this.kvm === kvm && kvm.engine.paused) this.setState('paused'); // not when it stopped meanwhile
      return;
    }
    if (this.status !== 'running' || !this.engine) throw new VmError(`the VM cannot pause: it is ${this.status}`);
    await this.engine.pause();
    if (this.status === 'running') this.setState('paused');
  }

  resume(): void {
    if (this.status === 'running') return;
    if (this.status !== 'paused') throw new VmError(`the VM cannot resume: it is ${this.status}`);
    this.setState('running');
    this.engine?.resume();
    this.kvm?.engine.resume();
  }

  /**
   * Ask the guest to shut down (the ACPI power button), and stop it after `deadlineMs` if it
   * has not. Resolves with why it stopped.
   */
  async stop(deadlineMs = 30_000): Promise<StopReason> {
    if (this.status === 'created' || this.status === 'stopped') return this.kill();
    if (this.status === 'paused') this.resume();
    this.built?.pm?.pressPowerButton();
    this.kvm?.engine.post({ type: 'power-button' } satisfies ConsoleMessage);
    const timer = setTimeout(() => void this.kill(), deadlineMs);
    try {
      return await this.wait();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stop at once (no shutdown in the guest). */
  async kill(reason: StopReason = { kind: 'quit' }): Promise<StopReason> {
    this.stopWanted ??= reason;
    if (this.status === 'created') {
      this.setState('stopped');
      this.result = Promise.resolve(reason);
      await this.release();
      this.emit('stopped', reason);
      return reason;
    }
    this.built?.machine.requestStop(reason);
    this.kvm?.engine.stop(reason);
    return this.wait();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.status !== 'stopped') await this.kill();
  }

  /** The vCPU's and the devices' state, as lines (a guest that seems stuck). */
  describe(): string[] {
    const b = this.built;
    const e = this.engine;
    if (!b || !e) return [`state ${this.status}`];
    const l = b.lapic!.save();
    const bits = (a: number[]): string => a.map((w, i) => (w ? `${i}:${w.toString(16)}` : '')).filter(Boolean).join(' ');
    const lines = [`state ${this.status}`, ...describeCpu(e.cpu), `lapic: tpr ${l.tpr} irr [${bits(l.irr)}] isr [${bits(l.isr)}] lvt timer ${l.lvt[0]?.toString(16)} initial count ${l.initialCount}`];
    for (const { fn } of b.virtioFunctions) lines.push(...fn.describe()); // every virtio function, net and console too
    return lines;
  }

  private setState(s: VmState): void {
    this.status = s;
    this.emit('state', s);
  }

  private port(): SerialPort | undefined {
    if (this.kvm) return this.kvm.port;
    const b = this.built;
    return b ? (b.virtioConsole ?? b.uart) : undefined;
  }

  private pumpInput(): void {
    const q = this.inputQueue;
    while (q.length) {
      const head = q[0]!;
      const n = this.serialPort.receive(head.bytes);
      if (n < head.bytes.length) {
        head.bytes = head.bytes.subarray(n);
        return; // the rest when the device has room (onRxSpace)
      }
      q.shift();
      head.done();
    }
  }

  private output(bytes: Uint8Array): void {
    this.panicWatch.feed(bytes);
    this.emit('console', bytes);
    // only into a stream someone reads (or pipes, or iterates): otherwise it would keep every
    // byte the guest ever printed; the `console` event is the unbuffered way
    if (this.console.readableFlowing !== null) this.console.push(Buffer.from(bytes));
  }

  private async runLoop(): Promise<StopReason> {
    let reason: StopReason;
    try {
      for (;;) {
        reason = await (this.config.engine === 'kvm' ? this.bootKvm() : this.bootOnce());
        // panic=-1 (the default command line) resets right after the panic message: a reset
        // that follows one is the panic, also when no pvpanic driver told us
        if ((reason.kind === 'reset' || reason.kind === 'panic') && this.panicWatch.reason !== undefined) {
          reason = { kind: 'panic', detail: this.panicWatch.reason };
        }
        if (reason.kind === 'reset' && this.config.reboot !== false && this.stopWanted === undefined) {
          this.log(`typevisor: the guest reset the machine${reason.detail ? ` (${reason.detail})` : ''}; restarting it (--no-reboot ends typevisor instead)`);
          // let the event loop run (signals, console output) even when a guest resets at once
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        break;
      }
    } catch (e) {
      reason = { kind: 'error', message: (e as Error).message };
    }
    if (this.stopWanted !== undefined && reason.kind !== 'poweroff') reason = this.stopWanted;
    this.setState('stopped');
    await this.release();
    this.console.push(null);
    this.emit('stopped', reason);
    return reason;
  }

  private async release(): Promise<void> {
    for (const q of this.inputQueue.splice(0)) q.done();
    // The machine (guest RAM, the engine and its translated code) and the guest's files go at
    // the stop, not when the caller drops this object: a program may keep stopped VMs around.
    this.built = undefined;
    this.engine = undefined;
    this.clock = undefined;
    this.image = new Uint8Array(0);
    this.initrd = undefined;
    this.restoreFrom = undefined;
    for (const w of this.kvmWaiters.splice(0)) w(); // a pause() that waited for the kvm engine sees it stopped
    this.net?.close();
    await this.disks.close();
  }

  /**
   * One boot on the kvm engine: memfd-backed guest RAM, the kernel loaded from this thread, the
   * devices in the boot vCPU's thread (./kvm-machine.ts), console bytes as messages. The disks
   * stay locked here (Vm.open); the device thread opens them again for its own I/O.
   */
  private async bootKvm(): Promise<StopReason> {
    const [{ KvmEngine }, { createKvmGuestMemory }] = await Promise.all([import('../kvm/engine.js'), import('../kvm/memory.js')]);
    const config = this.config;
    const ram = createKvmGuestMemory(config.memoryBytes);
    let closeRelay: NetRelayHost | undefined;
    const snap = this.restoreFrom;
    this.restoreFrom = undefined; // a reset after a restore boots afresh
    try {
      // a restore: the snapshot's memory file mapped copy-on-write over the memfd's pages
      // (before KVM's memory slots exist), as Firecracker does; read where it cannot be mapped
      const mapped = snap ? restoreMemoryFile(snap.memPath, ram.memory, new Set(ram.memory.regions.map((r) => r.bytes.buffer))) > 0 : false;
      // S3 on kvm with one vCPU only: the device thread is the one vCPU thread it must stop
      const s3 = config.cpus === 1;
      const booted = snap ? undefined : bootImage(ram.memory, this.image, { cmdline: config.cmdline ?? DEFAULT_CMDLINE, kernelName: config.kernel, initrd: this.initrd, cpus: config.cpus, acpi: { s3 } });
      // --net: the card is in the device thread, the back end here; frames cross through the
      // relay (src/net/relay.ts), which keeps the back end's back-pressure contract
      const net = this.net;
      const relay = net ? new NetRelayHost((m, transfer) => engine.post(m, transfer), (frame) => net.transmit(frame)) : undefined;
      closeRelay = relay;
      const nic = net ? { mac: Array.from(macBytes(cardMac(config.net))), rxChecksumsValid: config.net?.mode === 'user', guestTso: config.net?.mode === 'user' } : undefined;
      const engine = new KvmEngine({
        memory: ram,
        cpus: config.cpus,
        machine: {
          module: KVM_MACHINE_MODULE,
          export: 'createKvmMachine',
          config: { disks: config.disks ?? [], s3, ...(nic ? { net: nic } : {}) } satisfies KvmMachineConfig,
        },
        restore: snap?.kvm, // checked by Vm.restore (parseKvmState)
        cpuModel: config.cpuModel,
        onMessage: (m) => {
          if (relay?.handle(m)) return;
          const msg = m as ConsoleMessage;
          if (msg?.type === 'serial-out') this.output(msg.bytes);
        },
      });
      // Offer everything: the device thread holds back what the UART's FIFO cannot take yet.
      const port: SerialPort = {
        receive: (bytes) => {
          engine.post({ type: 'serial-in', bytes: bytes.slice() } satisfies ConsoleMessage);
          return bytes.length;
        },
        onRxSpace: () => {},
      };
      this.kvm = { engine, port, memory: ram.memory, memfd: mapped ? null : ram.memfd };
      for (const w of this.kvmWaiters.splice(0)) w(); // pause() calls made before the engine existed
      if (net && relay) net.attach(relay); // frames wait in the engine's port until the thread runs
      if (this.stopWanted !== undefined) engine.stop(this.stopWanted);
      this.pumpInput();
      return await engine.run(booted?.entry);
    } finally {
      closeRelay?.close(); // the card is gone with its thread: the back end keeps what it has
      this.kvm = undefined;
      ram.dispose();
    }
  }

  /** One boot: fresh memory and devices, the kernel loaded, run until the machine stops. */
  private async bootOnce(): Promise<StopReason> {
    const config = this.config;
    const specs = ramRegionSpecs(config.memoryBytes);
    // The bt engine translates hot 64-bit code to WebAssembly, which needs the RAM in a wasm
    // arena. TYPEVISOR_JIT_THRESHOLD=n: translate a block after n executions (default 256;
    // "off": interpret only). This VM's choice, passed down: several VMs share the process.
    const jitThreshold = jitThresholdFromEnv(process.env.TYPEVISOR_JIT_THRESHOLD);
    const { withArena, arenaOf, BtEngine, restoreMachine } = btModules!;
    const snap = this.restoreFrom;
    this.restoreFrom = undefined; // a reset after a restore boots afresh
    // application processors on threads of their own share the RAM: shared buffers, all of it
    const threads = btThreads(config.cpus, jitThreshold);
    const regions: RegionSpec[] = jitThreshold !== Infinity ? withArena(specs, config.cpus, threads) : specs.slice();
    if (threads) regions.forEach((r, i) => (regions[i] = { ...r, buffer: r.buffer ?? new SharedArrayBuffer(r.size) }));
    // A restore maps the memory file over RAM in wasm Memories (its own pages to replace):
    // the arena, and a Memory for each other region where one fits.
    const mappable = new Set<ArrayBufferLike>();
    if (snap) {
      regions.forEach((r, i) => {
        const buffer = r.buffer ?? mappableBuffer(r.size);
        if (buffer) mappable.add((regions[i] = { ...r, buffer }).buffer!);
      });
    }
    const memory = new GuestMemory(regions);
    const clock = threads ? new SharedClock() : new HostClock();
    const arena0 = threads ? arenaOf(regions[0]!.buffer!, 0) : undefined;
    const virtioConsole = config.console === 'virtio';
    const net = this.net;
    let netActive = -Infinity;
    const built = buildMachine({
      memory,
      clock,
      interruptModel: 'emulated',
      serialOut: (bytes) => this.output(bytes),
      // the virtio console's output is a borrowed view: copy it
      virtioConsoleOut: virtioConsole ? (bytes) => this.output(bytes.slice()) : undefined,
      // the user network builds every frame it sends: the guest need not verify their checksums
      // the user network builds its own frames: correct checksums, and large TCP frames when the
      // guest takes them (GUEST_TSO4)
      net: net ? { mac: macBytes(cardMac(config.net)), transmit: (frame) => (netActive = performance.now(), net.transmit(frame)), rxChecksumsValid: config.net?.mode === 'user', guestTso: config.net?.mode === 'user' } : undefined,
      fillRandom: (bytes) => randomFillSync(bytes), // virtio-rng
      disks: this.disks.disks, // virtio-blk
      // S3 with one vCPU: the engine below stops it in S3 and wakes it at the waking vector
      s3: config.cpus === 1,
      cpus: config.cpus,
    });
    const { machine, uart } = built;
    const nic = built.virtioNet;
    if (net && nic) {
      // frames to the guest mark the network active too (see ioInFlight below)
      net.attach({ receive: (frame, gsoSize) => ((netActive = performance.now()), nic.receive(frame, gsoSize)), onRxSpace: (l) => nic.onRxSpace(l), gsoMax: () => nic.gsoMax() });
    }
    const booted = snap ? undefined : bootImage(memory, this.image, {
      cmdline: config.cmdline ?? (virtioConsole ? DEFAULT_CMDLINE_HVC : DEFAULT_CMDLINE), kernelName: config.kernel, initrd: this.initrd, rngSeed: randomBytes(32), cpus: config.cpus, acpi: { pci: true, s3: config.cpus === 1 },
    });

    const blks = built.virtioBlk.map((d) => d.device as BlockDevice);
    const lapicWindow = built.lapicWindow;
    const engine = new BtEngine(machine, {
      interrupts: built.lapic!,
      vcpus: lapicWindow ? { interrupts: built.lapics, select: (i) => lapicWindow.select(i) } : undefined,
      afterSlice: () => uart.flush(),
      // a disk request in flight, or network traffic in the last NET_ACTIVE_MS: the host's
      // answers arrive only when the event loop runs, so yield after every slice meanwhile
      ioInFlight: () => blks.some((b) => b.inFlight > 0) || performance.now() - netActive < NET_ACTIVE_MS,
      onPause: (paused) => (paused ? clock.pause() : clock.resume()),
      jitThreshold,
      threads: arena0 && lapicWindow && clock instanceof SharedClock ? {
        lapics: built.lapics,
        select: (i) => lapicWindow.select(i),
        worker: {
          vcpus: config.cpus,
          arena: arena0.memory,
          regions: regions.map((r, i) => ({ base: r.base, size: r.size, buffer: i === 0 ? undefined : r.buffer as SharedArrayBuffer })),
          clock: clock.buffer,
          jitThreshold,
          bspStop: (arena0.base + A_STOP) >> 2,
        },
      } : undefined,
    });
    if (built.apicBus) built.apicBus.hooks = engine; // INIT and STARTUP IPIs start the other vCPUs
    machine.irq.addListener({ setIrq: (_gsi: number, level: boolean) => level && engine.wake() });
    machine.msi.addListener({ sendMsi: () => engine.wake() }); // an MSI-X message also ends a halt
    (built.virtioConsole ?? uart).onRxSpace(() => {
      for (const cb of this.rxSpace) cb();
    });
    if (snap) {
      restoreMemoryFile(snap.memPath, memory, mappable);
      restoreMachine(built, engine.cpu, snap.state.machine!, engine.aps()); // checked there: a missing one is one clear error
      clock.setNowNs(snap.state.machine!.clockNs);
    }
    this.built = built;
    this.engine = engine;
    this.clock = clock;
    if (this.stopWanted !== undefined) machine.requestStop(this.stopWanted);
    this.pumpInput();
    try {
      return await engine.run(booted?.entry);
    } finally {
      uart.flush();
    }
  }
}

/**
 * The network configuration with the card's MAC decided: the one given (`,mac=`, guest_mac),
 * else DEFAULT_USER_MAC on the user network (private to this VM: nothing to collide with) and a
 * random 52:54:00:xx:xx:xx on stream and tap (their Ethernet may hold other VMs). The VM's
 * config keeps it, so resets and snapshots (which save the config) keep the address. A snapshot
 * written before the MAC was recorded had QEMU's 52:54:00:12:34:56 on every card.
 */
function withMac(net: NetConfig | undefined, restoring: boolean, log: (line: string) => void): NetConfig | undefined {
  if (net === undefined || net.mode === 'none') return net;
  if (net.mac !== undefined) return { ...net, mac: checkedMac(net)! };
  if (restoring || net.mode === 'user') return { ...net, mac: DEFAULT_USER_MAC };
  const mac = randomMac((b) => randomFillSync(b));
  log(`typevisor: the network card's MAC is ${mac} (random; add ,mac=${mac} to --net to keep it)`);
  return { ...net, mac };
}

/**
 * The MAC given in `net`, checked (Vm.open does so before opening anything): a program's
 * VmConfig, or a snapshot's state file, did not pass the CLI's parsing.
 */
function checkedMac(net: NetConfig | undefined): string | undefined {
  if (net === undefined || net.mode === 'none' || net.mac === undefined) return undefined;
  return parseMac(String(net.mac), 'the network card\'s MAC (net.mac)');
}

/** The MAC withMac decided for a card. */
function cardMac(net: NetConfig | undefined): string {
  return net !== undefined && net.mode !== 'none' && net.mac !== undefined ? net.mac : DEFAULT_USER_MAC;
}

/** The two files of a snapshot (Firecracker's snapshot_path and mem_file_path). */
export interface SnapshotFiles {
  statePath: string;
  memPath: string;
}

const SNAPSHOT_FORMAT = 'typevisor-snapshot';
const SNAPSHOT_VERSION = 1;

/** The state file. */
interface SnapshotState {
  format: typeof SNAPSHOT_FORMAT;
  version: number;
  /** The engine that took it, and the only one that restores it (absent: bt, from before kvm snapshots). */
  engine?: 'bt' | 'kvm';
  config: VmConfig;
  memoryBytes: number;
  /** bt: the software CPU and the device models (snapshot/state.ts). */
  machine?: MachineState;
  /** kvm: KVM's vCPU and VM state and the devices (snapshot/kvm.ts). */
  kvm?: unknown;
}

interface LoadedSnapshot {
  config: VmConfig;
  engine: 'bt' | 'kvm';
  state: SnapshotState;
  memPath: string;
  /** kvm: the state, checked (Vm.restore). */
  kvm?: KvmMachineSnapshot;
}

/**
 * Make a loaded snapshot one of the other engine's (src/vmm/snapshot/cross-engine.ts): its state
 * converted, its configuration naming the engine that now runs it.
 */
async function moveSnapshot(snap: LoadedSnapshot, to: 'bt' | 'kvm', cpuMismatch: CpuMismatch): Promise<void> {
  const cross = await import('./snapshot/cross-engine.js');
  if (to === 'bt') {
    snap.state = { ...snap.state, engine: 'bt', machine: cross.btStateFromKvm(snap.kvm!, cpuMismatch), kvm: undefined };
    snap.kvm = undefined;
  } else {
    const [{ hostSupportedCpuid }, { kvmCpuidLookup }] = await Promise.all([import('../kvm/vm.js'), import('../kvm/cpu-model.js')]);
    snap.kvm = cross.kvmStateFromBt(snap.state.machine, kvmCpuidLookup(hostSupportedCpuid()), cpuMismatch);
  }
  snap.engine = to;
  // the guest knows typevisor's CPU model (kvm → bt checked that it asked for no more); under KVM it keeps it
  snap.config = { ...snap.config, engine: to, cpuModel: 'typevisor' };
}

/** Read and check a snapshot's state file and memory file (without reading the memory yet). */
function readSnapshot(files: SnapshotFiles): LoadedSnapshot {
  const { statePath, memPath } = files;
  for (const [what, p] of [['state file', statePath], ['memory file', memPath]] as const) {
    if (!existsSync(p)) throw new SnapshotError(`the snapshot's ${what} ${p} does not exist: check the path`);
    if (!statSync(p).isFile()) throw new SnapshotError(`the snapshot's ${what} ${p} is not a regular file`);
  }
  let state: SnapshotState;
  try {
    state = JSON.parse(readFileSync(statePath, 'utf8')) as SnapshotState;
  } catch {
    throw new SnapshotError(`${statePath} is not a typevisor snapshot state file (not JSON): give the snapshot_path written by a snapshot`);
  }
  if (typeof state !== 'object' || state === null || state.format !== SNAPSHOT_FORMAT) {
    throw new SnapshotError(`${statePath} is not a typevisor snapshot state file: give the snapshot_path written by a snapshot`);
  }
  if (state.version !== SNAPSHOT_VERSION) {
    throw new SnapshotError(`${statePath} is a version ${String(state.version)} snapshot; this typevisor reads version ${SNAPSHOT_VERSION}`);
  }
  const c = state.config;
  if (typeof c !== 'object' || c === null || !Number.isSafeInteger(c.memoryBytes) || c.memoryBytes !== state.memoryBytes) {
    throw new SnapshotError(`${statePath} is corrupt: its machine configuration is missing or does not match its memory size`);
  }
  const fd = openSync(memPath, 'r');
  const size = fstatSync(fd).size;
  closeSync(fd);
  if (size !== state.memoryBytes) {
    throw new SnapshotError(`the memory file ${memPath} holds ${size} bytes, but the snapshot's guest has ${state.memoryBytes}: a truncated or mismatched memory file`);
  }
  const engine = state.engine ?? 'bt';
  if (engine !== 'bt' && engine !== 'kvm') throw new SnapshotError(`${statePath} is corrupt: it names the engine ${JSON.stringify(engine)}, not "bt" or "kvm"`);
  if (!Number.isInteger(c.cpus) || c.cpus < 1 || c.cpus > 64) throw new SnapshotError(`${statePath} is corrupt: its configuration has ${JSON.stringify(c.cpus)} vCPUs`);
  return { config: { ...c, engine }, engine, state, memPath };
}
