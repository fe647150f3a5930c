/**
 * The instruction table: per opcode of the one-byte, 0F, 0F 38 and 0F 3A maps (and, where it matters, per
 * ModRM.reg and per register/memory form) the facts the translator's decoder, its trace builder
 * and its flag-liveness pass need — whether a ModRM byte follows, the immediate's size, which
 * arithmetic flags it reads or writes, whether it may store to memory, and how a block treats
 * it. The interpreter decodes as it executes; isa.test.ts runs every entry through it and
 * checks that both agree (length, flags, stores, what an in-block instruction may change).
 *
 * Adding an instruction: one `def` line here (plus its semantics in core/ and, to translate it
 * inline, in wasm/translate.ts).
 */

/** Immediate operand bytes after the ModRM/SIB/displacement. */
export const enum Imm {
  None = 0,
  /** 1 byte. */
  B = 1,
  /** 2 bytes. */
  W = 2,
  /** 4 bytes. */
  D = 3,
  /** Operand-sized, at most 4 bytes: 2 with a 66 prefix, else 4. */
  Z = 4,
  /** MOV r, imm: 8 bytes with REX.W, else as Z. */
  V = 5,
  /** MOV to/from a memory offset: 8 bytes, 4 with a 67 prefix. */
  Moffs = 6,
  /** ENTER: a 2-byte frame size, then a 1-byte nesting level. */
  Enter = 7,
}

/** What an instruction does with the six arithmetic flags (CF PF AF ZF SF OF), for liveness. */
export const enum FlagUse {
  /** Reads none; each flag is either kept or written with a value that depends on no flag. */
  None = 0,
  Reads = 1,
  /** Writes all six with values that depend on no flag (so earlier writes are dead). */
  WritesAll = 2,
  /** Reads some, or keeps some and writes others in a way the table does not tell apart. */
  ReadsWrites = 3,
}

/** How a block treats the instruction. */
export const enum Flow {
  /** Runs inside a block (inline, or in the interpreter, after which the block goes on). */
  Next = 0,
  /** Ends a block when it runs (mode, privilege, I/O, interrupt flag, far transfers, #UD...). */
  End = 1,
  /** A branch the trace builder follows or exits on (Jcc, JMP, CALL, RET, indirect JMP/CALL). */
  Branch = 2,
  /** Not decoded by the translator (VEX/EVEX, 3DNow!, forms invalid in 64-bit mode). */
  Refuse = 3,
}

/** Store behaviour of one opcode, resolved per register/memory form in the packed table. */
type StoreSpec = 'no' | 'mem' | 'yes';

interface Spec {
  name: string;
  modrm?: boolean;
  imm?: Imm;
  flags?: FlagUse;
  /** 'mem': stores when the ModRM operand is memory; 'yes': also with a register operand (stack, string, implicit). */
  store?: StoreSpec;
  flow?: Flow;
  /** Only for the register (mod 3) or only for the memory form of a ModRM opcode. */
  form?: 'reg' | 'mem';
}

// Packed entry: bit 0 ModRM, bits 1-3 Imm, bits 4-5 FlagUse, bit 6 stores, bits 7-8 Flow,
// bit 9 defined. Index: (op << 4) | (reg << 1) | (mod === 3 ? 1 : 0), op = (map << 8) | b with
// map 0 one-byte, 1 = 0F, 2 = 0F 38, 3 = 0F 3A. VEX-encoded forms, when they come, are maps of
// their own (4.. by VEX.mmmmm and, where it matters, VEX.pp): raise MAPS then.
const MAPS = 4;
const ENTRY_MODRM = 1;
const ENTRY_STORE = 1 << 6;
const ENTRY_DEFINED = 1 << 9;

const TABLE = new Uint16Array(MAPS * 256 * 16);
const NAMES: string[] = new Array<string>(MAPS * 256 * 16).fill('');

function pack(s: Spec, isReg: boolean): number {
  const store = s.store ?? 'no';
  const stores = store === 'yes' || (store === 'mem' && !isReg);
  return (s.modrm ? ENTRY_MODRM : 0) | ((s.imm ?? Imm.None) << 1) | ((s.flags ?? FlagUse.ReadsWrites) << 4) |
    (stores ? ENTRY_STORE : 0) | ((s.flow ?? Flow.Next) << 7) | ENTRY_DEFINED;
}

