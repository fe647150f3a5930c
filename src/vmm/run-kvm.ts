/**
 * The KVM path of runVm: memfd-backed guest RAM, the kernel loaded from the main thread, the
 * devices in the boot vCPU's thread (built by ./kvm-machine.ts), console bytes as messages.
 * `--disk` images are checked and locked here, before anything else (every refusal one line,
 * as under bt); the device thread opens them again for its own I/O, and the locks are released
 * when the VM has ended, however it ended.
 */
import { bootImage } from '../boot/loader.js';
import { HostConsole } from '../cli/console.js';
import { KvmEngine } from '../kvm/engine.js';
import { createKvmGuestMemory } from '../kvm/memory.js';
import type { StopReason } from '../machine/machine.js';
import type { VmConfig } from './config.js';
import type { ConsoleMessage, KvmMachineConfig } from './kvm-machine.js';
import { DEFAULT_CMDLINE, reportStop } from './run.js';
import { openDisks } from './disk/open.js';

export async function runKvmVm(config: VmConfig, image: Uint8Array, initrd: Uint8Array | undefined): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  // Checked and locked for the whole run; these descriptors stay idle (the device thread does the I/O).
  const disks = await openDisks(config.disks ?? []);
  let ram;
  try {
    ram = createKvmGuestMemory(config.memoryBytes);
  } catch (e) {
    await disks.close();
    throw e;
  }
  let engine: KvmEngine | undefined;
  let hostConsole: HostConsole | undefined;
  const onSignal = (signal: NodeJS.Signals) => engine?.stop({ kind: 'signal', signal });
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  try {
    const booted = bootImage(ram.memory, image, { cmdline: config.cmdline ?? DEFAULT_CMDLINE, initrd, cpus: config.cpus });
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    engine = new KvmEngine({
      memory: ram,
      cpus: config.cpus,
      machine: {
        module: new URL(`./kvm-machine.${ext}`, import.meta.url),
        export: 'createKvmMachine',
        config: { disks: config.disks ?? [] } satisfies KvmMachineConfig,
      },
      onMessage: (m) => {
        const msg = m as ConsoleMessage;
        if (msg?.type === 'serial-out') hostConsole?.write(msg.bytes);
      },
    });
    const e = engine;
    // The host console talks to the UART in the device thread: offer everything, the
    // device thread holds back what its FIFO cannot take yet.
    hostConsole = new HostConsole(
      {
        receive: (bytes) => {
          e.post({ type: 'serial-in', bytes: bytes.slice() } satisfies ConsoleMessage);
          return bytes.length;
        },
        onRxSpace: () => {},
      },
      () => e.stop({ kind: 'quit' }),
    );
    for (const s of signals) process.on(s, onSignal);
    hostConsole.start();
    const reason: StopReason = await engine.run(booted.entry);
    return reportStop(reason, log);
  } finally {
    hostConsole?.stop();
    for (const s of signals) process.off(s, onSignal);
    try {
      ram.dispose();
    } finally {
      await disks.close(); // the device thread has closed its files: release the locks
    }
  }
}
