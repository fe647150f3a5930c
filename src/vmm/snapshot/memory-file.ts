/**
 * A snapshot's memory file: guest RAM, region after region, all-zero chunks left as holes.
 *
 * Written by scanning RAM (`writeMemoryFile`). Restored one of two ways:
 * - **mapped**, as Firecracker restores: the file is mapped copy-on-write (MAP_PRIVATE,
 *   MAP_FIXED) over the pages of RAM regions whose pages are ours to replace — on the bt engine
 *   those that live in a wasm Memory of their own, on the kvm engine the memfd mapping (before
 *   KVM's memory slots are registered over it). Nothing is read up front, so a restore takes
 *   the same time for 256 MiB as for 4 GiB; a page comes in from the page cache when the guest
 *   first touches it, a guest write copies it, and the file never changes. Holes read as zero
 *   and cost nothing.
 * - **read**, for regions that cannot be mapped (a plain ArrayBuffer's pages are not ours to
 *   replace) or where the host cannot map (no libc through koffi, a file system without mmap):
 *   only the data extents are copied into the fresh, zeroed RAM.
 *
 * A mapped file must stay as long as the VM runs. Deleting or renaming it is harmless (the
 * mapping keeps the inode); truncating it while the VM runs would fault the process, as with
 * Firecracker's File backend. typevisor itself writes a new snapshot to a temporary name and
 * renames it over the old one, which leaves the mapped inode intact.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import koffi from 'koffi';
import type { GuestMemory } from '../../machine/memory.js';
import { SnapshotError } from './check.js';
import { dataExtents } from './extents.js';

const PAGE = 4096;
const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_PRIVATE = 0x2;
const MAP_FIXED = 0x10;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
/** The largest wasm32 Memory: 65,536 pages of 64 KiB. */
const WASM_PAGE = 65536;
const MAX_WASM_PAGES = 65536;

interface Libc {
  /** memmove(dst, src, 0) returns dst: the address of a typed array's first byte. */
  addressOf: (bytes: Uint8Array) => bigint;
  mmap: (addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number) => bigint;
  munmap: (addr: bigint, length: number) => number;
}

let libc: Libc | null | undefined;

/** libc through koffi, or null where it cannot be loaded (then every region is read). */
function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    const lib = koffi.load('libc.so.6');
    const memmove = lib.func('memmove', 'uint64_t', ['void *', 'void *', 'size_t']) as (d: Uint8Array, s: Uint8Array, n: number) => number | bigint;
    const mmap = lib.func('mmap', 'uint64_t', ['uint64_t', 'size_t', 'int', 'int', 'int', 'int64_t']) as (...a: [bigint, number, number, number, number, number]) => number | bigint;
    const munmap = lib.func('munmap', 'int', ['uint64_t', 'size_t']) as (addr: bigint, length: number) => number;
    libc = {
      addressOf: (bytes) => BigInt(memmove(bytes, bytes, 0)),
      mmap: (...a) => BigInt(mmap(...a)),
      munmap,
    };
  } catch {
    libc = null;
  }
  return libc;
}

/**
 * A buffer for a RAM region of `size` bytes whose pages a restore may replace with a mapping of
 * the memory file: the memory of a wasm Memory (a page-aligned reservation of its own, freed
 * with it). undefined when the size does not fit one.
 */
export function mappableBuffer(size: number): ArrayBuffer | undefined {
  if (size <= 0 || size % WASM_PAGE !== 0 || size / WASM_PAGE > MAX_WASM_PAGES) return undefined;
  try {
    const pages = size / WASM_PAGE;
    return new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
  } catch {
    return undefined; // no address space for it: the region gets a plain buffer and is read
  }
}

/**
 * Map the memory file at `path` over the regions of `memory` whose buffers are in `mappable`
 * (buffers from `mappableBuffer`, the wasm arena or the kvm engine's memfd mapping; never a
 * plain ArrayBuffer, whose pages V8 owns), read the rest into the (zeroed) others.
 * Returns how many bytes were mapped rather than read.
 */
