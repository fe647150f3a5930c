/**
 * The guest's files on the host (kernel, initrd): checked, then read. Sizes are checked from
 * stat before a byte is read (a 700 MB initrd for a 512 MB guest is refused at once, not after
 * seconds of reading), and the kernel's format and header are checked against the file (a
 * truncated or damaged bzImage is refused here instead of crashing in the guest). Every
 * refusal is one line that names the file and what to do.
 */
import { readFileSync, statSync, type Stats } from 'node:fs';
import { parseBzImageHeader } from '../boot/bzimage.js';
import { BootError, mib } from '../boot/errors.js';
import { ACCEPTED_FORMATS, detectKernelFormat } from '../boot/loader.js';
import type { KernelFormat } from '../boot/types.js';
import { GiB } from '../machine/layout.js';

export class GuestFileError extends Error {
  override name = 'GuestFileError';
}

type What = 'kernel' | 'initrd';

/** Largest file Node reads in one piece (readFileSync refuses more): no kernel comes near it. */
export const MAX_KERNEL_FILE = 2 * GiB - 1;
/** Linux on x86-64 keeps the initrd below 2 GiB (initrd_addr_max of its bzImages). */
export const MAX_INITRD_FILE = 2 * GiB - 1;

export interface GuestFiles {
  image: Uint8Array;
  format: KernelFormat;
  initrd?: Uint8Array;
}

/**
 * Check both files from stat (existence, type, size), then read and check the kernel, then
 * read the initrd. `memoryBytes` is the guest's RAM: an initrd larger than that cannot fit.
 */
export function readGuestFiles(kernelPath: string, initrdPath: string | undefined, memoryBytes: number): GuestFiles {
  const kernelSize = statGuestFile(kernelPath, 'kernel').size;
  if (kernelSize > MAX_KERNEL_FILE) {
    throw new GuestFileError(`kernel ${kernelPath} is ${mib(kernelSize)}, larger than any kernel image (at most ${mib(MAX_KERNEL_FILE + 1)}): check the path given to --kernel`);
  }
  if (initrdPath !== undefined) {
    const initrdSize = statGuestFile(initrdPath, 'initrd').size;
    checkInitrdSize(initrdPath, initrdSize, memoryBytes);
  }
  const image = readGuestFile(kernelPath, 'kernel');
  const format = checkKernelImage(kernelPath, image);
  const initrd = initrdPath === undefined ? undefined : readGuestFile(initrdPath, 'initrd');
  return { image, format, initrd };
}

/** Refuse an initrd that cannot fit before it is read; the loader places the ones that may. */
export function checkInitrdSize(path: string, size: number, memoryBytes: number): void {
  if (size > memoryBytes) {
    throw new GuestFileError(
      `initrd ${path} (${mib(size)}) does not fit in guest RAM (${mib(memoryBytes)}): give the guest more memory with --memory, or use a smaller initrd`,
    );
  }
  if (size > MAX_INITRD_FILE) {
    throw new GuestFileError(`initrd ${path} (${mib(size)}) is larger than the ${mib(MAX_INITRD_FILE + 1)} Linux can use on x86-64: use a smaller initrd`);
  }
}

/** The kernel's format, with a bzImage's header checked against the file; errors name the file. */
export function checkKernelImage(path: string, image: Uint8Array): KernelFormat {
  const format = detectKernelFormat(image);
  if (format === undefined) {
    throw new BootError(`${path} is not a kernel image typevisor can boot: accepted formats are ${ACCEPTED_FORMATS}`);
  }
  if (format === 'bzimage') {
    try {
      parseBzImageHeader(image);
    } catch (e) {
      if (e instanceof BootError) throw new BootError(`kernel ${path}: ${e.message}`, { cause: e });
      throw e;
    }
  }
  return format;
}

function statGuestFile(path: string, what: What): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw fileError(e, path, what);
  }
  if (!st.isFile()) throw new GuestFileError(`${what} ${path} is not a regular file: pass the path of a ${what} image`);
  return st;
}

function readGuestFile(path: string, what: What): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw fileError(e, path, what);
  }
}

function fileError(e: unknown, path: string, what: What): GuestFileError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new GuestFileError(`${what} file ${path} not found: check the path given to --${what}`, { cause: e });
  if (code === 'EACCES') return new GuestFileError(`${what} file ${path} is not readable: check its permissions`, { cause: e });
  return new GuestFileError(`cannot read ${what} file ${path}: ${(e as Error).message}`, { cause: e });
}
