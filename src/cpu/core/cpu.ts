/**
 * The software x86-64 CPU: architectural state, linear-memory access through a software TLB,
 * and the interpreter loop; it extends the lazy arithmetic flags (flags.ts). The instruction
 * decoder/executor lives in exec.ts, exec0f.ts and ops/ (free functions over this class);
 * system-level semantics (paging walk, segments, exception delivery, control registers, MSRs,
 * CPUID) are the system module's (src/cpu/system).
 *
 * Conventions (see src/cpu/state.ts): 64-bit values are (lo, hi) 32-bit halves; linear addresses
 * are signed-canonical numbers in 64-bit mode; a "vpn" is floor(linear / 4096).
 *
 * Its options are in options.ts, its power-on register values in CpuState.powerOn(). Beside
 * it: the software TLB (tlb.ts; this class reads its arrays directly on the memory-access hot
 * paths), the run loop (run.ts), and, when the CPU translates, the block cache
 * (translate/cache.ts) over the WebAssembly translator (cpu/wasm).
 */
import { CpuState, Mode, F64_ZERO } from '../state.js';
import { CpuFault, EventKind, type SystemHost, type WalkResult } from '../system-api.js';
import type { SimdMemory, SimdUnit } from '../simd-api.js';
import type { GuestMemory } from '../../machine/memory.js';
import type { Bus } from '../../machine/bus.js';
import type { CpuInterruptController } from '../../machine/interrupts.js';
import type { Clock } from '../../machine/clock.js';
import { TSC_FREQUENCY_HZ } from '../../machine/layout.js';
import { deliver } from '../system/interrupts.js';
import { computeMode } from '../system/control.js';
import type { FallbackCounts } from '../translate/block.js';
import { BlockCache, storeIntoCode, storeRangeIntoCode } from '../translate/cache.js';
import { Tlb, tlbFill } from './tlb.js';
import { LazyFlags } from './flags.js';
import { physRead, physWrite } from './phys.js';
import { simdMemoryOf } from './simd-memory.js';
import { checkIoWatch, checkWatch, watchedPages } from './debug.js';
import { IRQ_POLL, runSlice } from './run.js';
import { AtomicRam, TX_RETRY } from './atomic.js';
import { A_DF, A_FKIND, A_SSE_OK, arenaOf, arenasOf, type Arena } from '../wasm/arena.js';
import type { ModuleChannel } from '../wasm/share.js';
import { CrossThreadCode } from '../translate/cross-thread.js';
import { WasmBackend } from '../wasm/backend.js';
import {
  ACC_WRITE, ACC_USER, ACC_FETCH, ACC_IMPLICIT, CR4_SMAP, ARITH_MASK, TLB_MASK, P_SR, P_SW, P_UR, P_UW, P_SX, P_UX, CODE_PAGE_HASH, NO_TAG, codePageIndex,
} from './consts.js';
import { type CpuOptions, DEFAULT_JIT_THRESHOLD } from './options.js';

export { type CpuOptions, DEFAULT_JIT_THRESHOLD, CpuCoreError } from './options.js';

/** CR0.EM, CR0.TS and CR4.OSFXSR: whether SSE instructions run or fault. */
const CR0_EM = 1 << 2;
const CR0_TS = 1 << 3;
const CR4_OSFXSR = 1 << 9;
const RFLAGS_AC = 1 << 18;

const TWO32 = 4294967296;

export class Cpu extends LazyFlags implements SystemHost {
  readonly s: CpuState;
  /** The wasm arena holding RAM and the shared state, when the first RAM region lives in one. */
  readonly arena: Arena | undefined;
  readonly memory: GuestMemory;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly interrupts: CpuInterruptController;
  readonly clock: Clock;
  readonly simd: SimdUnit | undefined;
  /** SimdMemory view handed to the SIMD unit (paging/permissions of the current CPL). */
  readonly simdMem: SimdMemory;

  scratchHi = F64_ZERO;
  shutdown: string | undefined = undefined;
  retired = F64_ZERO;
  exitRequested = false;
  /** Debug hook: called for every exception raised by an instruction (before delivery). */
  onFault: ((vector: number, errorCode: number, rip: number) => void) | undefined = undefined;

  // first RAM region (fast path)
  ram: Uint8Array;
  ramView: DataView;
  ramBase: number;
  ramSize: number;

  // TLB (tlb.ts); its arrays, read directly on the hot paths
  readonly tlb: Tlb;
  readonly tlbTag: Float64Array;
  readonly tlbPerm: Uint8Array;
  /** Offset of the page in `ram`, or -1 for the slow path. */
  readonly tlbAddr: Float64Array;
  /** Physical address of the page. */
  readonly tlbPhys: Float64Array;
  readonly walkOut: WalkResult = { phys: 0, writable: false, user: false, nx: false, global: false };

