/**
 * `typevisor run` over the Vm object (src/vmm/vm.ts), whichever engine: the VM's console on
 * this process's terminal, signals stop it, and its stop reason becomes the exit status.
 * Problems the user can fix are thrown as errors with one-line messages.
 */
import { exitStatus, type StopReason } from '../machine/machine.js';
import { HostConsole } from '../cli/console.js';
import type { VmConfig } from './config.js';
import { Vm } from './vm.js';

export { DEFAULT_CMDLINE, DEFAULT_CMDLINE_HVC, VmError } from './vm.js';

export async function runVm(config: VmConfig): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const vm = await Vm.create(config, { log });
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
  const hostConsole = new HostConsole(vm.serialPort, () => void vm.kill({ kind: 'quit' }));
  // under kvm the console also answers the guest's terminal queries in pipe mode, as before
  vm.on('console', (bytes) => (vm.config.engine === 'kvm' ? hostConsole.write(bytes) : process.stdout.write(bytes)));
  // Signals stop the VM (also between a reset and the next boot).
  const onSignal = (signal: NodeJS.Signals) => void vm.kill({ kind: 'signal', signal });
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  const dump = (): void => void process.stderr.write(`typevisor: state at ${new Date().toISOString()}\n${[...vm.describe(), hostMemory()].map((x) => `  ${x}`).join('\n')}\n`);
  process.on('SIGUSR2', dump);
  hostConsole.start();
  return () => {
    hostConsole.stop();
    for (const s of signals) process.off(s, onSignal);
    process.off('SIGUSR2', dump);
  };
}

/** This process's memory, as the SIGUSR2 dump shows it (MiB). */
function hostMemory(): string {
  const m = process.memoryUsage();
  const mib = (n: number): string => (n / 1048576).toFixed(1);
  return `host memory: rss ${mib(m.rss)} MiB, JS heap ${mib(m.heapUsed)} of ${mib(m.heapTotal)} MiB, external ${mib(m.external)} MiB (array buffers ${mib(m.arrayBuffers)} MiB)`;
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
      log(`typevisor: the guest reset the machine${reason.detail ? ` (${reason.detail})` : ''}`);
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
