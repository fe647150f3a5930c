/**
 * The Engine interface: what runs vCPUs over a Machine. The binary-translation engine
 * (src/engine/bt) and the KVM engine (src/kvm) both implement it; nothing in the machine or
 * the devices depends on which one runs.
 */
import type { StopReason } from './machine.js';

export type EngineName = 'bt' | 'kvm';

/** Where a loader leaves the boot CPU: the entry state common to both engines. */
export interface EntryState {
  mode: 'long64' | 'protected32' | 'real16';
  /** Instruction pointer (linear address). */
  rip: number;
  /** General registers by name (rsi = boot_params for Linux, eax/ebx for multiboot...). */
  regs: Partial<Record<'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rsp' | 'rbp', number>>;
  /** CR3 for long mode (identity-mapped page tables built by the loader). */
  cr3?: number;
  /** GDT base and limit the loader wrote, selectors for code and data. */
  gdt?: { base: number; limit: number; cs: number; ds: number };
  /** Real mode: segment for CS:IP. */
  realCs?: number;
}

export interface Engine {
  readonly name: EngineName;
  /** Run the machine until it stops; resolves with why. Never rejects for guest behaviour. */
  run(entry: EntryState): Promise<StopReason>;
  /** Ask the engine to stop soon (from a signal handler, the console, the API). */
  stop(reason: StopReason): void;
}
