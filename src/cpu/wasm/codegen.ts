/**
 * Code generation for wasm blocks (translate.ts emits the instructions with these): the block
 * function's state (WGen: register locals, pending flags, exits and chaining), registers at
 * every operand size, memory accesses through the inline TLB with their slow paths, and lazy
 * flags (conditions from a known writer, the flag record for everyone else).
 */
import type { D } from '../translate/decode.js';
import { fallbackKey } from '../translate/block.js';
import { F_ADD, F_DEC, F_EAGER, F_INC, F_LOGIC, F_SUB, TLB_MASK } from '../core/consts.js';
import { Bytes, FuncBody, Op, T, type FuncImport } from './encoder.js';
import { IC_SIZE, A_EXIT, A_GKEY, A_FA, A_FB, A_FCIN, A_FKIND, A_FRES, A_FSZ, A_GPR, A_KEY, A_RIP, A_SCRATCH, A_SEGBASE, A_STOP } from './arena.js';

export const TWO47 = 140737488355328;
/**
 * Instructions a self-looping block runs per call at most (interrupts are polled between calls),
 * and the chain length below which a block jumps straight into its linked successor. Every
 * return to the host costs a few hundred nanoseconds of JavaScript: at 2,048 and 1,024 the
 * sha256 loop went back to the host every ~1,200 instructions (4 M times for 64 MiB). The run
 * loop counts a long chain as several poll intervals, so interrupts are polled as often as before.
 */
export const LOOP_CAP = 32768;
export const CHAIN_LIMIT = 16384;

/** Signature of a block function: (needR, needW, instructions so far) -> instructions in all. */
export const BLOCK_TYPE = { params: [T.I32, T.I32, T.I32], results: [T.I32] } as const;

/** Call runtime function i (arguments on the stack). */
export function rt(f: FuncBody, i: number): void {
  f.i32(i).callIndirect(1 + i);
}

/** Host functions a block imports (module "h"), in index order. */
export const IMPORTS: readonly FuncImport[] = [
  // rd(lin, size | 0x100 if stack, rip) -> value (size 8: 0, value in A_SCRATCH)
  { module: 'h', name: 'rd', params: [T.F64, T.I32, T.F64], results: [T.I32] },
  // wr(lin, size | 0x100 if stack, lo, hi, rip) -> 1 when the block must stop after this instruction
  { module: 'h', name: 'wr', params: [T.F64, T.I32, T.I32, T.I32, T.F64], results: [T.I32] },
  // step(rip, next, key) -> 1 when the block must end (A_RIP holds where to go on); key names
  // the instruction for TYPEVISOR_BT_STATS
  { module: 'h', name: 'step', params: [T.F64, T.F64, T.I32], results: [T.I32] },
  // flags() -> the arithmetic flags (RFLAGS bits)
  { module: 'h', name: 'flags', params: [], results: [T.I32] },
  // fault(vector, rip): raise an exception with error code 0 (does not return)
  { module: 'h', name: 'fault', params: [T.I32, T.F64], results: [] },
  // the runtime module's own functions (module "w"):
  // chain(tagR, tagW, n, slot): run the block in table slot `slot`
  { module: 'w', name: 'chain', params: [T.I32, T.I32, T.I32, T.I32], results: [T.I32] },
  // div128(hi, lo, d) -> quotient of hi:lo / d (needs hi < d), remainder in A_SCRATCH
  { module: 'w', name: 'div128', params: [T.I64, T.I64, T.I64], results: [T.I64] },
  // relink(tagR, tagW, n, keyAddr, slot): a link (exit or indirect-branch cache entry) whose key
  // is stale: when the TLB shows the block in `slot` is still what its RIP (A_RIP) fetches
  // under the current CPL, renew the key at keyAddr and run the block; else return n
  { module: 'w', name: 'relink', params: [T.I32, T.I32, T.I32, T.I32, T.I32], results: [T.I32] },
  // sys(op) -> a system instruction that touches neither the registers nor the arithmetic flags
  // (SYS_*), done by the host without decoding it: 0 done, 1 when the interpreter must run it
  // (it faults there); SYS_RFLAGS returns RFLAGS as PUSHF stores it; SYS_RDTSC and SYS_RDTSCP
  // leave the TSC in A_SCRATCH (and RDTSCP's TSC_AUX in A_XTMP) for the block to load
  { module: 'h', name: 'sys', params: [T.I32], results: [T.I32] },
];
/** sys's operations. */
export const SYS_CLI = 0, SYS_CLD = 1, SYS_STD = 2, SYS_CLAC = 3, SYS_STAC = 4, SYS_SWAPGS = 5, SYS_RFLAGS = 6, SYS_RDTSC = 7, SYS_RDTSCP = 8, SYS_STI = 9;
/** SYS_SREG + n (n = 0..5, ES..GS): the segment register's selector. */
export const SYS_SREG = 16;
/** SYS_CR + n (n = 0, 2, 3, 4, 8): MOV r, CRn, the value in A_SCRATCH (1 when it faults). */
export const SYS_CR = 32;
/**
 * Blocks reach these through the runtime table ("e", "r"; entry i is IMPORTS[i], a wasm function
 * of the host's runtime module) with call_indirect: a block module imports no functions, so V8
 * compiles no call wrappers for it (that cost ~300 µs per module).
 */
