/**
 * The oracle: run the same case natively and in our CPU, compare registers, arithmetic flags
 * (minus the flags the SDM leaves undefined for the instruction, whose differences are
 * reported separately), XMM registers, MXCSR and the data buffer.
 *
 * Random cases come from a seeded PRNG (xorshift128+ over BigInt-free 32-bit state); the seed is
 * printed with every failure and can be forced with ORACLE_SEED=<n>.
 */
import { afterAll, expect } from 'vitest';
import { assembleMany } from './assemble.js';
import { CODE_BASE, EmulatedRunner, type EmuResult } from './emulated.js';
import { NativeRunner } from './native.js';
import {
  blankState, cloneState, FLAG_DF, FLAGS_ARITH, hex64, MASK64, REG_NAMES, type OracleState,
} from './state.js';

export interface OracleCase {
  /** Assembly (nasm, 64-bit) of the instructions under test. */
  asm: string;
  state: OracleState;
  /** Registers holding offsets into the data buffer (relocated in each world). */
  ptrRegs?: number[];
  /** Arithmetic flags the SDM calls undefined after this instruction. */
  undefFlags?: number;
  /** Registers whose value is architecturally undefined afterwards (BSF/BSR of 0...). */
  undefRegs?: number[];
  /** Compare MXCSR too (SSE floating-point families). */
  checkMxcsr?: boolean;
  /** CR4 bits the emulated CPU sets before the run, as the host kernel did for user mode (FSGSBASE). */
  cr4?: number;
}

export interface OracleReport {
  total: number;
  failures: string[];
  /** Differences only in undefined flags/registers (AMD host vs our choice): informative. */
  undefinedDiffs: string[];
}

