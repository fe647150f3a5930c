/**
 * Where a sparse file has data: lseek(SEEK_DATA / SEEK_HOLE) through libc (koffi; Node has no
 * binding). A snapshot's memory file leaves all-zero chunks as holes, and a restore reads only
 * the data extents into a fresh (zeroed) guest RAM: less to copy, and the holes' pages of guest
 * RAM are never touched, so they cost no host memory until the guest uses them.
 */
import koffi from 'koffi';

const SEEK_DATA = 3;
const SEEK_HOLE = 4;

let lseek: ((fd: number, offset: number, whence: number) => number) | undefined;

/** [start, end) byte ranges holding data, in order; undefined where the file system cannot say. */
export function dataExtents(fd: number, size: number): [number, number][] | undefined {
  try {
    lseek ??= koffi.load('libc.so.6').func('int64_t lseek(int fd, int64_t offset, int whence)') as (fd: number, offset: number, whence: number) => number;
  } catch {
    return undefined;
  }
  const out: [number, number][] = [];
  let at = 0;
  while (at < size) {
    const data = Number(lseek(fd, at, SEEK_DATA));
    if (data < 0) break; // ENXIO: only a hole from here on (or no SEEK_DATA: then nothing at 0)
    const hole = Number(lseek(fd, data, SEEK_HOLE));
    if (hole <= data) return undefined;
    out.push([data, Math.min(hole, size)]);
    at = hole;
  }
  if (out.length === 0 && size > 0 && Number(lseek(fd, 0, SEEK_HOLE)) !== 0) return undefined; // the call failed outright
  return out;
}
