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
 * offset minus its linear address (mod 2^32, so wasm adds the access's address to it). The CPU
 * reads the arrays directly on its hot paths (`tag`, `perm`, `addr`, `phys`).
 *
 * SMAP: while CR4.SMAP is set, an entry for a user page holds supervisor read/write permission
 * (P_SR/P_SW, and the wasm supervisor tags) only while EFLAGS.AC opens user pages to the kernel
 * (CPL < 3 and AC set). Such grants are listed (`noteGrant`, `grant`), and `revokeGrants` takes
 * them back when the window closes (CLAC, POPF, IRET, SYSCALL's mask, a return to CPL 3...), so
 * the hot paths — the interpreter's and translated code's — test one permission bit as before,
 * whatever AC says. Linux opens the window around each user copy, touching a page or two.
 */
import { ACC_FETCH, ACC_IMPLICIT, ACC_USER, ACC_WRITE, CR0_PG, CR4_SMAP, CR4_SMEP, NO_TAG, P_GLOBAL, P_SR, P_SW, P_SX, P_UR, P_UW, P_UX, TLB_MASK, TLB_SIZE } from './consts.js';
import type { Arena } from '../wasm/arena.js';
import type { Cpu } from './cpu.js';
import { CpuFault } from '../system-api.js';
import { walk } from '../system/paging.js';

/** Permission bit of each wasm TLB tag (supervisor read, user read, supervisor write, user write). */
const WT_PERM = [P_SR, P_UR, P_SW, P_UW];
/** High half of a wasm TLB tag that matches no page number. */
const WT_INVALID_HI = 0x7fffffff;
const TWO32 = 4294967296;
/** Grants listed one by one; past that, revoking scans the whole TLB. */
const GRANTS_MAX = 64;
/** Non-global fills listed between flushes at most (see Tlb.local). */
const LOCAL_MAX = 1024;

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
  /** Indexes of user-page entries given supervisor permission while AC was set (SMAP). */
  private readonly grants = new Int32Array(GRANTS_MAX);
  /** How many of `grants` are listed (GRANTS_MAX + 1: more than fit; revoke scans everything). */
  granted = 0;
  /**
   * Indexes of entries filled with a non-global page since the last flush (a slot may appear
   * more than once, or hold another page by now), and how many (LOCAL_MAX + 1: more than fit).
   */
  private readonly local = new Int32Array(LOCAL_MAX);
  private filledLocal = 0;

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

  /**
   * Drop every entry, or every entry but the global ones. A CR3 write (a context switch) keeps
   * the global ones — the kernel's — and usually finds only a few hundred others, listed by
   * `fill`: those are dropped without a scan of the whole TLB.
   */
  flush(keepGlobal: boolean): void {
    const tag = this.tag;
    const perm = this.perm;
    const n = this.filledLocal;
    this.filledLocal = 0;
    if (keepGlobal && n <= LOCAL_MAX) {
      const list = this.local;
      for (let k = 0; k < n; k++) {
        const i = list[k]!;
        if (perm[i]! & P_GLOBAL || tag[i] === NO_TAG) continue;
        tag[i] = NO_TAG;
        perm[i] = 0;
        this.wclear(i);
      }
      return;
    }
    for (let i = 0; i < TLB_SIZE; i++) {
      if (keepGlobal && perm[i]! & P_GLOBAL) continue;
      tag[i] = NO_TAG;
      perm[i] = 0;
      this.wclear(i);
    }
    if (!keepGlobal) this.granted = 0; // (global entries kept may hold grants: the list stays)
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
    if (!(perm & P_GLOBAL)) {
      // listed for flush (past LOCAL_MAX the list only counts: the flush scans everything)
      const n = this.filledLocal;
      if (n < LOCAL_MAX) this.local[n] = i;
      if (n <= LOCAL_MAX) this.filledLocal = n + 1;
    }
    this.tag[i] = vpn;
    this.perm[i] = perm;
    this.phys[i] = phys;
    const off = phys - this.ramBase;
    const a = off >= 0 && off + 4096 <= this.ramSize ? off : -1;
    this.addr[i] = a;
    if (this.wtags !== undefined) {
      this.wset(i);
      // the page's RAM offset minus its linear address, mod 2^32: wasm adds the access's low half
      this.waddr![i] = (a - vpn * 4096) | 0;
    }
    return i;
  }

  /** Send every access to entry i through the slow paths (a page a data breakpoint watches). */
  slowPath(i: number): void {
    this.addr[i] = -1;
    this.wclear(i);
  }

  /** Entry i (a user page, filled under SMAP while AC opened user pages) holds supervisor permission: list it. */
  noteGrant(i: number): void {
    const n = this.granted;
    if (n > GRANTS_MAX) return;
    if (n > 0 && this.grants[n - 1] === i) return;
    if (n < GRANTS_MAX) this.grants[n] = i;
    this.granted = n + 1;
  }

  /** Add supervisor permission `bits` (P_SR, P_SW) to entry i, a user page, while AC opens user pages; listed. */
  grant(i: number, bits: number): void {
    this.perm[i] = this.perm[i]! | bits;
    if (this.wtags !== undefined) this.wset(i);
    this.noteGrant(i);
  }

  /** The AC window closed: user-page entries lose the supervisor permission granted meanwhile. */
  revokeGrants(): void {
    const perm = this.perm;
    const n = this.granted;
    this.granted = 0;
    if (n > GRANTS_MAX) {
      for (let i = 0; i < TLB_SIZE; i++) if (perm[i]! & P_UR && perm[i]! & (P_SR | P_SW)) this.revoke(i);
      return;
    }
    for (let k = 0; k < n; k++) {
      const i = this.grants[k]!;
      // the slot may hold another page by now: only user pages ever hold a grant
      if (perm[i]! & P_UR) this.revoke(i);
    }
  }

  private revoke(i: number): void {
    this.perm[i] = this.perm[i]! & ~(P_SR | P_SW);
    if (this.wtags !== undefined) this.wset(i);
  }

  /** Write the wasm tags of entry i from its tag, permissions and RAM offset. */
  private wset(i: number): void {
    const w = this.wtags!;
    const vpn = this.tag[i]!;
    const perm = this.perm[i]!;
    // a page that is not RAM never matches: wasm code takes the slow path for it
    const ram = this.addr[i]! >= 0;
    const lo = ram ? vpn >>> 0 : -1;
    const hi = ram ? Math.floor(vpn / TWO32) | 0 : WT_INVALID_HI;
    const b = i * 8;
    for (let k = 0; k < 4; k++) {
      const ok = (perm & WT_PERM[k]!) !== 0;
      w[b + 2 * k] = ok ? lo : -1;
      w[b + 2 * k + 1] = ok ? hi : WT_INVALID_HI;
    }
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

/**
 * CPU c translates `lin` for an access (ACC_* bits; `user` set for CPL-3 non-implicit accesses),
 * fills the TLB entry and returns its index. Throws #PF.
 *
 * SMEP: a user page gets no supervisor execute permission. SMAP: a user page gets supervisor
 * read/write permission only while AC opens user pages (the grant is listed and revoked when
 * the window closes); an explicit supervisor access that finds its user page already held
 * gets the permission the entry's user bits prove, without a walk.
 */
export function tlbFill(c: Cpu, lin: number, access: number): number {
  const s = c.s;
  const vpn = Math.floor(lin / 4096);
  // (without paging there are no user pages, though the walk reports every page as user)
  const paged = (s.cr0 & CR0_PG) !== 0;
  const smap = paged && (s.cr4 & CR4_SMAP) !== 0;
  if (smap && !(access & (ACC_USER | ACC_IMPLICIT | ACC_FETCH)) && c.userPagesOpen()) {
    const i = vpn & TLB_MASK;
    const write = (access & ACC_WRITE) !== 0;
    if (c.tlbTag[i] === vpn && c.tlbPerm[i]! & (write ? P_UW : P_UR)) {
      c.tlb.grant(i, write ? P_SR | P_SW : P_SR);
      return i;
    }
  }
  const out = c.walkOut;
  const code = walk(s, c.memory, lin, access, out);
  if (code !== -1) {
    s.cr2 = lin;
    throw new CpuFault(14, code);
  }
  const sup = !out.user || !smap || c.userPagesOpen();
  let perm = sup ? P_SR : 0;
  if (out.user) perm |= P_UR;
  if (!out.nx) perm |= !out.user ? P_SX : paged && s.cr4 & CR4_SMEP ? P_UX : P_SX | P_UX;
  if (access & ACC_WRITE) {
    if (sup) perm |= P_SW;
    if (out.user && out.writable) perm |= P_UW;
  }
  if (out.global && s.cr4 & 0x80) perm |= P_GLOBAL;
  const i = c.tlb.fill(vpn, out.phys, perm);
  if (out.user && smap && sup) c.tlb.noteGrant(i);
  if (c.watchPages?.has(vpn)) c.tlb.slowPath(i);
  return i;
}