export const F_RD = 0, F_WR = 1, F_STEP = 2, F_FLAGS = 3, F_FAULT = 4, F_CHAIN = 5, F_DIV128 = 6, F_RELINK = 7, F_SYS = 8;
/** Types of a block module: the block's own, then one per runtime function. */
export const BLOCK_TYPES = [BLOCK_TYPE, ...IMPORTS];
/** Functions of each block module: the blocks. */
export const F_BLOCK0 = 0;
/** Parameters of the block function. */
/** Parameters of the block function: byte offsets of the read and write tags in a wasm TLB
 * entry for the CPL (supervisor 0/16, user 8/24), and the instructions run so far in the chain. */
export const P_TR = 0, P_TW = 1, P_NIN = 2;

/**
 * Addresses in the arena that translated code uses (see arena.ts): absolute, or, with
 * `relative`, offsets from the state area whose address the block module imports (global
 * "e"."b"), so that one compiled module serves every vCPU.
 */
export interface BlockLayout {
  /** The state area (registers, flags record, keys...): 0 when relative. */
  base: number;
  /** Exit links, the indirect-branch cache, the wasm TLB tags and RAM offsets. */
  links: number;
  ic: number;
  wtlb: number;
  wtlbAddr: number;
  /** The code-line map every vCPU's stores check (one per memory, see Arena.codeLinesBase). */
  codeLines: number;
  /** PAUSE goes to the interpreter (Cpu.spinWait: a vCPU among several ends its turn); else it is a NOP. */
  pauseYields?: boolean;
  /** Every block counts its entries in A_ENTRIES (statistics; off, the code has no trace of it). */
  countEntries?: boolean;
  /**
   * Guest RAM is shared with vCPUs on other threads: modules import a shared memory, and
   * LOCKed read-modify-writes and XCHG with memory are atomic (wasm/atomic.ts).
   */
  atomic?: boolean;
  /**
   * base, links, ic, wtlb and wtlbAddr are offsets from the vCPU's state area, whose address
   * blocks read from the imported global (codeLines stays absolute: every vCPU's is the same).
   */
  relative?: boolean;
}

/** A flag writer known at compile time: its operands and result, in i64 locals. */
export interface Producer {
  /** F_ADD, F_SUB, F_LOGIC, F_INC, F_DEC; or F_EAGER with the RFLAGS arithmetic bits in `a`. */
  kind: number;
  sz: number;
  a: number;
  b: number;
  r: number;
  /** Local holding the carry in (0/1) of ADC/SBB, the preserved CF of INC/DEC; -1: none (0). */
  cin: number;
}

export const MASK_LO = [0, 0xff, 0xffff, 0, 0xffffffff];

/**
 * Code, or a placeholder filled in at the end: 'reload' loads every register the block uses;
 * a set stores those of its registers the block uses (the registers written before that point,
 * or every register written anywhere in a block that loops).
 */
export type Chunk = Bytes | 'reload' | Set<number>;

export class WGen {
  readonly f = new FuncBody(BLOCK_TYPE.params, BLOCK_TYPE.results);
  readonly chunks: Chunk[] = [];
  /** Local of each guest register (-1: not used). */
  readonly regs: number[] = new Array<number>(16).fill(-1);
  readonly written = new Set<number>();
  pending: Producer | undefined = undefined;
  lastF: Producer | undefined = undefined;
  /** Nesting depth of blocks/ifs inside the loop body (for `br` to the loop). */
  depth = 0;
  readonly n: number;
  /** 1 after a slow store asked the block to stop (checked when the instruction is done). */
  readonly stop: number;
  loop = false;
  liveAtStart = true;
  start = 0;
  /** The flag producer whose record the arena lacked when the current instruction began. */
  insnPending: Producer | undefined = undefined;

  /** State-area offsets (A_*) are relative to this: the state area's address, or 0 with `sbase`. */
  readonly base: number;
  readonly linkBase: number;
  readonly icBase: number;
  /** A relative layout's local holding the state area's address (set from global 0); else -1. */
  readonly sbase: number;

  constructor(readonly lay: BlockLayout, readonly allocExit: () => number) {
    this.base = lay.base;
    this.linkBase = lay.links;
    this.icBase = lay.ic;
    this.n = this.f.local(T.I32);
    this.stop = this.f.local(T.I32);
    this.sbase = lay.relative ? this.f.local(T.I32) : -1;
  }

