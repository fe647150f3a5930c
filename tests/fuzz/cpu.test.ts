/**
 * The software CPU runs hostile code: random instruction bytes in 64-bit, 32-bit and real mode,
 * interpreted and translated. Whatever the bytes do (fault, rewrite the IDT or page tables,
 * loop, triple-fault), `run()` must return normally: guest errors become guest exceptions or
 * a shutdown, never a host exception.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../support/rng.js';
import { createTestMachine, enterLongMode, enterProtected32, enterReal, CODE_BASE } from '../../src/cpu/core/test-machine.js';
import { simdUnit } from '../../src/cpu/fpu/index.js';

const CASES = Number(process.env['FUZZ_ITERATIONS'] ?? 400);

const modes = ['long', 'protected32', 'real'] as const;

describe.each(modes)('random code in %s mode', (mode) => {
  it.each([Infinity, 8, 1])(`${CASES} programs run without a host exception (JIT threshold %s)`, (threshold) => {
    let faults = 0;
    for (let i = 0; i < CASES; i++) {
      const rand = rng(0x51ed270b ^ (i * 0x9e3779b1) ^ mode.length ^ (threshold === Infinity ? 0x100 : threshold));
      const t = createTestMachine({ ramBytes: 4 * 1024 * 1024, simd: simdUnit, jitThreshold: threshold });
      const code = new Uint8Array(256);
      for (let b = 0; b < code.length; b++) code[b] = Math.floor(rand() * 256);
      if (mode === 'real') {
        enterReal(t, 0x1000, 0);
        t.memory.writeBytes(0x10000, code);
      } else {
        if (mode === 'long') enterLongMode(t);
        else enterProtected32(t);
        t.memory.writeBytes(CODE_BASE, code);
      }
      // random register contents, so memory operands land anywhere (inside RAM or not)
      for (let r = 0; r < 32; r++) t.cpu.s.gpr[r] = Math.floor(rand() * 2 ** 32) | 0;
      t.cpu.s.gpr[8] = 0x70000; // keep RSP sane for a while
      t.cpu.s.gpr[9] = 0;
      try {
        for (let k = 0; k < 20 && !t.cpu.s.halted && t.cpu.shutdown === undefined; k++) t.cpu.run(500);
      } catch (e) {
        throw new Error(`${mode} case ${i}: host exception ${(e as Error).name}: ${(e as Error).message}\ncode: ${Buffer.from(code).toString('hex')}`, { cause: e });
      }
      if (t.cpu.s.halted || t.cpu.shutdown !== undefined) faults++;
    }
    expect(faults).toBeGreaterThan(0); // random bytes do fault
  });
});
