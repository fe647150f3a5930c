/**
 * `--disk` on the host: check each image (exists, regular file, readable, non-empty; a raw
 * image in whole 512-byte sectors, or qcow2), lock the ones the guest may write (and a qcow2's
 * backing files), open them, and build the backend the virtio-blk device gets (the image, or a
 * snapshot overlay over it). Every refusal is one line
 * naming the image and what to do; `closeDisks` waits for I/O in flight, closes the files and
 * removes the locks.
 */
import { mkdtempSync, openSync, closeSync, rmSync, statSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DiskBackend } from '../../devices/virtio/blk/backend.js';
import type { DiskConfig } from '../config.js';
import { checkNotLocked, lockImage, type ImageLock } from './lock.js';
import { SnapshotOverlay } from './overlay.js';
import { RawFileBackend } from './raw.js';
import { isQcow2File, openQcow2, Qcow2Error } from './qcow2.js';

/** What `closeDisks` waits for. */
interface Closable {
  close(): Promise<void>;
}

export class DiskError extends Error {
  override name = 'DiskError';
}

export interface OpenDisk {
  config: DiskConfig;
  backend: DiskBackend;
  /** Serial for GET_ID (/sys/block/vdX/serial in the guest). */
  serial?: string;
}

export interface OpenDisks {
  disks: OpenDisk[];
  /** Wait for I/O in flight, close every file, release the locks. */
  close(): Promise<void>;
}

function fileError(e: unknown, image: string, doing: string): DiskError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new DiskError(`disk image ${image} not found: check the path given to --disk`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new DiskError(`disk image ${image} is not ${doing}: check its permissions${doing === 'writable' ? ', or add ,ro or ,snapshot' : ''}`, { cause: e });
  if (code === 'EROFS') return new DiskError(`disk image ${image} is on a read-only file system: add ,ro or ,snapshot`, { cause: e });
  return new DiskError(`cannot open disk image ${image}: ${(e as Error).message}`, { cause: e });
}

/**
 * Check, lock and open every disk; on any refusal, what was opened is closed again. With
 * `lock: false` nothing is locked or checked for locks: for a second opening of the same images
 * in this process (the kvm engine's device thread), while the first one holds the locks.
 */
export async function openDisks(configs: readonly DiskConfig[], options: { lock?: boolean } = {}): Promise<OpenDisks> {
  const files: Closable[] = [];
  const locks: ImageLock[] = [];
  const disks: OpenDisk[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(files.map((f) => f.close()));
    for (const l of locks) l.release();
  };
  try {
    for (const c of configs) disks.push(openOne(c, files, options.lock === false ? undefined : locks));
  } catch (e) {
    await close();
    throw e;
  }
  return { disks, close };
}

function openOne(c: DiskConfig, files: Closable[], locks: ImageLock[] | undefined): OpenDisk {
  const image = c.path;
  let size: number;
  try {
    const st = statSync(image);
    if (st.isDirectory()) throw new DiskError(`disk image ${image} is a directory: pass the path of a raw disk image file`);
    if (!st.isFile()) throw new DiskError(`disk image ${image} is not a regular file: pass the path of a raw disk image file`);
    size = st.size;
  } catch (e) {
    if (e instanceof DiskError) throw e;
    throw fileError(e, image, 'readable');
  }
  if (size === 0) throw new DiskError(`disk image ${image} is empty: make one with, e.g., truncate -s 1G ${image} and mkfs.ext4 ${image}`);
  if (isQcow2File(image)) return openQcow2Disk(c, files, locks);
  if (size % 512 !== 0) throw new DiskError(`disk image ${image} is ${size} bytes, not a whole number of 512-byte sectors: it is not a raw disk image (or was cut short)`);

  const guestWrites = !c.readOnly && !c.snapshot;
  if (locks && guestWrites) locks.push(lockImage(image));
  else if (locks) checkNotLocked(image);
  let fd: number;
  try {
    fd = openSync(image, guestWrites ? 'r+' : 'r');
  } catch (e) {
    throw fileError(e, image, guestWrites ? 'writable' : 'readable');
  }
  const raw = new RawFileBackend(fd, size, !guestWrites, image);
  files.push(raw);
  let backend: DiskBackend = raw;
  if (c.snapshot) {
    const top = new RawFileBackend(scratchFile(size), size, false, `snapshot overlay of ${image}`);
    files.push(top);
    backend = new SnapshotOverlay(raw, top, c.readOnly);
  }
  return { config: c, backend, serial: c.serial };
}

/** A qcow2 image (its backing files are opened read-only and must not be in use for writing). */
function openQcow2Disk(c: DiskConfig, files: Closable[], locks: ImageLock[] | undefined): OpenDisk {
  const image = c.path;
  const guestWrites = !c.readOnly && !c.snapshot;
  if (locks && guestWrites) locks.push(lockImage(image));
  else if (locks) checkNotLocked(image);
  let q;
  try {
    q = openQcow2(image, { readOnly: !guestWrites });
  } catch (e) {
    if (e instanceof Qcow2Error) throw new DiskError(e.message, { cause: e });
    throw fileError(e, image, guestWrites ? 'writable' : 'readable');
  }
  files.push(q);
  for (const p of q.backingChain) checkNotLocked(p);
  let backend: DiskBackend = q;
  if (c.snapshot) {
    const top = new RawFileBackend(scratchFile(q.size), q.size, false, `snapshot overlay of ${image}`);
    files.push(top);
    backend = new SnapshotOverlay(q, top, c.readOnly);
  }
  return { config: c, backend, serial: c.serial };
}

/**
 * A sparse scratch file of `size` bytes that is already deleted: it lives as long as the
 * descriptor, so nothing is left behind however typevisor ends.
 */
function scratchFile(size: number): number {
  const dir = mkdtempSync(path.join(tmpdir(), 'typevisor-snapshot-'));
  try {
    const file = path.join(dir, 'overlay');
    const fd = openSync(file, 'w+', 0o600);
    try {
      ftruncateSync(fd, size);
    } catch (e) {
      closeSync(fd);
      throw new DiskError(`cannot make a ${size}-byte snapshot overlay in ${tmpdir()}: ${(e as Error).message}`, { cause: e });
    }
    return fd;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
