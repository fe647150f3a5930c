/**
 * Block translator for 64-bit mode: decodes a run of instructions (a trace within one 4 KiB
 * code page) and turns it into one JavaScript function (`new Function`), so V8 compiles the
 * guest code path instead of re-decoding it on every execution.
 *
 * Traces: the decoder follows direct JMP/CALL targets and the fall-through of Jcc inside the
 * page (a taken Jcc is a side exit), and a RET that returns to a CALL of the same trace (checked
 * at run time). A trace that branches back to its own start becomes a loop inside the function
 * (LOOP_CAP instructions per call at most). Flag liveness is computed over the whole trace.
 *
 * What is translated inline: MOV/LEA/MOVZX/MOVSX/MOVSXD, the ALU group (ADD/OR/ADC/SBB/AND/SUB/
 * XOR/CMP/TEST, with lazy flags kept in the Cpu fields exactly as the interpreter keeps them),
 * INC/DEC/NEG/NOT, shifts, IMUL, PUSH/POP, CALL/RET/JMP/Jcc (block exits), CMOVcc/SETcc, NOPs.
 * Every other instruction whose length we know is run by the interpreter (`step`) from inside
 * the block; instructions that may change mode, privilege, or control flow end the block after
 * the interpreter ran them.
 *
 * Invariants shared with the interpreter:
 *  - before an instruction that may fault, `c.startRip` is set to its RIP (the run loop restarts
 *    there and delivers the exception), and the register file and the lazy-flag fields hold
 *    the architectural state (registers kept in locals and deferred flag stores are written
 *    back first: see Gen.pending and Gen.dirty);
 *  - a block ends with `s.rip` = next RIP and returns the number of instructions it executed,
 *    with registers and flags written back;
 *  - arithmetic flags may be left unmaterialised only when a later instruction of the same
 *    block overwrites all of them before any reader (they are live at every block exit);
 *  - a store that hits a page holding translated code invalidates that page's blocks and sets
 *    `c.smc`; the block checks it after each store and exits, so the new code is fetched.
 */
import type { Cpu } from './cpu.js';
import { step, alu, shift, incdec, imulTrunc, imul64lo, neg, mulDiv } from './exec.js';
import { CpuFault } from '../system-api.js';
import { F64_ZERO } from '../state.js';
import { NO_TAG } from './consts.js';
import type { D } from './jit-decode.js';
import { buildTrace, constShiftCount, continuation, continueSafe, stores } from './jit-trace.js';

const TWO47 = 140737488355328;
/** Instructions a self-looping block runs per call at most (interrupts are polled between calls). */
const LOOP_CAP = 2048;

/** A translated block. Number fields are doubles from the start (see F64_ZERO). */
export class Block {
  /** Linear RIP of the first instruction. */
  rip = F64_ZERO;
  /** Offset of the first instruction in the first RAM region. */
  phys = F64_ZERO;
  /** Lowest offset of the block's bytes (a trace may jump backwards within its page). */
  lo = F64_ZERO;
  /** RAM page index (phys >> 12). */
  page = F64_ZERO;
  /** End offset (exclusive) of the block's bytes in the first RAM region. */
  end = F64_ZERO;
  valid = true;
  /** Table slot of a WebAssembly block (0: a JavaScript block). */
  slot = 0;
  /**
   * Successor links kept by the run loop: the block that ran next from RIP s0Rip / s1Rip,
   * valid while its key matches and the block is valid: TLB epoch * 8 + CPL, or for a successor on
   * a global page (the kernel's) global epoch * 8 + 4 + CPL, which survives CR3 writes.
   */
  s0: Block | undefined = undefined;
  s0Rip = NO_TAG;
  s0Key = NO_TAG;
  s1: Block | undefined = undefined;
  s1Rip = NO_TAG;
  s1Key = NO_TAG;

  constructor(
    readonly run: (c: Cpu) => number,
    rip: number,
    phys: number,
    lo: number,
    end: number,
    /** Instructions in the block. */
    readonly n: number,
  ) {
    this.rip = rip;
    this.phys = phys;
    this.lo = lo;
    this.page = phys >>> 12;
    this.end = end;
  }
}

// ---- code generation ------------------------------------------------------------------------

const MASKS = [0, 0xff, 0xffff, 0, 0xffffffff];

/** Flags producer known at compile time (for direct Jcc/SETcc/CMOVcc conditions). */
interface FlagSrc {
  /** sub: a - b; logic: CF = OF = 0; incdec: only ZF/SF are known (CF kept, OF not computed). */
  kind: 'sub' | 'logic' | 'incdec';
  sz: number;
  a: string;
  ah: string;
  b: string;
  bh: string;
  r: string;
  rh: string;
}

class Gen {
  out: string[] = [];
  tmp = 0;
  lastF: FlagSrc | undefined;
  /**
   * Lazy-flag stores of the last inline flag writer, not yet made: they are emitted on every
   * path that leaves the block and before any instruction that may fault or look at the Cpu's
   * flag fields (see pendingSafe), so a compare whose result only steers a branch inside the
   * block stores nothing on the path that stays.
   */
  pending: string | undefined = undefined;
  /** Flags are read at the block start before being written (a loop must store them first). */
  liveAtStart = true;
  /**
   * Register cache: guest register halves (indices into gpr) held in locals R<n> by the
   * instructions that cannot fault or reach the register file behind the block's back (see
   * cacheInsn); `dirty` ones are newer than gpr and are stored back on every path that leaves
   * the block and before any other instruction.
   */
  readonly loaded = new Set<number>();
  readonly dirty = new Set<number>();
  readonly used = new Set<number>();
  /** RIP of the block's first instruction. */
  start = 0;
  /**
   * The block branches back to its own start: its body runs in a loop (up to LOOP_CAP
   * instructions per call) and N counts the instructions of the finished iterations.
   */
  loop = false;

  /** `return` of the instructions executed, k in this iteration. */
  ret(k: number): string {
    return `${this.pending ?? ''}${this.regStores()}${this.loop ? `return N + ${k};` : `return ${k};`}`;
  }

  /** Stores of the dirty cached registers (to G, the register file under a name cacheInsn leaves alone). */
  regStores(): string {
    let out = '';
    for (const n of this.dirty) out += `G[${n}] = R${n}; `;
    return out;
  }

  /** Store the dirty cached registers now. */
  flushRegs(): void {
    const st = this.regStores();
    if (st !== '') this.emit(st);
    this.dirty.clear();
  }

  /** Make the pending flag stores now. */
  flush(): void {
    if (this.pending !== undefined) this.emit(this.pending);
    this.pending = undefined;
  }

