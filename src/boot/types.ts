/** What every loader takes and returns. */
import type { EntryState } from '../machine/engine.js';
import type { E820Entry } from './e820.js';

export type KernelFormat = 'bzimage' | 'vmlinux' | 'multiboot';

export interface LoadOptions {
  /** Kernel command line (without the NUL). */
  cmdline: string;
  /**
   * The kernel's path as the user gave it: a multiboot kernel's command line starts with it, as
   * GRUB and QEMU pass it ("path/kernel.elf arg1 arg2"); kernels take the first word as their name.
   */
  kernelName?: string;
  /** Initial ramdisk (Linux) / the one module (multiboot). */
  initrd?: Uint8Array;
  /** Memory map from buildE820(). */
  e820: readonly E820Entry[];
  /** Guest address of the ACPI RSDP (from writeAcpiTables); recorded in boot_params.acpi_rsdp_addr. */
  rsdp?: number;
  /**
   * Random bytes for the kernel's RNG (a SETUP_RNG_SEED setup_data node, as QEMU passes): Linux
   * credits them at once, so its RNG is ready without the slow jitter-entropy loop. The host
   * supplies them (the core has no random source of its own).
   */
  rngSeed?: Uint8Array;
}

export interface LoadedKernel {
  format: KernelFormat;
  /** Boot vCPU state for either engine. */
  entry: EntryState;
  /** Guest-physical range the kernel occupies or may grow into (decompression, bss): [start, end). */
  kernel: { start: number; end: number };
  initrd?: { addr: number; size: number };
  /** Linux zero page (rsi at entry), when the kernel uses the Linux boot protocol. */
  bootParams?: number;
  /** Multiboot information structure (ebx at entry). */
  multibootInfo?: number;
  /** PVH 32-bit entry point from the ELF note XEN_ELFNOTE_PHYS32_ENTRY, when present (not used yet). */
  pvhEntry?: number;
}