  /** Push the address a state-area access adds its offset (base + A_*) to: 0, or sbase. */
  st(): FuncBody {
    const f = this.f;
    if (this.sbase < 0) f.i32(0);
    else f.get(this.sbase);
    return f;
  }

  /** Turn the offset of a state-area table entry on the stack into its address (relative layouts). */
  rel(): FuncBody {
    if (this.sbase >= 0) this.f.get(this.sbase).op(Op.i32_add);
    return this.f;
  }

  get c(): FuncBody {
    return this.f;
  }

  /** Insert a placeholder filled in when the register sets are known. */
  mark(kind: 'reload' | 'writeback'): void {
    if (kind === 'writeback' && !this.loop) {
      // straight code: the registers written so far are known now
      for (const r of this.written) this.st().get(this.regs[r]!).mem(Op.i64_store, this.base + A_GPR + 8 * r);
      return;
    }
    this.chunks.push(this.f.code, kind === 'reload' ? kind : this.written);
    this.f.code = new Bytes(1024);
  }

  /** The next instruction starts (see insnPending). */
  beginInsn(): void {
    this.insnPending = this.pending;
  }

  /**
   * Before a slow-path access: the registers, and the flags as they were before the current
   * instruction — what an exception it raises must show (the instruction's own flag result, or
   * a dead one, is not yet architectural: ADC restarted after a fault must see the old CF).
   */
  syncForAccess(): void {
    if (this.insnPending !== undefined) this.storeFlags(this.insnPending);
    this.mark('writeback');
  }

  reg(r: number): number {
    if (this.regs[r]! < 0) this.regs[r] = this.f.local(T.I64);
    return this.regs[r]!;
  }

  tmp64(): number {
    return this.f.local(T.I64);
  }

  tmp32(): number {
    return this.f.local(T.I32);
  }

  begin(o: Op.block | Op.loop | Op.if, result?: T): void {
    this.f.begin(o, result);
    this.depth++;
  }

  end(): void {
    this.f.op(Op.end);
    this.depth--;
  }

  else(): void {
    this.f.op(Op.else);
  }

  /** Store the lazy-flag record of p into the arena. */
  storeFlags(p: Producer): void {
    const f = this.f;
    const b = this.base;
    this.st().i32(p.kind).mem(Op.i32_store, b + A_FKIND);
    this.st().i32(p.sz).mem(Op.i32_store, b + A_FSZ);
    this.st();
    if (p.cin >= 0) f.get(p.cin).op(Op.i32_wrap_i64);
    else f.i32(0);
    f.mem(Op.i32_store, b + A_FCIN);
    this.st().get(p.a).mem(Op.i64_store, b + A_FA);
    this.st().get(p.b).mem(Op.i64_store, b + A_FB);
    this.st().get(p.r).mem(Op.i64_store, b + A_FRES);
  }

  /** Make the architectural state visible to the host: pending flags and registers. */
  sync(): void {
    if (this.pending !== undefined) this.storeFlags(this.pending);
    this.mark('writeback');
  }

  /** Leave the block: continue at the constant `rip` after k instructions of this iteration. */
  exitTo(rip: number, k: number): void {
    if (this.loop && rip === this.start) {
      // back to the top: another iteration unless the cap is reached or the host asked to stop
      const f = this.f;
      f.get(this.n).i32(k).op(Op.i32_add).set(this.n);
      f.get(this.n).i32(LOOP_CAP).op(Op.i32_lt_u);
      this.st().mem(Op.i32_load, this.base + A_STOP).op(Op.i32_eqz).op(Op.i32_and);
      f.hint(1);
      this.begin(Op.if);
      if (this.liveAtStart && this.pending !== undefined) this.storeFlags(this.pending);
      f.br(Op.br, this.depth); // the loop label: depth counts the enclosing blocks inside it
      this.end();
      this.leave(rip, 0);
      return;
    }
    const e = this.allocExit();
    if (e === 0) {
      this.leave(rip, k);
      return;
    }
    this.sync();
    const f = this.f;
    this.st().f64(rip).mem(Op.f64_store, this.base + A_RIP);
    // chain: jump straight into the successor the host linked to this exit, if still current
    const tot = this.tmp32();
    const slot = this.tmp32();
    const link = this.linkBase + 8 * e;
    f.get(P_NIN).i32(k).op(Op.i32_add);
    if (this.loop) f.get(this.n).op(Op.i32_add);
    f.tee(tot).i32(CHAIN_LIMIT).op(Op.i32_lt_u);
    this.st().mem(Op.i32_load, link).tee(slot).op(Op.i32_eqz).op(Op.i32_eqz).op(Op.i32_and);
    this.st().mem(Op.i32_load, this.base + A_STOP).op(Op.i32_eqz).op(Op.i32_and);
    // the exit taken, for the host to link: also when the successor turns out to be a dropped
    // block (its slot holds the stub, which returns as it is), so that the stale link is replaced
    this.st().i32(e).mem(Op.i32_store, this.base + A_EXIT);
    f.hint(1);
    this.begin(Op.if);
    // A successor on the block's own linear page is on its physical page too: the block's entry
    // checked that page's mapping, so such a link holds under any TLB epoch, as QEMU's
    // same-page jumps do (a dropped successor's slot holds the stub). Others need their key,
    // or the runtime's relink renews a stale one.
    if (samePage(rip, this.start)) {
      this.chainExit(tot, e);
    } else {
      this.keyMatches(() => this.st().mem(Op.i32_load, link + 4));
      f.hint(1);
      this.begin(Op.if);
      this.chainExit(tot, e);
      this.end();
      this.relink(tot, () => this.st().i32(link + 4).op(Op.i32_add), () => f.get(slot));
    }
    this.end();
    f.get(tot).op(Op.return);
  }

