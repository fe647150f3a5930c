/**
 * `typevisor serve --api-sock PATH`: the API server for one VM, as Firecracker's process is —
 * the VM's console on this terminal, the process ending with the VM (its exit status as
 * `typevisor run` gives it). Before a VM runs, SIGINT/SIGTERM end the server.
 */
import { rmSync } from 'node:fs';
import type { StopReason } from '../machine/machine.js';
import { attachToTerminal, reportStop } from '../vmm/run.js';
import { Vm } from '../vmm/vm.js';
import { ApiServer } from './server.js';

export async function serveApi(socketPath: string, log: (line: string) => void): Promise<number> {
  let detach: (() => void) | undefined;
  let stop!: (r: StopReason) => void;
  const stopped = new Promise<StopReason>((r) => (stop = r));
  const server = new ApiServer({ log, onVm: (vm) => (detach = attachToTerminal(vm)), onStopped: (r) => stop(r) });
  // the engine's modules first, as a VMM binary has its code loaded when its socket comes up:
  // a snapshot load or a start then waits for none of them
  await Vm.preload();
  await server.listen(socketPath);
  log(`typevisor: API on ${socketPath} (Firecracker-compatible); waiting for InstanceStart or snapshot/load`);
  const onSignal = (signal: NodeJS.Signals): void => {
    if (server.state === 'Not started') stop({ kind: 'signal', signal });
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    return reportStop(await stopped, log);
  } finally {
    for (const s of signals) process.off(s, onSignal);
    detach?.();
    await server.close();
    rmSync(socketPath, { force: true });
  }
}
