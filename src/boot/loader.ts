/**
 * loadKernel: detect a kernel image's format and hand it to the matching loader. Accepted:
 * bzImage (Linux boot protocol >= 2.06 with a 64-bit entry), ELF vmlinux (x86-64), multiboot v1
 * (ELF or a.out kludge). Write ACPI tables (writeAcpiTables) and build the e820 map (buildE820)
 * first; pass the RSDP address and the map in the options.
 */
import type { GuestMemory } from '../machine/memory.js';
import { writeAcpiTables, type AcpiOptions, type AcpiTables } from './acpi/tables.js';
import { isBzImage, loadBzImage } from './bzimage.js';
import { buildE820, type E820Entry } from './e820.js';
import { BootError } from './errors.js';
import { findMultibootHeader, loadMultiboot } from './multiboot.js';
import type { KernelFormat, LoadedKernel, LoadOptions } from './types.js';
import { isVmlinux, loadVmlinux } from './vmlinux.js';

export const ACCEPTED_FORMATS = 'bzImage (Linux boot protocol ≥ 2.06, 64-bit), ELF vmlinux (x86-64), multiboot v1 ELF';

/** Which loader would take this image, or undefined. */
export function detectKernelFormat(image: Uint8Array): KernelFormat | undefined {
  if (isBzImage(image)) return 'bzimage';
  // A multiboot header wins over the ELF machine type: some 64-bit kernels start in 32-bit mode.
  if (findMultibootHeader(image)) return 'multiboot';
  if (isVmlinux(image)) return 'vmlinux';
  return undefined;
}

export function loadKernel(memory: GuestMemory, image: Uint8Array, opts: LoadOptions): LoadedKernel {
  switch (detectKernelFormat(image)) {
    case 'bzimage':
      return loadBzImage(memory, image, opts);
    case 'multiboot':
      return loadMultiboot(memory, image, opts);
    case 'vmlinux':
      return loadVmlinux(memory, image, opts);
    case undefined:
      throw new BootError(`Cannot load kernel image (${image.length} bytes): unknown format. Accepted formats: ${ACCEPTED_FORMATS}`);
  }
}

export interface BootImageOptions {
  cmdline: string;
  /** The kernel's path, for a multiboot kernel's command line (LoadOptions.kernelName). */
  kernelName?: string;
  initrd?: Uint8Array;
  /** vCPU count for the MADT. */
  cpus: number;
  /** ACPI tables: written by default; `false` for none (the guest then needs acpi=off or an MP table). */
  acpi?: false | Omit<AcpiOptions, 'cpus'>;
  /** Extra e820 ranges (e.g. reserved MMIO). */
  e820Extra?: readonly E820Entry[];
  /** Random bytes for the kernel's RNG (Linux boot protocol: a SETUP_RNG_SEED setup_data node). */
  rngSeed?: Uint8Array;
}

export interface BootedImage extends LoadedKernel {
  e820: E820Entry[];
  acpi?: AcpiTables;
}

/** Everything in one call: e820 map, ACPI tables, then loadKernel with both. */
export function bootImage(memory: GuestMemory, image: Uint8Array, opts: BootImageOptions): BootedImage {
  const e820 = buildE820(memory, { extra: opts.e820Extra });
  const acpi = opts.acpi === false ? undefined : writeAcpiTables(memory, { ...opts.acpi, cpus: opts.cpus });
  const loaded = loadKernel(memory, image, { cmdline: opts.cmdline, kernelName: opts.kernelName, initrd: opts.initrd, e820, rsdp: acpi?.rsdp, rngSeed: opts.rngSeed });
  return { ...loaded, e820, acpi };
}

export { BootError } from './errors.js';
export type { LoadedKernel, LoadOptions, KernelFormat } from './types.js';
