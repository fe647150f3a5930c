/**
 * What the software CPU asks of its interrupt controller at instruction boundaries. The local
 * APIC model implements it (and forwards the 8259 PIC's ExtINT output through LINT0 while the
 * APIC is in virtual-wire mode). The KVM engine does not use it: KVM has its own irqchip.
 */
export interface CpuInterruptController {
  /** True when a maskable interrupt could be delivered now (the CPU checks RFLAGS.IF itself). */
  hasInterrupt(): boolean;
  /** Accept the highest-priority pending interrupt; returns its vector (0..255). */
  acknowledge(): number;
  /** True when an NMI is pending; taking it clears it. */
  takeNmi(): boolean;
  /** True when an NMI is pending (without taking it). */
  hasNmi?(): boolean;
  /**
   * Called when the CPU executes HLT: the earliest time (ns, machine clock) something may wake
   * it, or Infinity. The engine also wakes on any timer of the machine's TimerQueue.
   */
  nextEventNs?(): number;
  /**
   * The CPU wrote IA32_APIC_BASE (validated): the APIC's base address (bits 12..35) and global
   * enable (bit 11) apply from now on.
   */
  apicBaseChanged?(value: number): void;
}
