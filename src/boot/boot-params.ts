/**
 * Linux's struct boot_params (the "zero page", Documentation/arch/x86/zero-page.rst) and the
 * kernel command line, shared by the bzImage and vmlinux loaders.
 *
 * The bzImage loader copies the image's setup header into the page; the vmlinux loader has no
 * header and fills in the fields the kernel reads (boot_flag, "HdrS", version,
 * kernel_alignment, cmdline_size), as Firecracker's linux-loader does.
 */
import { CMDLINE_MAX_SIZE, CMDLINE_START, SETUP_DATA_MAX_SIZE, SETUP_DATA_START, ZERO_PAGE_START } from '../machine/layout.js';
import type { GuestMemory } from '../machine/memory.js';
import { E820_MAX_ENTRIES, type E820Entry } from './e820.js';
import { BootError } from './errors.js';

// ---- boot_params offsets ---------------------------------------------------------------------
export const BP_ACPI_RSDP_ADDR = 0x070; // u64
export const BP_EXT_RAMDISK_IMAGE = 0x0c0; // u32: high bits of ramdisk_image
export const BP_EXT_RAMDISK_SIZE = 0x0c4;
export const BP_EXT_CMD_LINE_PTR = 0x0c8;
export const BP_E820_ENTRIES = 0x1e8; // u8
export const BP_SENTINEL = 0x1ef; // must be 0 or the kernel wipes "garbage" fields
export const BP_E820_TABLE = 0x2d0; // 128 x { u64 addr, u64 size, u32 type }, packed
export const BP_SIZE = 0x1000;

// ---- setup header (offsets within the image and within boot_params) -------------------------
export const HDR_START = 0x1f1;
export const HDR_SETUP_SECTS = 0x1f1; // u8
export const HDR_SYSSIZE = 0x1f4; // u32 (2.04+): size of the protected-mode part in 16-byte paragraphs
export const HDR_BOOT_FLAG = 0x1fe; // u16 0xaa55
export const HDR_JUMP = 0x200; // u16; the byte at 0x201 is the header's length past 0x202
export const HDR_MAGIC = 0x202; // "HdrS"
export const HDR_VERSION = 0x206; // u16
export const HDR_TYPE_OF_LOADER = 0x210; // u8
export const HDR_LOADFLAGS = 0x211; // u8
export const HDR_CODE32_START = 0x214; // u32
export const HDR_RAMDISK_IMAGE = 0x218; // u32
export const HDR_RAMDISK_SIZE = 0x21c; // u32
export const HDR_HEAP_END_PTR = 0x224; // u16
export const HDR_CMD_LINE_PTR = 0x228; // u32
export const HDR_INITRD_ADDR_MAX = 0x22c; // u32
export const HDR_KERNEL_ALIGNMENT = 0x230; // u32
export const HDR_RELOCATABLE_KERNEL = 0x234; // u8
export const HDR_MIN_ALIGNMENT = 0x235; // u8
export const HDR_XLOADFLAGS = 0x236; // u16
export const HDR_CMDLINE_SIZE = 0x238; // u32
export const HDR_PAYLOAD_OFFSET = 0x248; // u32
export const HDR_PAYLOAD_LENGTH = 0x24c; // u32
export const HDR_PREF_ADDRESS = 0x258; // u64
export const HDR_SETUP_DATA = 0x250; // u64: guest address of the first setup_data node (2.09+)
export const HDR_INIT_SIZE = 0x260; // u32
/** End of struct setup_header in boot_params (edd_mbr_sig_buffer follows). */
export const HDR_END = 0x290;

export const HDR_MAGIC_VALUE = 0x5372_6448; // "HdrS" little-endian
export const BOOT_FLAG_VALUE = 0xaa55;
/** Boot protocol version we claim when building a header from scratch (2.15). */
export const BOOT_PROTOCOL_VERSION = 0x020f;

export const LOADFLAG_LOADED_HIGH = 0x01; // protected-mode code loaded at 1 MiB or above
export const LOADFLAG_CAN_USE_HEAP = 0x80; // heap_end_ptr is valid
export const XLF_KERNEL_64 = 0x01; // 64-bit entry point at load address + 0x200
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x02;

/** type_of_loader: 0xff = "undefined / other" (we have no assigned loader ID). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** heap_end_ptr as GRUB sets it for the usual 0x8000-byte setup area, minus 0x200. */
const HEAP_END_PTR = 0xfe00;
/** x86 Linux's COMMAND_LINE_SIZE (including the NUL); the limit for kernels without a header. */
export const LINUX_COMMAND_LINE_SIZE = 2048;
/** Default kernel_alignment for a header built from scratch: 16 MiB like Firecracker. */
const DEFAULT_KERNEL_ALIGNMENT = 0x0100_0000;

export interface BootParamsSpec {
  /** The image's setup header, bytes [0x1f1, 0x202 + image[0x201]); absent for vmlinux. */
  setupHeader?: Uint8Array;
  /** Guest address of the NUL-terminated command line and its length without the NUL. */
  cmdline: { addr: number; length: number };
  initrd?: { addr: number; size: number };
  e820: readonly E820Entry[];
  /** Guest address of the ACPI RSDP, if ACPI tables were written. */
  rsdp?: number;
  /** Guest address of the first setup_data node, if any. */
  setupData?: number;
}

