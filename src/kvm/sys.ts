/**
 * The host binding of the KVM engine: libc calls through koffi, declared non-variadic.
 *
 * Every number comes from constants.generated.ts (compiled from linux/kvm.h and libc headers).
 * Functions return raw results; `check*` helpers turn -1 into a KvmSysError carrying errno.
 * Pointers cross threads as bigint addresses (`pointerFromAddress` turns one back into a koffi
 * pointer, e.g. in a vCPU worker).
 *
 * Measured here (shared/notes/kvm-from-node.md): a koffi call costs 20-50 ns; the ioctl itself
 * dominates. Never call KVM_RUN through koffi's `.async` (it pins libuv pool threads).
 */
import koffi from 'koffi';
import * as C from './constants.generated.js';

export class KvmSysError extends Error {
  override name = 'KvmSysError';
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
  }
}

const libc = koffi.load('libc.so.6');

/** koffi returns a uint64 as a number when it fits, else a bigint: always give a bigint. */
function asBigintResult(f: (...args: never[]) => unknown): (...args: never[]) => bigint {
  return (...args) => BigInt(f(...args) as number | bigint);
}

/** An opaque koffi pointer (what `mmap` returns). */
export type Pointer = unknown;

export const sys = {
  open: libc.func('int open(const char *path, int flags)') as (path: string, flags: number) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  /** ioctl with a pointer argument (struct in a Uint8Array/Buffer, or null). */
  ioctlPtr: libc.func('int ioctl(int fd, unsigned long request, void *arg)') as (
    fd: number,
    request: number,
    arg: Uint8Array | null,
  ) => number,
  /** ioctl with an integer argument (KVM_RUN, KVM_CREATE_VCPU, KVM_CHECK_EXTENSION...). */
  ioctlVal: libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (
    fd: number,
    request: number,
    arg: number,
  ) => number,
  memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)') as (
    name: string,
    flags: number,
  ) => number,
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)') as (fd: number, length: number) => number,
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as (
    addr: Pointer | null,
    length: number,
    prot: number,
    flags: number,
    fd: number,
    offset: number,
  ) => Pointer,
  /** mmap with a fixed address given as an integer (MAP_FIXED replacement of a range). */
  mmapAt: asBigintResult(libc.func('mmap', 'uint64_t', ['uint64_t', 'size_t', 'int', 'int', 'int', 'int64_t'])) as (
    addr: bigint,
    length: number,
    prot: number,
    flags: number,
    fd: number,
    offset: number,
  ) => bigint,
  munmap: libc.func('munmap', 'int', ['uint64_t', 'size_t']) as (addr: bigint, length: number) => number,
  /** memmove(dst, src, 0) returns dst: how bufferAddress learns where a typed array's bytes are. */
  memmoveNone: asBigintResult(libc.func('memmove', 'uint64_t', ['void *', 'void *', 'size_t'])) as (dst: Uint8Array, src: Uint8Array, n: number) => bigint,
  pthreadSelf: asBigintResult(libc.func('pthread_self', 'uint64_t', [])) as () => bigint,
  pthreadKill: libc.func('pthread_kill', 'int', ['uint64_t', 'int']) as (thread: bigint, sig: number) => number,
  gettid: libc.func('int gettid(void)') as () => number,
  sigaction: libc.func('int sigaction(int sig, void *act, void *oldact)') as (
    sig: number,
    act: Uint8Array | null,
    oldact: Uint8Array | null,
  ) => number,
  pthreadSigmask: libc.func('int pthread_sigmask(int how, void *set, void *oldset)') as (
    how: number,
    set: Uint8Array | null,
    oldset: Uint8Array | null,
  ) => number,
  sigtimedwait: libc.func('int sigtimedwait(void *set, void *info, void *timeout)') as (
    set: Uint8Array,
    info: Uint8Array | null,
    timeout: Uint8Array,
  ) => number,
  /** timer_create; the timer_t lands in `out` (8 bytes). */
  timerCreate: libc.func('int timer_create(int clockid, void *sevp, void *out)') as (
    clockid: number,
    sevp: Uint8Array,
    out: Uint8Array,
  ) => number,
  timerSettime: libc.func('timer_settime', 'int', ['uint64_t', 'int', 'void *', 'void *']) as (
    timer: bigint,
    flags: number,
    value: Uint8Array,
    old: Uint8Array | null,
  ) => number,
  timerDelete: libc.func('timer_delete', 'int', ['uint64_t']) as (timer: bigint) => number,
  dlsym: libc.func('void *dlsym(void *handle, const char *name)') as (handle: null, name: string) => Pointer,
};

