/**
 * The block cache: which translated block runs at a RIP, when code is hot enough to translate,
 * how blocks chain to their successors, and what a store into translated code drops.
 *
 * - Lookup: a two-way cache keyed by (RIP, CPL), validated against the current TLB entry of the
 *   code page (same physical page, execute permission), so TLB flushes need not clear it. Its
 *   entries count executions: a RIP is translated once it ran `threshold` times.
 * - Batching: warm block starts (a quarter of the threshold) are compiled with the next hot one
 *   into one wasm module (modules are costly; see wasm/backend.ts).
 * - Chaining: each block remembers the two blocks that ran after it (Block.s0/s1), valid for the
 *   translation key they were found under: TLB epoch and CPL, or the global epoch for code on
 *   global pages (the kernel's), which survives CR3 writes.
 * - Self-modifying code: per 64-byte line of the first RAM region, `codeLines` says whether
 *   translated code was made from it; a store there drops the blocks it overlaps. A page whose
 *   code keeps being rewritten (SMC_HOT invalidations, decaying) is interpreted instead.
 * - Bounds: MAX_BLOCKS blocks, and the translator's own ceiling on modules and code bytes; past
 *   either everything is dropped, and the host is asked to reclaim the dead code.
 */
import type { Cpu } from '../core/cpu.js';
import { F64_ZERO } from '../state.js';
import { codePageIndex, NO_TAG, P_GLOBAL, P_SX, P_UX, TLB_MASK } from '../core/consts.js';
import type { WasmBackend } from '../wasm/backend.js';
import type { Block } from './block.js';
import { sameAsTranslated } from '../wasm/share.js';

const FAST_SIZE = 32768;
/** Blocks per wasm module at most (a hot one and warm ones), and warm starts remembered at most. */
const BATCH = 16;
const WARM_MAX = 256;
/** Evicted execution counts remembered at most (then forgotten all at once). */
const EVICTED_MAX = 1 << 16;
/** Translated blocks kept at most (all are dropped when exceeded). */
const MAX_BLOCKS = 200_000;
/**
 * Self-modifying code: a page whose translated code was invalidated SMC_HOT times is
 * interpreted instead of translated again (a JIT patching code in a loop would otherwise cost a
 * compiled module per patch); every HEAT_DECAY retired instructions each page's count halves,
 * so code that settles down is translated again.
 */
const SMC_HOT = 16;
const HEAT_DECAY = 1 << 23;

/** findBlock's verdict on a fetch address that is not RAM (keep interpreting there). */
const NOT_RAM = -1e9;
/** Sharing translations with other threads: cold lookups between looks at what they posted. */
const RECEIVE_EVERY = 64;

export class BlockCache {
  /** Block-start executions before a block is translated. */
  threshold: number;
  /** Blocks compiled / executed so far (statistics). */
  compiled = F64_ZERO;
  run = F64_ZERO;
  /** Translations refused because the page's code keeps changing (statistics). */
  smcRefused = F64_ZERO;
  /** Times every translated block was dropped to stay within the code budget (statistics). */
  flushes = F64_ZERO;
  /** A bulk drop or enough invalidated code since the last reclaim: the CPU calls its reclaim hook. */
  reclaimDue = false;

  private readonly blocks = new Map<number, Block>();
  private readonly pageBlocks = new Map<number, Block[]>();
  /** Per RAM page of the first region: invalidations of its translated code (decaying, saturating). */
  private readonly smcHeat: Uint8Array;
  /** Pages whose smcHeat is not zero. */
  private heatPages: number[] = [];
  private nextDecay = HEAT_DECAY;
  private readonly fastRip = new Float64Array(FAST_SIZE).fill(NO_TAG);
  private readonly fastCpl = new Int8Array(FAST_SIZE);
  private readonly fastCount = new Int32Array(FAST_SIZE);
  private readonly fastBlk: (Block | undefined)[] = new Array<Block | undefined>(FAST_SIZE).fill(undefined);
  /** Execution counts of RIPs evicted from the lookup cache (key: rip * 4 + CPL). */
  private readonly evicted = new Map<number, number>();
  /** Warm block starts: compiled with the next hot block. Parallel arrays. */
  private readonly warmRips: number[] = [];
  private readonly warmOffs: number[] = [];
  private readonly warmKeys: number[] = [];