/** Build the zero page in a fresh buffer (pure; writeBootParams puts it in guest memory). */
export function buildBootParams(spec: BootParamsSpec): Uint8Array {
  const page = new Uint8Array(BP_SIZE);
  const v = new DataView(page.buffer);
  if (spec.setupHeader) {
    const len = Math.min(spec.setupHeader.length, HDR_END - HDR_START);
    page.set(spec.setupHeader.subarray(0, len), HDR_START);
  } else {
    v.setUint16(HDR_BOOT_FLAG, BOOT_FLAG_VALUE, true);
    v.setUint32(HDR_MAGIC, HDR_MAGIC_VALUE, true);
    v.setUint16(HDR_VERSION, BOOT_PROTOCOL_VERSION, true);
    v.setUint32(HDR_KERNEL_ALIGNMENT, DEFAULT_KERNEL_ALIGNMENT, true);
    v.setUint32(HDR_CMDLINE_SIZE, LINUX_COMMAND_LINE_SIZE - 1, true);
  }
  v.setUint8(HDR_TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
  v.setUint8(HDR_LOADFLAGS, v.getUint8(HDR_LOADFLAGS) | LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP);
  v.setUint16(HDR_HEAP_END_PTR, HEAP_END_PTR, true);
  v.setUint32(HDR_CMD_LINE_PTR, spec.cmdline.addr, true);
  v.setUint32(BP_EXT_CMD_LINE_PTR, Math.floor(spec.cmdline.addr / 0x1_0000_0000), true);
  const rd = spec.initrd ?? { addr: 0, size: 0 };
  v.setUint32(HDR_RAMDISK_IMAGE, rd.addr >>> 0, true);
  v.setUint32(HDR_RAMDISK_SIZE, rd.size >>> 0, true);
  v.setUint32(BP_EXT_RAMDISK_IMAGE, Math.floor(rd.addr / 0x1_0000_0000), true);
  v.setUint32(BP_EXT_RAMDISK_SIZE, Math.floor(rd.size / 0x1_0000_0000), true);
  if (spec.e820.length > E820_MAX_ENTRIES) {
    throw new BootError(`e820 map has ${spec.e820.length} entries; at most ${E820_MAX_ENTRIES} fit in boot_params`);
  }
  v.setUint8(BP_E820_ENTRIES, spec.e820.length);
  spec.e820.forEach((e, i) => {
    const o = BP_E820_TABLE + i * 20;
    v.setBigUint64(o, BigInt(e.addr), true);
    v.setBigUint64(o + 8, BigInt(e.size), true);
    v.setUint32(o + 16, e.type, true);
  });
  if (spec.rsdp !== undefined) v.setBigUint64(BP_ACPI_RSDP_ADDR, BigInt(spec.rsdp), true);
  v.setBigUint64(HDR_SETUP_DATA, BigInt(spec.setupData ?? 0), true);
  v.setUint8(BP_SENTINEL, 0);
  return page;
}

/** Write the zero page at ZERO_PAGE_START; returns its address (the kernel's rsi). */
export function writeBootParams(memory: GuestMemory, spec: BootParamsSpec): number {
  memory.writeBytes(ZERO_PAGE_START, buildBootParams(spec));
  return ZERO_PAGE_START;
}

/** struct setup_data type SETUP_RNG_SEED (arch/x86/include/uapi/asm/bootparam.h). */
export const SETUP_RNG_SEED = 9;
/** Header of a setup_data node: u64 next, u32 type, u32 len. */
const SETUP_DATA_HEADER = 16;

/**
 * Write one SETUP_RNG_SEED node at SETUP_DATA_START and return its address (for
 * boot_params.hdr.setup_data). The kernel reserves it, mixes the bytes in and zeroes them.
 */
export function writeRngSeed(memory: GuestMemory, seed: Uint8Array): number {
  if (seed.length === 0 || seed.length > SETUP_DATA_MAX_SIZE - SETUP_DATA_HEADER) {
    throw new BootError(`RNG seed of ${seed.length} bytes: give 1 to ${SETUP_DATA_MAX_SIZE - SETUP_DATA_HEADER}`);
  }
  const node = new Uint8Array(SETUP_DATA_HEADER + seed.length);
  const v = new DataView(node.buffer);
  v.setBigUint64(0, 0n, true); // next: none
  v.setUint32(8, SETUP_RNG_SEED, true);
  v.setUint32(12, seed.length, true);
  node.set(seed, SETUP_DATA_HEADER);
  memory.writeBytes(SETUP_DATA_START, node);
  return SETUP_DATA_START;
}

/**
 * Write the command line, NUL-terminated, at CMDLINE_START. `maxLength` is the kernel's
 * limit without the NUL (setup header cmdline_size).
 */
export function writeCmdline(memory: GuestMemory, cmdline: string, maxLength: number, addr = CMDLINE_START): { addr: number; length: number } {
  const bytes = new TextEncoder().encode(cmdline);
  const limit = Math.min(maxLength, CMDLINE_MAX_SIZE - 1);
  if (bytes.length > limit) {
    throw new BootError(`kernel command line is ${bytes.length} bytes; this kernel accepts at most ${limit}: shorten --cmdline`);
  }
  if (bytes.includes(0)) throw new BootError('kernel command line contains a NUL byte: remove it from --cmdline');
  memory.writeBytes(addr, bytes);
  memory.write8(addr + bytes.length, 0);
  return { addr, length: bytes.length };
}
