/**
 * A qcow2 image (versions 2 and 3, QEMU's docs/interop/qcow2.txt) as a virtio-blk backend.
 *
 * Reads map each guest cluster through the L1 table (in memory) and an L2 table (cached) to a
 * data cluster, a compressed cluster (raw deflate, inflated on libuv's pool), the v3 "reads as
 * zeros" flag, or nothing: then the backing file (raw or qcow2, opened read-only) answers, and
 * zeros past its end.
 *
 * Writes are serialized through one queue. A write to a cluster this image owns (COPIED, or
 * refcount 1) goes in place; any other write allocates a new cluster at the end of the file
 * (copying the rest of the cluster from the backing file, the old compressed or shared cluster,
 * or zeros), then points the L2 entry at it and drops the old cluster's reference. Clusters are
 * only ever allocated at the end of the file, never reused: a read racing a write may still use
 * an old mapping and gets the old data, never another cluster's. Metadata is write-through (every
 * L1/L2/refcount change is written before the write completes) and ordered so that a crash can
 * only leak clusters: refcount first, then the data, then the L2 entry that points to it, then
 * the reference that is dropped. FLUSH is fdatasync; durability in between is not promised.
 *
 * WRITE_ZEROES and DISCARD on v3 images set the zero flag on whole clusters (an owned cluster
 * stays allocated as "preallocated zeros" and is reused by the next write; a compressed or
 * shared one is released); partial clusters get zeros written (WRITE_ZEROES) or are left alone
 * (DISCARD). On v2 images WRITE_ZEROES writes zeros and DISCARD does nothing.
 *
 * Not supported (refused at open with what to do): encryption, external data files, extended
 * L2 entries, zstd compression, refcounts other than 16 bits, writing to images with internal
 * snapshots (they open read-only fine).
 */
import { close, closeSync, fdatasync, fstatSync, openSync, readSync, readv, realpathSync, writeSync, writev } from 'node:fs';
import path from 'node:path';
import { inflateRaw } from 'node:zlib';
import { sliceBuffers, totalLength, type DiskBackend, type DiskDone } from '../../devices/virtio/blk/backend.js';
import { corrupt, createQcow2, hasQcow2Magic, probeImageSize, Qcow2Error, readQcow2Header, type Qcow2Header } from './qcow2-header.js';
import { RawFileBackend } from './raw.js';

export { Qcow2Error, createQcow2, probeImageSize, type CreateQcow2Options } from './qcow2-header.js';

/** Backing chains longer than this are refused (they are also how a loop would show). */
const MAX_BACKING_DEPTH = 16;
/** Bytes of L2 tables and of refcount blocks kept in memory, each (at least 16 of each). */
const CACHE_BYTES = 16 << 20;
/** Decompressed clusters kept (sequential small reads of one compressed cluster). */
const INFLATED_CACHE = 8;
/** iovecs in one readv/writev call (Linux's IOV_MAX is 1024). */
const MAX_IOVECS = 1024;
const TWO32 = 2 ** 32;

// Entry flags, in the high 32 bits of an L1/L2 entry.
const HI_COPIED = 0x80000000; // bit 63: refcount is exactly one
const HI_COMPRESSED = 0x40000000; // bit 62: compressed cluster
/** Bits 56-61 (L2, standard) / 56-62 (L1) are reserved. */
const HI_RESERVED_L2 = 0x3f000000;
const HI_RESERVED_L1 = 0x7f000000;
const HI_OFFSET = 0x00ffffff; // bits 32-55 of an offset
const LO_ZERO = 1; // bit 0 of a standard L2 entry (v3): reads as zeros
const LO_RESERVED = 0x1fe; // bits 1-8

/** Zeros to write from (never written into). */
const ZEROS = new Uint8Array(1 << 21);

export interface Qcow2OpenOptions {
  /** Open for reading only: the file is opened O_RDONLY and nothing is ever written. */
  readOnly?: boolean;
  /** Bytes of L2 tables, and of refcount blocks, kept in memory (default 16 MiB; at least 16 clusters). */
  cacheBytes?: number;
}

/** What a backing file is to us: something to read from, with a size, that can be closed. */
interface Backing {
  /** The resolved path. */
  file: string;
  backend: DiskBackend;
  size: number;
  close(): Promise<void>;
}

/** One guest cluster's mapping, as read from its L2 entry. */
const enum Kind {
  /** Not allocated here: the backing file, or zeros. */
  Unallocated,
  /** Reads as zeros (v3 zero flag); `host` may still be a preallocated cluster. */
  Zero,
  Data,
  Compressed,
}
interface Mapping {
  kind: Kind;
  /** Host offset of the data cluster (Data, Zero with preallocation), or of the compressed bytes. */
  host: number;
  /** Data / Zero: the COPIED bit. */
  copied: boolean;
  /** Compressed: bytes [host, end) hold the deflate stream. */
  end: number;
}
const UNALLOCATED: Mapping = { kind: Kind.Unallocated, host: 0, copied: false, end: 0 };

