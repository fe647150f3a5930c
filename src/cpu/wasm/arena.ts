/**
 * The wasm arena: one WebAssembly.Memory that holds the first RAM region of the guest (from
 * address 0) followed by the CPU state that translated wasm blocks read and write directly —
 * the general registers, the segment bases, the software TLB, the code-line map used to detect
 * self-modifying code, and a small exchange area (lazy flags, exit RIP, stop flag).
 *
 * The JavaScript side keeps using its typed arrays: they are views into this memory, so the
 * interpreter and the translated code share one register file and one TLB.
 */
import { TLB_SIZE } from '../core/consts.js';

const PAGE = 65536;
/** The most a 32-bit wasm memory can hold (V8 on 64-bit hosts: 65536 pages). */
const MAX_BYTES = 65536 * PAGE;

/** Offsets within the state area (relative to Arena.base). */
export const A_GPR = 0; // 16 x i64
export const A_SEGBASE = 128; // 6 x f64
/** Lazy-flag record written by wasm blocks: kind (i32, -1 = the Cpu's fields hold the flags). */
export const A_FKIND = 192;
export const A_FSZ = 196;
export const A_FCIN = 200;
/** Set (1) by the host when a slow-path access made the running block stop (SMC, exit request). */
export const A_STOP = 204;
export const A_FA = 208; // i64
export const A_FB = 216; // i64
export const A_FRES = 224; // i64
/** RIP at which execution continues after a block (f64). */
export const A_RIP = 232;
/** Scratch for 64-bit values passed from the host to wasm (i64). */
export const A_SCRATCH = 240;
/** Translation key of the running code (TLB epoch * 4 + CPL, as i32): links made under another key are stale. */
export const A_KEY = 248;
/** The chainable exit a block last left through (0: none), for the host to link. */
export const A_EXIT = 252;
/** Key for links into code on global pages (global epoch * 8 + 4 + CPL, as i32). */
export const A_GKEY = 256;
/** 1 while SSE instructions may run (CR4.OSFXSR set, CR0.TS and CR0.EM clear), as i32. */
export const A_SSE_OK = 260;
/** RFLAGS.DF (1 set, 0 clear) as i32: the step of translated string instructions. */
export const A_DF = 264;
/** Scratch for one 128-bit value (a memory operand on its way to a vector op). */
export const A_XTMP = 272;
/** Block entries (i32, wrapping), counted only when BlockLayout.countEntries: TYPEVISOR_BT_STATS. */
export const A_ENTRIES = 288;
/** vCPU 0's area only: the mutex word of Arena.mutexIndex. */
export const A_MUTEX = 296;
/**
 * Code other threads' stores invalidated, for this vCPU to drop (translate/cross-thread.ts):
 * a lock word, the entry count, an overflow flag, and INVAL_SLOTS (RAM offset, length) pairs.
 */
export const A_INVAL_LOCK = 304;
export const A_INVAL_COUNT = 308;
export const A_INVAL_OVERFLOW = 312;
export const A_INVAL_RING = 384;
export const INVAL_SLOTS = 16;
/** End of the variables above (views over them cover [0, A_VARS_END)). */
export const A_VARS_END = 512;
/** The XMM registers, 16 x 128 bits (the interpreter's CpuState.xmm views them). */
export const A_XMM = 512;
export const A_TLB_TAG = 1024; // TLB_SIZE x f64
export const A_TLB_ADDR = A_TLB_TAG + TLB_SIZE * 8; // TLB_SIZE x f64
export const A_TLB_PERM = A_TLB_ADDR + TLB_SIZE * 8; // TLB_SIZE x u8
/** Block-exit links: MAX_LINKS x (table slot i32, key i32), after the TLB. */
const A_LINKS = Math.ceil((A_TLB_PERM + TLB_SIZE) / 8) * 8;
export const MAX_LINKS = 1 << 20;
/**
 * Indirect-branch cache, after the links: IC_SIZE x (rip f64, key i32, table slot i32), indexed
 * by icHash(rip): where a block that leaves through RET or an indirect JMP/CALL goes straight on.
 */
export const IC_SIZE = 1 << 16;

/** Index of rip in the indirect-branch cache (the same in wasm: low 32 bits, xor, mask). */
export function icHash(rip: number): number {
  const lo = rip >>> 0;
  return (lo ^ (lo >>> 12)) & (IC_SIZE - 1);
}