/** Define opcodes `ops` (for every ModRM.reg, or only `reg`). A later def overrides an earlier one. */
function def(ops: number | readonly number[], spec: Spec, reg?: number | readonly number[]): void {
  const list = typeof ops === 'number' ? [ops] : ops;
  const regs = reg === undefined ? [0, 1, 2, 3, 4, 5, 6, 7] : typeof reg === 'number' ? [reg] : reg;
  for (const op of list) {
    for (const r of regs) {
      for (const isReg of [false, true]) {
        if (spec.form === 'reg' && !isReg) continue;
        if (spec.form === 'mem' && isReg) continue;
        const i = (op << 4) | (r << 1) | (isReg ? 1 : 0);
        TABLE[i] = pack(spec, isReg);
        NAMES[i] = spec.name;
      }
    }
  }
}

function range(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let i = lo; i <= hi; i++) out.push(i);
  return out;
}

const NONE = FlagUse.None, READS = FlagUse.Reads, WRITES = FlagUse.WritesAll, RW = FlagUse.ReadsWrites;
const NEXT = Flow.Next, END = Flow.End, BRANCH = Flow.Branch, REFUSE = Flow.Refuse;
const M = true;

// ---- one-byte map ------------------------------------------------------------------------

// Everything not named below: no ModRM, no immediate, ends a block (invalid in 64-bit mode, or
// a prefix byte, which the decoder consumes before it looks here).
def(range(0x00, 0xff), { name: '(invalid)', flow: END });