/** Positional read of all of `buffers` at `pos`; what lies past the end of the file reads as zeros. */
function preadFull(fd: number, buffers: readonly Uint8Array[], pos: number): Promise<void> {
  const total = totalLength(buffers);
  return new Promise((resolve, reject) => {
    let moved = 0;
    const step = (): void => {
      if (moved === total) return resolve();
      readv(fd, sliceBuffers(buffers, moved, total - moved).slice(0, MAX_IOVECS), pos + moved, (err, n) => {
        if (err) return reject(err);
        if (n === 0) {
          for (const b of sliceBuffers(buffers, moved, total - moved)) b.fill(0);
          return resolve();
        }
        moved += n;
        step();
      });
    };
    step();
  });
}

/** Positional write of all of `buffers` at `pos`. */
function pwriteFull(fd: number, buffers: readonly Uint8Array[], pos: number): Promise<void> {
  const total = totalLength(buffers);
  return new Promise((resolve, reject) => {
    let moved = 0;
    const step = (): void => {
      if (moved === total) return resolve();
      writev(fd, sliceBuffers(buffers, moved, total - moved).slice(0, MAX_IOVECS), pos + moved, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new Error(`write at ${pos + moved} made no progress`));
        moved += n;
        step();
      });
    };
    step();
  });
}

function inflate(data: Uint8Array, max: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => inflateRaw(data, { maxOutputLength: max }, (err, out) => (err ? reject(err) : resolve(out))));
}

function readEntry(table: Uint8Array, i: number): [hi: number, lo: number] {
  const dv = new DataView(table.buffer, table.byteOffset + i * 8, 8);
  return [dv.getUint32(0), dv.getUint32(4)];
}

function writeEntry(table: Uint8Array, i: number, hi: number, lo: number): void {
  const dv = new DataView(table.buffer, table.byteOffset + i * 8, 8);
  dv.setUint32(0, hi >>> 0);
  dv.setUint32(4, lo >>> 0);
}

/** A standard entry's offset field (bits 9-55). */
function entryOffset(hi: number, lo: number): number {
  return (hi & HI_OFFSET) * TWO32 + (lo - (lo & 0x1ff));
}

/**
 * Clusters of metadata (L2 tables, refcount blocks) by file offset, least recently used first.
 * Entries are never dirty (metadata is write-through), so dropping one is always safe, except
 * while a write is in progress: that write may hold a table it is about to change, and a copy
 * reloaded meanwhile would miss the change. The backend therefore trims only between writes.
 */
class ClusterCache {
  private readonly entries = new Map<number, Uint8Array>();
  private readonly loading = new Map<number, Promise<Uint8Array>>();

  constructor(
    private readonly max: number,
    private readonly load: (offset: number) => Promise<Uint8Array>,
  ) {}

  get(offset: number): Promise<Uint8Array> {
    const hit = this.entries.get(offset);
    if (hit) {
      this.entries.delete(offset);
      this.entries.set(offset, hit);
      return Promise.resolve(hit);
    }
    let p = this.loading.get(offset);
    if (!p) {
      p = this.load(offset).then(
        (t) => {
          this.loading.delete(offset);
          this.entries.set(offset, t);
          return t;
        },
        (e: unknown) => {
          this.loading.delete(offset);
          throw e;
        },
      );
      this.loading.set(offset, p);
    }
    return p;
  }

  put(offset: number, table: Uint8Array): void {
    this.entries.set(offset, table);
  }

  get size(): number {
    return this.entries.size;
  }

  trim(): void {
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.max) break;
      this.entries.delete(key);
    }
  }
}

export class Qcow2Backend implements DiskBackend {
  readonly size: number;
  readonly clusterSize: number;
  private readonly clusterBits: number;
  private readonly l2Entries: number;
  /** Refcount block entries (16-bit refcounts). */
  private readonly rbEntries: number;
  private readonly l2Cache: ClusterCache;
  private readonly rbCache: ClusterCache;
  private readonly inflated = new Map<number, Uint8Array>();
  /** End of the allocated file, cluster-aligned: new clusters go here. */
  private fileEnd: number;
  /** Refcount table (writable images only): raw entries. */
  private refcountTable: Uint8Array;
  private refcountTableOffset: number;

  /** Writes, write-zeroes and discards run one at a time, in order, through this chain. */
  private queue: Promise<void> = Promise.resolve();
  private writing = false;
  /** A write that failed part-way leaves memory and file unsure: no more writes after it. */
  private broken: Error | undefined;
  private pending = 0;
  private drained: (() => void) | undefined;
  private closed = false;

  reads = 0;
  writes = 0;
  flushes = 0;