  constructor(
    private readonly cpu: Cpu,
    private readonly wasm: WasmBackend,
    /** Per 64-byte line of the first RAM region: 1 when blocks were made from it (the CPU's stores check it). */
    private readonly codeLines: Uint8Array,
    threshold: number,
  ) {
    this.threshold = threshold;
    this.smcHeat = new Uint8Array(Math.ceil(cpu.ramSize / 4096) + 1);
    this.bit = cpu.codeBit;
    this.threads = cpu.crossThread !== undefined;
  }

  /** This vCPU's bit in the code-line map (cross-thread.ts). */
  private readonly bit: number;
  /** Other threads mark the map too: set and clear this vCPU's bit atomically, never the others'. */
  private readonly threads: boolean;

  /** Mark lines [lo, end) of RAM as holding this vCPU's code. */
  private mark(lo: number, end: number): void {
    const lines = this.codeLines;
    const bit = this.bit;
    if (this.threads) for (let l = lo >>> 6; l <= (end - 1) >>> 6; l++) Atomics.or(lines, l, bit);
    else for (let l = lo >>> 6; l <= (end - 1) >>> 6; l++) lines[l]! |= bit;
  }

  /** Clear this vCPU's marks on the page holding RAM offset `off` (without threads: every mark there). */
  private clearPage(off: number): void {
    if (!this.threads) {
      clearPageLines(this.codeLines, off);
      return;
    }
    const lines = this.codeLines;
    const keep = ~this.bit & 0xff;
    const first = (off >>> 12) << 6;
    for (let l = first; l < first + 64; l++) if (lines[l]! & this.bit) Atomics.and(lines, l, keep);
  }

