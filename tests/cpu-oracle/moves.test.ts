/**
 * Oracle: MOVZX MOVSX MOVSXD, CBW CWDE CDQE CWD CDQ CQO, CMOVcc and SETcc for every condition,
 * XCHG XADD CMPXCHG CMPXCHG8B (CMPXCHG16B when CPUID advertises CX16), and LEA with every
 * addressing form including 32-bit address-size overrides.
 */
import { describe, it } from 'vitest';
import { features } from '../../src/cpu/features.js';
import { nasmMissing } from './assemble.js';
import { memOperand, mixLow } from './gen.js';
import { nativeSupported } from './native.js';
import {
  fuzz, GPR32, GPR64, GPR8_HIGH, pick8Pair, pickReg, randomState, regName, type OracleCase, type Rng, type Size, expectClean,
} from './oracle.js';

const N = 150;
const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

function seeded(rng: Rng, size: Size): OracleCase {
  const c: OracleCase = { asm: '', state: randomState(rng) };
  for (let r = 0; r < 16; r++) if (r !== 4 && rng.bool(0.3)) c.state.gpr[r] = mixLow(c.state.gpr[r]!, rng.value(size), size);
  return c;
}

/** Buffer offset of a `[reg +- disp]` operand made by memOperand. */
function memOff(c: OracleCase, operand: string): number {
  const m = /\[(\w+) ([+-]) (\d+)\]/.exec(operand)!;
  return Number(c.state.gpr[GPR64.indexOf(m[1] as (typeof GPR64)[number])]!) + (m[2] === '-' ? -1 : 1) * Number(m[3]);
}

/** CMPXCHG8B/16B use RBX and RCX as operands: address the buffer through RSI instead. */
const RSI = 6;

