/**
 * Vectors from real hardware: a small C program (compiled with the host gcc at test time) runs
 * SSE2 intrinsics, MMX and x87 instructions on fixed inputs and prints the raw results; the same
 * operations run through the SIMD unit must produce identical bits. Skipped without gcc or on a
 * non-x86-64 host.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, arch } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuState } from '../state.js';
import { simdUnit } from './index.js';
import { FlatMemory, insn, x87insn, x87op } from './testing.js';

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const C_SOURCE = String.raw`
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <emmintrin.h>

static const uint8_t A[16] = {0x00,0x7f,0x80,0xff,0x12,0x34,0x56,0x78,0x9a,0xbc,0xde,0xf0,0x01,0x80,0x7f,0xfe};
static const uint8_t B[16] = {0xff,0x01,0x7f,0x80,0xfe,0xdc,0xba,0x98,0x76,0x54,0x32,0x10,0x80,0x80,0x01,0x02};
static void px(const char *n, __m128i v) { uint8_t b[16]; memcpy(b, &v, 16); printf("%s", n); for (int i = 0; i < 16; i++) printf(" %02x", b[i]); printf("\n"); }
static void pb(const char *n, const void *p, int len) { const uint8_t *b = p; printf("%s", n); for (int i = 0; i < len; i++) printf(" %02x", b[i]); printf("\n"); }

int main(void) {
  __m128i a = _mm_loadu_si128((const __m128i *)A), b = _mm_loadu_si128((const __m128i *)B);
  px("paddusw", _mm_adds_epu16(a, b));
  px("psubsb", _mm_subs_epi8(a, b));
  px("pmaddwd", _mm_madd_epi16(a, b));
  px("psadbw", _mm_sad_epu8(a, b));
  px("packuswb", _mm_packus_epi16(a, b));
  px("packssdw", _mm_packs_epi32(a, b));
  px("pmulhuw", _mm_mulhi_epu16(a, b));
  px("pmulhw", _mm_mulhi_epi16(a, b));
  px("pmuludq", _mm_mul_epu32(a, b));
  px("pavgb", _mm_avg_epu8(a, b));
  px("psraw", _mm_sra_epi16(a, _mm_cvtsi32_si128(3)));
  px("punpckhdq", _mm_unpackhi_epi32(a, b));
  /* x87: 1/3, sqrt(2), remainder, rounding to integer (round-to-nearest, 64-bit precision) */
  long double third, root, rem; short fsw; int64_t ist;
  __asm__ volatile ("fninit; fld1; fld1; fadd %%st(0), %%st(0); fadd %%st(1), %%st(0); fdivrp; fstpt %0" : "=m"(third));
  __asm__ volatile ("fninit; fld1; fld1; faddp; fsqrt; fstpt %0; fnstsw %1" : "=m"(root), "=m"(fsw));
  pb("third", &third, 10);
  pb("sqrt2", &root, 10);
  pb("sqrt2sw", &fsw, 2);
  double x = 1e30, y = 7.25;
  __asm__ volatile ("fninit; fldl %2; fldl %1; fprem; fstpt %0; fstp %%st(0)" : "=m"(rem) : "m"(x), "m"(y));
  pb("fprem", &rem, 10);
  double z = -2.5;
  __asm__ volatile ("fninit; fldl %1; fistpll %0" : "=m"(ist) : "m"(z));
  pb("fistp", &ist, 8);
  return 0;
}
`;

const A = [0x00, 0x7f, 0x80, 0xff, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x80, 0x7f, 0xfe];
const B = [0xff, 0x01, 0x7f, 0x80, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0x80, 0x80, 0x01, 0x02];

function hex(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

function fresh(): { cpu: CpuState; mem: FlatMemory } {
  const cpu = new CpuState();
  cpu.cr4 |= 1 << 9;
  simdUnit.reset(cpu);
  return { cpu, mem: new FlatMemory() };
}

/** Runs 66 0F op xmm0, xmm1 (or with an xmm1 count for shifts) on A, B. */
function sse2(op: number, countB?: number): string {
  const { cpu, mem } = fresh();
  cpu.xmmU8.set(A, 0);
  if (countB === undefined) cpu.xmmU8.set(B, 16);
  else cpu.xmm[4] = countB;
  simdUnit.sse(cpu, mem, insn(op, 0x66, 0, 1));
  return hex(cpu.xmmU8.subarray(0, 16));
}

function ours(): Map<string, string> {
  const r = new Map<string, string>();
  r.set('paddusw', sse2(0xdd));
  r.set('psubsb', sse2(0xe8));
  r.set('pmaddwd', sse2(0xf5));
  r.set('psadbw', sse2(0xf6));
  r.set('packuswb', sse2(0x67));
  r.set('packssdw', sse2(0x6b));
  r.set('pmulhuw', sse2(0xe4));
  r.set('pmulhw', sse2(0xe5));
  r.set('pmuludq', sse2(0xf4));
  r.set('pavgb', sse2(0xe0));
  r.set('psraw', sse2(0xe1, 3));
  r.set('punpckhdq', sse2(0x6a));
  {
    const { cpu, mem } = fresh();
    const run = (op: number, modrm: number): void => simdUnit.x87(cpu, mem, x87op(op, modrm));
    run(0xd9, 0xe8); // fld1
    run(0xd9, 0xe8); // fld1
    run(0xd8, 0xc0); // fadd st0, st0
    run(0xd8, 0xc1); // fadd st0, st1 → 3
    run(0xde, 0xf9); // gas "fdivrp" is DE F9 (Intel FDIVP): st1 = st1 / st0 = 1/3
    simdUnit.x87(cpu, mem, x87insn(0xdb, 7, 0, 0x100)); // fstp tword
    r.set('third', hex(mem.bytes.subarray(0x100, 0x10a)));
    simdUnit.x87(cpu, mem, x87op(0xdb, 0xe3));
    run(0xd9, 0xe8);
    run(0xd9, 0xe8);
    run(0xde, 0xc1); // faddp
    run(0xd9, 0xfa); // fsqrt
    simdUnit.x87(cpu, mem, x87insn(0xdb, 7, 0, 0x110));
    simdUnit.x87(cpu, mem, x87insn(0xdd, 7, 0, 0x120)); // fnstsw m16
    r.set('sqrt2', hex(mem.bytes.subarray(0x110, 0x11a)));
    r.set('sqrt2sw', hex(mem.bytes.subarray(0x120, 0x122)));
    const f = new Float64Array([1e30, 7.25, -2.5]);
    mem.bytes.set(new Uint8Array(f.buffer), 0x200);
    simdUnit.x87(cpu, mem, x87op(0xdb, 0xe3));
    simdUnit.x87(cpu, mem, x87insn(0xdd, 0, 0, 0x208)); // fld y
    simdUnit.x87(cpu, mem, x87insn(0xdd, 0, 0, 0x200)); // fld x
    run(0xd9, 0xf8); // fprem
    simdUnit.x87(cpu, mem, x87insn(0xdb, 7, 0, 0x130));
    r.set('fprem', hex(mem.bytes.subarray(0x130, 0x13a)));
    simdUnit.x87(cpu, mem, x87op(0xdb, 0xe3));
    simdUnit.x87(cpu, mem, x87insn(0xdd, 0, 0, 0x210)); // fld z
    simdUnit.x87(cpu, mem, x87insn(0xdf, 7, 0, 0x140)); // fistp qword
    r.set('fistp', hex(mem.bytes.subarray(0x140, 0x148)));
  }
  return r;
}

const canRun = arch() === 'x64' && hasGcc();

describe.skipIf(!canRun)('SIMD unit vs the host CPU (gcc-compiled vectors)', () => {
  it('produces the host results bit for bit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'typevisor-fpu-'));
    writeFileSync(join(dir, 'v.c'), C_SOURCE);
    execFileSync('gcc', ['-O1', '-msse2', '-o', join(dir, 'v'), join(dir, 'v.c')]);
    const out = execFileSync(join(dir, 'v'), { encoding: 'utf8' });
    const host = new Map<string, string>();
    for (const line of out.trim().split('\n')) {
      const sp = line.indexOf(' ');
      host.set(line.slice(0, sp), line.slice(sp + 1));
    }
    const mine = ours();
    expect(host.size).toBe(mine.size);
    for (const [name, want] of host) expect(`${name}: ${mine.get(name)}`).toBe(`${name}: ${want}`);
  });
});
