/**
 * Oracle: x87 arithmetic, loads/stores, integer conversion, exchanges and comparisons. Results
 * are read back inside the snippet with FSTP/FISTP/FNSTSW into the data buffer (or RFLAGS for
 * FCOMI), so both worlds compare memory bytes. Each snippet starts with FNINIT and sets its
 * control word (precision and rounding) with FLDCW.
 *
 * Buffer layout (offsets from RBX = 0x400): +0 control word, +8/+16/+24 operands (m64, or
 * m32/m16 integers), +32 a 10-byte operand, +64.. results.
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { BASE_REG } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, randomState, type OracleCase, type Rng, expectClean } from './oracle.js';

const N = 150;
const BASE = 0x400;

const F64_SPECIAL = [
  0n, 0x8000000000000000n, 0x3ff0000000000000n, 0xbff0000000000000n, 0x7ff0000000000000n, 0xfff0000000000000n,
  0x7ff8000000000000n, 0xfff8000000000000n, 0x7ff4000000000000n, 0x0000000000000001n, 0x800fffffffffffffn,
  0x0010000000000000n, 0x7fefffffffffffffn, 0x41e0000000000000n, 0xc1e0000000000000n, 0x43e0000000000000n,
  0x3fe0000000000000n, 0x3ff8000000000000n, 0x4004000000000000n, 0x4330000000000001n, 0x400921fb54442d18n,
];

function f64(rng: Rng, specials: boolean): bigint {
  if (specials && rng.bool(0.3)) return rng.pick(F64_SPECIAL);
  const k = rng.int(4);
  const exp = BigInt(1023 + (k === 0 ? rng.int(2000) - 1000 : rng.int(60) - 30));
  return (rng.bool() ? 1n << 63n : 0n) | (exp << 52n) | (rng.u64() & ((1n << 52n) - 1n));
}

function put(c: OracleCase, off: number, v: bigint, bytes: number): void {
  for (let k = 0; k < bytes; k++) c.state.mem[BASE + off + k] = Number((v >> BigInt(8 * k)) & 0xffn);
}

/** FPU control word: all exceptions masked, precision `pc` (0 single, 2 double, 3 extended), rounding `rc`. */
function controlWord(pc: number, rc: number): number {
  return 0x3f | 0x40 | (pc << 8) | (rc << 10);
}

function baseCase(rng: Rng, cw: number, specials: boolean): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), ptrRegs: [BASE_REG] };
  c.state.gpr[BASE_REG] = BigInt(BASE);
  put(c, 0, BigInt(cw), 2);
  put(c, 8, f64(rng, specials), 8);
  put(c, 16, f64(rng, specials), 8);
  put(c, 24, f64(rng, specials), 8);
  return c;
}

const PROLOGUE = 'fninit\nfldcw [rbx]\n';

const BINARY_FORMS = [
  'fadd st0, st1', 'fsub st0, st1', 'fsubr st0, st1', 'fmul st0, st1', 'fdiv st0, st1', 'fdivr st0, st1',
  'fadd st1, st0\nfstp st0', 'fsub st1, st0\nfstp st0', 'fdiv st1, st0\nfstp st0',
  'faddp st1, st0', 'fsubp st1, st0', 'fsubrp st1, st0', 'fmulp st1, st0', 'fdivp st1, st0', 'fdivrp st1, st0',
  'fadd qword [rbx+24]', 'fsub qword [rbx+24]', 'fmul qword [rbx+24]', 'fdiv qword [rbx+24]', 'fdivr qword [rbx+24]',
];
const UNARY_FORMS = ['fsqrt', 'fchs', 'fabs', 'frndint', 'fxch st1', 'fld st1', 'fscale', 'fxtract\nfstp qword [rbx+80]', 'fprem', 'fprem1'];

