/**
 * A vCPU thread: creates its vCPU, runs KVM_RUN in a loop and handles port-I/O and MMIO exits
 * right here (forwarding an exit to another thread costs 25-40 µs; see
 * shared/notes/kvm-from-node.md).
 *
 * vCPU 0 is also the device thread: it builds the Machine (devices and buses) by importing the
 * factory module named in its workerData, so every exit of the boot CPU reaches the devices
 * without leaving the thread. Other vCPUs forward their exits to vCPU 0 through a mailbox and
 * a kick. Device timers (the machine's TimerQueue) fire through a POSIX timer that kicks this
 * thread out of KVM_RUN; host messages (console input...) arrive on a MessagePort drained on
 * each kick. Device interrupts leave from here too: INTx lines as KVM_IRQ_LINE, MSI/MSI-X
 * messages as KVM_SIGNAL_MSI (msi.ts), both on the VM fd.
 *
 * ACPI S3 (offered with one vCPU only): the PM device's machine.sleepEvent('suspend') keeps the
 * device thread out of KVM_RUN (sleepInS3) until a wake event; then the vCPU starts at the FACS
 * waking vector (setWakeState), as on the bt engine.
 *
 * Pause (lifecycle.ts): at the pause flag the thread leaves its loop and holds in holdPaused,
 * answering the engine's commands (save, resume, wake) on its port. A restored vCPU gets its
 * state (and the device thread its devices') before it reports ready.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import type { AccessSize } from '../machine/bus.js';
import type { EntryState } from '../machine/engine.js';
import type { Machine, StopReason } from '../machine/machine.js';
import {
  Control,
  CTL_HOST_MESSAGE,
  CTL_PAUSE,
  CTL_PAUSED_APS,
  MAILBOX_WORDS,
  MB_ADDR_HI,
  MB_ADDR_LO,
  MB_DONE,
  MB_IDLE,
  MB_KIND,
  MB_REQUEST,
  MB_SIZE,
  MB_STATE,
  MB_VALUE,
  MB_WRITE,
  type ControlBuffers,
} from './control.js';
import { guestMemoryOver, type KvmMemoryHandle } from './memory.js';
import { facsWakeTarget } from '../boot/acpi/wake.js';
import type { KvmMachineContext, KvmMachineFactory, KvmMachineHooks, KvmMachineWarmUp } from './machine-factory.js';
import type { LifecycleMessage, VcpuCommand } from './lifecycle.js';
import type { WarmWorkerData } from './prestart.js';
import { MSR_IA32_TSC, completePendingExit, noteGuestStopped, readTsc, restoreVcpuState, saveVcpuState, type KvmVcpuState } from './vcpu-state.js';
import { C, installKickHandler, sys } from './sys.js';
import { DeadlineTimer } from './timer.js';
import {
  armKickSignal,
  createVcpu,
  destroyVcpu,
  eatKick,
  lastErrno,
  readRip,
  setBootMsrs,
  setCpuid,
  setEntryState,
  setFpu,
  setLint,
  setWakeState,
  vcpuCpuid,
  type Vcpu,
} from './vcpu.js';
import { KvmMsiSink } from './msi.js';
import { setIrqLine } from './vm.js';

export interface VcpuWorkerData {
  index: number;
  cpus: number;
  vmFd: number;
  mmapSize: number;
  cpuid: Uint8Array;
  memory: KvmMemoryHandle;
  control: ControlBuffers;
  /** Boot CPU only. */
  entry?: EntryState;
  /** Boot CPU only: the module that builds the machine. */
  machine?: { module: string; export: string; config: unknown };
  /** Boot CPU only: messages from the host (engine.post). */
  hostPort?: MessagePort;
  /** The MSRs a snapshot saves (KVM_GET_MSR_INDEX_LIST) and the XSAVE area's size. */
  msrIndices: number[];
  xsaveSize: number;
  /** A restored vCPU: its state, and for the boot CPU the devices' (KvmMachineHooks.restore). */
  restore?: { vcpu: KvmVcpuState; devices?: unknown; tscRateMayChange?: boolean };
}

/** Messages a vCPU worker posts to the engine. */
export type VcpuWorkerMessage =
  | { type: 'ready'; index: number }
  | { type: 'stop'; index: number; reason: StopReason }
  | { type: 'machine'; message: unknown }
  | { type: 'done'; index: number }
  | LifecycleMessage;

