/**
 * The instruction table against the interpreter: every opcode of the one-byte, 0F, 0F 38 and 0F 3A
 * maps (with the optional SSE3..SSE4.2 features on, so their instructions run), each
 * ModRM.reg, register and memory forms, under several prefixes, decoded by the translator's
 * decoder (whose facts come from the table) and run by the interpreter on a test machine.
 * Where the interpreter executes the instruction (no fault), the table must agree with what it
 * did:
 *  - length: the interpreter's RIP advance equals the decoded length;
 *  - flags: an instruction said to read no flag gives the same registers, memory and written
 *    flags whatever the flags were before, and keeps the rest; one said to write all six gives
 *    the same six whatever they were before (the liveness pass drops earlier flag writes);
 *  - stores: one said not to store leaves memory as it was (the translator checks for
 *    self-modifying code only after stores);
 *  - blocks: one the interpreter may run inside a translated block changes no mode, privilege,
 *    control register, segment or the interrupt flag, and goes on at the next instruction.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { features } from '../features.js';
import { createTestMachine, enterLongMode, CODE_BASE, STACK_TOP, type TestMachine } from '../core/test-machine.js';
import { step } from '../core/exec.js';
import { CpuFault } from '../system-api.js';
import { simdUnit } from '../fpu/index.js';
import { decode, newD, type D } from '../translate/decode.js';
import { continueSafe, flagUse, stores, FlagUse } from '../translate/trace.js';
import { entry, entryName, flowOf, Flow, hasModrm, isDefined } from './table.js';

const DATA = 0x200000;
const DISP = 0x100;
const ARITH = 0x8d5; // CF PF AF ZF SF OF
const FLAG_BITS = [0x1, 0x4, 0x10, 0x40, 0x80, 0x800];
const PREFIXES: readonly (readonly number[])[] = [[], [0x66], [0x48], [0xf3], [0xf2], [0x67], [0x66, 0x48]];
/**
 * RAM ranges an instruction may touch here: GDT, IDT and handlers, the stack, the code, the data
 * (not the page tables, whose accessed and dirty bits every page walk may set).
 */
const RANGES: readonly [number, number][] = [[0, 0x1000], [0x4000, 0x8000], [STACK_TOP - 0x1000, STACK_TOP + 0x1000], [CODE_BASE, CODE_BASE + 0x1000], [DATA - 0x1000, DATA + 0x3000]];

interface Outcome {
  fault: boolean;
  rip: number;
  gpr: Uint32Array;
  flags: number;
  mem: Uint8Array[];
  mode: number[];
}

class Bench {
  readonly t: TestMachine = createTestMachine({ ramBytes: 4 * 1024 * 1024, simd: simdUnit });
  readonly ram: Uint8Array;
  readonly pristine: Uint8Array[];

  constructor() {
    this.ram = this.t.memory.regions[0]!.bytes;
    enterLongMode(this.t);
    for (let i = 0; i < 0x3000; i++) this.ram[DATA - 0x1000 + i] = (i * 37 + 11) & 0xff;
    for (let i = 0; i < 0x2000; i++) this.ram[STACK_TOP - 0x1000 + i] = (i * 13 + 5) & 0xff;
    this.pristine = RANGES.map(([a, b]) => this.ram.slice(a, b));
  }