export class Arena {
  /** Offset of the state area (after guest RAM and the state areas of lower-numbered vCPUs, page aligned). */
  readonly base: number;
  /**
   * Offset of the code-line map, one for the whole memory: vCPU 0's area holds it and every
   * vCPU's translated stores check it, so a store by one vCPU into code another translated is
   * seen (the BlockCache's peers drop it there).
   */
  readonly codeLinesBase: number;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  private claimed = false;

  constructor(readonly memory: WebAssembly.Memory, readonly ramSize: number, readonly vcpu = 0) {
    const first = Math.ceil(ramSize / PAGE) * PAGE;
    this.codeLinesBase = first;
    this.base = first + codeLinesBytes(ramSize) + vcpu * stateBytes();
    const buf = memory.buffer;
    this.i32 = new Int32Array(buf, this.base, A_VARS_END / 4);
    this.f64 = new Float64Array(buf, this.base, A_VARS_END / 8);
  }

  /**
   * A Cpu takes the arena: true the first time, when its tables are still all zero (a new wasm
   * memory is) and need no clearing — the exit links alone are 8 MiB, which clearing would make
   * resident in every VM; false when an earlier Cpu may have left entries behind.
   */
  claim(): boolean {
    const fresh = !this.claimed;
    this.claimed = true;
    return fresh;
  }

  get buffer(): ArrayBuffer {
    return this.memory.buffer;
  }

  /** The memory is shared with vCPUs on other threads (allocArenaRam's `shared`). */
  get shared(): boolean {
    return this.memory.buffer instanceof SharedArrayBuffer;
  }

  /**
   * Index (in an Int32Array over the buffer) of a word all vCPUs of this memory use as a
   * mutex: CMPXCHG16B, which no host atomic covers, holds it on several threads. In vCPU 0's
   * state area.
   */
  get mutexIndex(): number {
    return (Math.ceil(this.ramSize / PAGE) * PAGE + codeLinesBytes(this.ramSize) + A_MUTEX) >> 2;
  }

  gpr(): Int32Array {
    return new Int32Array(this.buffer, this.base + A_GPR, 32);
  }

  segBase(): Float64Array {
    return new Float64Array(this.buffer, this.base + A_SEGBASE, 6);
  }

  /** Where the XMM registers live: byte offset in `buffer` (256 bytes). */
  xmmOffset(): number {
    return this.base + A_XMM;
  }

  tlbTag(): Float64Array {
    return new Float64Array(this.buffer, this.base + A_TLB_TAG, TLB_SIZE);
  }

  tlbAddr(): Float64Array {
    return new Float64Array(this.buffer, this.base + A_TLB_ADDR, TLB_SIZE);
  }

  tlbPerm(): Uint8Array {
    return new Uint8Array(this.buffer, this.base + A_TLB_PERM, TLB_SIZE);
  }

  /** Exit links: [2e] table slot, [2e + 1] key. */
  links(): Int32Array {
    return new Int32Array(this.buffer, this.base + linksOffset(), MAX_LINKS * 2);
  }

  /** The indirect-branch cache as f64 (rip at 2i) and i32 (key at 4i + 2, slot at 4i + 3) views. */
  icF64(): Float64Array {
    return new Float64Array(this.buffer, this.base + icOffset(), IC_SIZE * 2);
  }

  icI32(): Int32Array {
    return new Int32Array(this.buffer, this.base + icOffset(), IC_SIZE * 4);
  }

  /**
   * The wasm TLB tags as i32 pairs (8 per entry) and the RAM offsets (minus the page's linear
   * address, mod 2^32).
   */
  wtlbTags(): Int32Array {
    return new Int32Array(this.buffer, this.base + wtlbOffset(), TLB_SIZE * 8);
  }

  wtlbAddr(): Int32Array {
    return new Int32Array(this.buffer, this.base + wtlbAddrOffset(), TLB_SIZE);
  }

  /** The slot map (slotPhysOffset): per table slot, the RAM offset its block starts at. */
  slotPhys(): Float64Array {
    return new Float64Array(this.buffer, this.base + slotPhysOffset(), MAX_SLOTS);
  }

  codeLines(): Uint8Array {
    return new Uint8Array(this.buffer, this.codeLinesBase, Math.ceil(this.ramSize / 64) + 1);
  }
}

/** Offset of the link table in the state area. */
export function linksOffset(): number {
  return A_LINKS;
}

/**
 * The TLB as translated code reads it (kept by the Cpu next to its own arrays): per entry 32
 * bytes of i64 tags — supervisor read, user read, supervisor write, user write — each the page
 * number when that access may use the entry and the page is RAM, else WT_INVALID; and the page's
 * offset in RAM (i32) in a second array.
 */