  /** Go to `t` after k instructions of this iteration: loop when t is the block start. */
  jump(t: number | string, k: number): string {
    if (this.loop && t === this.start) {
      const p = this.pending ?? '';
      const r = this.regStores();
      return `{ N += ${k}; if (N < ${LOOP_CAP} && c.smc === 0 && !c.exitRequested) { ${this.liveAtStart ? p : ''}${r}continue; } s.rip = ${t}; ${p}${r}return N; }`;
    }
    return `{ s.rip = ${t}; ${this.ret(k)} }`;
  }

  v(prefix: string): string {
    return `${prefix}${this.tmp++}`;
  }

  emit(s: string): void {
    this.out.push(s);
  }
}

/** Unsigned value of register r at size (8: the low half). */
function rd(d: D, r: number, sz: number): string {
  switch (sz) {
    case 1:
      return d.rex !== 0 || r < 4 ? `(g[${2 * r}] & 255)` : `((g[${2 * (r - 4)}] >> 8) & 255)`;
    case 2:
      return `(g[${2 * r}] & 65535)`;
    default:
      return `(g[${2 * r}] >>> 0)`;
  }
}

function rdHi(r: number): string {
  return `(g[${2 * r + 1}] >>> 0)`;
}

function wr(d: D, r: number, sz: number, v: string, vh: string): string {
  switch (sz) {
    case 1:
      if (d.rex !== 0 || r < 4) return `g[${2 * r}] = (g[${2 * r}] & -256) | (${v} & 255);`;
      return `g[${2 * (r - 4)}] = (g[${2 * (r - 4)}] & -65281) | ((${v} & 255) << 8);`;
    case 2:
      return `g[${2 * r}] = (g[${2 * r}] & -65536) | (${v} & 65535);`;
    case 4:
      // the store truncates to 32 bits: an unsigned view of a register needs no conversion
      return `g[${2 * r}] = ${/^\(g\[\d+\] >>> 0\)$/.test(v) ? v.slice(1, -7) : v}; g[${2 * r + 1}] = 0;`;
    default:
      return `g[${2 * r}] = ${v}; g[${2 * r + 1}] = ${vh};`;
  }
}

/** Expression for the linear address of the memory operand (64-bit addressing). */
function eaExpr(d: D): string {
  const parts: string[] = [];
  if (d.ripRel) parts.push(String(d.rip + d.len + d.disp));
  else {
    if (d.base >= 0) parts.push(`(g[${2 * d.base + 1}] * 4294967296 + (g[${2 * d.base}] >>> 0))`);
    if (d.index >= 0) parts.push(`(g[${2 * d.index + 1}] * 4294967296 + (g[${2 * d.index}] >>> 0)) * ${d.scale}`);
    if (d.disp !== 0 || parts.length === 0) parts.push(String(d.disp));
  }
  if (d.seg >= 4) parts.push(`s.segBase[${d.seg}]`);
  return parts.join(' + ');
}

/** Emit `L = <linear address>` with the canonical check; returns the variable name. */
function emitEa(gn: Gen, d: D): string {
  const L = gn.v('L');
  const stack = d.base === 4 || d.base === 5;
  gn.emit(`var ${L} = ${eaExpr(d)}; if (${L} < -${TWO47} || ${L} >= ${TWO47}) nc(${stack ? 12 : 13});`);
  return L;
}

function readMem(sz: number, L: string): string {
  return sz === 1 ? `c.read8(${L})` : sz === 2 ? `c.read16(${L})` : sz === 4 ? `c.read32(${L})` : `c.read64(${L})`;
}

function writeMem(sz: number, L: string, v: string, vh: string): string {
  return sz === 1 ? `c.write8(${L}, ${v});` : sz === 2 ? `c.write16(${L}, ${v});` : sz === 4 ? `c.write32(${L}, ${v});` : `c.write64(${L}, ${v}, ${vh});`;
}

/** Condition expression for cc from a known flag source, or the lazy evaluator. */
function condExpr(gn: Gen, cc: number): string {
  const f = gn.lastF;
  const neg = (cc & 1) !== 0;
  const base = cc & ~1;
  let e: string | undefined;
  if (f !== undefined && f.kind === 'incdec' && base !== 4 && base !== 8) return `c.cond(${cc})`;
  if (f !== undefined) {
    const sz = f.sz;
    const signBit = sz === 8 ? `(${f.rh} >>> 31)` : `((${f.r} >>> ${sz * 8 - 1}) & 1)`;
    const zero = sz === 8 ? `((${f.r} | ${f.rh}) === 0)` : `(${f.r} === 0)`;
    if (f.kind === 'sub') {
      const ext = (x: string): string => (sz === 4 ? `(${x} | 0)` : sz === 2 ? `((${x} << 16) >> 16)` : sz === 1 ? `((${x} << 24) >> 24)` : x);
      switch (base) {
        case 2: e = sz === 8 ? `(${f.ah} !== ${f.bh} ? ${f.ah} < ${f.bh} : ${f.a} < ${f.b})` : `(${f.a} < ${f.b})`; break;
        case 4: e = sz === 8 ? `(${f.a} === ${f.b} && ${f.ah} === ${f.bh})` : `(${f.a} === ${f.b})`; break;
        case 6: e = sz === 8 ? `(${f.ah} !== ${f.bh} ? ${f.ah} < ${f.bh} : ${f.a} <= ${f.b})` : `(${f.a} <= ${f.b})`; break;
        case 8: e = `(${signBit} === 1)`; break;
        case 12: e = sz === 8 ? `(${f.ah} !== ${f.bh} ? (${f.ah} | 0) < (${f.bh} | 0) : ${f.a} < ${f.b})` : `(${ext(f.a)} < ${ext(f.b)})`; break;
        case 14: e = sz === 8 ? `(${f.ah} !== ${f.bh} ? (${f.ah} | 0) < (${f.bh} | 0) : ${f.a} <= ${f.b})` : `(${ext(f.a)} <= ${ext(f.b)})`; break;
      }
    } else {
      switch (base) {
        case 0: e = 'false'; break;
        case 2: e = 'false'; break;
        case 4: e = zero; break;
        case 6: e = zero; break;
        case 8: case 12: e = `(${signBit} === 1)`; break;
        case 14: e = `(${zero} || ${signBit} === 1)`; break;
      }
    }
  }
  if (e === undefined) return `c.cond(${cc})`;
  return neg ? `!${e}` : e;
}

/** Operand value of the r/m operand: emits loads; returns [lo, hi] expressions (variables). */
function loadRm(gn: Gen, d: D, sz: number, L: string | undefined): [string, string] {
  const v = gn.v('v');
  const vh = gn.v('w');
  if (d.mod === 3) {
    gn.emit(`var ${v} = ${rd(d, d.rm, sz)}, ${vh} = ${sz === 8 ? rdHi(d.rm) : '0'};`);
  } else if (sz === 8) {
    gn.emit(`var ${v} = ${readMem(8, L!)}, ${vh} = c.hi;`);
  } else gn.emit(`var ${v} = ${readMem(sz, L!)}, ${vh} = 0;`);
  return [v, vh];
}