  /**
   * Tail-call the successor linked to exit e, with `tot` instructions so far: the entry of the
   * module's own table the host keeps pointing at it (the index is patched in when the module is
   * assembled, `blockModule`), so the jump needs no hop through the runtime.
   */
  private chainExit(tot: number, e: number): void {
    this.f.get(P_TR).get(P_TW).get(tot).i32Ref(0, e).tailCallIndirect(0);
  }

  /** Tail-call the block whose table slot `slot` pushes, with `tot` instructions so far. */
  private chainTo(tot: number, slot: () => void): void {
    this.f.get(P_TR).get(P_TW).get(tot);
    slot();
    this.f.i32(F_CHAIN).tailCallIndirect(1 + F_CHAIN);
  }

  /** Tail-call the runtime's relink for the stale link whose key word's address `keyAddr` pushes. */
  private relink(tot: number, keyAddr: () => void, slot: () => void): void {
    this.f.get(P_TR).get(P_TW).get(tot);
    keyAddr();
    slot();
    this.f.i32(F_RELINK).tailCallIndirect(1 + F_RELINK);
  }

  /** Leave the block for the RIP in i64 local t. */
  exitToLocal(t: number, k: number): void {
    this.sync();
    const f = this.f;
    const ripF = this.f.local(T.F64);
    f.get(t).op(Op.f64_convert_i64_s).set(ripF);
    this.st().get(ripF).mem(Op.f64_store, this.base + A_RIP);
    // go straight on when the indirect-branch cache knows the target under the current key
    const tot = this.tmp32();
    const e = this.tmp32();
    f.get(P_NIN).i32(k).op(Op.i32_add);
    if (this.loop) f.get(this.n).op(Op.i32_add);
    f.set(tot);
    f.get(t).op(Op.i32_wrap_i64).tee(e).get(e).i32(12).op(Op.i32_shr_u).op(Op.i32_xor).i32(IC_SIZE - 1).op(Op.i32_and).i32(4).op(Op.i32_shl);
    this.rel().set(e); // byte offset of the entry (its address, relative layouts)
    f.get(tot).i32(CHAIN_LIMIT).op(Op.i32_lt_u);
    f.get(e).mem(Op.f64_load, this.icBase).get(ripF).op(Op.f64_eq).op(Op.i32_and);
    this.st().mem(Op.i32_load, this.base + A_STOP).op(Op.i32_eqz).op(Op.i32_and);
    // no exit link: the host enters the target in the indirect-branch cache (again, when the
    // entry led to a dropped block's stub)
    this.st().i32(0).mem(Op.i32_store, this.base + A_EXIT);
    f.hint(1);
    this.begin(Op.if);
    const slot = (): void => void f.get(e).mem(Op.i32_load, this.icBase + 12);
    this.keyMatches(() => f.get(e).mem(Op.i32_load, this.icBase + 8));
    f.hint(1);
    this.begin(Op.if);
    this.chainTo(tot, slot);
    this.end();
    // a stale key: the runtime renews it when the TLB still leads to the entry's block
    this.relink(tot, () => f.get(e).i32(this.icBase + 8).op(Op.i32_add), slot);
    this.end();
    f.get(tot).op(Op.return);
  }

  /** Push (i32) whether the link key pushed by `key` is current (global keys have bit 2 set). */
  keyMatches(key: () => void): void {
    const f = this.f;
    const k = this.tmp32();
    key();
    f.tee(k);
    this.st().mem(Op.i32_load, this.base + A_GKEY);
    this.st().mem(Op.i32_load, this.base + A_KEY);
    f.get(k).i32(4).op(Op.i32_and).op(Op.select);
    f.op(Op.i32_eq);
  }

  /** Return to the host, to go on at the constant `rip` after k instructions: no exit to link. */
  leave(rip: number, k: number): void {
    this.sync();
    this.st().f64(rip).mem(Op.f64_store, this.base + A_RIP);
    this.retK(k);
  }

