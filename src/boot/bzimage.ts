/**
 * bzImage loader: the Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry.
 *
 * The real-mode setup code is not run: we load the protected-mode part at 1 MiB, build the
 * zero page from the image's setup header, and enter startup_64 (load address + 0x200) in long
 * mode with rsi = boot_params. The compressed kernel then moves itself out of the way and
 * decompresses to pref_address (the kernel's LOAD_PHYSICAL_ADDR, rounded per kernel_alignment),
 * using init_size bytes there; the initrd is placed above that footprint.
 */
import { KERNEL_LOAD_ADDR, MiB } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';
import {
  BOOT_FLAG_VALUE,
  HDR_BOOT_FLAG,
  HDR_CMDLINE_SIZE,
  HDR_END,
  HDR_INIT_SIZE,
  HDR_INITRD_ADDR_MAX,
  HDR_KERNEL_ALIGNMENT,
  HDR_LOADFLAGS,
  HDR_MAGIC,
  HDR_MAGIC_VALUE,
  HDR_PAYLOAD_LENGTH,
  HDR_PAYLOAD_OFFSET,
  HDR_PREF_ADDRESS,
  HDR_RELOCATABLE_KERNEL,
  HDR_SETUP_SECTS,
  HDR_START,
  HDR_SYSSIZE,
  HDR_VERSION,
  HDR_XLOADFLAGS,
  XLF_KERNEL_64,
  writeBootParams,
  writeRngSeed,
  writeCmdline,
} from './boot-params.js';
import { BootError, hex, mib } from './errors.js';
import { leadingBytes, payloadFormat } from './payload.js';
import { checkLoadRange, placeHigh } from './placement.js';
import type { LoadedKernel, LoadOptions } from './types.js';
import { setupLongModeEntry } from './x86-setup.js';

/** Oldest boot protocol we accept: 2.06 (cmdline_size); 64-bit entry needs xloadflags (2.12). */
export const MIN_BOOT_PROTOCOL = 0x0206;
const XLOADFLAGS_PROTOCOL = 0x020c;
const PREF_ADDRESS_PROTOCOL = 0x020a; // pref_address, init_size, payload_*
/** startup_64 is at this offset into the protected-mode part. */
export const STARTUP_64_OFFSET = 0x200;
/** Initrds default to below this for protocols before 2.03. */
const DEFAULT_INITRD_ADDR_MAX = 0x37ff_ffff;
/** Bytes we need to read every header field we use. */
const MIN_IMAGE_SIZE = 0x270;
/** payload_offset and payload_length exist from this protocol on. */
const PAYLOAD_PROTOCOL = 0x0208;

export interface BzImageHeader {
  /** Boot protocol version, e.g. 0x020f. */
  version: number;
  setupSects: number;
  /** File offset of the protected-mode part: (setup_sects + 1) * 512. */
  kernelOffset: number;
  /** Size of the protected-mode part from syssize (16-byte paragraphs); 0 when the header leaves it out. */
  pmSize: number;
  loadflags: number;
  xloadflags: number;
  relocatable: boolean;
  kernelAlignment: number;
  /** Preferred load address (the kernel's LOAD_PHYSICAL_ADDR); KERNEL_LOAD_ADDR before 2.10. */
  prefAddress: number;
  /** Bytes the kernel needs from its decompression address; 0 when unknown (before 2.10). */
  initSize: number;
  initrdAddrMax: number;
  /** Longest command line without the NUL. */
  cmdlineSize: number;
  /** Compressed payload, relative to kernelOffset (2.08+). */
  payloadOffset: number;
  payloadLength: number;
  /** The setup header bytes to copy into boot_params: [0x1f1, 0x202 + image[0x201]). */
  setupHeader: Uint8Array;
}

/** True when the image carries the "HdrS" boot-protocol signature. */
export function isBzImage(image: Uint8Array): boolean {
  if (image.length < MIN_IMAGE_SIZE) return false;
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  return v.getUint32(HDR_MAGIC, true) === HDR_MAGIC_VALUE;
}