// ALU: ADD OR ADC SBB AND SUB XOR CMP, each as r/m,r  r,r/m  AL,ib  rAX,iz
for (let aop = 0; aop < 8; aop++) {
  const o = aop << 3;
  const name = ['ADD', 'OR', 'ADC', 'SBB', 'AND', 'SUB', 'XOR', 'CMP'][aop]!;
  const flags = aop === 2 || aop === 3 ? RW : WRITES;
  def([o, o + 1], { name, modrm: M, flags, store: aop === 7 ? 'no' : 'mem' });
  def([o + 2, o + 3], { name, modrm: M, flags });
  def(o + 4, { name, imm: Imm.B, flags });
  def(o + 5, { name, imm: Imm.Z, flags });
}
def(range(0x50, 0x57), { name: 'PUSH r', flags: NONE, store: 'yes' });
def(range(0x58, 0x5f), { name: 'POP r', flags: NONE });
def(0x62, { name: 'EVEX', flow: REFUSE });
def(0x63, { name: 'MOVSXD', modrm: M, flags: NONE });
def(0x68, { name: 'PUSH iz', imm: Imm.Z, flags: NONE, store: 'yes' });
def(0x69, { name: 'IMUL r,r/m,iz', modrm: M, imm: Imm.Z, flags: WRITES });
def(0x6a, { name: 'PUSH ib', imm: Imm.B, flags: NONE, store: 'yes' });
def(0x6b, { name: 'IMUL r,r/m,ib', modrm: M, imm: Imm.B, flags: WRITES });
def([0x6c, 0x6d], { name: 'INS', flags: NONE, store: 'yes', flow: END });
def([0x6e, 0x6f], { name: 'OUTS', flags: NONE, flow: END });
def(range(0x70, 0x7f), { name: 'Jcc rel8', imm: Imm.B, flags: READS, flow: BRANCH });
for (const [op, imm] of [[0x80, Imm.B], [0x81, Imm.Z], [0x82, Imm.B], [0x83, Imm.B]] as const) {
  for (let aop = 0; aop < 8; aop++) {
    def(op, {
      name: ['ADD', 'OR', 'ADC', 'SBB', 'AND', 'SUB', 'XOR', 'CMP'][aop]! + ' r/m,imm', modrm: M, imm,
      flags: aop === 2 || aop === 3 ? RW : WRITES, store: aop === 7 ? 'no' : 'mem', flow: op === 0x82 ? END : NEXT,
    }, aop);
  }
}
def([0x84, 0x85], { name: 'TEST r/m,r', modrm: M, flags: WRITES });
def([0x86, 0x87], { name: 'XCHG r/m,r', modrm: M, flags: NONE, store: 'mem' });
def([0x88, 0x89], { name: 'MOV r/m,r', modrm: M, flags: NONE, store: 'mem' });
def([0x8a, 0x8b], { name: 'MOV r,r/m', modrm: M, flags: NONE });
def(0x8c, { name: 'MOV r/m,Sreg', modrm: M, flags: NONE, store: 'mem' });
def(0x8d, { name: 'LEA', modrm: M, flags: NONE });
def(0x8e, { name: 'MOV Sreg,r/m', modrm: M, flow: REFUSE });
def(0x8f, { name: 'POP r/m', modrm: M, flags: NONE, store: 'mem' });
def(0x8f, { name: '(invalid) 8F', modrm: M, flow: END }, range(1, 7));
def(range(0x90, 0x97), { name: 'XCHG r,rAX / NOP', flags: NONE });
def([0x98, 0x99], { name: 'CBW/CWD', flags: NONE });
def(0x9a, { name: 'CALLF ptr', flow: REFUSE });
def(0x9b, { name: 'FWAIT', flow: END });
def(0x9c, { name: 'PUSHF', flags: READS, store: 'yes' });
def(0x9d, { name: 'POPF', flow: END });
def(0x9e, { name: 'SAHF', flags: RW });
def(0x9f, { name: 'LAHF', flags: READS });
def([0xa0, 0xa1], { name: 'MOV rAX,moffs', imm: Imm.Moffs, flags: NONE });
def([0xa2, 0xa3], { name: 'MOV moffs,rAX', imm: Imm.Moffs, flags: NONE, store: 'yes' });
// string ops: a REP form left unfinished leaves RIP on itself and the block exits there
def([0xa4, 0xa5], { name: 'MOVS', flags: NONE, store: 'yes' });
def([0xa6, 0xa7], { name: 'CMPS', flags: RW });
def(0xa8, { name: 'TEST AL,ib', imm: Imm.B, flags: WRITES });
def(0xa9, { name: 'TEST rAX,iz', imm: Imm.Z, flags: WRITES });
def([0xaa, 0xab], { name: 'STOS', flags: NONE, store: 'yes' });
def([0xac, 0xad], { name: 'LODS', flags: NONE });
def([0xae, 0xaf], { name: 'SCAS', flags: RW });
def(range(0xb0, 0xb7), { name: 'MOV r8,ib', imm: Imm.B, flags: NONE });
def(range(0xb8, 0xbf), { name: 'MOV r,imm', imm: Imm.V, flags: NONE });
// shift group: ROL ROR RCL RCR SHL SHR SAL SAR. Rotates and shifts by a count that may be 0 keep
// the flags they do not write: None here; trace.ts's flagUse refines shifts by a constant count.
for (const [op, imm] of [[0xc0, Imm.B], [0xc1, Imm.B], [0xd0, Imm.None], [0xd1, Imm.None], [0xd2, Imm.None], [0xd3, Imm.None]] as const) {
  def(op, { name: 'shift/rotate', modrm: M, imm, flags: NONE, store: 'mem' });
  def(op, { name: 'RCL/RCR', modrm: M, imm, flags: RW, store: 'mem' }, [2, 3]);
}
def(0xc2, { name: 'RET iw', imm: Imm.W, flow: END });
def(0xc3, { name: 'RET', flow: BRANCH });
def([0xc4, 0xc5], { name: 'VEX', flow: REFUSE });
def(0xc6, { name: 'MOV r/m,ib', modrm: M, imm: Imm.B, flags: NONE, store: 'mem' });
def(0xc7, { name: 'MOV r/m,iz', modrm: M, imm: Imm.Z, flags: NONE, store: 'mem' });
def(0xc6, { name: '(XABORT/invalid) C6', modrm: M, imm: Imm.B, flow: END }, range(1, 7));
def(0xc7, { name: '(XBEGIN/invalid) C7', modrm: M, imm: Imm.Z, flow: END }, range(1, 7));
def(0xc8, { name: 'ENTER', imm: Imm.Enter, flags: NONE, store: 'yes' });
def(0xc9, { name: 'LEAVE', flags: NONE });
def(0xca, { name: 'RETF iw', imm: Imm.W, flow: END });
def(0xcb, { name: 'RETF', flow: END });
def(0xcc, { name: 'INT3', store: 'yes', flow: END });
def(0xcd, { name: 'INT ib', imm: Imm.B, store: 'yes', flow: END });
def(0xce, { name: 'INTO', store: 'yes', flow: END });
def(0xcf, { name: 'IRET', flow: END });
def([0xd4, 0xd5], { name: 'AAM/AAD', imm: Imm.B, flow: END });
def(0xd6, { name: 'SALC', flow: REFUSE });
def(0xd7, { name: 'XLAT', flags: NONE });
// x87: FCMOVcc reads and FCOMI/FUCOMI write flags; the stores are FST/FSTP/FIST..., FSAVE, FSTENV, FSTCW, FSTSW
def(range(0xd8, 0xdf), { name: 'x87', modrm: M, flags: NONE });
def([0xda, 0xdb], { name: 'FCMOVcc', modrm: M, flags: READS, form: 'reg' }, range(0, 3));
def([0xdb, 0xdf], { name: 'FUCOMI/FCOMI', modrm: M, flags: WRITES, form: 'reg' }, [5, 6]);
def(0xd9, { name: 'FST/FSTP/FSTENV/FSTCW m', modrm: M, flags: NONE, store: 'mem', form: 'mem' }, [2, 3, 6, 7]);
def(0xdb, { name: 'FISTTP/FIST/FISTP/FSTP m', modrm: M, flags: NONE, store: 'mem', form: 'mem' }, [1, 2, 3, 7]);
def(0xdd, { name: 'FISTTP/FST/FSTP/FSAVE/FSTSW m', modrm: M, flags: NONE, store: 'mem', form: 'mem' }, [1, 2, 3, 6, 7]);
def(0xdf, { name: 'FISTTP/FIST/FISTP/FBSTP/FISTP m', modrm: M, flags: NONE, store: 'mem', form: 'mem' }, [1, 2, 3, 6, 7]);
def(range(0xe0, 0xe3), { name: 'LOOPcc/JrCXZ', imm: Imm.B, flow: END });
def(range(0xe4, 0xe7), { name: 'IN/OUT ib', imm: Imm.B, flow: END });
def(0xe8, { name: 'CALL rel32', imm: Imm.D, flags: NONE, store: 'yes', flow: BRANCH });
def(0xe9, { name: 'JMP rel32', imm: Imm.D, flags: NONE, flow: BRANCH });
def(0xea, { name: 'JMPF ptr', flow: REFUSE });
def(0xeb, { name: 'JMP rel8', imm: Imm.B, flags: NONE, flow: BRANCH });
def(range(0xec, 0xef), { name: 'IN/OUT dx', flow: END });
def(0xf1, { name: 'INT1', store: 'yes', flow: END });
def(0xf4, { name: 'HLT', flow: END });
def(0xf5, { name: 'CMC', flags: RW });
// group 3: TEST TEST NOT NEG MUL IMUL DIV IDIV
def(0xf6, { name: 'TEST r/m,ib', modrm: M, imm: Imm.B, flags: WRITES }, [0, 1]);
def(0xf7, { name: 'TEST r/m,iz', modrm: M, imm: Imm.Z, flags: WRITES }, [0, 1]);
def([0xf6, 0xf7], { name: 'NOT', modrm: M, flags: NONE, store: 'mem' }, 2);
def([0xf6, 0xf7], { name: 'NEG', modrm: M, flags: WRITES, store: 'mem' }, 3);
def([0xf6, 0xf7], { name: 'MUL/IMUL/DIV/IDIV', modrm: M, flags: RW }, range(4, 7));
def([0xf8, 0xf9], { name: 'CLC/STC', flags: RW });
// CLI and STI: the block goes on (both are hot in the kernel's irq-save paths); an STI that
// finds an interrupt waiting ends it (wasm/system.ts), so the run loop takes the interrupt
// after the one-instruction shadow
def(0xfa, { name: 'CLI' });
def(0xfb, { name: 'STI' });
def([0xfc, 0xfd], { name: 'CLD/STD', flags: NONE });
// group 4/5: INC DEC (keep CF), CALL CALLF JMP JMPF PUSH
def([0xfe, 0xff], { name: '(invalid) FE/FF', modrm: M, flow: END });
def([0xfe, 0xff], { name: 'INC/DEC', modrm: M, flags: NONE, store: 'mem' }, [0, 1]);
def(0xff, { name: 'CALL r/m', modrm: M, flags: NONE, store: 'yes', flow: BRANCH }, 2);
def(0xff, { name: 'JMP r/m', modrm: M, flags: NONE, flow: BRANCH }, 4);
def(0xff, { name: 'CALLF/JMPF m', modrm: M, store: 'yes', flow: END }, [3, 5]);
def(0xff, { name: 'PUSH r/m', modrm: M, flags: NONE, store: 'yes' }, 6);

