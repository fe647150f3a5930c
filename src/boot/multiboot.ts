/**
 * Multiboot (version 1) loader, as QEMU's -kernel does it: find the header in the first 8 KiB,
 * load either the a.out-kludge ranges (flag bit 16) or the ELF PT_LOAD segments, pass the
 * initrd as the one module, and enter in 32-bit protected mode with paging off,
 * EAX = 0x2BADB002 and EBX = the multiboot information structure.
 *
 * The kernel may load below 1 MiB, where it misses the first page and the EBDA/ROM area
 * (placement.ts's LOW_RESERVED); the information area and the command line move out of its way.
 * The command line starts with the kernel's path, as GRUB and QEMU pass it.
 *
 * Layout of what we write at MULTIBOOT_INFO_START (all below 0x20000 = CMDLINE_START):
 *   +0x000  struct multiboot_info (116 bytes)
 *   +0x100  memory map (24-byte entries, from the e820 map)
 *   +0x1000 module list (one 16-byte entry), +0x1100 module string, +0x1200 boot loader name
 */
import { BOOT_STACK_POINTER, CMDLINE_MAX_SIZE, CMDLINE_START, EBDA_START, HIGH_MEMORY_START, MULTIBOOT_INFO_START, PAGE_SIZE } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';
import { writeCmdline } from './boot-params.js';
import { E820_MAX_ENTRIES, lowRamEnd } from './e820.js';
import { isElf, loadElfSegments, parseElf, physicalEntry, pvhEntryOf } from './elf.js';
import { BootError, hex } from './errors.js';
import { checkLoadRange, LOW_RESERVED, placeHigh } from './placement.js';
import type { LoadedKernel, LoadOptions } from './types.js';
import { setupProtected32Entry } from './x86-setup.js';

export const MULTIBOOT_HEADER_MAGIC = 0x1bad_b002;
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2bad_b002;
/** The header must be 32-bit aligned and within the first 8192 bytes. */
export const MULTIBOOT_SEARCH = 8192;

// Header flags.
export const MB_PAGE_ALIGN = 1 << 0; // modules page-aligned (we always do)
export const MB_MEMORY_INFO = 1 << 1; // mem_* fields required (we always give them)
export const MB_VIDEO_MODE = 1 << 2; // video mode table requested (not provided, like QEMU)
export const MB_AOUT_KLUDGE = 1 << 16; // load addresses are in the header
const MB_REQUIRED_KNOWN = MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_VIDEO_MODE;

// multiboot_info flags and offsets.
export const MBI_MEMORY = 1 << 0;
export const MBI_CMDLINE = 1 << 2;
export const MBI_MODS = 1 << 3;
export const MBI_MMAP = 1 << 6;
export const MBI_LOADER_NAME = 1 << 9;
/** Size of the struct multiboot_info we fill (flags .. framebuffer fields). */
export const MULTIBOOT_INFO_SIZE = 116;
const MMAP_OFFSET = 0x100;
const MODS_OFFSET = 0x1000;
const MOD_STRING_OFFSET = 0x1100;
const LOADER_NAME_OFFSET = 0x1200;
const MODULE_NAME = 'initrd';
const LOADER_NAME = 'typevisor';
const FOUR_GIB = 0x1_0000_0000;

export interface MultibootHeader {
  /** File offset of the header. */
  offset: number;
  flags: number;
  /** a.out kludge fields (valid when flags has MB_AOUT_KLUDGE). */
  headerAddr: number;
  loadAddr: number;
  loadEndAddr: number;
  bssEndAddr: number;
  entryAddr: number;
}

