/**
 * `--disk PATH,snapshot`: the guest writes into an overlay, the image stays as it was. Reads of
 * sectors the guest wrote come from the overlay (`top`, a sparse scratch file of the disk's size
 * that is deleted when typevisor ends), every other sector from the image (`base`, opened
 * read-only). A bitmap of written sectors, allocated per 2 MiB chunk, says which is which.
 *
 * A sector counts as written once its write completed: a read that races a write of the same
 * sectors gets either version, as on any disk.
 */
import { sliceBuffers, totalLength, type DiskBackend, type DiskDone } from '../../devices/virtio/blk/backend.js';

const SECTOR = 512;
/** Sectors per bitmap chunk (2 MiB of disk, 512 bytes of bitmap). */
const CHUNK_SECTORS = 4096;

export class SnapshotOverlay implements DiskBackend {
  readonly size: number;
  /** chunk index → one bit per sector, set when the overlay holds the sector. */
  private readonly written = new Map<number, Uint8Array>();

  constructor(
    private readonly base: DiskBackend,
    private readonly top: DiskBackend,
    readonly readOnly = false,
  ) {
    if (top.size < base.size) throw new RangeError(`snapshot overlay (${top.size} bytes) is smaller than its image (${base.size} bytes)`);
    this.size = base.size;
  }

  private isWritten(sector: number): boolean {
    const bits = this.written.get(Math.floor(sector / CHUNK_SECTORS));
    if (!bits) return false;
    const i = sector % CHUNK_SECTORS;
    return (bits[i >>> 3]! & (1 << (i & 7))) !== 0;
  }

  private mark(offset: number, length: number): void {
    for (let s = offset / SECTOR, end = (offset + length) / SECTOR; s < end; s++) {
      const c = Math.floor(s / CHUNK_SECTORS);
      let bits = this.written.get(c);
      if (!bits) this.written.set(c, (bits = new Uint8Array(CHUNK_SECTORS / 8)));
      const i = s % CHUNK_SECTORS;
      bits[i >>> 3]! |= 1 << (i & 7);
    }
  }

  /** Sectors the overlay holds (statistics, tests). */
  get writtenSectors(): number {
    let n = 0;
    for (const bits of this.written.values()) for (const b of bits) for (let v = b; v; v &= v - 1) n++;
    return n;
  }

  read(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    const total = totalLength(buffers);
    // Runs of sectors from the same side, each one read.
    const runs: [fromTop: boolean, at: number, len: number][] = [];
    for (let at = 0; at < total; at += SECTOR) {
      const top = this.isWritten((offset + at) / SECTOR);
      const last = runs[runs.length - 1];
      if (last && last[0] === top) last[2] += SECTOR;
      else runs.push([top, at, SECTOR]);
    }
    if (runs.length === 0) return done();
    let left = runs.length;
    let first: Error | undefined;
    const one: DiskDone = (e) => {
      first ??= e;
      if (--left === 0) done(first);
    };
    for (const [fromTop, at, len] of runs) (fromTop ? this.top : this.base).read(offset + at, sliceBuffers(buffers, at, len), one);
  }

  write(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.top.write(offset, buffers, (e) => {
      if (!e) this.mark(offset, totalLength(buffers));
      done(e);
    });
  }

  /** Nothing to make durable: the overlay is dropped at exit. */
  flush(done: DiskDone): void {
    done();
  }

  /** Reads of discarded sectors may return the old data: nothing to do. */
  discard(_offset: number, _length: number, done: DiskDone): void {
    done();
  }

  writeZeroes(offset: number, length: number, done: DiskDone): void {
    this.top.writeZeroes(offset, length, (e) => {
      if (!e) this.mark(offset, length);
      done(e);
    });
  }
}
