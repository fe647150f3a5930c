/**
 * The Machine: guest memory, the two buses, interrupt routing, time and the stop request —
 * everything an engine runs over. The builder (builder.ts) creates one and attaches devices.
 */
import { Bus } from './bus.js';
import { HostClock, TimerQueue, type Clock } from './clock.js';
import { IrqRouter } from './irq.js';
import { GuestMemory } from './memory.js';

export type StopReason =
  | { kind: 'poweroff' }
  | { kind: 'reset' }
  | { kind: 'debug-exit'; value: number }
  | { kind: 'triple-fault'; detail: string }
  | { kind: 'quit' }
  | { kind: 'signal'; signal: string }
  | { kind: 'error'; message: string };

/** Process exit status for each stop reason. */
export function exitStatus(r: StopReason): number {
  switch (r.kind) {
    case 'poweroff':
    case 'quit':
      return 0;
    case 'reset':
      return 0;
    case 'debug-exit':
      return ((r.value << 1) | 1) & 0xff;
    case 'signal':
      return 130;
    case 'triple-fault':
    case 'error':
      return 1;
  }
}

export class Machine {
  readonly pio = new Bus('pio');
  readonly mmio = new Bus('mmio');
  readonly irq = new IrqRouter();
  readonly timers: TimerQueue;
  stopReason: StopReason | undefined;
  private stopListeners: ((r: StopReason) => void)[] = [];

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
}
