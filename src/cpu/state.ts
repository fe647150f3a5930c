/**
 * Architectural state of one x86-64 vCPU for the software engine, in typed arrays and plain
 * number fields (no per-instruction allocation, snapshot-friendly).
 *
 * Representation choices (shared by the decoder/interpreter, the system module and the
 * x87/SSE module — keep them in sync):
 *
 * - 64-bit general registers are two 32-bit halves: `gpr[2*r]` low, `gpr[2*r+1]` high
 *   (Int32Array; use `>>> 0` for unsigned views). Register numbers follow the encoding:
 *   0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8..15 R8..R15.
 * - `rip` is a JS number: in 64-bit mode the *signed* canonical value (0xffffffff81000000 is
 *   held as -0x7f000000, exact because canonical addresses fit in 48 bits); in 16/32-bit modes
 *   the unsigned EIP/IP. Linear addresses use the same signed-canonical convention; physical
 *   addresses are plain non-negative numbers (< 2^52).
 * - Segment registers: selector plus the cached descriptor (base, limit, attribute bits) in
 *   parallel arrays indexed by SReg.
 * - XMM registers: `xmm` holds 16 registers x 4 lanes of 32 bits (Int32Array(64)), with a
 *   Float32Array/Float64Array/Uint8Array over the same buffer.
 * - x87: 8 physical registers as 80-bit values split into `st` (Float64Array, the value used
 *   for arithmetic) — precision is double unless the x87 module chooses a softfloat scheme —
 *   plus control/status/tag words.
 */

/**
 * Initial value for number fields that will hold values outside V8's small-integer range
 * (addresses, 32-bit unsigned halves, counters). -0 is not a small integer, so the field is a
 * double from the start; a field that starts as a small integer and later receives a large
 * value changes representation, which deprecates the object's map and deoptimizes every
 * function compiled against it — including every translated block. Behaves as 0 everywhere.
 */
export const F64_ZERO = -0;

export const enum Reg {
  RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7,
  R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15,
}

export const enum SReg { ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5 }

/** RFLAGS bits. */
export const enum Flag {
  CF = 1 << 0, PF = 1 << 2, AF = 1 << 4, ZF = 1 << 6, SF = 1 << 7, TF = 1 << 8, IF = 1 << 9,
  DF = 1 << 10, OF = 1 << 11, IOPL = 3 << 12, NT = 1 << 14, RF = 1 << 16, VM = 1 << 17,
  AC = 1 << 18, VIF = 1 << 19, VIP = 1 << 20, ID = 1 << 21,
}

export const enum Cr0 {
  PE = 1 << 0, MP = 1 << 1, EM = 1 << 2, TS = 1 << 3, ET = 1 << 4, NE = 1 << 5, WP = 1 << 16,
  AM = 1 << 18, NW = 1 << 29, CD = 1 << 30, PG = 1 << 31,
}

export const enum Cr4 {
  VME = 1 << 0, PVI = 1 << 1, TSD = 1 << 2, DE = 1 << 3, PSE = 1 << 4, PAE = 1 << 5, MCE = 1 << 6,
  PGE = 1 << 7, PCE = 1 << 8, OSFXSR = 1 << 9, OSXMMEXCPT = 1 << 10, UMIP = 1 << 11,
  FSGSBASE = 1 << 16, PCIDE = 1 << 17, OSXSAVE = 1 << 18, SMEP = 1 << 20, SMAP = 1 << 21,
}

export const enum Efer { SCE = 1 << 0, LME = 1 << 8, LMA = 1 << 10, NXE = 1 << 11 }

/** Exception vectors. */
export const enum Vec {
  DE = 0, DB = 1, NMI = 2, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7, DF = 8, TS = 10, NP = 11,
  SS = 12, GP = 13, PF = 14, MF = 16, AC = 17, MC = 18, XM = 19,
}

/** Execution mode, recomputed whenever CR0.PE, EFER.LMA, CS.L/D or RFLAGS.VM change. */
export const enum Mode { Real = 0, Protected16 = 1, Protected32 = 2, Long64 = 3, Compat16 = 4, Compat32 = 5, V86 = 6 }

/** Where a CpuState keeps the arrays that translated wasm code shares (see cpu/wasm/arena.ts). */
export interface SharedStateViews {
  gpr: Int32Array;
  segBase: Float64Array;
  /** 256 bytes at `offset` of `buffer` hold the XMM registers. */
  xmm?: { buffer: ArrayBuffer; offset: number };
}

export class CpuState {
  readonly gpr: Int32Array;
  rip = F64_ZERO;
  /**
   * RFLAGS bits other than the six arithmetic flags (CF PF AF ZF SF OF), which the interpreter
   * may keep lazily; read the full value through the CPU's getRflags().
   */
  rflagsRest = 0x2;

  // segments
  readonly segSel = new Uint16Array(6);
  readonly segBase: Float64Array; // 64-bit bases (FS/GS in long mode) as numbers
  readonly segLimit = new Uint32Array(6);
  /** Descriptor attribute bits: type(4) S DPL(2) P | AVL L D/B G, i.e. bits 8..23 of the high dword >> 8. */
  readonly segAttr = new Uint16Array(6);

