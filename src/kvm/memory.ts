/**
 * Guest RAM for the KVM engine: one memfd, cut into regions around the 32-bit PCI hole. Each
 * region is one KVM memory slot and one shared WebAssembly.Memory whose pages are replaced by
 * the memfd's (mmap MAP_SHARED | MAP_FIXED over them), so the machine's GuestMemory reads and
 * writes the very pages the guest runs on, in every thread: the Memory itself is posted to the
 * vCPU threads (a shared Memory crosses threads as one object), no view is ever made from a raw
 * pointer.
 *
 * Why a shared wasm Memory and not a koffi view of a plain mmap: V8 counts an external
 * ArrayBuffer's whole length as external memory, and one of hundreds of MiB makes it collect
 * garbage at once ("external memory pressure"), in each thread that makes such a view —
 * measured on a restore of 2 GiB: a 12-23 ms full GC on the main thread and 8-10 ms on the
 * device thread, at 256 MiB an incremental one that still cost ~8 ms before the first KVM_RUN.
 * V8 does not count shared memory per isolate (a 2 GiB shared Memory: 0.07 ms, no GC). The
 * Memory also gives each region a page-aligned reservation of its own (V8's, with guard pages),
 * freed by V8 when no thread holds the Memory any more.
 *
 * A memfd (not anonymous memory): a snapshot asks it which pages the guest ever touched
 * (SEEK_DATA), and sharing with other processes is possible later. A restore maps the snapshot's
 * memory file copy-on-write over the regions (src/vmm/snapshot/memory-file.ts) before the KVM
 * memory slots exist; the memfd then holds nothing.
 *
 * `dispose()` replaces the memfd pages with anonymous zero pages (a stale view reads zeros
 * instead of crashing) and closes the memfd, which frees its pages; the reservations go when
 * V8 collects the Memories (the vCPU threads drop theirs when they end).
 */
import { ramRegionSpecs } from '../machine/ram.js';
import { GuestMemory } from '../machine/memory.js';
import { GiB, PAGE_SIZE } from '../machine/layout.js';
import { C, KvmSysError, bufferAddress, check, errno, errnoName, sys } from './sys.js';

/** Largest single region (one KVM slot, one view). */
export const MAX_REGION_SIZE = 2 * GiB;

/** One region of the RAM mapping: where it sits in the guest and in the memfd. */
export interface KvmRegion {
  guestBase: number;
  size: number;
  /** Offset into the memfd (and the host mapping). */
  offset: number;
}

/** A region as the engine and its threads share it. */
export interface KvmRegionHandle extends KvmRegion {
  /** Its pages: the first `size` bytes of this shared Memory are the memfd's at `offset`. */
  memory: WebAssembly.Memory;
  /** Host address of those pages (the KVM memory slot's userspace address). */
  address: bigint;
}

/** What a vCPU worker needs to rebuild the same GuestMemory over the same pages (posted as is). */
export interface KvmMemoryHandle {
  size: number;
  regions: KvmRegionHandle[];
}

/** wasm's page: a Memory is a whole number of them. */
const WASM_PAGE = 65536;

/** The RAM layout for `sizeBytes` of guest RAM: below the hole first, the rest above 4 GiB. */
export function ramRegions(sizeBytes: number): KvmRegion[] {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % PAGE_SIZE !== 0) {
    throw new KvmSysError(`guest RAM size ${sizeBytes} must be a positive multiple of ${PAGE_SIZE}`, 0);
  }
  // Same layout as the bt engine (src/machine/ram.ts), in slots of at most MAX_REGION_SIZE.
  const regions: KvmRegion[] = [];
  let offset = 0;
  for (const r of ramRegionSpecs(sizeBytes)) {
    for (let done = 0; done < r.size; done += MAX_REGION_SIZE) {
      const n = Math.min(MAX_REGION_SIZE, r.size - done);
      regions.push({ guestBase: r.base + done, size: n, offset });
      offset += n;
    }
  }
  return regions;
}

/** GuestMemory over the regions' Memories (used by both the main thread and the vCPU workers). */
export function guestMemoryOver(handle: KvmMemoryHandle): GuestMemory {
  return new GuestMemory(handle.regions.map((r) => ({ base: r.guestBase, size: r.size, buffer: r.memory.buffer })));
}

export interface KvmGuestMemory {
  /** The machine's view of guest RAM (main thread); give it to the loader. */
  readonly memory: GuestMemory;
  /** Serializable description for the engine and its workers. */
  readonly handle: KvmMemoryHandle;
  /** The memfd holding the pages. */
  readonly memfd: number;
  /** Release the pages and the fd. Call after the engine has finished running. */
  dispose(): void;
}

/** Allocate guest RAM for the KVM engine. */
export function createKvmGuestMemory(sizeBytes: number): KvmGuestMemory {
  const layout = ramRegions(sizeBytes);
  const memfd = check(sys.memfdCreate('typevisor-guest-ram', C.MFD_CLOEXEC), 'memfd_create');
  const regions: KvmRegionHandle[] = [];
  try {
    check(sys.ftruncate(memfd, sizeBytes), 'ftruncate(guest RAM memfd)');
    for (const r of layout) {
      const pages = Math.ceil(r.size / WASM_PAGE);
      let memory: WebAssembly.Memory;
      try {
        memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      } catch (e) {
        throw new KvmSysError(`cannot reserve ${r.size} bytes of address space for guest RAM: ${(e as Error).message}`, C.ENOMEM);
      }
      const address = bufferAddress(new Uint8Array(memory.buffer, 0, 1));
      const at = sys.mmapAt(address, r.size, C.PROT_READ | C.PROT_WRITE, C.MAP_SHARED | C.MAP_FIXED | C.MAP_NORESERVE, memfd, r.offset);
      if (at !== address) {
        const e = errno();
        throw new KvmSysError(`mmap of guest RAM (${r.size} bytes at guest 0x${r.guestBase.toString(16)}) failed: ${errnoName(e)}`, e);
      }
      regions.push({ ...r, memory, address });
    }
  } catch (e) {
    zeroRegions(regions);
    sys.close(memfd);
    throw e;
  }
  const handle: KvmMemoryHandle = { size: sizeBytes, regions };
  const memory = guestMemoryOver(handle);
  let disposed = false;
  return {
    memory,
    handle,
    memfd,
    dispose(): void {
      if (disposed) return;
      disposed = true;
      zeroRegions(regions);
      sys.close(memfd); // its pages are freed now: no mapping holds them any more
    },
  };
}

/**
 * Anonymous zero pages over the regions' memfd pages: a view still held anywhere reads zeros,
 * and V8 unmaps the reservation when it collects the Memory.
 */
function zeroRegions(regions: readonly KvmRegionHandle[]): void {
  for (const r of regions) {
    sys.mmapAt(r.address, r.size, C.PROT_READ | C.PROT_WRITE, C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_FIXED | C.MAP_NORESERVE, -1, 0);
  }
}
