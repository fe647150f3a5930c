/**
 * The interface between the integer core (src/cpu/core: decoder, interpreter, memory access
 * with its TLB) and the system module (src/cpu/system: paging walk, segmentation, exception and
 * interrupt delivery, control registers, MSRs, CPUID, SYSCALL/SYSRET). The core implements
 * `SystemHost`; the system module's functions take it as their first argument.
 */
import type { CpuState } from './state.js';
import type { GuestMemory } from '../machine/memory.js';

/** Thrown (never returned) to abort the current instruction and deliver an exception. */
export class CpuFault {
  constructor(
    readonly vector: number,
    /** Error code, or -1 when the exception has none. */
    readonly errorCode: number = -1,
  ) {}
}

export interface SystemHost {
  readonly s: CpuState;
  readonly memory: GuestMemory;

  /** Full RFLAGS (materialises lazy arithmetic flags). */
  getRflags(): number;
  /** Set RFLAGS bits under `mask` (the core keeps its lazy-flag state consistent). */
  setRflags(value: number, mask: number): void;

  /**
   * Linear-memory access with paging and permission checks. `supervisor` = an implicit
   * supervisor access (descriptor tables, IDT, TSS; and the stack frame an event or call gate
   * pushes when it leaves CPL 3), which ignores CPL for the U/S check and which SMAP checks
   * whatever EFLAGS.AC says. Values are unsigned; 64-bit values come as (lo, hi) halves.
   * Page faults are thrown as CpuFault(14, code) with CR2 set.
   */
  readLin16(lin: number, supervisor: boolean): number;
  readLin32(lin: number, supervisor: boolean): number;
  /** Returns lo; hi is left in `scratchHi`. */
  readLin64(lin: number, supervisor: boolean): number;
  writeLin16(lin: number, v: number, supervisor: boolean): void;
  writeLin32(lin: number, v: number, supervisor: boolean): void;
  writeLin64(lin: number, lo: number, hi: number, supervisor: boolean): void;
  scratchHi: number;

  /** Drop cached translations: all, or all but global pages, or one page. */
  flushTlb(keepGlobal: boolean): void;
  invlpg(lin: number): void;

  /** Recompute s.mode/s.cpl-dependent fast paths after CR0/EFER/CS/RFLAGS.VM changes. */
  modeChanged(): void;

  /** Port I/O (after the system module's IOPL/TSS permission check). */
  portRead(port: number, size: 1 | 2 | 4): number;
  portWrite(port: number, size: 1 | 2 | 4, value: number): void;

  /** Current value of the time-stamp counter as (lo, hi) — hi left in scratchHi. */
  readTsc(): number;
  /** DR0-DR3 or DR7 was written: breakpoints may have changed. */
  debugChanged?(): void;
  /** IA32_APIC_BASE was written (already validated and stored in s.apicBase): tell the local APIC. */
  apicBaseChanged?(value: number): void;
}

/** Thrown when an exception cannot be delivered (triple fault): the machine shuts down. */
export class TripleFault extends Error {
  override name = 'TripleFault';
}

/** How an event reached delivery; decides error-code pushing, RIP saved and IDT gate DPL checks. */
export const enum EventKind {
  /** A fault/trap raised by an instruction (saved RIP chosen by the raiser: faulting insn for faults). */
  Exception = 0,
  /** An external interrupt from the interrupt controller. */
  External = 1,
  /** INT n / INT3 / INTO: gate DPL checked against CPL, saved RIP = next instruction. */
  Software = 2,
  Nmi = 3,
}

/** Paging walk result for filling the core's TLB. */
export interface WalkResult {
  /** Physical address of the 4 KiB page containing the linear address (already offset into large pages). */
  phys: number;
  writable: boolean;
  user: boolean;
  /** Execute-disable (NX set and EFER.NXE). */
  nx: boolean;
  global: boolean;
}

/** Access kinds for the paging walk (bit flags). */
export const enum Access {
  Read = 0,
  Write = 1,
  /** A user-mode access: CPL 3 and not an implicit supervisor access. */
  User = 2,
  Fetch = 4,
  /**
   * An implicit supervisor-mode access (SDM vol. 3 §4.6: the GDT, LDT, IDT and TSS, whatever the
   * CPL): SMAP denies it a user page even while EFLAGS.AC is set.
   */
  Implicit = 8,
}
