/**
 * A debug exit port like QEMU's isa-debug-exit (4 ports at PORT_DEBUG_EXIT): a write of value v
 * (1, 2 or 4 bytes) asks the machine to stop; the machine exits with status (v << 1) | 1, so a
 * test kernel can report pass/fail without a power-off path. Reads return 0.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';

export const DEBUG_EXIT_PORTS = 4;

const SIZE_MASK = [0, 0xff, 0xffff, 0, 0xffff_ffff] as const;

export class DebugExit implements BusDevice {
  constructor(private readonly onExit: (value: number) => void) {}

  read(): number {
    return 0;
  }

  write(_offset: number, size: AccessSize, value: number): void {
    this.onExit((value & SIZE_MASK[size]) >>> 0);
  }
}