  /** return instructions so far + N + k, with no exit to link (A_RIP already set). */
  retK(k: number): void {
    const f = this.f;
    this.st().i32(0).mem(Op.i32_store, this.base + A_EXIT);
    f.get(P_NIN).i32(k).op(Op.i32_add);
    if (this.loop) f.get(this.n).op(Op.i32_add);
    f.op(Op.return);
  }
}

// ---- registers --------------------------------------------------------------------------

/**
 * With an i32 condition on the stack: when it holds, the interpreter runs d (the block leaves
 * after it when the runtime says so, else reloads the registers); what the caller generates
 * next, up to its g.end(), is the other branch, d inline. `k` counts the block's instructions
 * before d, `next` is d's end.
 */
export function interpretIf(g: WGen, d: D, k: number, next: number): void {
  const f = g.c;
  g.begin(Op.if);
  g.sync();
  f.f64(d.rip).f64(next).i32(fallbackKey(d));
  rt(f, F_STEP);
  f.hint(0);
  g.begin(Op.if);
  g.retK(k + 1);
  g.end();
  g.mark('reload');
  g.else();
}

/** Are linear addresses a and b on the same 4 KiB page? */
export function samePage(a: number, b: number): boolean {
  return Math.floor(a / 4096) === Math.floor(b / 4096);
}

/** Push the zero-extended value of register r at size sz. */
export function getReg(g: WGen, d: D, r: number, sz: number): void {
  const f = g.c;
  if (sz === 1 && d.rex === 0 && r >= 4) {
    f.get(g.reg(r - 4)).i64(8, 0).op(Op.i64_shr_u).i64(0xff, 0).op(Op.i64_and);
    return;
  }
  f.get(g.reg(r));
  if (sz !== 8) f.i64(MASK_LO[sz]!, 0).op(Op.i64_and);
}

/** Register r at size sz = the i64 value in local v (high bits of v beyond sz ignored). */
export function setReg(g: WGen, d: D, r: number, sz: number, v: number): void {
  const f = g.c;
  if (sz === 1 && d.rex === 0 && r >= 4) {
    const l = g.reg(r - 4);
    g.written.add(r - 4);
    f.get(l).i64(~0xff00, -1).op(Op.i64_and);
    f.get(v).i64(0xff, 0).op(Op.i64_and).i64(8, 0).op(Op.i64_shl).op(Op.i64_or).set(l);
    return;
  }
  const l = g.reg(r);
  g.written.add(r);
  if (sz === 8) f.get(v).set(l);
  else if (sz === 4) f.get(v).i64(0xffffffff, 0).op(Op.i64_and).set(l);
  else {
    const m = MASK_LO[sz]!;
    f.get(l).i64(~m, -1).op(Op.i64_and).get(v).i64(m, 0).op(Op.i64_and).op(Op.i64_or).set(l);
  }
}

/** A fresh local holding the value of register r at size sz. */
export function regVal(g: WGen, d: D, r: number, sz: number): number {
  const v = g.tmp64();
  getReg(g, d, r, sz);
  g.c.set(v);
  return v;
}

export function constVal(g: WGen, lo: number, hi: number): number {
  const v = g.tmp64();
  g.c.i64(lo, hi).set(v);
  return v;
}

/** Sign-extended immediate at size sz (imm as a signed 32-bit number), zero-extended to 64 bits for sz < 8. */
export function immVal(g: WGen, imm: number, sz: number): number {
  if (sz === 8) return constVal(g, imm | 0, imm < 0 ? -1 : 0);
  return constVal(g, (imm & MASK_LO[sz]!) >>> 0, 0);
}

/** Mask the i64 on the stack to size sz. */
export function maskTo(g: WGen, sz: number): void {
  if (sz !== 8) g.c.i64(MASK_LO[sz]!, 0).op(Op.i64_and);
}

/** Push (i64) PF, ZF and SF in their RFLAGS places for the result in local r of size sz. */
export function pushSzp(g: WGen, r: number, sz: number): void {
  const f = g.c;
  f.get(r).i64(0xff, 0).op(Op.i64_and).op(Op.i64_popcnt).i64(1, 0).op(Op.i64_and).i64(1, 0).op(Op.i64_xor).i64(2, 0).op(Op.i64_shl);
  f.get(r).op(Op.i64_eqz).op(Op.i64_extend_i32_u).i64(6, 0).op(Op.i64_shl).op(Op.i64_or);
  f.get(r).i64(sz * 8 - 1, 0).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).i64(7, 0).op(Op.i64_shl).op(Op.i64_or);
}

/** Sign-extend the (zero-extended) i64 on the stack from size sz. */
export function sext(g: WGen, sz: number): void {
  const f = g.c;
  if (sz === 1) f.op(Op.i64_extend8_s);
  else if (sz === 2) f.op(Op.i64_extend16_s);
  else if (sz === 4) f.op(Op.i64_extend32_s);
}