  constructor(
    private readonly fd: number,
    /** For messages. */
    readonly path: string,
    readonly readOnly: boolean,
    private readonly header: Qcow2Header,
    fileSize: number,
    /** The active L1 table, raw entries. */
    private readonly l1: Uint8Array,
    refcountTable: Uint8Array | undefined,
    private readonly backing: Backing | undefined,
    cacheBytes = CACHE_BYTES,
  ) {
    this.size = Math.ceil(header.size / 512) * 512;
    this.clusterBits = header.clusterBits;
    this.clusterSize = header.clusterSize;
    this.l2Entries = this.clusterSize / 8;
    this.rbEntries = this.clusterSize / 2;
    this.fileEnd = Math.ceil(fileSize / this.clusterSize) * this.clusterSize;
    this.refcountTable = refcountTable ?? new Uint8Array(0);
    this.refcountTableOffset = header.refcountTableOffset;
    const tables = Math.max(16, Math.floor(cacheBytes / this.clusterSize));
    this.l2Cache = new ClusterCache(tables, (off) => this.loadCluster(off));
    this.rbCache = new ClusterCache(tables, (off) => this.loadCluster(off));
  }

  /** The image's qcow2 version (2 or 3). */
  get version(): 2 | 3 {
    return this.header.version;
  }

  /** The backing file's name as stored in the image, if any. */
  get backingFile(): string | undefined {
    return this.header.backingFile;
  }

  /** The resolved paths of the backing files under this image, nearest first (all opened read-only). */
  get backingChain(): string[] {
    if (!this.backing) return [];
    const below = this.backing.backend instanceof Qcow2Backend ? this.backing.backend.backingChain : [];
    return [this.backing.file, ...below];
  }

  /** L2 tables held in memory (tests). */
  get cachedL2Tables(): number {
    return this.l2Cache.size;
  }

  // ---- DiskBackend ----

  read(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.reads++;
    if (!this.checkRange(offset, totalLength(buffers), done)) return;
    this.start();
    this.readRange(offset, buffers).then(
      () => this.finish(done),
      (e: unknown) => this.finish(done, this.ioError(e, 'read')),
    );
  }

  write(offset: number, buffers: readonly Uint8Array[], done: DiskDone): void {
    this.writes++;
    if (!this.checkRange(offset, totalLength(buffers), done)) return;
    this.enqueue(() => this.writeRange(offset, buffers), done);
  }

  flush(done: DiskDone): void {
    this.flushes++;
    if (this.readOnly) return done();
    this.start();
    // Completed writes are all in the file already (metadata is write-through).
    fdatasync(this.fd, (err) => this.finish(done, err ? this.ioError(err, 'flush') : undefined));
  }

  discard(offset: number, length: number, done: DiskDone): void {
    if (!this.checkRange(offset, length, done)) return;
    // A hint: nothing to do on v2 (no zero flag) or on a disk the guest may not change.
    if (this.header.version === 2 || this.readOnly) return done();
    this.enqueue(() => this.zeroRange(offset, length, true), done);
  }

  writeZeroes(offset: number, length: number, done: DiskDone): void {
    if (!this.checkRange(offset, length, done)) return;
    this.enqueue(() => this.zeroRange(offset, length, false), done);
  }

  /** Wait for every operation in flight, then close the file and the backing chain. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pending > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await new Promise<void>((resolve) => close(this.fd, () => resolve()));
    await this.backing?.close();
  }

  // ---- bookkeeping ----

  private checkRange(offset: number, length: number, done: DiskDone): boolean {
    if (this.closed) {
      done(new Qcow2Error(`${this.path} is closed`));
      return false;
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      done(new Qcow2Error(`${this.path}: request at ${offset} (${length} bytes) is outside the ${this.size}-byte disk`));
      return false;
    }
    return true;
  }

  private start(): void {
    this.pending++;
  }

  private finish(done: DiskDone, err?: Error): void {
    this.pending--;
    if (this.pending === 0 && this.drained) this.drained();
    done(err);
  }

  private ioError(e: unknown, doing: string): Error {
    if (e instanceof Qcow2Error) return e;
    return new Qcow2Error(`${this.path}: ${doing} failed: ${(e as Error).message}`, { cause: e });
  }

  private enqueue(op: () => Promise<void>, done: DiskDone): void {
    if (this.readOnly) return done(new Qcow2Error(`${this.path} is open read-only`));
    this.start();
    this.queue = this.queue
      .then(async () => {
        if (this.broken) throw new Qcow2Error(`${this.path}: an earlier write failed (${this.broken.message}); no more writes until it is reopened`);
        this.writing = true;
        try {
          await op();
        } catch (e) {
          this.broken = this.ioError(e, 'write');
          throw this.broken;
        } finally {
          this.writing = false;
          this.trimCaches();
        }
      })
      .then(
        () => this.finish(done),
        (e: unknown) => this.finish(done, this.ioError(e, 'write')),
      );
  }

  private trimCaches(): void {
    if (this.writing) return;
    this.l2Cache.trim();
    this.rbCache.trim();
  }

  private bad(what: string): Qcow2Error {
    return corrupt(this.path, what);
  }

  /** Read one metadata cluster, checked to be a whole cluster inside the file, past the header. */
  private async loadCluster(offset: number): Promise<Uint8Array> {
    const t = new Uint8Array(this.clusterSize);
    await preadFull(this.fd, [t], offset);
    return t;
  }