  // ---- mode-derived fast-path fields (modeChanged) ----
  /** 64-bit mode. */
  long = false;
  /** Default operand size (2 or 4) and address size (2, 4 or 8). */
  defOp = 2;
  defAddr = 2;
  /** Stack address size: 2, 4 or 8. */
  stackSize = 2;
  /** Real or V86 mode (segment loads are base = sel << 4). */
  realLike = true;

  // ---- decoder scratch (one instruction at a time; reused) ----
  /** Instruction pointer while decoding (offset within CS, like rip). */
  ip = F64_ZERO;
  /** RIP at the start of the current instruction (fault restart point). */
  startRip = F64_ZERO;
  /** Fetch window: linear address of the current code page, and its offset in `ram` (-1 none). */
  fPage = NO_TAG;
  fOff = -1;
  opsize = 4;
  adsize = 8;
  opOverride = false;
  rex = 0;
  rexW = false;
  rexR = 0;
  rexX = 0;
  rexB = 0;
  seg = -1;
  rep = 0;
  lock = false;
  /**
   * Guest RAM shared with vCPUs on other threads: its atomic views (LOCKed instructions run as
   * transactions, atomic.ts); undefined when this CPU's RAM is its own.
   */
  readonly atomic: AtomicRam | undefined;
  /** A locked instruction runs: memory accesses take the transaction's path (txRead/txWrite). */
  tx = false;
  /** The transaction's operand: RAM offset (-1: none yet, or not atomic), linear address, size, value read. */
  private txOff = -1;
  private txLin = 0;
  private txSize = 0;
  private txLo = 0;
  private txHi = 0;
  mod = 0;
  reg = 0;
  rm = 0;
  eaLo = F64_ZERO;
  eaHi = F64_ZERO;
  eaSeg = 3;
  /** Base register of the memory operand (-1 none). */
  eaBase = -1;
  /** Result high half of the last 64-bit helper. */
  hi = F64_ZERO;
  pollCounter = IRQ_POLL;

  // ---- block translation (64-bit mode) ----
  /** The WebAssembly translator and its block cache, when this CPU translates (a wasm arena and a finite jitThreshold). */
  readonly wasm: WasmBackend | undefined;
  readonly cache: BlockCache | undefined;
  /**
   * Statistics: set to a Map to count what translated blocks hand to the interpreter (keyed by
   * translate/block.ts fallbackKey), for blocks translated from then on.
   */
  fallbackCounts: FallbackCounts | undefined = undefined;
  /** The run loop's view of `jit` (run.ts). */
  jitOn = false;
  /** Run translated blocks (set false to interpret only; stays false without a translator). */
  get jit(): boolean {
    return this.jitOn;
  }

  set jit(on: boolean) {
    this.jitOn = on && this.cache !== undefined;
  }

  /** Set when a store hit a line of translated code (the running block exits). */
  smc = 0;
  /** Per 64-byte line of the first RAM region: 1 when translated blocks were made from it. */
  codeLines: Uint8Array;
  /** This vCPU's bit in the code-line map (vCPU k: bit k & 7). */
  readonly codeBit: number;
  /** Guest RAM shared with vCPUs on other threads: stores into each other's code (cross-thread.ts). */
  readonly crossThread: CrossThreadCode | undefined;
  /** Host hook: free dropped translated code (CpuOptions.reclaim). */
  readonly reclaim: (() => void) | undefined;
  /**
   * Bumped whenever translations may have changed (TLB flush, INVLPG): the block successor
   * links (Block.s0/s1, and the wasm exit links) are valid only for the epoch (and CPL) they
   * were made in.
   */
  tlbEpoch = F64_ZERO;
  /**
   * Bumped only when global translations may have changed (INVLPG, a flush that drops global
   * pages): links into code on global pages (the kernel's) stay valid across CR3 writes.
   */
  globalEpoch = F64_ZERO;
  /**
   * Per linear page (hashed, codePageIndex): which link keys may lead to code there — bit 0
   * links under the TLB epoch, bit 1 links under the global epoch (into global pages). Links
   * can only lead to such pages, so an INVLPG of any other page (the kernel does hundreds per
   * fork, exec and exit: page-table, data and user pages) leaves the links of that class valid.
   * Set by the block cache as it links, never cleared (a stale bit costs only an extra bump).
   */
  readonly codePages = new Uint8Array(CODE_PAGE_HASH + 1);
  /** Exceptions raised by instructions (statistics). */
  faultsTaken = F64_ZERO;

  // ---- debug facilities (debug.ts) ----
  /** Linear pages holding an address a data breakpoint watches: kept off the TLB's fast paths. */
  watchPages: Set<number> | undefined = undefined;
  /** Data breakpoints (bit n: DRn) the running instruction hit. */
  dbgHits = 0;
  /** Set by MOV SS / POP SS: the single-step trap waits for the next instruction. */
  dbgInhibit = false;
  /** Software interrupts delivered (INT n, INT3, INTO): no single-step trap after one. */
  softInts = 0;
  /** Instructions interpreted by the run loop (outside translated blocks). */
  stepsRun = F64_ZERO;

