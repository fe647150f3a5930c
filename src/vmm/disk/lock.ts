/**
 * One writer per image: a lock file `<image>.typevisor-lock` holding the owner's PID, created
 * atomically (written aside, then hard-linked into place: link, like O_EXCL, fails if it
 * exists). Node has no flock/fcntl locks, and a lock file is also what another typevisor on
 * the same machine can read to say who holds the image. A lock whose PID is no
 * longer alive (typevisor was killed) is stale and taken over; the owner removes it when it
 * ends (explicitly, and from a process 'exit' handler as a safety net).
 *
 * Readers (`,ro` and `,snapshot`) take no lock but refuse an image a live typevisor is writing.
 * A writer does not see readers: starting a writer on an image a `,ro` VM reads is allowed.
 */
import { closeSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

export const LOCK_SUFFIX = '.typevisor-lock';

export class DiskLockError extends Error {
  override name = 'DiskLockError';
}

/** The PID in the lock file, if there is one held by a live process. */
function liveHolder(lockPath: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(lockPath, 'utf8');
  } catch {
    return undefined; // gone meanwhile
  }
  const pid = Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined; // EPERM: alive, not ours
  }
}

function inUse(path: string, pid: number): DiskLockError {
  const who = pid === process.pid ? 'this typevisor (is it given twice?)' : `another typevisor (pid ${pid})`;
  return new DiskLockError(`disk image ${path} is in use by ${who}: stop it first, or add ,snapshot or ,ro to this --disk`);
}

/** Refuse an image a live typevisor holds for writing (for readers). */
export function checkNotLocked(path: string): void {
  const pid = liveHolder(path + LOCK_SUFFIX);
  if (pid !== undefined) throw inUse(path, pid);
}

export interface ImageLock {
  readonly lockPath: string;
  release(): void;
}

/**
 * Create `lockPath` holding our PID, atomically: written under a private name first, then
 * hard-linked into place (link fails with EEXIST like O_EXCL), so no reader ever sees it empty.
 */
function createWithPid(lockPath: string): void {
  const tmp = `${lockPath}.${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, lockPath);
  } finally {
    unlinkSync(tmp);
  }
}

/** Take the write lock on `path`, or throw a DiskLockError naming who holds it. */
export function lockImage(path: string): ImageLock {
  const lockPath = path + LOCK_SUFFIX;
  for (let attempt = 0; ; attempt++) {
    try {
      createWithPid(lockPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        throw new DiskLockError(`cannot create the lock file ${lockPath} for disk image ${path}: ${(e as Error).message} (the image's directory must be writable, or add ,snapshot or ,ro)`, { cause: e });
      }
      const pid = liveHolder(lockPath);
      if (pid !== undefined) throw inUse(path, pid);
      if (attempt >= 3) throw new DiskLockError(`cannot take the lock file ${lockPath} for disk image ${path}: remove it if no typevisor uses the image`);
      // stale: its typevisor died; take it over (another process may race us: O_EXCL decides)
      try {
        unlinkSync(lockPath);
      } catch {
        // someone else removed it first
      }
      continue;
    }
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      heldLocks.delete(release);
      if (heldLocks.size === 0) process.off('exit', releaseAll);
      try {
        if (readFileSync(lockPath, 'utf8').trim() === String(process.pid)) unlinkSync(lockPath);
      } catch {
        // already gone
      }
    };
    if (heldLocks.size === 0) process.on('exit', releaseAll);
    heldLocks.add(release);
    return { lockPath, release };
  }
}

/**
 * The locks this process holds, for one 'exit' handler for them all: several VMs in one
 * process, each with disks, must not add a process listener per disk (Node warns past ten).
 */
const heldLocks = new Set<() => void>();

function releaseAll(): void {
  for (const release of [...heldLocks]) release();
}