/** Find a valid multiboot header (magic + flags + checksum == 0) in the first 8 KiB. */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | undefined {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const limit = Math.min(image.length, MULTIBOOT_SEARCH) - 12;
  for (let o = 0; o <= limit; o += 4) {
    if (v.getUint32(o, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = v.getUint32(o + 4, true);
    if (((MULTIBOOT_HEADER_MAGIC + flags + v.getUint32(o + 8, true)) & 0xffff_ffff) !== 0) continue;
    const field = (i: number): number => (o + 12 + i * 4 + 4 <= image.length ? v.getUint32(o + 12 + i * 4, true) : 0);
    return { offset: o, flags, headerAddr: field(0), loadAddr: field(1), loadEndAddr: field(2), bssEndAddr: field(3), entryAddr: field(4) };
  }
  return undefined;
}

/** Load the a.out-kludge ranges; returns the entry and the loaded range. */
function loadAout(memory: GuestMemory, image: Uint8Array, h: MultibootHeader): { entry: number; start: number; end: number } {
  if (h.offset + 32 > image.length) throw new BootError('multiboot: header with the address flag (bit 16) is cut off by the end of the file');
  if (h.headerAddr < h.loadAddr) {
    throw new BootError(`multiboot: header_addr ${hex(h.headerAddr)} is below load_addr ${hex(h.loadAddr)}: the header is damaged`);
  }
  const fileStart = h.offset - (h.headerAddr - h.loadAddr);
  if (fileStart < 0) throw new BootError(`multiboot: load_addr ${hex(h.loadAddr)} would start before the beginning of the file`);
  let size: number;
  if (h.loadEndAddr === 0) size = image.length - fileStart;
  else {
    if (h.loadEndAddr < h.loadAddr) throw new BootError(`multiboot: load_end_addr ${hex(h.loadEndAddr)} is below load_addr ${hex(h.loadAddr)}`);
    size = h.loadEndAddr - h.loadAddr;
  }
  if (fileStart + size > image.length) {
    throw new BootError(`multiboot: load range (${size} bytes from file offset ${fileStart}) runs past the end of the ${image.length}-byte file`);
  }
  const loadEnd = h.loadAddr + size;
  const bssEnd = h.bssEndAddr === 0 ? loadEnd : h.bssEndAddr;
  if (bssEnd < loadEnd) throw new BootError(`multiboot: bss_end_addr ${hex(bssEnd)} is below the end of the loaded image ${hex(loadEnd)}`);
  checkLoadRange(memory, h.loadAddr, bssEnd - h.loadAddr, 'multiboot kernel', LOW_RESERVED);
  if (h.entryAddr < h.loadAddr || h.entryAddr >= bssEnd) {
    throw new BootError(`multiboot: entry_addr ${hex(h.entryAddr)} is outside the loaded image ${hex(h.loadAddr)}..${hex(bssEnd)}`);
  }
  memory.writeBytes(h.loadAddr, image.subarray(fileStart, fileStart + size));
  memory.fill(loadEnd, bssEnd - loadEnd, 0);
  return { entry: h.entryAddr, start: h.loadAddr, end: bssEnd };
}

/** Bytes of the information area at `info`: the structure, memory map, module list and names. */
const INFO_BYTES = LOADER_NAME_OFFSET + 0x100;

/**
 * Where the information area and the command line go: at MULTIBOOT_INFO_START and CMDLINE_START
 * unless the kernel (which may load below 1 MiB) is there; then both together in the first free
 * pages of low memory, or right after the kernel.
 */
function placeInfo(memory: GuestMemory, kernel: { start: number; end: number }, cmdlineBytes: number): { info: number; cmdlineAddr: number } {
  const clear = (a: number, n: number): boolean => a + n <= kernel.start || a >= kernel.end;
  if (clear(MULTIBOOT_INFO_START, INFO_BYTES) && clear(CMDLINE_START, cmdlineBytes)) return { info: MULTIBOOT_INFO_START, cmdlineAddr: CMDLINE_START };
  const need = Math.ceil((INFO_BYTES + cmdlineBytes) / PAGE_SIZE) * PAGE_SIZE;
  for (let a = PAGE_SIZE; a + need <= EBDA_START; a += PAGE_SIZE) {
    if (clear(a, need)) return { info: a, cmdlineAddr: a + INFO_BYTES };
  }
  const a = Math.ceil(kernel.end / PAGE_SIZE) * PAGE_SIZE;
  checkLoadRange(memory, a, need, 'multiboot information (after the kernel)', LOW_RESERVED);
  return { info: a, cmdlineAddr: a + INFO_BYTES };
}

function writeCString(memory: GuestMemory, addr: number, s: string): void {
  const b = new TextEncoder().encode(s);
  memory.writeBytes(addr, b);
  memory.write8(addr + b.length, 0);
}

/** Load a multiboot v1 kernel. Throws BootError when the image has no multiboot header. */
export function loadMultiboot(memory: GuestMemory, image: Uint8Array, opts: LoadOptions): LoadedKernel {
  const h = findMultibootHeader(image);
  if (!h) throw new BootError(`multiboot: no header (magic ${hex(MULTIBOOT_HEADER_MAGIC)} with a valid checksum) in the first ${MULTIBOOT_SEARCH} bytes`);
  const unknown = h.flags & 0xffff & ~MB_REQUIRED_KNOWN;
  if (unknown) throw new BootError(`multiboot: the kernel requires features typevisor does not know (header flags ${hex(unknown)})`);

  let loaded: { entry: number; start: number; end: number };
  let pvhEntry: number | undefined;
  if (h.flags & MB_AOUT_KLUDGE) {
    loaded = loadAout(memory, image, h);
  } else {
    if (!isElf(image)) throw new BootError('multiboot: kernel is not ELF and its header has no load addresses (flag bit 16): the image is not loadable');
    const elf = parseElf(image, 'multiboot kernel');
    const entry = physicalEntry(elf, 'multiboot kernel');
    if (entry >= FOUR_GIB) throw new BootError(`multiboot: entry point ${hex(entry)} is above 4 GiB; a multiboot kernel starts in 32-bit mode`);
    const range = loadElfSegments(memory, image, elf, 'multiboot kernel', LOW_RESERVED);
    loaded = { entry, ...range };
    pvhEntry = pvhEntryOf(elf);
  }

  // the command line starts with the kernel's name, as GRUB and QEMU pass it
  const text = opts.kernelName === undefined ? opts.cmdline : opts.cmdline === '' ? opts.kernelName : `${opts.kernelName} ${opts.cmdline}`;
  const cmdlineBytes = new TextEncoder().encode(text).length + 1;
  const { info, cmdlineAddr } = placeInfo(memory, loaded, cmdlineBytes);
  memory.fill(info, INFO_BYTES, 0);
  let flags = MBI_MEMORY | MBI_CMDLINE | MBI_MMAP | MBI_LOADER_NAME;
  memory.write32(info + 4, Math.floor(EBDA_START / 1024)); // mem_lower (KiB below 640K)
  memory.write32(info + 8, Math.floor((lowRamEnd(memory) - HIGH_MEMORY_START) / 1024)); // mem_upper (KiB from 1 MiB)
  const cmdline = writeCmdline(memory, text, CMDLINE_MAX_SIZE - 1, cmdlineAddr);
  memory.write32(info + 16, cmdline.addr);

  let initrd: { addr: number; size: number } | undefined;
  if (opts.initrd && opts.initrd.length > 0) {
    const floor = Math.max(loaded.end, info + INFO_BYTES, cmdlineAddr + cmdlineBytes);
    const addr = placeHigh(memory, opts.initrd.length, floor, FOUR_GIB, 'initrd');
    memory.writeBytes(addr, opts.initrd);
    initrd = { addr, size: opts.initrd.length };
    const mod = info + MODS_OFFSET;
    memory.write32(mod, addr); // mod_start
    memory.write32(mod + 4, addr + opts.initrd.length); // mod_end (exclusive)
    memory.write32(mod + 8, info + MOD_STRING_OFFSET);
    writeCString(memory, info + MOD_STRING_OFFSET, MODULE_NAME);
    memory.write32(info + 20, 1); // mods_count
    memory.write32(info + 24, mod); // mods_addr
    flags |= MBI_MODS;
  }

  if (opts.e820.length > E820_MAX_ENTRIES) throw new BootError(`e820 map has ${opts.e820.length} entries; at most ${E820_MAX_ENTRIES} are supported`);
  const mmap = info + MMAP_OFFSET;
  opts.e820.forEach((e, i) => {
    const o = mmap + i * 24;
    memory.write32(o, 20); // size of the entry, not counting this field
    memory.write64(o + 4, BigInt(e.addr));
    memory.write64(o + 12, BigInt(e.size));
    memory.write32(o + 20, e.type);
  });
  memory.write32(info + 44, opts.e820.length * 24); // mmap_length
  memory.write32(info + 48, mmap); // mmap_addr
  writeCString(memory, info + LOADER_NAME_OFFSET, LOADER_NAME);
  memory.write32(info + 64, info + LOADER_NAME_OFFSET);
  memory.write32(info, flags);

  return {
    format: 'multiboot',
    entry: setupProtected32Entry(memory, loaded.entry, { rax: MULTIBOOT_BOOTLOADER_MAGIC, rbx: info, rsp: BOOT_STACK_POINTER }),
    kernel: { start: loaded.start, end: loaded.end },
    initrd,
    multibootInfo: info,
    pvhEntry,
  };
}