function storeRm(gn: Gen, d: D, sz: number, L: string | undefined, v: string, vh: string): void {
  if (d.mod === 3) gn.emit(wr(d, d.rm, sz, v, vh));
  else gn.emit(writeMem(sz, L!, v, vh));
}

/**
 * Lazy-flag stores of an ADD (fOp 1) or SUB/CMP (fOp 2) without carry in; the high halves
 * matter only at 64 bits (the flag evaluators read them only when fSz is 8).
 */
function arithFlagStores(fOp: number, sz: number, a: string, ah: string, b: string, bh: string, r: string, rh: string): string {
  const hi = sz === 8 ? `c.fAHi = ${ah}; c.fBHi = ${bh}; c.fResHi = ${rh}; ` : '';
  return `c.fOp = ${fOp}; c.fSz = ${sz}; c.fCin = 0; c.fA = ${a}; c.fB = ${b}; c.fRes = ${r}; ${hi}`;
}

/**
 * Emit an ALU operation r = a op b (op 0..7 as the x86 encoding) at size sz; returns [r, rh].
 * `live`: whether the flags must be stored into the Cpu's lazy-flag fields.
 */
function emitAlu(gn: Gen, op: number, sz: number, a: string, ah: string, b: string, bh: string, live: boolean): [string, string] {
  const r = gn.v('r');
  const rh = gn.v('h');
  if ((op === 2 || op === 3) || sz < 4) {
    gn.emit(`var ${r} = alu(c, ${op}, ${sz}, ${a}, ${ah}, ${b}, ${bh}), ${rh} = c.hi;`);
    gn.pending = undefined; // alu stored the flags
    if (op === 1 || op === 4 || op === 6) gn.lastF = { kind: 'logic', sz, a, ah, b, bh, r, rh };
    else if (op === 5 || op === 7) gn.lastF = { kind: 'sub', sz, a, ah, b, bh, r, rh };
    else gn.lastF = undefined;
    return [r, rh];
  }
  if (op === 0) {
    if (sz === 8) {
      const l = gn.v('l');
      gn.emit(`var ${l} = ${a} + ${b}, ${r} = ${l} >>> 0, ${rh} = (${ah} + ${bh} + (${l} > 4294967295 ? 1 : 0)) >>> 0;`);
    } else gn.emit(`var ${r} = (${a} + ${b}) >>> 0, ${rh} = 0;`);
    gn.pending = live ? arithFlagStores(1, sz, a, ah, b, bh, r, rh) : undefined;
    gn.lastF = undefined;
    return [r, rh];
  }
  if (op === 5 || op === 7) {
    if (sz === 8) {
      const l = gn.v('l');
      gn.emit(`var ${l} = ${a} - ${b}, ${r} = ${l} >>> 0, ${rh} = (${ah} - ${bh} - (${l} < 0 ? 1 : 0)) >>> 0;`);
    } else gn.emit(`var ${r} = (${a} - ${b}) >>> 0, ${rh} = 0;`);
    gn.pending = live ? arithFlagStores(2, sz, a, ah, b, bh, r, rh) : undefined;
    gn.lastF = { kind: 'sub', sz, a, ah, b, bh, r, rh };
    return [r, rh];
  }
  const o = op === 1 ? '|' : op === 4 ? '&' : '^';
  gn.emit(`var ${r} = (${a} ${o} ${b}) >>> 0, ${rh} = ${sz === 8 ? `(${ah} ${o} ${bh}) >>> 0` : '0'};`);
  gn.pending = live ? `c.fOp = 3; c.fSz = ${sz}; c.fRes = ${r}; ${sz === 8 ? `c.fResHi = ${rh}; ` : ''}` : undefined;
  gn.lastF = { kind: 'logic', sz, a, ah, b, bh, r, rh };
  return [r, rh];
}

/** r = v shifted (o: 4/6 SHL, 5 SHR, 7 SAR) by the constant n (1..63), sz 4 or 8, no flags. */
function emitShiftNoFlags(gn: Gen, o: number, sz: number, v: string, vh: string, n: number): [string, string] {
  const r = gn.v('r');
  const rh = gn.v('h');
  let lo: string;
  let hi: string;
  if (sz === 4) {
    lo = o === 5 ? `${v} >>> ${n}` : o === 7 ? `(${v} >> ${n}) >>> 0` : `(${v} << ${n}) >>> 0`;
    hi = '0';
  } else if (o === 4 || o === 6) {
    if (n < 32) {
      lo = `(${v} << ${n}) >>> 0`;
      hi = `((${vh} << ${n}) | (${v} >>> ${32 - n})) >>> 0`;
    } else {
      lo = '0';
      hi = `(${v} << ${n - 32}) >>> 0`;
    }
  } else {
    const sign = o === 7;
    if (n < 32) {
      lo = `((${v} >>> ${n}) | (${vh} << ${32 - n})) >>> 0`;
      hi = sign ? `(${vh} >> ${n}) >>> 0` : `${vh} >>> ${n}`;
    } else {
      lo = sign ? `(${vh} >> ${n - 32}) >>> 0` : `${vh} >>> ${n - 32}`;
      hi = sign ? `(${vh} >> 31) >>> 0` : '0';
    }
  }
  gn.emit(`var ${r} = ${lo}, ${rh} = ${hi};`);
  return [r, rh];
}

/** r = v rotated left by k (1 .. bits-1), sz 4 or 8, no flags. */
function emitRotateNoFlags(gn: Gen, k: number, sz: number, v: string, vh: string): [string, string] {
  const r = gn.v('r');
  const rh = gn.v('h');
  if (sz === 4) {
    gn.emit(`var ${r} = ((${v} << ${k}) | (${v} >>> ${32 - k})) >>> 0, ${rh} = 0;`);
  } else if (k === 32) {
    gn.emit(`var ${r} = ${vh} >>> 0, ${rh} = ${v} >>> 0;`);
  } else {
    // rotating left by k >= 32 is swapping the halves and rotating by k - 32
    const [a, b, j] = k < 32 ? [v, vh, k] : [vh, v, k - 32];
    gn.emit(`var ${r} = ((${a} << ${j}) | (${b} >>> ${32 - j})) >>> 0, ${rh} = ((${b} << ${j}) | (${a} >>> ${32 - j})) >>> 0;`);
  }
  return [r, rh];
}

/** Sign-extended immediate (imm32 or imm8) as [lo, hi] literal strings for size sz. */
function immLit(v: number, sz: number): [string, string] {
  if (sz === 8) return [String(v >>> 0), v < 0 ? '4294967295' : '0'];
  return [String((v & MASKS[sz]!) >>> 0), '0'];
}