  /** Reset the machine, load `code` at CODE_BASE, set the arithmetic flags, run one instruction. */
  run(code: Uint8Array, flags: number): Outcome {
    const { t, ram } = this;
    const c = t.cpu;
    c.simd?.reset(c.s);
    c.s.xmm.fill(0);
    c.shutdown = undefined;
    RANGES.forEach(([a], i) => ram.set(this.pristine[i]!, a));
    ram.set(code, CODE_BASE);
    enterLongMode(t);
    if (features.fsgsbase) c.s.cr4 |= 1 << 16; // CR4.FSGSBASE: RDFSBASE & co run
    const g = c.s.gpr;
    const set = (r: number, lo: number, hi = 0): void => {
      g[2 * r] = lo;
      g[2 * r + 1] = hi;
    };
    set(0, 0x89abcdef, 0x01234567);
    set(1, 3); // RCX: a short REP count, a small shift count
    set(2, 0x40); // RDX: an I/O port nobody answers; the ModRM register operand
    set(3, DATA); // RBX: the ModRM memory operand's base
    set(5, STACK_TOP - 0x80);
    set(6, DATA + 0x400);
    set(7, DATA + 0x800);
    for (let r = 8; r < 16; r++) set(r, (0x9e3779b9 * r) >>> 0, r);
    c.setArith(flags);
    c.startRip = c.s.rip;
    let fault = false;
    try {
      step(c);
    } catch (e) {
      if (!(e instanceof CpuFault)) throw e;
      fault = true;
    }
    const s = c.s;
    return {
      fault,
      rip: s.rip,
      gpr: new Uint32Array(g),
      flags: c.getArith() & ARITH,
      mem: RANGES.map(([a, b]) => ram.slice(a, b)),
      mode: [s.cpl, s.cr0, s.cr3, s.cr4, s.efer, c.getRflags() & 0x200, ...s.segSel, ...Array.from(s.segBase)],
    };
  }
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};
const sameMem = (a: Uint8Array[], b: Uint8Array[]): boolean => memDiff(a, b) === '';
/** Where two snapshots of RANGES first differ ('' when they do not). */
function memDiff(a: Uint8Array[], b: Uint8Array[]): string {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (Buffer.compare(x, y) === 0) continue;
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) return `0x${(RANGES[i]![0] + j).toString(16)}`;
  }
  return '';
}
const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

/** Every encoding the test runs: prefixes, opcode, ModRM (reg form: RDX; memory: [RBX+disp32]), immediate bytes. */
function* encodings(): Generator<{ code: Uint8Array; op: number; immFill: number }> {
  for (let op = 0; op < OPS; op++) {
    const b = op & 0xff;
    // prefixes and REX are not opcodes; the decoder consumes them first
    if (op < 0x100 && (b === 0x0f || b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e || (b >= 0x40 && b <= 0x4f) ||
      (b >= 0x64 && b <= 0x67) || b === 0xf0 || b === 0xf2 || b === 0xf3)) continue;
    // the 0F 38 / 0F 3A escapes lead to maps 2 and 3, run below as opcodes 0x200.. and 0x300..
    if (op === 0x138 || op === 0x13a) continue;
    const head = op < 0x100 ? [b] : op < 0x200 ? [0x0f, b] : [0x0f, op < 0x300 ? 0x38 : 0x3a, b];
    const modrm = hasModrm(entry(op, 0, false));
    const forms: number[][] = modrm
      ? [0, 1, 2, 3, 4, 5, 6, 7].flatMap((r) => [[0xc0 | (r << 3) | 2], [0x80 | (r << 3) | 3, DISP & 0xff, DISP >> 8, 0, 0]])
      : [[]];
    for (const pre of PREFIXES) {
      for (const form of forms) {
        for (const immFill of [0, 1]) {
          const code = new Uint8Array(24).fill(immFill);
          code.set([...pre, ...head, ...form]);
          yield { code, op, immFill };
        }
      }
    }
  }
}

/** Opcodes of the four maps: (map << 8) | byte. */
const OPS = 0x400;