  private checkMetadataOffset(offset: number, what: string): void {
    if (offset % this.clusterSize !== 0 || offset < this.clusterSize || offset + this.clusterSize > this.fileEnd) {
      throw this.bad(`${what} at offset ${offset} is not a cluster inside the file`);
    }
  }

  // ---- mapping ----

  /** The L2 table for L1 entry `l1i` (undefined: none), read-only use. */
  private async l2Table(l1i: number): Promise<Uint8Array | undefined> {
    const [hi, lo] = readEntry(this.l1, l1i);
    if ((hi & HI_RESERVED_L1) !== 0 || (lo & 0x1ff) !== 0) throw this.bad(`L1 entry ${l1i} has reserved bits set`);
    const off = entryOffset(hi, lo);
    if (off === 0) return undefined;
    this.checkMetadataOffset(off, `the L2 table of L1 entry ${l1i}`);
    const t = await this.l2Cache.get(off);
    this.trimCaches();
    return t;
  }

  /** Decode L2 entry `i` of `table` (for guest cluster `gc`, in messages). */
  private decode(table: Uint8Array, i: number, gc: number): Mapping {
    const [hi, lo] = readEntry(table, i);
    if (hi === 0 && lo === 0) return UNALLOCATED;
    if (hi & HI_COMPRESSED) {
      // Compressed descriptor: offset in bits 0..x-1, additional 512-byte sectors in x..61.
      const x = 62 - (this.clusterBits - 8);
      const hiOffsetBits = x - 32;
      const host = (hi & ((1 << hiOffsetBits) - 1)) * TWO32 + lo;
      const sectors = ((hi & 0x3fffffff) >>> hiOffsetBits) + 1;
      const end = host - (host % 512) + sectors * 512;
      if (host < this.clusterSize || host >= this.fileEnd) throw this.bad(`compressed guest cluster ${gc} points outside the file (offset ${host})`);
      return { kind: Kind.Compressed, host, copied: false, end: Math.min(end, this.fileEnd) };
    }
    if ((hi & HI_RESERVED_L2) !== 0 || (lo & LO_RESERVED) !== 0) throw this.bad(`the L2 entry of guest cluster ${gc} has reserved bits set`);
    const host = entryOffset(hi, lo);
    const copied = (hi & HI_COPIED) !== 0;
    if (host !== 0 && (host % this.clusterSize !== 0 || host < this.clusterSize || host >= this.fileEnd)) {
      throw this.bad(`guest cluster ${gc} points outside the file or into its header (offset ${host})`);
    }
    if (lo & LO_ZERO) {
      if (this.header.version === 2) throw this.bad(`guest cluster ${gc} has the zero flag, which version 2 images do not have`);
      return { kind: Kind.Zero, host, copied, end: 0 };
    }
    if (host === 0) {
      if (copied) throw this.bad(`guest cluster ${gc} is marked allocated at offset 0`);
      return UNALLOCATED;
    }
    return { kind: Kind.Data, host, copied, end: 0 };
  }

  private async lookup(gc: number): Promise<Mapping> {
    const table = await this.l2Table(Math.floor(gc / this.l2Entries));
    return table ? this.decode(table, gc % this.l2Entries, gc) : UNALLOCATED;
  }

  // ---- reading ----

  private async readRange(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    const total = totalLength(buffers);
    const cs = this.clusterSize;
    const jobs: Promise<void>[] = [];
    // A run of guest bytes that lies contiguously in the file: one readv.
    let run: { host: number; pos: number; len: number } | undefined;
    const flushRun = (): void => {
      if (run) jobs.push(preadFull(this.fd, sliceBuffers(buffers, run.pos, run.len), run.host));
      run = undefined;
    };
    try {
      for (let pos = 0; pos < total; ) {
        const g = offset + pos;
        const inOff = g % cs;
        const n = Math.min(cs - inOff, total - pos);
        const m = await this.lookup(Math.floor(g / cs));
        if (m.kind === Kind.Data) {
          const host = m.host + inOff;
          if (run && run.host + run.len === host) run.len += n;
          else {
            flushRun();
            run = { host, pos, len: n };
          }
        } else {
          flushRun();
          const bufs = sliceBuffers(buffers, pos, n);
          if (m.kind === Kind.Unallocated) jobs.push(this.readBacking(g, bufs, n));
          else if (m.kind === Kind.Zero) for (const b of bufs) b.fill(0);
          else jobs.push(this.readCompressed(m, Math.floor(g / cs)).then((c) => copyInto(bufs, c.subarray(inOff, inOff + n))));
        }
        pos += n;
      }
      flushRun();
    } finally {
      // Never complete (and hand the guest's buffers back) while a read still fills them.
      const results = await Promise.allSettled(jobs);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    }
  }

