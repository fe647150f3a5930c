/**
 * Oracle: BT BTS BTR BTC (register and memory bases, register and immediate bit offsets,
 * including memory bit strings addressed outside the operand), BSF BSR, BSWAP, and POPCNT
 * LZCNT TZCNT when src/cpu/features.ts advertises them.
 */
import { describe, it } from 'vitest';
import { features } from '../../src/cpu/features.js';
import { nasmMissing } from './assemble.js';
import { BASE_REG, memOperand, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, pickReg, randomState, regName, type OracleCase, type Rng, type Size, expectClean } from './oracle.js';

const N = 200;
const CF = 0x1;
const PF = 0x4;
const AF = 0x10;
const ZF = 0x40;
const SF = 0x80;
const OF = 0x800;

function seeded(rng: Rng, size: Size): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng) };
  for (let r = 0; r < 16; r++) if (r !== 4 && rng.bool(0.3)) c.state.gpr[r] = mixLow(c.state.gpr[r]!, rng.value(size), size);
  return c;
}

function btCase(rng: Rng, op: string, size: Exclude<Size, 8>): OracleCase {
  // Intel leaves ZF unchanged, AMD documents it as undefined: treat it as undefined.
  const c = seeded(rng, size);
  c.undefFlags = OF | SF | AF | PF | ZF;
  const toMem = rng.bool(0.5);
  const lock = toMem && op !== 'bt' && rng.bool(0.3) ? 'lock ' : '';
  const dst = toMem ? memOperand(rng, c, size) : regName(size, pickReg(rng));
  if (rng.bool(0.5)) {
    c.asm = `${lock}${op} ${dst}, ${rng.int(256)}`;
  } else {
    const r = pickReg(rng, toMem ? [BASE_REG] : []);
    if (toMem) {
      // a signed bit offset reaching up to 512 bytes either side of the operand
      const off = BigInt(rng.int(8192) - 4096);
      c.state.gpr[r] = mixLow(c.state.gpr[r]!, BigInt.asUintN(size, off), size);
    } else if (rng.bool(0.5)) {
      c.state.gpr[r] = mixLow(c.state.gpr[r]!, BigInt(rng.int(256)), size);
    }
    c.asm = `${lock}${op} ${dst}, ${regName(size, r)}`;
  }
  return c;
}

function scanCase(rng: Rng, op: string, size: Exclude<Size, 8>, undefFlags: number): OracleCase {
  const c = seeded(rng, size);
  c.undefFlags = undefFlags;
  const d = pickReg(rng, [BASE_REG]);
  let srcVal = rng.value(size);
  if (rng.bool(0.3)) srcVal = 1n << BigInt(rng.int(size));
  if (rng.bool(0.1)) srcVal = 0n;
  let src: string;
  if (rng.bool(0.35)) {
    src = memOperand(rng, c, size);
    const m = /\[rbx ([+-]) (\d+)\]/.exec(src)!;
    const off = Number(c.state.gpr[BASE_REG]!) + (m[1] === '-' ? -1 : 1) * Number(m[2]);
    for (let k = 0; k < size / 8; k++) c.state.mem[off + k] = Number((srcVal >> BigInt(8 * k)) & 0xffn);
  } else {
    const s = pickReg(rng, [BASE_REG]);
    c.state.gpr[s] = mixLow(c.state.gpr[s]!, srcVal, size);
    src = regName(size, s);
  }
  // BSF/BSR of 0 leave the destination undefined (AMD: unchanged)
  if ((op === 'bsf' || op === 'bsr') && srcVal === 0n) c.undefRegs = [d];
  c.asm = `${op} ${regName(size, d)}, ${src}`;
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: bit instructions', () => {
  for (const op of ['bt', 'bts', 'btr', 'btc']) {
    for (const size of [16, 32, 64] as const) {
      it(`${op} ${size}-bit`, () => {
        const r = fuzz(`${op}${size}`, N, (rng) => btCase(rng, op, size));
        expectClean(r);
      });
    }
  }
  for (const op of ['bsf', 'bsr']) {
    for (const size of [16, 32, 64] as const) {
      it(`${op} ${size}-bit`, () => {
        const r = fuzz(`${op}${size}`, N, (rng) => scanCase(rng, op, size, CF | OF | SF | AF | PF));
        expectClean(r);
      });
    }
  }
  it('bswap r32 / r64', () => {
    const r = fuzz('bswap', N, (rng) => {
      const c = seeded(rng, 64);
      c.asm = `bswap ${regName(rng.pick([32, 64] as const), pickReg(rng))}`;
      return c;
    });
    expectClean(r);
  });
  it.skipIf(!features.popcnt)('popcnt (advertised)', () => {
    const r = fuzz('popcnt', N, (rng) => scanCase(rng, 'popcnt', rng.pick([16, 32, 64] as const), 0));
    expectClean(r);
  });
  it.skipIf(!features.lzcnt)('lzcnt (advertised)', () => {
    const r = fuzz('lzcnt', N, (rng) => scanCase(rng, 'lzcnt', rng.pick([16, 32, 64] as const), OF | SF | AF | PF));
    expectClean(r);
  });
  it.skipIf(!features.bmi1)('tzcnt (advertised)', () => {
    const r = fuzz('tzcnt', N, (rng) => scanCase(rng, 'tzcnt', rng.pick([16, 32, 64] as const), OF | SF | AF | PF));
    expectClean(r);
  });
});
