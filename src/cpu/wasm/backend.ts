/**
 * The WebAssembly back end of the block translator, host side: compiles traces with
 * translate.ts, instantiates them against the arena's memory, and implements what blocks import
 * (slow memory accesses through the Cpu, the interpreter for instructions not generated inline,
 * the current flags, exceptions). Whenever the host gets control from a block it first copies the
 * lazy-flag record the block may have left in the arena into the Cpu's flag fields.
 */
import type { Cpu } from '../core/cpu.js';
import { Block, fb } from '../translate/block.js';
import { buildTrace } from '../translate/trace.js';
import { step } from '../core/exec.js';
import { F_EAGER } from '../core/consts.js';
import { CpuFault } from '../system-api.js';
import { A_ENTRIES, A_EXIT, A_GKEY, A_VARS_END, A_FA, A_FB, A_FCIN, A_FKIND, A_FRES, A_FSZ, A_KEY, A_RIP, A_SCRATCH, A_STOP, A_XTMP, MAX_LINKS, MAX_SLOTS, icHash, icOffset, linksOffset, wtlbAddrOffset, wtlbOffset, type Arena } from './arena.js';
import { blockModule, div128Body, translateTrace } from './translate.js';
import { arithFlagsBody } from './flags.js';
import { relinkBody } from './relink.js';
import { BLOCK_TYPE, IMPORTS, SYS_CLAC, SYS_CLD, SYS_CLI, SYS_RDTSC, SYS_RDTSCP, SYS_RFLAGS, SYS_STAC, SYS_CR, SYS_SREG, SYS_STD, SYS_STI, SYS_SWAPGS, type BlockLayout } from './codegen.js';
import { readCr } from '../system/control.js';
import { iopl } from '../core/ops/system.js';
import { swapgs } from '../system/syscall.js';
import { features } from '../features.js';
import { Flag } from '../state.js';
import { assembleModule, FuncBody, T } from './encoder.js';
import { BlockDirectory, sameAsTranslated, type ModuleChannel, type SharedBlockInfo, type SharedModule } from './share.js';

const TWO47 = 140737488355328;
const I_FKIND = A_FKIND >> 2, I_FSZ = A_FSZ >> 2, I_FCIN = A_FCIN >> 2, I_STOP = A_STOP >> 2;
const I_FA = A_FA >> 2, I_FB = A_FB >> 2, I_FRES = A_FRES >> 2, I_SCRATCH = A_SCRATCH >> 2, I_XTMP = A_XTMP >> 2, D_RIP = A_RIP >> 3;
const I_KEY = A_KEY >> 2, I_GKEY = A_GKEY >> 2, I_EXIT = A_EXIT >> 2;
/** Table slots for block functions; when they or the exit links run out, all translations are dropped. */
/**
 * The ceiling on translated code: modules and wasm bytes compiled since the last time every
 * block was dropped. V8 spends ~20 KiB of host memory per module however small, so the module
 * count is what bounds memory; a boot of the default guest compiles about a quarter of it.
 */
const MAX_MODULES = 8192;
const MAX_CODE_BYTES = 128 << 20;
/** Modules whose blocks were all invalidated, before the host is asked to free them (garbageDue). */
const GARBAGE_MODULES = 512;
/**
 * Compiled blocks are compiled again, MERGE_AT at a time, into one module (same bytes, same
 * table slots, so every link stays): V8 gives each module code pages of its own, and chains
 * jumping across thousands of small modules spend their time in the host's instruction-cache
 * and TLB misses. A transition between blocks measured 185 ns across 2,000 one-function
 * modules and 30 ns with all 2,000 in one; 200 × /bin/true in the default guest went from
 * 12.0–14.6 s to 7.3–11.6 s (AMD EPYC, interleaved runs).
 */
const MERGE_AT = 256;
/** Merges compiling in the background at once; past that, a merge compiles on the CPU's thread. */
const MAX_PENDING_MERGES = 4;

/**
 * Keys under which exit links and indirect-branch entries are valid: the TLB epoch and the CPL
 * for code on ordinary pages, the global epoch (bit 2 set) for code on global pages, whose
 * translations survive CR3 writes (context switches must not unlink the kernel).
 */
function linkKey(c: Cpu): number {
  return ((c.tlbEpoch * 8) | 0) + c.s.cpl;
}

function globalKey(c: Cpu): number {
  return ((c.globalEpoch * 8) | 0) + 4 + c.s.cpl;
}

let labelBlocks = false;

/**
 * Name each block function after the guest address it starts at (`b<rip in hex>`), in its
 * module's name section: host profiles (perf with V8's --perf-basic-prof) then say which guest
 * code the time went to. Off by default: the names cost bytes and compile time.
 */
export function labelTranslatedBlocks(on: boolean): void {
  labelBlocks = on;
}

