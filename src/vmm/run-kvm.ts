/**
 * The KVM path of runVm: memfd-backed guest RAM, the kernel loaded from the main thread, the
 * devices in the boot vCPU's thread (built by ./kvm-machine.ts), console bytes as messages.
 */
import { bootImage } from '../boot/loader.js';
import { HostConsole } from '../cli/console.js';
import { KvmEngine } from '../kvm/engine.js';
import { createKvmGuestMemory } from '../kvm/memory.js';
import type { StopReason } from '../machine/machine.js';
import type { VmConfig } from './config.js';
import type { ConsoleMessage } from './kvm-machine.js';
import { DEFAULT_CMDLINE, reportStop } from './run.js';

export async function runKvmVm(config: VmConfig, image: Uint8Array, initrd: Uint8Array | undefined): Promise<number> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const ram = createKvmGuestMemory(config.memoryBytes);
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
      machine: { module: new URL(`./kvm-machine.${ext}`, import.meta.url), export: 'createKvmMachine' },
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
    ram.dispose();
  }
}