function emitPush(gn: Gen, lo: string, hi: string): void {
  const sp = gn.v('sp');
  gn.emit(`var ${sp} = g[9] * 4294967296 + (g[8] >>> 0) - 8; if (${sp} < -${TWO47} || ${sp} >= ${TWO47}) nc(12);`);
  gn.emit(`c.write64(${sp}, ${lo}, ${hi}); g[8] = ${sp}; g[9] = Math.floor(${sp} / 4294967296);`);
}

/**
 * ALU operations whose flags nobody reads (ADD/OR/AND/SUB/XOR at 32 or 64 bits): emitted as
 * plain statements on the register file, with no temporaries and no lazy-flag stores, so a
 * block costs few JavaScript operations even before V8 optimizes it. `dst`/`src` are register
 * numbers; `src` < 0 means the immediate `imm` (sign-extended). Returns false for other cases.
 */
function emitDeadAluReg(gn: Gen, aop: number, sz: number, dst: number, src: number, imm: number): boolean {
  if (!(aop === 0 || aop === 1 || aop === 4 || aop === 5 || aop === 6) || (sz !== 4 && sz !== 8)) return false;
  // every arithmetic flag is overwritten and none is read before the next writer
  gn.pending = undefined;
  gn.lastF = undefined;
  const a = 2 * dst;
  const bLo = src >= 0 ? `g[${2 * src}]` : String(imm | 0);
  const bHi = src >= 0 ? `g[${2 * src + 1}]` : imm < 0 ? '-1' : '0';
  if (aop === 1 || aop === 4 || aop === 6) {
    const o = aop === 1 ? '|' : aop === 4 ? '&' : '^';
    if (sz === 4) gn.emit(`g[${a}] ${o}= ${bLo}; g[${a + 1}] = 0;`);
    else gn.emit(`g[${a}] ${o}= ${bLo}; g[${a + 1}] ${o}= ${bHi};`);
    return true;
  }
  const o = aop === 0 ? '+' : '-';
  if (sz === 4) {
    gn.emit(`g[${a}] ${o}= ${bLo}; g[${a + 1}] = 0;`);
    return true;
  }
  // 64-bit: the carry (borrow) out of the low halves, computed on their unsigned values
  const l = gn.v('l');
  const bU = src >= 0 ? `(${bLo} >>> 0)` : String(imm >>> 0);
  const carry = aop === 0 ? `(${l} > 4294967295 ? 1 : 0)` : `(${l} < 0 ? 1 : 0)`;
  gn.emit(`var ${l} = (g[${a}] >>> 0) ${o} ${bU}; g[${a + 1}] = g[${a + 1}] ${o} ${bHi} ${o} ${carry}; g[${a}] = ${l};`);
  return true;
}

/**
 * May the instruction run with flag stores still pending (Gen.pending)? True for inline
 * register forms that cannot fault and neither read nor write the Cpu's flag fields (inline
 * flag writers replace the pending stores; branches emit them on their exit paths).
 */
function pendingSafe(gn: Gen, d: D, live: boolean): boolean {
  const op = d.op;
  const reg = !d.hasModrm || d.mod === 3;
  const sz = d.opsize;
  if (d.lock) return false;
  const cc = (x: number): boolean => !condExpr(gn, x & 15).includes('c.cond');
  if (op < 0x40 && (op & 7) < 6) {
    const kind = op & 7;
    const aop = op >> 3;
    if (aop === 2 || aop === 3 || sz < 4) return false;
    return kind === 5 || (reg && (kind === 1 || kind === 3));
  }
  if (op === 0x81 || op === 0x83) return reg && sz >= 4 && (d.reg & 7) !== 2 && (d.reg & 7) !== 3;
  if (op === 0x85 || op === 0xa9) return (reg || op === 0xa9) && sz >= 4;
  if (op >= 0x88 && op <= 0x8b) return reg;
  if (op === 0x8d) return !reg && !d.ad32;
  if (op === 0x63) return reg && sz === 8;
  if (op >= 0xb0 && op <= 0xbf) return true;
  if (op === 0xc6 || op === 0xc7) return reg && (d.reg & 7) === 0;
  if (op === 0x1b6 || op === 0x1b7 || op === 0x1be || op === 0x1bf) return reg;
  if (op === 0x90) return (d.rex & 1) === 0 && d.rep !== 0xf3;
  if (op === 0x11f) return true;
  if (op >= 0x1c8 && op <= 0x1cf) return sz !== 2;
  if (op === 0xc0 || op === 0xc1 || op === 0xd0 || op === 0xd1) {
    if (live || !reg || (op & 1) === 0 || sz < 4) return false;
    const o = d.reg & 7;
    if (o <= 1) return ((op < 0xd0 ? d.imm & 0xff : 1) & (sz === 8 ? 63 : 31)) !== 0;
    return constShiftCount(d) > 0;
  }
  if (op === 0xff && (d.reg & 7) <= 1) return reg && sz >= 4 && !live;
  if (op === 0xf7 && (d.reg & 7) === 2) return reg;
  if (op === 0x69 || op === 0x6b || op === 0x1af) return reg && !live && sz >= 4;
  if ((op >= 0x140 && op <= 0x14f) || (op >= 0x190 && op <= 0x19f)) return reg && cc(op);
  if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) return cc(op);
  return op === 0xeb || op === 0xe9;
}

