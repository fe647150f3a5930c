/**
 * A translated block as the run loop sees it, and the statistics of what translated code hands
 * to the interpreter. The translator (cpu/wasm) makes blocks; the block cache (cache.ts) finds,
 * links and invalidates them.
 */
import type { Cpu } from '../core/cpu.js';
import { F64_ZERO } from '../state.js';
import { NO_TAG } from '../core/consts.js';
import type { D } from './decode.js';

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
  /** Table slot of the block's WebAssembly function (0: none). */
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
  const map = op >> 8;
  const head = map === 0 ? '' : map === 1 ? '0f ' : map === 2 ? '0f 38 ' : '0f 3a ';
  return `${head}${hex(op & 0xff)} /${key & 7}`;
}

/** Count one fallback of `key` in `counts` (a CPU's Cpu.fallbackCounts). */
export function fb(counts: FallbackCounts, key: number): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