// ---- two-byte map (0F xx) --------------------------------------------------------------

const T = (b: number): number => 0x100 | b;
const TS = (lo: number, hi: number): number[] => range(lo, hi).map(T);

// Everything not named below: a ModRM byte, no immediate, ends a block (#UD in our model).
def(TS(0x00, 0xff), { name: '(invalid) 0F', modrm: M, flow: END });
def([T(0x00), T(0x01)], { name: 'group 6/7 (SLDT LGDT INVLPG SWAPGS...)', modrm: M, store: 'mem', flow: END });
def([T(0x02), T(0x03)], { name: 'LAR/LSL', modrm: M, flow: END });
def([T(0x05), T(0x06), T(0x07), T(0x08), T(0x09), T(0x0a), T(0x0b), T(0x0e)], { name: 'SYSCALL CLTS SYSRET INVD WBINVD UD2 FEMMS', flow: END });
def(T(0x0d), { name: 'PREFETCHW', modrm: M, flags: NONE });
def(T(0x0f), { name: '3DNow!', flow: REFUSE });
// SSE moves and arithmetic (the mandatory prefix selects the form; the facts here hold for all)
def(TS(0x10, 0x17), { name: 'SSE move/unpack', modrm: M, flags: NONE });
def([T(0x11), T(0x13), T(0x17)], { name: 'SSE store', modrm: M, flags: NONE, store: 'mem' });
def(TS(0x18, 0x1f), { name: 'PREFETCH/hint NOP', modrm: M, flags: NONE });
// MOV r, CRn only reads (the page-fault handler's CR2): the block goes on; writes and the
// debug registers end it
def(TS(0x20, 0x23), { name: 'MOV CR/DR', modrm: M, flow: END });
def(T(0x20), { name: 'MOV r,CR', modrm: M });
def(TS(0x28, 0x2d), { name: 'SSE move/convert', modrm: M, flags: NONE });
def(T(0x29), { name: 'MOVAPS store', modrm: M, flags: NONE, store: 'mem' });
def(T(0x2b), { name: 'MOVNTPS', modrm: M, flags: NONE, store: 'mem' });
def([T(0x2e), T(0x2f)], { name: 'UCOMISS/COMISS', modrm: M, flags: WRITES });
def([T(0x30), T(0x32), T(0x33), T(0x34), T(0x35), T(0x37)], { name: 'WRMSR RDMSR RDPMC SYSENTER SYSEXIT GETSEC', flow: END });
// RDTSC reads the host clock, nothing the block keeps: the block goes on (the kernel's clock reads)
def(T(0x31), { name: 'RDTSC' });
// escapes: the decoder reads the next byte and looks the instruction up in map 2 or 3 (below)
def([T(0x38), T(0x3a)], { name: '0F 38 / 0F 3A escape', flow: REFUSE });
def(TS(0x40, 0x4f), { name: 'CMOVcc', modrm: M, flags: READS });
def(TS(0x50, 0x7f), { name: 'SSE/MMX', modrm: M, flags: NONE });
def(TS(0x70, 0x73), { name: 'PSHUF/shift imm', modrm: M, imm: Imm.B, flags: NONE });
def(T(0x77), { name: 'EMMS', flow: END });
def(TS(0x78, 0x7b), { name: '(invalid) 0F 78-7B', modrm: M, flow: END });
def([T(0x7e), T(0x7f)], { name: 'MOVD/MOVQ/MOVDQA store', modrm: M, flags: NONE, store: 'mem' });
def(TS(0x80, 0x8f), { name: 'Jcc rel32', imm: Imm.D, flags: READS, flow: BRANCH });
def(TS(0x90, 0x9f), { name: 'SETcc', modrm: M, flags: READS, store: 'mem' });
def([T(0xa0), T(0xa8)], { name: 'PUSH FS/GS', store: 'yes', flow: END });
def([T(0xa1), T(0xa2), T(0xa9), T(0xaa)], { name: 'POP FS/GS, CPUID, RSM', flow: END });
def(T(0xa3), { name: 'BT r/m,r', modrm: M, flags: RW });
def([T(0xab), T(0xb3), T(0xbb)], { name: 'BTS/BTR/BTC r/m,r', modrm: M, flags: RW, store: 'mem' });
def([T(0xa4), T(0xac)], { name: 'SHLD/SHRD ib', modrm: M, imm: Imm.B, flags: RW, store: 'mem' });
def([T(0xa5), T(0xad)], { name: 'SHLD/SHRD CL', modrm: M, flags: RW, store: 'mem' });
// group 15: FXSAVE FXRSTOR LDMXCSR STMXCSR XSAVE XRSTOR XSAVEOPT CLFLUSH (66: CLWB CLFLUSHOPT);
// register forms RDFSBASE RDGSBASE (0-1: read a base, the block goes on), WRFSBASE WRGSBASE
// (2-3, end a block: they change segment bases) and the fences (5-7)
def(T(0xae), { name: 'FXSAVE/STMXCSR/XSAVE/CLFLUSH m', modrm: M, flags: NONE, store: 'mem', form: 'mem' });
def(T(0xae), { name: 'RD/WR FS/GS BASE', modrm: M, flow: END, form: 'reg' }, range(0, 4));
def(T(0xae), { name: 'RDFSBASE/RDGSBASE', modrm: M, flags: NONE, form: 'reg' }, [0, 1]);
def(T(0xae), { name: 'LFENCE/MFENCE/SFENCE', modrm: M, flags: NONE, form: 'reg' }, range(5, 7));
def(T(0xaf), { name: 'IMUL r,r/m', modrm: M, flags: WRITES });
def([T(0xb0), T(0xb1)], { name: 'CMPXCHG', modrm: M, flags: WRITES, store: 'mem' });
def([T(0xb2), T(0xb4), T(0xb5)], { name: 'LSS/LFS/LGS', modrm: M, flow: END });
def([T(0xb6), T(0xb7), T(0xbe), T(0xbf)], { name: 'MOVZX/MOVSX', modrm: M, flags: NONE });
def(T(0xb8), { name: 'POPCNT', modrm: M, flags: WRITES });
def(T(0xb9), { name: 'UD1', modrm: M, flow: END });
def(T(0xba), { name: '(invalid) 0F BA', modrm: M, imm: Imm.B, flow: END }, range(0, 3));
def(T(0xba), { name: 'BT r/m,ib', modrm: M, imm: Imm.B, flags: RW }, 4);
def(T(0xba), { name: 'BTS/BTR/BTC r/m,ib', modrm: M, imm: Imm.B, flags: RW, store: 'mem' }, range(5, 7));
def([T(0xbc), T(0xbd)], { name: 'BSF/BSR/TZCNT/LZCNT', modrm: M, flags: RW });
def([T(0xc0), T(0xc1)], { name: 'XADD', modrm: M, flags: WRITES, store: 'mem' });
def([T(0xc2), T(0xc4), T(0xc5), T(0xc6)], { name: 'CMPPS/PINSRW/PEXTRW/SHUFPS', modrm: M, imm: Imm.B, flags: NONE });
def(T(0xc3), { name: 'MOVNTI', modrm: M, flags: NONE, store: 'mem' });
def(T(0xc7), { name: 'group 9 (CMPXCHG8B/16B, RDRAND, RDSEED)', modrm: M, flags: RW, store: 'mem' });
def(TS(0xc8, 0xcf), { name: 'BSWAP', flags: NONE });
def(TS(0xd0, 0xfe), { name: 'SSE/MMX', modrm: M, flags: NONE });
def([T(0xd6), T(0xe7)], { name: 'MOVQ/MOVNTQ store', modrm: M, flags: NONE, store: 'mem' });
def(T(0xf7), { name: 'MASKMOVQ', modrm: M, flags: NONE, store: 'yes' });