/** Returns false if the instruction cannot be generated inline (caller falls back). */
function genInsn(gn: Gen, d: D, live: boolean, k: number, next: number): 'cont' | 'exit' | false {
  const op = d.op;
  const sz = d.opsize;
  const ripC = `c.startRip = ${d.rip};`;
  const mem = d.hasModrm && d.mod !== 3;
  if ((mem && d.ad32) || d.lock) return false;
  // ---- ALU ----
  if (op < 0x40 && (op & 7) < 6) {
    const kind = op & 7;
    const aop = op >> 3;
    const s1 = kind & 1 ? sz : 1;
    if (!live) {
      if (kind === 5 && emitDeadAluReg(gn, aop, sz, 0, -1, d.imm)) return 'cont';
      if (!mem && kind === 1 && emitDeadAluReg(gn, aop, sz, d.rm, d.reg, 0)) return 'cont';
      if (!mem && kind === 3 && emitDeadAluReg(gn, aop, sz, d.reg, d.rm, 0)) return 'cont';
    }
    if (kind === 4 || kind === 5) {
      const [b, bh] = immLit(kind === 4 ? d.imm : d.imm, s1);
      const a = gn.v('a');
      const ah = gn.v('b');
      gn.emit(`var ${a} = ${rd(d, 0, s1)}, ${ah} = ${s1 === 8 ? rdHi(0) : '0'};`);
      const [r, rh] = emitAlu(gn, aop, s1, a, ah, kind === 4 ? String(d.imm & 0xff) : b, bh, live);
      if (aop !== 7) gn.emit(wr(d, 0, s1, r, rh));
      return 'cont';
    }
    if (mem) gn.emit(ripC);
    const L = mem ? emitEa(gn, d) : undefined;
    const [rmv, rmh] = loadRm(gn, d, s1, L);
    const g1 = gn.v('x');
    const g1h = gn.v('y');
    gn.emit(`var ${g1} = ${rd(d, d.reg, s1)}, ${g1h} = ${s1 === 8 ? rdHi(d.reg) : '0'};`);
    if (kind < 2) {
      // xor r, r / sub r, r idiom: still correct through the general path
      const [r, rh] = emitAlu(gn, aop, s1, rmv, rmh, g1, g1h, live);
      if (aop !== 7) storeRm(gn, d, s1, L, r, rh);
      if (mem && aop !== 7) return 'cont';
    } else {
      const [r, rh] = emitAlu(gn, aop, s1, g1, g1h, rmv, rmh, live);
      if (aop !== 7) gn.emit(wr(d, d.reg, s1, r, rh));
    }
    return 'cont';
  }
  switch (op) {
    case 0x80: case 0x81: case 0x83: {
      const s1 = op === 0x80 ? 1 : sz;
      const aop = d.reg & 7;
      const immv = op === 0x81 ? d.imm : (d.imm << 24) >> 24;
      if (!live && !mem && op !== 0x80 && emitDeadAluReg(gn, aop, sz, d.rm, -1, immv)) return 'cont';
      const [b, bh] = op === 0x80 ? [String(d.imm & 0xff), '0'] : immLit(immv, s1);
      if (mem) gn.emit(ripC);
      const L = mem ? emitEa(gn, d) : undefined;
      const [a, ah] = loadRm(gn, d, s1, L);
      const [r, rh] = emitAlu(gn, aop, s1, a, ah, b, bh, live);
      if (aop !== 7) storeRm(gn, d, s1, L, r, rh);
      return 'cont';
    }
    case 0x84: case 0x85: case 0xa8: case 0xa9: {
      const s1 = op & 1 ? sz : 1;
      let a: string, ah: string, b: string, bh: string;
      if (op >= 0xa8) {
        a = gn.v('a');
        ah = gn.v('b');
        gn.emit(`var ${a} = ${rd(d, 0, s1)}, ${ah} = ${s1 === 8 ? rdHi(0) : '0'};`);
        [b, bh] = op === 0xa8 ? [String(d.imm & 0xff), '0'] : immLit(d.imm, s1);
      } else {
        if (mem) gn.emit(ripC);
        const L = mem ? emitEa(gn, d) : undefined;
        [a, ah] = loadRm(gn, d, s1, L);
        b = gn.v('x');
        bh = gn.v('y');
        gn.emit(`var ${b} = ${rd(d, d.reg, s1)}, ${bh} = ${s1 === 8 ? rdHi(d.reg) : '0'};`);
      }
      emitAlu(gn, 4, s1, a, ah, b, bh, live);
      return 'cont';
    }
    case 0x88: case 0x89: {
      const s1 = op & 1 ? sz : 1;
      if (mem) {
        gn.emit(ripC);
        const L = emitEa(gn, d);
        gn.emit(writeMem(s1, L, rd(d, d.reg, s1), s1 === 8 ? `g[${2 * d.reg + 1}]` : '0'));
      } else gn.emit(wr(d, d.rm, s1, rd(d, d.reg, s1), s1 === 8 ? `g[${2 * d.reg + 1}]` : '0'));
      return 'cont';
    }
    case 0x8a: case 0x8b: {
      const s1 = op & 1 ? sz : 1;
      if (mem) {
        gn.emit(ripC);
        const L = emitEa(gn, d);
        if (s1 === 8) {
          const v = gn.v('v');
          gn.emit(`var ${v} = c.read64(${L}); g[${2 * d.reg}] = ${v}; g[${2 * d.reg + 1}] = c.hi;`);
        } else gn.emit(wr(d, d.reg, s1, readMem(s1, L), '0'));
      } else if (s1 === 8) gn.emit(`g[${2 * d.reg}] = g[${2 * d.rm}]; g[${2 * d.reg + 1}] = g[${2 * d.rm + 1}];`);
      else gn.emit(wr(d, d.reg, s1, rd(d, d.rm, s1), '0'));
      return 'cont';
    }
    case 0x8d: {
      if (!mem) return false;
      if (d.ripRel) {
        const t = d.rip + d.len + d.disp;
        gn.emit(wr(d, d.reg, sz, String(t >>> 0), String(Math.floor(t / 4294967296) >>> 0)));
        return 'cont';
      }
      const lo = gn.v('lo');
      const parts: string[] = [];
      const hparts: string[] = [];
      if (d.base >= 0) {
        parts.push(`(g[${2 * d.base}] >>> 0)`);
        hparts.push(`g[${2 * d.base + 1}]`);
      }
      if (d.index >= 0) {
        parts.push(`(g[${2 * d.index}] >>> 0) * ${d.scale}`);
        hparts.push(`g[${2 * d.index + 1}] * ${d.scale}`);
      }
      parts.push(String(d.disp));
      gn.emit(`var ${lo} = ${parts.join(' + ')};`);
      if (sz === 8) {
        gn.emit(`g[${2 * d.reg}] = ${lo}; g[${2 * d.reg + 1}] = ${hparts.length ? hparts.join(' + ') + ' + ' : ''}Math.floor(${lo} / 4294967296);`);
      } else gn.emit(wr(d, d.reg, sz, sz === 2 ? `(${lo} & 65535)` : `(${lo} >>> 0)`, '0'));
      return 'cont';
    }
    case 0x63: {
      if (sz !== 8) return false;
      if (mem) gn.emit(ripC);
      const L = mem ? emitEa(gn, d) : undefined;
      const v = gn.v('v');
      gn.emit(`var ${v} = ${mem ? readMem(4, L!) : rd(d, d.rm, 4)}; g[${2 * d.reg}] = ${v}; g[${2 * d.reg + 1}] = (${v} | 0) >> 31;`);
      return 'cont';
    }
    case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7: {
      const r = (op & 7) | ((d.rex & 1) << 3);
      gn.emit(wr(d, r, 1, String(d.imm & 0xff), '0'));
      return 'cont';
    }
    case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf: {
      const r = (op & 7) | ((d.rex & 1) << 3);
      if (sz === 8) gn.emit(`g[${2 * r}] = ${d.imm | 0}; g[${2 * r + 1}] = ${d.immHi | 0};`);
      else gn.emit(wr(d, r, sz, String(sz === 2 ? d.imm & 0xffff : d.imm >>> 0), '0'));
      return 'cont';
    }
    case 0xc6: case 0xc7: {
      if ((d.reg & 7) !== 0) return false;
      const s1 = op & 1 ? sz : 1;
      const [v, vh] = s1 === 1 ? [String(d.imm & 0xff), '0'] : immLit(d.imm, s1);
      if (mem) {
        gn.emit(ripC);
        const L = emitEa(gn, d);
        gn.emit(writeMem(s1, L, v, vh));
      } else gn.emit(wr(d, d.rm, s1, v, vh));
      return 'cont';
    }
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57: {
      if (sz === 2) return false;
      const r = (op & 7) | ((d.rex & 1) << 3);
      gn.emit(ripC);
      const lo = gn.v('p');
      const hi = gn.v('q');
      gn.emit(`var ${lo} = g[${2 * r}], ${hi} = g[${2 * r + 1}];`);
      emitPush(gn, lo, hi);
      return 'cont';
    }
    case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
      if (sz === 2) return false;
      const r = (op & 7) | ((d.rex & 1) << 3);
      gn.emit(ripC);
      const sp = gn.v('sp');
      const v = gn.v('v');
      gn.emit(`var ${sp} = g[9] * 4294967296 + (g[8] >>> 0); if (${sp} < -${TWO47} || ${sp} >= ${TWO47}) nc(12);`);
      gn.emit(`var ${v} = c.read64(${sp}); ${sp} += 8; g[8] = ${sp}; g[9] = Math.floor(${sp} / 4294967296); g[${2 * r}] = ${v}; g[${2 * r + 1}] = c.hi;`);
      return 'cont';
    }
    case 0x68: case 0x6a: {
      if (sz === 2) return false;
      const v = op === 0x68 ? d.imm : (d.imm << 24) >> 24;
      gn.emit(ripC);
      emitPush(gn, String(v | 0), v < 0 ? '-1' : '0');
      return 'cont';
    }
    case 0x69: case 0x6b: case 0x1af: {
      if (mem) gn.emit(ripC);
      const L = mem ? emitEa(gn, d) : undefined;
      const [a, ah] = loadRm(gn, d, sz, L);
      let b: string, bh: string;
      if (op === 0x1af) {
        b = gn.v('x');
        bh = gn.v('y');
        gn.emit(`var ${b} = ${rd(d, d.reg, sz)}, ${bh} = ${sz === 8 ? rdHi(d.reg) : '0'};`);
      } else [b, bh] = immLit(op === 0x69 ? d.imm : (d.imm << 24) >> 24, sz);
      const r = gn.v('r');
      if (sz === 8 && !live) gn.emit(`var ${r} = imul64lo(c, ${a}, ${ah}, ${b}, ${bh});`); // flags dead: no overflow check
      else if (sz === 4 && !live) gn.emit(`var ${r} = Math.imul(${a}, ${b}) >>> 0; c.hi = 0;`);
      else gn.emit(`var ${r} = imulTrunc(c, ${sz}, ${a}, ${ah}, ${b}, ${bh});`);
      gn.emit(wr(d, d.reg, sz, r, 'c.hi'));
      gn.lastF = undefined;
      return 'cont';
    }
    case 0x90:
      if (d.rex & 1 || d.rep === 0xf3) return false;
      return 'cont';
    case 0x11f:
      return 'cont';
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd3: {
      const s1 = op & 1 ? sz : 1;
      if (mem) gn.emit(ripC);
      const L = mem ? emitEa(gn, d) : undefined;
      const [v, vh] = loadRm(gn, d, s1, L);
      const rot = d.reg & 7;
      if (!live && rot <= 1 && (s1 === 4 || s1 === 8) && op !== 0xd3) {
        // ROL/ROR by a nonzero constant with dead flags (rotates write only CF/OF)
        const k = (op < 0xd0 ? d.imm & 0xff : 1) & (s1 === 8 ? 63 : 31);
        if (k !== 0) {
          const [r, rh] = emitRotateNoFlags(gn, rot === 0 ? k : s1 * 8 - k, s1, v, vh);
          storeRm(gn, d, s1, L, r, rh);
          gn.lastF = undefined;
          return 'cont';
        }
      }
      const cnt = constShiftCount(d);
      if (!live && cnt > 0 && (s1 === 4 || s1 === 8)) {
        // SHL/SHR/SAR by a constant with dead flags: plain JS shifts
        const [r, rh] = emitShiftNoFlags(gn, d.reg & 7, s1, v, vh, cnt);
        storeRm(gn, d, s1, L, r, rh);
        gn.lastF = undefined;
        return 'cont';
      }
      const n = op < 0xd0 ? String(d.imm & 0xff) : op < 0xd2 ? '1' : '(g[2] & 255)';
      const r = gn.v('r');
      gn.emit(`var ${r} = shift(c, ${d.reg & 7}, ${s1}, ${v}, ${vh}, ${n});`);
      storeRm(gn, d, s1, L, r, 'c.hi');
      gn.lastF = undefined;
      return 'cont';
    }
    case 0xf6: case 0xf7: {
      const s1 = op & 1 ? sz : 1;
      const o = d.reg & 7;
      if (o === 0 || o === 1) {
        if (mem) gn.emit(ripC);
        const L = mem ? emitEa(gn, d) : undefined;
        const [a, ah] = loadRm(gn, d, s1, L);
        const [b, bh] = s1 === 1 ? [String(d.imm & 0xff), '0'] : immLit(d.imm, s1);
        emitAlu(gn, 4, s1, a, ah, b, bh, live);
        return 'cont';
      }
      if (o === 2 || o === 3) {
        if (mem) gn.emit(ripC);
        const L = mem ? emitEa(gn, d) : undefined;
        const [a, ah] = loadRm(gn, d, s1, L);
        const r = gn.v('r');
        if (o === 2) {
          gn.emit(`var ${r} = (~${a} & ${MASKS[Math.min(s1, 4)]}) >>> 0;`);
          storeRm(gn, d, s1, L, r, `(~${ah}) >>> 0`);
        } else {
          gn.emit(`var ${r} = neg(c, ${s1}, ${a}, ${ah});`);
          storeRm(gn, d, s1, L, r, 'c.hi');
          gn.lastF = undefined;
        }
        return 'cont';
      }
      // MUL, IMUL, DIV, IDIV with the accumulator (DIV and IDIV may raise #DE)
      gn.emit(ripC);
      const L = mem ? emitEa(gn, d) : undefined;
      const [a, ah] = loadRm(gn, d, s1, L);
      gn.emit(`mulDiv(c, ${o}, ${s1}, ${a}, ${ah});`);
      gn.lastF = undefined;
      return 'cont';
    }
    case 0xfe: case 0xff: {
      const o = d.reg & 7;
      const s1 = op === 0xfe ? 1 : sz;
      // INC/DEC of a register whose flags nobody reads: add/subtract 1
      if (o <= 1 && !live && !mem && op === 0xff && emitDeadAluReg(gn, o === 0 ? 0 : 5, sz, d.rm, -1, 1)) return 'cont';
      if (o <= 1) {
        if (mem) gn.emit(ripC);
        const L = mem ? emitEa(gn, d) : undefined;
        const [a, ah] = loadRm(gn, d, s1, L);
        const r = gn.v('r');
        if (s1 === 4) {
          // inline: CF is preserved (materialised first), the rest as ADD/SUB 1
          gn.emit(`var ${r} = (${a} ${o === 1 ? '-' : '+'} 1) >>> 0;`);
          if (live) gn.emit(`c.fCin = c.cf(); c.fOp = ${o === 1 ? 5 : 4}; c.fSz = 4; c.fA = ${a}; c.fB = 1; c.fRes = ${r};`);
          storeRm(gn, d, s1, L, r, '0');
          gn.lastF = { kind: 'incdec', sz: 4, a, ah, b: '1', bh: '0', r, rh: '0' };
          return 'cont';
        }
        gn.emit(`var ${r} = incdec(c, ${s1}, ${a}, ${ah}, ${o === 1});`);
        storeRm(gn, d, s1, L, r, 'c.hi');
        gn.lastF = undefined;
        return 'cont';
      }
      if (op === 0xfe || sz === 2) return false;
      if (o === 2 || o === 4) { // CALL/JMP near indirect
        gn.emit(ripC);
        const L = mem ? emitEa(gn, d) : undefined;
        const [lo, hi] = loadRm(gn, d, 8, L);
        const t = gn.v('t');
        gn.emit(`var ${t} = (${hi} | 0) * 4294967296 + ${lo}; if (${t} < -${TWO47} || ${t} >= ${TWO47}) nc(13);`);
        if (o === 2) emitPush(gn, String(next >>> 0), String(Math.floor(next / 4294967296) | 0));
        gn.emit(`s.rip = ${t}; ${gn.ret(k + 1)}`);
        return 'exit';
      }
      if (o === 6) {
        gn.emit(ripC);
        const L = mem ? emitEa(gn, d) : undefined;
        const [lo, hi] = loadRm(gn, d, 8, L);
        emitPush(gn, lo, hi);
        return 'cont';
      }
      return false;
    }
    case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: {
      const ssz = op & 1 ? 2 : 1;
      if (mem) gn.emit(ripC);
      const L = mem ? emitEa(gn, d) : undefined;
      const [v] = loadRm(gn, d, ssz, L);
      if (op < 0x1be) gn.emit(wr(d, d.reg, sz, v, '0'));
      else {
        const x = gn.v('x');
        const sh = ssz === 1 ? 24 : 16;
        gn.emit(`var ${x} = (${v} << ${sh}) >> ${sh};`);
        gn.emit(wr(d, d.reg, sz, sz === 2 ? `(${x} & 65535)` : `(${x} >>> 0)`, `(${x} >> 31) >>> 0`));
      }
      return 'cont';
    }
    default:
      break;
  }
  if (op >= 0x140 && op <= 0x14f) { // CMOVcc
    if (mem) gn.emit(ripC);
    const L = mem ? emitEa(gn, d) : undefined;
    const [v, vh] = loadRm(gn, d, sz, L);
    gn.emit(`if (${condExpr(gn, op & 15)}) { ${wr(d, d.reg, sz, v, vh)} }${sz === 4 ? ` else g[${2 * d.reg + 1}] = 0;` : ''}`);
    return 'cont';
  }
  if (op >= 0x1c8 && op <= 0x1cf && sz !== 2) { // BSWAP
    const r = (op & 7) | ((d.rex & 1) << 3);
    const sw = (x: string): string => `((${x} >>> 24) | ((${x} >> 8) & 0xff00) | ((${x} << 8) & 0xff0000) | (${x} << 24))`;
    if (sz === 8) {
      const t = gn.v('t');
      gn.emit(`var ${t} = g[${2 * r}]; g[${2 * r}] = ${sw(`g[${2 * r + 1}]`)}; g[${2 * r + 1}] = ${sw(t)};`);
    }
    else gn.emit(`g[${2 * r}] = ${sw(`g[${2 * r}]`)}; g[${2 * r + 1}] = 0;`);
    return 'cont';
  }
  if (op >= 0x190 && op <= 0x19f) { // SETcc
    const cnd = `(${condExpr(gn, op & 15)} ? 1 : 0)`;
    if (mem) {
      gn.emit(ripC);
      const L = emitEa(gn, d);
      gn.emit(`c.write8(${L}, ${cnd});`);
    } else gn.emit(wr(d, d.rm, 1, cnd, '0'));
    return 'cont';
  }
  // ---- control transfer: block exits ----
  if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) {
    const rel = op < 0x100 ? (d.imm << 24) >> 24 : d.imm | 0;
    const t = next + rel;
    if (t < -TWO47 || t >= TWO47) return false;
    if (d.follow) {
      gn.emit(`if (${condExpr(gn, op & 15)}) ${gn.jump(t, k + 1)}`);
      return 'cont';
    }
    if (gn.loop && t === gn.start) gn.emit(`if (${condExpr(gn, op & 15)}) ${gn.jump(t, k + 1)} s.rip = ${next}; ${gn.ret(k + 1)}`);
    else gn.emit(`s.rip = ${condExpr(gn, op & 15)} ? ${t} : ${next}; ${gn.ret(k + 1)}`);
    return 'exit';
  }
  if (op === 0xeb || op === 0xe9) {
    const rel = op === 0xeb ? (d.imm << 24) >> 24 : d.imm | 0;
    const t = next + rel;
    if (t < -TWO47 || t >= TWO47) return false;
    if (d.follow) return 'cont';
    gn.emit(gn.jump(t, k + 1));
    return 'exit';
  }
  if (op === 0xe8) {
    if (sz === 2) return false;
    const t = next + (d.imm | 0);
    if (t < -TWO47 || t >= TWO47) return false;
    gn.emit(ripC);
    emitPush(gn, String(next >>> 0), String(Math.floor(next / 4294967296) | 0));
    if (d.follow) return 'cont';
    gn.emit(`s.rip = ${t}; ${gn.ret(k + 1)}`);
    return 'exit';
  }
  if (op === 0xc3) {
    if (sz === 2) return false;
    gn.emit(ripC);
    const sp = gn.v('sp');
    const t = gn.v('t');
    gn.emit(`var ${sp} = g[9] * 4294967296 + (g[8] >>> 0); if (${sp} < -${TWO47} || ${sp} >= ${TWO47}) nc(12);`);
    gn.emit(`var ${t} = c.read64(${sp}); ${t} = (c.hi | 0) * 4294967296 + ${t}; if (${t} < -${TWO47} || ${t} >= ${TWO47}) nc(13);`);
    if (d.follow) {
      gn.emit(`${sp} += 8; g[8] = ${sp}; g[9] = Math.floor(${sp} / 4294967296); if (${t} !== ${d.retTo}) { s.rip = ${t}; ${gn.ret(k + 1)} }`);
      return 'cont';
    }
    gn.emit(`${sp} += 8; g[8] = ${sp}; g[9] = Math.floor(${sp} / 4294967296); s.rip = ${t}; ${gn.ret(k + 1)}`);
    return 'exit';
  }
  return false;
}

