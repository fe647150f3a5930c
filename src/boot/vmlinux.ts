/**
 * Uncompressed x86-64 vmlinux (ELF64) loader: PT_LOAD segments go to their physical addresses
 * (p_paddr), and the boot CPU enters e_entry (phys_startup_64 for Linux, already physical) in
 * long mode with rsi = a boot_params built from scratch, exactly as for a bzImage's 64-bit
 * entry. The PVH entry note is recorded for a future 32-bit PVH boot path.
 */
import type { GuestMemory } from '../machine/memory.js';
import { LINUX_COMMAND_LINE_SIZE, writeBootParams, writeCmdline, writeRngSeed } from './boot-params.js';
import { EM_X86_64, isElf, loadElfSegments, parseElf, physicalEntry, pvhEntryOf, type ElfFile } from './elf.js';
import { BootError } from './errors.js';
import { placeHigh } from './placement.js';
import type { LoadedKernel, LoadOptions } from './types.js';
import { setupLongModeEntry } from './x86-setup.js';

const WHAT = 'vmlinux';
/** Linux keeps initrds below 2 GiB unless told otherwise (initrd_addr_max of x86-64 bzImages). */
const VMLINUX_INITRD_ADDR_MAX = 0x7fff_ffff;

/** True for an ELF64 x86-64 file. */
export function isVmlinux(image: Uint8Array): boolean {
  return isElf(image) && image.length >= 20 && image[4] === 2 && (image[18]! | (image[19]! << 8)) === EM_X86_64;
}

/** Parse and check a vmlinux without loading it. */
export function parseVmlinux(image: Uint8Array): ElfFile {
  const elf = parseElf(image, WHAT);
  if (elf.elfClass !== 64 || elf.machine !== EM_X86_64) {
    throw new BootError(`${WHAT}: not an x86-64 ELF64 file (class ${elf.elfClass}, machine ${elf.machine}): use an x86-64 kernel`);
  }
  return elf;
}

export function loadVmlinux(memory: GuestMemory, image: Uint8Array, opts: LoadOptions): LoadedKernel {
  const elf = parseVmlinux(image);
  const entry = physicalEntry(elf, WHAT);
  const kernel = loadElfSegments(memory, image, elf, WHAT);
  let initrd: { addr: number; size: number } | undefined;
  if (opts.initrd && opts.initrd.length > 0) {
    const addr = placeHigh(memory, opts.initrd.length, kernel.end, VMLINUX_INITRD_ADDR_MAX + 1, 'initrd');
    memory.writeBytes(addr, opts.initrd);
    initrd = { addr, size: opts.initrd.length };
  }
  const cmdline = writeCmdline(memory, opts.cmdline, LINUX_COMMAND_LINE_SIZE - 1);
  const setupData = opts.rngSeed ? writeRngSeed(memory, opts.rngSeed) : undefined;
  const bootParams = writeBootParams(memory, { cmdline, initrd, e820: opts.e820, rsdp: opts.rsdp, setupData });
  return {
    format: 'vmlinux',
    entry: setupLongModeEntry(memory, entry, bootParams),
    kernel,
    initrd,
    bootParams,
    pvhEntry: pvhEntryOf(elf),
  };
}
