/**
 * Runs an instruction sequence in our software CPU from an OracleState: a small headless
 * machine (one RAM region, empty buses, an interrupt controller that never interrupts), long
 * mode entered through applyEntryState with our own GDT (ring-0 and ring-3 segments, a TSS),
 * identity page tables (4 KiB pages for the first 2 MiB so tests can change single pages,
 * 2 MiB pages above) and an IDT whose every vector points at a HLT stub, so an unexpected
 * exception ends the run and is reported with its vector, error code and faulting RIP.
 *
 * Guest layout (physical = linear):
 *   0x1000 GDT   0x2000 IDT (256 x 16)   0x3000 TSS   0x4000 PML4  0x5000 PDPT  0x6000 PD
 *   0x7000 PT (0..2 MiB, 4 KiB pages)     0x8000 exception stubs (vector v at 0x8000 + 16 v)
 *   0x10000..0x1f000 ring-0 stack         0x100000 test code         0x200000 data buffer
 */
import { Bus } from '../../src/machine/bus.js';
import { HostClock } from '../../src/machine/clock.js';
import type { CpuInterruptController } from '../../src/machine/interrupts.js';
import type { EntryState } from '../../src/machine/engine.js';
import { GuestMemory } from '../../src/machine/memory.js';
import { Cpu } from '../../src/cpu/core/cpu.js';
import { allocArenaRam } from '../../src/cpu/wasm/arena.js';
import { applyEntryState } from '../../src/cpu/system/entry.js';
import { simdUnit } from '../../src/cpu/fpu/index.js';
import { features } from '../../src/cpu/features.js';
import { DATA_SIZE, FLAGS_LOADABLE, MASK64, type OracleState, type RunOptions } from './state.js';

export const GDT_BASE = 0x1000;
export const IDT_BASE = 0x2000;
export const TSS_BASE = 0x3000;
export const PML4_BASE = 0x4000;
export const PDPT_BASE = 0x5000;
export const PD_BASE = 0x6000;
export const PT_BASE = 0x7000;
export const STUB_BASE = 0x8000;
export const STACK_TOP = 0x1f000;
/** RSP0 in the TSS: the ring-0 stack used when an exception arrives from ring 3. */
export const TSS_RSP0 = 0x1c000;
export const CODE_BASE = 0x100000;
export const DATA_BASE = 0x200000;
export const RAM_SIZE = 4 * 1024 * 1024;
const LOW_IMAGE_SIZE = 0x20000;
/** Bytes of the code area cleared before each run. */
const CODE_CLEAR = 0x1000;

export const SEL_CODE64 = 0x08;
export const SEL_DATA = 0x10;
export const SEL_CODE32 = 0x18;
export const SEL_USER_DATA = 0x20 | 3;
export const SEL_USER_CODE64 = 0x28 | 3;
export const SEL_TSS = 0x30;

const CR4_OSFXSR = 1 << 9;
const CR4_OSXMMEXCPT = 1 << 10;
const CR4_OSXSAVE = 1 << 18;

/** Vectors that push an error code. */
const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17, 21]);

/** Page-table entry bits. */
export const PTE_P = 1;
export const PTE_W = 2;
export const PTE_U = 4;
export const PTE_PS = 0x80;

export class EmulatedError extends Error {
  override name = 'EmulatedError';
}

/** An exception that ended the run in an IDT stub. */
export interface EmuException {
  vector: number;
  /** Error code pushed, or -1. */
  errorCode: number;
  /** Saved RIP in the exception frame (the faulting instruction for faults), as a linear address. */
  rip: number;
  /** Saved CS and SS from the frame. */
  cs: number;
  ss: number;
  /** Saved RFLAGS and RSP. */
  rflags: number;
  rsp: number;
}

export interface EmuResult extends OracleState {
  /** Set when the run ended in an exception stub. */
  exception?: EmuException;
  /** A host error thrown by the emulator (a bug: the CPU must never throw for guest behaviour). */
  error?: string;
  /** Triple-fault reason. */
  shutdown?: string;
  /** Stopped without halting within the instruction limit. */
  timeout?: boolean;
  /** RIP after the run (just past the final HLT on success). */
  rip: number;
}

const quietInterrupts: CpuInterruptController = {
  hasInterrupt: () => false,
  acknowledge: () => {
    throw new EmulatedError('acknowledge() called with no interrupt pending');
  },
  takeNmi: () => false,
};

function descriptor(access: number, flags: number): bigint {
  // base 0, limit 0xfffff, access byte and G/DB/L flags nibble
  return 0xffffn | (BigInt(access) << 40n) | (0xfn << 48n) | (BigInt(flags) << 52n);
}