export function errno(): number {
  return koffi.errno();
}

/** Throw KvmSysError when a libc call returned -1. */
export function check(result: number, what: string): number {
  if (result < 0) {
    const e = koffi.errno();
    throw new KvmSysError(`${what} failed: ${errnoName(e)} (errno ${e})`, e);
  }
  return result;
}

export function errnoName(e: number): string {
  switch (e) {
    case C.EINTR: return 'EINTR';
    case C.EAGAIN: return 'EAGAIN';
    case C.E2BIG: return 'E2BIG';
    case C.ENOENT: return 'ENOENT';
    case C.EACCES: return 'EACCES';
    case C.EPERM: return 'EPERM';
    case C.ENOMEM: return 'ENOMEM';
    case C.EEXIST: return 'EEXIST';
    case C.EINVAL: return 'EINVAL';
    default: return `errno ${e}`;
  }
}

/** The integer address of a koffi pointer. */
export function addressOf(p: Pointer): bigint {
  return koffi.address(p) as bigint;
}

/** The host address of a typed array's first byte (also of one over shared memory). */
export function bufferAddress(bytes: Uint8Array): bigint {
  return sys.memmoveNone(bytes, bytes, 0);
}

/** A koffi pointer for an integer address (e.g. received by a worker). */
export function pointerFromAddress(addr: bigint): Pointer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(addr);
  return koffi.decode(b, 'void *');
}

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** mmap that throws on failure (MAP_FAILED is all-ones, not -1, through koffi). */
export function mmapChecked(length: number, prot: number, flags: number, fd: number, what: string): Pointer {
  const p = sys.mmap(null, length, prot, flags, fd, 0);
  if (p === null || addressOf(p) === MAP_FAILED) {
    const e = koffi.errno();
    throw new KvmSysError(`mmap of ${what} (${length} bytes) failed: ${errnoName(e)}`, e);
  }
  return p;
}

/** A zero-copy ArrayBuffer over [ptr, ptr+length). Never call with a null pointer or > 4 GiB. */
export function viewOf(p: Pointer, length: number): ArrayBuffer {
  if (p === null || length <= 0 || length > 0x1_0000_0000) throw new KvmSysError(`bad view of ${length} bytes`, 0);
  return koffi.view(p as never, length) as ArrayBuffer;
}

/**
 * Install a no-op handler for the kick signal (SIGUSR2), process-wide, once. The handler is
 * libc's `getpid` (async-signal-safe, ignores its argument): we need a signal that interrupts
 * KVM_RUN (a real handler, not SIG_IGN, and not the default action, which would kill us), and a
 * JS callback must never run in signal context.
 */
let kickHandlerInstalled = false;
export function installKickHandler(): void {
  if (kickHandlerInstalled) return;
  const handler = sys.dlsym(null, 'getpid');
  if (handler === null) throw new KvmSysError('dlsym(getpid) failed', 0);
  const act = new Uint8Array(C.SIGACTION_SIZE);
  const dv = new DataView(act.buffer);
  dv.setBigUint64(C.SIGACTION_SA_HANDLER, addressOf(handler), true);
  dv.setInt32(C.SIGACTION_SA_FLAGS, C.SA_RESTART, true);
  check(sys.sigaction(C.SIGUSR2, act, null), 'sigaction(SIGUSR2)');
  kickHandlerInstalled = true;
}

/** A libc sigset_t holding just `sig`. */
export function sigsetOf(...sigs: number[]): Uint8Array {
  const set = new Uint8Array(C.SIGSET_T_SIZE);
  for (const s of sigs) set[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return set;
}

export { C };
