/**
 * Oracle: random straight-line sequences of flag-producing and flag-consuming instructions
 * (ADD ADC SUB SBB CMP INC DEC NEG AND OR XOR TEST, shifts and rotates by 1, SETcc, CMOVcc,
 * CLC STC CMC), register operands of mixed sizes — the interplay of lazily computed flags
 * (INC/DEC keeping CF, ADC after a logic op, a SETcc after a shift...). The same sequences
 * also run inside a 300-iteration loop, which exercises hot-block translation once the engine
 * has it. AF is left out of the final comparison (logic ops and shifts leave it undefined).
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { nativeSupported } from './native.js';
import { expectClean, fuzz, pickReg, randomState, regName, type OracleCase, type Rng, type Size } from './oracle.js';

const AF = 0x10;
const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];
const LOOP_REG = 15; // R15 counts loop iterations: never an operand

function operand(rng: Rng, size: Size): string {
  return regName(size, pickReg(rng, [LOOP_REG]));
}

function instruction(rng: Rng): string {
  const size = rng.pick([8, 16, 32, 64, 32, 64] as const);
  const k = rng.int(10);
  if (k < 4) {
    const op = rng.pick(['add', 'adc', 'sub', 'sbb', 'cmp', 'and', 'or', 'xor', 'test']);
    const src = rng.bool(0.3) ? `${rng.int(256) - 128}` : operand(rng, size);
    return `${op} ${operand(rng, size)}, ${src}`;
  }
  if (k < 6) return `${rng.pick(['inc', 'dec', 'neg', 'not'])} ${operand(rng, size)}`;
  if (k === 6) return `${rng.pick(['shl', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr'])} ${operand(rng, size)}, 1`;
  if (k === 7) return `set${rng.pick(CONDITIONS)} ${operand(rng, 8)}`;
  if (k === 8) {
    const s = rng.pick([16, 32, 64] as const);
    return `cmov${rng.pick(CONDITIONS)} ${operand(rng, s)}, ${operand(rng, s)}`;
  }
  return rng.pick(['clc', 'stc', 'cmc']);
}

function sequence(rng: Rng, loop: boolean): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: AF };
  const n = 3 + rng.int(6);
  const body: string[] = [];
  for (let i = 0; i < n; i++) body.push(instruction(rng));
  if (loop) {
    // PUSHF/POPF around the counter: the body's flags flow into its next iteration
    c.asm = `mov r15d, 300\n.top:\n${body.join('\n')}\npushfq\ndec r15\njz .done\npopfq\njmp .top\n.done:\npopfq`;
  } else {
    c.asm = body.join('\n');
  }
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: instruction sequences', () => {
  it('straight-line sequences of 3-8 flag producers and consumers', () => {
    expectClean(fuzz('seq', 400, (rng) => sequence(rng, false)));
  });
  it('the same kind of sequences run 300 times in a loop', () => {
    expectClean(fuzz('seq-loop', 60, (rng) => sequence(rng, true)));
  });
});