  constructor(opts: CpuOptions) {
    super();
    this.memory = opts.memory;
    this.pio = opts.pio;
    this.mmio = opts.mmio;
    this.interrupts = opts.interrupts;
    this.clock = opts.clock;
    this.simd = opts.simd;
    const r0 = opts.memory.regions[0];
    const arena = r0 !== undefined && r0.bytes.byteOffset === 0 ? arenaOf(r0.bytes.buffer, opts.vcpu ?? 0) : undefined;
    this.arena = arena;
    this.s = new CpuState(arena ? { gpr: arena.gpr(), segBase: arena.segBase(), xmm: { buffer: arena.buffer, offset: arena.xmmOffset() } } : undefined);
    if (r0) {
      this.ram = r0.bytes;
      this.ramView = r0.view;
      this.ramBase = r0.base;
      this.ramSize = r0.size;
    } else {
      this.ram = new Uint8Array(0);
      this.ramView = new DataView(new ArrayBuffer(0));
      this.ramBase = 0;
      this.ramSize = 0;
    }
    const shared = r0?.bytes.buffer;
    this.atomic = shared instanceof SharedArrayBuffer ? new AtomicRam(shared, arena?.mutexIndex) : undefined;
    this.tlb = new Tlb(arena, this.ramBase, this.ramSize);
    this.tlbTag = this.tlb.tag;
    this.tlbPerm = this.tlb.perm;
    this.tlbAddr = this.tlb.addr;
    this.tlbPhys = this.tlb.phys;
    const freshArena = arena?.claim() ?? false;
    this.codeLines = arena ? arena.codeLines() : new Uint8Array(Math.ceil(this.ramSize / 64) + 1);
    if (arena && !freshArena) this.codeLines.fill(0);
    this.reclaim = opts.reclaim;
    this.codeBit = CrossThreadCode.bit(opts.vcpu ?? 0);
    // RAM shared with other threads: their stores into this vCPU's code come through a queue
    this.crossThread = arena?.shared ? new CrossThreadCode(arena.buffer as unknown as SharedArrayBuffer, arenasOf(arena.buffer).map((a) => a.base), opts.vcpu ?? 0) : undefined;
    const threshold = Math.max(1, opts.jitThreshold ?? DEFAULT_JIT_THRESHOLD);
    this.wasm = arena !== undefined && threshold !== Infinity ? new WasmBackend(this, arena, freshArena, opts.backgroundMerges ?? false) : undefined;
    this.cache = this.wasm !== undefined ? new BlockCache(this, this.wasm, this.codeLines, threshold) : undefined;
    this.jitOn = this.cache !== undefined;
    this.simdMem = simdMemoryOf(this);
    this.reset();
  }

  /** Power-on state: real mode at F000:FFF0. */
  reset(): void {
    const s = this.s;
    s.powerOn();
    this.setArith(0);
    this.simd?.reset(s);
    this.shutdown = undefined;
    this.flushTlb(false);
    this.modeChanged();
  }

  /**
   * Share translated code with the vCPUs of this memory on other threads (wasm/share.ts): before
   * this vCPU translates anything.
   */
  shareTranslations(channel: ModuleChannel): void {
    if (this.wasm !== undefined && this.arena !== undefined) this.wasm.shareWith(channel, this.arena.vcpu, arenasOf(this.arena.buffer).length);
  }

  requestExit(): void {
    this.exitRequested = true;
  }

  // ---- SystemHost: flags ---------------------------------------------------------------
  getRflags(): number {
    return ((this.s.rflagsRest & ~ARITH_MASK) | this.getArith() | 2) >>> 0;
  }

  setRflags(value: number, mask: number): void {
    const s = this.s;
    if (mask & ARITH_MASK) this.setArith((this.getArith() & ~mask) | (value & mask));
    const restMask = mask & ~ARITH_MASK;
    const oldIf = s.rflagsRest & 0x200;
    const oldVm = s.rflagsRest & 0x20000;
    s.rflagsRest = ((s.rflagsRest & ~restMask) | (value & restMask) | 2) & ~ARITH_MASK;
    if (!oldIf && s.rflagsRest & 0x200) this.pollCounter = 0;
    if (oldVm !== (s.rflagsRest & 0x20000)) this.modeChanged();
    if (restMask & 0x400) this.directionChanged();
    if (this.tlb.granted !== 0 && !this.userPagesOpen()) this.tlb.revokeGrants();
  }