describe('instruction table (isa/table.ts) against the interpreter', () => {
  const saved = { ...features };
  beforeAll(() => Object.assign(features, { sse3: true, ssse3: true, sse41: true, sse42: true }));
  afterAll(() => Object.assign(features, saved));

  it('defines every opcode of the four maps, for every ModRM.reg and form', () => {
    for (let op = 0; op < OPS; op++) {
      for (let r = 0; r < 8; r++) for (const m of [false, true]) expect(isDefined(entry(op, r, m)), `opcode ${op.toString(16)}`).toBe(true);
    }
  });

  it('agrees with the interpreter on length, flags, stores and what a block may run', () => {
    const bench = new Bench();
    const d: D = newD();
    const problems: string[] = [];
    let checked = 0;
    let faulted = 0;
    const resetMode = bench.run(new Uint8Array([0x90]), 0).mode; // the mode state of the reset machine
    for (const { code, op, immFill } of encodings()) {
      const ok = decode(code, 0, code.length, CODE_BASE, d);
      const e = entry(op, 0, false);
      if (!ok) {
        // the decoder refuses only the table's Refuse forms (or a length past 15 bytes)
        if (flowOf(e) !== Flow.Refuse) problems.push(`${hex(code.subarray(0, 8))}: decoder refused a form the table does not`);
        continue;
      }
      const name = entryName(d.op, d.reg, d.mod === 3);
      const where = `${hex(code.subarray(0, d.len))} (${name})`;
      const a = bench.run(code, 0);
      if (a.fault) {
        faulted++;
        continue;
      }
      const flow = flowOf(d.info);
      const adv = a.rip - CODE_BASE;
      const isString = d.op >= 0xa4 && d.op <= 0xaf && d.op !== 0xa8 && d.op !== 0xa9;
      if (flow === Flow.Next) {
        if (adv !== d.len && !(isString && d.rep !== 0 && adv === 0)) problems.push(`${where}: interpreter advanced ${adv} bytes, decoder says ${d.len}`);
      } else if (flow === Flow.End && immFill === 0 && adv > 0 && adv <= 15 && adv !== d.len) {
        problems.push(`${where}: interpreter advanced ${adv} bytes, decoder says ${d.len}`);
      }
      checked++;
      const stored = memDiff(a.mem, bench.pristine.map((p, i) => (RANGES[i]![0] === CODE_BASE ? withCode(p, code) : p)));
      if (!stores(d) && stored !== '') problems.push(`${where}: stored to memory at ${stored}; the table says it does not`);
      if (continueSafe(d)) {
        // STI alone may set IF inside a block: with an interrupt waiting it opens the shadow,
        // and the block leaves after it (step's answer, or wasm/system.ts's STI)
        const mode = d.op === 0xfb ? a.mode.map((v, i) => (i === 5 ? resetMode[i]! : v)) : a.mode;
        if (!same(mode, resetMode)) problems.push(`${where}: changed mode, privilege, a segment or IF, yet may run inside a block`);
      }
      const fu = flagUse(d);
      if (flow === Flow.Next && (fu === FlagUse.None || fu === FlagUse.WritesAll)) {
        const b = bench.run(code, ARITH);
        if (b.fault) {
          problems.push(`${where}: faults only with the flags set, but reads no flag`);
          continue;
        }
        for (const bit of FLAG_BITS) {
          const x = a.flags & bit, y = b.flags & bit;
          const written = x === y;
          const kept = x === 0 && y === bit;
          if (fu === FlagUse.WritesAll && !written) problems.push(`${where}: flag ${bit.toString(16)} depends on the flags before, but the table says it writes all`);
          if (fu === FlagUse.None && !written && !kept) problems.push(`${where}: flag ${bit.toString(16)} depends on the flags before, but the table says it reads none`);
        }
        if (!same(a.gpr, b.gpr) || !sameMem(a.mem, b.mem) || a.rip !== b.rip) problems.push(`${where}: result depends on the flags, but the table says it reads none`);
      }
    }
    console.log(`instruction table: ${checked} encodings run, ${faulted} faulted in the interpreter`);
    expect(checked).toBeGreaterThan(8000);
    expect([...new Set(problems)].slice(0, 40)).toEqual([]);
  }, 120_000);
});

/** The pristine code page with `code` at its start (what the code page holds during a run). */
function withCode(page: Uint8Array, code: Uint8Array): Uint8Array {
  const p = page.slice();
  p.set(code, 0);
  return p;
}