interface IoTarget {
  pio(write: boolean, port: number, size: AccessSize, value: number): number;
  mmio(write: boolean, addr: number, size: AccessSize, value: number): number;
}

/**
 * Modules a thread started ahead has loaded, by URL. Why: import() of a module already loaded
 * still goes through the loader's resolution and a few turns of the event loop, ~0.9 ms
 * (median of 11) on a restore's path to its first KVM_RUN. Declared before the top-level await
 * below: vcpuData fills it.
 */
const preloaded = new Map<string, Record<string, unknown>>();

/** This thread's vCPU: from workerData, or for a thread started ahead (prestart.ts) its 'init' message. */
const data = await vcpuData();
const control = new Control(data.control);
const post = (m: VcpuWorkerMessage): void => parentPort!.postMessage(m);

/** Commands from the engine (pause, snapshot), read while this vCPU holds paused. */
const commands: VcpuCommand[] = [];
let commandArrived: (() => void) | undefined;

async function vcpuData(): Promise<VcpuWorkerData> {
  const given = workerData as VcpuWorkerData | WarmWorkerData;
  if (!('warm' in given)) return given;
  let init: VcpuWorkerData | undefined;
  const arrived = new Promise<VcpuWorkerData>((resolve) => parentPort!.once('message', (m: { type: 'init'; data: VcpuWorkerData }) => resolve((init = m.data))));
  // Load what the vCPU will need while waiting, and run the machine's code once (its `warmUp`:
  // machine-factory.ts) unless the vCPU came first. A failure shows again, and is reported, in main.
  const more = (): Promise<boolean> => new Promise((resolve) => setImmediate(() => resolve(init === undefined)));
  for (const m of given.preload) {
    import(m)
      .then(async (mod: Record<string, unknown> & { warmUp?: KvmMachineWarmUp }) => {
        preloaded.set(m, mod);
        if (typeof mod.warmUp === 'function' && (await more())) await mod.warmUp(more);
      })
      .catch(() => {});
  }
  return arrived;
}

function nextCommand(): Promise<VcpuCommand> {
  const c = commands.shift();
  if (c) return Promise.resolve(c);
  return new Promise((resolve) => (commandArrived = () => resolve(commands.shift()!)));
}

let localStop: StopReason | undefined;
/** ACPI S3 on the device thread: running, suspended (out of KVM_RUN), or woken (restart at the waking vector). */
let s3: 'running' | 'suspended' | 'woken' = 'running';
/** How often a suspended device thread looks for host messages, a pause or a stop (the kicks only end KVM_RUN). */
const S3_POLL_MS = 20;
/** What the machine asked to run when this thread ends (ctx.onExit). */
const exitHandlers: (() => void | Promise<void>)[] = [];
function stopWith(reason: StopReason): void {
  if (localStop) return;
  localStop = reason;
  post({ type: 'stop', index: data.index, reason });
}

/** The device thread's machine-backed target. */
function machineTarget(machine: Machine): IoTarget {
  const { pio, mmio } = machine;
  return {
    pio(write, port, size, value) {
      if (write) {
        pio.write(port, size, value);
        return 0;
      }
      return pio.read(port, size);
    },
    mmio(write, addr, size, value) {
      if (write) {
        mmio.write(addr, size, value);
        return 0;
      }
      return mmio.read(addr, size);
    },
  };
}

/** An application processor's target: the device thread's buses, through the mailbox. */
function mailboxTarget(): IoTarget {
  const mb = control.mailboxes;
  const at = data.index * MAILBOX_WORDS;
  const call = (kind: number, write: boolean, addr: number, size: AccessSize, value: number): number => {
    mb[at + MB_KIND] = kind;
    mb[at + MB_WRITE] = write ? 1 : 0;
    mb[at + MB_ADDR_LO] = addr >>> 0;
    mb[at + MB_ADDR_HI] = Math.floor(addr / 0x1_0000_0000);
    mb[at + MB_SIZE] = size;
    mb[at + MB_VALUE] = value;
    Atomics.store(mb, at + MB_STATE, MB_REQUEST);
    control.kick(0);
    while (Atomics.load(mb, at + MB_STATE) !== MB_DONE) {
      if (control.stopRequested || localStop) return 0xffff_ffff;
      Atomics.wait(mb, at + MB_STATE, MB_REQUEST, 50);
    }
    const v = mb[at + MB_VALUE]! >>> 0;
    Atomics.store(mb, at + MB_STATE, MB_IDLE);
    return v;
  };
  return {
    pio: (write, port, size, value) => call(0, write, port, size, value),
    mmio: (write, addr, size, value) => call(1, write, addr, size, value),
  };
}

