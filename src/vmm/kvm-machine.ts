/**
 * The machine factory the KVM engine's device thread imports (see src/kvm/machine-factory.ts):
 * the same devices as under the bt engine, minus the interrupt controllers and the PIT, which
 * KVM provides in the kernel. Console bytes travel to and from the main thread as messages.
 * virtio-rng is on, as under bt: its MSI-X messages leave through the KvmMsiSink the engine
 * installs on machine.msi, its INTx through KVM_IRQ_LINE; its BAR is served from the MMIO exits
 * of this (the device) thread, over this thread's views of the guest RAM memfd.
 */
import { randomFillSync } from 'node:crypto';
import { buildMachine } from '../machine/builder.js';
import type { Machine } from '../machine/machine.js';
import type { KvmMachineContext } from '../kvm/machine-factory.js';

export type ConsoleMessage = { type: 'serial-out'; bytes: Uint8Array } | { type: 'serial-in'; bytes: Uint8Array };

export function createKvmMachine(ctx: KvmMachineContext): Machine {
  const { machine, uart } = buildMachine({
    memory: ctx.memory,
    interruptModel: 'in-kernel',
    fillRandom: (bytes) => randomFillSync(bytes), // virtio-rng
    serialOut: (bytes) => ctx.post({ type: 'serial-out', bytes: bytes.slice() } satisfies ConsoleMessage),
  });
  // Input the UART could not take yet waits here until the guest drains its FIFO.
  const backlog: Uint8Array[] = [];
  const pump = (): void => {
    while (backlog.length) {
      const head = backlog[0]!;
      const n = uart.receive(head);
      if (n < head.length) {
        backlog[0] = head.subarray(n);
        return;
      }
      backlog.shift();
    }
  };
  uart.onRxSpace(pump);
  ctx.onMessage((m) => {
    const msg = m as ConsoleMessage;
    if (msg?.type === 'serial-in' && msg.bytes instanceof Uint8Array) {
      backlog.push(msg.bytes);
      pump();
    }
  });
  // Serial output is batched per microtask; under KVM the thread returns to its loop often.
  return machine;
}