// ---- three-byte maps (0F 38 xx, 0F 3A xx) ----------------------------------------------
// SSSE3 (no prefix: MMX registers; 66: XMM), SSE4.1, SSE4.2; the mandatory prefix selects the
// form and the interpreter raises #UD for a feature that is off (features.ts). Every opcode
// has a ModRM byte; every 0F 3A opcode an imm8.

const T38 = (b: number): number => 0x200 | b;
const T38S = (lo: number, hi: number): number[] => range(lo, hi).map(T38);
const T3A = (b: number): number => 0x300 | b;
const T3AS = (lo: number, hi: number): number[] => range(lo, hi).map(T3A);

// Everything not named below: #UD in our model (ends a block).
def(T38S(0x00, 0xff), { name: '(invalid) 0F 38', modrm: M, flow: END });
def(T3AS(0x00, 0xff), { name: '(invalid) 0F 3A', modrm: M, imm: Imm.B, flow: END });
def(T38S(0x00, 0x0b), { name: 'PSHUFB/PHADD/PHSUB/PMADDUBSW/PSIGN/PMULHRSW', modrm: M, flags: NONE });
def([T38(0x10), T38(0x14), T38(0x15)], { name: 'PBLENDVB/BLENDVPS/BLENDVPD', modrm: M, flags: NONE });
def(T38(0x17), { name: 'PTEST', modrm: M, flags: WRITES });
def(T38S(0x1c, 0x1e), { name: 'PABSB/W/D', modrm: M, flags: NONE });
def([...T38S(0x20, 0x25), ...T38S(0x30, 0x35)], { name: 'PMOVSX/PMOVZX', modrm: M, flags: NONE });
def(T38S(0x28, 0x2b), { name: 'PMULDQ/PCMPEQQ/MOVNTDQA/PACKUSDW', modrm: M, flags: NONE });
def(T38S(0x37, 0x41), { name: 'PCMPGTQ/PMIN/PMAX/PMULLD/PHMINPOSUW', modrm: M, flags: NONE });
// F2: CRC32 r, r/m8 and r, r/m16/32/64; no prefix: MOVBE r, m and m, r
def(T38(0xf0), { name: 'CRC32 r,r/m8 / MOVBE r,m', modrm: M, flags: NONE });
def(T38(0xf1), { name: 'CRC32 r,r/m / MOVBE m,r', modrm: M, flags: NONE, store: 'mem' });
def(T3AS(0x08, 0x0f), { name: 'ROUNDPS/PD/SS/SD, BLENDPS/PD, PBLENDW, PALIGNR', modrm: M, imm: Imm.B, flags: NONE });
def(T3AS(0x14, 0x17), { name: 'PEXTRB/W/D/Q, EXTRACTPS', modrm: M, imm: Imm.B, flags: NONE, store: 'mem' });
def(T3AS(0x20, 0x22), { name: 'PINSRB/INSERTPS/PINSRD/Q', modrm: M, imm: Imm.B, flags: NONE });
def(T3AS(0x40, 0x42), { name: 'DPPS/DPPD/MPSADBW', modrm: M, imm: Imm.B, flags: NONE });
def(T3AS(0x60, 0x63), { name: 'PCMPESTRM/PCMPESTRI/PCMPISTRM/PCMPISTRI', modrm: M, imm: Imm.B, flags: WRITES });

// ---- lookups -----------------------------------------------------------------------------

/** Packed entry for opcode `op` ((map << 8) | b: 0x100 | b for 0F b, 0x200 | b for 0F 38 b, 0x300 | b for 0F 3A b), ModRM.reg `reg` (0 without ModRM), register form or not. */
export function entry(op: number, reg: number, isReg: boolean): number {
  return TABLE[(op << 4) | ((reg & 7) << 1) | (isReg ? 1 : 0)]!;
}
export const hasModrm = (e: number): boolean => (e & ENTRY_MODRM) !== 0;
export const immKind = (e: number): Imm => ((e >> 1) & 7) as Imm;
export const flagUseOf = (e: number): FlagUse => ((e >> 4) & 3) as FlagUse;
export const storesOf = (e: number): boolean => (e & ENTRY_STORE) !== 0;
export const flowOf = (e: number): Flow => ((e >> 7) & 3) as Flow;
export const isDefined = (e: number): boolean => (e & ENTRY_DEFINED) !== 0;

/** The entry's name, for messages and tests. */
export function entryName(op: number, reg: number, isReg: boolean): string {
  return NAMES[(op << 4) | ((reg & 7) << 1) | (isReg ? 1 : 0)]!;
}
