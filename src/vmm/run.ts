/**
 * Runs one VM from a validated VmConfig: resolve the guest artifacts, choose the engine, build
 * the machine, load the kernel, connect the console, run, and turn the stop reason into a
 * process exit status. Problems the user can fix are thrown as errors with one-line messages.
 */
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { BootError, bootImage, detectKernelFormat, ACCEPTED_FORMATS } from '../boot/loader.js';
import { extractVmlinux } from '../boot/extract.js';
import { BtEngine } from '../engine/bt/engine.js';
import { buildMachine } from '../machine/builder.js';
import { exitStatus, type StopReason } from '../machine/machine.js';
import { GuestMemory } from '../machine/memory.js';
import { ramRegionSpecs } from '../machine/ram.js';
import { Cpu } from '../cpu/core/cpu.js';
import { withArena } from '../cpu/wasm/arena.js';
import { HostConsole } from '../cli/console.js';
import { prepareDefaultGuest } from '../guest/default-guest.js';
import { kvmAvailability } from '../kvm/detect.js';
import { ConfigError, validateMemory, type VmConfig } from './config.js';

/** The default kernel command line: serial console, and no reboot on panic (the VM ends). */
export const DEFAULT_CMDLINE = 'console=ttyS0 reboot=k panic=-1';

export class VmError extends Error {
  override name = 'VmError';
}

function readInput(path: string, what: 'kernel' | 'initrd'): Uint8Array {
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new VmError(`${what} ${path} is not a regular file: pass the path of a ${what} image`);
    return readFileSync(path);
  } catch (e) {
    if (e instanceof VmError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VmError(`${what} file ${path} not found: check the path given to --${what}`);
    if (code === 'EACCES') throw new VmError(`${what} file ${path} is not readable: check its permissions`);
    throw new VmError(`cannot read ${what} file ${path}: ${(e as Error).message}`);
  }
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
  let image = readInput(kernelPath, 'kernel');
  const initrd = initrdPath === undefined ? undefined : readInput(initrdPath, 'initrd');
  const format = detectKernelFormat(image);
  if (format === undefined) {
    throw new BootError(`${kernelPath} is not a kernel image typevisor can boot: accepted formats are ${ACCEPTED_FORMATS}`);
  }
  if (config.vmlinux) {
    if (format !== 'bzimage') throw new ConfigError('--vmlinux needs a bzImage kernel to extract the vmlinux from');
    image = extractVmlinux(image);
  }

  // 2. The engine (decided before memory is allocated: kvm wants memfd-backed RAM).
  const engineName = chooseEngine(config.engine, log);
  if (engineName === 'kvm') {
    const { runKvmVm } = await import('./run-kvm.js');
    return runKvmVm(config, image, initrd);
  }

  // 3. The machine, with its console wired to this process's stdio.
  // The bt engine translates to WebAssembly; TYPEVISOR_BT_BACKEND=js selects the JavaScript translator.
  Cpu.defaultBackend = process.env.TYPEVISOR_BT_BACKEND === 'js' ? 'js' : 'wasm';
  const specs = ramRegionSpecs(config.memoryBytes);
  const memory = new GuestMemory(Cpu.defaultBackend === 'wasm' ? withArena(specs) : specs);
  const built = buildMachine({
    memory,
    interruptModel: 'emulated',
    serialOut: (bytes) => process.stdout.write(bytes),
  });
  const { machine, uart } = built;
  const hostConsole = new HostConsole(uart, () => machine.requestStop({ kind: 'quit' }));

  // 4. The kernel, its initrd, the e820 map and the ACPI tables.
  const booted = bootImage(memory, image, { cmdline: config.cmdline ?? DEFAULT_CMDLINE, initrd, cpus: config.cpus });

  // 5. Run. Signals stop the machine; the console is restored on every path.
  const engine = new BtEngine(machine, { interrupts: built.lapic!, afterSlice: () => uart.flush() });
  const router = { setIrq: (gsi: number, level: boolean) => level && engine.wake() };
  machine.irq.addListener(router);
  const onSignal = (signal: NodeJS.Signals) => machine.requestStop({ kind: 'signal', signal });
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let reason: StopReason;
  hostConsole.start();
  try {
    reason = await engine.run(booted.entry);
  } finally {
    uart.flush();
    hostConsole.stop();
    for (const s of signals) process.off(s, onSignal);
  }
  return reportStop(reason, log);
}

/** Say why the machine stopped (when it is not an ordinary end) and pick the exit status. */
export function reportStop(reason: StopReason, log: (s: string) => void): number {
  switch (reason.kind) {
    case 'triple-fault':
      log(`typevisor: the guest triple-faulted (${reason.detail}): the kernel crashed early; check --kernel and --cmdline`);
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
