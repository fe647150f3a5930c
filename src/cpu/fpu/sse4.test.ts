/**
 * The SSE3/SSSE3/SSE4.1/SSE4.2 instructions in the interpreter, by exception: #UD while their
 * feature (features.ts) is off — before the CR0.TS #NM an enabled instruction would raise —,
 * #UD with a LOCK prefix or CR4.OSFXSR clear (not for the MMX forms), #NM with CR0.TS, and the
 * alignment #GP(0) only where the instruction demands it. Their results are the oracle's
 * (tests/cpu-oracle/sse4.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createTestMachine, enterLongMode, CODE_BASE, type TestMachine } from '../core/test-machine.js';
import { step } from '../core/exec.js';
import { CpuFault } from '../system-api.js';
import { features } from '../features.js';
import { simdUnit } from './index.js';

const DATA = 0x200000;
const UD = 6, NM = 7, GP = 13, XM = 19;
const CR4_OSXMMEXCPT = 1 << 10;

type Feature = 'sse3' | 'ssse3' | 'sse41' | 'sse42';

/** One encoding per group (register operands XMM0/XMM1 or MM0/MM1; memory operands [RBX]). */
const CASES: [Feature, string, number[]][] = [
  ['sse3', 'haddps xmm0, xmm1', [0xf2, 0x0f, 0x7c, 0xc1]],
  ['sse3', 'hsubpd xmm0, xmm1', [0x66, 0x0f, 0x7d, 0xc1]],
  ['sse3', 'addsubpd xmm0, xmm1', [0x66, 0x0f, 0xd0, 0xc1]],
  ['sse3', 'movddup xmm0, xmm1', [0xf2, 0x0f, 0x12, 0xc1]],
  ['sse3', 'movsldup xmm0, xmm1', [0xf3, 0x0f, 0x12, 0xc1]],
  ['sse3', 'movshdup xmm0, xmm1', [0xf3, 0x0f, 0x16, 0xc1]],
  ['sse3', 'lddqu xmm0, [rbx]', [0xf2, 0x0f, 0xf0, 0x03]],
  ['sse3', 'fisttp dword [rbx]', [0xdb, 0x0b]],
  ['sse3', 'fisttp qword [rbx]', [0xdd, 0x0b]],
  ['sse3', 'fisttp word [rbx]', [0xdf, 0x0b]],
  ['ssse3', 'pshufb xmm0, xmm1', [0x66, 0x0f, 0x38, 0x00, 0xc1]],
  ['ssse3', 'pshufb mm0, mm1', [0x0f, 0x38, 0x00, 0xc1]],
  ['ssse3', 'pabsd xmm0, xmm1', [0x66, 0x0f, 0x38, 0x1e, 0xc1]],
  ['ssse3', 'palignr xmm0, xmm1, 3', [0x66, 0x0f, 0x3a, 0x0f, 0xc1, 0x03]],
  ['ssse3', 'palignr mm0, mm1, 3', [0x0f, 0x3a, 0x0f, 0xc1, 0x03]],
  ['sse41', 'ptest xmm0, xmm1', [0x66, 0x0f, 0x38, 0x17, 0xc1]],
  ['sse41', 'pblendvb xmm0, xmm1', [0x66, 0x0f, 0x38, 0x10, 0xc1]],
  ['sse41', 'pmovzxbw xmm0, xmm1', [0x66, 0x0f, 0x38, 0x30, 0xc1]],
  ['sse41', 'pmulld xmm0, xmm1', [0x66, 0x0f, 0x38, 0x40, 0xc1]],
  ['sse41', 'roundps xmm0, xmm1, 0', [0x66, 0x0f, 0x3a, 0x08, 0xc1, 0x00]],
  ['sse41', 'dpps xmm0, xmm1, 0xff', [0x66, 0x0f, 0x3a, 0x40, 0xc1, 0xff]],
  ['sse41', 'pextrd ecx, xmm0, 1', [0x66, 0x0f, 0x3a, 0x16, 0xc1, 0x01]],
  ['sse41', 'pinsrq xmm0, rcx, 1', [0x66, 0x48, 0x0f, 0x3a, 0x22, 0xc1, 0x01]],
  ['sse42', 'pcmpgtq xmm0, xmm1', [0x66, 0x0f, 0x38, 0x37, 0xc1]],
  ['sse42', 'pcmpistri xmm0, xmm1, 0', [0x66, 0x0f, 0x3a, 0x63, 0xc1, 0x00]],
  ['sse42', 'pcmpestrm xmm0, xmm1, 0', [0x66, 0x0f, 0x3a, 0x60, 0xc1, 0x00]],
  ['sse42', 'crc32 eax, ecx', [0xf2, 0x0f, 0x38, 0xf1, 0xc1]],
  ['sse42', 'crc32 rax, byte [rbx]', [0xf2, 0x48, 0x0f, 0x38, 0xf0, 0x03]],
];