function nc(vector: number): never {
  throw new CpuFault(vector, 0);
}

/**
 * Statistics (TYPEVISOR_BT_STATS): how often translated blocks ran each kind of instruction in
 * the interpreter, keyed by opcode and ModRM reg field, per CPU (Cpu.fallbackCounts; undefined
 * when not collecting) — several VMs in one process each count their own.
 */
export type FallbackCounts = Map<number, number>;

export function fallbackKey(d: D): number {
  return d.op * 8 + (d.hasModrm ? d.reg & 7 : 0);
}

/** "0f af /3"-style name of a fallback key. */
export function fallbackName(key: number): string {
  const op = key >> 3;
  const hex = (v: number): string => v.toString(16).padStart(2, '0');
  return `${op >= 0x100 ? `0f ${hex(op & 0xff)}` : hex(op)} /${key & 7}`;
}

/** Count one fallback of `key` in `counts` (a CPU's Cpu.fallbackCounts). */
export function fb(counts: FallbackCounts, key: number): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

const helperNames = ['step', 'alu', 'shift', 'incdec', 'imulTrunc', 'imul64lo', 'neg', 'mulDiv', 'nc', 'fb'] as const;
const helperValues = [step, alu, shift, incdec, imulTrunc, imul64lo, neg, mulDiv, nc, fb];