/** Write GDT, TSS, IDT (all vectors → HLT stubs, interrupt gates, DPL 3), page tables. */
export function writeSystemStructures(mem: GuestMemory): void {
  const gdt = [
    0n,
    descriptor(0x9b, 0xa), // 0x08 64-bit code, DPL 0
    descriptor(0x93, 0xc), // 0x10 data, DPL 0
    descriptor(0x9b, 0xc), // 0x18 32-bit code, DPL 0
    descriptor(0xf3, 0xc), // 0x20 data, DPL 3
    descriptor(0xfb, 0xa), // 0x28 64-bit code, DPL 3
  ];
  gdt.forEach((d, i) => mem.write64(GDT_BASE + 8 * i, d));
  // 0x30: 64-bit TSS descriptor (16 bytes), type 0xb (busy: it is loaded at entry below)
  const tssLimit = 0x67n;
  const b = BigInt(TSS_BASE);
  mem.write64(GDT_BASE + 0x30, tssLimit | ((b & 0xffffffn) << 16n) | (0x8bn << 40n) | (((b >> 24n) & 0xffn) << 56n));
  mem.write64(GDT_BASE + 0x38, b >> 32n);
  mem.fill(TSS_BASE, 0x68, 0);
  mem.write64(TSS_BASE + 4, BigInt(TSS_RSP0));
  mem.write16(TSS_BASE + 0x66, 0x68); // I/O map base beyond the limit: no bitmap

  for (let v = 0; v < 256; v++) {
    const handler = STUB_BASE + 16 * v;
    mem.fill(handler, 16, 0xf4); // HLT
    setIdtGate(mem, v, handler, 3);
  }

  mem.fill(PML4_BASE, 0x4000, 0);
  mem.write64(PML4_BASE, BigInt(PDPT_BASE | PTE_P | PTE_W | PTE_U));
  mem.write64(PDPT_BASE, BigInt(PD_BASE | PTE_P | PTE_W | PTE_U));
  mem.write64(PD_BASE, BigInt(PT_BASE | PTE_P | PTE_W | PTE_U));
  for (let i = 1; i < 512; i++) mem.write64(PD_BASE + 8 * i, BigInt(i * 0x200000 + (PTE_P | PTE_W | PTE_U | PTE_PS)));
  for (let i = 0; i < 512; i++) mem.write64(PT_BASE + 8 * i, BigInt(i * 0x1000 + (PTE_P | PTE_W | PTE_U)));
}

/** A 64-bit interrupt gate (type 0xe) or trap gate (0xf) to `handler` in the ring-0 code segment. */
export function setIdtGate(mem: GuestMemory, vector: number, handler: number, dpl: number, type = 0xe, ist = 0): void {
  const a = IDT_BASE + 16 * vector;
  mem.write16(a, handler & 0xffff);
  mem.write16(a + 2, SEL_CODE64);
  mem.write8(a + 4, ist);
  mem.write8(a + 5, 0x80 | (dpl << 5) | type);
  mem.write16(a + 6, (handler >>> 16) & 0xffff);
  mem.write32(a + 8, Math.floor(handler / 0x1_0000_0000));
  mem.write32(a + 12, 0);
}

export interface EmulatedRunOptions extends RunOptions {
  /** Instruction limit (default 1e6). */
  maxInstructions?: number;
  /** Called after the standard setup, before running (directed tests: edit memory, CPU state). */
  setup?: (cpu: Cpu, mem: GuestMemory) => void;
  /** Entry mode (default long64). protected32 starts at CODE_BASE with flat CS 0x18, DS 0x10 and paging off. */
  mode?: 'long64' | 'protected32';
}

/** Translate each block after this many executions (wasm.vitest.config.ts sets 1); unset: interpret. */
const JIT_THRESHOLD = Number(process.env.TYPEVISOR_ORACLE_JIT_THRESHOLD ?? Infinity);

/** Guest RAM shared, as for vCPUs on several threads (shared.vitest.config.ts): LOCK is then atomic. */
const SHARED_RAM = process.env.TYPEVISOR_ORACLE_SHARED_RAM === '1';

export class EmulatedRunner {
  readonly memory = new GuestMemory([{ base: 0, size: RAM_SIZE, buffer: JIT_THRESHOLD !== Infinity ? allocArenaRam(RAM_SIZE, 1, SHARED_RAM) : undefined }]);
  /** The CPU of the last run (directed tests inspect it). */
  cpu: Cpu | undefined;
  /** Pristine copy of the low 128 KiB (system structures, stubs, stack), restored before each run. */
  private readonly lowImage: Uint8Array;

  constructor() {
    writeSystemStructures(this.memory);
    this.lowImage = this.memory.readBytes(0, LOW_IMAGE_SIZE);
  }