/** Arithmetic on two loaded m64 operands, result stored as m64 (and m80). */
function arithCase(rng: Rng, pc: number, storeM80: boolean): OracleCase {
  const cw = controlWord(pc, rng.int(4));
  const c = baseCase(rng, cw, true);
  const op = rng.bool(0.7) ? rng.pick(BINARY_FORMS) : rng.pick(UNARY_FORMS);
  const store = storeM80 ? 'fstp tword [rbx+64]' : 'fstp qword [rbx+64]';
  c.asm = `${PROLOGUE}fld qword [rbx+16]\nfld qword [rbx+8]\n${op}\n${store}\nfstp qword [rbx+96]`;
  return c;
}

function intCase(rng: Rng): OracleCase {
  const rc = rng.int(4);
  const c = baseCase(rng, controlWord(3, rc), true);
  // integers to load
  put(c, 24, rng.value(32), 4);
  put(c, 28, rng.value(16), 2);
  put(c, 32, rng.value(64), 8);
  const forms = [
    'fld qword [rbx+8]\nfistp dword [rbx+64]',
    'fld qword [rbx+8]\nfistp qword [rbx+64]',
    'fld qword [rbx+8]\nfistp word [rbx+64]',
    'fld qword [rbx+8]\nfist dword [rbx+64]\nfstp st0',
    'fild dword [rbx+24]\nfstp qword [rbx+64]',
    'fild word [rbx+28]\nfstp qword [rbx+64]',
    'fild qword [rbx+32]\nfstp qword [rbx+64]',
    'fild qword [rbx+32]\nfstp tword [rbx+64]',
    'fild dword [rbx+24]\nfidiv word [rbx+28]\nfstp qword [rbx+64]',
    'fild dword [rbx+24]\nfimul dword [rbx+24]\nfistp qword [rbx+64]',
    'fild qword [rbx+32]\nfistp qword [rbx+64]',
  ];
  // scale the m64 operand into the integer range now and then so FIST results are not all "indefinite"
  if (rng.bool(0.6)) put(c, 8, BigInt.asUintN(64, (rng.bool() ? 1n << 63n : 0n) | (BigInt(1023 + rng.int(64)) << 52n) | (rng.u64() & ((1n << 52n) - 1n))), 8);
  c.asm = PROLOGUE + rng.pick(forms);
  return c;
}

function compareCase(rng: Rng): OracleCase {
  const c = baseCase(rng, controlWord(3, 0), true);
  if (rng.bool(0.2)) c.state.mem.copyWithin(BASE + 16, BASE + 8, BASE + 16); // equal operands
  const op = rng.pick(['fcomi st0, st1', 'fucomi st0, st1', 'fcomip st0, st1', 'fucomip st0, st1']);
  c.asm = `${PROLOGUE}fld qword [rbx+16]\nfld qword [rbx+8]\n${op}`;
  return c;
}

function statusCase(rng: Rng): OracleCase {
  const c = baseCase(rng, controlWord(rng.pick([2, 3]), rng.int(4)), true);
  const op = rng.pick([
    'fcom st1', 'fucom st1', 'fcomp st1', 'fcom qword [rbx+24]', 'ftst', 'fxam', ...BINARY_FORMS, ...UNARY_FORMS,
  ]);
  c.asm = `${PROLOGUE}fld qword [rbx+16]\nfld qword [rbx+8]\n${op}\nfnstsw ax\nmov [rbx+64], ax\nfnstsw word [rbx+66]`;
  return c;
}

function constCase(rng: Rng): OracleCase {
  const c = baseCase(rng, controlWord(3, rng.int(4)), false);
  const k = rng.pick(['fld1', 'fldz', 'fldpi', 'fldl2e', 'fldl2t', 'fldlg2', 'fldln2']);
  c.asm = `${PROLOGUE}${k}\nfstp tword [rbx+64]\n${k}\nfstp qword [rbx+80]`;
  return c;
}

