/**
 * Oracle: SHL SHR SAR ROL ROR RCL RCR SHLD SHRD with counts 0..65 (immediate, 1 and CL forms),
 * register and memory destinations, every size. Flags the SDM leaves undefined for a given
 * masked count are compared separately (informative only).
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { memOperand, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, pick8Pair, pickReg, randomState, regName, type OracleCase, type Rng, type Size, SIZES, expectClean } from './oracle.js';

const N = 200;
const CF = 0x1;
const AF = 0x10;
const OF = 0x800;

function pickCount(rng: Rng, size: Size): number {
  if (rng.bool(0.4)) return rng.pick([0, 1, 2, size - 1, size, size + 1, 31, 32, 33, 63, 64, 65]);
  return rng.int(66);
}

function undefinedFlags(op: string, size: Size, count: number): number {
  const mc = count & (size === 64 ? 63 : 31);
  if (mc === 0) return 0;
  const ofUndef = mc !== 1 ? OF : 0;
  switch (op) {
    case 'shl':
    case 'shr':
      return AF | ofUndef | (mc >= size ? CF : 0);
    case 'sar':
      return AF | ofUndef;
    case 'shld':
    case 'shrd':
      return AF | ofUndef;
    default: // rol ror rcl rcr: only CF/OF are written
      return ofUndef;
  }
}

function shiftCase(rng: Rng, op: string, size: Size): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng) };
  let count = pickCount(rng, size);
  const double = op === 'shld' || op === 'shrd';
  if (double && size === 16) while ((count & 31) > 16) count = rng.int(66);
  c.undefFlags = undefinedFlags(op, size, count);
  for (let r = 0; r < 16; r++) if (r !== 4 && rng.bool(0.3)) c.state.gpr[r] = mixLow(c.state.gpr[r]!, rng.value(size), size);
  const useCl = rng.bool(0.4);
  const useOne = !useCl && count === 1 && rng.bool(0.5);
  if (useCl) c.state.gpr[1] = mixLow(c.state.gpr[1]!, BigInt(count), 8);
  const cnt = useCl ? 'cl' : useOne ? '1' : `${count}`;
  const toMem = rng.bool(0.3);
  let dst: string;
  let src = '';
  if (toMem) {
    dst = memOperand(rng, c, size);
    if (double) src = regName(size, pickReg(rng, [3]));
  } else if (size === 8) {
    dst = pick8Pair(rng)[0];
  } else {
    dst = regName(size, pickReg(rng));
    if (double) src = regName(size, pickReg(rng));
  }
  if (double && src === '') src = regName(size, pickReg(rng, [3]));
  c.asm = double ? `${op} ${dst}, ${src}, ${cnt}` : `${op} ${dst}, ${cnt}`;
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: shifts and rotates', () => {
  for (const op of ['shl', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr']) {
    for (const size of SIZES) {
      it(`${op} ${size}-bit`, () => {
        const r = fuzz(`${op}${size}`, N, (rng) => shiftCase(rng, op, size));
        expectClean(r);
      });
    }
  }
  for (const op of ['shld', 'shrd']) {
    for (const size of [16, 32, 64] as const) {
      it(`${op} ${size}-bit`, () => {
        const r = fuzz(`${op}${size}`, N, (rng) => shiftCase(rng, op, size));
        expectClean(r);
      });
    }
  }
});