export function restoreMemoryFile(path: string, memory: GuestMemory, mappable: ReadonlySet<ArrayBufferLike>): number {
  const fd = openSync(path, 'r');
  try {
    // checked again on the open file: the mapping must not reach past its end
    if (fstatSync(fd).size < memory.size) throw new SnapshotError(`the memory file ${path} is shorter than the guest's RAM: a truncated snapshot`);
    const lib = loadLibc();
    let mapped = 0;
    let fileOffset = 0;
    let extents: [number, number][] | undefined | null = null; // looked up once, when a region is read
    for (const r of memory.regions) {
      if (lib && mappable.has(r.bytes.buffer) && mapRegion(lib, fd, r.bytes, fileOffset)) mapped += r.size;
      else {
        if (extents === null) extents = dataExtents(fd, memory.size);
        readRegion(fd, path, r.bytes, fileOffset, extents ?? [[0, memory.size]]);
      }
      fileOffset += r.size;
    }
    return mapped;
  } finally {
    closeSync(fd); // a mapping keeps the file open
  }
}

/** One region replaced by a private mapping of the file; false (nothing changed) when it cannot be. */
function mapRegion(lib: Libc, fd: number, bytes: Uint8Array, fileOffset: number): boolean {
  const length = bytes.byteLength;
  const address = lib.addressOf(bytes);
  if (address % BigInt(PAGE) !== 0n || length % PAGE !== 0 || fileOffset % PAGE !== 0) return false;
  // First map the file anywhere: where the file system cannot map (or the file is not
  // readable), this fails and leaves RAM untouched. A MAP_FIXED that failed might have dropped
  // the pages it was to replace.
  const probe = lib.mmap(0n, length, PROT_READ, MAP_PRIVATE, fd, fileOffset);
  if (probe === MAP_FAILED) return false;
  lib.munmap(probe, length);
  const at = lib.mmap(address, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, fileOffset);
  if (at !== address) {
    // the old pages are gone: this memory must not be used (the caller drops the VM)
    throw new SnapshotError(`mapping the snapshot's memory file over guest RAM failed (out of address space or mappings?); the restore is abandoned`);
  }
  return true;
}

/** The file's data extents within [fileOffset, fileOffset + size) into a zeroed region. */
function readRegion(fd: number, path: string, bytes: Uint8Array, fileOffset: number, extents: readonly [number, number][]): void {
  const end = fileOffset + bytes.byteLength;
  for (const [start, stop] of extents) {
    const lo = Math.max(start, fileOffset);
    const hi = Math.min(stop, end);
    for (let off = lo; off < hi;) {
      const n = readSync(fd, bytes, off - fileOffset, Math.min(1 << 24, hi - off), off);
      if (n <= 0) throw new SnapshotError(`the memory file ${path} ends early: a truncated snapshot`);
      off += n;
    }
  }
}

/**
 * Guest RAM, region after region; all-zero chunks are left as holes (a sparse file). `extents`:
 * where RAM can hold data at all (the kvm engine's memfd knows the pages the guest ever
 * touched), so only those are scanned; default everything.
 */
export function writeMemoryFile(path: string, memory: GuestMemory, extents: [number, number][] = [[0, memory.size]]): void {
  const fd = openSync(path, 'w');
  try {
    const CHUNK = 64 * 1024;
    let at = 0;
    const zeros = Buffer.alloc(CHUNK);
    for (const r of memory.regions) {
      const bytes = Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.size); // a view, not a copy
      const chunks = new Set<number>();
      for (const [start, end] of extents) {
        for (let c = Math.floor(Math.max(start - at, 0) / CHUNK) * CHUNK; c < Math.min(end - at, r.size); c += CHUNK) chunks.add(c);
      }
      for (const off of chunks) {
        const n = Math.min(CHUNK, r.size - off);
        // memcmp against zeros: ~10x faster than a word loop in JS
        if (!bytes.subarray(off, off + n).equals(n === CHUNK ? zeros : zeros.subarray(0, n))) writeSync(fd, r.bytes, off, n, at + off);
      }
      at += r.size;
    }
    ftruncateSync(fd, at); // the length, also when the end is a hole
  } finally {
    closeSync(fd);
  }
}