// ---- memory -----------------------------------------------------------------------------

/** Linear address of d's memory operand into a fresh i64 local. */
export function ea(g: WGen, d: D, withSegment = true): number {
  const f = g.c;
  const L = g.tmp64();
  if (d.ripRel) f.i64n(d.rip + d.len + d.disp);
  else {
    let first = true;
    const add = (): void => {
      if (!first) f.op(Op.i64_add);
      first = false;
    };
    if (d.base >= 0) {
      f.get(g.reg(d.base));
      add();
    }
    if (d.index >= 0) {
      f.get(g.reg(d.index));
      if (d.scale > 1) f.i64(Math.log2(d.scale), 0).op(Op.i64_shl);
      add();
    }
    if (d.disp !== 0 || first) {
      f.i64(d.disp | 0, d.disp < 0 ? -1 : 0);
      add();
    }
  }
  if (withSegment && d.seg >= 4) g.st().mem(Op.f64_load, g.base + A_SEGBASE + 8 * d.seg).truncSat().op(Op.i64_add);
  f.set(L);
  return L;
}

export function isStack(d: D): boolean {
  return d.base === 4 || d.base === 5;
}

export const LOADS = [0, Op.i64_load8_u, Op.i64_load16_u, 0, Op.i64_load32_u, 0, 0, 0, Op.i64_load];
export const STORES = [0, Op.i64_store8, Op.i64_store16, 0, Op.i64_store32, 0, 0, 0, Op.i64_store];

/**
 * Push (i32) whether the inline TLB holds the page of the access [L, L + sz) for this access
 * kind (read or write, at the block's CPL), leaving the access's RAM offset to `ramOffset`. One
 * compare covers a page-crossing access too: the tag is compared with the page of the last
 * byte, and the next page's entry lives in another slot, so an access that crosses never hits.
 */
function tlbHit(g: WGen, L: number, sz: number, write: boolean): { lo: number; ix: number } {
  const f = g.c;
  const lo = g.tmp32();
  const ix = g.tmp32();
  f.get(L).op(Op.i32_wrap_i64).tee(lo).i32(12).op(Op.i32_shr_u).i32(TLB_MASK).op(Op.i32_and).tee(ix);
  f.i32(5).op(Op.i32_shl).get(write ? P_TW : P_TR).op(Op.i32_add);
  g.rel().mem(Op.i64_load, g.lay.wtlb);
  f.get(L);
  if (sz > 1) f.i64(sz - 1, 0).op(Op.i64_add);
  f.i64(12, 0).op(Op.i64_shr_s).op(Op.i64_eq);
  return { lo, ix };
}

/**
 * Push the RAM offset of a hit (see tlbHit): the entry keeps the page's RAM offset minus its
 * linear address (mod 2^32), so the offset is one add away from L's low half.
 */
function ramOffset(g: WGen, t: { lo: number; ix: number }): void {
  g.c.get(t.ix).i32(2).op(Op.i32_shl);
  g.rel().mem(Op.i32_load, g.lay.wtlbAddr).get(t.lo).op(Op.i32_add);
}

/**
 * Push (i32) whether the inline TLB maps the page of linear address L (i64 local) for this
 * access kind, setting the i32 local `out` to L's RAM offset when it does: for an access the
 * caller has already kept inside that page.
 */
export function pageRam(g: WGen, L: number, write: boolean, out: number): void {
  const f = g.c;
  const t = tlbHit(g, L, 1, write);
  f.begin(Op.if, T.I32);
  ramOffset(g, t);
  f.set(out).i32(1);
  f.op(Op.else).i32(0).op(Op.end);
}

/**
 * Push (i32) whether the store [L, L + sz) must take the slow path, with its RAM offset in local
 * a otherwise: a TLB hit (tlbHit) that touches no line holding translated code.
 */
function translateWrite(g: WGen, L: number, sz: number, a: number): void {
  const f = g.c;
  const t = tlbHit(g, L, sz, true);
  f.hint(1);
  f.begin(Op.if, T.I32);
  ramOffset(g, t);
  f.tee(a).i32(6).op(Op.i32_shr_u).mem(Op.i32_load8_u, g.lay.codeLines);
  if (sz > 1) f.get(a).i32(sz - 1).op(Op.i32_add).i32(6).op(Op.i32_shr_u).mem(Op.i32_load8_u, g.lay.codeLines).op(Op.i32_or);
  f.op(Op.else).i32(1).op(Op.end);
}