  /**
   * The translated block starting at `rip` (64-bit mode), or undefined to interpret one
   * instruction; translates the block when it is hot. May raise #PF (translating the fetch
   * address): the caller's restart point is this RIP.
   */
  find(rip: number): Block | undefined {
    const c = this.cpu;
    // two-way: entries h and h ^ 1 (two hot RIPs that hash alike must not keep resetting each
    // other's execution counts, or neither ever gets translated)
    let h = ((rip >>> 0) ^ (rip >>> 12)) & (FAST_SIZE - 1);
    const cpl = c.s.cpl;
    if (this.fastRip[h] !== rip || this.fastCpl[h] !== cpl) {
      const h2 = h ^ 1;
      if (this.fastRip[h2] === rip && this.fastCpl[h2] === cpl) h = h2;
      else if (this.fastCount[h2]! < this.fastCount[h]!) h = h2; // replace the colder one
    }
    const need = cpl === 3 ? P_UX : P_SX;
    const vpn = Math.floor(rip / 4096);
    const ti = vpn & TLB_MASK;
    if (this.fastRip[h] === rip && this.fastCpl[h] === cpl) {
      const b = this.fastBlk[h];
      if (b !== undefined) {
        if (b.valid && c.tlbTag[ti] === vpn && c.tlbPerm[ti]! & need && c.tlbAddr[ti]! + (rip & 0xfff) === b.phys) return b;
        this.fastBlk[h] = undefined;
        this.fastCount[h] = this.threshold - 1;
      } else if (this.fastCount[h]! < 0) return undefined; // not RAM
      ++this.fastCount[h];
    } else {
      // replacing an entry: its count survives in `evicted`, so RIPs that keep evicting each
      // other still reach the translation threshold
      const old = this.fastRip[h]!;
      if (old !== NO_TAG && this.fastBlk[h] === undefined && this.fastCount[h]! > 1) {
        if (this.evicted.size >= EVICTED_MAX) this.evicted.clear();
        this.evicted.set(old * 4 + this.fastCpl[h]!, this.fastCount[h]!);
      }
      const before = this.evicted.size > 0 ? this.evicted.get(rip * 4 + cpl) : undefined;
      this.fastRip[h] = rip;
      this.fastCpl[h] = cpl;
      this.fastCount[h] = before !== undefined ? before + 1 : 1;
      this.fastBlk[h] = undefined;
    }
    // cold code: look for a translation (made earlier, or due now) on first sight and then only
    // every 16th time, so interpreting stays cheap
    const count = this.fastCount[h]!;
    if (count < this.threshold && (count & 15) !== 1) return undefined;
    const i = c.fetchTlbIndex(rip);
    const a = c.tlbAddr[i]!;
    if (a < 0) {
      this.fastCount[h] = NOT_RAM; // keep interpreting
      return undefined;
    }
    const off = a + (rip & 0xfff);
    let b = this.blocks.get(rip);
    if ((b === undefined || !b.valid || b.phys !== off) && this.wasm.sharing) {
      // another vCPU's thread may have translated it: look at what they posted (before
      // translating, and every so often while the code is cold)
      if (count >= this.threshold || ++this.sinceReceive >= RECEIVE_EVERY) this.receive();
      if (this.smcHeat[off >>> 12]! < SMC_HOT) b = this.adopt(rip, off) ?? b;
    }
    if (b === undefined || !b.valid || b.phys !== off) {
      // not translated yet (or stale): only hot code is worth translating
      if (count < this.threshold) {
        // warm code waits to be compiled along with the next hot block (wasm modules are costly)
        // (at the first look past a quarter of the threshold: looks come every 16 executions)
        const quarter = this.threshold >> 2;
        if (count > quarter && count <= quarter + 16 && this.warmRips.length < WARM_MAX) {
          this.warmRips.push(rip);
          this.warmOffs.push(off);
          this.warmKeys.push(this.mappingKey(rip));
        }
        return undefined;
      }
      if (this.smcHeat[off >>> 12]! >= SMC_HOT) {
        // the code here keeps being rewritten: interpret it (look again after another threshold)
        this.fastCount[h] = 0;
        this.smcRefused++;
        return undefined;
      }
      if (this.blocks.size >= MAX_BLOCKS || !this.wasm.hasRoom()) this.dropAll();
      b = this.compileWarm(rip, off, cpl);
      if (!b.valid) return undefined; // another thread rewrote it as it was translated
    }
    this.fastBlk[h] = b;
    return b;
  }

  private sinceReceive = 0;

  /**
   * Take in the blocks other vCPUs' threads posted (wasm/share.ts). A vCPU that waits (halted,
   * or for STARTUP) calls this now and then, so what the others post does not pile up.
   */
  receive(): void {
    this.sinceReceive = 0;
    // one of them numbers its exits from the start again: some of our blocks (taken from it)
    // use those, so every block goes
    if (this.wasm.receive()) this.dropAll();
  }

  /**
   * The block another vCPU's thread made for linear rip at RAM offset off, now this vCPU's
   * too, or undefined. Its lines are marked before its bytes are compared with the ones it was
   * made from: a store after the marks posts to us, one before shows in the bytes.
   */
  private adopt(rip: number, off: number): Block | undefined {
    if (this.blocks.size >= MAX_BLOCKS) return undefined; // (compiling drops everything first)
    const a = this.wasm.adopt(this.cpu.ram, rip, off);
    if (a === undefined) return undefined;
    const b = a.block;
    this.install(b);
    if (!sameAsTranslated(this.cpu.ram, b.lo, a.bytes)) {
      this.invalidate(b.lo, b.end - b.lo);
      return undefined;
    }
    return b;
  }

