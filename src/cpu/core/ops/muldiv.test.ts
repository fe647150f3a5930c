/**
 * 64-bit DIV / IDIV (F7 /6, /7 with REX.W: RDX:RAX by r/m64) against a BigInt reference: the pure
 * Number-only helpers (udiv128by64, idiv128by64) on many random and boundary operands, then the
 * instructions themselves through the interpreter and through translated blocks.
 */
import { describe, it, expect } from 'vitest';
import { DQ, idiv128by64, udiv128by64 } from './muldiv.js';
import { createTestMachine, enterLongMode, CODE_BASE, STACK_TOP, HANDLER_MARK, type TestMachine } from '../test-machine.js';
import { rng } from '../../../../tests/support/rng.js';

const M64 = (1n << 64n) - 1n;
const M128 = (1n << 128n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** A seeded source of operands biased towards the edges the division has to get right. */
class Gen {
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  u32(): bigint {
    return BigInt(Math.floor(this.r() * 2 ** 32));
  }
  u64(): bigint {
    return (this.u32() << 32n) | this.u32();
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** Uniform in [0, n) (n > 0), up to 128 bits. */
  below(n: bigint): bigint {
    const v = (this.u64() << 64n) | this.u64();
    return v % n;
  }
  /** A nonzero unsigned 64-bit divisor from several classes. */
  divisor(): bigint {
    for (;;) {
      let d: bigint;
      switch (this.int(9)) {
        case 0: d = this.u32(); break; // dh = 0
        case 1: d = BigInt(1 + this.int(20)); break; // tiny
        case 2: d = this.u64() | (1n << 63n); break; // normalized (mpihelp's udiv_qrnnd)
        case 3: d = this.pick([1n, 2n, 3n, 0xffff_ffffn, 1n << 32n, (1n << 32n) + 1n, 1n << 63n, M64, M64 - 1n, (1n << 63n) + 1n]); break;
        case 4: d = (this.u32() << 32n) >> BigInt(this.int(32)); break; // any bit length around 32..64
        case 5: d = (1n << 32n) | this.u32(); break; // dh = 1
        case 6: d = (this.u32() << 32n) | this.pick([0n, 1n, 0xffff_ffffn]); break;
        default: d = this.u64() >> BigInt(this.int(64)); break;
      }
      if (d !== 0n) return d;
    }
  }
  /** An unsigned 64-bit quotient, often near the ends of the range. */
  quotient(): bigint {
    switch (this.int(5)) {
      case 0: return this.pick([0n, 1n, M64, M64 - 1n, 1n << 63n, (1n << 63n) - 1n, 0xffff_ffffn, 1n << 32n]);
      case 1: return M64 - BigInt(this.int(1000));
      case 2: return this.u64() >> BigInt(this.int(64));
      default: return this.u64();
    }
  }
  /** A remainder below d, often 0 or d - 1. */
  remainder(d: bigint): bigint {
    switch (this.int(4)) {
      case 0: return 0n;
      case 1: return d - 1n;
      default: return this.below(d);
    }
  }
  /** An unsigned dividend for divisor d whose quotient fits in 64 bits. */
  dividend(d: bigint): bigint {
    if (this.int(3) === 0) return (this.below(d) << 64n) | this.pick([0n, M64, this.u64()]);
    return this.quotient() * d + this.remainder(d);
  }
  /**
   * A signed 128-bit dividend for the signed divisor d (!= 0): q * d +- r with a truncated
   * quotient q mostly in the int64 range (sometimes just outside) and |r| < |d| taking n's sign.
   */
  signedDividend(d: bigint): bigint {
    for (;;) {
      let q = BigInt.asIntN(64, this.quotient());
      if (this.int(8) === 0) q = this.pick([I64_MIN, I64_MAX, I64_MAX + 1n, I64_MIN - 1n, 0n, -1n, 1n]);
      const r = this.remainder(d < 0n ? -d : d);
      const prod = q * d;
      const neg = prod < 0n || (prod === 0n && this.int(2) === 0);
      const n = prod + (neg ? -r : r);
      if (n >= -(1n << 127n) && n < 1n << 127n) return n;
    }
  }
}

const lo32 = (v: bigint): number => Number(v & 0xffff_ffffn);
const hi32 = (v: bigint): number => Number((v >> 32n) & 0xffff_ffffn);
/** Limbs as the CPU holds them: int32 (signed) views, as in the Int32Array register file. */
const s32 = (v: number): number => v | 0;

/** DQ as (quotient, remainder), or undefined if a word is not an unsigned 32-bit integer. */
function dq(): { q: bigint; r: bigint } | undefined {
  for (const w of DQ) if (!(Number.isInteger(w) && w >= 0 && w < 2 ** 32)) return undefined;
  const q = (BigInt(DQ[1]!) << 32n) | BigInt(DQ[0]!);
  const r = (BigInt(DQ[3]!) << 32n) | BigInt(DQ[2]!);
  return { q, r };
}

/** Compare only on the slow path: expect() per check would dominate the run time. */
function check(what: string, ok: boolean, fits: boolean, q: bigint, r: bigint): void {
  if (ok === fits && (!fits || (() => { const g = dq(); return g !== undefined && g.q === q && g.r === r; })())) return;
  expect({ ok, dq: Array.from(DQ) }, what).toEqual({ ok: fits, q, r });
}

function udiv(n: bigint, d: bigint): boolean {
  const nl = n & M64;
  const nh = n >> 64n;
  return udiv128by64(s32(lo32(nl)), s32(hi32(nl)), s32(lo32(nh)), s32(hi32(nh)), s32(lo32(d)), s32(hi32(d)));
}

function checkUdiv(n: bigint, d: bigint): void {
  const ok = udiv(n, d);
  const fits = d !== 0n && n >> 64n < d;
  check(`${n} / ${d}`, ok, fits, fits ? n / d : 0n, fits ? n % d : 0n);
}

/** n: signed 128-bit, d: signed 64-bit (BigInt values); DQ holds the two's-complement results. */
function checkIdiv(n: bigint, d: bigint): void {
  const nu = n & M128;
  const du = d & M64;
  const ok = idiv128by64(
    lo32(nu), hi32(nu), s32(lo32(nu >> 64n)), hi32(nu >> 64n), s32(lo32(du)), s32(hi32(du)),
  );
  const q = d === 0n ? 0n : n / d;
  const fits = d !== 0n && q >= I64_MIN && q <= I64_MAX;
  check(`${n} / ${d}`, ok, fits, fits ? q & M64 : 0n, fits ? (n % d) & M64 : 0n);
}

describe('udiv128by64 (DIV r/m64) against BigInt', () => {
  it('random divisors of every class, quotients and remainders at the edges', () => {
    const g = new Gen(0x5eed_0001);
    for (let i = 0; i < 100_000; i++) {
      const d = g.divisor();
      checkUdiv(g.dividend(d), d);
    }
  });

  it('32-bit divisors (dh = 0), with RDX = 0 and RDX != 0', () => {
    const g = new Gen(0x5eed_0002);
    for (let i = 0; i < 20_000; i++) {
      const d = g.u32() || 1n;
      const n = i & 1 ? g.u64() : (g.below(d) << 64n) | g.u64();
      checkUdiv(n, d);
    }
  });

  it('normalized divisors with RDX != 0 (the kernel\'s udiv_qrnnd)', () => {
    const g = new Gen(0x5eed_0003);
    for (let i = 0; i < 50_000; i++) {
      const d = g.u64() | (1n << 63n);
      const n = (g.below(d) << 64n) | g.u64();
      checkUdiv(n, d);
    }
  });

  it('boundary operands', () => {
    const ds = [1n, 2n, 3n, 7n, 0xffff_ffffn, 1n << 32n, (1n << 32n) + 1n, (1n << 33n) - 1n, 1n << 52n, (1n << 53n) + 1n,
      (1n << 63n) - 1n, 1n << 63n, (1n << 63n) + 1n, M64 - 1n, M64, 0xffff_ffff_0000_0000n, 0x8000_0000_ffff_ffffn];
    for (const d of ds) {
      for (const q of [0n, 1n, 2n, 0xffff_ffffn, 1n << 32n, (1n << 63n) - 1n, 1n << 63n, M64 - 1n, M64]) {
        for (const r of [0n, 1n, d - 1n, d >> 1n]) {
          if (r < d) checkUdiv(q * d + r, d);
        }
      }
      // the largest dividend that does not overflow, and the smallest that does
      checkUdiv((d << 64n) - 1n, d);
      checkUdiv(d << 64n, d);
    }
  });

  it('#DE: divide by zero and quotient >= 2^64', () => {
    const g = new Gen(0x5eed_0004);
    expect(udiv(0n, 0n)).toBe(false);
    expect(udiv(5n, 0n)).toBe(false);
    expect(udiv(M128, 0n)).toBe(false);
    expect(udiv(1n << 64n, 1n)).toBe(false);
    expect(udiv(M128, M64)).toBe(false);
    for (let i = 0; i < 5_000; i++) {
      const d = g.divisor();
      const nh = d + g.below((1n << 64n) - d + 1n); // RDX >= d
      if (nh > M64) continue;
      checkUdiv((nh << 64n) | g.u64(), d);
    }
  });
});

describe('idiv128by64 (IDIV r/m64) against BigInt', () => {
  it('random operands with every sign combination', () => {
    const g = new Gen(0x5eed_0011);
    for (let i = 0; i < 100_000; i++) {
      const du = g.divisor();
      const d = i & 1 ? BigInt.asIntN(64, du) : du >> 1n || 1n;
      const n = g.signedDividend(d);
      // now and then the same |n| with the other sign (|r| then may not take n's sign in the construction)
      checkIdiv(g.int(4) === 0 && n !== -(1n << 127n) ? -n : n, d);
    }
  });

  it('boundary operands', () => {
    const ds = [1n, -1n, 2n, -2n, 3n, -3n, 0x7fff_ffffn, -0x8000_0000n, 0xffff_ffffn, -0xffff_ffffn, 1n << 32n, -(1n << 32n),
      I64_MAX, I64_MIN, I64_MIN + 1n, 1n << 62n, -(1n << 62n)];
    const ns = [0n, 1n, -1n, I64_MAX, I64_MIN, 1n << 64n, -(1n << 64n), (1n << 126n), -(1n << 127n), (1n << 127n) - 1n,
      I64_MAX * 3n + 2n, I64_MIN * 3n - 2n, (I64_MAX + 1n) * 7n - 1n, I64_MIN * 7n];
    for (const d of ds) {
      for (const n of ns) checkIdiv(n, d);
      for (const q of [I64_MIN, I64_MIN + 1n, -1n, 0n, 1n, I64_MAX - 1n, I64_MAX, I64_MAX + 1n]) {
        const absD = d < 0n ? -d : d;
        for (const r of [0n, absD - 1n]) {
          for (const sign of [1n, -1n]) {
            const n = q * d + sign * r;
            if (n >= -(1n << 127n) && n < 1n << 127n) checkIdiv(n, d);
          }
        }
      }
    }
  });

  it('#DE: -2^63 / -1, -2^127 / anything, divide by zero', () => {
    checkIdiv(I64_MIN, -1n);
    expect(idiv128by64(0, 0x8000_0000, -1, -1, -1, -1)).toBe(false);
    expect(idiv128by64(0, 0x8000_0000, -1, -1, 1, 0)).toBe(true); // -2^63 / 1 fits
    checkIdiv(-(1n << 127n), I64_MIN);
    checkIdiv(-(1n << 127n), -1n);
    checkIdiv(1n << 63n, 1n); // 2^63 does not fit
    checkIdiv(1n << 63n, -1n); // -2^63 does
    checkIdiv(-(1n << 63n) * I64_MIN, I64_MIN); // 2^63
    checkIdiv((1n << 63n) * I64_MIN, I64_MIN); // -2^63
    expect(idiv128by64(5, 0, 0, 0, 0, 0)).toBe(false);
    expect(idiv128by64(0, 0, 0, 0, 0, 0)).toBe(false);
    expect(idiv128by64(-5, -1, -1, -1, 0, 0)).toBe(false);
  });
});

// ---- the instructions --------------------------------------------------------------------------

const RAX = 0, RCX = 1, RDX = 2, RBX = 3;
const DATA = 0x200000; // a qword operand for the memory forms
/** Each form followed by HLT, each at its own address (CODE_BASE + 16 * index), written once. */
const CODE: Record<string, number[]> = {
  'div rcx': [0x48, 0xf7, 0xf1, 0xf4],
  'idiv rcx': [0x48, 0xf7, 0xf9, 0xf4],
  'div qword [rbx]': [0x48, 0xf7, 0x33, 0xf4],
  'idiv qword [rbx]': [0x48, 0xf7, 0x3b, 0xf4],
};

function machine(jitThreshold: number): TestMachine {
  const t = createTestMachine({ ramBytes: 4 * 1024 * 1024, jitThreshold });
  enterLongMode(t);
  Object.values(CODE).forEach((bytes, i) => t.memory.writeBytes(CODE_BASE + 16 * i, Uint8Array.from(bytes)));
  return t;
}

const codeAddr = (insn: string): number => CODE_BASE + 16 * Object.keys(CODE).indexOf(insn);

function setR(t: TestMachine, r: number, v: bigint): void {
  t.cpu.s.gpr[2 * r] = lo32(v);
  t.cpu.s.gpr[2 * r + 1] = hi32(v);
}

function getR(t: TestMachine, r: number): bigint {
  const g = t.cpu.s.gpr;
  return (BigInt(g[2 * r + 1]! >>> 0) << 32n) | BigInt(g[2 * r]! >>> 0);
}

/** Run one division with RDX:RAX = n (unsigned 128-bit) and divisor d (unsigned 64-bit). */
function runDiv(t: TestMachine, insn: string, n: bigint, d: bigint): void {
  const s = t.cpu.s;
  s.gpr.fill(0);
  s.gpr[8] = STACK_TOP;
  s.rip = codeAddr(insn);
  s.halted = false;
  setR(t, RAX, n & M64);
  setR(t, RDX, n >> 64n);
  setR(t, RCX, 0x1234n);
  setR(t, RBX, BigInt(DATA));
  if (insn.includes('[')) {
    t.memory.write32(DATA, lo32(d));
    t.memory.write32(DATA + 4, hi32(d));
  } else setR(t, RCX, d);
  t.cpu.run(100);
  expect(s.halted).toBe(true);
}

for (const [label, threshold] of [['interpreter', Infinity], ['translated blocks', 1]] as const) {
  describe(`DIV/IDIV r/m64 instructions (${label})`, () => {
    const t = machine(threshold);

    it('match BigInt for random operands; #DE leaves RDX:RAX alone', () => {
      const g = new Gen(0x5eed_0021);
      for (let i = 0; i < 4_000; i++) {
        const insn = g.pick(Object.keys(CODE));
        const signed = insn.startsWith('idiv');
        const d = i % 50 === 0 ? 0n : g.divisor();
        let n: bigint;
        if (d === 0n) n = g.u64() << BigInt(g.int(64));
        else if (!signed) n = i % 7 === 0 ? ((d + g.below(1n << 20n)) << 64n) | g.u64() : g.dividend(d); // some #DE
        else n = g.signedDividend(BigInt.asIntN(64, d));
        const nu = n & M128;
        runDiv(t, insn, nu, d);
        let fits: boolean;
        let q = 0n;
        let r = 0n;
        if (signed) {
          const sd = BigInt.asIntN(64, d);
          const sn = BigInt.asIntN(128, nu);
          if (sd !== 0n) { q = sn / sd; r = sn % sd; }
          fits = sd !== 0n && q >= I64_MIN && q <= I64_MAX;
        } else {
          if (d !== 0n) { q = nu / d; r = nu % d; }
          fits = d !== 0n && q <= M64;
        }
        const what = `${insn} with RDX:RAX=${nu.toString(16)} d=${d.toString(16)}`;
        if (fits) {
          expect(getR(t, RAX), what).toBe(q & M64);
          expect(getR(t, RDX), what).toBe(r & M64);
          expect(t.cpu.s.rip, what).toBe(codeAddr(insn) + CODE[insn]!.length);
        } else {
          // #DE (vector 0): the handler stub loaded EAX; RDX is unchanged, the frame holds the div's RIP
          expect(getR(t, RAX), what).toBe(BigInt(HANDLER_MARK));
          expect(getR(t, RDX), what).toBe(nu >> 64n);
          const sp = Number(getR(t, 4));
          expect(t.memory.read32(sp), what).toBe(codeAddr(insn));
        }
      }
    });

    it('#DE for div by zero, quotient overflow and -2^63 / -1', () => {
      const cases: [string, bigint, bigint][] = [
        ['div rcx', 5n, 0n],
        ['div qword [rbx]', (7n << 64n) | 5n, 0n],
        ['div rcx', 1n << 64n, 1n],
        ['div rcx', M64 << 64n, M64],
        ['idiv rcx', M128 & ~M64 | (1n << 63n), M64], // -2^63 / -1
        ['idiv qword [rbx]', M128 & ~M64 | (1n << 63n), M64],
        ['idiv rcx', 1n << 63n, 1n], // 2^63 / 1
        ['idiv rcx', 7n, 0n],
      ];
      for (const [insn, n, d] of cases) {
        runDiv(t, insn, n, d);
        expect(getR(t, RAX), `${insn} ${n} ${d}`).toBe(BigInt(HANDLER_MARK));
        expect(getR(t, RDX)).toBe(n >> 64n);
      }
    });
  });
}