export class WasmBackend {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;
  private readonly imports: WebAssembly.Imports;
  /** The runtime module's functions, in IMPORTS order: every block module's table holds them. */
  private readonly runtime: unknown[];
  private readonly links: Int32Array;
  /** Per table slot, the RAM offset its block starts at (the runtime's relink checks links against it). */
  private readonly slotPhys: Float64Array;
  /**
   * Direct exits jump through an entry of their own module's table (translate.ts blockModule):
   * per exit, that table (while its module lives), the entry's index, the slot whose function
   * the entry holds (0: the stub) and the module the entry belongs to; per slot, the exits whose
   * entries may hold its function (checked against exitTarget when used), so that retiring or
   * merging a block reaches every entry that jumps to it.
   */
  private exitTable: (WebAssembly.Table | undefined)[] = [];
  // (grown with the exits in use: three arrays of MAX_LINKS would cost every VM 12 MiB)
  private exitIdx: Int32Array = new Int32Array(4096);
  private exitTarget: Int32Array = new Int32Array(4096);
  private exitMod: Int32Array = new Int32Array(4096);
  private readonly incoming = new Map<number, number[]>();
  /** Per module, the exits it was instantiated with. */
  private modExits: (number[] | undefined)[] = [];
  private readonly layout: BlockLayout;
  private readonly icF64: Float64Array;
  private readonly icI32: Int32Array;
  private readonly table: WebAssembly.Table;
  /** A block function that only returns to the host: what retired slots hold. */
  private readonly stub: unknown;
  private readonly enter: (needR: number, needW: number, slot: number) => number;
  private nextSlot = 1;
  private nextExit = 1;
  /** Per table slot: the module its block came from (index since the last reset). */
  private readonly slotModule = new Int32Array(MAX_SLOTS);
  /** Per module: blocks not yet retired. */
  private readonly moduleLive = new Int32Array(MAX_MODULES + 1);
  private modules = 0;
  private codeBytes = 0;
  /** Blocks waiting to be merged into one module: their table slots and function bodies. */
  private mergeSlots: number[] = [];
  private mergeBodies: FuncBody[] = [];
  /** With sharing, the shared ids of the blocks waiting to be merged. */
  private mergeIds: number[] = [];
  /**
   * Sharing with the other vCPUs' threads (shareWith, share.ts): the channel, this vCPU's index,
   * the blocks the others made, and per table slot the shared id of its block.
   */
  private share: { channel: ModuleChannel; vcpu: number; dir: BlockDirectory; slotId: Float64Array; nextId: number } | undefined;
  /** Per module: the posted module it instantiates (blocks taken from another thread). */
  private modShared: (SharedModule | undefined)[] = [];
  /** This vCPU's exits are numbered in [exitLo, exitHi) (with sharing, a range of its own). */
  private exitLo = 1;
  private exitHi = MAX_LINKS;
  /** Blocks taken from other threads (statistics). */
  adoptedBlocks = 0;
  private deadModules = 0;
  /** Modules compiled in all, and of those the merged ones (statistics). */
  modulesCompiled = 0;
  modulesMerged = 0;

  /** Bumped by reset(): a merge that was compiling in the background for an earlier generation is dropped. */
  private generation = 0;
  /** Merges being compiled in the background (at most MAX_PENDING_MERGES; more merge here). */
  private pendingMerges = 0;
  /** What went wrong putting a background merge in place, thrown by the next compile. */
  private mergeError: unknown;

