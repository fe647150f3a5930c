/**
 * The register/memory state both oracle worlds (native host CPU and our emulator) start from and
 * report back, in a world-independent form: pointer registers hold *offsets* into the data
 * buffer and each runner relocates them to its own base (host address or guest address).
 */

/** Arithmetic flags plus DF: the RFLAGS bits a test may load and compares. */
export const FLAGS_ARITH = 0x8d5; // OF SF ZF AF PF CF
export const FLAG_DF = 0x400;
export const FLAGS_LOADABLE = FLAGS_ARITH | FLAG_DF;

export const REG_NAMES = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;

/** Size of the data buffer tests may address through pointer registers. */
export const DATA_SIZE = 4096;

export interface OracleState {
  /** RAX..R15 in encoding order, unsigned 64-bit. RSP (index 4) is never loaded or compared. */
  gpr: bigint[];
  /** RFLAGS: only FLAGS_LOADABLE bits are loaded. */
  rflags: number;
  /** XMM0..XMM15, 16 bytes each. */
  xmm: Uint8Array;
  mxcsr: number;
  /** The data buffer (DATA_SIZE bytes). */
  mem: Uint8Array;
}

export interface RunOptions {
  /**
   * Registers that hold an offset into the data buffer: each world adds its buffer base before
   * running and subtracts it afterwards.
   */
  ptrRegs?: readonly number[];
}

export function blankState(): OracleState {
  return {
    gpr: new Array<bigint>(16).fill(0n),
    rflags: 0x2,
    xmm: new Uint8Array(256),
    mxcsr: 0x1f80,
    mem: new Uint8Array(DATA_SIZE),
  };
}

export function cloneState(s: OracleState): OracleState {
  return { gpr: [...s.gpr], rflags: s.rflags, xmm: s.xmm.slice(), mxcsr: s.mxcsr, mem: s.mem.slice() };
}

export const MASK64 = (1n << 64n) - 1n;

export function hex64(v: bigint): string {
  return '0x' + (v & MASK64).toString(16).padStart(16, '0');
}