  /** Guest bytes [g, g+n) that this image does not hold: the backing file's, zeros past its end. */
  private async readBacking(g: number, bufs: readonly Uint8Array[], n: number): Promise<void> {
    const fromBacking = this.backing ? Math.max(0, Math.min(n, this.backing.size - g)) : 0;
    for (const b of sliceBuffers(bufs, fromBacking, n - fromBacking)) b.fill(0);
    if (fromBacking === 0) return;
    const backing = this.backing!;
    await new Promise<void>((resolve, reject) =>
      backing.backend.read(g, sliceBuffers(bufs, 0, fromBacking), (e) => (e ? reject(e) : resolve())),
    );
  }

  private async readCompressed(m: Mapping, gc: number): Promise<Uint8Array> {
    const hit = this.inflated.get(m.host);
    if (hit) return hit;
    const packed = new Uint8Array(m.end - m.host);
    await preadFull(this.fd, [packed], m.host);
    let out: Uint8Array;
    try {
      out = await inflate(packed, this.clusterSize);
    } catch (e) {
      throw new Qcow2Error(`${this.path}: compressed guest cluster ${gc} (at offset ${m.host}) does not inflate: ${(e as Error).message}. Check the image with qemu-img check ${this.path}`, { cause: e });
    }
    if (out.length !== this.clusterSize) throw this.bad(`compressed guest cluster ${gc} inflates to ${out.length} bytes, not one ${this.clusterSize}-byte cluster`);
    if (this.inflated.size >= INFLATED_CACHE) this.inflated.delete(this.inflated.keys().next().value!);
    this.inflated.set(m.host, out);
    return out;
  }

  // ---- refcounts (writable images) ----

  private get refcountTableEntries(): number {
    return this.refcountTable.length / 8;
  }

  /** The refcount block covering refcount table entry `ti` (0: none). */
  private refcountBlockOffset(ti: number): number {
    if (ti >= this.refcountTableEntries) return 0;
    const [hi, lo] = readEntry(this.refcountTable, ti);
    if ((lo & 0x1ff) !== 0 || hi >= 0x01000000) throw this.bad(`refcount table entry ${ti} is malformed`);
    const off = entryOffset(hi, lo);
    if (off !== 0) this.checkMetadataOffset(off, `refcount block ${ti}`);
    return off;
  }

  private async getRefcount(cluster: number): Promise<number> {
    const off = this.refcountBlockOffset(Math.floor(cluster / this.rbEntries));
    if (off === 0) return 0;
    const block = await this.rbCache.get(off);
    return new DataView(block.buffer).getUint16((cluster % this.rbEntries) * 2);
  }

  private async setRefcount(cluster: number, value: number): Promise<void> {
    const cs = this.clusterSize;
    const ti = Math.floor(cluster / this.rbEntries);
    if (ti >= this.refcountTableEntries) await this.growRefcountTable(ti + 1);
    let off = this.refcountBlockOffset(ti);
    if (off === 0) {
      // A new refcount block at the end of the file, counting itself when it lies in its own range.
      const self = this.fileEnd / cs;
      off = this.fileEnd;
      this.fileEnd += cs;
      const block = new Uint8Array(cs);
      const selfCovered = Math.floor(self / this.rbEntries) === ti;
      if (selfCovered) new DataView(block.buffer).setUint16((self % this.rbEntries) * 2, 1);
      await pwriteFull(this.fd, [block], off);
      this.rbCache.put(off, block);
      writeEntry(this.refcountTable, ti, Math.floor(off / TWO32), off % TWO32);
      await pwriteFull(this.fd, [this.refcountTable.slice(ti * 8, ti * 8 + 8)], this.refcountTableOffset + ti * 8);
      if (!selfCovered) await this.setRefcount(self, 1);
    }
    const block = await this.rbCache.get(off);
    const at = (cluster % this.rbEntries) * 2;
    new DataView(block.buffer).setUint16(at, value);
    await pwriteFull(this.fd, [block.slice(at, at + 2)], off + at);
  }

  private async changeRefcount(cluster: number, delta: number): Promise<void> {
    const v = (await this.getRefcount(cluster)) + delta;
    if (v < 0 || v > 0xffff) throw this.bad(`the refcount of cluster ${cluster} would become ${v}`);
    await this.setRefcount(cluster, v);
  }

  /** A new cluster at the end of the file, with refcount 1 (its contents are the caller's). */
  private async allocCluster(): Promise<number> {
    for (;;) {
      const cluster = this.fileEnd / this.clusterSize;
      this.fileEnd += this.clusterSize;
      // A cluster past the end of the file that is counted as used: skip it (a damaged image).
      if ((await this.getRefcount(cluster)) !== 0) continue;
      await this.setRefcount(cluster, 1);
      return cluster * this.clusterSize;
    }
  }

