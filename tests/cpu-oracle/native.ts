/**
 * Runs an instruction sequence on the host x86-64 CPU: an RWX mapping holds a prologue that
 * loads RAX..R15 (not RSP), RFLAGS (arithmetic flags + DF), MXCSR and XMM0-15 from a state block
 * (pointer in RDI, System V), then the test bytes, then an epilogue that stores everything back
 * and returns. One koffi call per run. The data buffer lives in its own mapping; pointer
 * registers are relocated to its host address.
 *
 * Test bytes must not touch RSP, must not fault (a fault kills the Node process: directed
 * exception tests run only in the emulator), must leave the x87 stack as they found it or
 * rely on the epilogue's FNINIT, and may address memory only inside the data buffer.
 */
import koffi from 'koffi';
import { assemble } from './assemble.js';
import { DATA_SIZE, FLAGS_LOADABLE, MASK64, type OracleState, type RunOptions } from './state.js';

export class NativeError extends Error {
  override name = 'NativeError';
}

const PROT_RWX = 7;
const PROT_RW = 3;
const MAP_PRIVATE_ANON = 0x22;
const CODE_SIZE = 64 * 1024;
const STATE_SIZE = 4096;

// state block layout
const ST_GPR = 0x00;
const ST_RFLAGS = 0x80;
const ST_MXCSR = 0x88;
const ST_HOST_MXCSR = 0x8c;
const ST_HOST_FCW = 0x90;
const ST_XMM = 0x100;

const GPR_ORDER = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

function prologueSource(): string {
  const l: string[] = [
    'push rbx', 'push rbp', 'push r12', 'push r13', 'push r14', 'push r15',
    'push rdi', // state pointer; RSP is 16-byte aligned from here on
    `stmxcsr [rdi+${ST_HOST_MXCSR}]`,
    `fnstcw [rdi+${ST_HOST_FCW}]`,
    'fninit',
  ];
  for (let i = 0; i < 16; i++) l.push(`movdqu xmm${i}, [rdi+${ST_XMM + 16 * i}]`);
  l.push(`ldmxcsr [rdi+${ST_MXCSR}]`, `push qword [rdi+${ST_RFLAGS}]`, 'popfq');
  GPR_ORDER.forEach((r, i) => {
    if (r !== 'rsp' && r !== 'rdi') l.push(`mov ${r}, [rdi+${ST_GPR + 8 * i}]`);
  });
  l.push(`mov rdi, [rdi+${ST_GPR + 8 * 7}]`);
  return l.join('\n');
}

function epilogueSource(): string {
  const l: string[] = ['xchg rdi, [rsp]']; // xchg leaves flags alone
  GPR_ORDER.forEach((r, i) => {
    if (r !== 'rsp' && r !== 'rdi') l.push(`mov [rdi+${ST_GPR + 8 * i}], ${r}`);
  });
  l.push('pushfq', `pop qword [rdi+${ST_RFLAGS}]`, 'mov rax, [rsp]', `mov [rdi+${ST_GPR + 8 * 7}], rax`);
  for (let i = 0; i < 16; i++) l.push(`movdqu [rdi+${ST_XMM + 16 * i}], xmm${i}`);
  l.push(
    `stmxcsr [rdi+${ST_MXCSR}]`, `ldmxcsr [rdi+${ST_HOST_MXCSR}]`,
    'fninit', `fldcw [rdi+${ST_HOST_FCW}]`, 'cld',
    'pop rdi', 'pop r15', 'pop r14', 'pop r13', 'pop r12', 'pop rbp', 'pop rbx', 'ret',
  );
  return l.join('\n');
}

interface Libc {
  mmap: (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => unknown;
  munmap: (addr: unknown, len: number) => number;
}

let libc: Libc | undefined;
function getLibc(): Libc {
  if (libc === undefined) {
    const lib = koffi.load('libc.so.6');
    libc = {
      mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)') as Libc['mmap'],
      munmap: lib.func('int munmap(void *addr, size_t length)') as Libc['munmap'],
    };
  }
  return libc;
}

function map(size: number, prot: number): { ptr: unknown; addr: bigint; bytes: Uint8Array } {
  const ptr = getLibc().mmap(null, size, prot, MAP_PRIVATE_ANON, -1, 0);
  const addr = koffi.address(ptr);
  if (ptr === null || addr === 0xffff_ffff_ffff_ffffn) throw new NativeError(`mmap of ${size} bytes failed`);
  return { ptr, addr, bytes: new Uint8Array(koffi.view(ptr, size)) };
}

/** True on an x86-64 Linux host (where the native side can run). */
export const nativeSupported = process.arch === 'x64' && process.platform === 'linux';

export class NativeRunner {
  private readonly code = map(CODE_SIZE, PROT_RWX);
  private readonly state = map(STATE_SIZE, PROT_RW);
  private readonly data = map(DATA_SIZE, PROT_RW);
  private readonly stateView = new DataView(this.state.bytes.buffer, this.state.bytes.byteOffset, STATE_SIZE);
  private readonly proto = koffi.proto('void oracle_snippet(uint64_t state)');
  private readonly prologue = assemble(prologueSource());
  private readonly epilogue = assemble(epilogueSource());
  private closed = false;

  /** Host address of the data buffer. */
  get dataBase(): bigint {
    return this.data.addr;
  }

  run(test: Uint8Array, input: OracleState, opts: RunOptions = {}): OracleState {
    if (this.closed) throw new NativeError('NativeRunner is closed');
    const total = this.prologue.length + test.length + this.epilogue.length;
    if (total > CODE_SIZE) throw new NativeError(`test snippet of ${test.length} bytes is too large`);
    this.code.bytes.set(this.prologue, 0);
    this.code.bytes.set(test, this.prologue.length);
    this.code.bytes.set(this.epilogue, this.prologue.length + test.length);

    const ptrRegs = opts.ptrRegs ?? [];
    const v = this.stateView;
    for (let i = 0; i < 16; i++) {
      let x = input.gpr[i]! & MASK64;
      if (ptrRegs.includes(i)) x = (x + this.data.addr) & MASK64;
      v.setBigUint64(ST_GPR + 8 * i, x, true);
    }
    v.setBigUint64(ST_RFLAGS, BigInt((input.rflags & FLAGS_LOADABLE) | 0x2), true);
    v.setUint32(ST_MXCSR, input.mxcsr >>> 0, true);
    this.state.bytes.set(input.xmm, ST_XMM);
    this.data.bytes.set(input.mem.subarray(0, DATA_SIZE));

    koffi.call(this.code.ptr, this.proto, this.state.addr);

    const gpr: bigint[] = [];
    for (let i = 0; i < 16; i++) {
      let x = v.getBigUint64(ST_GPR + 8 * i, true);
      if (ptrRegs.includes(i)) x = (x - this.data.addr) & MASK64;
      gpr.push(i === 4 ? 0n : x);
    }
    return {
      gpr,
      rflags: Number(v.getBigUint64(ST_RFLAGS, true)),
      xmm: this.state.bytes.slice(ST_XMM, ST_XMM + 256),
      mxcsr: v.getUint32(ST_MXCSR, true),
      mem: this.data.bytes.slice(0, DATA_SIZE),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const c = getLibc();
    c.munmap(this.code.ptr, CODE_SIZE);
    c.munmap(this.state.ptr, STATE_SIZE);
    c.munmap(this.data.ptr, DATA_SIZE);
  }
}
