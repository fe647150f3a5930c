/**
 * Runs one VM from a validated VmConfig: resolve the guest artifacts, choose the engine, build
 * the machine, load the kernel, connect the console, run, and turn the stop reason into a
 * process exit status. Problems the user can fix are thrown as errors with one-line messages.
 */
import os from 'node:os';
import { extractVmlinux } from '../boot/extract.js';
import { exitStatus, type StopReason } from '../machine/machine.js';
import { HostConsole } from '../cli/console.js';
import { prepareDefaultGuest } from '../guest/default-guest.js';
import { kvmAvailability } from '../kvm/detect.js';
import { ConfigError, validateMemory, type VmConfig } from './config.js';
import { readGuestFiles } from './guest-files.js';
import { Vm } from './vm.js';

export { DEFAULT_CMDLINE, DEFAULT_CMDLINE_HVC, VmError } from './vm.js';

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

  // The engine (decided before memory is allocated: kvm wants memfd-backed RAM).
  const engineName = chooseEngine(config.engine, log);
  if (engineName === 'kvm' && config.net !== undefined && config.net.mode !== 'none') {
    throw new ConfigError('--net needs the bt engine for now (the kvm engine has no network card yet): use --engine bt');
  }
  if (engineName === 'kvm' && config.console === 'virtio') {
    throw new ConfigError('--console virtio needs the bt engine for now (the kvm engine has no virtio console yet): use --engine bt or --console serial');
  }
  if (engineName === 'kvm') return runKvm(config);

  const vm = await Vm.create({ ...config, engine: 'bt' }, { log });
  return runInForeground(vm, log);
}

/** Start (or resume) `vm` with its console on this process's terminal; its exit status at the end. */
export async function runInForeground(vm: Vm, log: (s: string) => void): Promise<number> {
  const detach = attachToTerminal(vm);
  try {
    vm.start();
    return reportStop(await vm.wait(), log);
  } finally {
    detach();
  }
}

/**
 * The VM's console on this process's stdio (Ctrl-A X quits), signals stop it, and
 * `kill -USR2 PID` prints its state on stderr (a guest that hangs or spins). Returns the undo.
 */
export function attachToTerminal(vm: Vm): () => void {
  vm.on('console', (bytes) => process.stdout.write(bytes));
  const hostConsole = new HostConsole(vm.serialPort, () => void vm.kill({ kind: 'quit' }));
  // Signals stop the VM (also between a reset and the next boot).
  const onSignal = (signal: NodeJS.Signals) => void vm.kill({ kind: 'signal', signal });
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  const dump = (): void => void process.stderr.write(`typevisor: state at ${new Date().toISOString()}\n${vm.describe().map((x) => `  ${x}`).join('\n')}\n`);
  process.on('SIGUSR2', dump);
  hostConsole.start();
  return () => {
    hostConsole.stop();
    for (const s of signals) process.off(s, onSignal);
    process.off('SIGUSR2', dump);
  };
}

/** The kvm engine's path (not behind the Vm object yet). */
async function runKvm(config: VmConfig): Promise<number> {
  // Guest artifacts: the user's, or the default Debian guest (fetched and cached).
  let kernelPath = config.kernel;
  let initrdPath = config.initrd;
  if (kernelPath === undefined) {
    const guest = await prepareDefaultGuest();
    kernelPath = guest.kernelPath;
    initrdPath ??= guest.initrdPath;
  }
  // Sizes are checked from stat before reading, and the kernel's header against the file.
  const files = readGuestFiles(kernelPath, initrdPath, config.memoryBytes);
  let image = files.image;
  if (config.vmlinux) {
    if (files.format !== 'bzimage') throw new ConfigError('--vmlinux needs a bzImage kernel to extract the vmlinux from');
    image = extractVmlinux(image);
  }
  const { runKvmVm } = await import('./run-kvm.js');
  return runKvmVm(config, image, files.initrd);
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