  /**
   * Move the refcount table to a larger one at the end of the file, big enough to also cover
   * itself and the refcount blocks it may need; then switch the header to it and free the old.
   */
  private async growRefcountTable(minEntries: number): Promise<void> {
    const cs = this.clusterSize;
    const perCluster = cs / 8;
    const oldOffset = this.refcountTableOffset;
    const oldClusters = this.refcountTable.length / cs;
    let clusters = Math.max(Math.ceil(minEntries / perCluster), oldClusters * 2);
    for (;;) {
      const endAfter = this.fileEnd + (clusters + Math.ceil(clusters / this.rbEntries) + 2) * cs;
      if (clusters * perCluster * this.rbEntries * cs >= endAfter) break;
      clusters++;
    }
    if (clusters * cs > 8 << 20) throw new Qcow2Error(`${this.path} has grown past what a qcow2 refcount table of 8 MiB covers: use a larger cluster size`);
    const table = new Uint8Array(clusters * cs);
    table.set(this.refcountTable);
    const offset = this.fileEnd;
    this.fileEnd += clusters * cs;
    this.refcountTable = table;
    this.refcountTableOffset = offset;
    for (let c = 0; c < clusters; c++) await this.setRefcount(offset / cs + c, 1);
    await pwriteFull(this.fd, [table], offset);
    const hdr = new Uint8Array(12);
    const dv = new DataView(hdr.buffer);
    dv.setBigUint64(0, BigInt(offset)); // refcount_table_offset
    dv.setUint32(8, clusters); // refcount_table_clusters
    await pwriteFull(this.fd, [hdr], 48);
    for (let c = 0; c < oldClusters; c++) await this.changeRefcount(oldOffset / cs + c, -1);
  }

  /** Drop this image's reference to what `m` points to (a data or compressed cluster). */
  private async release(m: Mapping): Promise<void> {
    const cs = this.clusterSize;
    if (m.kind === Kind.Compressed) {
      for (let c = Math.floor(m.host / cs); c <= Math.floor((m.end - 1) / cs); c++) await this.changeRefcount(c, -1);
    } else if (m.host !== 0) {
      await this.changeRefcount(m.host / cs, -1);
    }
  }

  /** Whether this image alone references the standard cluster of `m` (so it may be written in place). */
  private async owns(m: Mapping): Promise<boolean> {
    return m.copied || (await this.getRefcount(m.host / this.clusterSize)) === 1;
  }

  // ---- writing ----

  /** The L2 table for L1 entry `l1i`, allocated if missing; its offset and contents. */
  private async l2ForWrite(l1i: number): Promise<{ offset: number; table: Uint8Array }> {
    const [hi, lo] = readEntry(this.l1, l1i);
    if ((hi & HI_RESERVED_L1) !== 0 || (lo & 0x1ff) !== 0) throw this.bad(`L1 entry ${l1i} has reserved bits set`);
    const offset = entryOffset(hi, lo);
    if (offset === 0) {
      const fresh = await this.allocCluster();
      const table = new Uint8Array(this.clusterSize);
      await pwriteFull(this.fd, [table], fresh);
      this.l2Cache.put(fresh, table);
      await this.setL1(l1i, fresh);
      return { offset: fresh, table };
    }
    this.checkMetadataOffset(offset, `the L2 table of L1 entry ${l1i}`);
    if (!(hi & HI_COPIED)) {
      const rc = await this.getRefcount(offset / this.clusterSize);
      if (rc !== 1) throw new Qcow2Error(`${this.path}: L2 table ${l1i} is shared (refcount ${rc}): writing to images with internal snapshots is not supported; use ,ro or ,snapshot, or delete the snapshots with qemu-img snapshot -d`);
      await this.setL1(l1i, offset);
    }
    return { offset, table: await this.l2Cache.get(offset) };
  }

  private async setL1(l1i: number, l2Offset: number): Promise<void> {
    writeEntry(this.l1, l1i, Math.floor(l2Offset / TWO32) | HI_COPIED, l2Offset % TWO32);
    await pwriteFull(this.fd, [this.l1.slice(l1i * 8, l1i * 8 + 8)], this.header.l1Offset + l1i * 8);
  }

  private async setL2(l2: { offset: number; table: Uint8Array }, i: number, host: number, flags: { copied: boolean; zero: boolean }): Promise<void> {
    writeEntry(l2.table, i, Math.floor(host / TWO32) | (flags.copied ? HI_COPIED : 0), (host % TWO32) | (flags.zero ? LO_ZERO : 0));
    await pwriteFull(this.fd, [l2.table.slice(i * 8, i * 8 + 8)], l2.offset + i * 8);
  }

  private async writeRange(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    const total = totalLength(buffers);
    const cs = this.clusterSize;
    for (let pos = 0; pos < total; ) {
      const g = offset + pos;
      const n = Math.min(cs - (g % cs), total - pos);
      await this.writeCluster(g, n, sliceBuffers(buffers, pos, n));
      pos += n;
    }
  }

