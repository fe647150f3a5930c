/**
 * DISCARD on a raw image: fallocate(PUNCH_HOLE | KEEP_SIZE) through libc (koffi; Node has no
 * fallocate), run on koffi's worker thread so the vCPU's thread never waits for the file
 * system. The range then reads as zeros and gives its blocks back to the host. A file system
 * that cannot punch holes (EOPNOTSUPP), or a libc without fallocate, makes it a no-op: the
 * virtio spec lets a device ignore a discard.
 */
import koffi from 'koffi';

const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;

interface AsyncFn {
  async(...args: unknown[]): void;
}

let fallocate: AsyncFn | null | undefined;

/** Punch [offset, offset+length) out of `fd`; `done` once finished (never with an error). */
export function punchHole(fd: number, offset: number, length: number, done: () => void): void {
  if (fallocate === undefined) {
    try {
      fallocate = koffi.load('libc.so.6').func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as unknown as AsyncFn;
    } catch {
      fallocate = null;
    }
  }
  if (fallocate === null || length <= 0) return done();
  fallocate.async(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, () => done());
}
