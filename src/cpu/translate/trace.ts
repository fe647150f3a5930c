/**
 * Trace building for the block translator (cpu/wasm): which
 * instructions a block holds, where it ends, which flag writes are live, and the instruction
 * classes the translator asks about.
 */
import { decode, newD, type D } from './decode.js';
import { FlagUse, flagUseOf, flowOf, Flow, storesOf } from '../isa/table.js';

const TWO47 = 140737488355328;

/** Instructions per block at most. */
export const MAX_BLOCK = 192;
/**
 * Straight-line code ends a block at the first instruction past a CONVERGE_BYTES boundary once
 * the block holds CONVERGE_MIN instructions, so blocks entered at different points of one run
 * of code end at the same place and share their successors instead of each translating its
 * own copy of the rest.
 */
const CONVERGE_BYTES = 512;
const CONVERGE_MIN = 48;
/**
 * Where execution goes on inside the block after insns[i]: its fall-through, or for a followed
 * JMP/CALL/RET the next instruction of the trace (`end` after the last).
 */
export function continuation(insns: readonly D[], i: number, end: number): number {
  const d = insns[i]!;
  const next = d.rip + d.len;
  if (!d.follow || !(d.op === 0xe8 || d.op === 0xe9 || d.op === 0xeb || d.op === 0xc3)) return next;
  return i + 1 < insns.length ? insns[i + 1]!.rip : end;
}

/** A decoded trace, ready for a back end. */
export interface Trace {
  /** The instructions (shared scratch objects: valid until the next buildTrace). */
  insns: D[];
  /** live[i]: the flags instruction i writes may be read (by a later instruction or after an exit). */
  live: boolean[];
  /** Flags are read at the block start before being written. */
  liveAtStart: boolean;
  /** An instruction that ends the block after the interpreter ran it (mode change, privilege...). */
  terminal: D | undefined;
  /** The trace branches back to its own start (its body runs as a loop). */
  loop: boolean;
  /** RIP after the last instruction (where a block that runs off its end continues). */
  end: number;
  /** RAM offset of `end` (may be the end of the page). */
  endOff: number;
  /** Lowest and end offsets of the block's bytes in RAM. */
  lo: number;
  hiEnd: number;
}

const scratch: D[] = [];
for (let i = 0; i < MAX_BLOCK; i++) scratch.push(newD());


export function buildTrace(ram: Uint8Array, rip: number, off: number, isBlockStart?: (rip: number, off: number) => boolean): Trace {
  const pageStart = off - (off & 0xfff);
  const pageEnd = pageStart + 4096;
  const insns: D[] = [];
  let p = off;
  let r = rip;
  let lo = off;
  let hiEnd = off + 1;
  let terminal: D | undefined;
  /** Return addresses (rip, offset) pushed by CALLs this trace followed. */
  const calls: number[] = [];
  /** Set once the trace followed a branch: only then can it come back to an instruction it holds. */
  let jumped = false;
  trace: while (insns.length < MAX_BLOCK && p < pageEnd) {
    // a trace never re-enters an instruction it already holds (no loops inside one block)
    if (jumped) for (const x of insns) if (x.rip === r) break trace;
    if (insns.length > 0) {
      const prev = insns[insns.length - 1]!;
      const straight = prev.rip + prev.len === r;
      if (straight && insns.length >= CONVERGE_MIN && Math.floor(p / CONVERGE_BYTES) !== Math.floor((p - prev.len) / CONVERGE_BYTES)) break;
      if (isBlockStart?.(r, p)) break;
    }
    const d = scratch[insns.length]!;
    if (!decode(ram, p, pageEnd, r, d)) break;
    d.follow = false;
    insns.push(d);
    if (p < lo) lo = p;
    p += d.len;
    r += d.len;
    if (p > hiEnd) hiEnd = p;
    const op = d.op;
    if (flowOf(d.info) === Flow.Branch) {
      // direct branches: continue the trace (fall-through of Jcc, target of JMP/CALL) in this page
      if (d.lock || insns.length >= MAX_BLOCK) break;
      if (op === 0xc3) {
        // a RET to a CALL this trace followed: go on after that CALL (checked at run time)
        if (d.opsize === 2 || calls.length === 0) break;
        const ro = calls.pop()!;
        const rr = calls.pop()!;
        if (ro >= pageEnd) break;
        d.follow = true;
        d.retTo = rr;
        p = ro;
        r = rr;
        jumped = true;
        continue;
      }
      const jcc = (op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f);
      if (!jcc && op !== 0xe8 && op !== 0xe9 && op !== 0xeb) break;
      if (op === 0xe8 && d.opsize === 2) break;
      const rel = op < 0x80 || op === 0xeb ? (d.imm << 24) >> 24 : d.imm | 0;
      const t = r + rel;
      if (t < -TWO47 || t >= TWO47) break;
      if (!jcc) {
        const tp = p + rel;
        if (tp < pageStart || tp >= pageEnd) break;
        if (op === 0xe8) calls.push(r, p);
        p = tp;
        r = t;
        jumped = true;
      }
      d.follow = true;
      continue;
    }
    if (!continueSafe(d)) {
      terminal = d;
      break;
    }
  }
  // flag liveness, backwards (live at exit)
  const live = new Array<boolean>(insns.length);
  let lv = true;
  for (let i = insns.length - 1; i >= 0; i--) {
    live[i] = lv;
    const d = insns[i]!;
    const u = flagUse(d);
    if (u === FlagUse.WritesAll) lv = false;
    else if (u !== FlagUse.None) lv = true;
    // an exception it raises shows the flags from before it in its frame (RFLAGS on the stack)
    if (mayFault(d)) lv = true;
  }
  // a block that branches back to its own start runs as a loop
  const loop = insns.length > 0 && (r === rip || insns.some((d) => {
    const op = d.op;
    if (!((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f) || op === 0xe9 || op === 0xeb)) return false;
    const rel = op < 0x80 || op === 0xeb ? (d.imm << 24) >> 24 : d.imm | 0;
    return d.rip + d.len + rel === rip;
  }));
  return { insns, live, liveAtStart: lv, terminal, loop, end: r, endOff: p, lo, hiEnd };
}