const saved = { ...features };
afterEach(() => {
  Object.assign(features, saved);
});

function enable(on: boolean): void {
  Object.assign(features, { sse3: on, ssse3: on, sse41: on, sse42: on });
}

let machine: TestMachine | undefined;

/** Run `code` as one instruction in 64-bit mode (RBX = DATA + `misalign`); the vector it raised, or -1. */
function run(code: readonly number[], opts: { cr0?: number; cr4?: number; misalign?: number; setup?: (t: TestMachine) => void } = {}): number {
  machine ??= createTestMachine({ ramBytes: 4 * 1024 * 1024, simd: simdUnit });
  const t = machine;
  const c = t.cpu;
  enterLongMode(t);
  c.simd?.reset(c.s);
  c.s.gpr[2 * 3] = DATA + (opts.misalign ?? 0); // RBX
  if (opts.cr0 !== undefined) c.s.cr0 |= opts.cr0;
  if (opts.cr4 !== undefined) c.s.cr4 &= ~opts.cr4;
  opts.setup?.(t);
  c.modeChanged();
  t.memory.writeBytes(CODE_BASE, new Uint8Array([...code, 0xf4]));
  c.startRip = c.s.rip;
  try {
    step(c);
  } catch (e) {
    if (!(e instanceof CpuFault)) throw e;
    return e.vector;
  }
  expect(c.s.rip, 'the instruction ran to its end').toBe(CODE_BASE + code.length);
  return -1;
}

const isMmx = (name: string): boolean => / mm0/.test(name);
const isX87 = (name: string): boolean => name.startsWith('fisttp');
const isGpr = (name: string): boolean => name.startsWith('crc32');

