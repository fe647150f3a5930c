/**
 * Oracle: ADD ADC SUB SBB AND OR XOR CMP TEST INC DEC NEG NOT in every size and operand form,
 * against the host CPU.
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { binaryCase, type BinForm, unaryCase } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, SIZES, expectClean } from './oracle.js';

const N = 150;
const AF = 0x10;
const ALL_FORMS: readonly BinForm[] = ['rr', 'rm', 'mr', 'ri', 'mi', 'acc'];

describe.skipIf(nasmMissing || !nativeSupported)('oracle: integer ALU', () => {
  for (const op of ['add', 'adc', 'sub', 'sbb', 'and', 'or', 'xor', 'cmp']) {
    const logic = op === 'and' || op === 'or' || op === 'xor';
    for (const size of SIZES) {
      it(`${op} ${size}-bit`, () => {
        const r = fuzz(`${op}${size}`, N, (rng) =>
          binaryCase(rng, op, size, ALL_FORMS, { lock: op !== 'cmp', undefFlags: logic ? AF : 0 }),
        );
        expectClean(r);
      });
    }
  }

  for (const size of SIZES) {
    it(`test ${size}-bit`, () => {
      const r = fuzz(`test${size}`, N, (rng) => binaryCase(rng, 'test', size, ['rr', 'mr', 'ri', 'mi', 'acc'], { undefFlags: AF }));
      expectClean(r);
    });
  }

  for (const op of ['inc', 'dec', 'neg', 'not']) {
    for (const size of SIZES) {
      it(`${op} ${size}-bit`, () => {
        const r = fuzz(`${op}${size}`, N, (rng) => unaryCase(rng, op, size, { lock: true }));
        expectClean(r);
      });
    }
  }
});