  /**
   * The block to run after `b` left with RIP `rip` (the run loop chains blocks through this):
   * one of b's remembered successors when its key still holds, else found (and remembered).
   * Links the wasm exit of `b` to it, so the next time wasm goes there directly.
   */
  next(b: Block, rip: number): Block | undefined {
    const c = this.cpu;
    // successor links into global pages (the kernel's) survive CR3 writes, as the wasm exit
    // links do: keyed by the global epoch
    const global = this.onGlobalPage(rip);
    const key = global ? c.globalEpoch * 8 + 4 + c.s.cpl : c.tlbEpoch * 8 + c.s.cpl;
    let nb: Block | undefined;
    if (b.s0Rip === rip && b.s0Key === key && b.s0!.valid) nb = b.s0;
    else if (b.s1Rip === rip && b.s1Key === key && b.s1!.valid) nb = b.s1;
    else {
      nb = this.find(rip);
      if (nb === undefined) return undefined;
      // remember the successor (two slots: a conditional branch has two)
      if (b.s1Rip === rip) {
        b.s1 = nb;
        b.s1Key = key;
      } else {
        if (b.s0Rip !== rip) {
          b.s1 = b.s0;
          b.s1Rip = b.s0Rip;
          b.s1Key = b.s0Key;
        }
        b.s0 = nb;
        b.s0Rip = rip;
        b.s0Key = key;
      }
    }
    // an INVLPG of the successor's page must now end the links of this key's class
    c.codePages[codePageIndex(Math.floor(rip / 4096))] |= global ? 2 : 1;
    if (nb!.slot !== 0) this.wasm.link(nb!.slot, rip, global);
    return nb;
  }

  /**
   * Compile the hot block at rip with up to BATCH - 1 warm ones whose mapping key still holds
   * (mappingKey) into one wasm module, with the blocks that straight-line code runs on into (up
   * to 2 * BATCH blocks in all); returns the hot one. The warm list empties.
   */
  private compileWarm(rip: number, off: number, cpl: number): Block {
    const local = this.mappingKeyOf(false);
    const global = this.mappingKeyOf(true);
    const rips = [rip];
    const offs = [off];
    for (let i = 0; i < this.warmRips.length && rips.length < BATCH; i++) {
      const r = this.warmRips[i]!;
      const o = this.warmOffs[i]!;
      const key = this.warmKeys[i]!;
      if ((key !== local && key !== global) || r === rip || rips.includes(r) || this.smcHeat[o >>> 12]! >= SMC_HOT || this.wasm.adoptable(r, o)) continue;
      const cur = this.blocks.get(r);
      if (cur !== undefined && cur.valid && cur.phys === o) continue;
      rips.push(r);
      offs.push(o);
    }
    this.clearWarm();
    const ram = this.cpu.ram;
    // With threads, a store by another vCPU can land after the translator read the bytes and
    // before install marks their lines (the store then finds no mark of ours and posts nothing):
    // keep the pages as read, and after marking compare the bytes (sameBytes)
    const pages = this.threads ? copyPages(ram, offs) : undefined;
    const made = this.wasm.compile(ram, rips, offs, this.isBlockStart, 2 * BATCH, pages);
    this.compiled += made.length;
    for (const b of made) {
      this.install(b);
      const h = ((b.rip >>> 0) ^ (b.rip >>> 12)) & (FAST_SIZE - 1);
      if (this.fastRip[h] === b.rip && this.fastCpl[h] === cpl) this.fastBlk[h] = b;
      else if (this.fastRip[h ^ 1] === b.rip && this.fastCpl[h ^ 1] === cpl) this.fastBlk[h ^ 1] = b;
    }
    if (pages !== undefined) {
      // marked now: a store from here on posts to us; one that came before shows in the bytes
      for (const b of made) if (b.valid && !sameBytes(ram, pages, b.lo, b.end)) this.invalidate(b.lo, b.end - b.lo);
    }
    return made[0]!;
  }

