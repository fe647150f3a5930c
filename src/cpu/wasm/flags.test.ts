import { describe, expect, it } from 'vitest';
import { rng } from '../../../tests/support/rng.js';
import { F_ADD, F_DEC, F_EAGER, F_INC, F_LOGIC, F_SUB } from '../core/consts.js';
import { LazyFlags } from '../core/flags.js';
import { A_FA, A_FB, A_FCIN, A_FKIND, A_FRES, A_FSZ } from './arena.js';
import { assembleModule, T } from './encoder.js';
import { arithFlagsBody } from './flags.js';

describe("the runtime's arithmetic flags (translated code's lazy-flag record, read in wasm)", () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  let hostCalls = 0;
  const host = { module: 'h', name: 'flags', params: [], results: [T.I32] };
  const bytes = assembleModule([host], [arithFlagsBody(0, 0)], { flags: 1 }, []);
  const flags = new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { m: memory }, h: { flags: () => (hostCalls++, 0x5a5) } }).exports.flags as () => number;
  const i32 = new Int32Array(memory.buffer);
  const u64 = new BigUint64Array(memory.buffer);
  const rand = rng(0xf1a95);
  const r64 = (): bigint => (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
  /** An operand of `sz` bytes, often at the edges (0, 1, the sign bit, all ones). */
  const operand = (sz: number): bigint => {
    const bits = BigInt(sz * 8);
    const m = (1n << bits) - 1n;
    const edges = [0n, 1n, m, 1n << (bits - 1n), (1n << (bits - 1n)) - 1n];
    return rand() < 0.3 ? edges[Math.floor(rand() * edges.length)]! : r64() & m;
  };

  it('agree with the interpreter\'s flags for every kind and size of record', () => {
    const lazy = new LazyFlags();
    for (let i = 0; i < 40_000; i++) {
      const kind = [F_ADD, F_SUB, F_LOGIC, F_INC, F_DEC][i % 5]!;
      const sz = [1, 2, 4, 8][(i >> 3) & 3]!;
      const m = (1n << BigInt(sz * 8)) - 1n;
      const a = operand(sz);
      const b = kind === F_INC || kind === F_DEC ? 1n : operand(sz);
      const cin = rand() < 0.5 ? 1 : 0;
      const carry = kind === F_ADD || kind === F_SUB ? BigInt(cin) : 0n;
      const r = kind === F_ADD || kind === F_INC ? (a + b + carry) & m : kind === F_LOGIC ? (a & b) : (a - b - carry) & m;
      // the record as translated code stores it
      i32[A_FKIND >> 2] = kind;
      i32[A_FSZ >> 2] = sz;
      i32[A_FCIN >> 2] = cin;
      u64[A_FA >> 3] = a;
      u64[A_FB >> 3] = b;
      u64[A_FRES >> 3] = r;
      // and as the interpreter keeps it
      Object.assign(lazy, {
        fOp: kind, fSz: sz, fCin: cin,
        fA: Number(a & 0xffffffffn), fAHi: Number(a >> 32n), fB: Number(b & 0xffffffffn), fBHi: Number(b >> 32n), fRes: Number(r & 0xffffffffn), fResHi: Number(r >> 32n),
      });
      const want = lazy.getArith();
      const got = flags();
      if (got !== want) expect({ kind, sz, a, b, cin, r, got: got.toString(16) }).toEqual({ kind, sz, a, b, cin, r, got: want.toString(16) });
    }
    expect(hostCalls).toBe(0);
  });

  it('read eager flags as they are, and ask the host for a record it holds (kind -1)', () => {
    i32[A_FKIND >> 2] = F_EAGER;
    u64[A_FA >> 3] = 0x8d5n;
    expect(flags()).toBe(0x8d5);
    i32[A_FKIND >> 2] = -1;
    expect(flags()).toBe(0x5a5);
    expect(hostCalls).toBe(1);
  });
});