// ---------------------------------------------------------------------------------------------
// PRNG and operand generators

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(readonly seed: number) {
    // splitmix32 to fill the state
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }
  /** Uniform unsigned 32-bit (xoshiro128**). */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d >>> 0, 11);
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    return r;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bool(p = 0.5): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
  /**
   * An "interesting" value of `bits` width (zero-extended): boundary values a quarter of the
   * time, small numbers sometimes, otherwise uniform.
   */
  value(bits: number): bigint {
    const mask = (1n << BigInt(bits)) - 1n;
    const top = 1n << BigInt(bits - 1);
    const r = this.int(8);
    if (r < 2) {
      const specials = [0n, 1n, 2n, top - 1n, top, top + 1n, mask, mask - 1n, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn];
      return this.pick(specials) & mask;
    }
    if (r === 2) return BigInt(this.int(64)) & mask;
    if (r === 3) return (mask - BigInt(this.int(64))) & mask;
    return this.u64() & mask;
  }
  /** Random arithmetic flags + maybe DF clear. */
  flags(): number {
    return this.u32() & FLAGS_ARITH;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Seed for a named test: ORACLE_SEED, else a hash of the name (stable across runs). */
export function seedFor(name: string): number {
  const env = process.env['ORACLE_SEED'];
  if (env !== undefined && env !== '') return Number(env) >>> 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A state with every GPR (but RSP) random, random flags, random XMM and data buffer. */
export function randomState(rng: Rng): OracleState {
  const s = blankState();
  for (let i = 0; i < 16; i++) s.gpr[i] = i === 4 ? 0n : rng.u64();
  s.rflags = rng.flags();
  s.xmm = rng.bytes(256);
  s.mem = rng.bytes(s.mem.length);
  return s;
}

// ---------------------------------------------------------------------------------------------
// register names

export const GPR64 = REG_NAMES;
export const GPR32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'] as const;
export const GPR16 = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di', 'r8w', 'r9w', 'r10w', 'r11w', 'r12w', 'r13w', 'r14w', 'r15w'] as const;
/** 8-bit registers with REX (index = register number). */
export const GPR8 = ['al', 'cl', 'dl', 'bl', 'spl', 'bpl', 'sil', 'dil', 'r8b', 'r9b', 'r10b', 'r11b', 'r12b', 'r13b', 'r14b', 'r15b'] as const;
export const GPR8_HIGH = ['ah', 'ch', 'dh', 'bh'] as const;

export type Size = 8 | 16 | 32 | 64;
export const SIZES: readonly Size[] = [8, 16, 32, 64];
export const SIZE_PTR: Record<Size, string> = { 8: 'byte', 16: 'word', 32: 'dword', 64: 'qword' };

export function regName(size: Size, r: number): string {
  switch (size) {
    case 8: return GPR8[r]!;
    case 16: return GPR16[r]!;
    case 32: return GPR32[r]!;
    case 64: return GPR64[r]!;
  }
}

/**
 * Pick an operand register of `size` (never RSP, never one in `exclude`). For 8-bit operands
 * the legacy high-byte registers AH..BH are offered too; `regName8` tells them apart.
 */
export function pickReg(rng: Rng, exclude: readonly number[] = []): number {
  for (;;) {
    const r = rng.int(16);
    if (r !== 4 && !exclude.includes(r)) return r;
  }
}

/** A pair of 8-bit register names that can appear in one instruction (no AH..BH with REX). */
export function pick8Pair(rng: Rng, exclude: readonly number[] = []): [string, string, number, number] {
  if (rng.bool(0.3)) {
    // legacy form: AL..BL and AH..BH (numbers 0..7 in the encoding; AH..BH alias regs 0..3 bits 8..15)
    const cands = [0, 1, 2, 3].filter((r) => !exclude.includes(r));
    if (cands.length > 0) {
      const a = rng.pick(cands);
      const b = rng.pick(cands);
      const na = rng.bool() ? GPR8_HIGH[a]! : GPR8[a]!;
      const nb = rng.bool() ? GPR8_HIGH[b]! : GPR8[b]!;
      return [na, nb, a, b];
    }
  }
  const a = pickReg(rng, exclude);
  const b = pickReg(rng, exclude);
  return [GPR8[a]!, GPR8[b]!, a, b];
}

export function imm(v: bigint): string {
  return '0x' + v.toString(16);
}

// ---------------------------------------------------------------------------------------------
// running and comparing

let native: NativeRunner | undefined;
let emulated: EmulatedRunner | undefined;

function runners(): { native: NativeRunner; emulated: EmulatedRunner } {
  native ??= new NativeRunner();
  emulated ??= new EmulatedRunner();
  return { native, emulated };
}

const FLAG_NAMES: [number, string][] = [[0x1, 'CF'], [0x4, 'PF'], [0x10, 'AF'], [0x40, 'ZF'], [0x80, 'SF'], [0x400, 'DF'], [0x800, 'OF']];

export function flagStr(f: number): string {
  return FLAG_NAMES.filter(([b]) => f & b).map(([, n]) => n).join(' ') || '-';
}

function describeInput(c: OracleCase): string {
  const regs = c.state.gpr
    .map((v, i) => (i === 4 ? '' : `${REG_NAMES[i]}=${c.ptrRegs?.includes(i) ? `buf+0x${v.toString(16)}` : hex64(v)}`))
    .filter((x) => x !== '');
  return `${regs.join(' ')} flags=[${flagStr(c.state.rflags)}]`;
}

function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function compare(c: OracleCase, want: OracleState, got: EmuResult, endRip: number, undefinedOut: string[]): string[] {
  const d: string[] = [];
  if (got.error !== undefined) return [`emulator threw ${got.error.split('\n').slice(0, 3).join(' | ')}`];
  if (got.shutdown !== undefined) return [`emulator triple-faulted: ${got.shutdown}`];
  if (got.timeout) return ['emulator did not reach the final HLT'];
  if (got.exception !== undefined) {
    const e = got.exception;
    return [`emulator raised vector ${e.vector} (error code ${e.errorCode}) at rip 0x${e.rip.toString(16)}`];
  }
  if (got.rip !== endRip) return [`emulator halted at rip 0x${got.rip.toString(16)}, not after the final HLT (0x${endRip.toString(16)})`];
  const undefRegs = c.undefRegs ?? [];
  for (let i = 0; i < 16; i++) {
    if (i === 4 || want.gpr[i] === got.gpr[i]) continue;
    const line = `${REG_NAMES[i]}: expected ${hex64(want.gpr[i]!)} got ${hex64(got.gpr[i]!)}`;
    if (undefRegs.includes(i)) undefinedOut.push(`${c.asm.replace(/\n/g, '; ')}: ${line} (undefined)`);
    else d.push(line);
  }
  const undef = c.undefFlags ?? 0;
  const checked = (FLAGS_ARITH | FLAG_DF) & ~undef;
  if (got.rflags === -1) d.push('getRflags() threw');
  else {
    const diff = (want.rflags ^ got.rflags) & checked;
    if (diff) d.push(`flags: expected [${flagStr(want.rflags & checked)}] got [${flagStr(got.rflags & checked)}] (differ: ${flagStr(diff)})`);
    const udiff = (want.rflags ^ got.rflags) & undef;
    if (udiff) undefinedOut.push(`${c.asm.replace(/\n/g, '; ')}: undefined flags ${flagStr(udiff)} host [${flagStr(want.rflags & udiff)}] ours [${flagStr(got.rflags & udiff)}]`);
  }
  for (let r = 0; r < 16; r++) {
    const a = want.xmm.subarray(16 * r, 16 * r + 16);
    const b = got.xmm.subarray(16 * r, 16 * r + 16);
    if (a.some((x, i) => x !== b[i])) d.push(`xmm${r}: expected ${hexBytes(a.slice().reverse())} got ${hexBytes(b.slice().reverse())}`);
  }
  if (c.checkMxcsr && want.mxcsr !== got.mxcsr) {
    d.push(`mxcsr: expected 0x${want.mxcsr.toString(16)} got 0x${got.mxcsr.toString(16)}`);
  }
  for (let i = 0; i < want.mem.length; i++) {
    if (want.mem[i] !== got.mem[i]) {
      let j = i;
      while (j < want.mem.length && j < i + 16 && want.mem[j] !== got.mem[j]) j++;
      d.push(`mem[0x${i.toString(16)}..]: expected ${hexBytes(want.mem.slice(i, j))} got ${hexBytes(got.mem.slice(i, j))}`);
      break;
    }
  }
  return d;
}

/** Run every case in both worlds. */
export function runOracle(cases: readonly OracleCase[], seed?: number): OracleReport {
  const { native, emulated } = runners();
  const code = assembleMany(cases.map((c) => c.asm));
  const failures: string[] = [];
  const undefinedDiffs: string[] = [];
  cases.forEach((c, i) => {
    const opts = { ptrRegs: c.ptrRegs ?? [] };
    const want = native.run(code[i]!, cloneState(c.state), opts);
    const cr4 = c.cr4 ?? 0;
    const setup = cr4 === 0 ? undefined : (cpu: { s: { cr4: number }; modeChanged(): void }): void => {
      cpu.s.cr4 |= cr4;
      cpu.modeChanged();
    };
    const got = emulated.run(code[i]!, cloneState(c.state), { ...opts, setup });
    const d = compare(c, want, got, CODE_BASE + code[i]!.length + 1, undefinedDiffs);
    if (d.length > 0) {
      failures.push(
        `#${i}${seed !== undefined ? ` seed=${seed}` : ''}: ${c.asm.replace(/\n/g, '; ')}\n    in:  ${describeInput(c)}\n    ` +
          d.join('\n    '),
      );
    }
  });
  return { total: cases.length, failures, undefinedDiffs };
}

/** Collected undefined-behaviour differences of the current test file (printed after it). */
export const undefinedLog: string[] = [];

afterAll(() => {
  if (undefinedLog.length > 0) {
    console.log(`differences in SDM-undefined flags/registers only (informative, not failures):\n  ${undefinedLog.join('\n  ')}`);
  }
});

/** Shape failures into one assertion message (first few in full). */
export function summarize(r: OracleReport, max = 6): string {
  if (r.failures.length === 0) return '';
  return `${r.failures.length}/${r.total} cases differ from the host CPU:\n` + r.failures.slice(0, max).join('\n') +
    (r.failures.length > max ? `\n... and ${r.failures.length - max} more` : '');
}

/** Assert a report has no failures; the message lists the first few with their inputs. */
export function expectClean(r: OracleReport): void {
  expect(r.failures.length, summarize(r)).toBe(0);
}

/** Convenience: build `count` cases with `make`, run them, return the report. */
export function fuzz(name: string, count: number, make: (rng: Rng, i: number) => OracleCase): OracleReport {
  const seed = seedFor(name);
  const rng = new Rng(seed);
  const cases: OracleCase[] = [];
  for (let i = 0; i < count; i++) cases.push(make(rng, i));
  const r = runOracle(cases, seed);
  for (const u of r.undefinedDiffs.slice(0, 5)) undefinedLog.push(`${name}: ${u}`);
  if (r.undefinedDiffs.length > 5) undefinedLog.push(`${name}: ... ${r.undefinedDiffs.length - 5} more undefined-only differences`);
  return r;
}

export { MASK64 };