export function wtlbOffset(): number {
  return icOffset() + IC_SIZE * 16;
}

export function wtlbAddrOffset(): number {
  return wtlbOffset() + TLB_SIZE * 32;
}

/** Offset of the indirect-branch cache in the state area. */
export function icOffset(): number {
  return linksOffset() + MAX_LINKS * 8;
}

/** Table slots of translated blocks at most (the backend's function table). */
export const MAX_SLOTS = 1 << 18;

/**
 * Offset of the slot map: per table slot, the RAM offset (f64) of the code its block starts at,
 * so translated code can check that an exit link made under an earlier TLB epoch still leads
 * there (the runtime's relink).
 */
export function slotPhysOffset(): number {
  return Math.ceil((wtlbAddrOffset() + TLB_SIZE * 4) / 8) * 8;
}

/** Bytes of one vCPU's state area (page aligned). */
function stateBytes(): number {
  return Math.ceil((slotPhysOffset() + MAX_SLOTS * 8) / PAGE) * PAGE;
}

/** Bytes of the code-line map: a byte per 64-byte line of the first RAM region (page aligned). */
function codeLinesBytes(ramSize: number): number {
  return Math.ceil((Math.ceil(ramSize / 64) + 1) / PAGE) * PAGE;
}

/**
 * Bytes of the whole arena for a first RAM region of `ramSize` bytes: the RAM, the code-line
 * map, and `vcpus` state areas.
 */
function arenaBytes(ramSize: number, vcpus: number): number {
  return Math.ceil(ramSize / PAGE) * PAGE + codeLinesBytes(ramSize) + vcpus * stateBytes();
}

/** Can a first RAM region of this size live in a wasm arena (with `vcpus` state areas)? */
export function arenaFits(ramSize: number, vcpus = 1): boolean {
  return arenaBytes(ramSize, vcpus) <= MAX_BYTES;
}

const arenas = new WeakMap<ArrayBuffer, Arena[]>();

/**
 * A buffer for the first RAM region (pass it as RegionSpec.buffer) whose memory also holds one
 * state area per vCPU; `arenaOf(buffer, vcpu)` finds them again. Throws RangeError when it does
 * not fit. `shared`: a shared memory (a SharedArrayBuffer), for vCPUs on several threads; each
 * other thread calls attachArena with it.
 */
export function allocArenaRam(ramSize: number, vcpus = 1, shared = false): ArrayBuffer {
  const bytes = arenaBytes(ramSize, vcpus);
  if (bytes > MAX_BYTES) throw new RangeError(`a ${ramSize}-byte first RAM region with ${vcpus} vCPU state areas does not fit in a wasm memory`);
  const memory = new WebAssembly.Memory({ initial: bytes / PAGE, maximum: bytes / PAGE, shared });
  return attachArena(memory, ramSize, vcpus);
}

/**
 * Another thread's view of an arena allocated with `shared` (its WebAssembly.Memory posted
 * here): registers its state areas for arenaOf; returns the buffer to build the RAM region on.
 */
export function attachArena(memory: WebAssembly.Memory, ramSize: number, vcpus: number): ArrayBuffer {
  const list: Arena[] = [];
  for (let i = 0; i < vcpus; i++) list.push(new Arena(memory, ramSize, i));
  arenas.set(memory.buffer as ArrayBuffer, list);
  return memory.buffer as ArrayBuffer;
}

/** Every vCPU's state area in the memory of `buffer` (none: not an arena). */
export function arenasOf(buffer: ArrayBufferLike): readonly Arena[] {
  return arenas.get(buffer as ArrayBuffer) ?? [];
}

/** vCPU `vcpu`'s state area in the memory of `buffer`, if it has one. */
export function arenaOf(buffer: ArrayBufferLike, vcpu = 0): Arena | undefined {
  return arenas.get(buffer as ArrayBuffer)?.[vcpu];
}

/** The RAM region specs with the first region placed in a wasm arena when it fits. */
export function withArena<S extends { size: number; buffer?: ArrayBuffer }>(specs: readonly S[], vcpus = 1, shared = false): S[] {
  const out = specs.slice();
  const r0 = out[0];
  if (r0 !== undefined && arenaFits(r0.size, vcpus)) out[0] = { ...r0, buffer: allocArenaRam(r0.size, vcpus, shared) };
  return out;
}
