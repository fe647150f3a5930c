/**
 * Case generators shared by the oracle test files: operand forms for integer instructions
 * (register, memory through a relocated base register, immediate) of every size.
 */
import {
  GPR64, imm, pick8Pair, pickReg, randomState, regName, type OracleCase, type Rng, type Size, SIZE_PTR,
} from './oracle.js';

/** The register used as the data-buffer base in memory forms. */
export const BASE_REG = 3; // RBX

/**
 * A memory operand `[rbx+disp]` inside the data buffer; sets RBX (or `baseReg`) to a buffer
 * offset, which each world relocates to its buffer address.
 */
export function memOperand(rng: Rng, c: OracleCase, size: Size, spread = 0x200, baseReg = BASE_REG): string {
  const base = 0x400 + rng.int(0x400);
  const disp = rng.int(spread) - (spread >> 1);
  c.state.gpr[baseReg] = BigInt(base);
  c.ptrRegs = [...(c.ptrRegs ?? []), baseReg];
  if (rng.bool(0.5)) {
    // an interesting value at the operand (the rest of the buffer stays random)
    const v = rng.value(size);
    for (let k = 0; k < size / 8; k++) c.state.mem[base + disp + k] = Number((v >> BigInt(8 * k)) & 0xffn);
  }
  const d = disp < 0 ? `- ${-disp}` : `+ ${disp}`;
  return `${SIZE_PTR[size]} [${GPR64[baseReg]!} ${d}]`;
}

/** An immediate for `size` (64-bit: a sign-extended imm32), sometimes a small/sign-extendable byte. */
export function immFor(rng: Rng, size: Size): string {
  if (rng.bool(0.35)) {
    const v = rng.int(256) - 128;
    return v < 0 ? `-${-v}` : `${v}`;
  }
  if (size === 64) {
    const v = rng.value(32);
    return v >= 0x8000_0000n ? `-${0x1_0000_0000n - v}` : `${v}`;
  }
  return imm(rng.value(size));
}

export type BinForm = 'rr' | 'rm' | 'mr' | 'ri' | 'mi' | 'acc';

/**
 * A two-operand integer instruction `op dst, src` in a random form. `forms` limits the forms.
 * Returns the case (random state, operands set).
 */
export function binaryCase(rng: Rng, op: string, size: Size, forms: readonly BinForm[], opts: { lock?: boolean; undefFlags?: number } = {}): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: opts.undefFlags };
  const form = rng.pick(forms);
  const lock = opts.lock && (form === 'mr' || form === 'mi') && rng.bool(0.3) ? 'lock ' : '';
  const excl = form === 'rm' || form === 'mr' || form === 'mi' ? [3] : [];
  let a: string;
  let b: string;
  if (size === 8 && form === 'rr') {
    [a, b] = pick8Pair(rng);
  } else if (size === 8 && (form === 'rm' || form === 'mr')) {
    const [x] = pick8Pair(rng, excl);
    a = x;
    b = x;
  } else {
    a = regName(size, pickReg(rng, excl));
    b = regName(size, pickReg(rng, excl));
  }
  // seed interesting values into the operand registers (upper bits stay random)
  for (let r = 0; r < 16; r++) if (r !== 4 && rng.bool(0.3)) c.state.gpr[r] = mixLow(c.state.gpr[r]!, rng.value(size), size);
  switch (form) {
    case 'rr': c.asm = `${op} ${a}, ${b}`; break;
    case 'rm': c.asm = `${op} ${a}, ${memOperand(rng, c, size)}`; break;
    case 'mr': c.asm = `${lock}${op} ${memOperand(rng, c, size)}, ${b}`; break;
    case 'ri': c.asm = `${op} ${a}, ${immFor(rng, size)}`; break;
    case 'mi': c.asm = `${lock}${op} ${memOperand(rng, c, size)}, ${immFor(rng, size)}`; break;
    case 'acc': c.asm = `${op} ${regName(size, 0)}, ${immFor(rng, size)}`; break;
  }
  return c;
}

/** A one-operand instruction `op r/m` (register or memory). */
export function unaryCase(rng: Rng, op: string, size: Size, opts: { lock?: boolean; undefFlags?: number; memOk?: boolean } = {}): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: opts.undefFlags };
  for (let r = 0; r < 16; r++) if (r !== 4 && rng.bool(0.3)) c.state.gpr[r] = mixLow(c.state.gpr[r]!, rng.value(size), size);
  if ((opts.memOk ?? true) && rng.bool(0.35)) {
    const lock = opts.lock && rng.bool(0.3) ? 'lock ' : '';
    const m = memOperand(rng, c, size);
    c.asm = `${lock}${op} ${m}`;
  } else {
    const r = size === 8 ? pick8Pair(rng)[0] : regName(size, pickReg(rng));
    c.asm = `${op} ${r}`;
  }
  return c;
}

/** Replace the low `size` bits of `v` with `low`. */
export function mixLow(v: bigint, low: bigint, size: Size): bigint {
  const m = (1n << BigInt(size)) - 1n;
  return (v & ~m & ((1n << 64n) - 1n)) | (low & m);
}
