/**
 * KvmEngine: runs the machine on /dev/kvm.
 *
 * Threads: the main thread owns the VM (fds, memory slots, in-kernel irqchip and PIT) and
 * never handles exits. vCPU i runs in worker thread i. Worker 0 is the device thread: it builds
 * the Machine from `machine.module` (see machine-factory.ts), so the boot CPU's port-I/O and
 * MMIO exits reach the devices without leaving its thread; application processors forward their
 * exits to it through a mailbox. Device interrupt lines go to KVM_IRQ_LINE, MSIs to
 * KVM_SIGNAL_MSI, both issued by the device thread.
 *
 * Stopping never hangs: the stop flag is set and each vCPU thread is kicked with SIGUSR2, which
 * it keeps blocked except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so KVM_RUN returns EINTR even if
 * the kick came while the thread was busy in JS; each worker then unmaps kvm_run, closes its
 * vCPU fd and ends, and only then the VM fds are closed. Guest RAM belongs to the caller
 * (createKvmGuestMemory) and is disposed after run() resolves.
 */
import { MessageChannel, Worker } from 'node:worker_threads';
import type { Engine, EntryState } from '../machine/engine.js';
import type { StopReason } from '../machine/machine.js';
import { Control, CTL_GO, CTL_HOST_MESSAGE, MAX_VCPUS, createControl, type ControlBuffers } from './control.js';
import type { KvmGuestMemory, KvmMemoryHandle } from './memory.js';
import { installKickHandler } from './sys.js';
import { KvmVm } from './vm.js';
import type { VcpuWorkerData, VcpuWorkerMessage } from './vcpu-worker.js';
import { KvmLifecycle, type KvmMachineSnapshot } from './lifecycle.js';
import { typevisorCpuid, type CpuModel } from './cpu-model.js';
import { takeVcpuThread, toModuleUrl, workerScript } from './prestart.js';

export class KvmEngineError extends Error {
  override name = 'KvmEngineError';
}

export interface KvmEngineOptions {
  /** Guest RAM from createKvmGuestMemory (or its handle). */
  memory: KvmGuestMemory | KvmMemoryHandle;
  /** Number of vCPUs (default 1). */
  cpus?: number;
  /** Where the device thread gets its Machine: a module URL (file: URL or path) and export. */
  machine: { module: string | URL; export?: string; config?: unknown };
  /** Messages the machine posts with ctx.post(). */
  onMessage?: (message: unknown) => void;
  /** Resume this (validated) state instead of booting: see lifecycle.ts. */
  restore?: KvmMachineSnapshot;
  /** The CPU the guest sees (cpu-model.ts): the host's (default) or typevisor's own model. */
  cpuModel?: CpuModel;
}

export const DEFAULT_MACHINE_EXPORT = 'createKvmMachine';

export class KvmEngine implements Engine {
  readonly name = 'kvm' as const;
  readonly cpus: number;
  private readonly handle: KvmMemoryHandle;
  private readonly buffers: ControlBuffers;
  private readonly control: Control;
  private readonly hostChannel = new MessageChannel();
  /** The first stop reason, from the host (stop()) or the machine, whichever came first. */
  private reason: StopReason | undefined;
  private running = false;
  private workers: Worker[] = [];
  /** Pause, resume, snapshots (lifecycle.ts). */
  private readonly lifecycle: KvmLifecycle;

  constructor(private readonly options: KvmEngineOptions) {
    this.cpus = options.cpus ?? 1;
    if (!Number.isInteger(this.cpus) || this.cpus < 1 || this.cpus > MAX_VCPUS) {
      throw new KvmEngineError(`cpus must be 1..${MAX_VCPUS}, got ${options.cpus}`);
    }
    this.handle = 'handle' in options.memory ? options.memory.handle : options.memory;
    this.buffers = createControl(this.cpus);
    this.control = new Control(this.buffers);
    this.lifecycle = new KvmLifecycle(this.cpus, this.control);
    if (options.restore && options.restore.vcpus.length !== this.cpus) {
      throw new KvmEngineError(`the state to restore has ${options.restore.vcpus.length} vCPUs, this engine ${this.cpus}`);
    }
  }

  /** Every vCPU out of KVM_RUN, disk I/O drained, guest time stopped; resolves once so (or stopped). */
  pause(): Promise<void> {
    return this.lifecycle.pause();
  }

  resume(): void {
    this.lifecycle.resume();
  }

  get paused(): boolean {
    return this.lifecycle.paused;
  }

  /** The whole machine's state (vCPUs, in-kernel devices, clock, the machine's devices); paused only. */
  saveState(): Promise<KvmMachineSnapshot> {
    return this.lifecycle.save();
  }