const STORE_RE = /\bg\[(\d+)\] (=|\^=|\|=|&=|\+=|-=) ([^;]*);/g;

/**
 * Rewrite the code of an instruction that only computes on registers (pendingSafe) to use the
 * register cache: loads of the registers it reads that are not cached yet go first, stores
 * become assignments to locals (kept as int32, as the Int32Array would), reads use the locals.
 */
function cacheInsn(gn: Gen, code: string[]): string[] {
  let text = code.join('\n');
  const loads: string[] = [];
  // a store under a condition (CMOVcc) keeps the old value on the other path: load it too
  const readRe = text.includes('if (') ? /\bg\[(\d+)\]/g : /\bg\[(\d+)\](?! = )/g;
  for (const m of text.matchAll(readRe)) {
    const n = Number(m[1]);
    if (!gn.loaded.has(n)) {
      loads.push(`R${n} = G[${n}];`);
      gn.loaded.add(n);
      gn.used.add(n);
    }
  }
  text = text.replace(STORE_RE, (_m, ns: string, op: string, e: string) => {
    const n = Number(ns);
    gn.loaded.add(n);
    gn.dirty.add(n);
    gn.used.add(n);
    return op === '=' ? `R${n} = (${e}) | 0;` : `R${n} = (R${n} ${op[0]} (${e})) | 0;`;
  });
  text = text.replace(/\bg\[(\d+)\]/g, (_m, ns: string) => `R${ns}`);
  return loads.length ? [loads.join(' '), text] : [text];
}