  /**
   * Under which key a warm block start's RAM offset stays right: the global epoch for code on a
   * global page (the kernel's, kept across CR3 writes), else the TLB epoch. Translation does not
   * depend on the CPL, so warm starts of either privilege level go in one module.
   */
  private mappingKey(rip: number): number {
    return this.mappingKeyOf(this.onGlobalPage(rip));
  }

  /** The current mapping key of code on global pages (odd) or on the others (even). */
  private mappingKeyOf(global: boolean): number {
    const c = this.cpu;
    return global ? c.globalEpoch * 2 + 1 : c.tlbEpoch * 2;
  }

  /** Is linear rip on a page the TLB holds as global? */
  private onGlobalPage(rip: number): boolean {
    const c = this.cpu;
    const vpn = Math.floor(rip / 4096);
    const ti = vpn & TLB_MASK;
    return c.tlbTag[ti] === vpn && (c.tlbPerm[ti]! & P_GLOBAL) !== 0;
  }

  private install(b: Block): void {
    this.blocks.set(b.rip, b);
    const page = b.page;
    let list = this.pageBlocks.get(page);
    if (list === undefined) {
      list = [];
      this.pageBlocks.set(page, list);
    }
    list.push(b);
    this.mark(b.lo, b.end);
  }

  /** Does a valid translated block start at linear `rip` with its bytes at RAM offset `off`? */
  private readonly isBlockStart = (rip: number, off: number): boolean => {
    const b = this.blocks.get(rip);
    return b !== undefined && b.valid && b.phys === off;
  };

  /**
   * A store hit a line of translated code at RAM offset [off, off+len) (within one page): drop
   * the blocks it overlaps (the running block sees Cpu.smc and exits). True when any was dropped.
   */
  invalidate(off: number, len: number, clearLines = true): boolean {
    const page = off >>> 12;
    const list = this.pageBlocks.get(page);
    if (clearLines) this.clearPage(off); // else the caller cleared them for all vCPUs (storeIntoCode)
    if (list === undefined) return false;
    const keep: Block[] = [];
    let dropped = false;
    for (const b of list) {
      if (b.lo < off + len && off < b.end) {
        dropped = true;
        b.valid = false;
        if (b.slot !== 0) this.wasm.retire(b.slot);
        if (this.blocks.get(b.rip) === b) this.blocks.delete(b.rip);
      } else {
        keep.push(b);
        this.mark(b.lo, b.end);
      }
    }
    if (keep.length) this.pageBlocks.set(page, keep);
    else this.pageBlocks.delete(page);
    if (dropped) {
      const heat = this.smcHeat[page]!;
      if (heat === 0) this.heatPages.push(page);
      if (heat < 255) this.smcHeat[page] = heat + 1;
      if (this.wasm.garbageDue()) this.reclaimDue = true;
    }
    return dropped;
  }

  /** After a slice: halve every page's invalidation count once HEAT_DECAY instructions retired. */
  decay(retired: number): void {
    if (retired < this.nextDecay) return;
    this.nextDecay = retired + HEAT_DECAY;
    const heat = this.smcHeat;
    const still: number[] = [];
    for (const p of this.heatPages) {
      const v = heat[p]! >> 1;
      heat[p] = v;
      if (v !== 0) still.push(p);
    }
    this.heatPages = still;
  }

  /** Mark the code lines of every block kept (another vCPU cleared the shared map). */
  markAll(): void {
    for (const list of this.pageBlocks.values()) for (const b of list) this.mark(b.lo, b.end);
  }

