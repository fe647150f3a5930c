/**
 * A small, defensive ELF reader (ELF32 and ELF64, little-endian) for the kernel loaders. The
 * file is untrusted input: every header field is checked against the file size before it is
 * used, 64-bit fields are read as bigints and only turned into numbers once known to be safe,
 * and the number of program headers and notes is capped.
 */
import type { GuestMemory } from '../machine/memory.js';
import { BootError, hex } from './errors.js';
import { BOOT_STRUCTURES, checkLoadRange, type Reserved } from './placement.js';

export const EM_386 = 3;
export const EM_X86_64 = 62;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
/** Xen ELF note carrying the PVH 32-bit entry point (physical). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

const MAX_PROGRAM_HEADERS = 256;
const MAX_NOTES = 1024;

export interface ElfSegment {
  type: number;
  flags: number;
  /** File offset and size (validated: offset + filesz <= file length). */
  offset: number;
  filesz: number;
  /** Virtual address, as a bigint (Linux's are 0xffffffff8...). */
  vaddr: bigint;
  /** Physical address and in-memory size (validated as safe integers). */
  paddr: number;
  memsz: number;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface ElfFile {
  elfClass: 32 | 64;
  type: number;
  machine: number;
  entry: bigint;
  segments: ElfSegment[];
  notes: ElfNote[];
}

