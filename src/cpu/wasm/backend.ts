/**
 * The WebAssembly back end of the block translator, host side: compiles traces with
 * translate.ts, instantiates them against the arena's memory, and implements what blocks import
 * (slow memory accesses through the Cpu, the interpreter for instructions not generated inline,
 * the current flags, exceptions). Whenever the host gets control from a block it first copies the
 * lazy-flag record the block may have left in the arena into the Cpu's flag fields.
 */
import type { Cpu } from '../core/cpu.js';
import { Block } from '../core/jit.js';
import { buildTrace } from '../core/jit-trace.js';
import { step } from '../core/exec.js';
import { P_SR, P_SW, P_UR, P_UW } from '../core/consts.js';
import { CpuFault } from '../system-api.js';
import { A_FA, A_FB, A_FCIN, A_FKIND, A_FRES, A_FSZ, A_RIP, A_SCRATCH, A_STOP, type Arena } from './arena.js';
import { translateTrace } from './translate.js';

const TWO47 = 140737488355328;
const I_FKIND = A_FKIND >> 2, I_FSZ = A_FSZ >> 2, I_FCIN = A_FCIN >> 2, I_STOP = A_STOP >> 2;
const I_FA = A_FA >> 2, I_FB = A_FB >> 2, I_FRES = A_FRES >> 2, I_SCRATCH = A_SCRATCH >> 2, D_RIP = A_RIP >> 3;

export class WasmBackend {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;
  private readonly imports: WebAssembly.Imports;

  constructor(private readonly cpu: Cpu, readonly arena: Arena) {
    const buf = arena.buffer;
    this.i32 = new Int32Array(buf, arena.base, 64);
    this.u32 = new Uint32Array(buf, arena.base, 64);
    this.f64 = new Float64Array(buf, arena.base, 32);
    this.i32[I_FKIND] = -1;
    const c = cpu;
    const i32 = this.i32;
    const stopNow = (): boolean => {
      const stop = c.smc !== 0 || c.exitRequested;
      if (stop) i32[I_STOP] = 1;
      return stop;
    };
    const canonical = (lin: number, size: number): void => {
      if (lin < -TWO47 || lin >= TWO47) throw new CpuFault(size & 0x100 ? 12 : 13, 0);
    };
    this.imports = {
      e: { m: arena.memory },
      h: {
        rd: (lin: number, size: number, rip: number): number => {
          this.syncFlags();
          c.startRip = rip;
          canonical(lin, size);
          let v = 0;
          switch (size & 0xff) {
            case 1: v = c.read8(lin); break;
            case 2: v = c.read16(lin); break;
            case 4: v = c.read32(lin); break;
            default:
              i32[I_SCRATCH] = c.read64(lin);
              i32[I_SCRATCH + 1] = c.hi;
          }
          stopNow();
          return v;
        },
        wr: (lin: number, size: number, lo: number, hi: number, rip: number): number => {
          this.syncFlags();
          c.startRip = rip;
          canonical(lin, size);
          switch (size & 0xff) {
            case 1: c.write8(lin, lo & 0xff); break;
            case 2: c.write16(lin, lo & 0xffff); break;
            case 4: c.write32(lin, lo); break;
            default: c.write64(lin, lo, hi);
          }
          return stopNow() ? 1 : 0;
        },
        step: (rip: number, next: number): number => {
          this.syncFlags();
          c.startRip = rip;
          c.s.rip = rip;
          step(c);
          this.f64[D_RIP] = c.s.rip;
          return stopNow() || c.s.rip !== next ? 1 : 0;
        },
        flags: (): number => {
          this.syncFlags();
          return c.getArith();
        },
        fault: (vector: number, rip: number): void => {
          this.syncFlags();
          c.startRip = rip;
          throw new CpuFault(vector, 0);
        },
      },
    };
  }

  /** Copy a lazy-flag record left by a block into the Cpu's fields. */
  syncFlags(): void {
    const i32 = this.i32;
    const k = i32[I_FKIND]!;
    if (k === -1) return;
    const c = this.cpu;
    const u32 = this.u32;
    c.fOp = k;
    c.fSz = i32[I_FSZ]!;
    c.fCin = i32[I_FCIN]!;
    c.fA = u32[I_FA]!;
    c.fAHi = u32[I_FA + 1]!;
    c.fB = u32[I_FB]!;
    c.fBHi = u32[I_FB + 1]!;
    c.fRes = u32[I_FRES]!;
    c.fResHi = u32[I_FRES + 1]!;
    i32[I_FKIND] = -1;
  }

  /** Translate the block at linear `rip` (its bytes at `off` in the first RAM region). */
  compile(ram: Uint8Array, rip: number, off: number, isBlockStart?: (rip: number, off: number) => boolean): Block {
    const tr = buildTrace(ram, rip, off, isBlockStart);
    const { bytes, n } = translateTrace(tr, rip, this.arena.base);
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), this.imports);
    const fn = inst.exports.b as (needR: number, needW: number) => number;
    const i32 = this.i32;
    const f64 = this.f64;
    const run = (c: Cpu): number => {
      i32[I_STOP] = 0;
      const user = c.s.cpl === 3;
      const k = fn(user ? P_UR : P_SR, user ? P_UW : P_SW);
      c.s.rip = f64[D_RIP]!;
      if (i32[I_FKIND] !== -1) this.syncFlags();
      return k;
    };
    return new Block(run, rip, off, tr.lo, tr.hiEnd, n);
  }
}