  /** Drop every translated block (the code budget is spent, or the state was replaced). */
  dropAll(): void {
    for (const b of this.blocks.values()) b.valid = false;
    for (const list of this.pageBlocks.values()) for (const b of list) b.valid = false;
    this.wasm.reset();
    if (this.threads) for (const page of this.pageBlocks.keys()) this.clearPage(page << 12);
    else {
      this.codeLines.fill(0);
      for (const p of this.cpu.peers ?? []) if (p !== this.cpu) p.markCodeLines(); // the map is shared
    }
    this.blocks.clear();
    this.pageBlocks.clear();
    this.fastRip.fill(NO_TAG);
    this.fastBlk.fill(undefined);
    this.flushes++;
    this.reclaimDue = true;
  }

  /** Forget everything learnt from the old state (a snapshot was restored into the CPU). */
  discard(): void {
    // a fresh CPU (the usual restore target) has no code to drop, nor a reason to collect garbage
    if (this.blocks.size !== 0 || this.pageBlocks.size !== 0) this.dropAll();
    else {
      if (!this.threads) this.codeLines.fill(0);
      this.fastRip.fill(NO_TAG);
      this.fastBlk.fill(undefined);
    }
    this.evicted.clear();
    this.clearWarm();
    this.fastCount.fill(0);
    this.smcHeat.fill(0);
    this.heatPages = [];
  }

  private clearWarm(): void {
    this.warmRips.length = 0;
    this.warmOffs.length = 0;
    this.warmKeys.length = 0;
  }
}

/** Copies of the 4 KiB pages holding the RAM offsets `offs`, by page number. */
function copyPages(ram: Uint8Array, offs: readonly number[]): Map<number, Uint8Array> {
  const pages = new Map<number, Uint8Array>();
  for (const off of offs) {
    const p = off >>> 12;
    if (!pages.has(p)) pages.set(p, ram.slice(p << 12, (p + 1) << 12));
  }
  return pages;
}

/** Are RAM bytes [lo, end) (within one page) as `pages` holds them? (No copy of the page: no.) */
function sameBytes(ram: Uint8Array, pages: Map<number, Uint8Array>, lo: number, end: number): boolean {
  const copy = pages.get(lo >>> 12);
  if (copy === undefined || (end - 1) >>> 12 !== lo >>> 12) return false;
  const at = lo & 0xfff;
  return sameAsTranslated(ram, lo, copy.subarray(at, at + end - lo));
}

/** Clear the code-line marks of the page holding RAM offset `off`. */
/**
 * A store by CPU `c` to RAM offset [off, off+len) of the first region (within one page): drop
 * the translated blocks it overlaps, and make c's running block exit (Cpu.smc) when it dropped
 * any of c's. With several vCPUs (Cpu.peers) the code-line map is the machine's: the page's
 * lines are cleared once, then each vCPU drops the blocks the store overlaps and marks again
 * the lines of those it keeps.
 */
export function storeIntoCode(c: Cpu, off: number, len: number): void {
  const lines = c.codeLines;
  let owners = 0;
  for (let l = off >>> 6; l <= (off + len - 1) >>> 6; l++) owners |= lines[l]!;
  if (owners === 0) return;
  const peers = c.peers;
  if (peers === undefined) {
    // this thread's vCPU; other threads' vCPUs hear of it through their queues
    if (owners & c.codeBit && c.cache?.invalidate(off, len)) c.smc = 1;
    if (owners & ~c.codeBit) c.crossThread?.post(owners, off, len);
    return;
  }
  clearPageLines(lines, off);
  for (const p of peers) {
    if (p.cache?.invalidate(off, len, false) && p === c) c.smc = 1;
  }
}

/** storeIntoCode for RAM offsets [off, off+len) over any number of pages (a DMA write). */
export function storeRangeIntoCode(c: Cpu, off: number, len: number): void {
  const end = off + len;
  while (off < end) {
    const n = Math.min(end - off, 4096 - (off & 0xfff));
    storeIntoCode(c, off, n);
    off += n;
  }
}

export function clearPageLines(lines: Uint8Array, off: number): void {
  lines.fill(0, (off >>> 12) << 6, ((off >>> 12) + 1) << 6);
}
