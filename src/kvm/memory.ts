/**
 * Guest RAM for the KVM engine: one memfd, mapped once (MAP_SHARED), cut into regions around
 * the 32-bit PCI hole. Each region is one KVM memory slot and one koffi view (never a view over
 * 4 GiB: that aborts the process), so the machine's GuestMemory reads and writes the very pages
 * the guest runs on.
 *
 * A memfd (not anonymous memory): a snapshot asks it which pages the guest ever touched
 * (SEEK_DATA), and sharing with other processes is possible later. A restore maps the snapshot's
 * memory file copy-on-write over the mapping (src/vmm/snapshot/memory-file.ts) before the KVM
 * memory slots exist; the memfd then holds nothing.
 *
 * The mapping may only be unmapped once nothing can touch a view of it any more: vCPU workers
 * drop theirs when they exit; the views this module hands to the main thread cannot be
 * detached from JS, so `dispose()` first replaces the pages with an anonymous zero mapping (a
 * stale view reads zeros instead of crashing) and unmaps that only when the views have been
 * garbage-collected.
 */
import { ramRegionSpecs } from '../machine/ram.js';
import { GuestMemory, type RegionSpec } from '../machine/memory.js';
import { GiB, PAGE_SIZE } from '../machine/layout.js';
import { C, KvmSysError, addressOf, check, mmapChecked, pointerFromAddress, sys, viewOf } from './sys.js';

/** Largest single region (one KVM slot, one view). */
export const MAX_REGION_SIZE = 2 * GiB;

/** One region of the RAM mapping: where it sits in the guest and in the memfd. */
export interface KvmRegion {
  guestBase: number;
  size: number;
  /** Offset into the memfd (and the host mapping). */
  offset: number;
}

/** What a vCPU worker needs to rebuild the same GuestMemory over the same pages. */
export interface KvmMemoryHandle {
  /** Host address of the mapping. */
  address: bigint;
  size: number;
  regions: KvmRegion[];
}

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

/** GuestMemory over an existing mapping (used by both the main thread and the vCPU workers). */
export function guestMemoryOver(handle: KvmMemoryHandle): GuestMemory {
  const specs: RegionSpec[] = handle.regions.map((r) => ({
    base: r.guestBase,
    size: r.size,
    buffer: viewOf(pointerFromAddress(handle.address + BigInt(r.offset)), r.size),
  }));
  return new GuestMemory(specs);
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

/** Mapping placeholders still waiting for their main-thread views to be collected. */
const pendingUnmaps = new FinalizationRegistry<{ address: bigint; size: number; live: { n: number } }>((m) => {
  if (--m.live.n === 0) sys.munmap(m.address, m.size);
});

/** Allocate guest RAM for the KVM engine. */
export function createKvmGuestMemory(sizeBytes: number): KvmGuestMemory {
  const regions = ramRegions(sizeBytes);
  const memfd = check(sys.memfdCreate('typevisor-guest-ram', C.MFD_CLOEXEC), 'memfd_create');
  let address: bigint;
  try {
    check(sys.ftruncate(memfd, sizeBytes), 'ftruncate(guest RAM memfd)');
    address = addressOf(
      mmapChecked(sizeBytes, C.PROT_READ | C.PROT_WRITE, C.MAP_SHARED | C.MAP_NORESERVE, memfd, 'guest RAM'),
    );
  } catch (e) {
    sys.close(memfd);
    throw e;
  }
  const handle: KvmMemoryHandle = { address, size: sizeBytes, regions };
  const memory = guestMemoryOver(handle);
  let disposed = false;
  return {
    memory,
    handle,
    memfd,
    dispose(): void {
      if (disposed) return;
      disposed = true;
      // Swap the memfd pages for anonymous zero pages at the same address: the memfd's pages
      // are freed once its fd is closed, and a stale view can never fault.
      const r = sys.mmapAt(
        address,
        sizeBytes,
        C.PROT_READ | C.PROT_WRITE,
        C.MAP_PRIVATE | C.MAP_ANONYMOUS | C.MAP_FIXED | C.MAP_NORESERVE,
        -1,
        0,
      );
      if (r !== address) sys.munmap(address, sizeBytes);
      else {
        const live = { n: memory.regions.length };
        for (const region of memory.regions) pendingUnmaps.register(region.bytes.buffer, { address, size: sizeBytes, live });
      }
      sys.close(memfd);
    },
  };
}