/** Device thread: serve the application processors' forwarded exits. */
function serveMailboxes(target: IoTarget): void {
  const mb = control.mailboxes;
  for (let j = 1; j < data.cpus; j++) {
    const at = j * MAILBOX_WORDS;
    if (Atomics.load(mb, at + MB_STATE) !== MB_REQUEST) continue;
    const write = mb[at + MB_WRITE] === 1;
    const addr = (mb[at + MB_ADDR_LO]! >>> 0) + (mb[at + MB_ADDR_HI]! >>> 0) * 0x1_0000_0000;
    const size = mb[at + MB_SIZE] as AccessSize;
    const value = mb[at + MB_VALUE]! >>> 0;
    const r = mb[at + MB_KIND] === 0 ? target.pio(write, addr, size, value) : target.mmio(write, addr, size, value);
    mb[at + MB_VALUE] = r;
    Atomics.store(mb, at + MB_STATE, MB_DONE);
    Atomics.notify(mb, at + MB_STATE);
  }
}

function handleIo(v: Vcpu, target: IoTarget): void {
  const run = v.run;
  const write = run.getUint8(C.KVM_RUN_IO_DIRECTION) === C.KVM_EXIT_IO_OUT;
  const size = run.getUint8(C.KVM_RUN_IO_SIZE) as AccessSize;
  const port = run.getUint16(C.KVM_RUN_IO_PORT, true);
  const count = run.getUint32(C.KVM_RUN_IO_COUNT, true);
  let off = run.getUint32(C.KVM_RUN_IO_DATA_OFFSET, true);
  if ((size !== 1 && size !== 2 && size !== 4) || off + count * size > v.runSize) return;
  for (let i = 0; i < count; i++, off += size) {
    if (write) {
      const value = size === 1 ? run.getUint8(off) : size === 2 ? run.getUint16(off, true) : run.getUint32(off, true);
      target.pio(true, port, size, value);
    } else {
      const value = target.pio(false, port, size, 0);
      if (size === 1) run.setUint8(off, value);
      else if (size === 2) run.setUint16(off, value, true);
      else run.setUint32(off, value, true);
    }
  }
}

function handleMmio(v: Vcpu, target: IoTarget): void {
  const run = v.run;
  const addr = run.getUint32(C.KVM_RUN_MMIO_PHYS_ADDR, true) + run.getUint32(C.KVM_RUN_MMIO_PHYS_ADDR + 4, true) * 0x1_0000_0000;
  const len = run.getUint32(C.KVM_RUN_MMIO_LEN, true);
  const write = run.getUint8(C.KVM_RUN_MMIO_IS_WRITE) !== 0;
  const d = C.KVM_RUN_MMIO_DATA;
  if (len === 1 || len === 2 || len === 4) {
    if (write) {
      const value = len === 1 ? run.getUint8(d) : len === 2 ? run.getUint16(d, true) : run.getUint32(d, true);
      target.mmio(true, addr, len, value);
    } else {
      const value = target.mmio(false, addr, len, 0);
      if (len === 1) run.setUint8(d, value);
      else if (len === 2) run.setUint16(d, value, true);
      else run.setUint32(d, value, true);
    }
  } else if (len === 8) {
    // The bus carries at most 4 bytes: low half first.
    if (write) {
      target.mmio(true, addr, 4, run.getUint32(d, true));
      target.mmio(true, addr + 4, 4, run.getUint32(d + 4, true));
    } else {
      run.setUint32(d, target.mmio(false, addr, 4, 0), true);
      run.setUint32(d + 4, target.mmio(false, addr + 4, 4, 0), true);
    }
  } else if (len > 0 && len < 8) {
    for (let i = 0; i < len; i++) {
      if (write) target.mmio(true, addr + i, 1, run.getUint8(d + i));
      else run.setUint8(d + i, target.mmio(false, addr + i, 1, 0));
    }
  }
}

