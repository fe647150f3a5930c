/**
 * Atomic read-modify-writes for vCPUs on several threads over one shared guest RAM.
 *
 * x86 makes a LOCKed read-modify-write (and XCHG with memory) atomic against every other
 * access, plain stores of other CPUs included: a spinlock's release is a plain MOV racing with
 * another CPU's LOCK CMPXCHG. So a locked instruction here is a transaction: it runs as usual,
 * but its memory operand is read with an atomic load (the value remembered) and written with a
 * compare-exchange against that value. When another thread changed the operand in between, the
 * exchange fails, the registers and flags go back to what they were, and the instruction runs
 * again (`lockedExec`). The host's atomics need natural alignment: an unaligned operand inside
 * an aligned 8 bytes is exchanged as those 8 bytes; one that crosses 8 bytes (a split lock,
 * which Linux treats as a bug) and an operand outside RAM are written plainly. CMPXCHG16B has
 * no 16-byte host atomic: every vCPU runs it holding one mutex word (Arena.mutexIndex), which
 * makes it atomic against the others' CMPXCHG16B but not against their plain stores. The
 * translator leaves all of these to the interpreter when RAM is shared (BlockLayout.atomic).
 */

/** Thrown out of a locked instruction whose compare-exchange failed: run it again. */
export const TX_RETRY: unique symbol = Symbol('typevisor.txRetry');

const MASK32 = 0xffffffffn;

/** Atomic views of the guest RAM's shared buffer (offsets are RAM offsets, as `Cpu.ram`'s). */
export class AtomicRam {
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  /** High half of the last 8-byte load. */
  hi = 0;

  /** The CMPXCHG16B mutex: a word in the arena, or (RAM without one) this thread's own. */
  private readonly mutexWords: Int32Array;
  private readonly mutex: number;

  /** `mutexIndex`: the arena's mutex word (Arena.mutexIndex), if the RAM is in an arena. */
  constructor(buffer: SharedArrayBuffer, mutexIndex?: number) {
    this.u8 = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer, 0, buffer.byteLength >> 1);
    this.i32 = new Int32Array(buffer, 0, buffer.byteLength >> 2);
    this.i64 = new BigInt64Array(buffer, 0, buffer.byteLength >> 3);
    this.mutexWords = mutexIndex !== undefined ? this.i32 : new Int32Array(new SharedArrayBuffer(4));
    this.mutex = mutexIndex ?? 0;
  }

  /** Can [off, off+size) be loaded and exchanged atomically (aligned, or inside an aligned 8 bytes)? */
  covers(off: number, size: number): boolean {
    return (off & (size - 1)) === 0 || (off & 7) + size <= 8;
  }

  /** Atomic load of `size` bytes at `off` (covers() must hold); 8 bytes: lo returned, hi in `hi`. */
  load(off: number, size: number): number {
    if ((off & (size - 1)) === 0) {
      switch (size) {
        case 1: return Atomics.load(this.u8, off);
        case 2: return Atomics.load(this.u16, off >> 1);
        case 4: return Atomics.load(this.i32, off >> 2) >>> 0;
        default: {
          const b = Atomics.load(this.i64, off >> 3);
          this.hi = Number((b >> 32n) & MASK32);
          return Number(b & MASK32);
        }
      }
    }
    const w = Atomics.load(this.i64, off >> 3);
    const v = (w >> BigInt((off & 7) * 8)) & ((1n << BigInt(size * 8)) - 1n);
    return Number(v);
  }

  /**
   * Compare-exchange `size` bytes at `off`: from (expLo, expHi) to (lo, hi), only if they still
   * hold the expected value. True when it was exchanged.
   */
  exchange(off: number, size: number, expLo: number, expHi: number, lo: number, hi: number): boolean {
    if ((off & (size - 1)) === 0) {
      switch (size) {
        case 1: return Atomics.compareExchange(this.u8, off, expLo & 0xff, lo & 0xff) === (expLo & 0xff);
        case 2: return Atomics.compareExchange(this.u16, off >> 1, expLo & 0xffff, lo & 0xffff) === (expLo & 0xffff);
        case 4: return Atomics.compareExchange(this.i32, off >> 2, expLo | 0, lo | 0) === (expLo | 0);
        default: {
          const e = BigInt.asIntN(64, (BigInt(expHi >>> 0) << 32n) | BigInt(expLo >>> 0));
          const n = BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
          return Atomics.compareExchange(this.i64, off >> 3, e, n) === e;
        }
      }
    }
    // inside an aligned 8 bytes: exchange those, the bytes around the operand as they were
    const idx = off >> 3;
    const shift = BigInt((off & 7) * 8);
    const mask = ((1n << BigInt(size * 8)) - 1n) << shift;
    const w = Atomics.load(this.i64, idx);
    const exp = (BigInt(expLo >>> 0) << shift) & mask;
    if ((BigInt.asUintN(64, w) & mask) !== exp) return false;
    const n = BigInt.asIntN(64, (BigInt.asUintN(64, w) & ~mask) | ((BigInt(lo >>> 0) << shift) & mask));
    return Atomics.compareExchange(this.i64, idx, w, n) === w;
  }

  /** A full barrier (MFENCE): a seq-cst read-modify-write that changes nothing. */
  fence(): void {
    Atomics.compareExchange(this.mutexWords, this.mutex, -1, -1);
  }

  /** Take the CMPXCHG16B mutex (held for one instruction: spin, never sleep — the main thread may not). */
  lock(): void {
    while (Atomics.compareExchange(this.mutexWords, this.mutex, 0, 1) !== 0) {
      // another vCPU is inside its CMPXCHG16B
    }
  }

  unlock(): void {
    Atomics.store(this.mutexWords, this.mutex, 0);
  }
}