/** Parse and validate the setup header. Throws BootError when the image cannot be booted. */
export function parseBzImageHeader(image: Uint8Array): BzImageHeader {
  if (!isBzImage(image)) throw new BootError(`Cannot parse kernel image: no bzImage header ("HdrS") at offset ${hex(HDR_MAGIC)}`);
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const version = v.getUint16(HDR_VERSION, true);
  const ver = `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
  if (version < MIN_BOOT_PROTOCOL) {
    throw new BootError(`bzImage uses boot protocol ${ver}; typevisor needs 2.06 or newer: use a newer kernel`);
  }
  if (v.getUint16(HDR_BOOT_FLAG, true) !== BOOT_FLAG_VALUE) {
    throw new BootError(`bzImage boot_flag at ${hex(HDR_BOOT_FLAG)} is not 0xaa55: the image is damaged`);
  }
  const xloadflags = version >= XLOADFLAGS_PROTOCOL ? v.getUint16(HDR_XLOADFLAGS, true) : 0;
  if (!(xloadflags & XLF_KERNEL_64)) {
    throw new BootError(`bzImage (boot protocol ${ver}) has no 64-bit entry point (XLF_KERNEL_64): use an x86-64 kernel`);
  }
  const setupSects = v.getUint8(HDR_SETUP_SECTS) || 4;
  const kernelOffset = (setupSects + 1) * 512;
  if (kernelOffset >= image.length) throw truncated(`setup_sects (${setupSects})`, kernelOffset + 1, image.length);
  // The file must hold everything the header describes: the protected-mode part (syssize) and
  // the compressed kernel in it (payload_*). A short file would boot and crash in the guest's
  // decompressor (a triple fault), so it is refused here, as for a vmlinux.
  const pmSize = v.getUint32(HDR_SYSSIZE, true) * 16;
  if (kernelOffset + pmSize > image.length) throw truncated(`syssize (${pmSize} bytes after the ${kernelOffset}-byte setup)`, kernelOffset + pmSize, image.length);
  const payloadOffset = version >= PAYLOAD_PROTOCOL ? v.getUint32(HDR_PAYLOAD_OFFSET, true) : 0;
  const payloadLength = version >= PAYLOAD_PROTOCOL ? v.getUint32(HDR_PAYLOAD_LENGTH, true) : 0;
  if (payloadLength > 0) {
    const start = kernelOffset + payloadOffset;
    if (start + payloadLength > image.length) {
      throw truncated(`payload_offset/payload_length (${payloadLength} bytes at ${start})`, start + payloadLength, image.length);
    }
    const payload = image.subarray(start, start + payloadLength);
    if (payloadFormat(payload) === 'unknown') {
      throw new BootError(
        `bzImage payload's compression format is not recognised (it starts ${leadingBytes(payload)}; Linux uses gzip, bzip2, lzma, xz, lzo, lz4 or zstd): ` +
          'the file is damaged or is not a Linux kernel; copy or download the kernel again',
      );
    }
  }
  const hdrEnd = Math.min(0x202 + image[0x201]!, HDR_END);
  const newer = version >= PREF_ADDRESS_PROTOCOL;
  const prefAddress = newer ? Number(v.getBigUint64(HDR_PREF_ADDRESS, true)) : KERNEL_LOAD_ADDR;
  const kernelAlignment = newer ? v.getUint32(HDR_KERNEL_ALIGNMENT, true) : 0;
  if (kernelAlignment !== 0 && (kernelAlignment & (kernelAlignment - 1)) !== 0) {
    throw new BootError(`bzImage kernel_alignment ${hex(kernelAlignment)} is not a power of two: the image is damaged`);
  }
  if (!Number.isSafeInteger(prefAddress) || prefAddress >= 0x1_0000_0000) {
    throw new BootError(`bzImage pref_address ${hex(prefAddress)} is above 4 GiB: typevisor cannot load this kernel`);
  }
  return {
    version,
    setupSects,
    kernelOffset,
    pmSize,
    loadflags: v.getUint8(HDR_LOADFLAGS),
    xloadflags,
    relocatable: v.getUint8(HDR_RELOCATABLE_KERNEL) !== 0,
    kernelAlignment,
    prefAddress,
    initSize: newer ? v.getUint32(HDR_INIT_SIZE, true) : 0,
    initrdAddrMax: v.getUint32(HDR_INITRD_ADDR_MAX, true) || DEFAULT_INITRD_ADDR_MAX,
    cmdlineSize: v.getUint32(HDR_CMDLINE_SIZE, true),
    payloadOffset,
    payloadLength,
    setupHeader: image.slice(HDR_START, hdrEnd),
  };
}

/** A file shorter than its header says: the one message for every field that shows it. */
function truncated(field: string, needed: number, size: number): BootError {
  return new BootError(
    `bzImage is truncated: its header's ${field} needs a file of at least ${needed} bytes but it has ${size}: ` +
      'the file is incomplete (an interrupted download or copy?); copy or download the kernel again',
  );
}

/**
 * Where the kernel will live: [load address, end of the decompression footprint). The
 * compressed kernel decompresses at max(load rounded up to kernel_alignment, pref_address)
 * when relocatable (head_64.S), else at pref_address, and uses init_size bytes from there.
 */
export function bzImageFootprint(hdr: BzImageHeader, loadAddr: number, pmSize: number): { target: number; end: number } {
  const align = hdr.kernelAlignment || 1;
  const target = hdr.relocatable ? Math.max(Math.ceil(loadAddr / align) * align, hdr.prefAddress) : hdr.prefAddress;
  const end = Math.max(loadAddr + pmSize, target + hdr.initSize);
  return { target, end };
}

/** Load a bzImage for 64-bit entry. */
export function loadBzImage(memory: GuestMemory, image: Uint8Array, opts: LoadOptions): LoadedKernel {
  const hdr = parseBzImageHeader(image);
  const pm = image.subarray(hdr.kernelOffset);
  const load = KERNEL_LOAD_ADDR;
  const { target, end } = bzImageFootprint(hdr, load, pm.length);
  checkLoadRange(memory, load, pm.length, `bzImage protected-mode part (${mib(pm.length)})`);
  if (hdr.initSize > 0 && !memory.isRam(target, hdr.initSize)) {
    throw new BootError(
      `kernel decompresses to ${hex(target)}..${hex(target + hdr.initSize)} (needs ${Math.ceil(end / MiB)} MiB of RAM) ` +
        `but the guest has ${mib(memory.size)}: give the guest more memory with --memory`,
    );
  }
  memory.writeBytes(load, pm);

  let initrd: { addr: number; size: number } | undefined;
  if (opts.initrd && opts.initrd.length > 0) {
    const addr = placeHigh(memory, opts.initrd.length, end, hdr.initrdAddrMax + 1, 'initrd');
    memory.writeBytes(addr, opts.initrd);
    initrd = { addr, size: opts.initrd.length };
  }
  const cmdline = writeCmdline(memory, opts.cmdline, hdr.cmdlineSize);
  const bootParams = writeBootParams(memory, {
    setupHeader: hdr.setupHeader,
    cmdline,
    initrd,
    e820: opts.e820,
    rsdp: opts.rsdp,
    setupData: opts.rngSeed ? writeRngSeed(memory, opts.rngSeed) : undefined,
  });
  return {
    format: 'bzimage',
    entry: setupLongModeEntry(memory, load + STARTUP_64_OFFSET, bootParams),
    kernel: { start: load, end },
    initrd,
    bootParams,
  };
}