  /**
   * `freshArena`: no Cpu used the arena before (Arena.claim), so its tables are still zero.
   * `backgroundMerges`: see CpuOptions.backgroundMerges.
   */
  constructor(private readonly cpu: Cpu, readonly arena: Arena, freshArena = false, private readonly backgroundMerges = false) {
    const buf = arena.buffer;
    this.i32 = arena.i32;
    this.u32 = new Uint32Array(buf, arena.base, A_VARS_END / 4);
    this.f64 = arena.f64;
    this.i32[I_FKIND] = -1;
    this.links = arena.links();
    this.slotPhys = arena.slotPhys();
    // with threads, block code addresses the state area through an imported global, so that a
    // module compiled on one vCPU's thread runs on the others (share.ts)
    const relative = arena.shared;
    const sb = relative ? 0 : arena.base;
    this.layout = { base: sb, links: sb + linksOffset(), ic: sb + icOffset(), wtlb: sb + wtlbOffset(), wtlbAddr: sb + wtlbAddrOffset(), codeLines: arena.codeLinesBase, atomic: arena.shared, relative };
    this.icF64 = arena.icF64();
    this.icI32 = arena.icI32();
    if (!freshArena) {
      // the arena served an earlier Cpu: its links name slots of another table
      this.links.fill(0);
      this.icI32.fill(0);
    }
    this.table = new WebAssembly.Table({ initial: 1024, element: 'anyfunc' });
    const c = cpu;
    const i32 = this.i32;
    const stopNow = (): boolean => {
      const stop = c.smc !== 0 || c.exitRequested;
      if (stop) i32[I_STOP] = 1;
      return stop;
    };
    const canonical = (lin: number, size: number): void => {
      if (lin < -TWO47 || lin >= TWO47) throw new CpuFault(size & 0x100 ? 12 : 13, 0);
    };
    const hostFns: Record<string, WebAssembly.ImportValue> = {
      rd: (lin: number, size: number, rip: number): number => {
        this.syncFlags(false);
        c.startRip = rip;
        canonical(lin, size);
        let v = 0;
        switch (size & 0xff) {
          case 1: v = c.read8(lin); break;
          case 2: v = c.read16(lin); break;
          case 4: v = c.read32(lin); break;
          default:
            i32[I_SCRATCH] = c.read64(lin);
            i32[I_SCRATCH + 1] = c.hi;
        }
        stopNow();
        return v;
      },
      wr: (lin: number, size: number, lo: number, hi: number, rip: number): number => {
        this.syncFlags(false);
        c.startRip = rip;
        canonical(lin, size);
        switch (size & 0xff) {
          case 1: c.write8(lin, lo & 0xff); break;
          case 2: c.write16(lin, lo & 0xffff); break;
          case 4: c.write32(lin, lo); break;
          default: c.write64(lin, lo, hi);
        }
        return stopNow() ? 1 : 0;
      },
      step: (rip: number, next: number, key: number): number => {
        if (c.fallbackCounts !== undefined && key !== 0) fb(c.fallbackCounts, key);
        this.syncFlags();
        c.startRip = rip;
        c.s.rip = rip;
        step(c);
        this.loadFlags();
        this.f64[D_RIP] = c.s.rip;
        i32[I_KEY] = linkKey(c);
        i32[I_GKEY] = globalKey(c);
        // STI (or MOV SS) opened an interrupt shadow: leave the block, so the run loop takes a
        // pending interrupt right after the next instruction
        return stopNow() || c.s.rip !== next || c.s.interruptShadow ? 1 : 0;
      },
      // the runtime module computes the flags from the arena's record itself (flags.ts); this
      // is its way out when the record is the host's
      flags: (): number => {
        this.loadFlags();
        return c.getArith();
      },
      sys: (op: number): number => {
        const s = c.s;
        if (op >= SYS_CR) {
          const n = op - SYS_CR;
          // CPL 3, or a CR that does not exist: the interpreter raises the #GP or #UD
          if (s.cpl !== 0 || (n !== 0 && n !== 2 && n !== 3 && n !== 4 && n !== 8)) return 1;
          i32[I_SCRATCH] = readCr(c, n);
          i32[I_SCRATCH + 1] = c.scratchHi;
          return 0;
        }
        if (op >= SYS_SREG) return s.segSel[op - SYS_SREG]!;
        switch (op) {
          case SYS_CLI:
            if (!iopl(c)) return 1;
            c.setRflags(0, Flag.IF);
            return 0;
          case SYS_STI:
            // an interrupt waiting for IF: the interpreter opens the one-instruction shadow and
            // the block leaves after it, so the run loop takes the interrupt where it must.
            // Nothing waiting: no shadow to keep (nothing can arrive while the block runs)
            if (!iopl(c)) return 1;
            if (s.rflagsRest & Flag.IF) return 0;
            if (c.interrupts.hasInterrupt()) return 1;
            c.setRflags(Flag.IF, Flag.IF);
            return 0;
          case SYS_CLD:
          case SYS_STD:
            c.setRflags(op === SYS_STD ? Flag.DF : 0, Flag.DF);
            return 0;
          case SYS_CLAC:
          case SYS_STAC:
            if (!features.smap || s.cpl !== 0) return 1;
            c.setRflags(op === SYS_STAC ? Flag.AC : 0, Flag.AC);
            return 0;
          case SYS_SWAPGS:
            if (!c.long || s.cpl !== 0) return 1;
            swapgs(c);
            return 0;
          case SYS_RDTSC:
          case SYS_RDTSCP:
            if ((s.cr4 & 4 && s.cpl !== 0) || (op === SYS_RDTSCP && !features.rdtscp)) return 1; // #GP (CR4.TSD) or #UD
            i32[I_SCRATCH] = c.readTsc();
            i32[I_SCRATCH + 1] = c.scratchHi;
            if (op === SYS_RDTSCP) i32[I_XTMP] = s.tscAux;
            return 0;
          case SYS_RFLAGS:
            this.syncFlags(false);
            return c.getRflags() & 0xfcffff;
          default:
            return 1;
        }
      },
      fault: (vector: number, rip: number): void => {
        this.syncFlags();
        c.startRip = rip;
        throw new CpuFault(vector, 0);
      },
    };
    // The runtime module: the only one that imports host (JavaScript) functions and the big
    // table, so V8 compiles the JS call wrappers once, not per block. Its forwarders and
    // chain(needR, needW, n, slot) — a tail call of table[slot] — fill the small runtime table
    // that blocks call through; the stub only returns to the host (what retired slots hold).
    const host = IMPORTS.filter((f) => f.module === 'h');
    const forwarders = host.map((f, i) => {
      if (f.name === 'flags') return arithFlagsBody(arena.base, i);
      const fb = new FuncBody(f.params, f.results);
      f.params.forEach((_t, p) => fb.get(p));
      fb.call(i);
      return fb;
    });
    const chain = new FuncBody([T.I32, T.I32, T.I32, T.I32], [T.I32]);
    chain.get(0).get(1).get(2).get(3).tailCallIndirect(0);
    const stub = new FuncBody(BLOCK_TYPE.params, BLOCK_TYPE.results);
    // the exit (or indirect branch) that led here is in A_EXIT already: the host relinks it
    stub.get(2);
    // enter(needR, needW, slot): how the host starts a block (one JS call wrapper for all)
    const enter = new FuncBody([T.I32, T.I32, T.I32], [T.I32]);
    enter.get(0).get(1).i32(0).get(2).tailCallIndirect(0);
    const nf = host.length + forwarders.length;
    const names: Record<string, number> = { chain: nf, stub: nf + 1, enter: nf + 2, div128: nf + 3, relink: nf + 4 };
    host.forEach((f, i) => (names[f.name] = host.length + i));
    const bytes = assembleModule(host, [...forwarders, chain, stub, enter, div128Body(arena.base), relinkBody(arena.base)], names, [BLOCK_TYPE], 't', undefined, arena.shared);
    const exp = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { m: arena.memory, t: this.table }, h: hostFns }).exports;
    this.stub = exp.stub;
    this.enter = exp.enter as (needR: number, needW: number, slot: number) => number;
    this.table.set(0, this.stub);
    this.runtime = IMPORTS.map((f) => exp[f.name]);
    this.imports = { e: relative ? { m: arena.memory, b: new WebAssembly.Global({ value: 'i32', mutable: false }, arena.base) } : { m: arena.memory } };
  }

  /**
   * The last block went on at `rip`, where the block in `slot` starts: link the exit it left
   * through to it, or, when that exit was an indirect branch, enter it in the indirect-branch
   * cache (both valid under the current key: the global one for code on a global page).
   */
  link(slot: number, rip: number, global: boolean): void {
    const e = this.i32[I_EXIT]!;
    const key = this.i32[global ? I_GKEY : I_KEY]!;
    if (e !== 0) {
      this.links[2 * e] = slot;
      this.links[2 * e + 1] = key;
      const t = this.exitTable[e];
      if (this.exitTarget[e] !== slot && t !== undefined) {
        t.set(this.exitIdx[e]!, this.table.get(slot));
        this.exitTarget[e] = slot;
        const inc = this.incoming.get(slot);
        if (inc === undefined) this.incoming.set(slot, [e]);
        else inc.push(e);
      }
      return;
    }
    const h = icHash(rip);
    this.icF64[2 * h] = rip;
    this.icI32[4 * h + 2] = key;
    this.icI32[4 * h + 3] = slot;
  }

  /** A block was invalidated: nothing may jump into it any more. */
  retire(slot: number): void {
    this.table.set(slot, this.stub);
    this.repoint(slot, this.stub);
    this.incoming.delete(slot);
    const m = this.slotModule[slot]!;
    if (m !== 0 && --this.moduleLive[m]! === 0) this.moduleDied(m);
    this.slotModule[slot] = 0;
  }

  /** The exits linked to `slot` jump to fn (its new code, or the stub: 0 as their target then). */
  private repoint(slot: number, fn: unknown): void {
    const inc = this.incoming.get(slot);
    if (inc === undefined) return;
    const stub = fn === this.stub;
    for (const e of inc) {
      if (this.exitTarget[e] !== slot) continue;
      this.exitTable[e]?.set(this.exitIdx[e]!, fn);
      if (stub) this.exitTarget[e] = 0;
    }
  }

  /**
   * Module m has no live block any more: forget the tables of its exits still in it (a table
   * holds its instance alive).
   */
  private moduleDied(m: number): void {
    this.deadModules++;
    const sm = this.modShared[m];
    if (sm !== undefined) {
      sm.inst = undefined; // instantiated again when another of its blocks is taken
      this.modShared[m] = undefined;
    }
    const exits = this.modExits[m];
    if (exits === undefined) return;
    for (const e of exits) {
      if (this.exitMod[e] !== m) continue;
      this.exitTable[e] = undefined;
      this.exitTarget[e] = 0;
      this.exitMod[e] = 0;
    }
    this.modExits[m] = undefined;
  }

  /**
   * Share compiled modules with the other vCPUs' threads (share.ts): vCPU `vcpu` of `vcpus`
   * numbers its exits in a range of its own, posts every module it compiles or merges, and
   * takes the blocks the others post. Call before the first block is compiled.
   */
  shareWith(channel: ModuleChannel, vcpu: number, vcpus: number): void {
    if (!this.layout.relative) throw new Error('shareWith: block code must address the state area relatively (a shared arena)');
    const span = Math.floor(MAX_LINKS / vcpus);
    this.exitLo = Math.max(1, vcpu * span);
    this.exitHi = (vcpu + 1) * span;
    this.nextExit = this.exitLo;
    this.share = { channel, vcpu, dir: new BlockDirectory(), slotId: new Float64Array(MAX_SLOTS), nextId: 0 };
  }

  /** Does this backend share modules with other threads? */
  get sharing(): boolean {
    return this.share !== undefined;
  }

  /**
   * Take in what the other threads posted. True when one of them restarted its exit numbering:
   * the caller must then drop every block (some may use those exits).
   */
  receive(): boolean {
    const sh = this.share;
    if (sh === undefined) return false;
    let restart = false;
    for (let m = sh.channel.receive(); m !== undefined; m = sh.channel.receive()) {
      if (m.kind === 'restart') {
        sh.dir.forgetFrom(m.from);
        restart = true;
      } else if (m.kind === 'module') {
        sh.dir.addModule({ module: m.module, exits: m.exits }, m.blocks);
      } else this.takeMerge({ module: m.module, exits: m.exits }, m.ids);
    }
    return restart;
  }

  /** Another thread merged blocks: the ones this thread runs move to the merged module too. */
  private takeMerge(sm: SharedModule, ids: readonly number[]): void {
    const sh = this.share!;
    sh.dir.moveToMerged(sm, ids);
    const moves: [number, number][] = [];
    ids.forEach((id, i) => {
      const slot = sh.dir.adopted.get(id);
      if (slot !== undefined && this.slotModule[slot] !== 0 && sh.slotId[slot] === id) moves.push([slot, i]);
    });
    if (moves.length === 0 || !this.hasRoom()) return;
    const { exports, mod } = this.instantiateShared(sm, moves.length);
    for (const [slot, i] of moves) this.moveSlot(slot, (exports[`g${i}`] as WebAssembly.Global).value, mod);
  }

  /** Instantiate a module another thread posted, `live` of its blocks in use here. */
  private instantiateShared(sm: SharedModule, live: number): { exports: Record<string, unknown>; mod: number } {
    if (sm.exits.length > 0) this.fitExits(Math.max(...sm.exits)); // (exits of another vCPU's range)
    const { inst, mod } = this.load(sm.module, sm.exits, live);
    sm.inst = { exports: inst.exports, mod };
    this.modShared[mod] = sm;
    this.share!.dir.noteInstance(sm);
    return sm.inst;
  }

  /** A block another thread made, for linear rip at RAM offset off (its bytes still to be checked), if any. */
  adopt(ram: Uint8Array, rip: number, off: number): { block: Block; bytes: Uint8Array } | undefined {
    const sh = this.share;
    if (sh === undefined) return undefined;
    const e = sh.dir.find(rip, off);
    if (e === undefined) return undefined;
    const info = e.info;
    if (!sameAsTranslated(ram, info.lo, info.bytes)) {
      sh.dir.forget(e); // the code changed since
      return undefined;
    }
    const sm = e.src;
    if (sm.inst === undefined && !this.hasRoom()) return undefined;
    const { exports, mod } = sm.inst ?? this.instantiateShared(sm, 0);
    this.moduleLive[mod]++;
    const b = this.block((exports[`g${e.idx}`] as WebAssembly.Global).value, rip, off, info.lo, info.end, info.n, mod);
    sh.slotId[b.slot] = info.id;
    sh.dir.adopted.set(info.id, b.slot);
    this.adoptedBlocks++;
    return { block: b, bytes: info.bytes };
  }

  /** Is there a block another thread made for linear rip at RAM offset off? */
  adoptable(rip: number, off: number): boolean {
    return this.share?.dir.find(rip, off) !== undefined;
  }

  /**
   * Count block entries from now on (blocks translated after this call; TYPEVISOR_BT_STATS):
   * a block chained to from another is entered too, a turn of a block's own loop is not.
   */
  countEntries(): void {
    this.layout.countEntries = true;
  }

  /** Block entries counted so far (see countEntries), modulo 2^32. */
  get entries(): number {
    return this.u32[A_ENTRIES >> 2]!;
  }

  /** Several vCPUs take turns: PAUSE in translated code goes to the interpreter (Cpu.spinWait). */
  yieldOnPause(): void {
    this.layout.pauseYields = true;
  }

  /**
   * Cpu.acceptKicks: other threads raise this vCPU's stop word; a block that left on it ends
   * the slice, and the word stays raised (every block leaves at once) until the engine has
   * served them and lowers it (`kicked`).
   */
  acceptKicks(): void {
    this.kickable = true;
  }

  /** Is the stop word raised? (With `lower`, lower it: the engine serves the other threads now.) */
  kicked(lower: boolean): boolean {
    const k = this.i32[I_STOP] !== 0;
    if (lower && k) Atomics.store(this.i32, I_STOP, 0);
    return k;
  }

  private kickable = false;

  /** Have enough modules died since the last call that the host should collect them? */
  garbageDue(): boolean {
    if (this.deadModules < GARBAGE_MODULES) return false;
    this.deadModules = 0;
    return true;
  }

  /** Every block is being dropped: forget all links and slots. */
  reset(): void {
    this.generation++;
    for (let s = 1; s < this.nextSlot; s++) this.table.set(s, this.stub);
    this.links.fill(0);
    this.icI32.fill(0);
    this.exitTable = [];
    this.exitTarget.fill(0);
    this.exitMod.fill(0);
    this.incoming.clear();
    this.modExits = [];
    this.modShared = [];
    this.nextSlot = 1;
    const sh = this.share;
    // Alone, a thread numbers its exits from the start again. Sharing, only once its range is
    // spent (the others run its modules, whose exits they must then drop: 'restart')
    if (sh === undefined || this.nextExit >= this.exitHi - 4096) {
      this.nextExit = this.exitLo;
      sh?.channel.post({ kind: 'restart', from: sh.vcpu });
    }
    sh?.dir.dropInstances();
    this.mergeSlots = [];
    this.mergeBodies = [];
    this.mergeIds = [];
    this.slotModule.fill(0);
    this.modules = 0;
    this.codeBytes = 0;
    this.deadModules = 0;
  }

  /**
   * Room for another module (slots, exit links, the code ceiling)? When false the caller drops
   * all blocks first.
   */
  hasRoom(): boolean {
    return this.nextSlot < MAX_SLOTS - 64 && this.nextExit < this.exitHi - 4096 && this.modules < MAX_MODULES && this.codeBytes < MAX_CODE_BYTES;
  }

  /**
   * Copy the arena's flag record (translated code's) into the Cpu's lazy flags. `consume`: the
   * host takes it over (the interpreter may change the flags next: the arena's copy is marked
   * stale, kind -1); without, translated code goes on with the same record after the call.
   */
  syncFlags(consume = true): void {
    const i32 = this.i32;
    const k = i32[I_FKIND]!;
    if (k === -1) return;
    const c = this.cpu;
    const u32 = this.u32;
    if (consume) i32[I_FKIND] = -1;
    if (k === F_EAGER) {
      c.setArith(u32[I_FA]!);
      return;
    }
    c.fOp = k;
    c.fSz = i32[I_FSZ]!;
    c.fCin = i32[I_FCIN]!;
    c.fA = u32[I_FA]!;
    c.fAHi = u32[I_FA + 1]!;
    c.fB = u32[I_FB]!;
    c.fBHi = u32[I_FB + 1]!;
    c.fRes = u32[I_FRES]!;
    c.fResHi = u32[I_FRES + 1]!;
  }

  /** Put the Cpu's lazy flags into the arena, where translated code (and flags.ts) reads them. */
  private loadFlags(): void {
    const c = this.cpu;
    const i32 = this.i32;
    const u32 = this.u32;
    if (c.fOp === F_EAGER) {
      i32[I_FKIND] = F_EAGER;
      u32[I_FA] = c.fFlags;
      return;
    }
    i32[I_FKIND] = c.fOp;
    i32[I_FSZ] = c.fSz;
    i32[I_FCIN] = c.fCin;
    u32[I_FA] = c.fA;
    u32[I_FA + 1] = c.fAHi;
    u32[I_FB] = c.fB;
    u32[I_FB + 1] = c.fBHi;
    u32[I_FRES] = c.fRes;
    u32[I_FRES + 1] = c.fResHi;
  }

  /**
   * Translate the blocks starting at linear `rips[i]` (bytes at RAM offsets `offs[i]`) into one
   * module: V8's cost per module is far above its cost per function, so a hot block brings
   * along the warm ones waiting to become hot.
   */
  compile(ram: Uint8Array, rips: readonly number[], offs: readonly number[], isBlockStart: (rip: number, off: number) => boolean, max: number, source?: Map<number, Uint8Array>): Block[] {
    if (this.mergeError !== undefined) {
      const e = this.mergeError;
      this.mergeError = undefined;
      throw e;
    }
    const allocExit = (): number => {
      if (this.nextExit >= this.exitHi) return 0;
      this.fitExits(this.nextExit);
      return this.nextExit++;
    };
    const todo = rips.map((rip, i) => ({ rip, off: offs[i]! }));
    const parts: { rip: number; off: number; body: FuncBody; n: number; lo: number; end: number }[] = [];
    for (let i = 0; i < todo.length; i++) {
      const { rip, off } = todo[i]!;
      const tr = buildTrace(ram, rip, off, isBlockStart);
      const { body, n, fallsThrough } = translateTrace(tr, rip, this.layout, allocExit);
      if (labelBlocks) body.label = `b${BigInt.asUintN(64, BigInt(rip)).toString(16)}`;
      parts.push({ rip, off, body, n, lo: tr.lo, end: tr.hiEnd });
      // straight-line code goes on in the next block: translate it now too (a long unrolled
      // function would otherwise need a full translation threshold per block)
      const next = tr.endOff;
      if (fallsThrough && todo.length < max && (next & 0xfff) !== 0 && next >>> 12 === off >>> 12 &&
        !isBlockStart(tr.end, next) && !todo.some((t) => t.rip === tr.end)) todo.push({ rip: tr.end, off: next });
    }
    const bodies = parts.map((p) => p.body);
    const { inst, mod, module, exits } = this.instantiate(bodies);
    const made = parts.map((p, i) => this.block((inst.exports[`g${i}`] as WebAssembly.Global).value, p.rip, p.off, p.lo, p.end, p.n, mod));
    const sh = this.share;
    const ids = sh === undefined ? [] : made.map(() => sh.nextId++ * 8 + sh.vcpu);
    for (let i = 0; i < made.length; i++) {
      this.mergeSlots.push(made[i]!.slot);
      this.mergeBodies.push(bodies[i]!);
      if (sh !== undefined) {
        sh.slotId[made[i]!.slot] = ids[i]!;
        this.mergeIds.push(ids[i]!);
      }
    }
    if (sh !== undefined) {
      // the others check the bytes as the pages were before translation (the caller's copy)
      const blocks: SharedBlockInfo[] = parts.map((p, i) => ({ id: ids[i]!, rip: p.rip, off: p.off, lo: p.lo, end: p.end, n: p.n, bytes: sourceBytes(source, ram, p.lo, p.end) }));
      sh.channel.post({ kind: 'module', from: sh.vcpu, module, exits, blocks });
    }
    if (this.mergeSlots.length >= MERGE_AT) this.merge();
    return made;
  }

  /** Room in the per-exit arrays for exit e (they grow by doubling). */
  private fitExits(e: number): void {
    if (e < this.exitIdx.length) return;
    let n = this.exitIdx.length;
    while (n <= e) n *= 2;
    const grow = (a: Int32Array): Int32Array => {
      const b = new Int32Array(Math.min(MAX_LINKS, n));
      b.set(a);
      return b;
    };
    this.exitIdx = grow(this.exitIdx);
    this.exitTarget = grow(this.exitTarget);
    this.exitMod = grow(this.exitMod);
  }

  /** One module of block functions, compiled and instantiated. */
  private instantiate(bodies: readonly FuncBody[]): { inst: WebAssembly.Instance; mod: number; module: WebAssembly.Module; exits: number[] } {
    const { bytes, exits } = blockModule(bodies, this.layout.atomic, this.layout.relative);
    const module = new WebAssembly.Module(bytes);
    return { ...this.loadCompiled(module, bytes.length, exits, bodies.length), module, exits };
  }

  /** Instantiate a module this thread compiled (`size` bytes of wasm: they count towards the code ceiling). */
  private loadCompiled(module: WebAssembly.Module, size: number, exits: readonly number[], live: number): { inst: WebAssembly.Instance; mod: number } {
    this.modulesCompiled++;
    this.codeBytes += size;
    return this.load(module, exits, live);
  }

  /**
   * Instantiate a compiled block module (`live` of its blocks in use); its number counts towards
   * the code ceiling.
   */
  private load(module: WebAssembly.Module, exits: readonly number[], live: number): { inst: WebAssembly.Instance; mod: number } {
    const inst = new WebAssembly.Instance(module, this.imports);
    // the module's own runtime table: an imported one would keep every instance alive (V8
    // lists the instances that import a table, strongly, to update them on table.set)
    const t = inst.exports.t as WebAssembly.Table;
    this.runtime.forEach((f, i) => t.set(i, f));
    const mod = ++this.modules;
    // its exits' entries: the stub, or (blocks compiled again by a merge) what they linked to
    for (let i = 0; i < exits.length; i++) {
      const e = exits[i]!;
      const idx = IMPORTS.length + i;
      const target = this.exitTarget[e]!;
      t.set(idx, target !== 0 ? this.table.get(target) : this.stub);
      this.exitTable[e] = t;
      this.exitIdx[e] = idx;
      this.exitMod[e] = mod;
    }
    this.modExits[mod] = exits as number[];
    this.moduleLive[mod] = live;
    return { inst, mod };
  }

  /**
   * Compile the still-valid blocks waiting in the merge list into one module and point their
   * table slots at it. The small modules they came from die and are freed at the next full GC
   * (V8's own, or the reclaim after invalidations or a flush); they count towards MAX_MODULES
   * like any module, so dead ones stay bounded between flushes. No reclaim is asked for here:
   * a boot kills ~5,000 small modules, and a full GC per 512 would cost it ~0.3 s.
   *
   * With backgroundMerges the module compiles on V8's background thread while the blocks go on
   * running from their small modules, and moves in when it is ready (between slices: the
   * promise settles on the event loop) — the blocks retired meanwhile stay where they are.
   */
  private merge(): void {
    const slots: number[] = [];
    const bodies: FuncBody[] = [];
    const ids: number[] = [];
    for (let i = 0; i < this.mergeSlots.length; i++) {
      const slot = this.mergeSlots[i]!;
      if (this.slotModule[slot] === 0) continue; // retired
      slots.push(slot);
      bodies.push(this.mergeBodies[i]!);
      if (this.share !== undefined) ids.push(this.mergeIds[i]!);
    }
    this.mergeSlots = [];
    this.mergeBodies = [];
    this.mergeIds = [];
    if (slots.length < 2 || !this.hasRoom()) return;
    if (!this.backgroundMerges || this.pendingMerges >= MAX_PENDING_MERGES) {
      const { inst, mod, module, exits } = this.instantiate(bodies);
      this.mergeDone(slots, ids, inst, mod, module, exits);
      return;
    }
    const { bytes, exits } = blockModule(bodies, this.layout.atomic, this.layout.relative);
    const generation = this.generation;
    this.pendingMerges++;
    WebAssembly.compile(bytes).then(
      (module) => {
        this.pendingMerges--;
        if (generation !== this.generation || !this.hasRoom()) return;
        const live = slots.filter((slot) => this.slotModule[slot] !== 0).length;
        if (live < 2) return;
        try {
          const { inst, mod } = this.loadCompiled(module, bytes.length, exits, live);
          this.mergeDone(slots, ids, inst, mod, module, exits);
        } catch (e) {
          // not a rejection nobody handles (it would end the process): the CPU's next compile
          // throws it, where a merge done in place would have
          this.mergeError = e;
        }
      },
      () => {
        // V8 refused it (out of code space): the blocks stay in their small modules
        this.pendingMerges--;
      },
    );
  }

  /** A merged module is instantiated: move the blocks still in use into it, and tell the other threads. */
  private mergeDone(slots: readonly number[], ids: readonly number[], inst: WebAssembly.Instance, mod: number, module: WebAssembly.Module, exits: number[]): void {
    this.modulesMerged++;
    // (a block's id stays at its function's index; -1 for one retired while the module compiled)
    const moved = ids.slice();
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (this.slotModule[slot] === 0) moved[i] = -1;
      else this.moveSlot(slot, (inst.exports[`g${i}`] as WebAssembly.Global).value, mod);
    }
    const sh = this.share;
    if (sh !== undefined) sh.channel.post({ kind: 'merge', from: sh.vcpu, module, exits, ids: moved });
  }

  /** The block in `slot` runs fn, the same code in module mod, from now on. */
  private moveSlot(slot: number, fn: unknown, mod: number): void {
    const old = this.slotModule[slot]!;
    this.slotModule[slot] = mod;
    this.table.set(slot, fn);
    this.repoint(slot, fn);
    if (--this.moduleLive[old]! === 0) this.moduleDied(old);
  }

  private block(fn: unknown, rip: number, off: number, lo: number, end: number, n: number, mod: number): Block {
    const slot = this.nextSlot++;
    this.slotModule[slot] = mod;
    this.slotPhys[slot] = off;
    if (slot >= this.table.length) this.table.grow(this.table.length);
    this.table.set(slot, fn);
    const enter = this.enter;
    const i32 = this.i32;
    const f64 = this.f64;
    const run = (c: Cpu): number => {
      // a stop word other threads raise stays raised until the engine has served them
      if (!this.kickable) i32[I_STOP] = 0;
      i32[I_KEY] = linkKey(c);
      i32[I_GKEY] = globalKey(c);
      const user = c.s.cpl === 3;
      this.loadFlags();
      const k = enter(user ? 8 : 0, user ? 24 : 16, slot);
      if (this.kickable && i32[I_STOP] !== 0) c.exitRequested = true;
      c.s.rip = f64[D_RIP]!;
      this.syncFlags();
      return k;
    };
    const b = new Block(run, rip, off, lo, end, n);
    b.slot = slot;
    return b;
  }
}

/** The bytes [lo, end) a block was translated from: from the copy of its page taken before, if any. */
function sourceBytes(source: Map<number, Uint8Array> | undefined, ram: Uint8Array, lo: number, end: number): Uint8Array {
  const page = source?.get(lo >>> 12);
  if (page === undefined || (end - 1) >>> 12 !== lo >>> 12) return ram.slice(lo, end);
  return page.slice(lo & 0xfff, (lo & 0xfff) + end - lo);
}
