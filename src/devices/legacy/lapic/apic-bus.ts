/**
 * The APIC bus of a machine with several software vCPUs: what one local APIC's ICR sends
 * reaches the others (SDM vol. 3, 10.6 "Issuing interprocessor interrupts").
 *
 * - Fixed and lowest-priority IPIs set IRR in every APIC the destination names (lowest priority:
 *   the first one, as our IOAPIC and MSI sink also choose); NMI marks an NMI pending.
 * - INIT (level assert) puts the target vCPU in wait-for-SIPI; the level de-assert form older
 *   APICs needed is a no-op. STARTUP starts a vCPU waiting for SIPI in real mode at vector *
 *   0x1000. The engine does both (`CpuStartHooks`), as the APIC model has no CPU to reset.
 * - The guest's register page (0xfee00000) is per CPU on real hardware: `LapicWindow` is the
 *   one MMIO device that forwards each access to the APIC of the vCPU running now (the engine
 *   says which with `select`).
 *
 * IPIs are delivered at once: the ICR's delivery status always reads idle.
 */
import type { AccessSize, BusDevice } from '../../../machine/bus.js';
import { DELIVERY_FIXED, DELIVERY_INIT, DELIVERY_LOWEST_PRIORITY, DELIVERY_NMI, DELIVERY_STARTUP } from '../ioapic/ioapic.js';
import { SHORTHAND_ALL_EXCLUDING_SELF, SHORTHAND_ALL_INCLUDING_SELF, SHORTHAND_NONE, type Ipi, type LocalApic } from './lapic.js';

/** What the engine does for INIT and STARTUP (the vCPU's own state, not the APIC's). */
export interface CpuStartHooks {
  /** INIT: the vCPU stops and waits for a STARTUP IPI. */
  init(vcpu: number): void;
  /** STARTUP: a vCPU waiting for SIPI starts in real mode at CS = vector << 8, IP = 0. */
  startup(vcpu: number, vector: number): void;
  /** An IPI arrived for a vCPU that may be halted: end the engine's idle sleep. */
  wake(): void;
}

export class ApicBus {
  /** Set by the engine once it exists; IPIs for INIT/STARTUP sent before are dropped. */
  hooks: CpuStartHooks | undefined;
  /** IPIs no APIC accepted (a destination that names no CPU). */
  droppedCount = 0;

  constructor(readonly lapics: readonly LocalApic[]) {}

  /** An IPI the APIC of vCPU `from` sent (LocalApicOptions.onIpi). Only the other APICs are served here; the sender delivers to itself. */
  send(from: number, ipi: Ipi): void {
    let hit = false;
    for (let i = 0; i < this.lapics.length; i++) {
      if (i === from || !this.addressed(i, ipi)) continue;
      hit = true;
      const t = this.lapics[i]!;
      switch (ipi.deliveryMode) {
        case DELIVERY_FIXED:
        case DELIVERY_LOWEST_PRIORITY:
        case DELIVERY_NMI:
          t.acceptInterrupt(ipi.vector, ipi.deliveryMode, ipi.levelTriggered);
          break;
        case DELIVERY_INIT:
          if (!ipi.levelTriggered || ipi.levelAssert) this.hooks?.init(i);
          break;
        case DELIVERY_STARTUP:
          this.hooks?.startup(i, ipi.vector);
          break;
      }
      if (ipi.deliveryMode === DELIVERY_LOWEST_PRIORITY) break;
    }
    if (hit) this.hooks?.wake();
    else this.droppedCount++;
  }

  private addressed(i: number, ipi: Ipi): boolean {
    switch (ipi.shorthand) {
      case SHORTHAND_NONE:
        return this.lapics[i]!.matchesDestination(ipi.destination, ipi.logical);
      case SHORTHAND_ALL_INCLUDING_SELF:
      case SHORTHAND_ALL_EXCLUDING_SELF:
        return true;
      default:
        return false; // self: the sender's own business
    }
  }
}

/** The local APIC page as the running vCPU sees it: its own APIC's registers. */
export class LapicWindow implements BusDevice {
  private current: LocalApic;

  constructor(private readonly lapics: readonly LocalApic[]) {
    this.current = lapics[0]!;
  }

  /** vCPU `vcpu` runs from now on (the engine calls this before each of its slices). */
  select(vcpu: number): void {
    this.current = this.lapics[vcpu]!;
  }

  read(offset: number, size: AccessSize): number {
    return this.current.read(offset, size);
  }

  write(offset: number, size: AccessSize, value: number): void {
    this.current.write(offset, size, value);
  }
}