  /** Write `data` (n bytes) at guest offset g, inside one cluster. */
  private async writeCluster(g: number, n: number, data: readonly Uint8Array[]): Promise<void> {
    const cs = this.clusterSize;
    const gc = Math.floor(g / cs);
    const inOff = g % cs;
    const l2 = await this.l2ForWrite(Math.floor(gc / this.l2Entries));
    const i = gc % this.l2Entries;
    const m = this.decode(l2.table, i, gc);

    if ((m.kind === Kind.Data || (m.kind === Kind.Zero && m.host !== 0)) && (await this.owns(m))) {
      if (m.kind === Kind.Data) {
        await pwriteFull(this.fd, data, m.host + inOff);
        if (!m.copied) await this.setL2(l2, i, m.host, { copied: true, zero: false });
      } else {
        // Preallocated zeros: fill the whole cluster, then clear the flag.
        await pwriteFull(this.fd, n === cs ? data : [...withZeros(cs, inOff, data)], m.host);
        await this.setL2(l2, i, m.host, { copied: true, zero: false });
      }
      return;
    }

    // A new cluster: the old contents around the write, then the write.
    let payload: readonly Uint8Array[] = data;
    if (n !== cs) {
      const buf = new Uint8Array(cs);
      if (m.kind === Kind.Unallocated) await this.readBacking(g - inOff, [buf], cs);
      else if (m.kind === Kind.Data) await preadFull(this.fd, [buf], m.host);
      else if (m.kind === Kind.Compressed) buf.set(await this.readCompressed(m, gc));
      copyFrom(buf, inOff, data);
      payload = [buf];
    }
    const host = await this.allocCluster();
    await pwriteFull(this.fd, payload, host);
    await this.setL2(l2, i, host, { copied: true, zero: false });
    await this.release(m);
  }

  private async zeroRange(offset: number, length: number, discard: boolean): Promise<void> {
    const cs = this.clusterSize;
    for (let pos = 0; pos < length; ) {
      const g = offset + pos;
      const n = Math.min(cs - (g % cs), length - pos);
      if (n === cs && this.header.version === 3) await this.zeroCluster(g / cs);
      else if (!discard && !(await this.readsAsZeros(g))) await this.writeCluster(g, n, [ZEROS.subarray(0, n)]);
      pos += n;
    }
  }

  /** Whether the cluster holding guest byte g reads as zeros without looking at any data. */
  private async readsAsZeros(g: number): Promise<boolean> {
    const m = await this.lookup(Math.floor(g / this.clusterSize));
    if (m.kind === Kind.Zero) return true;
    return m.kind === Kind.Unallocated && (!this.backing || this.backing.size <= g);
  }

  /** Set the v3 zero flag on guest cluster gc. */
  private async zeroCluster(gc: number): Promise<void> {
    const g = gc * this.clusterSize;
    if (await this.readsAsZeros(g)) return;
    const l2 = await this.l2ForWrite(Math.floor(gc / this.l2Entries));
    const i = gc % this.l2Entries;
    const m = this.decode(l2.table, i, gc);
    if ((m.kind === Kind.Data || m.kind === Kind.Zero) && m.host !== 0 && (await this.owns(m))) {
      await this.setL2(l2, i, m.host, { copied: true, zero: true }); // stays allocated, for the next write
      return;
    }
    await this.setL2(l2, i, 0, { copied: false, zero: true });
    await this.release(m);
  }
}

/** Copy `src` into the concatenation of `dst`. */
function copyInto(dst: readonly Uint8Array[], src: Uint8Array): void {
  let at = 0;
  for (const b of dst) {
    b.set(src.subarray(at, at + b.length));
    at += b.length;
  }
}

/** Copy the concatenation of `data` into `buf` at `at`. */
function copyFrom(buf: Uint8Array, at: number, data: readonly Uint8Array[]): void {
  for (const b of data) {
    buf.set(b, at);
    at += b.length;
  }
}

/** A whole cluster: zeros, with `data` at `at`. */
function withZeros(cs: number, at: number, data: readonly Uint8Array[]): Uint8Array[] {
  const n = totalLength(data);
  return [ZEROS.subarray(0, at), ...data, ZEROS.subarray(0, cs - at - n)];
}

// ---- opening ----

function openError(e: unknown, image: string, writable: boolean): Qcow2Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new Qcow2Error(`qcow2 image ${image} not found`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new Qcow2Error(`qcow2 image ${image} is not ${writable ? 'writable' : 'readable'}: check its permissions${writable ? ', or open it read-only' : ''}`, { cause: e });
  }
  return new Qcow2Error(`cannot open qcow2 image ${image}: ${(e as Error).message}`, { cause: e });
}

/**
 * Open the qcow2 image at `file` (synchronously: header, L1 table, refcount table and the
 * backing chain are read now; all later I/O is asynchronous). Refuses anything malformed or
 * unsupported with a Qcow2Error naming the file.
 */
export function openQcow2(file: string, options: Qcow2OpenOptions = {}): Qcow2Backend {
  return openChain(file, options.readOnly ?? false, 0, new Set(), options.cacheBytes);
}

