/**
 * A raw disk image as a virtio-blk backend: positional I/O on a file descriptor with Node's
 * asynchronous fs calls (`readv` / `writev` at a position, `fdatasync`), which run on libuv's
 * thread pool and read or write guest RAM in place (the views the device hands over). The vCPU's
 * thread only queues the call and later runs the completion.
 *
 * Why not a worker thread: guest RAM is a non-shared WebAssembly.Memory (the bt engine's arena),
 * which a worker cannot see without a copy, while libuv's pool writes into it directly; and Node
 * 20 has no io_uring path to gain from one (see docs/architecture.md for the measurement).
 *
 * DISCARD punches a hole in the file (fallocate through libc, off the vCPU's thread: punch.ts);
 * WRITE_ZEROES writes zeros.
 */
import { close, fdatasync, readv, writev } from 'node:fs';
import { sliceBuffers, totalLength, type DiskBackend, type DiskDone } from '../../devices/virtio/blk/backend.js';
import { punchHole } from './punch.js';

/** Zeros for WRITE_ZEROES, written as many iovecs of one shared buffer. */
const ZEROS = new Uint8Array(1 << 20);
/** iovecs in one writev call (Linux's IOV_MAX is 1024). */
const MAX_IOVECS = 1024;

export class RawDiskError extends Error {
  override name = 'RawDiskError';
}

export class RawFileBackend implements DiskBackend {
  /** Operations not completed yet (close waits for them). */
  private pending = 0;
  private drained: (() => void) | undefined;
  private closed = false;
  reads = 0;
  writes = 0;
  flushes = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
    readonly readOnly: boolean,
    /** For messages. */
    readonly path: string,
  ) {}

  read(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.reads++;
    this.transfer(false, offset, buffers, done);
  }

  write(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.writes++;
    if (this.readOnly) return done(new RawDiskError(`${this.path} is open read-only`));
    this.transfer(true, offset, buffers, done);
  }

  flush(done: DiskDone): void {
    this.flushes++;
    if (this.readOnly) return done();
    this.start();
    fdatasync(this.fd, (err) => this.finish(done, err ?? undefined));
  }

  /** Punches a hole: the range reads as zeros and its blocks go back to the host (see punch.ts). */
  discard(offset: number, length: number, done: DiskDone): void {
    if (this.readOnly) return done(new RawDiskError(`${this.path} is open read-only`));
    this.start();
    punchHole(this.fd, offset, length, () => this.finish(done, undefined));
  }

  writeZeroes(offset: number, length: number, done: DiskDone): void {
    if (this.readOnly) return done(new RawDiskError(`${this.path} is open read-only`));
    const iovecs: Uint8Array[] = [];
    for (let at = 0; at < length; at += ZEROS.length) iovecs.push(ZEROS.subarray(0, Math.min(ZEROS.length, length - at)));
    this.transfer(true, offset, iovecs, done);
  }

  /** Wait for every operation in flight, then close the file. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    const wait = this.pending === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.drained = resolve));
    return wait.then(() => new Promise<void>((resolve) => close(this.fd, () => resolve())));
  }

  private start(): void {
    if (this.closed) throw new RawDiskError(`${this.path} is closed`);
    this.pending++;
  }

  private finish(done: DiskDone, err: Error | undefined): void {
    this.pending--;
    if (this.pending === 0 && this.drained) this.drained();
    done(err);
  }

  /**
   * preadv / pwritev of all of `buffers` at `offset`, continuing after short transfers (a read
   * that meets the end of the file fills the rest with zeros: a file that shrank under us).
   */
  private transfer(isWrite: boolean, offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    const total = totalLength(buffers);
    this.start();
    let moved = 0;
    const step = (): void => {
      if (moved === total) return this.finish(done, undefined);
      const part = sliceBuffers(buffers, moved, total - moved).slice(0, MAX_IOVECS);
      const cb = (err: NodeJS.ErrnoException | null, n: number): void => {
        if (err) return this.finish(done, err);
        if (n === 0) {
          if (isWrite) return this.finish(done, new RawDiskError(`${this.path}: write at ${offset + moved} made no progress`));
          for (const b of sliceBuffers(buffers, moved, total - moved)) b.fill(0);
          return this.finish(done, undefined);
        }
        moved += n;
        step();
      };
      if (isWrite) writev(this.fd, part, offset + moved, cb);
      else readv(this.fd, part, offset + moved, cb);
    };
    step();
  }
}
