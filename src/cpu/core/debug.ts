/**
 * Debug facilities (SDM vol. 3 ch. 17): single-step (RFLAGS.TF), the breakpoints of DR0-DR3 as
 * DR7 enables them (instruction, data write, data read/write, and I/O with CR4.DE), their status
 * in DR6, and RFLAGS.RF. (DR7.GD, general detect, is control.ts's: it guards MOV DR.)
 *
 * While any of these is in play (TF or RF set, or a breakpoint enabled in DR7) the run loop
 * interprets one instruction at a time through `debugStep` instead of running translated blocks,
 * so the common case pays one test per instruction. Data breakpoints are checked on the CPU's
 * slow memory paths: the TLB keeps pages holding a watched address off its fast paths
 * (`Cpu.watchPages`).
 */
import type { Cpu } from './cpu.js';
import { step } from './exec.js';
import { deliverSafe } from './run.js';
import { CpuFault, EventKind } from '../system-api.js';
import { Cr4, Flag, SReg, Vec, type CpuState } from '../state.js';

/** DR6: breakpoint conditions B0-B3, single step. */
export const DR6_B = 0xf;
export const DR6_BS = 1 << 14;

/** RFLAGS bits that make the run loop take the debug path. */
export const DEBUG_FLAGS = Flag.TF | Flag.RF;

/** DR7's R/W field for breakpoint n: 0 execute, 1 data write, 2 I/O, 3 data read/write. */
function rw(dr7: number, n: number): number {
  return (dr7 >>> (16 + 4 * n)) & 3;
}

/** Length in bytes of breakpoint n (DR7 LEN: 0 → 1, 1 → 2, 2 → 8, 3 → 4). */
function len(dr7: number, n: number): number {
  return [1, 2, 8, 4][(dr7 >>> (18 + 4 * n)) & 3]!;
}

function enabled(dr7: number, n: number): boolean {
  return ((dr7 >>> (2 * n)) & 3) !== 0;
}

/** The linear pages a data breakpoint of DR7 watches, or undefined when none is enabled. */
export function watchedPages(s: CpuState): Set<number> | undefined {
  const dr7 = s.dr[7]!;
  let pages: Set<number> | undefined;
  for (let n = 0; n < 4; n++) {
    if (!enabled(dr7, n) || (rw(dr7, n) & 1) === 0) continue;
    const l = len(dr7, n);
    const a = s.dr[n]! - (s.dr[n]! % l);
    pages ??= new Set();
    pages.add(Math.floor(a / 4096));
    pages.add(Math.floor((a + l - 1) / 4096));
  }
  return pages;
}

/** A data access [lin, lin+size) on a watched page: note the breakpoints it hits (reported after the instruction). */
export function checkWatch(c: Cpu, lin: number, size: number, write: boolean): void {
  const s = c.s;
  const dr7 = s.dr[7]!;
  for (let n = 0; n < 4; n++) {
    if (!enabled(dr7, n)) continue;
    const kind = rw(dr7, n);
    if (kind !== 3 && !(kind === 1 && write)) continue;
    const l = len(dr7, n);
    const a = s.dr[n]! - (s.dr[n]! % l);
    if (lin < a + l && a < lin + size) c.dbgHits |= 1 << n;
  }
}

/** A port access [port, port+size) while DR7 enables a breakpoint: note the I/O breakpoints it hits (CR4.DE). */
export function checkIoWatch(c: Cpu, port: number, size: number): void {
  const s = c.s;
  if (!(s.cr4 & Cr4.DE)) return;
  const dr7 = s.dr[7]!;
  for (let n = 0; n < 4; n++) {
    if (!enabled(dr7, n) || rw(dr7, n) !== 2) continue;
    const l = len(dr7, n);
    const a = (s.dr[n]! % 65536) - (s.dr[n]! % l);
    if (port < a + l && a < port + size) c.dbgHits |= 1 << n;
  }
}

/**
 * Run one instruction with the debug rules: an instruction breakpoint at it faults first (unless
 * RF is set), RF is cleared once the instruction completes (IRET may set it again), and a
 * single-step trap (TF at the start of the instruction) or a data breakpoint it hit raises #DB
 * after it, with RIP at the next instruction. Exceptions the instruction raises propagate.
 */
export function debugStep(c: Cpu): void {
  const s = c.s;
  const dr7 = s.dr[7]!;
  if (dr7 & 0xff && !(s.rflagsRest & Flag.RF)) {
    const lin = c.long ? s.rip : (s.segBase[SReg.CS]! + s.rip) % 4294967296;
    let hit = 0;
    for (let n = 0; n < 4; n++) {
      if (enabled(dr7, n) && rw(dr7, n) === 0 && s.dr[n] === lin) hit |= 1 << n;
    }
    if (hit !== 0) {
      s.dr[6] = (s.dr[6]! & ~DR6_B) | hit;
      throw new CpuFault(Vec.DB);
    }
  }
  const tf = (s.rflagsRest & Flag.TF) !== 0;
  s.rflagsRest &= ~Flag.RF;
  c.dbgHits = 0;
  c.dbgInhibit = false;
  const softInts = c.softInts;
  step(c);
  // no single-step trap after an instruction that delivered a software interrupt (delivery
  // cleared TF), nor after MOV SS / POP SS (it comes after the next instruction); one that
  // halted waits for its interrupt
  const single = tf && c.softInts === softInts && !c.dbgInhibit && !s.halted;
  const hits = c.dbgHits;
  if (!single && hits === 0) return;
  s.dr[6] = (single ? s.dr[6]! | DR6_BS : s.dr[6]!) | hits;
  if (hits !== 0) s.dr[6] = (s.dr[6]! & ~DR6_B) | hits;
  c.pollCounter = 1;
  deliverSafe(c, Vec.DB, -1, EventKind.Exception, s.rip);
}