function openChain(file: string, readOnly: boolean, depth: number, seen: Set<string>, cacheBytes?: number): Qcow2Backend {
  let fd: number;
  try {
    fd = openSync(file, readOnly ? 'r' : 'r+');
  } catch (e) {
    throw openError(e, file, !readOnly);
  }
  let backing: Backing | undefined;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Qcow2Error(`qcow2 image ${file} is not a regular file`);
    seen.add(realpathSync(file));
    const header = readQcow2Header(fd, st.size, file);
    if (!readOnly && header.nbSnapshots > 0) {
      throw new Qcow2Error(`${file} has ${header.nbSnapshots} internal snapshot(s); typevisor writes only to qcow2 images without them: use ,ro or ,snapshot, or delete them with qemu-img snapshot -d NAME ${file}`);
    }
    const readTable = (offset: number, bytes: number): Uint8Array => {
      const t = new Uint8Array(bytes);
      for (let got = 0; got < bytes; ) {
        const n = readSync(fd, t, got, bytes - got, offset + got);
        if (n === 0) throw corrupt(file, `a table at offset ${offset} runs past the end of the file`);
        got += n;
      }
      return t;
    };
    const l1 = readTable(header.l1Offset, header.l1Size * 8);
    const refcountTable = readOnly ? undefined : readTable(header.refcountTableOffset, header.refcountTableClusters * header.clusterSize);
    if (header.backingFile !== undefined) backing = openBacking(file, header, depth, seen);
    const q = new Qcow2Backend(fd, file, readOnly, header, st.size, l1, refcountTable, backing, cacheBytes);
    if (!readOnly && header.autoclear !== 0n) {
      // Auto-clear features (bitmaps) describe data we do not keep up to date: clear them before writing.
      if (writeSync(fd, new Uint8Array(8), 0, 8, 88) !== 8) throw new Qcow2Error(`${file}: cannot clear its auto-clear feature bits`);
    }
    return q;
  } catch (e) {
    closeSync(fd);
    void backing?.close();
    if (e instanceof Qcow2Error) throw e;
    throw new Qcow2Error(`cannot open qcow2 image ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** Open the backing file named in `header` of `image`: read-only, raw or qcow2. */
function openBacking(image: string, header: Qcow2Header, depth: number, seen: Set<string>): Backing {
  const name = header.backingFile!;
  if (/^(json|nbd|nbd\+unix|http|https|ftp|ftps|ssh|iscsi|rbd|gluster|vxhs|nfs):/i.test(name)) {
    throw new Qcow2Error(`${image} has the backing file "${name}", a protocol typevisor does not open: use a local file (qemu-img rebase -u -b FILE ${image})`);
  }
  const file = path.isAbsolute(name) ? name : path.resolve(path.dirname(image), name);
  if (depth + 1 >= MAX_BACKING_DEPTH) throw new Qcow2Error(`${image}: the backing chain is longer than ${MAX_BACKING_DEPTH} images: flatten it with qemu-img convert`);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : `cannot be opened (${(e as Error).message})`;
    throw new Qcow2Error(`the backing file ${file} of ${image} ${why}: restore it, or point the image at it with qemu-img rebase -u -b FILE ${image}`, { cause: e });
  }
  let format = header.backingFormat;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Qcow2Error(`the backing file ${file} of ${image} is not a regular file`);
    if (seen.has(realpathSync(file))) throw new Qcow2Error(`${image}: the backing chain loops back to ${file}`);
    if (format === undefined) {
      const magic = new Uint8Array(4);
      readSync(fd, magic, 0, 4, 0);
      format = hasQcow2Magic(magic) ? 'qcow2' : 'raw';
    }
    if (format === 'raw') {
      const raw = new RawFileBackend(fd, st.size, true, file);
      return { file, backend: raw, size: st.size, close: () => raw.close() };
    }
    if (format !== 'qcow2') {
      throw new Qcow2Error(`the backing file ${file} of ${image} is in format "${format}"; only raw and qcow2 backing files are supported: convert it with qemu-img convert -O qcow2`);
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  closeSync(fd);
  const q = openChain(file, true, depth + 1, seen);
  return { file, backend: q, size: q.size, close: () => q.close() };
}

/**
 * Make a new, empty qcow2 image at `file` (which must not exist) over `backingFile` (stored as
 * given: absolute, or relative to the new image's directory), of the backing file's size.
 */
export function createQcow2Overlay(file: string, backingFile: string, backingFormat?: 'raw' | 'qcow2'): void {
  const resolved = path.isAbsolute(backingFile) ? backingFile : path.resolve(path.dirname(file), backingFile);
  let probed: { format: 'raw' | 'qcow2'; size: number };
  try {
    probed = probeImageSize(resolved);
  } catch (e) {
    if (e instanceof Qcow2Error) throw e;
    throw new Qcow2Error(`cannot make an overlay over ${resolved}: ${(e as Error).message}`, { cause: e });
  }
  createQcow2(file, { size: probed.size, backingFile, backingFormat: backingFormat ?? probed.format });
}

/** Whether the file at `file` starts with the qcow2 magic (for format detection). */
export function isQcow2File(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const magic = new Uint8Array(4);
    return readSync(fd, magic, 0, 4, 0) === 4 && hasQcow2Magic(magic);
  } finally {
    closeSync(fd);
  }
}