  /**
   * SMAP's window: CR4.SMAP set, CPL < 3 and EFLAGS.AC set — explicit supervisor accesses may
   * reach user pages. The TLB's grants made while it is open are revoked when it closes (in
   * setRflags and modeChanged, which every AC or CPL change goes through; tlb.ts).
   */
  userPagesOpen(): boolean {
    const s = this.s;
    return (s.cr4 & CR4_SMAP) !== 0 && s.cpl < 3 && (s.rflagsRest & RFLAGS_AC) !== 0;
  }

  /**
   * RFLAGS.DF may have changed (CLD/STD, or any wholesale write through setRflags or
   * modeChanged): translated string instructions read it from the arena.
   */
  directionChanged(): void {
    if (this.arena !== undefined) this.arena.i32[A_DF >> 2] = (this.s.rflagsRest >> 10) & 1;
  }

  // ---- SystemHost: mode ----------------------------------------------------------------
  modeChanged(): void {
    const s = this.s;
    const mode = computeMode(s);
    this.long = mode === Mode.Long64;
    this.realLike = mode === Mode.Real || mode === Mode.V86;
    if (this.long) {
      this.defOp = 4;
      this.defAddr = 8;
      this.stackSize = 8;
    } else {
      const d = mode === Mode.Protected32 || mode === Mode.Compat32;
      this.defOp = d ? 4 : 2;
      this.defAddr = d ? 4 : 2;
      this.stackSize = !this.realLike && s.segAttr[2]! & 0x4000 ? 4 : 2;
    }
    if (mode === Mode.Real) s.cpl = 0;
    else if (mode === Mode.V86) s.cpl = 3;
    this.fPage = NO_TAG;
    this.fOff = -1;
    this.directionChanged();
    if (this.tlb.granted !== 0 && !this.userPagesOpen()) this.tlb.revokeGrants();
    // translated SSE instructions run only while SSE is enabled (else the interpreter faults)
    if (this.arena !== undefined) {
      this.arena.i32[A_SSE_OK >> 2] = (s.cr4 & CR4_OSFXSR) !== 0 && (s.cr0 & (CR0_TS | CR0_EM)) === 0 ? 1 : 0;
    }
    // no epoch bump: translated code depends on the CPL (part of every link key) and on paging,
    // whose changes flush the TLB; a CS reload at each privilege change must not unlink it all
  }

  /** Recompute the stack size after an SS load (called by the core after loadSegment(SS)). */
  ssChanged(): void {
    if (!this.long) this.stackSize = !this.realLike && this.s.segAttr[2]! & 0x4000 ? 4 : 2;
  }

  // ---- SystemHost: TLB ---------------------------------------------------------------------
  flushTlb(keepGlobal: boolean): void {
    this.tlb.flush(keepGlobal);
    this.fPage = NO_TAG;
    this.fOff = -1;
    this.tlbEpoch++;
    if (!keepGlobal) this.globalEpoch++;
  }

  invlpg(lin: number): void {
    const vpn = Math.floor(lin / 4096);
    this.tlb.invalidate(vpn);
    this.fPage = NO_TAG;
    this.fOff = -1;
    const links = this.codePages[codePageIndex(vpn)]!;
    if (links & 1) this.tlbEpoch++;
    if (links & 2) this.globalEpoch++;
  }

  /** TLB index of an instruction fetch at linear `rip` at the current CPL, translating on a miss (may raise #PF). */
  fetchTlbIndex(rip: number): number {
    const user = this.s.cpl === 3;
    return this.lookup(rip, user ? P_UX : P_SX, ACC_FETCH | (user ? ACC_USER : 0));
  }

  /**
   * TLB index for an access, translating on a miss. `need` is the P_* bit required. An implicit
   * access under SMAP never uses a user page's entry (its supervisor bits may be an AC grant):
   * the walk decides, and faults.
   */
  private lookup(lin: number, need: number, access: number): number {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    if (this.tlbTag[i] === vpn && this.tlbPerm[i]! & need && !(access & ACC_IMPLICIT && this.tlbPerm[i]! & P_UR && this.s.cr4 & CR4_SMAP)) return i;
    return tlbFill(this, lin, access);
  }

  // ---- physical slow path (phys.ts) -----------------------------------------------------
  physRead(phys: number, size: 1 | 2 | 4): number {
    return physRead(this.memory, this.mmio, phys, size);
  }

  physWrite(phys: number, size: 1 | 2 | 4, v: number): void {
    physWrite(this.memory, this.mmio, phys, size, v);
  }

  // ---- linear memory access (current privilege) -------------------------------------------
  private rperm(sup: boolean): number {
    return !sup && this.s.cpl === 3 ? P_UR : P_SR;
  }
  private wperm(sup: boolean): number {
    return !sup && this.s.cpl === 3 ? P_UW : P_SW;
  }
  private racc(sup: boolean): number {
    return sup ? ACC_IMPLICIT : this.s.cpl === 3 ? ACC_USER : 0;
  }