/** After an instruction that used the register file directly: drop the cached copies it changed. */
function uncacheInsn(gn: Gen, code: string[]): void {
  const text = code.join('\n');
  if (text.includes('step(c)') || text.includes('mulDiv(')) {
    gn.loaded.clear();
    return;
  }
  for (const m of text.matchAll(STORE_RE)) gn.loaded.delete(Number(m[1]));
}

/**
 * Compile the block starting at linear `rip` whose bytes are at `off` in the first RAM region.
 * `isBlockStart(rip, off)`: a translated block already starts there (the trace ends before it,
 * so the two chain instead of overlapping).
 */
/** `countFallbacks`: the block counts what it interprets in its CPU's fallbackCounts (statistics). */
export function compileBlock(ram: Uint8Array, rip: number, off: number, isBlockStart?: (rip: number, off: number) => boolean, countFallbacks = false): Block {
  const { insns, live, liveAtStart: lv, terminal, loop, end: r, lo, hiEnd } = buildTrace(ram, rip, off, isBlockStart);
  const gn = new Gen();
  gn.start = rip;
  gn.liveAtStart = lv;
  gn.loop = loop;
  let k = 0;
  let exited = false;
  for (let i = 0; i < insns.length; i++) {
    const d = insns[i]!;
    const next = d.rip + d.len;
    // where execution goes on after d inside this block (a followed JMP/CALL: its target)
    const cont = continuation(insns, i, r);
    const safe = d !== terminal && pendingSafe(gn, d, live[i]!);
    if (!safe) {
      gn.flush();
      gn.flushRegs();
    }
    const at = gn.out.length;
    const res = d === terminal ? false : genInsn(gn, d, live[i]!, k, next);
    const code = gn.out.splice(at);
    if (safe && res !== false) gn.out.push(...cacheInsn(gn, code));
    else {
      gn.out.push(...code);
      uncacheInsn(gn, code);
    }
    if (res === 'exit') {
      exited = true;
      k++;
      break;
    }
    if (res === false) {
      // run it in the interpreter
      gn.flush();
      gn.flushRegs();
      gn.loaded.clear();
      if (countFallbacks) gn.emit(`fb(c.fallbackCounts, ${fallbackKey(d)});`);
      gn.emit(`c.startRip = ${d.rip}; s.rip = ${d.rip}; step(c);`);
      gn.lastF = undefined;
      k++;
      if (d === terminal || !continueSafe(d)) {
        gn.emit(gn.ret(k));
        exited = true;
        break;
      }
      gn.emit(`if (c.smc !== 0 || s.rip !== ${next} || s.interruptShadow) ${gn.ret(k)}`);
      continue;
    }
    k++;
    if (stores(d)) gn.emit(`if (c.smc !== 0) { s.rip = ${cont}; ${gn.ret(k)} }`);
  }
  if (!exited) {
    if (insns.length === 0) {
      // nothing decodable: interpret one instruction
      gn.emit(`c.startRip = ${rip}; step(c); return 1;`);
      k = 1;
    } else gn.emit(gn.jump(r, k));
  }
  const code = gn.loop ? `var N = 0;\nfor (;;) {\n${gn.out.join('\n')}\n}` : gn.out.join('\n');
  const regs = [...gn.used].map((n) => `R${n} = 0`).join(', ');
  const body = `return function blk(c) {\n const s = c.s, g = s.gpr, G = g;\n${regs ? `var ${regs};\n` : ''}${code}\n};`;
  const factory = new Function(...helperNames, body) as (...h: unknown[]) => (c: Cpu) => number;
  const fn = factory(...helperValues);
  return new Block(fn, rip, off, lo, hiEnd, k);
}

