/**
 * The Machine: guest memory, the two buses, interrupt routing, time and the stop request —
 * everything an engine runs over. The builder (builder.ts) creates one and attaches devices.
 */
import { Bus } from './bus.js';
import { HostClock, TimerQueue, type Clock } from './clock.js';
import { IrqRouter, MsiRouter } from './irq.js';
import { GuestMemory } from './memory.js';

export type StopReason =
  | { kind: 'poweroff' }
  | { kind: 'reset'; detail?: string }
  | { kind: 'panic'; detail?: string }
  | { kind: 'halted'; detail: string }
  | { kind: 'debug-exit'; value: number }
  | { kind: 'triple-fault'; detail: string }
  | { kind: 'quit' }
  | { kind: 'signal'; signal: string }
  | { kind: 'error'; message: string };

/**
 * Exit statuses of guest-caused stops (README, "Exit statuses"): even numbers, so that they
 * never collide with the debug-exit port's (v << 1) | 1; 1 is typevisor's own failure, 2 a bad
 * command line, 128 + n signal n.
 */
export const EXIT_PANIC = 4;
export const EXIT_TRIPLE_FAULT = 6;
export const EXIT_HALTED = 8;
export const EXIT_RESET = 10;

/** Linux's numbers for the signals that stop a VM: a stop by signal n exits 128 + n, as a shell reports it. */
const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

/** Process exit status for each stop reason. */
export function exitStatus(r: StopReason): number {
  switch (r.kind) {
    case 'poweroff':
    case 'quit':
      return 0;
    case 'reset':
      return EXIT_RESET;
    case 'panic':
      return EXIT_PANIC;
    case 'halted':
      return EXIT_HALTED;
    case 'debug-exit':
      return ((r.value << 1) | 1) & 0xff;
    case 'signal':
      return 128 + (SIGNAL_NUMBERS[r.signal] ?? SIGNAL_NUMBERS['SIGINT']!);
    case 'triple-fault':
      return EXIT_TRIPLE_FAULT;
    case 'error':
      return 1;
  }
}

export type SleepEvent = 'suspend' | 'wake';

export class Machine {
  readonly pio = new Bus('pio');
  readonly mmio = new Bus('mmio');
  readonly irq = new IrqRouter();
  /** Message-signalled interrupts from PCI devices (MSI-X). */
  readonly msi = new MsiRouter();
  readonly timers: TimerQueue;
  stopReason: StopReason | undefined;
  private stopListeners: ((r: StopReason) => void)[] = [];
  private sleepListeners: ((event: SleepEvent) => void)[] = [];

  constructor(
    readonly memory: GuestMemory,
    readonly clock: Clock = new HostClock(),
  ) {
    this.timers = new TimerQueue(clock);
  }

  /** Request that the machine stop; the first reason wins. */
  requestStop(reason: StopReason): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    for (const l of this.stopListeners) l(reason);
  }

  onStop(listener: (r: StopReason) => void): void {
    this.stopListeners.push(listener);
  }

  /**
   * ACPI S3, from the PM device (src/devices/acpi/pm.ts): `suspend` — stop the vCPUs (no
   * instruction runs, not even for an interrupt); `wake` — restart the boot CPU at the FACS
   * waking vector. The engine listens (onSleepEvent).
   */
  sleepEvent(event: SleepEvent): void {
    for (const l of this.sleepListeners) l(event);
  }

  onSleepEvent(listener: (event: SleepEvent) => void): void {
    this.sleepListeners.push(listener);
  }
}