  run(code: Uint8Array, input: OracleState, opts: EmulatedRunOptions = {}): EmuResult {
    const mem = this.memory;
    mem.writeBytes(0, this.lowImage);
    mem.fill(CODE_BASE, CODE_CLEAR, 0);
    mem.writeBytes(CODE_BASE, code);
    mem.write8(CODE_BASE + code.length, 0xf4); // HLT ends the run
    mem.writeBytes(DATA_BASE, input.mem.subarray(0, DATA_SIZE));

    const cpu = new Cpu({
      memory: mem,
      pio: new Bus('pio'),
      mmio: new Bus('mmio'),
      interrupts: quietInterrupts,
      clock: new HostClock(),
      simd: simdUnit,
      jitThreshold: JIT_THRESHOLD,
    });
    this.cpu = cpu;
    const s = cpu.s;
    const ptrRegs = opts.ptrRegs ?? [];
    const base = BigInt(DATA_BASE);
    const mode = opts.mode ?? 'long64';
    const entry: EntryState =
      mode === 'long64'
        ? { mode, rip: CODE_BASE, regs: {}, cr3: PML4_BASE, gdt: { base: GDT_BASE, limit: 0x3f, cs: SEL_CODE64, ds: SEL_DATA } }
        : { mode, rip: CODE_BASE, regs: {}, gdt: { base: GDT_BASE, limit: 0x3f, cs: SEL_CODE32, ds: SEL_DATA } };
    const result = (extra: Partial<EmuResult>): EmuResult => ({ ...this.readBack(cpu, ptrRegs), ...extra });
    try {
      applyEntryState(cpu, entry);
      s.idtrBase = IDT_BASE;
      s.idtrLimit = 0xfff;
      s.trSel = SEL_TSS;
      s.trBase = TSS_BASE;
      s.trLimit = 0x67;
      s.trAttr = 0x8b;
      if (mode === 'long64') {
        // applyEntryState leaves SSE off (the kernel enables it); the oracle needs it on
        s.cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
        if (features.xsave) {
          // as Linux sets them for the host's user mode (its XCR0 has more components; the
          // XSAVE cases request x87 and SSE only)
          s.cr4 |= CR4_OSXSAVE;
          s.xcr0 = 3;
        }
        cpu.modeChanged();
      }
      for (let i = 0; i < 16; i++) {
        let v = input.gpr[i]! & MASK64;
        if (ptrRegs.includes(i)) v = (v + base) & MASK64;
        if (i === 4) v = BigInt(STACK_TOP);
        if (mode !== 'long64') v &= 0xffff_ffffn;
        s.gpr[2 * i] = Number(v & 0xffff_ffffn) | 0;
        s.gpr[2 * i + 1] = Number(v >> 32n) | 0;
      }
      cpu.setRflags((input.rflags & FLAGS_LOADABLE) | 0x2, FLAGS_LOADABLE);
      s.xmmU8.set(input.xmm.subarray(0, 256));
      s.mxcsr = input.mxcsr;
      opts.setup?.(cpu, mem);

      const limit = opts.maxInstructions ?? 1e6;
      let done = 0;
      while (!s.halted && cpu.shutdown === undefined && done < limit) {
        const n = cpu.run(Math.min(10_000, limit - done));
        if (n <= 0 && !s.halted) break;
        done += n;
      }
    } catch (e) {
      return result({ error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e) });
    }
    if (cpu.shutdown !== undefined) return result({ shutdown: cpu.shutdown });
    if (!s.halted) return result({ timeout: true });
    const rip = s.rip;
    if (rip > STUB_BASE && rip <= STUB_BASE + 256 * 16) {
      const vector = (rip - 1 - STUB_BASE) >> 4;
      return result({ exception: this.readFrame(cpu, vector) });
    }
    return result({});
  }

  /** Read the exception frame the CPU pushed (identity-mapped stack). */
  private readFrame(cpu: Cpu, vector: number): EmuException {
    const s = cpu.s;
    let sp = (s.gpr[8] >>> 0) + (s.gpr[9] >>> 0) * 0x1_0000_0000;
    const mem = this.memory;
    const q = (): number => {
      const v = sp >= 0 && sp + 8 <= RAM_SIZE ? Number(BigInt.asIntN(64, mem.read64(sp))) : NaN;
      sp += 8;
      return v;
    };
    const errorCode = ERROR_CODE_VECTORS.has(vector) ? q() : -1;
    const rip = q();
    const cs = q();
    const rflags = q();
    const rsp = q();
    const ss = q();
    return { vector, errorCode, rip, cs, rflags, rsp, ss };
  }

  private readBack(cpu: Cpu, ptrRegs: readonly number[]): Omit<EmuResult, 'rip'> & { rip: number } {
    const s = cpu.s;
    const gpr: bigint[] = [];
    for (let i = 0; i < 16; i++) {
      let v = (BigInt(s.gpr[2 * i + 1]! >>> 0) << 32n) | BigInt(s.gpr[2 * i]! >>> 0);
      if (ptrRegs.includes(i)) v = (v - BigInt(DATA_BASE)) & MASK64;
      gpr.push(i === 4 ? 0n : v);
    }
    let rflags = 0;
    try {
      rflags = cpu.getRflags();
    } catch {
      rflags = -1;
    }
    return {
      gpr,
      rflags,
      xmm: s.xmmU8.slice(0, 256),
      mxcsr: s.mxcsr,
      mem: this.memory.readBytes(DATA_BASE, DATA_SIZE),
      rip: s.rip,
    };
  }
}

/** RSP of the CPU as an unsigned number (directed tests). */
export function rspOf(cpu: Cpu): number {
  return (cpu.s.gpr[8]! >>> 0) + (cpu.s.gpr[9]! >>> 0) * 0x1_0000_0000;
}
