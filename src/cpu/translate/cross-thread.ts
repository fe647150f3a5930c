/**
 * Stores into code another thread translated (vCPUs on several threads over one shared RAM).
 *
 * The code-line map holds, per 64-byte line of RAM, a bit per vCPU that has translated blocks
 * there (vCPU k: bit k & 7; with threads at most 8 vCPUs, so each bit has one owner). A store
 * that hits a line with other vCPUs' bits cannot drop their blocks itself (their caches live in
 * their threads): it posts the range to each owner's queue in that vCPU's state area, and the
 * owner drops the blocks at its next interrupt poll — before it takes an interrupt, so the IPI
 * by which Linux makes other CPUs see code it patched (text_poke's sync) finds them dropped. An
 * owner keeps its bits until it has dropped its blocks, so every store until then posts too. A
 * full queue sets its overflow flag: the owner then drops all its blocks.
 */
import { A_INVAL_COUNT, A_INVAL_LOCK, A_INVAL_OVERFLOW, A_INVAL_RING, INVAL_SLOTS } from '../wasm/arena.js';

/** Most vCPUs on threads of their own: one code-line bit each. */
export const MAX_THREAD_VCPUS = 8;

export class CrossThreadCode {
  private readonly i32: Int32Array;
  /** This vCPU's state area, as an index into i32. */
  private readonly own: number;

  /**
   * `buffer`: the arena's shared memory; `areaBases`: each vCPU's state area offset (byte, in
   * `buffer`), by vCPU index; `self`: this thread's vCPU.
   */
  constructor(buffer: SharedArrayBuffer, private readonly areaBases: readonly number[], private readonly self: number) {
    if (areaBases.length > MAX_THREAD_VCPUS) throw new RangeError(`at most ${MAX_THREAD_VCPUS} vCPUs run on threads of their own`);
    this.i32 = new Int32Array(buffer, 0, buffer.byteLength >> 2);
    this.own = areaBases[self]! >> 2;
  }

  /** The code-line bit of vCPU `vcpu`. */
  static bit(vcpu: number): number {
    return 1 << (vcpu & 7);
  }

  /** A store hit [off, off+len) (one page) on lines with `owners` bits: tell those vCPUs, this one excepted. */
  post(owners: number, off: number, len: number): void {
    const bases = this.areaBases;
    for (let k = 0; k < bases.length; k++) {
      if (k === this.self || (owners & (1 << k)) === 0) continue;
      const w = bases[k]! >> 2;
      const i32 = this.i32;
      this.lock(w);
      this.enqueue(w, off, len);
      Atomics.store(i32, w + (A_INVAL_LOCK >> 2), 0);
    }
  }

  /**
   * Add [off, off+len) to the queue at state-area index `w` (its lock held). A range that
   * touches or overlaps one queued on the same page joins it (a page cleared or copied store by
   * store is one entry); a full queue widens an entry of the same page to cover both, and only
   * a range on a page not queued at all overflows it.
   */
  private enqueue(w: number, off: number, len: number): void {
    const i32 = this.i32;
    const ring = w + (A_INVAL_RING >> 2);
    const n = i32[w + (A_INVAL_COUNT >> 2)]!;
    const end = off + len;
    const page = off >>> 12;
    let samePage = -1;
    for (let i = n - 1; i >= 0; i--) {
      const e = ring + 2 * i;
      const o = i32[e]!;
      if (o >>> 12 !== page) continue;
      const oEnd = o + i32[e + 1]!;
      if (off <= oEnd && end >= o) {
        const lo = Math.min(o, off);
        i32[e] = lo;
        i32[e + 1] = Math.max(oEnd, end) - lo;
        return;
      }
      samePage = e;
    }
    if (n < INVAL_SLOTS) {
      const e = ring + 2 * n;
      i32[e] = off;
      i32[e + 1] = len;
      i32[w + (A_INVAL_COUNT >> 2)] = n + 1;
    } else if (samePage >= 0) {
      const o = i32[samePage]!;
      const lo = Math.min(o, off);
      i32[samePage] = lo;
      i32[samePage + 1] = Math.max(o + i32[samePage + 1]!, end) - lo;
    } else i32[w + (A_INVAL_OVERFLOW >> 2)] = 1;
  }

  /** Anything posted to this vCPU? (A plain read: a post shows by the next poll.) */
  pending(): boolean {
    return this.i32[this.own + (A_INVAL_COUNT >> 2)] !== 0 || this.i32[this.own + (A_INVAL_OVERFLOW >> 2)] !== 0;
  }

  /** Take this vCPU's queue: `drop` for each range posted, or `dropAll` once after an overflow. */
  drain(drop: (off: number, len: number) => void, dropAll: () => void): void {
    const w = this.own;
    const i32 = this.i32;
    const ranges: number[] = [];
    this.lock(w);
    const n = i32[w + (A_INVAL_COUNT >> 2)]!;
    const overflow = i32[w + (A_INVAL_OVERFLOW >> 2)] !== 0;
    for (let i = 0; i < n; i++) ranges.push(i32[w + (A_INVAL_RING >> 2) + 2 * i]!, i32[w + (A_INVAL_RING >> 2) + 2 * i + 1]!);
    i32[w + (A_INVAL_COUNT >> 2)] = 0;
    i32[w + (A_INVAL_OVERFLOW >> 2)] = 0;
    Atomics.store(i32, w + (A_INVAL_LOCK >> 2), 0);
    if (overflow) dropAll();
    else for (let i = 0; i < ranges.length; i += 2) drop(ranges[i]!, ranges[i + 1]!);
  }

  private lock(w: number): void {
    while (Atomics.compareExchange(this.i32, w + (A_INVAL_LOCK >> 2), 0, 1) !== 0) {
      // another thread posts or drains: a few instructions
    }
  }
}