function m80Case(rng: Rng): OracleCase {
  // FLD m80 / FSTP m80 round trip of extended values representable in double, and FSTP m64 of them
  const c = baseCase(rng, controlWord(3, rng.int(4)), true);
  c.asm = `${PROLOGUE}fld qword [rbx+8]\nfstp tword [rbx+32]\nfld tword [rbx+32]\nfstp qword [rbx+64]\nfld tword [rbx+32]\nfstp tword [rbx+80]`;
  return c;
}

/** Zero the FXSAVE fields that legitimately differ: FOP/FIP/FCS/FDP/FDS and MXCSR_MASK. */
const FXSAVE_SCRUB = 'mov word [rbx+0x106], 0\nmov qword [rbx+0x108], 0\nmov qword [rbx+0x110], 0\nmov dword [rbx+0x11c], 0';

function fxsaveCase(rng: Rng): OracleCase {
  const c = baseCase(rng, controlWord(rng.pick([2, 3]), rng.int(4)), true);
  c.state.mxcsr = 0x1f80 | (rng.int(4) << 13) | (rng.u32() & 0x3f);
  const loads = ['fld qword [rbx+8]', 'fld qword [rbx+16]', 'fldpi', 'fld1', 'fadd st0, st1', 'fdiv st0, st2', 'fild dword [rbx+24]'];
  const n = rng.int(5);
  const body: string[] = [];
  for (let i = 0; i < n; i++) body.push(rng.pick(loads.slice(0, i === 0 ? 4 : loads.length)));
  if (rng.bool(0.5)) {
    // save, clobber, restore, save again: FXRSTOR must bring everything back
    body.push('fxsave [rbx+0x100]', 'fninit', 'pxor xmm3, xmm3', 'mov dword [rbx+0x200], 0x1f80', 'ldmxcsr [rbx+0x200]', 'fxrstor [rbx+0x100]');
  }
  body.push('fxsave [rbx+0x100]', FXSAVE_SCRUB);
  // FXSAVE stores empty physical registers too, whose contents FNINIT keeps: zero them first
  c.asm = `fninit\n${'fldz\n'.repeat(8)}${PROLOGUE}${body.join('\n')}`;
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: x87', () => {
  it('FXSAVE image (x87 stack, tags, status, MXCSR, XMM) and FXRSTOR round trip', () => {
    const r = fuzz('fxsave', N, fxsaveCase);
    expectClean(r);
  });
  it('arithmetic at double precision (PC=53), results as m64', () => {
    const r = fuzz('x87-pc53-m64', 2 * N, (rng) => arithCase(rng, 2, false));
    expectClean(r);
  });
  it('arithmetic at double precision (PC=53), results as m80', () => {
    const r = fuzz('x87-pc53-m80', 2 * N, (rng) => arithCase(rng, 2, true));
    expectClean(r);
  });
  it('arithmetic at extended precision (default PC=64), results as m64', () => {
    const r = fuzz('x87-pc64-m64', 2 * N, (rng) => arithCase(rng, 3, false));
    expectClean(r);
  });
  it('arithmetic at extended precision (default PC=64), results as m80', () => {
    const r = fuzz('x87-pc64-m80', N, (rng) => arithCase(rng, 3, true));
    expectClean(r);
  });
  it('FILD / FIST / FISTP in every rounding mode', () => {
    const r = fuzz('x87-int', 2 * N, intCase);
    expectClean(r);
  });
  it('FCOMI / FUCOMI / FCOMIP / FUCOMIP set ZF PF CF', () => {
    const r = fuzz('x87-fcomi', N, compareCase);
    expectClean(r);
  });
  it('status word (C0-C3, TOP, exception flags) after compares and arithmetic', () => {
    const r = fuzz('x87-fsw', N, statusCase);
    expectClean(r);
  });
  it('constants FLD1 FLDZ FLDPI FLDL2E FLDL2T FLDLG2 FLDLN2 as m80 and m64', () => {
    const r = fuzz('x87-const', 50, constCase);
    expectClean(r);
  });
  it('FLD/FSTP m80 round trip', () => {
    const r = fuzz('x87-m80', N, m80Case);
    expectClean(r);
  });
});
