/**
 * Runs one VM from a validated VmConfig: resolve the guest artifacts, choose the engine, build
 * the machine, load the kernel, connect the console, run, and turn the stop reason into a
 * process exit status. Problems the user can fix are thrown as errors with one-line messages.
 */
import os from 'node:os';
import { randomBytes, randomFillSync } from 'node:crypto';
import { bootImage } from '../boot/loader.js';
import { extractVmlinux } from '../boot/extract.js';
import { BtEngine } from '../engine/bt/engine.js';
import { buildMachine } from '../machine/builder.js';
import { exitStatus, type Machine, type StopReason } from '../machine/machine.js';
import { GuestMemory } from '../machine/memory.js';
import { ramRegionSpecs } from '../machine/ram.js';
import { Cpu } from '../cpu/core/cpu.js';
import { withArena } from '../cpu/wasm/arena.js';
import { HostConsole } from '../cli/console.js';
import { prepareDefaultGuest } from '../guest/default-guest.js';
import { kvmAvailability } from '../kvm/detect.js';
import { ConfigError, validateMemory, type VmConfig } from './config.js';
import { readGuestFiles } from './guest-files.js';
import { PanicWatch } from './panic-watch.js';
import { StreamNetBackend } from '../net/stream.js';
import { describeCpu } from '../engine/bt/dump.js';
import type { BlockDevice } from '../devices/virtio/blk/blk.js';
import { MAX_FRAME, defaultMac } from '../devices/virtio/net/net.js';
import { openDisks, type OpenDisks } from './disk/open.js';

/**
 * The default kernel command line: serial console; reset through the keyboard controller, and
 * at once on a panic (typevisor then ends with the panic's status and message).
 */
export const DEFAULT_CMDLINE = 'console=ttyS0 reboot=k panic=-1';
/** The default command line with --console virtio: the kernel's console is hvc0. */
export const DEFAULT_CMDLINE_HVC = 'console=hvc0 reboot=k panic=-1';

export class VmError extends Error {
  override name = 'VmError';
}

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

export async function runVm(config: VmConfig): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  validateMemory(config.memoryBytes, os.totalmem());

  // 1. Guest artifacts: the user's, or the default Debian guest (fetched and cached).
  let kernelPath = config.kernel;
  let initrdPath = config.initrd;
  if (kernelPath === undefined) {
    const guest = await prepareDefaultGuest();
    kernelPath = guest.kernelPath;
    initrdPath ??= guest.initrdPath;
  }
  // Sizes are checked from stat before reading, and the kernel's header against the file.
  const files = readGuestFiles(kernelPath, initrdPath, config.memoryBytes);
  const { format, initrd } = files;
  let image = files.image;
  if (config.vmlinux) {
    if (format !== 'bzimage') throw new ConfigError('--vmlinux needs a bzImage kernel to extract the vmlinux from');
    image = extractVmlinux(image);
  }

  // 2. The engine (decided before memory is allocated: kvm wants memfd-backed RAM).
  const engineName = chooseEngine(config.engine, log);
  if (engineName === 'kvm' && config.net !== undefined && config.net.mode !== 'none') {
    throw new ConfigError('--net needs the bt engine for now (the kvm engine has no network card yet): use --engine bt');
  }
  if (engineName === 'kvm' && config.console === 'virtio') {
    throw new ConfigError('--console virtio needs the bt engine for now (the kvm engine has no virtio console yet): use --engine bt or --console serial');
  }
  if (engineName === 'kvm') {
    const { runKvmVm } = await import('./run-kvm.js');
    return runKvmVm(config, image, initrd);
  }

  // Disks: checked, locked and opened once; a guest reset keeps them.
  const disks = await openDisks(config.disks ?? []);

  // 3.-5. Build, load and run the machine; a guest reset builds it anew (unless --no-reboot).
  // The bt engine translates to WebAssembly; TYPEVISOR_BT_BACKEND=js selects the JavaScript translator.
  Cpu.defaultBackend = process.env.TYPEVISOR_BT_BACKEND === 'js' ? 'js' : 'wasm';
  const panicWatch = new PanicWatch();
  // The network back end outlives guest resets (passt -1 serves one connection).
  const net = config.net?.mode === 'stream' ? new StreamNetBackend(config.net.path, MAX_FRAME, log) : undefined;
  try {
    await net?.connect();
  } catch (e) {
    await disks.close();
    throw e;
  }
  // Signals stop whichever boot is running, and keep a restart from starting.
  const session: BootSession = { machine: undefined, signal: undefined };
  const onSignal = (signal: NodeJS.Signals) => {
    session.signal ??= signal;
    session.machine?.requestStop({ kind: 'signal', signal });
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    for (;;) {
      let reason = await runBtOnce(config, image, initrd, panicWatch, session, net, disks);
      // panic=-1 (the default command line) resets right after the panic message: a reset that
      // follows one is the panic, also when no pvpanic driver told us
      if ((reason.kind === 'reset' || reason.kind === 'panic') && panicWatch.reason !== undefined) {
        reason = { kind: 'panic', detail: panicWatch.reason };
      }
      if (reason.kind === 'reset' && config.reboot !== false && session.signal === undefined) {
        log('typevisor: the guest reset the machine; restarting it (--no-reboot ends typevisor instead)');
        // let the event loop run (signals, console output) even when a guest resets at once
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      if (session.signal !== undefined) reason = { kind: 'signal', signal: session.signal };
      return reportStop(reason, log);
    }
  } finally {
    net?.close();
    for (const s of signals) process.off(s, onSignal);
    await disks.close();
  }
}