  read8(lin: number): number {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UR : P_SR)) {
      const a = this.tlbAddr[i]!;
      if (a >= 0) return this.ram[a + (lin & 0xfff)]!;
    }
    return this.readLin8(lin, false);
  }

  read16(lin: number): number {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    const o = lin & 0xfff;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UR : P_SR) && o <= 4094) {
      const a = this.tlbAddr[i]!;
      if (a >= 0) return this.ramView.getUint16(a + o, true);
    }
    return this.readLin16(lin, false);
  }

  read32(lin: number): number {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    const o = lin & 0xfff;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UR : P_SR) && o <= 4092) {
      const a = this.tlbAddr[i]!;
      if (a >= 0) return this.ramView.getUint32(a + o, true);
    }
    return this.readLin32(lin, false);
  }

  /** 64-bit read: returns lo, hi in this.hi (and scratchHi). */
  read64(lin: number): number {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    const o = lin & 0xfff;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UR : P_SR) && o <= 4088) {
      const a = this.tlbAddr[i]!;
      if (a >= 0) {
        this.hi = this.scratchHi = this.ramView.getUint32(a + o + 4, true);
        return this.ramView.getUint32(a + o, true);
      }
    }
    const lo = this.readLin64(lin, false);
    this.hi = this.scratchHi;
    return lo;
  }

  write8(lin: number, v: number): void {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UW : P_SW)) {
      const a = this.tlbAddr[i]!;
      if (a >= 0 && this.codeLines[(a + (lin & 0xfff)) >>> 6] === 0) {
        this.ram[a + (lin & 0xfff)] = v;
        return;
      }
    }
    this.writeLin8(lin, v, false);
  }

  write16(lin: number, v: number): void {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    const o = lin & 0xfff;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UW : P_SW) && o <= 4094) {
      const a = this.tlbAddr[i]!;
      if (a >= 0 && (this.codeLines[(a + o) >>> 6]! | this.codeLines[(a + o + 1) >>> 6]!) === 0) {
        this.ramView.setUint16(a + o, v, true);
        return;
      }
    }
    this.writeLin16(lin, v, false);
  }

  write32(lin: number, v: number): void {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    const o = lin & 0xfff;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UW : P_SW) && o <= 4092) {
      const a = this.tlbAddr[i]!;
      if (a >= 0 && (this.codeLines[(a + o) >>> 6]! | this.codeLines[(a + o + 3) >>> 6]!) === 0) {
        this.ramView.setInt32(a + o, v, true);
        return;
      }
    }
    this.writeLin32(lin, v, false);
  }

  write64(lin: number, lo: number, hi: number): void {
    const vpn = Math.floor(lin / 4096);
    const i = vpn & TLB_MASK;
    const o = lin & 0xfff;
    if (!this.tx && this.tlbTag[i] === vpn && this.tlbPerm[i]! & (this.s.cpl === 3 ? P_UW : P_SW) && o <= 4088) {
      const a = this.tlbAddr[i]!;
      if (a >= 0 && (this.codeLines[(a + o) >>> 6]! | this.codeLines[(a + o + 7) >>> 6]!) === 0) {
        this.ramView.setInt32(a + o, lo, true);
        this.ramView.setInt32(a + o + 4, hi, true);
        return;
      }
    }
    this.writeLin64(lin, lo, hi, false);
  }

  /** Check that [lin, lin+len) is writable (translating every page) before a multi-part store. */
  probeWrite(lin: number, len: number, sup = false): void {
    if (len <= 0) return;
    const need = this.wperm(sup);
    const acc = ACC_WRITE | this.racc(sup);
    const first = Math.floor(lin / 4096);
    const last = Math.floor((lin + len - 1) / 4096);
    for (let p = first; p <= last; p++) this.lookup(p === first ? lin : p * 4096, need, acc);
  }

  /** Check that [lin, lin+len) is readable. */
  probeRead(lin: number, len: number, sup = false): void {
    if (len <= 0) return;
    const need = this.rperm(sup);
    const acc = this.racc(sup);
    const first = Math.floor(lin / 4096);
    const last = Math.floor((lin + len - 1) / 4096);
    for (let p = first; p <= last; p++) this.lookup(p === first ? lin : p * 4096, need, acc);
  }

  // ---- SystemHost: linear access with explicit privilege (slow paths, page crossing) ------
  readLin8(lin: number, supervisor: boolean): number {
    if (this.tx) return this.txRead(lin, 1, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 1, false);
    const i = this.lookup(lin, this.rperm(supervisor), this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    if (a >= 0) return this.ram[a + (lin & 0xfff)]!;
    return this.physRead(this.tlbPhys[i]! + (lin & 0xfff), 1);
  }

  readLin16(lin: number, supervisor: boolean): number {
    if (this.tx) return this.txRead(lin, 2, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 2, false);
    if ((lin & 0xfff) > 4094) return this.readLin8(lin, supervisor) | (this.readLin8(lin + 1, supervisor) << 8);
    const i = this.lookup(lin, this.rperm(supervisor), this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    if (a >= 0) return this.ramView.getUint16(a + (lin & 0xfff), true);
    return this.physRead(this.tlbPhys[i]! + (lin & 0xfff), 2);
  }

  readLin32(lin: number, supervisor: boolean): number {
    if (this.tx) return this.txRead(lin, 4, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 4, false);
    if ((lin & 0xfff) > 4092) {
      let v = 0;
      for (let k = 3; k >= 0; k--) v = (v << 8) | this.readLin8(lin + k, supervisor);
      return v >>> 0;
    }
    const i = this.lookup(lin, this.rperm(supervisor), this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    if (a >= 0) return this.ramView.getUint32(a + (lin & 0xfff), true);
    return this.physRead(this.tlbPhys[i]! + (lin & 0xfff), 4);
  }

  readLin64(lin: number, supervisor: boolean): number {
    if (this.tx) return this.txRead(lin, 8, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 8, false);
    if ((lin & 0xfff) > 4088) {
      this.probeRead(lin, 8, supervisor);
      const lo = this.readLin32(lin, supervisor);
      this.scratchHi = this.readLin32(lin + 4, supervisor);
      return lo;
    }
    const i = this.lookup(lin, this.rperm(supervisor), this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    const o = lin & 0xfff;
    if (a >= 0) {
      this.scratchHi = this.ramView.getUint32(a + o + 4, true);
      return this.ramView.getUint32(a + o, true);
    }
    const p = this.tlbPhys[i]! + o;
    const lo = this.physRead(p, 4);
    this.scratchHi = this.physRead(p + 4, 4);
    return lo;
  }

  writeLin8(lin: number, v: number, supervisor: boolean): void {
    if (this.tx) return this.txWrite(lin, 1, v, 0, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 1, true);
    const i = this.lookup(lin, this.wperm(supervisor), ACC_WRITE | this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    if (a >= 0) {
      this.checkCode(a + (lin & 0xfff), 1);
      this.ram[a + (lin & 0xfff)] = v;
    }
    else this.physWrite(this.tlbPhys[i]! + (lin & 0xfff), 1, v & 0xff);
  }

  writeLin16(lin: number, v: number, supervisor: boolean): void {
    if (this.tx) return this.txWrite(lin, 2, v, 0, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 2, true);
    if ((lin & 0xfff) > 4094) {
      this.probeWrite(lin, 2, supervisor);
      this.writeLin8(lin, v & 0xff, supervisor);
      this.writeLin8(lin + 1, (v >>> 8) & 0xff, supervisor);
      return;
    }
    const i = this.lookup(lin, this.wperm(supervisor), ACC_WRITE | this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    if (a >= 0) {
      this.checkCode(a + (lin & 0xfff), 2);
      this.ramView.setUint16(a + (lin & 0xfff), v, true);
    }
    else this.physWrite(this.tlbPhys[i]! + (lin & 0xfff), 2, v & 0xffff);
  }

  writeLin32(lin: number, v: number, supervisor: boolean): void {
    if (this.tx) return this.txWrite(lin, 4, v, 0, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 4, true);
    if ((lin & 0xfff) > 4092) {
      this.probeWrite(lin, 4, supervisor);
      for (let k = 0; k < 4; k++) this.writeLin8(lin + k, (v >>> (8 * k)) & 0xff, supervisor);
      return;
    }
    const i = this.lookup(lin, this.wperm(supervisor), ACC_WRITE | this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    if (a >= 0) {
      this.checkCode(a + (lin & 0xfff), 4);
      this.ramView.setInt32(a + (lin & 0xfff), v, true);
    }
    else this.physWrite(this.tlbPhys[i]! + (lin & 0xfff), 4, v >>> 0);
  }

  writeLin64(lin: number, lo: number, hi: number, supervisor: boolean): void {
    if (this.tx) return this.txWrite(lin, 8, lo, hi, supervisor);
    if (this.watchPages !== undefined) checkWatch(this, lin, 8, true);
    if ((lin & 0xfff) > 4088) {
      this.probeWrite(lin, 8, supervisor);
      this.writeLin32(lin, lo, supervisor);
      this.writeLin32(lin + 4, hi, supervisor);
      return;
    }
    const i = this.lookup(lin, this.wperm(supervisor), ACC_WRITE | this.racc(supervisor));
    const a = this.tlbAddr[i]!;
    const o = lin & 0xfff;
    if (a >= 0) this.checkCode(a + o, 8);
    if (a >= 0) {
      this.ramView.setInt32(a + o, lo, true);
      this.ramView.setInt32(a + o + 4, hi, true);
    } else {
      const p = this.tlbPhys[i]! + o;
      this.physWrite(p, 4, lo >>> 0);
      this.physWrite(p + 4, 4, hi >>> 0);
    }
  }

  // ---- locked instructions on several threads (atomic.ts) -------------------------------
  /**
   * A locked instruction reads its memory operand: an atomic load, remembered for the
   * compare-exchange of its write. The page must be writable (a locked read-modify-write faults
   * as a write). Anything else (a second operand, MMIO, a split lock) is a plain access.
   */
  private txRead(lin: number, size: number, sup: boolean): number {
    const at = this.atomic!;
    this.tx = false; // plain from here on, unless it is the operand
    try {
      const o = lin & 0xfff;
      if (this.txOff < 0 && o + size <= 4096) {
        const i = this.lookup(lin, this.wperm(sup), ACC_WRITE | this.racc(sup));
        const a = this.tlbAddr[i]!;
        if (a >= 0 && at.covers(a + o, size)) {
          const off = a + o;
          const lo = at.load(off, size);
          this.txOff = off;
          this.txLin = lin;
          this.txSize = size;
          this.txLo = lo;
          this.txHi = this.scratchHi = size === 8 ? at.hi : 0;
          return lo;
        }
      }
      switch (size) {
        case 1: return this.readLin8(lin, sup);
        case 2: return this.readLin16(lin, sup);
        case 4: return this.readLin32(lin, sup);
        default: return this.readLin64(lin, sup);
      }
    } finally {
      this.tx = true;
    }
  }

  /**
   * A locked instruction writes: to the operand it read, a compare-exchange against the value
   * read (TX_RETRY when another thread changed it meanwhile); anything else plainly.
   */
  private txWrite(lin: number, size: number, lo: number, hi: number, sup: boolean): void {
    const off = this.txOff;
    if (off >= 0 && lin === this.txLin && size === this.txSize) {
      if ((this.codeLines[off >>> 6]! | this.codeLines[(off + size - 1) >>> 6]!) !== 0) this.checkCode(off, size);
      if (!this.atomic!.exchange(off, size, this.txLo, this.txHi, lo, hi)) throw TX_RETRY;
      this.txOff = -1;
      return;
    }
    this.tx = false;
    try {
      switch (size) {
        case 1: this.writeLin8(lin, lo, sup); return;
        case 2: this.writeLin16(lin, lo, sup); return;
        case 4: this.writeLin32(lin, lo, sup); return;
        default: this.writeLin64(lin, lo, hi, sup);
      }
    } finally {
      this.tx = true;
    }
  }

  /** Start (true) or end (false) a locked instruction's transaction. */
  txBegin(on: boolean): void {
    this.tx = on;
    this.txOff = -1;
  }

  // ---- instruction fetch --------------------------------------------------------------
  /** Linear address of CS:ip. */
  private fetchLin(): number {
    return this.long ? this.ip : (this.s.segBase[1]! + this.ip) >>> 0;
  }

  fetch8(): number {
    const lin = this.long ? this.ip : (this.s.segBase[1]! + this.ip) >>> 0;
    const d = lin - this.fPage;
    if (d >= 0 && d < 4096 && this.fOff >= 0) {
      this.ip++;
      return this.ram[this.fOff + d]!;
    }
    return this.fetch8Slow();
  }

  private fetch8Slow(): number {
    const lin = this.fetchLin();
    const s = this.s;
    const user = s.cpl === 3;
    const i = this.lookup(lin, user ? P_UX : P_SX, ACC_FETCH | (user ? ACC_USER : 0));
    this.fPage = lin - (lin & 0xfff);
    const a = this.tlbAddr[i]!;
    this.fOff = a;
    this.ip++;
    if (this.ip - this.startRip > 15) throw new CpuFault(13, 0);
    if (a >= 0) return this.ram[a + (lin & 0xfff)]!;
    return this.physRead(this.tlbPhys[i]! + (lin & 0xfff), 1);
  }

  fetch16(): number {
    const lin = this.long ? this.ip : (this.s.segBase[1]! + this.ip) >>> 0;
    const d = lin - this.fPage;
    if (d >= 0 && d < 4095 && this.fOff >= 0) {
      this.ip += 2;
      return this.ramView.getUint16(this.fOff + d, true);
    }
    const b0 = this.fetch8();
    return b0 | (this.fetch8() << 8);
  }

  /** Fetch a 32-bit value (signed int32). */
  fetch32(): number {
    const lin = this.long ? this.ip : (this.s.segBase[1]! + this.ip) >>> 0;
    const d = lin - this.fPage;
    if (d >= 0 && d < 4093 && this.fOff >= 0) {
      this.ip += 4;
      return this.ramView.getInt32(this.fOff + d, true);
    }
    const b0 = this.fetch8();
    const b1 = this.fetch8();
    const b2 = this.fetch8();
    return b0 | (b1 << 8) | (b2 << 16) | (this.fetch8() << 24);
  }

  // ---- SystemHost: ports, TSC ------------------------------------------------------------
  portRead(port: number, size: 1 | 2 | 4): number {
    if (this.s.dr[7]! & 0xff) checkIoWatch(this, port & 0xffff, size);
    return this.pio.read(port & 0xffff, size);
  }

  portWrite(port: number, size: 1 | 2 | 4, value: number): void {
    if (this.s.dr[7]! & 0xff) checkIoWatch(this, port & 0xffff, size);
    this.pio.write(port & 0xffff, size, value >>> 0);
  }

  apicBaseChanged(value: number): void {
    this.interrupts.apicBaseChanged?.(value);
  }

  readTsc(): number {
    const t = Math.floor(this.clock.nowNs() * (TSC_FREQUENCY_HZ / 1e9)) + this.s.tscOffset;
    this.scratchHi = Math.floor(t / TWO32) >>> 0;
    return t >>> 0;
  }

  // ---- the run loop (run.ts) ----------------------------------------------------------------
  /** Run up to `budget` instructions (fewer at an exit request, a halt or a shutdown); returns how many ran. */
  run(budget: number): number {
    return runSlice(this, budget);
  }

  // ---- translated code ----------------------------------------------------------------------
  /** A store to RAM offset [off, off+len) (within one page): drop translated blocks it overlaps. */
  checkCode(off: number, len: number): void {
    storeIntoCode(this, off, len);
  }

  /**
   * The vCPUs of one machine (this one among them), when there are several: they share guest
   * RAM and the code-line map, so a store into code drops it in every vCPU's block cache
   * (checkCode) and a vCPU that drops all its blocks leaves the others' lines marked.
   */
  peers: readonly Cpu[] | undefined;

  /** Join the other vCPUs of this machine (before any code is translated): see `peers`. */
  joinPeers(peers: readonly Cpu[]): void {
    this.peers = peers;
    this.yieldOnPause();
  }

  /** PAUSE ends the slice (spinWait): another vCPU, or the thread serving them, must run. */
  yieldOnPause(): void {
    this.pauseEndsSlice = true;
    this.wasm?.yieldOnPause();
  }

  private pauseEndsSlice = false;

  /**
   * Other threads may raise this vCPU's stop word in the arena (an application processor on
   * its own thread wants the devices this thread serves): a translated block that left because
   * of it ends the slice.
   */
  acceptKicks(): void {
    this.wasm?.acceptKicks();
    this.kickable = this.wasm !== undefined;
  }

  /** acceptKicks was called: the interpreter's interrupt polls look at the stop word too. */
  kickable = false;

  /** Raised by another thread (acceptKicks)? `lower`: lower it, the engine serves them now. */
  kicked(lower = false): boolean {
    return this.wasm?.kicked(lower) ?? false;
  }

  /** Another vCPU cleared the shared code-line map (BlockCache.dropAll): mark this one's lines again. */
  markCodeLines(): void {
    this.cache?.markAll();
  }

  /**
   * PAUSE (a spin-wait hint): with several vCPUs taking turns on one host thread, the one that
   * spins ends its slice so the vCPU it waits for runs.
   */
  spinWait(): void {
    if (!this.pauseEndsSlice) return;
    this.exitRequested = true;
    this.spun = true;
  }

  /** This vCPU ended a slice spinning on PAUSE (the engine reads and clears it). */
  spun = false;

  /** Physical memory [addr, addr+len) was written behind the CPU's back (DMA): drop stale code. */
  notifyPhysWrite(addr: number, len: number): void {
    const off = Math.max(0, addr - this.ramBase);
    storeRangeIntoCode(this, off, Math.min(addr - this.ramBase + len, this.ramSize) - off);
  }

  /**
   * The architectural state was replaced wholesale (a snapshot restored into `s`): forget
   * everything derived from the old state — translated blocks and their links, the TLBs, the
   * fetch window, mode-derived fields, a lazy-flag record left in the wasm arena — and poll for
   * interrupts before the next instruction.
   */
  discardDerivedState(): void {
    if (this.arena !== undefined) this.arena.i32[A_FKIND >> 2] = -1; // the Cpu's flag fields hold the flags
    this.cache?.discard();
    this.watchPages = watchedPages(this.s);
    this.flushTlb(false);
    this.modeChanged();
    this.shutdown = undefined;
    this.smc = 0;
    this.pollCounter = 1;
  }

  /** DR0-DR3 or DR7 changed: recompute the watched pages and keep them off the TLB's fast paths. */
  debugChanged(): void {
    const before = this.watchPages;
    this.watchPages = watchedPages(this.s);
    if (before !== undefined || this.watchPages !== undefined) this.flushTlb(false);
  }

  /** Software interrupt / trap raised by an instruction (INT n, INT3, INTO): deliver now. */
  softInt(vector: number, kind: EventKind, returnRip: number): void {
    this.softInts++;
    deliver(this, vector, -1, kind, returnRip);
  }
}