describe('SSE3..SSE4.2 in the interpreter', () => {
  for (const [feature, name, code] of CASES) {
    it(`${name}: #UD while ${feature} is off (even with CR0.TS set), runs when on`, () => {
      enable(true);
      features[feature] = false;
      expect(run(code)).toBe(UD);
      if (!isGpr(name)) expect(run(code, { cr0: 8 })).toBe(UD);
      enable(false);
      features[feature] = true;
      expect(run(code)).toBe(-1);
    });
    it(`${name}: #UD with LOCK`, () => {
      enable(true);
      expect(run([0xf0, ...code])).toBe(UD);
    });
    if (isGpr(name)) continue;
    it(`${name}: #NM with CR0.TS${isMmx(name) || isX87(name) ? '' : ', #UD without CR4.OSFXSR'}`, () => {
      enable(true);
      expect(run(code, { cr0: 8 })).toBe(NM);
      if (!isMmx(name) && !isX87(name)) expect(run(code, { cr4: 0x200 })).toBe(UD);
      else expect(run(code, { cr4: 0x200 })).toBe(-1);
    });
  }

  it('#UD for the other mandatory prefixes and the register form of LDDQU/MOVNTDQA', () => {
    enable(true);
    expect(run([0xf3, 0x0f, 0x38, 0x00, 0xc1])).toBe(UD); // F3 PSHUFB
    expect(run([0x0f, 0x38, 0x17, 0xc1])).toBe(UD); // PTEST without 66
    expect(run([0xf2, 0x0f, 0x3a, 0x0f, 0xc1, 0x00])).toBe(UD); // F2 PALIGNR
    expect(run([0x66, 0x0f, 0x38, 0xf1, 0xc1])).toBe(UD); // 66 0F 38 F1 (MOVBE: not offered)
    expect(run([0xf2, 0x0f, 0xf0, 0xc1])).toBe(UD); // LDDQU xmm, xmm
    expect(run([0x66, 0x0f, 0x38, 0x2a, 0xc1])).toBe(UD); // MOVNTDQA xmm, xmm
    expect(run([0x66, 0x0f, 0x38, 0x18, 0xc1])).toBe(UD); // 0F 38 18: VEX-only (VBROADCASTSS)
  });

  it('#GP(0) for a misaligned m128 where the instruction demands alignment, and only there', () => {
    enable(true);
    const at = (code: number[]): number => run(code, { misalign: 4 });
    // [rbx] memory forms (ModRM 03)
    expect(at([0x66, 0x0f, 0x38, 0x00, 0x03])).toBe(GP); // PSHUFB
    expect(at([0x66, 0x0f, 0x38, 0x17, 0x03])).toBe(GP); // PTEST
    expect(at([0x66, 0x0f, 0x38, 0x2a, 0x03])).toBe(GP); // MOVNTDQA
    expect(at([0x66, 0x0f, 0x3a, 0x08, 0x03, 0x00])).toBe(GP); // ROUNDPS
    expect(at([0xf2, 0x0f, 0x7c, 0x03])).toBe(GP); // HADDPS
    expect(at([0xf3, 0x0f, 0x12, 0x03])).toBe(GP); // MOVSLDUP
    expect(at([0xf2, 0x0f, 0xf0, 0x03])).toBe(-1); // LDDQU
    expect(at([0xf2, 0x0f, 0x12, 0x03])).toBe(-1); // MOVDDUP m64
    expect(at([0x66, 0x0f, 0x3a, 0x63, 0x03, 0x00])).toBe(-1); // PCMPISTRI
    expect(at([0x66, 0x0f, 0x3a, 0x61, 0x03, 0x00])).toBe(-1); // PCMPESTRI
    expect(at([0x66, 0x0f, 0x38, 0x30, 0x03])).toBe(-1); // PMOVZXBW m64
    expect(at([0x66, 0x0f, 0x3a, 0x0a, 0x03, 0x00])).toBe(-1); // ROUNDSS m32
    expect(at([0x0f, 0x38, 0x00, 0x03])).toBe(-1); // PSHUFB mm, m64
  });

  it('ROUNDPS: an unmasked precision exception raises #XM before the write-back, unless imm8 bit 3 suppresses it', () => {
    enable(true);
    const ONE_HALF = 0x3fc00000;
    let t: TestMachine | undefined;
    const setup = (m: TestMachine): void => {
      t = m;
      m.cpu.s.cr4 |= CR4_OSXMMEXCPT;
      m.cpu.s.mxcsr = 0x1f80 & ~0x1000; // PM clear: precision unmasked
      m.cpu.s.xmm.fill(ONE_HALF, 4, 8); // XMM1 = 1.5 in every lane
      m.cpu.s.xmm.fill(7, 0, 4); // XMM0 = a marker
    };
    expect(run([0x66, 0x0f, 0x3a, 0x08, 0xc1, 0x00], { setup })).toBe(XM); // roundps xmm0, xmm1, 0
    expect(Array.from(t!.cpu.s.xmm.subarray(0, 4))).toEqual([7, 7, 7, 7]);
    expect(t!.cpu.s.mxcsr & 0x20).toBe(0x20); // PE recorded
    expect(run([0x66, 0x0f, 0x3a, 0x08, 0xc1, 0x08], { setup })).toBe(-1); // imm8[3]: no precision exception
    expect(Array.from(t!.cpu.s.xmm.subarray(0, 4))).toEqual([0x40000000, 0x40000000, 0x40000000, 0x40000000]); // 2.0 (nearest even)
    expect(t!.cpu.s.mxcsr & 0x20).toBe(0);
    expect(run([0x66, 0x0f, 0x3a, 0x08, 0xc1, 0x0b], { setup })).toBe(-1); // truncate: 1.0
    expect(t!.cpu.s.xmm[0]).toBe(0x3f800000);
  });
});
