/**
 * pvpanic, the paravirtual panic device in QEMU's ISA form: one I/O port (PORT_PVPANIC, 0x505)
 * that the guest kernel's `pvpanic` driver finds through an ACPI node with _HID "QEMU0001"
 * (Linux: drivers/misc/pvpanic/pvpanic-mmio.c, which also takes an I/O resource). A read
 * returns the events the device supports; the kernel writes PANICKED from its panic notifier,
 * before it reboots or hangs, so the host learns that the guest died and why.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';

/** Event bits (QEMU's pvpanic spec, docs/specs/pvpanic.rst). */
export const PVPANIC_PANICKED = 1 << 0;
export const PVPANIC_CRASH_LOADED = 1 << 1;
/** The ACPI hardware ID the guest's driver binds to. */
export const PVPANIC_ACPI_HID = 'QEMU0001';

export type PvPanicEvent = 'panicked' | 'crash-loaded';

export interface PvPanicState {
  /** PVPANIC_* bits the guest wrote. */
  events: number;
}

export class PvPanic implements BusDevice {
  /** Events the guest reported (statistics and tests). */
  events = 0;

  constructor(private readonly onEvent: (event: PvPanicEvent) => void) {}

  read(): number {
    return PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
  }

  /** Snapshot: the events the guest reported so far. */
  save(): PvPanicState {
    return { events: this.events };
  }

  restore(s: PvPanicState): void {
    this.events = s.events & (PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
  }

  write(_offset: number, _size: AccessSize, value: number): void {
    // PANICKED wins when both bits are set: the guest is going down either way
    if (value & PVPANIC_PANICKED) {
      this.events |= PVPANIC_PANICKED;
      this.onEvent('panicked');
    } else if (value & PVPANIC_CRASH_LOADED) {
      // a crash kernel was loaded and takes over: the VM goes on, nothing to stop
      this.events |= PVPANIC_CRASH_LOADED;
      this.onEvent('crash-loaded');
    }
  }
}
