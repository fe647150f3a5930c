/**
 * The software TLB: direct-mapped, TLB_SIZE entries indexed by vpn (floor(linear / 4096)). Each
 * entry holds the tag (vpn), permission bits (P_*), the physical page, and — when the page lies
 * in the first RAM region — the byte offset of the page in that region, so the CPU's hits touch
 * its Uint8Array/DataView directly (other pages take the slow path through GuestMemory and the
 * MMIO bus). Write permission is only granted after a walk for a write, so the D bit is set.
 *
 * With a wasm arena the arrays live in it, and a second form of every entry is kept for the
 * translated code: per entry an i64 page-number tag for each of supervisor/user × read/write
 * (matching nothing where the permission is missing or the page is not RAM), and the page's RAM
 * offset. The CPU reads the arrays directly on its hot paths (`tag`, `perm`, `addr`, `phys`).
 */
import { NO_TAG, P_GLOBAL, P_SR, P_SW, P_UR, P_UW, TLB_MASK, TLB_SIZE } from './consts.js';
import type { Arena } from '../wasm/arena.js';

/** Permission bit of each wasm TLB tag (supervisor read, user read, supervisor write, user write). */
const WT_PERM = [P_SR, P_UR, P_SW, P_UW];
/** High half of a wasm TLB tag that matches no page number. */
const WT_INVALID_HI = 0x7fffffff;
const TWO32 = 4294967296;

export class Tlb {
  readonly tag: Float64Array;
  readonly perm: Uint8Array;
  /** Offset of the page in the first RAM region, or -1 for the slow path. */
  readonly addr: Float64Array;
  /** Physical address of the page. */
  readonly phys = new Float64Array(TLB_SIZE);
  /** The TLB as wasm blocks read it (see wtlbOffset in wasm/arena.ts), when there is an arena. */
  private readonly wtags: Int32Array | undefined;
  private readonly waddr: Int32Array | undefined;

  constructor(
    arena: Arena | undefined,
    /** The first RAM region: [ramBase, ramBase + ramSize) physical. */
    private readonly ramBase: number,
    private readonly ramSize: number,
  ) {
    this.tag = arena ? arena.tlbTag() : new Float64Array(TLB_SIZE);
    this.tag.fill(NO_TAG);
    this.perm = arena ? arena.tlbPerm() : new Uint8Array(TLB_SIZE);
    this.addr = arena ? arena.tlbAddr() : new Float64Array(TLB_SIZE);
    this.wtags = arena?.wtlbTags();
    this.waddr = arena?.wtlbAddr();
    for (let i = 0; i < TLB_SIZE; i++) this.wclear(i);
  }

  /** Drop every entry, or every entry but the global ones. */
  flush(keepGlobal: boolean): void {
    const tag = this.tag;
    const perm = this.perm;
    for (let i = 0; i < TLB_SIZE; i++) {
      if (keepGlobal && perm[i]! & P_GLOBAL) continue;
      tag[i] = NO_TAG;
      perm[i] = 0;
      this.wclear(i);
    }
  }

  /** Drop the entry of page `vpn`, if held. */
  invalidate(vpn: number): void {
    const i = vpn & TLB_MASK;
    if (this.tag[i] === vpn) {
      this.tag[i] = NO_TAG;
      this.perm[i] = 0;
      this.wclear(i);
    }
  }

  /**
   * Enter page `vpn` → physical page `phys` with permissions `perm` (P_*); returns its index. A
   * hit in the same slot for the same page keeps permissions already proven.
   */
  fill(vpn: number, phys: number, perm: number): number {
    const i = vpn & TLB_MASK;
    if (this.tag[i] === vpn && this.phys[i] === phys) perm |= this.perm[i]!;
    this.tag[i] = vpn;
    this.perm[i] = perm;
    this.phys[i] = phys;
    const off = phys - this.ramBase;
    const a = off >= 0 && off + 4096 <= this.ramSize ? off : -1;
    this.addr[i] = a;
    const w = this.wtags;
    if (w !== undefined) {
      // a page that is not RAM never matches: wasm code takes the slow path for it
      const lo = a >= 0 ? vpn >>> 0 : -1;
      const hi = a >= 0 ? Math.floor(vpn / TWO32) | 0 : WT_INVALID_HI;
      const b = i * 8;
      for (let k = 0; k < 4; k++) {
        const ok = (perm & WT_PERM[k]!) !== 0;
        w[b + 2 * k] = ok ? lo : -1;
        w[b + 2 * k + 1] = ok ? hi : WT_INVALID_HI;
      }
      this.waddr![i] = a;
    }
    return i;
  }

  /** Send every access to entry i through the slow paths (a page a data breakpoint watches). */
  slowPath(i: number): void {
    this.addr[i] = -1;
    this.wclear(i);
  }

  /** Entry i of the wasm TLB matches nothing. */
  private wclear(i: number): void {
    const w = this.wtags;
    if (w === undefined) return;
    for (let k = 0; k < 8; k += 2) {
      w[i * 8 + k] = -1;
      w[i * 8 + k + 1] = WT_INVALID_HI;
    }
  }
}
