import { describe, expect, it } from 'vitest';
import { rng } from '../../../tests/support/rng.js';
import { assembleModule, T } from './encoder.js';
import { div128Body } from './translate.js';
import { A_SCRATCH } from './arena.js';

describe('wasm 128/64-bit division (the runtime of translated DIV)', () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const sig = { params: [T.I64, T.I64, T.I64], results: [T.I64] };
  const bytes = assembleModule([], [div128Body(0)], { div: 0 }, [sig]);
  const div = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { m: memory } }).exports.div as (hi: bigint, lo: bigint, d: bigint) => bigint;
  const scratch = new BigUint64Array(memory.buffer, A_SCRATCH, 1);
  const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);
  const i64 = (x: bigint): bigint => BigInt.asIntN(64, x);

  it('matches BigInt division for random operands with hi < d', () => {
    const rand = rng(0x5eed128);
    const r64 = (): bigint => (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
    for (let i = 0; i < 20000; i++) {
      let d = r64();
      // divisors of every width, so the normalising shift takes all values
      d >>= BigInt(Math.floor(rand() * 64));
      if (d === 0n) d = 1n;
      const hi = d === 1n ? 0n : r64() % d;
      const lo = r64();
      const n = (hi << 64n) | lo;
      const q = u64(div(i64(hi), i64(lo), i64(d)));
      expect(q).toBe(n / d);
      expect(scratch[0]).toBe(n % d);
    }
  });

  it('handles the corner cases of the quotient digit correction', () => {
    const cases: [bigint, bigint, bigint][] = [
      [0n, 0n, 1n],
      [0xfffffffffffffffen, 0xffffffffffffffffn, 0xffffffffffffffffn],
      [0x7fffffffffffffffn, 0xffffffffffffffffn, 0x8000000000000000n],
      [0x80000000n, 0n, 0x80000001n],
      [0xffffffffn, 0xffffffff00000000n, 0x100000000n],
      [1n, 0n, 2n],
    ];
    for (const [hi, lo, d] of cases) {
      const n = (hi << 64n) | lo;
      expect(u64(div(i64(hi), i64(lo), i64(d)))).toBe(n / d);
      expect(scratch[0]).toBe(n % d);
    }
  });
});