/** The boot that is running (signals stop it) and the first signal that arrived. */
interface BootSession {
  machine: Machine | undefined;
  signal: NodeJS.Signals | undefined;
}

/** One boot on the bt engine: fresh memory and devices, the kernel loaded, run until it stops. */
async function runBtOnce(config: VmConfig, image: Uint8Array, initrd: Uint8Array | undefined, panicWatch: PanicWatch, session: BootSession, net: StreamNetBackend | undefined, disks: OpenDisks): Promise<StopReason> {
  // 3. The machine, with its console wired to this process's stdio.
  const specs = ramRegionSpecs(config.memoryBytes);
  const memory = new GuestMemory(Cpu.defaultBackend === 'wasm' ? withArena(specs) : specs);
  const toStdout = (bytes: Uint8Array): void => {
    panicWatch.feed(bytes);
    process.stdout.write(bytes);
  };
  const virtioConsole = config.console === 'virtio';
  const built = buildMachine({
    memory,
    interruptModel: 'emulated',
    serialOut: toStdout,
    // the virtio console's output is a borrowed view: copy it before it is queued for stdout
    virtioConsoleOut: virtioConsole ? (bytes) => toStdout(bytes.slice()) : undefined,
    net: net ? { mac: defaultMac(0), transmit: (frame) => net.transmit(frame) } : undefined,
    fillRandom: (bytes) => randomFillSync(bytes), // virtio-rng
    disks: disks.disks, // virtio-blk
  });
  const { machine, uart } = built;
  if (net && built.virtioNet) net.attach(built.virtioNet);
  const hostConsole = new HostConsole(built.virtioConsole ?? uart, () => machine.requestStop({ kind: 'quit' }));

  // 4. The kernel, its initrd, the e820 map and the ACPI tables.
  const cmdline = config.cmdline ?? (virtioConsole ? DEFAULT_CMDLINE_HVC : DEFAULT_CMDLINE);
  const booted = bootImage(memory, image, { cmdline, initrd, rngSeed: randomBytes(32), cpus: config.cpus, acpi: { pci: true } });

  // 5. Run. Signals stop the machine; the console is restored on every path.
  const blks = built.virtioBlk.map((d) => d.device as BlockDevice);
  const engine = new BtEngine(machine, { interrupts: built.lapic!, afterSlice: () => uart.flush(), ioInFlight: () => blks.some((b) => b.inFlight > 0) });
  const router = { setIrq: (gsi: number, level: boolean) => level && engine.wake() };
  machine.irq.addListener(router);
  machine.msi.addListener({ sendMsi: () => engine.wake() }); // an MSI-X message also ends a halt
  session.machine = machine;
  if (session.signal !== undefined) machine.requestStop({ kind: 'signal', signal: session.signal });
  // kill -USR2 PID: the vCPU's and the devices' state on stderr (a guest that hangs or spins)
  const dump = (): void => {
    const l = built.lapic!.save();
    const bits = (a: number[]): string => a.map((w, i) => (w ? `${i}:${w.toString(16)}` : '')).filter(Boolean).join(' ');
    const lines = [...describeCpu(engine.cpu), `lapic: tpr ${l.tpr} irr [${bits(l.irr)}] isr [${bits(l.isr)}] lvt timer ${l.lvt[0]?.toString(16)} initial count ${l.initialCount}`];
    for (const d of [...built.virtioBlk, ...(built.virtioRng ? [built.virtioRng] : [])]) lines.push(...d.describe());
    process.stderr.write(`typevisor: state at ${new Date().toISOString()}\n${lines.map((x) => `  ${x}`).join('\n')}\n`);
  };
  process.on('SIGUSR2', dump);
  hostConsole.start();
  try {
    return await engine.run(booted.entry);
  } finally {
    process.off('SIGUSR2', dump);
    session.machine = undefined;
    uart.flush();
    hostConsole.stop();
  }
}

/** Say why the machine stopped (when it is not an ordinary end) and pick the exit status. */
export function reportStop(reason: StopReason, log: (s: string) => void): number {
  switch (reason.kind) {
    case 'triple-fault':
      log(`typevisor: the guest triple-faulted (${reason.detail}): the kernel crashed early; check --kernel and --cmdline`);
      break;
    case 'panic':
      log(`typevisor: the guest kernel panicked${reason.detail ? `: ${reason.detail}` : ''}`);
      break;
    case 'halted':
      log(`typevisor: the guest halted for good: ${reason.detail}`);
      break;
    case 'reset':
      log('typevisor: the guest reset the machine');
      break;
    case 'error':
      log(`typevisor: ${reason.message}`);
      break;
    case 'signal':
      log(`typevisor: stopped by ${reason.signal}`);
      break;
    default:
      break;
  }
  return exitStatus(reason);
}