/** Handle one exit; returns a stop reason when the vCPU must stop. */
function handleExit(v: Vcpu, target: IoTarget): StopReason | undefined {
  const reason = v.run.getUint32(C.KVM_RUN_EXIT_REASON, true);
  switch (reason) {
    case C.KVM_EXIT_IO:
      handleIo(v, target);
      return undefined;
    case C.KVM_EXIT_MMIO:
      handleMmio(v, target);
      return undefined;
    case C.KVM_EXIT_INTR:
    case C.KVM_EXIT_HLT:
    case C.KVM_EXIT_IRQ_WINDOW_OPEN:
      return undefined;
    case C.KVM_EXIT_SHUTDOWN:
      return { kind: 'triple-fault', detail: `vCPU ${data.index}: KVM_EXIT_SHUTDOWN at rip 0x${readRip(v).toString(16)}` };
    case C.KVM_EXIT_SYSTEM_EVENT: {
      const type = v.run.getUint32(C.KVM_RUN_SYSTEM_EVENT_TYPE, true);
      if (type === C.KVM_SYSTEM_EVENT_RESET) return { kind: 'reset' };
      if (type === C.KVM_SYSTEM_EVENT_SHUTDOWN) return { kind: 'poweroff' };
      return { kind: 'error', message: `vCPU ${data.index}: KVM system event ${type}` };
    }
    case C.KVM_EXIT_INTERNAL_ERROR: {
      const sub = v.run.getUint32(C.KVM_RUN_INTERNAL_SUBERROR, true);
      const what = sub === C.KVM_INTERNAL_ERROR_EMULATION ? 'instruction emulation failed' : `internal error ${sub}`;
      return {
        kind: 'error',
        message: `vCPU ${data.index}: KVM ${what} at rip 0x${readRip(v).toString(16)} (on a kvm_pvm host only small guests run; use --engine bt)`,
      };
    }
    case C.KVM_EXIT_FAIL_ENTRY: {
      const hw = v.run.getBigUint64(C.KVM_RUN_FAIL_ENTRY_HARDWARE_ENTRY_FAILURE_REASON, true);
      return { kind: 'error', message: `vCPU ${data.index}: VM entry failed (hardware reason 0x${hw.toString(16)})` };
    }
    default:
      return { kind: 'error', message: `vCPU ${data.index}: unexpected KVM exit reason ${reason}` };
  }
}

async function main(): Promise<void> {
  installKickHandler();
  const memory = guestMemoryOver(data.memory);
  let machine: Machine | undefined;
  let hooks: KvmMachineHooks | undefined;
  const hostHandlers: ((m: unknown) => void)[] = [];
  if (data.machine) {
    const mod = preloaded.get(data.machine.module) ?? ((await import(data.machine.module)) as Record<string, unknown>);
    const factory = mod[data.machine.export] as KvmMachineFactory | undefined;
    if (typeof factory !== 'function') {
      throw new Error(`machine module ${data.machine.module} has no function export "${data.machine.export}"`);
    }
    const ctx: KvmMachineContext = {
      memory,
      config: data.machine.config,
      cpus: data.cpus,
      post: (message, transfer) => parentPort!.postMessage({ type: 'machine', message } satisfies VcpuWorkerMessage, transfer),
      onMessage: (h) => hostHandlers.push(h),
      onExit: (h) => exitHandlers.push(h),
      provide: (h) => (hooks = h),
    };
    machine = await factory(ctx);
    const vmFd = data.vmFd;
    machine.irq.install({ setIrq: (gsi, level) => setIrqLine(vmFd, gsi, level) });
    // PCI MSI/MSI-X messages: KVM_SIGNAL_MSI from this thread, where the exits are served.
    machine.msi.install(new KvmMsiSink(vmFd));
    machine.onStop((r) => stopWith(r));
    machine.onSleepEvent((event) => {
      if (event === 'suspend') s3 = 'suspended';
      else if (s3 === 'suspended') s3 = 'woken';
    });
    if (data.restore) {
      if (!hooks) throw new Error(`machine module ${data.machine.module} provides no snapshot hooks (ctx.provide): it cannot restore devices`);
      hooks.restore(data.restore.devices);
    }
  }

  const v = createVcpu(data.vmFd, data.index, data.mmapSize);
  let timer: DeadlineTimer | undefined;
  try {
    if (data.restore) {
      restoreVcpuState(v, data.restore.vcpu, data.xsaveSize, data.restore.tscRateMayChange);
      noteGuestStopped(v);
    } else {
      setCpuid(v, vcpuCpuid(data.cpuid, data.index, data.cpus));
      setBootMsrs(v);
      setFpu(v);
      if (data.index === 0) {
        setLint(v);
        if (data.entry) setEntryState(v, data.entry, memory);
      }
    }
    armKickSignal(v);
    if (machine) timer = new DeadlineTimer();
    control.markRunning(data.index, sys.pthreadSelf());
    post({ type: 'ready', index: data.index });
    // Start barrier: every vCPU exists before the boot CPU runs (so its INIT/SIPIs land).
    while (Atomics.load(control.ctl, 1) === 0 && !control.stopRequested) Atomics.wait(control.ctl, 1, 0, 100);
    await runLoop(v, machine, hooks, timer, hostHandlers);
  } catch (e) {
    stopWith({ kind: 'error', message: `vCPU ${data.index}: ${e instanceof Error ? e.message : String(e)}` });
  } finally {
    control.markExiting(data.index);
    timer?.delete();
    destroyVcpu(v);
    data.hostPort?.close();
    await runExitHandlers(exitHandlers);
    post({ type: 'done', index: data.index });
  }
}

