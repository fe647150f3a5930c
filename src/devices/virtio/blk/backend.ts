/**
 * What a virtio-blk device sees of its disk: byte offsets and buffers, completions through a
 * callback. The device has already checked every range against `size` and every length against
 * the sector size; a backend only does the I/O. Implementations live on the host side
 * (src/vmm/disk: a raw file with asynchronous positional I/O, a snapshot overlay); this file
 * also holds the in-memory one the unit tests use.
 *
 * Buffers are borrowed views into guest RAM: a backend reads into / writes from them until it
 * calls `done`, and must not keep them after that.
 */

/** Called once when an operation finished; an error means the guest gets VIRTIO_BLK_S_IOERR. */
export type DiskDone = (error?: Error) => void;

export interface DiskBackend {
  /** Disk size in bytes (a multiple of 512). */
  readonly size: number;
  /** The guest may not write (VIRTIO_BLK_F_RO). */
  readonly readOnly: boolean;
  /** Fill `buffers`, in order, from the disk at byte `offset`. */
  read(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void;
  /** Write `buffers`, in order, to the disk at byte `offset`. */
  write(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void;
  /** Make completed writes durable. */
  flush(done: DiskDone): void;
  /** The guest no longer needs [offset, offset+length): the backend may drop it (or do nothing). */
  discard(offset: number, length: number, done: DiskDone): void;
  /** [offset, offset+length) reads as zeros afterwards. */
  writeZeroes(offset: number, length: number, done: DiskDone): void;
}

/** Total bytes in `buffers`. */
export function totalLength(buffers: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of buffers) n += b.length;
  return n;
}

/** Views of bytes [from, from+len) of the concatenation of `buffers` (borrowed, no copy). */
export function sliceBuffers(buffers: readonly Uint8Array[], from: number, len: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = from;
  let left = len;
  for (const b of buffers) {
    if (left === 0) break;
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    const n = Math.min(b.length - skip, left);
    out.push(b.subarray(skip, skip + n));
    left -= n;
    skip = 0;
  }
  return out;
}

/** A disk held in memory: for tests, and for anything that wants a scratch disk. */
export class MemoryDiskBackend implements DiskBackend {
  readonly bytes: Uint8Array;
  flushes = 0;
  discards = 0;
  /** Fail the next operations with this error (tests of the IOERR path). */
  failWith: Error | undefined;
  /** Hold completions until `complete()` (tests of asynchronous completion); default: at once. */
  deferred: (() => void)[] | undefined;

  constructor(
    size: number,
    readonly readOnly = false,
  ) {
    this.bytes = new Uint8Array(size);
  }

  get size(): number {
    return this.bytes.length;
  }

  /** Run the held completions (with `deferred` set). */
  complete(): void {
    const d = this.deferred ?? [];
    this.deferred = [];
    for (const f of d) f();
  }

  private finish(done: DiskDone, op: () => void): void {
    const run = () => {
      if (this.failWith) return done(this.failWith);
      op();
      done();
    };
    if (this.deferred) this.deferred.push(run);
    else run();
  }

  read(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.finish(done, () => {
      let at = offset;
      for (const b of buffers) {
        b.set(this.bytes.subarray(at, at + b.length));
        at += b.length;
      }
    });
  }

  write(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.finish(done, () => {
      let at = offset;
      for (const b of buffers) {
        this.bytes.set(b, at);
        at += b.length;
      }
    });
  }

  flush(done: DiskDone): void {
    this.finish(done, () => this.flushes++);
  }

  discard(offset: number, length: number, done: DiskDone): void {
    this.finish(done, () => {
      this.discards++;
      this.bytes.fill(0, offset, offset + length);
    });
  }

  writeZeroes(offset: number, length: number, done: DiskDone): void {
    this.finish(done, () => this.bytes.fill(0, offset, offset + length));
  }
}
