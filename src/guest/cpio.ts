/**
 * A writer for cpio "newc" archives (magic 070701), the format the Linux kernel unpacks into its
 * rootfs as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
 *
 * Each entry is a 110-byte ASCII header (the magic and thirteen 8-digit hex fields), the path name
 * with its NUL, padding to a multiple of 4, then the data (file bytes or symlink target, no NUL),
 * padded to a multiple of 4. The archive ends with an entry named `TRAILER!!!`.
 *
 * Pure TypeScript with no `node:*` imports, so it can move into core later. Paths are stored
 * relative (`bin/busybox`, never `/bin/busybox`); a leading `/` is accepted and stripped. The
 * kernel does not create missing parent directories, so the writer insists that every entry's
 * parent was added first.
 */

export class CpioError extends Error {
  override name = 'CpioError';
}

/** File type bits of `st_mode` (S_IFMT and friends). */
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const MAGIC = '070701';
const HEADER_SIZE = 110;
const TRAILER = 'TRAILER!!!';
const U32_MAX = 0xffff_ffff;
/** Longest path name we write (Linux PATH_MAX, including the NUL). */
const NAME_MAX_BYTES = 4096;

export interface CpioMeta {
  /** Permission bits (and setuid/setgid/sticky), 0..0o7777. Type bits are set by the writer. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Modification time in seconds since the epoch. Defaults to the writer's `mtime`. */
  mtime?: number;
}

export type CpioEntry =
  | ({ kind: 'dir'; path: string } & CpioMeta)
  | ({ kind: 'file'; path: string; data: Uint8Array } & CpioMeta)
  | ({ kind: 'symlink'; path: string; target: string } & CpioMeta)
  | ({ kind: 'chardev'; path: string; major: number; minor: number } & CpioMeta);

export interface CpioWriterOptions {
  /** Default mtime for entries that give none (seconds). 0 keeps archives reproducible. */
  mtime?: number;
}

const encoder = new TextEncoder();

function checkU32(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new CpioError(`Cannot write cpio entry: ${what} ${value} is not a 32-bit unsigned integer`);
  }
  return value;
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n & 3)) & 3;
}

/** Normalises and validates an archive path; returns it without a leading `/`. */
function normalisePath(path: string): string {
  const p = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '' || p === '.') {
    throw new CpioError(`Cannot add cpio entry "${path}": the archive root needs no entry; give a path below it`);
  }
  if (p.includes('\0')) throw new CpioError(`Cannot add cpio entry "${path}": path contains a NUL byte`);
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new CpioError(`Cannot add cpio entry "${path}": empty, "." or ".." path component; use a clean relative path`);
    }
  }
  if (p === TRAILER) throw new CpioError(`Cannot add cpio entry "${path}": the name is reserved for the trailer`);
  return p;
}

