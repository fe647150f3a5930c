/**
 * The boot module's public API: kernel loaders (bzImage, vmlinux, multiboot), the e820 map,
 * ACPI tables, and host-side vmlinux extraction. Typical use:
 *
 *   const booted = bootImage(memory, image, { cmdline, initrd, cpus });
 *   await engine.run(booted.entry);
 */
export { ACCEPTED_FORMATS, bootImage, detectKernelFormat, loadKernel, type BootImageOptions, type BootedImage } from './loader.js';
export { BootError } from './errors.js';
export type { KernelFormat, LoadedKernel, LoadOptions } from './types.js';
export { buildE820, E820_ACPI, E820_NVS, E820_RAM, E820_RESERVED, type E820Entry, type E820Type } from './e820.js';
export { buildAcpiTables, writeAcpiTables, type AcpiOptions, type AcpiTables } from './acpi/tables.js';
export { extractVmlinux, bzImagePayload, type Decompressor, type ExtractOptions, type PayloadFormat } from './extract.js';
export { parseBzImageHeader, type BzImageHeader } from './bzimage.js';
export {
  BOOT_GDT,
  BOOT_GDT_LIMIT,
  BOOT_IDT_LIMIT,
  decodeGdtEntry,
  SELECTOR_CODE32,
  SELECTOR_CODE64,
  SELECTOR_DATA,
  type SegmentDescriptor,
} from './x86-setup.js';