function extendCase(rng: Rng): OracleCase {
  const kinds: [string, Size, Size][] = [
    ['movzx', 16, 8], ['movzx', 32, 8], ['movzx', 64, 8], ['movzx', 32, 16], ['movzx', 64, 16],
    ['movsx', 16, 8], ['movsx', 32, 8], ['movsx', 64, 8], ['movsx', 32, 16], ['movsx', 64, 16], ['movsxd', 64, 32],
  ];
  const [op, dsz, ssz] = rng.pick(kinds);
  const c = seeded(rng, ssz);
  const toMem = rng.bool(0.35);
  const d = pickReg(rng, toMem ? [3] : []);
  const dst = regName(dsz, d);
  let src: string;
  if (toMem) src = memOperand(rng, c, ssz);
  else if (ssz === 8 && d < 8 && dsz !== 64 && rng.bool(0.3)) src = GPR8_HIGH[rng.int(4)]!; // AH..BH need no REX
  else src = regName(ssz, pickReg(rng));
  c.asm = `${op} ${dst}, ${src}`;
  return c;
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: moves, conditionals, exchanges, LEA', () => {
  it('movzx / movsx / movsxd', () => {
    const r = fuzz('extend', 300, extendCase);
    expectClean(r);
  });

  it('cbw cwde cdqe cwd cdq cqo', () => {
    const r = fuzz('convert', N, (rng) => {
      const c = seeded(rng, rng.pick([8, 16, 32, 64] as const));
      c.asm = rng.pick(['cbw', 'cwde', 'cdqe', 'cwd', 'cdq', 'cqo']);
      return c;
    });
    expectClean(r);
  });

  for (const cc of CONDITIONS) {
    it(`cmov${cc} / set${cc}`, () => {
      const r = fuzz(`cmov${cc}`, 80, (rng) => {
        const size = rng.pick([16, 32, 64] as const);
        const c = seeded(rng, size);
        if (rng.bool(0.5)) {
          const toMem = rng.bool(0.3);
          const dst = regName(size, pickReg(rng, toMem ? [3] : []));
          c.asm = `cmov${cc} ${dst}, ${toMem ? memOperand(rng, c, size) : regName(size, pickReg(rng))}`;
        } else {
          c.asm = `set${cc} ${rng.bool(0.3) ? memOperand(rng, c, 8) : pick8Pair(rng)[0]}`;
        }
        return c;
      });
      expectClean(r);
    });
  }

  for (const op of ['xchg', 'xadd', 'cmpxchg']) {
    it(`${op} all sizes, register and memory`, () => {
      const r = fuzz(op, 300, (rng) => {
        const size = rng.pick([8, 16, 32, 64] as const);
        const c = seeded(rng, size);
        const toMem = rng.bool(0.4);
        let dst: string;
        let src: string;
        if (toMem) {
          dst = memOperand(rng, c, size);
          src = size === 8 ? pick8Pair(rng, [3])[0] : regName(size, pickReg(rng, [3]));
          if (op === 'cmpxchg' && rng.bool(0.5)) {
            // make the comparison succeed
            const off = memOff(c, dst);
            let v = 0n;
            for (let k = size / 8 - 1; k >= 0; k--) v = (v << 8n) | BigInt(c.state.mem[off + k]!);
            c.state.gpr[0] = mixLow(c.state.gpr[0]!, v, size);
          }
        } else {
          let a: number;
          if (size === 8) {
            const p = pick8Pair(rng);
            [dst, src, a] = p;
            if (/^[abcd]h$/.test(dst)) a = -1; // high byte: leave the comparison to chance
          } else {
            a = pickReg(rng);
            dst = regName(size, a);
            src = regName(size, pickReg(rng));
          }
          if (op === 'cmpxchg' && a >= 0 && rng.bool(0.5)) c.state.gpr[0] = mixLow(c.state.gpr[0]!, c.state.gpr[a]!, size);
        }
        const lock = toMem && op !== 'xchg' && rng.bool(0.5) ? 'lock ' : '';
        c.asm = `${lock}${op} ${dst}, ${src}`;
        return c;
      });
      expectClean(r);
    });
  }

  it('cmpxchg8b', () => {
    const r = fuzz('cmpxchg8b', N, (rng) => {
      const c = seeded(rng, 32);
      const m = memOperand(rng, c, 64, 0x200, RSI);
      if (rng.bool(0.5)) {
        const off = memOff(c, m);
        let v = 0n;
        for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(c.state.mem[off + k]!);
        c.state.gpr[0] = mixLow(c.state.gpr[0]!, v, 32);
        c.state.gpr[2] = mixLow(c.state.gpr[2]!, v >> 32n, 32);
      }
      c.asm = `${rng.bool(0.5) ? 'lock ' : ''}cmpxchg8b ${m}`;
      return c;
    });
    expectClean(r);
  });

  it.skipIf(!features.cx16)('cmpxchg16b (CX16 advertised)', () => {
    const r = fuzz('cmpxchg16b', N, (rng) => {
      const c = seeded(rng, 64);
      const base = 0x400 + 16 * rng.int(0x40);
      c.state.gpr[RSI] = BigInt(base);
      c.ptrRegs = [RSI];
      if (rng.bool(0.5)) {
        let lo = 0n;
        let hi = 0n;
        for (let k = 7; k >= 0; k--) lo = (lo << 8n) | BigInt(c.state.mem[base + k]!);
        for (let k = 15; k >= 8; k--) hi = (hi << 8n) | BigInt(c.state.mem[base + k]!);
        c.state.gpr[0] = lo;
        c.state.gpr[2] = hi;
      }
      // half the time after a read and a write of the operand's page, as in a running guest:
      // the translated fast path needs it in the inline TLB
      const warm = rng.bool(0.5) ? 'mov r8, [rsi]\nmov [rsi], r8\n' : '';
      c.asm = `${warm}${rng.bool(0.5) ? 'lock ' : ''}cmpxchg16b oword [rsi]${rng.bool(0.5) ? '\nsetz r9b\nsetc r10b' : ''}`;
      return c;
    });
    expectClean(r);
  });

  it('lea: every base/index/scale/displacement form, 16/32/64-bit destinations, 32-bit addresses', () => {
    const r = fuzz('lea', 500, (rng) => {
      const c = seeded(rng, 64);
      const addr32 = rng.bool(0.3);
      const names = addr32 ? GPR32 : GPR64;
      const parts: string[] = [];
      const form = rng.int(4); // 0 base, 1 base+index, 2 index only, 3 absolute
      if (form === 0 || form === 1) parts.push(names[pickReg(rng)]!);
      if (form === 1 || form === 2) parts.push(`${names[pickReg(rng)]!}*${rng.pick([1, 2, 4, 8])}`);
      const dispKind = form === 3 ? 2 : rng.int(3);
      const disp = dispKind === 0 ? 0 : dispKind === 1 ? rng.int(256) - 128 : (rng.u32() | 0);
      let expr = parts.join(' + ');
      if (disp !== 0 || parts.length === 0) expr += `${expr ? (disp < 0 ? ' - ' : ' + ') : disp < 0 ? '-' : ''}${Math.abs(disp)}`;
      const dsz = rng.pick([16, 32, 64] as const);
      const dst = regName(dsz, pickReg(rng));
      c.asm = form === 3 ? `${addr32 ? 'a32 ' : ''}lea ${dst}, [abs ${expr}]` : `lea ${dst}, [${expr}]`;
      return c;
    });
    expectClean(r);
  });

});