export function isElf(image: Uint8Array): boolean {
  return image.length >= 16 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46;
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Parse an ELF file's header, program headers and notes. Throws BootError on anything malformed. */
export function parseElf(image: Uint8Array, what = 'ELF kernel'): ElfFile {
  if (!isElf(image)) throw new BootError(`${what}: no ELF magic (7f 45 4c 46) at offset 0`);
  const cls = image[4];
  if (cls !== 1 && cls !== 2) throw new BootError(`${what}: unknown ELF class ${cls}`);
  if (image[5] !== 1) throw new BootError(`${what}: big-endian ELF files are not x86 kernels`);
  const is64 = cls === 2;
  const ehsize = is64 ? 64 : 52;
  if (image.length < ehsize) throw new BootError(`${what}: file is ${image.length} bytes, shorter than its ELF header`);
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const type = v.getUint16(16, true);
  const machine = v.getUint16(18, true);
  const entry = is64 ? v.getBigUint64(24, true) : BigInt(v.getUint32(24, true));
  const phoff = is64 ? v.getBigUint64(32, true) : BigInt(v.getUint32(28, true));
  const phentsize = v.getUint16(is64 ? 54 : 42, true);
  const phnum = v.getUint16(is64 ? 56 : 44, true);
  const wantEntSize = is64 ? 56 : 32;
  if (phnum === 0) throw new BootError(`${what}: ELF file has no program headers, nothing to load`);
  if (phnum > MAX_PROGRAM_HEADERS) throw new BootError(`${what}: ELF file has ${phnum} program headers (at most ${MAX_PROGRAM_HEADERS})`);
  if (phentsize !== wantEntSize) throw new BootError(`${what}: ELF program header size is ${phentsize}, expected ${wantEntSize}`);
  if (phoff + BigInt(phnum * phentsize) > BigInt(image.length)) {
    throw new BootError(`${what}: ELF program headers (offset ${hex(phoff)}, ${phnum} entries) run past the end of the ${image.length}-byte file`);
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = Number(phoff) + i * phentsize;
    let p: { type: number; flags: number; offset: bigint; vaddr: bigint; paddr: bigint; filesz: bigint; memsz: bigint };
    if (is64) {
      p = {
        type: v.getUint32(o, true),
        flags: v.getUint32(o + 4, true),
        offset: v.getBigUint64(o + 8, true),
        vaddr: v.getBigUint64(o + 16, true),
        paddr: v.getBigUint64(o + 24, true),
        filesz: v.getBigUint64(o + 32, true),
        memsz: v.getBigUint64(o + 40, true),
      };
    } else {
      p = {
        type: v.getUint32(o, true),
        offset: BigInt(v.getUint32(o + 4, true)),
        vaddr: BigInt(v.getUint32(o + 8, true)),
        paddr: BigInt(v.getUint32(o + 12, true)),
        filesz: BigInt(v.getUint32(o + 16, true)),
        memsz: BigInt(v.getUint32(o + 20, true)),
        flags: v.getUint32(o + 24, true),
      };
    }
    if (p.type !== PT_LOAD && p.type !== PT_NOTE) continue;
    if (p.offset + p.filesz > BigInt(image.length)) {
      throw new BootError(`${what}: program header ${i} (offset ${hex(p.offset)}, ${p.filesz} bytes) runs past the end of the ${image.length}-byte file`);
    }
    if (p.type === PT_LOAD && p.filesz > p.memsz) {
      throw new BootError(`${what}: program header ${i} has file size ${hex(p.filesz)} larger than its memory size ${hex(p.memsz)}`);
    }
    if (p.type === PT_LOAD && p.paddr + p.memsz > SAFE) {
      throw new BootError(`${what}: program header ${i} physical address ${hex(p.paddr)} + ${hex(p.memsz)} is out of range`);
    }
    segments.push({
      type: p.type,
      flags: p.flags,
      offset: Number(p.offset),
      filesz: Number(p.filesz),
      vaddr: p.vaddr,
      paddr: p.type === PT_LOAD ? Number(p.paddr) : 0,
      memsz: p.type === PT_LOAD ? Number(p.memsz) : 0,
    });
  }
  const notes: ElfNote[] = [];
  for (const s of segments) if (s.type === PT_NOTE) parseNotes(image.subarray(s.offset, s.offset + s.filesz), notes, what);
  return { elfClass: is64 ? 64 : 32, type, machine, entry, segments, notes };
}

/** Parse a note segment: { u32 namesz, u32 descsz, u32 type, name (4-aligned), desc (4-aligned) }*. */
function parseNotes(data: Uint8Array, out: ElfNote[], what: string): void {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let o = 0;
  while (o + 12 <= data.length) {
    if (out.length >= MAX_NOTES) throw new BootError(`${what}: more than ${MAX_NOTES} ELF notes`);
    const namesz = v.getUint32(o, true);
    const descsz = v.getUint32(o + 4, true);
    const type = v.getUint32(o + 8, true);
    const nameStart = o + 12;
    const descStart = nameStart + align4(namesz);
    const next = descStart + align4(descsz);
    if (descStart + descsz > data.length || nameStart + namesz > data.length) {
      throw new BootError(`${what}: ELF note at offset ${o} (name ${namesz} bytes, desc ${descsz} bytes) runs past its segment`);
    }
    let name = '';
    for (let i = 0; i < namesz && data[nameStart + i] !== 0; i++) name += String.fromCharCode(data[nameStart + i]!);
    out.push({ name, type, desc: data.slice(descStart, descStart + descsz) });
    o = next;
  }
}

const align4 = (n: number): number => (n + 3) & ~3;

/** The PVH entry (XEN_ELFNOTE_PHYS32_ENTRY, a 4- or 8-byte physical address), if present. */
export function pvhEntryOf(elf: ElfFile): number | undefined {
  const note = elf.notes.find((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (!note || (note.desc.length !== 4 && note.desc.length !== 8)) return undefined;
  const v = new DataView(note.desc.buffer, note.desc.byteOffset, note.desc.byteLength);
  // Only the low 32 bits matter: PVH enters in 32-bit protected mode.
  return v.getUint32(0, true);
}

/**
 * The entry point as a physical address: e_entry itself when it lies in a loaded segment's
 * physical range (x86-64 vmlinux: phys_startup_64), else translated through the segment whose
 * virtual range holds it (higher-half kernels).
 */
export function physicalEntry(elf: ElfFile, what: string): number {
  const loads = elf.segments.filter((s) => s.type === PT_LOAD);
  for (const s of loads) {
    if (elf.entry >= BigInt(s.paddr) && elf.entry < BigInt(s.paddr + s.memsz)) return Number(elf.entry);
  }
  for (const s of loads) {
    if (elf.entry >= s.vaddr && elf.entry < s.vaddr + BigInt(s.memsz)) return Number(elf.entry - s.vaddr) + s.paddr;
  }
  throw new BootError(`${what}: entry point ${hex(elf.entry)} is not inside any loadable segment: the file is damaged`);
}

/**
 * Copy every PT_LOAD segment to its physical address and zero its bss. Every segment is checked
 * first (inside RAM, clear of `reserved`: by default the first MiB) so a bad file leaves memory untouched.
 * Returns the physical range covered.
 */
export function loadElfSegments(
  memory: GuestMemory, image: Uint8Array, elf: ElfFile, what: string, reserved: readonly Reserved[] = BOOT_STRUCTURES,
): { start: number; end: number } {
  const loads = elf.segments.filter((s) => s.type === PT_LOAD && s.memsz > 0);
  if (loads.length === 0) throw new BootError(`${what}: ELF file has no loadable segments`);
  for (const s of loads) checkLoadRange(memory, s.paddr, s.memsz, `${what} segment at ${hex(s.paddr)}`, reserved);
  let start = Infinity;
  let end = 0;
  for (const s of loads) {
    memory.writeBytes(s.paddr, image.subarray(s.offset, s.offset + s.filesz));
    if (s.memsz > s.filesz) memory.fill(s.paddr + s.filesz, s.memsz - s.filesz, 0);
    start = Math.min(start, s.paddr);
    end = Math.max(end, s.paddr + s.memsz);
  }
  return { start, end };
}
