/**
 * Oracle: MUL, IMUL (one-, two- and three-operand), DIV, IDIV in every size, register and memory
 * operands. Divisions draw operands that cannot raise #DE (the host would kill the process);
 * #DE itself is covered by the emulator-only directed tests in system.test.ts.
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { BASE_REG, immFor, memOperand, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import {
  fuzz, GPR8, GPR8_HIGH, pickReg, randomState, regName, type OracleCase, type Rng, type Size, SIZES, expectClean,
} from './oracle.js';

const N = 200;
const SZAP = 0x80 | 0x40 | 0x10 | 0x4;
const ALL_ARITH = 0x8d5;

/** Write `v` (little endian, size bits) at buffer offset `off`. */
function putMem(c: OracleCase, off: number, v: bigint, size: Size): void {
  for (let k = 0; k < size / 8; k++) c.state.mem[off + k] = Number((v >> BigInt(8 * k)) & 0xffn);
}

/** The buffer offset of the `[rbx +- d]` operand in `operand` (RBX already set). */
function memOffset(c: OracleCase, operand: string): number {
  const m = /\[rbx ([+-]) (\d+)\]/.exec(operand);
  if (!m) throw new Error(`not a memory operand: ${operand}`);
  return Number(c.state.gpr[BASE_REG]!) + (m[1] === '-' ? -1 : 1) * Number(m[2]);
}

/** A register (not RAX/RDX, which hold the implicit operands) or memory operand for the source. */
function rmOperand(rng: Rng, c: OracleCase, size: Size, value: bigint): string {
  if (rng.bool(0.35)) {
    const op = memOperand(rng, c, size);
    putMem(c, memOffset(c, op), value, size);
    return op;
  }
  const r = pickReg(rng, [0, 2, 3]);
  c.state.gpr[r] = mixLow(c.state.gpr[r]!, value, size);
  if (size === 8 && r === 1 && rng.bool(0.3)) {
    // CH as the operand: the value goes into bits 8..15 of RCX
    c.state.gpr[1] = (c.state.gpr[1]! & ~0xff00n) | ((value & 0xffn) << 8n);
    return GPR8_HIGH[1];
  }
  return size === 8 ? GPR8[r]! : regName(size, r);
}

function mulCase(rng: Rng, op: 'mul' | 'imul', size: Size): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: SZAP };
  c.state.gpr[0] = mixLow(c.state.gpr[0]!, rng.value(size), size);
  c.asm = `${op} ${rmOperand(rng, c, size, rng.value(size))}`;
  return c;
}

function imulMultiCase(rng: Rng, size: Exclude<Size, 8>): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: SZAP };
  const dst = pickReg(rng, [3]);
  c.state.gpr[dst] = mixLow(c.state.gpr[dst]!, rng.value(size), size);
  const src = rmOperand(rng, c, size, rng.value(size));
  c.asm = rng.bool(0.5) ? `imul ${regName(size, dst)}, ${src}` : `imul ${regName(size, dst)}, ${src}, ${immFor(rng, size)}`;
  return c;
}

const toSigned = (v: bigint, bits: number): bigint => BigInt.asIntN(bits, v);
const toUnsigned = (v: bigint, bits: number): bigint => BigInt.asUintN(bits, v);

function divCase(rng: Rng, op: 'div' | 'idiv', size: Size): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: ALL_ARITH };
  const bits = BigInt(size);
  let divisor = 0n;
  let dividend = 0n; // 2*size bits, as the instruction sees it
  for (;;) {
    divisor = rng.value(size);
    if (rng.bool(0.3)) divisor = BigInt(rng.int(20)) & ((1n << bits) - 1n);
    if (divisor === 0n) continue;
    if (op === 'div') {
      const hi = rng.bool(0.3) ? 0n : toUnsigned(rng.u64(), size) % divisor;
      dividend = (hi << bits) | rng.value(size);
      break;
    }
    const d = toSigned(divisor, size);
    const qmax = 1n << (bits - 1n);
    const q = rng.bool(0.2) ? rng.pick([qmax - 1n, -qmax, 0n, 1n, -1n]) : toSigned(rng.u64(), size) % qmax;
    const absD = d < 0n ? -d : d;
    const rAbs = toUnsigned(rng.u64(), 64) % absD;
    const prod = q * d;
    const sign = prod > 0n ? 1n : prod < 0n ? -1n : rng.bool() ? 1n : -1n;
    const n = prod + sign * rAbs;
    // check the quotient the CPU computes (truncating) fits
    const quot = n / d;
    if (quot < -qmax || quot >= qmax) continue;
    dividend = toUnsigned(n, 2 * size);
    break;
  }
  if (size === 8) {
    c.state.gpr[0] = mixLow(c.state.gpr[0]!, dividend, 16);
  } else {
    c.state.gpr[0] = mixLow(c.state.gpr[0]!, dividend & ((1n << bits) - 1n), size);
    c.state.gpr[2] = mixLow(c.state.gpr[2]!, dividend >> bits, size);
  }
  let src: string;
  if (rng.bool(0.35)) {
    src = memOperand(rng, c, size);
    putMem(c, memOffset(c, src), divisor, size);
  } else {
    const r = pickReg(rng, [0, 2, 3]);
    c.state.gpr[r] = mixLow(c.state.gpr[r]!, divisor, size);
    src = size === 8 ? GPR8[r]! : regName(size, r);
  }
  c.asm = `${op} ${src}`;
  return c;
}