/** The machine's exit handlers (closing disk images...), each on its own: one failing stops none. */
async function runExitHandlers(handlers: (() => void | Promise<void>)[]): Promise<void> {
  for (const h of handlers.splice(0)) {
    try {
      await h();
    } catch (e) {
      stopWith({ kind: 'error', message: `vCPU ${data.index}: while closing the machine: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
}

/** The machine clock, when it can stop (HostClock): a paused guest does not see the time pass. */
interface PausableClock {
  pause(): void;
  resume(): void;
}
const pausable = (c: unknown): PausableClock | undefined =>
  typeof c === 'object' && c !== null && typeof (c as Partial<PausableClock>).pause === 'function' && typeof (c as Partial<PausableClock>).resume === 'function' ? (c as PausableClock) : undefined;

const stopping = (): boolean => localStop !== undefined || control.stopRequested;

/**
 * Hold this vCPU out of KVM_RUN until the engine resumes it (or the VM stops), answering
 * snapshot requests meanwhile. The device thread also drains the devices and stops their clock.
 */
async function holdPaused(v: Vcpu, machine: Machine | undefined, hooks: KvmMachineHooks | undefined, target: IoTarget): Promise<void> {
  completePendingExit(v);
  eatKick();
  const clock = pausable(machine?.clock);
  if (machine) {
    // An application processor may be in the middle of an exit only the devices can finish.
    while (Atomics.load(control.ctl, CTL_PAUSED_APS) < data.cpus - 1 && !stopping()) {
      serveMailboxes(target);
      await new Promise((r) => setTimeout(r, 1));
    }
    if (stopping()) return;
    await hooks?.quiesce();
    clock?.pause();
  } else {
    Atomics.add(control.ctl, CTL_PAUSED_APS, 1);
  }
  try {
    const tsc = readTsc(v);
    post({ type: 'paused', index: data.index });
    for (;;) {
      const cmd = await nextCommand();
      if (stopping()) return;
      if (cmd.type === 'resume') break;
      if (cmd.type === 'save') post(saveState(v, hooks, tsc));
    }
    noteGuestStopped(v);
  } finally {
    if (machine) clock?.resume();
    else Atomics.sub(control.ctl, CTL_PAUSED_APS, 1);
  }
}

/** This vCPU's state (with the TSC as it was at the pause), and the devices' on the device thread. */
function saveState(v: Vcpu, hooks: KvmMachineHooks | undefined, tsc: bigint): LifecycleMessage {
  if (s3 !== 'running') return { type: 'saved', index: data.index, error: 'the guest is suspended (ACPI S3); snapshots of a sleeping machine are not supported yet: wake it first' };
  try {
    const vcpu = saveVcpuState(v, data.msrIndices, data.xsaveSize);
    const t = vcpu.msrs.find((m) => m.index === MSR_IA32_TSC);
    if (t) t.data = `0x${tsc.toString(16)}`;
    if (data.index !== 0) return { type: 'saved', index: data.index, vcpu };
    if (!hooks) return { type: 'saved', index: 0, error: `machine module ${data.machine?.module} provides no snapshot hooks (ctx.provide): its devices cannot be saved` };
    return { type: 'saved', index: 0, vcpu, devices: hooks.save() };
  } catch (e) {
    return { type: 'saved', index: data.index, error: e instanceof Error ? e.message : String(e) };
  }
}

async function runLoop(v: Vcpu, machine: Machine | undefined, hooks: KvmMachineHooks | undefined, timer: DeadlineTimer | undefined, hostHandlers: ((m: unknown) => void)[]): Promise<void> {
  const target = machine ? machineTarget(machine) : mailboxTarget();
  const timers = machine?.timers;
  const clock = machine?.clock;
  const hostPort = data.hostPort;
  const apCount = data.cpus - 1;
  let armedDeadline = Infinity;
  const fd = v.fd;
  const drainHost = (): void => {
    if (hostPort && Atomics.exchange(control.ctl, CTL_HOST_MESSAGE, 0) !== 0) {
      for (let m = receiveMessageOnPort(hostPort); m; m = receiveMessageOnPort(hostPort)) {
        for (const h of hostHandlers) h(m.message);
      }
    }
  };
  drainHost(); // messages posted before this thread could be kicked
  for (;;) {
    if (localStop || control.stopRequested) return;
    if (Atomics.load(control.ctl, CTL_PAUSE) !== 0) {
      await holdPaused(v, machine, hooks, target);
      armedDeadline = NaN; // the machine clock moved on (or was restored): re-arm
      continue;
    }
    if (timers && clock) {
      let next = timers.nextDeadline();
      if (next !== Infinity && next <= clock.nowNs()) {
        timers.runDue();
        next = timers.nextDeadline();
        if (localStop) return;
      }
      if (next !== armedDeadline) {
        armedDeadline = next;
        timer!.arm(next === Infinity ? 0n : process.hrtime.bigint() + BigInt(Math.max(1, Math.ceil(next - clock.nowNs()))));
      }
    }
    if (apCount > 0 && machine) serveMailboxes(target);
    // Run the microtasks device handlers queued (the UART flushes its output batch on one)
    // before the guest may run for a long time without exiting: ~0.1 µs on a ~10 µs exit.
    await null;
    if (sys.ioctlVal(fd, C.KVM_RUN, 0) < 0) {
      const e = lastErrno();
      if (e !== C.EINTR && e !== C.EAGAIN) {
        stopWith({ kind: 'error', message: `vCPU ${data.index}: KVM_RUN failed with errno ${e}` });
        return;
      }
      eatKick();
      armedDeadline = NaN; // a deadline kick may land a hair early: re-arm from fresh clocks
      drainHost();
      // Let this thread's event loop breathe (device promises, stdout flushing).
      await new Promise<void>((resolve) => setImmediate(resolve));
      continue;
    }
    const r = handleExit(v, target) ?? (s3 !== 'running' && machine ? await sleepInS3(v, machine, hooks, target, drainHost) : undefined);
    if (r) {
      stopWith(r);
      return;
    }
    if (s3 === 'running') continue;
    armedDeadline = NaN; // after S3: the machine clock moved on
  }
}

/**
 * ACPI S3, entered by the exit just handled: no KVM_RUN until a wake event. Device timers run
 * (the RTC alarm), host messages are served (console input and the power button are wake
 * events), a pause holds as usual. Then the vCPU starts as firmware hands over to the OS, at
 * the FACS waking vector; without a valid one the machine resets (the reason says why).
 */
async function sleepInS3(v: Vcpu, machine: Machine, hooks: KvmMachineHooks | undefined, target: IoTarget, drainHost: () => void): Promise<StopReason | undefined> {
  completePendingExit(v); // the OUT that entered S3 is complete before the state changes
  const { timers, clock } = machine;
  while (s3 === 'suspended') {
    if (stopping()) return undefined;
    if (Atomics.load(control.ctl, CTL_PAUSE) !== 0) {
      await holdPaused(v, machine, hooks, target);
      continue;
    }
    drainHost();
    timers.runDue();
    if (s3 !== 'suspended') break;
    const next = timers.nextDeadline();
    const ms = next === Infinity ? S3_POLL_MS : Math.min(S3_POLL_MS, Math.max(0, (next - clock.nowNs()) / 1e6));
    await new Promise((r) => setTimeout(r, ms));
  }
  if (stopping()) return undefined;
  s3 = 'running';
  const wake = facsWakeTarget(machine.memory);
  if (!wake.ok) return { kind: 'reset', detail: `S3 wake: ${wake.reason}` };
  setWakeState(v, wake.entry);
  eatKick(); // the deadline timer's kicks while suspended
  return undefined;
}

parentPort!.on('message', (m: VcpuCommand) => {
  commands.push(m);
  const w = commandArrived;
  commandArrived = undefined;
  w?.();
});
main().catch(async (e: unknown) => {
  stopWith({ kind: 'error', message: `vCPU ${data.index}: ${e instanceof Error ? e.message : String(e)}` });
  await runExitHandlers(exitHandlers); // a machine that failed half-built (disks opened...)
  post({ type: 'done', index: data.index });
});