/** Load sz bytes at linear address L (i64 local) into a fresh i64 local (zero-extended). */
export function load(g: WGen, sz: number, L: number, rip: number, stack: boolean): number {
  const f = g.c;
  const v = g.tmp64();
  const t = tlbHit(g, L, sz, false);
  f.hint(1);
  g.begin(Op.if, T.I64);
  ramOffset(g, t);
  f.mem(LOADS[sz]!, 0);
  g.else();
  g.syncForAccess();
  f.get(L).op(Op.f64_convert_i64_s).i32(sz | (stack ? 0x100 : 0)).f64(rip);
  rt(f, F_RD);
  if (sz === 8) {
    f.op(Op.drop);
    g.st().mem(Op.i64_load, g.base + A_SCRATCH);
  }
  else f.op(Op.i64_extend_i32_u);
  g.end();
  f.set(v);
  return v;
}

/** Store the low sz bytes of i64 local v at linear address L. */
export function store(g: WGen, sz: number, L: number, v: number, rip: number, stack: boolean): void {
  const f = g.c;
  const a = g.tmp32();
  translateWrite(g, L, sz, a);
  f.hint(0);
  g.begin(Op.if);
  g.syncForAccess();
  f.get(L).op(Op.f64_convert_i64_s).i32(sz | (stack ? 0x100 : 0));
  f.get(v).op(Op.i32_wrap_i64).get(v).i64(32, 0).op(Op.i64_shr_u).op(Op.i32_wrap_i64);
  f.f64(rip);
  rt(f, F_WR);
  f.set(g.stop);
  g.else();
  f.get(a).get(v).mem(STORES[sz]!, 0);
  g.end();
}

/** The r/m operand's value (register or memory) into a fresh local; L is the address when memory. */
export function loadRm(g: WGen, d: D, sz: number, L: number): number {
  if (d.mod === 3) return regVal(g, d, d.rm, sz);
  return load(g, sz, L, d.rip, isStack(d));
}

export function storeRm(g: WGen, d: D, sz: number, L: number, v: number): void {
  if (d.mod === 3) setReg(g, d, d.rm, sz, v);
  else store(g, sz, L, v, d.rip, isStack(d));
}

/** Raise #GP(0) (#SS for stack addresses) unless the i64 local t is canonical. */
export function checkCanonical(g: WGen, t: number, vector: number, rip: number): void {
  const f = g.c;
  f.get(t).i64(0, 0x8000).op(Op.i64_add).i64(48, 0).op(Op.i64_shr_u).op(Op.i64_eqz).op(Op.i32_eqz);
  f.hint(0);
  g.begin(Op.if);
  g.sync();
  f.i32(vector).f64(rip);
  rt(f, F_FAULT);
  f.op(Op.unreachable);
  g.end();
}

export function push(g: WGen, v: number, rip: number): void {
  const f = g.c;
  const sp = g.tmp64();
  f.get(g.reg(4)).i64(8, 0).op(Op.i64_sub).set(sp);
  store(g, 8, sp, v, rip, true);
  f.get(sp).set(g.reg(4));
  g.written.add(4);
}

// ---- flags ------------------------------------------------------------------------------

/** Push the current arithmetic flags (RFLAGS bits, i32). */
export function flagsNow(g: WGen): void {
  if (g.pending !== undefined) g.storeFlags(g.pending);
  rt(g.c, F_FLAGS);
}

/** Push CF (i64 0/1). */
export function carry(g: WGen): void {
  const f = g.c;
  const p = g.lastF;
  if (p !== undefined && (p.kind === F_SUB || p.kind === F_ADD || p.kind === F_LOGIC)) {
    if (p.kind === F_LOGIC) {
      f.i64(0, 0);
      return;
    }
    if (p.kind === F_SUB) {
      // borrow: a < b + cin
      if (p.cin < 0) f.get(p.a).get(p.b).op(Op.i64_lt_u);
      else {
        f.get(p.a).get(p.b).op(Op.i64_lt_u);
        f.get(p.cin).op(Op.i64_eqz).op(Op.i32_eqz).get(p.a).get(p.b).op(Op.i64_eq).op(Op.i32_and).op(Op.i32_or);
      }
    } else if (p.cin < 0) f.get(p.r).get(p.a).op(Op.i64_lt_u);
    else {
      f.get(p.r).get(p.a).op(Op.i64_lt_u);
      f.get(p.cin).op(Op.i64_eqz).op(Op.i32_eqz).get(p.r).get(p.a).op(Op.i64_eq).op(Op.i32_and).op(Op.i32_or);
    }
    f.op(Op.i64_extend_i32_u);
    return;
  }
  if (p !== undefined && p.kind === F_EAGER) {
    f.get(p.a).i64(1, 0).op(Op.i64_and);
    return;
  }
  if (p !== undefined && p.cin >= 0) {
    f.get(p.cin);
    return;
  }
  flagsNow(g);
  f.i32(1).op(Op.i32_and).op(Op.i64_extend_i32_u);
}

