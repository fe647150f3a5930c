/**
 * Test-only helper (imported by *.test.ts, never by the CPU): assemble a snippet with nasm and
 * run it on a test machine until HLT.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestMachine, enterLongMode, enterProtected32, CODE_BASE, type TestMachine } from './test-machine.js';

export const hasNasm = existsSync('/usr/bin/nasm') || existsSync('/usr/local/bin/nasm');

let dir: string | undefined;
let counter = 0;

export function assemble(src: string, bits: 16 | 32 | 64 = 64, org = CODE_BASE): Uint8Array {
  dir ??= mkdtempSync(join(tmpdir(), 'tv-core-'));
  const n = counter++;
  const inFile = join(dir, `t${n}.asm`);
  const outFile = join(dir, `t${n}.bin`);
  writeFileSync(inFile, `bits ${bits}\norg 0x${org.toString(16)}\n${src}\n`);
  execFileSync('nasm', ['-f', 'bin', '-o', outFile, inFile]);
  return new Uint8Array(readFileSync(outFile));
}

export interface RunResult extends TestMachine {
  /** Instructions retired. */
  n: number;
}

/** Assemble `src` (64-bit unless told), load it at CODE_BASE, enter long mode, run until HLT. */
export function run64(src: string, setup?: (t: TestMachine) => void, budget = 1_000_000): RunResult {
  const t = createTestMachine();
  t.memory.writeBytes(CODE_BASE, assemble(src, 64));
  enterLongMode(t);
  setup?.(t);
  const n = t.cpu.run(budget);
  return { ...t, n };
}

export function run32(src: string, setup?: (t: TestMachine) => void, budget = 1_000_000): RunResult {
  const t = createTestMachine();
  t.memory.writeBytes(CODE_BASE, assemble(src, 32));
  enterProtected32(t);
  setup?.(t);
  const n = t.cpu.run(budget);
  return { ...t, n };
}

/** 64-bit register r as a bigint (unsigned). */
export function r64(t: TestMachine, r: number): bigint {
  const g = t.cpu.s.gpr;
  return (BigInt(g[2 * r + 1]! >>> 0) << 32n) | BigInt(g[2 * r]! >>> 0);
}

export const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
export const R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;