export { FlagUse };

/** What the instruction does with the arithmetic flags (the table's fact, refined for shifts by a constant count). */
export function flagUse(d: D): FlagUse {
  if (constShiftCount(d) > 0) return FlagUse.WritesAll;
  return flagUseOf(d.info);
}

/**
 * May the instruction raise an exception? False only for register forms that cannot (ALU, moves,
 * shifts, multiplies, bit operations, CMOVcc/SETcc, LEA, followed direct jumps, hints); every
 * memory access, division, stack operation, LOCK prefix or instruction the interpreter runs may.
 */
export function mayFault(d: D): boolean {
  const op = d.op;
  if (op === 0x8d) return d.mod === 3; // LEA: no access (its register form is #UD)
  if (op === 0x118 || op === 0x11f) return false; // PREFETCHh, NOP r/m: hints
  if (d.lock || (d.hasModrm && d.mod !== 3)) return true;
  if (op < 0x40) return (op & 7) >= 6; // ALU (register, AL/eAX immediate); the rest are prefixes or #UD in 64-bit mode
  if (op >= 0x70 && op <= 0x7f) return false; // Jcc: the target was checked canonical by the trace builder or exits
  if (op >= 0x180 && op <= 0x18f) return false;
  if (op === 0xe9 || op === 0xeb) return !d.follow;
  switch (op) {
    case 0x63: case 0x69: case 0x6b: case 0x80: case 0x81: case 0x83: case 0x84: case 0x85: case 0x86: case 0x87:
    case 0x88: case 0x89: case 0x8a: case 0x8b: case 0x98: case 0x99: case 0xc0: case 0xc1: case 0xd0: case 0xd1:
    case 0xd2: case 0xd3: case 0xf5: case 0xf8: case 0xf9:
      return false;
    case 0xc6: case 0xc7:
      return (d.reg & 7) !== 0;
    case 0xf6: case 0xf7:
      return (d.reg & 7) >= 6; // DIV/IDIV: #DE
    case 0xfe: case 0xff:
      return (d.reg & 7) >= 2;
    case 0x1ba:
      return (d.reg & 7) < 4; // BT group: /0../3 are #UD
  }
  if ((op >= 0x90 && op <= 0x97) || (op >= 0xb0 && op <= 0xbf)) return false;
  if ((op >= 0x140 && op <= 0x14f) || (op >= 0x190 && op <= 0x19f) || (op >= 0x1c8 && op <= 0x1cf)) return false;
  switch (op) {
    case 0x1a3: case 0x1a4: case 0x1a5: case 0x1ab: case 0x1ac: case 0x1ad: case 0x1af: case 0x1b0: case 0x1b1:
    case 0x1b3: case 0x1b6: case 0x1b7: case 0x1bb: case 0x1bc: case 0x1bd: case 0x1be: case 0x1bf:
    case 0x1c0: case 0x1c1:
      return false;
  }
  return true;
}

/** Instructions the interpreter may run inside a block without ending it. */
export function continueSafe(d: D): boolean {
  return flowOf(d.info) === Flow.Next || goesOnInGroup7(d);
}

/**
 * Register forms of group 7 after which a block goes on: RDTSCP (0F 01 F9) reads the clock and
 * TSC_AUX, nothing a block keeps, as RDTSC does (Linux's rdtsc_ordered, behind every kvm-clock
 * read, is RDTSCP when the CPU has it); SWAPGS (0F 01 F8) changes the GS base, and CLAC/STAC
 * (0F 01 CA/CB) what the TLB grants the kernel on user pages — translated code reads both from
 * the CPU state at every access (Linux's system call entry starts with SWAPGS, and each user
 * copy sits between STAC and CLAC). The table keeps the rest of group 7 ending blocks.
 */
function goesOnInGroup7(d: D): boolean {
  if (d.op !== 0x101 || d.mod !== 3) return false;
  const r = d.reg & 7;
  const m = d.rm & 7;
  return (r === 7 && m <= 1) || (r === 1 && (m === 2 || m === 3));
}

/**
 * Masked count of a SHL/SAL/SHR/SAR with an immediate (or implicit 1) count, or 0 when the
 * count is not a constant, is zero, or the operation is a rotate.
 */
export function constShiftCount(d: D): number {
  const o = d.reg & 7;
  if (o < 4) return 0;
  const op = d.op;
  if (op !== 0xc0 && op !== 0xc1 && op !== 0xd0 && op !== 0xd1) return 0;
  const n = op < 0xd0 ? d.imm & 0xff : 1;
  return n & (op & 1 && d.opsize === 8 ? 63 : 31);
}

/** Does the instruction store to memory (so the block must check for self-modification)? */
export function stores(d: D): boolean {
  return storesOf(d.info);
}
