/**
 * Interrupt lines. Devices hold an IrqLine for their GSI and raise/lower it; where the level
 * goes depends on the engine: the software engine routes it to our PIC and IOAPIC models, the
 * KVM engine to the in-kernel irqchip (KVM_IRQ_LINE). Devices never know which.
 */

export interface InterruptSink {
  /** Set the level of global system interrupt `gsi` (ISA IRQ n is GSI n). */
  setIrq(gsi: number, level: boolean): void;
}

/** Routes line changes to whichever sink the engine installed (none until then). */
export class IrqRouter implements InterruptSink {
  private sink: InterruptSink | undefined;
  /** Current level of each line, so a late-installed sink can be brought up to date. */
  private readonly levels = new Uint8Array(64);
  /** Observers of every line change (the software engine wakes a halted vCPU on a raise). */
  private readonly listeners: InterruptSink[] = [];

  addListener(listener: InterruptSink): void {
    this.listeners.push(listener);
  }

  install(sink: InterruptSink): void {
    this.sink = sink;
    for (let gsi = 0; gsi < this.levels.length; gsi++) if (this.levels[gsi]) sink.setIrq(gsi, true);
  }

  setIrq(gsi: number, level: boolean): void {
    if (gsi < 0 || gsi >= this.levels.length) return;
    this.levels[gsi] = level ? 1 : 0;
    this.sink?.setIrq(gsi, level);
    for (const l of this.listeners) l.setIrq(gsi, level);
  }

  line(gsi: number): IrqLine {
    return new IrqLine(this, gsi);
  }
}

export class IrqLine {
  constructor(
    private readonly sink: InterruptSink,
    readonly gsi: number,
  ) {}
  raise(): void {
    this.sink.setIrq(this.gsi, true);
  }
  lower(): void {
    this.sink.setIrq(this.gsi, false);
  }
  set(level: boolean): void {
    this.sink.setIrq(this.gsi, level);
  }
  /** An edge: raise then lower (edge-triggered ISA devices). */
  pulse(): void {
    this.sink.setIrq(this.gsi, true);
    this.sink.setIrq(this.gsi, false);
  }
}

/**
 * Message-signalled interrupts (PCI MSI/MSI-X): a device's write of `data` to `address`. On x86
 * the address is 0xFEEx_xxxx (destination APIC ID in bits 19:12) and the data holds the vector.
 * The software engine delivers it to our local APIC models; the KVM engine hands it to the
 * kernel (KVM_SIGNAL_MSI). Devices never know which.
 */
export interface MsiSink {
  /** `address` is the 64-bit message address as a number (< 2^53). */
  sendMsi(address: number, data: number): void;
}

/** Routes MSIs to whichever sink the engine installed; counts the ones sent before that. */
export class MsiRouter implements MsiSink {
  private sink: MsiSink | undefined;
  private readonly listeners: MsiSink[] = [];
  /** Messages sent while no sink was installed. */
  droppedCount = 0;

  install(sink: MsiSink): void {
    this.sink = sink;
  }

  /** Observers of every message (the software engine wakes a halted vCPU). */
  addListener(listener: MsiSink): void {
    this.listeners.push(listener);
  }

  sendMsi(address: number, data: number): void {
    if (this.sink) this.sink.sendMsi(address, data);
    else this.droppedCount++;
    for (const l of this.listeners) l.sendMsi(address, data);
  }
}