/** Builds a newc archive in memory. Add entries parent-first, then call `finish()` once. */
export class CpioWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  private nextIno = 1;
  private finished = false;
  private readonly defaultMtime: number;
  /** Every path added so far, with whether it is a directory. */
  private readonly paths = new Map<string, boolean>();

  constructor(options: CpioWriterOptions = {}) {
    this.defaultMtime = checkU32('mtime', options.mtime ?? 0);
  }

  addDirectory(path: string, meta: CpioMeta = {}): this {
    return this.add({ kind: 'dir', path, ...meta });
  }

  addFile(path: string, data: Uint8Array, meta: CpioMeta = {}): this {
    return this.add({ kind: 'file', path, data, ...meta });
  }

  addSymlink(path: string, target: string, meta: CpioMeta = {}): this {
    return this.add({ kind: 'symlink', path, target, ...meta });
  }

  addCharDevice(path: string, major: number, minor: number, meta: CpioMeta = {}): this {
    return this.add({ kind: 'chardev', path, major, minor, ...meta });
  }

  /** True if `path` was already added (any kind). */
  has(path: string): boolean {
    return this.paths.has(path.replace(/^\/+/, '').replace(/\/+$/, ''));
  }

  add(entry: CpioEntry): this {
    if (this.finished) throw new CpioError('Cannot add cpio entry: the archive is already finished; start a new CpioWriter');
    const name = normalisePath(entry.path);
    if (this.paths.has(name)) throw new CpioError(`Cannot add cpio entry "${name}": the path was already added`);
    const slash = name.lastIndexOf('/');
    if (slash >= 0) {
      const parent = name.slice(0, slash);
      if (this.paths.get(parent) !== true) {
        throw new CpioError(`Cannot add cpio entry "${name}": parent directory "${parent}" was not added first (the kernel does not create it)`);
      }
    }
    const perm = entry.mode ?? (entry.kind === 'dir' ? 0o755 : entry.kind === 'symlink' ? 0o777 : 0o644);
    if (!Number.isInteger(perm) || perm < 0 || perm > 0o7777) {
      throw new CpioError(`Cannot add cpio entry "${name}": mode 0o${perm.toString(8)} has bits outside 0o7777; give permission bits only`);
    }
    let type: number;
    let data: Uint8Array;
    let nlink = 1;
    let rdevMajor = 0;
    let rdevMinor = 0;
    switch (entry.kind) {
      case 'dir':
        type = S_IFDIR;
        data = new Uint8Array(0);
        nlink = 2;
        break;
      case 'file':
        type = S_IFREG;
        data = entry.data;
        break;
      case 'symlink':
        if (entry.target === '' || entry.target.includes('\0')) {
          throw new CpioError(`Cannot add cpio symlink "${name}": target must be non-empty and contain no NUL`);
        }
        type = S_IFLNK;
        data = encoder.encode(entry.target);
        break;
      case 'chardev':
        type = S_IFCHR;
        data = new Uint8Array(0);
        rdevMajor = checkU32('device major', entry.major);
        rdevMinor = checkU32('device minor', entry.minor);
        break;
    }
    checkU32('file size', data.length);
    this.paths.set(name, entry.kind === 'dir');
    this.emit(name, {
      ino: this.nextIno++,
      mode: (type & S_IFMT) | perm,
      uid: checkU32('uid', entry.uid ?? 0),
      gid: checkU32('gid', entry.gid ?? 0),
      nlink,
      mtime: checkU32('mtime', entry.mtime ?? this.defaultMtime),
      rdevMajor,
      rdevMinor,
    }, data);
    return this;
  }

  /** Appends the trailer and returns the whole archive. The writer cannot be used afterwards. */
  finish(): Uint8Array {
    if (this.finished) throw new CpioError('Cannot finish cpio archive twice; start a new CpioWriter');
    this.emit(TRAILER, { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, rdevMajor: 0, rdevMinor: 0 }, new Uint8Array(0));
    this.finished = true;
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.chunks.length = 0;
    return out;
  }

  private emit(
    name: string,
    h: { ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number; rdevMajor: number; rdevMinor: number },
    data: Uint8Array,
  ): void {
    const nameBytes = encoder.encode(name);
    const nameSize = nameBytes.length + 1; // with the NUL
    if (nameSize > NAME_MAX_BYTES) throw new CpioError(`Cannot add cpio entry "${name.slice(0, 64)}...": path longer than ${NAME_MAX_BYTES - 1} bytes`);
    const fields = [h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, data.length, 0, 0, h.rdevMajor, h.rdevMinor, nameSize, 0];
    const headerText = MAGIC + fields.map(hex8).join('');
    const headLen = HEADER_SIZE + nameSize;
    const head = new Uint8Array(headLen + pad4(headLen));
    head.set(encoder.encode(headerText), 0);
    head.set(nameBytes, HEADER_SIZE);
    this.push(head);
    if (data.length > 0) {
      this.push(data);
      const pad = pad4(data.length);
      if (pad) this.push(new Uint8Array(pad));
    }
  }

  private push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
  }
}

/** Writes `entries` (parents first) into one newc archive. */
export function writeCpio(entries: Iterable<CpioEntry>, options: CpioWriterOptions = {}): Uint8Array {
  const w = new CpioWriter(options);
  for (const e of entries) w.add(e);
  return w.finish();
}