  /**
   * Send a message to the machine (its ctx.onMessage handlers), waking the device thread. The
   * ArrayBuffers in `transfer` are moved, not copied (they are detached here afterwards).
   */
  post(message: unknown, transfer?: ArrayBuffer[]): void {
    this.hostChannel.port1.postMessage(message, transfer);
    Atomics.store(this.control.ctl, CTL_HOST_MESSAGE, 1);
    this.control.kick(0);
  }

  stop(reason: StopReason): void {
    this.reason ??= reason;
    this.control.requestStop(this.cpus);
    this.lifecycle.wake(); // paused vCPUs wait on their ports, not in KVM_RUN
  }

  /** Boot from `entry`, or resume the state given as `options.restore`. */
  async run(entry?: EntryState): Promise<StopReason> {
    if (this.running) throw new KvmEngineError('this KvmEngine is already running; create one per run');
    this.running = true;
    installKickHandler();
    const vm = new KvmVm(this.handle);
    if (this.cpus > vm.maxVcpus) {
      vm.close();
      throw new KvmEngineError(`this host's KVM allows at most ${vm.maxVcpus} vCPUs, asked for ${this.cpus}`);
    }
    let ready = 0;
    const started = workerScript('vcpu-worker');
    const exits: Promise<void>[] = [];
    try {
      for (let i = 0; i < this.cpus; i++) {
        const data: VcpuWorkerData = {
          index: i,
          cpus: this.cpus,
          vmFd: vm.vmFd,
          mmapSize: vm.vcpuMmapSize,
          cpuid: this.options.cpuModel === 'typevisor' ? typevisorCpuid(vm.cpuid) : vm.cpuid,
          memory: this.handle,
          control: this.buffers,
          msrIndices: vm.msrIndices,
          xsaveSize: vm.xsaveSize,
        };
        const restore = this.options.restore;
        if (restore) data.restore = { vcpu: restore.vcpus[i]!, devices: i === 0 ? restore.devices : undefined, tscRateMayChange: restore.tscRateMayChange };
        const transfer = [];
        if (i === 0) {
          data.entry = entry;
          data.machine = {
            module: toModuleUrl(this.options.machine.module),
            export: this.options.machine.export ?? DEFAULT_MACHINE_EXPORT,
            config: this.options.machine.config,
          };
          data.hostPort = this.hostChannel.port2;
          transfer.push(this.hostChannel.port2);
        }
        // a thread started ahead (prestart.ts) gets its vCPU by message; else a new one
        const prestarted = takeVcpuThread();
        const w = prestarted ?? new Worker(started.script, { eval: started.eval, workerData: data, transferList: transfer });
        prestarted?.postMessage({ type: 'init', data }, transfer);
        this.workers.push(w);
        this.lifecycle.attach(vm, this.workers);
        exits.push(
          new Promise<void>((resolve) => {
            let done = false;
            w.on('message', (m: VcpuWorkerMessage) => {
              switch (m.type) {
                case 'ready':
                  if (++ready === this.cpus) {
                    // A restore: the devices have re-driven their lines; now the in-kernel
                    // PIC, IOAPIC, PIT and clock, before any vCPU runs.
                    try {
                      if (this.options.restore) vm.restoreState(this.options.restore.vm);
                    } catch (e) {
                      this.reason ??= { kind: 'error', message: `cannot restore the VM: ${(e as Error).message}` };
                      this.control.requestStop(this.cpus);
                    }
                    Atomics.store(this.control.ctl, CTL_GO, 1);
                    Atomics.notify(this.control.ctl, CTL_GO);
                  }
                  break;
                case 'stop':
                  this.reason ??= m.reason;
                  this.control.requestStop(this.cpus);
                  break;
                case 'machine':
                  this.options.onMessage?.(m.message);
                  break;
                case 'paused':
                case 'saved':
                  this.lifecycle.onMessage(m);
                  break;
                case 'done':
                  // The thread has left KVM_RUN for good and released its vCPU: safe to end it.
                  done = true;
                  void w.terminate();
                  break;
              }
            });
            w.on('error', (e) => {
              this.reason ??= { kind: 'error', message: `vCPU ${i} worker: ${e.message}` };
              this.control.requestStop(this.cpus);
            });
            w.on('exit', () => {
              if (!done) {
                this.reason ??= { kind: 'error', message: `vCPU ${i} worker ended unexpectedly` };
                this.control.requestStop(this.cpus);
              }
              resolve();
            });
          }),
        );
      }
      await Promise.all(exits);
    } finally {
      this.control.requestStop(this.cpus);
      this.lifecycle.wake();
      await Promise.all(exits);
      this.lifecycle.end();
      this.hostChannel.port1.close();
      vm.close();
      this.workers = [];
    }
    return this.reason ?? { kind: 'quit' };
  }
}