/** Put the divisor in a register (not RAX/RDX) or a memory operand: the operand text. */
function divisorOperand(rng: Rng, c: OracleCase, size: Size, divisor: bigint): string {
  if (rng.bool(0.35)) {
    const src = memOperand(rng, c, size);
    putMem(c, memOffset(c, src), divisor, size);
    return src;
  }
  const r = pickReg(rng, [0, 2, 3]);
  c.state.gpr[r] = mixLow(c.state.gpr[r]!, divisor, size);
  return size === 8 ? GPR8[r]! : regName(size, r);
}

/**
 * DIV/IDIV r/m64 with RDX != 0, the multi-precision pattern (the kernel's mpihelp_divrem runs
 * udiv_qrnnd this way): divisors of every width, often normalized (bit 63 set), quotients and
 * remainders at the ends of their ranges. Never #DE: RDX < d for DIV, a quotient that fits for IDIV.
 */
function div64Case(rng: Rng, op: 'div' | 'idiv'): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: ALL_ARITH };
  const M64 = (1n << 64n) - 1n;
  let d = 0n;
  while (d === 0n) {
    switch (rng.int(5)) {
      case 0: d = rng.u64() | (1n << 63n); break;
      case 1: d = BigInt(rng.u32()); break;
      case 2: d = rng.u64() >> BigInt(rng.int(64)); break;
      case 3: d = rng.pick([1n, 3n, 0xffff_ffffn, 1n << 32n, (1n << 32n) + 1n, 1n << 63n, (1n << 63n) + 1n, M64 - 1n, M64]); break;
      default: d = rng.u64();
    }
  }
  let n: bigint; // RDX:RAX, 128-bit two's complement
  if (op === 'div') {
    const q = rng.bool(0.2) ? M64 - BigInt(rng.int(3)) : rng.u64() >> BigInt(rng.int(64));
    const r = rng.bool(0.2) ? d - 1n : rng.u64() % d;
    n = rng.bool(0.5) ? ((rng.u64() % d) << 64n) | rng.u64() : q * d + r; // RDX < d: the quotient fits
  } else {
    const sd = toSigned(d, 64);
    const absD = sd < 0n ? -sd : sd;
    const qmax = 1n << 63n;
    const q = rng.bool(0.2) ? rng.pick([qmax - 1n, -qmax, qmax - 2n, -qmax + 1n]) : toSigned(rng.u64(), 64) >> BigInt(rng.int(64));
    const r = rng.bool(0.2) ? absD - 1n : rng.u64() % absD;
    const prod = q * sd;
    const neg = prod < 0n || (prod === 0n && rng.bool());
    n = prod + (neg ? -r : r); // |r| < |d| with the dividend's sign: the truncated quotient is q
  }
  n = toUnsigned(n, 128);
  c.state.gpr[0] = n & M64;
  c.state.gpr[2] = n >> 64n;
  c.asm = `${op} ${divisorOperand(rng, c, 64, d)}`;
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: multiply and divide', () => {
  for (const op of ['mul', 'imul'] as const) {
    for (const size of SIZES) {
      it(`${op} r/m${size} (one operand)`, () => {
        const r = fuzz(`${op}1-${size}`, N, (rng) => mulCase(rng, op, size));
        expectClean(r);
      });
    }
  }
  for (const size of [16, 32, 64] as const) {
    it(`imul r${size}, r/m${size} [, imm] (two and three operands)`, () => {
      const r = fuzz(`imul23-${size}`, N, (rng) => imulMultiCase(rng, size));
      expectClean(r);
    });
  }
  for (const op of ['div', 'idiv'] as const) {
    for (const size of SIZES) {
      it(`${op} r/m${size}`, () => {
        const r = fuzz(`${op}-${size}`, N, (rng) => divCase(rng, op, size));
        expectClean(r);
      });
    }
    it(`${op} r/m64 with RDX != 0 (multi-precision operands)`, () => {
      const r = fuzz(`${op}-64-wide`, 2 * N, (rng) => div64Case(rng, op));
      expectClean(r);
    });
  }
});
