/**
 * Oracle: the small instructions of the x86-64-v2+ CPU model (issue 13) that user mode can run
 * on the host — CLFLUSHOPT, CLWB and CLFLUSH on the data buffer (no store, no flag or register
 * change), RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE in 32- and 64-bit forms (the host kernel sets
 * CR4.FSGSBASE for user mode since Linux 5.9; the emulated CPU gets the bit set for the run), and
 * the shapes of RDTSCP and RDPID (their values — the TSC, TSC_AUX — differ between the worlds, so
 * the cases keep only what must agree: upper halves zero, other registers and flags untouched).
 * Faults (non-canonical bases, #UD without CR4.FSGSBASE, UMIP) are emulator-only directed tests
 * in src/cpu/core/suite-insns.test-helper.ts.
 *
 * The native side runs in the test process: FS holds the thread's TLS pointer, so FS cases save
 * it in R11, write and read the test value, and restore it within three instructions; GS (unused
 * by the C library on x86-64) is restored too.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { features } from '../../src/cpu/features.js';
import { nasmMissing } from './assemble.js';
import { memOperand } from './gen.js';
import { nativeSupported } from './native.js';
import { expectClean, fuzz, pickReg, randomState, regName, type OracleCase, type Rng } from './oracle.js';

const N = 80;
const CR4_FSGSBASE = 1 << 16;
const R11 = 11;

/** The host CPU's /proc/cpuinfo flags (empty where there is none). */
const hostFlags = ((): Set<string> => {
  try {
    const line = readFileSync('/proc/cpuinfo', 'latin1').split('\n').find((l) => l.startsWith('flags'));
    return new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
})();
const host = (flag: string): boolean => nativeSupported && hostFlags.has(flag);

/** A canonical 64-bit base: low, high-half kernel-style, or small. */
function canonicalBase(rng: Rng): bigint {
  switch (rng.int(4)) {
    case 0: return rng.u64() & 0x7fff_ffff_ffffn;
    case 1: return 0xffff_8000_0000_0000n | (rng.u64() & 0x7fff_ffff_ffffn);
    case 2: return BigInt(rng.int(0x10000));
    default: return rng.u64() & 0xffff_ffffn;
  }
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: CLFLUSHOPT, CLWB, FSGSBASE, RDTSCP/RDPID shapes', () => {
  const saved = { ...features };
  beforeAll(() => Object.assign(features, { clflushopt: true, clwb: true, fsgsbase: true, rdtscp: true, rdpid: true }));
  afterAll(() => Object.assign(features, saved));

  for (const op of ['clflushopt', 'clwb', 'clflush']) {
    it.skipIf(!host(op))(`${op} m8: nothing changes`, () => {
      const r = fuzz(op, N, (rng) => {
        const c: OracleCase = { asm: '', state: randomState(rng) };
        const m = memOperand(rng, c, 8).replace('byte ', '');
        c.asm = rng.bool(0.5) ? `${op} ${m}` : `${op} ${m}\n${op} ${m}\nsfence`;
        return c;
      });
      expectClean(r);
    });
  }

  for (const seg of ['fs', 'gs']) {
    it.skipIf(!host('fsgsbase'))(`wr${seg}base / rd${seg}base, 32- and 64-bit forms`, () => {
      const r = fuzz(`fsgsbase-${seg}`, N, (rng) => {
        const c: OracleCase = { asm: '', state: randomState(rng), cr4: CR4_FSGSBASE };
        const src = pickReg(rng, [R11]);
        const dst = pickReg(rng, [R11]);
        const wide = rng.bool(0.6);
        c.state.gpr[src] = wide ? canonicalBase(rng) : rng.u64();
        const ws = wide ? 64 : 32;
        const rs = rng.bool(0.6) ? 64 : 32;
        c.asm = [
          `rd${seg}base r11`,
          `wr${seg}base ${regName(ws, src)}`,
          `rd${seg}base ${regName(rs, dst)}`,
          `wr${seg}base r11`,
          'mov r11d, 0',
        ].join('\n');
        return c;
      });
      expectClean(r);
    });
  }

  it.skipIf(!host('rdtscp') || !host('rdpid'))('rdtscp and rdpid: upper halves zero, nothing else changes', () => {
    const r = fuzz('rdtscp-shape', N, (rng) => {
      // SHR by 32 leaves 0 when the upper half was 0; its flags: CF = bit 31 of the last one shifted
      // (TSC_AUX: the host's CPU number, 0 here), ZF PF SF from 0, OF and AF undefined
      const c: OracleCase = { asm: '', state: randomState(rng), undefFlags: 0x810 };
      const dst = pickReg(rng);
      c.asm = rng.bool(0.5)
        ? 'rdtscp\nshr rax, 32\nshr rdx, 32\nshr rcx, 32'
        : `rdpid ${regName(64, dst)}\nshr ${regName(64, dst)}, 32`;
      return c;
    });
    expectClean(r);
  });
});