/** Push the condition cc (i32 0/1). */
export function cond(g: WGen, cc: number): void {
  const f = g.c;
  const p = g.lastF;
  const base = cc & ~1;
  let done = false;
  if (p !== undefined) {
    const sz = p.sz;
    const zero = (): void => {
      f.get(p.r).op(Op.i64_eqz);
    };
    const sign = (): void => {
      f.get(p.r).i64(sz * 8 - 1, 0).op(Op.i64_shr_u).i64(1, 0).op(Op.i64_and).op(Op.i32_wrap_i64);
    };
    const signed = (l: number): void => {
      f.get(l);
      sext(g, sz);
    };
    if (p.kind === F_SUB && p.cin < 0) {
      done = true;
      switch (base) {
        case 2: f.get(p.a).get(p.b).op(Op.i64_lt_u); break;
        case 4: f.get(p.a).get(p.b).op(Op.i64_eq); break;
        case 6: f.get(p.a).get(p.b).op(Op.i64_le_u); break;
        case 8: sign(); break;
        case 12: signed(p.a); signed(p.b); f.op(Op.i64_lt_s); break;
        case 14: signed(p.a); signed(p.b); f.op(Op.i64_le_s); break;
        default: done = false;
      }
    } else if (p.kind === F_LOGIC) {
      done = true;
      switch (base) {
        case 0: case 2: f.i32(0); break;
        case 4: case 6: zero(); break;
        case 8: case 12: sign(); break;
        case 14: zero(); sign(); f.op(Op.i32_or); break;
        default: done = false;
      }
    } else if (p.kind !== F_EAGER) {
      done = true;
      switch (base) {
        case 4: zero(); break;
        case 8: sign(); break;
        case 2: if (p.kind === F_INC || p.kind === F_DEC) done = false; else { carry(g); f.op(Op.i32_wrap_i64); } break;
        case 6: if (p.kind === F_INC || p.kind === F_DEC) done = false; else { carry(g); f.op(Op.i32_wrap_i64); zero(); f.op(Op.i32_or); } break;
        default: done = false;
      }
    }
  }
  if (!done) {
    if (p !== undefined && p.kind === F_EAGER) f.get(p.a).op(Op.i32_wrap_i64);
    else flagsNow(g);
    const fl = g.tmp32();
    f.set(fl);
    const bit = (m: number): void => {
      f.get(fl).i32(m).op(Op.i32_and).op(Op.i32_eqz).op(Op.i32_eqz);
    };
    const sNeO = (): void => {
      f.get(fl).i32(7).op(Op.i32_shr_u).get(fl).i32(11).op(Op.i32_shr_u).op(Op.i32_xor).i32(1).op(Op.i32_and);
    };
    switch (base) {
      case 0: bit(0x800); break;
      case 2: bit(0x1); break;
      case 4: bit(0x40); break;
      case 6: bit(0x41); break;
      case 8: bit(0x80); break;
      case 10: bit(0x4); break;
      case 12: sNeO(); break;
      default: sNeO(); bit(0x40); f.op(Op.i32_or); break;
    }
  }
  if (cc & 1) f.op(Op.i32_eqz);
}

/**
 * After an interpretIf whose branches both leave the flags in the arena's record: they are that
 * record from here on (and, when `live`, the producer of the eager flags read from it).
 */
export function flagsFromArena(g: WGen, live: boolean): void {
  g.pending = undefined;
  g.lastF = undefined;
  if (!live) return;
  const now = g.tmp64();
  flagsNow(g);
  g.c.op(Op.i64_extend_i32_u).set(now);
  produce(g, { kind: F_EAGER, sz: 8, a: now, b: now, r: now, cin: -1 }, true);
}

/** Record a flag writer: its flags are pending when live. */
export function produce(g: WGen, p: Producer, live: boolean): void {
  g.lastF = p;
  g.pending = live ? p : undefined;
}

/** r = a op b at size sz (x86 ALU op 0..7); returns r's local. */
export function alu(g: WGen, op: number, sz: number, a: number, b: number, live: boolean): number {
  const f = g.c;
  const r = g.tmp64();
  let cin = -1;
  if (op === 2 || op === 3) {
    cin = g.tmp64();
    carry(g);
    f.set(cin);
  }
  switch (op) {
    case 0: case 2:
      f.get(a).get(b).op(Op.i64_add);
      if (cin >= 0) f.get(cin).op(Op.i64_add);
      break;
    case 3: case 5: case 7:
      f.get(a).get(b).op(Op.i64_sub);
      if (cin >= 0) f.get(cin).op(Op.i64_sub);
      break;
    case 1: f.get(a).get(b).op(Op.i64_or); break;
    case 4: f.get(a).get(b).op(Op.i64_and); break;
    default: f.get(a).get(b).op(Op.i64_xor); break;
  }
  maskTo(g, sz);
  f.set(r);
  const kind = op === 0 || op === 2 ? F_ADD : op === 1 || op === 4 || op === 6 ? F_LOGIC : F_SUB;
  produce(g, { kind, sz, a, b, r, cin }, live);
  return r;
}