  // descriptor tables
  gdtrBase = F64_ZERO;
  gdtrLimit = 0xffff;
  idtrBase = F64_ZERO;
  idtrLimit = 0xffff;
  ldtrSel = 0;
  ldtrBase = F64_ZERO;
  ldtrLimit = 0;
  trSel = 0;
  trBase = F64_ZERO;
  trLimit = 0;
  trAttr = 0;

  // control registers (CR0/CR4 fit in 32 bits for what we implement; CR3 is a physical address)
  cr0 = 0x60000010;
  cr2 = F64_ZERO; // linear address (signed canonical)
  cr3 = F64_ZERO;
  cr4 = 0;
  cr8 = 0;
  efer = 0;
  xcr0 = 1;

  /** Current privilege level (CS.RPL after a load, SS.DPL). */
  cpl = 0;
  mode: Mode = Mode.Real;

  // MSRs kept as numbers where they are addresses, bigint-free
  kernelGsBase = F64_ZERO;
  star = F64_ZERO; // STAR high 32 bits hold SYSRET/SYSCALL selectors: keep halves
  starHi = F64_ZERO;
  lstar = F64_ZERO;
  cstar = F64_ZERO;
  sfmask = F64_ZERO;
  sysenterCs = 0;
  sysenterEsp = F64_ZERO;
  sysenterEip = F64_ZERO;
  apicBase = 0xfee00900; // enabled, BSP
  pat = 0x0007040600070406n;
  /** IA32_MISC_ENABLE: low and high halves (bit 34, XD disable, is in the high one). */
  miscEnable = 1;
  miscEnableHi = 0;
  tscAux = 0;
  /** TSC = host-derived counter + offset (the system module decides the source). */
  tscOffset = F64_ZERO;
  /**
   * kvm-clock time = TSC / rate + this (ns): 0 for a guest that started on the bt engine; a guest
   * moved from KVM keeps the time its kvm-clock showed there (system/pvclock.ts). Machine time,
   * not CPU state: a reset (INIT) keeps it.
   */
  kvmClockOffsetNs = 0;

  // debug registers (stored, not acted upon)
  readonly dr = new Float64Array(8);

  // SSE: 16 registers x 128 bits, in their own buffer or (wasm arena) in a shared one
  readonly xmm: Int32Array;
  readonly xmmU8: Uint8Array;
  readonly xmmF32: Float32Array;
  readonly xmmF64: Float64Array;
  mxcsr = 0x1f80;

  // x87
  readonly st = new Float64Array(8); // physical registers R0..R7
  fpuControl = 0x037f;
  fpuStatus = 0; // TOP lives in bits 11..13
  fpuTag = 0xffff; // 2 bits per physical register, 11 = empty
  fpuOpcode = 0;
  fpuIp = F64_ZERO;
  fpuDp = F64_ZERO;

  /** Halted by HLT until an interrupt (or NMI/INIT). */
  halted = false;
  /** Interrupt shadow after STI / MOV SS: no interrupt before the next instruction completes. */
  interruptShadow = false;

  constructor(shared?: SharedStateViews) {
    this.gpr = shared?.gpr ?? new Int32Array(32);
    this.segBase = shared?.segBase ?? new Float64Array(6);
    const buf = shared?.xmm?.buffer ?? new ArrayBuffer(256);
    const off = shared?.xmm?.offset ?? 0;
    this.xmm = new Int32Array(buf, off, 64);
    this.xmmU8 = new Uint8Array(buf, off, 256);
    this.xmmF32 = new Float32Array(buf, off, 64);
    this.xmmF64 = new Float64Array(buf, off, 32);
  }

  /** Power-on values of the architectural registers (real mode at F000:FFF0; the arithmetic flags are the CPU's). */
  powerOn(): void {
    this.gpr.fill(0);
    this.xmm.fill(0);
    this.gpr[2 * 2] = 0x600; // EDX: family 6 signature
    this.rip = 0xfff0;
    this.rflagsRest = 2;
    for (let i = 0; i < 6; i++) {
      this.segSel[i] = 0;
      this.segBase[i] = 0;
      this.segLimit[i] = 0xffff;
      this.segAttr[i] = 0x93;
    }
    this.segSel[1] = 0xf000;
    this.segBase[1] = 0xffff0000;
    this.segAttr[1] = 0x9b;
    this.gdtrBase = 0;
    this.gdtrLimit = 0xffff;
    this.idtrBase = 0;
    this.idtrLimit = 0xffff;
    this.ldtrSel = 0;
    this.ldtrBase = 0;
    this.ldtrLimit = 0xffff;
    this.trSel = 0;
    this.trBase = 0;
    this.trLimit = 0xffff;
    this.trAttr = 0x8b;
    this.cr0 = 0x60000010;
    this.cr2 = 0;
    this.cr3 = 0;
    this.cr4 = 0;
    this.cr8 = 0;
    this.efer = 0;
    this.xcr0 = 1;
    this.tscAux = 0;
    this.cpl = 0;
    this.mode = Mode.Real;
    this.halted = false;
    this.interruptShadow = false;
    this.dr.fill(0);
    this.dr[6] = 0xffff0ff0;
    this.dr[7] = 0x400;
  }
}
