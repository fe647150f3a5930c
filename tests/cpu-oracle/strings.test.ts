/**
 * Oracle: MOVS STOS LODS CMPS SCAS in byte/word/dword/qword sizes, without prefix, with REP and
 * with REPE/REPNE, DF clear and set, over small buffers (RSI/RDI are relocated pointers).
 */
import { describe, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import { fuzz, randomState, type OracleCase, type Rng, expectClean } from './oracle.js';

const N = 150;
const DF = 0x400;
const SUFFIX = { 8: 'b', 16: 'w', 32: 'd', 64: 'q' } as const;
const RSI = 6;
const RDI = 7;
const RCX = 1;

function stringCase(rng: Rng, op: string): OracleCase {
  const size = rng.pick([8, 16, 32, 64] as const);
  const c: OracleCase = { asm: '', state: randomState(rng), ptrRegs: [RSI, RDI] };
  const down = rng.bool(0.5);
  c.state.rflags = (c.state.rflags & ~DF) | (down ? DF : 0);
  // long counts (REP MOVS/STOS past the translator's element loop: bulk copies and fills)
  // sometimes, with the destination just after the source so that a copy overlaps itself
  const long = (op === 'movs' || op === 'stos') && rng.bool(0.3);
  const count = long ? 33 + rng.int(88) : rng.bool(0.15) ? 0 : rng.int(24);
  // short: sources in 0x300..0x700, destinations in 0xa00..0xe00, 24 qwords either way stay
  // inside; long (up to 960 bytes): sources at 0x3c0.., destinations at 0xa00.. or overlapping
  const src = long ? 0x3c0 + rng.int(0x40) : 0x300 + rng.int(0x400);
  const dst = long ? (rng.bool(0.3) ? src + rng.int(24) - 8 : 0xa00 + rng.int(0x40)) : 0xa00 + rng.int(0x400);
  if (long && op === 'stos' && rng.bool(0.6)) c.state.gpr[0] = BigInt(rng.int(256)) * 0x0101_0101_0101_0101n; // a fill of one byte
  c.state.gpr[RSI] = BigInt(src);
  c.state.gpr[RDI] = BigInt(dst);
  c.state.gpr[RCX] = BigInt(count);
  if (!long || op !== 'stos') c.state.gpr[0] = mixLow(c.state.gpr[0]!, rng.value(size), size);
  const bytes = count * (size / 8) + 8;
  if (op === 'cmps' || op === 'scas') {
    // mostly-equal data so REPE/REPNE stop at varied places
    const lo = (a: number): number => (down ? a - bytes + size / 8 : a);
    const fill = rng.u32() & 0xff;
    for (let i = 0; i < bytes; i++) {
      c.state.mem[lo(src) + i] = fill;
      c.state.mem[lo(dst) + i] = fill;
    }
    if (op === 'scas') {
      // AL/AX/EAX/RAX equal to the fill pattern, sometimes
      const pattern = BigInt(fill) * 0x0101_0101_0101_0101n;
      if (rng.bool(0.6)) c.state.gpr[0] = mixLow(c.state.gpr[0]!, pattern, size);
    }
    const flips = rng.int(3);
    for (let i = 0; i < flips; i++) c.state.mem[lo(dst) + rng.int(bytes)] ^= 1 << rng.int(8);
  }
  const prefixes: Record<string, string[]> = {
    movs: ['', 'rep '], stos: ['', 'rep '], lods: ['', 'rep '], cmps: ['', 'repe ', 'repne '], scas: ['', 'repe ', 'repne '],
  };
  c.asm = `${rng.pick(prefixes[op]!)}${op}${SUFFIX[size]}`;
  // a long one after a read of its source and a write of its destination, as in a running
  // guest: the translated bulk path needs both pages in the inline TLB
  if (long) c.asm = `mov r8b, [rsi]\nmov [rdi], r8b\n${c.asm}`;
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: string instructions', () => {
  for (const op of ['movs', 'stos', 'lods', 'cmps', 'scas']) {
    it(`${op} (rep, both directions)`, () => {
      const r = fuzz(op, N, (rng) => stringCase(rng, op));
      expectClean(r);
    });
  }
});
