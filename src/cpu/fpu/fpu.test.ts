/**
 * Unit tests of the SIMD unit against hand-computed results: data movement and alignment,
 * the glibc string-function idioms, MMX aliasing, MXCSR, FXSAVE/FXRSTOR, the x87 environment
 * instructions and extended-precision conversions.
 */
import { describe, expect, it } from 'vitest';
import { CpuState } from '../state.js';
import { doubleToExt, ext, extToDouble } from './f80.js';
import { fwait, simdUnit } from './index.js';
import { FlatMemory, faultOf, insn, x87insn, x87op } from './testing.js';

const CR4_OSFXSR = 1 << 9;

function setup(): { cpu: CpuState; mem: FlatMemory } {
  const cpu = new CpuState();
  cpu.cr4 |= CR4_OSFXSR;
  cpu.cr0 |= 0x20; // NE
  simdUnit.reset(cpu);
  return { cpu, mem: new FlatMemory() };
}

function xmmBytes(cpu: CpuState, r: number): number[] {
  return Array.from(cpu.xmmU8.subarray(16 * r, 16 * r + 16));
}

describe('SSE2 data movement and integer ops', () => {
  it('MOVDQA faults on a misaligned operand, MOVDQU does not', () => {
    const { cpu, mem } = setup();
    for (let k = 0; k < 32; k++) mem.bytes[0x101 + k] = k;
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0x6f, 0x66, 1, 0, { ea: 0x101 })))).toBe(13);
    simdUnit.sse(cpu, mem, insn(0x6f, 0xf3, 1, 0, { ea: 0x101 }));
    expect(xmmBytes(cpu, 1)).toEqual([...Array(16).keys()]);
    // PCMPEQB xmm, m128 (legacy SSE: aligned operand required)
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0x74, 0x66, 1, 0, { ea: 0x108 })))).toBe(13);
  });

  it('strlen idiom: PXOR, PCMPEQB, PMOVMSKB, then BSF finds the terminator', () => {
    const { cpu, mem } = setup();
    const text = 'hello, world';
    for (let k = 0; k < text.length; k++) mem.bytes[0x200 + k] = text.charCodeAt(k);
    simdUnit.sse(cpu, mem, insn(0xef, 0x66, 0, 0)); // pxor xmm0, xmm0
    simdUnit.sse(cpu, mem, insn(0x74, 0x66, 0, 0, { ea: 0x200 })); // pcmpeqb xmm0, [0x200]
    cpu.gpr[2 * 2] = 0x1234;
    cpu.gpr[2 * 2 + 1] = 0x5678;
    simdUnit.sse(cpu, mem, insn(0xd7, 0x66, 2, 0)); // pmovmskb edx, xmm0
    expect(cpu.gpr[4]! >>> 0).toBe(0xf000); // bytes 12..15 are zero
    expect(cpu.gpr[5]).toBe(0);
  });

  it('PSHUFD, PUNPCKLBW, PSRLDQ / PSLLDQ, PMINUB, PSUBB', () => {
    const { cpu, mem } = setup();
    cpu.xmm.set([0x03020100, 0x07060504, 0x0b0a0908, 0x0f0e0d0c], 4);
    simdUnit.sse(cpu, mem, insn(0x70, 0x66, 1, 1, { imm8: 0x1b })); // pshufd xmm1, xmm1, 0b00011011
    expect(Array.from(cpu.xmm.subarray(4, 8)).map((v) => v >>> 0)).toEqual([0x0f0e0d0c, 0x0b0a0908, 0x07060504, 0x03020100]);
    cpu.xmm.set([0x03020100, 0x07060504, 0, 0], 8);
    cpu.xmm.set([0x13121110, 0x17161514, 0, 0], 12);
    simdUnit.sse(cpu, mem, insn(0x60, 0x66, 2, 3)); // punpcklbw xmm2, xmm3
    expect(xmmBytes(cpu, 2)).toEqual([0, 0x10, 1, 0x11, 2, 0x12, 3, 0x13, 4, 0x14, 5, 0x15, 6, 0x16, 7, 0x17]);
    simdUnit.sse(cpu, mem, insn(0x73, 0x66, 3, 2, { imm8: 3 })); // psrldq xmm2, 3
    expect(xmmBytes(cpu, 2).slice(0, 3)).toEqual([0x11, 2, 0x12]);
    expect(xmmBytes(cpu, 2).slice(13)).toEqual([0, 0, 0]);
    simdUnit.sse(cpu, mem, insn(0x73, 0x66, 7, 2, { imm8: 15 })); // pslldq xmm2, 15
    expect(xmmBytes(cpu, 2)).toEqual([...Array(15).fill(0), 0x11]);
    cpu.xmm.set([0x80ff0001, 0, 0, 0], 20);
    cpu.xmm.set([0x7f010102, 0, 0, 0], 24);
    simdUnit.sse(cpu, mem, insn(0xda, 0x66, 5, 6)); // pminub xmm5, xmm6
    expect(cpu.xmm[20]! >>> 0).toBe(0x7f010001);
    simdUnit.sse(cpu, mem, insn(0xf8, 0x66, 5, 6)); // psubb xmm5, xmm6
    expect(cpu.xmm[20]! >>> 0).toBe(0x0000ffff);
  });

  it('MOVD/MOVQ between GPRs and XMM zero-extend; MOVQ xmm, xmm clears the high half', () => {
    const { cpu, mem } = setup();
    cpu.xmm.fill(-1);
    cpu.gpr[2 * 3] = 0x11223344;
    cpu.gpr[2 * 3 + 1] = 0x55667788;
    simdUnit.sse(cpu, mem, insn(0x6e, 0x66, 0, 3, { rexW: true })); // movq xmm0, rbx
    expect(Array.from(cpu.xmm.subarray(0, 4))).toEqual([0x11223344, 0x55667788, 0, 0]);
    simdUnit.sse(cpu, mem, insn(0x6e, 0x66, 1, 3)); // movd xmm1, ebx
    expect(Array.from(cpu.xmm.subarray(4, 8))).toEqual([0x11223344, 0, 0, 0]);
    simdUnit.sse(cpu, mem, insn(0x7e, 0xf3, 2, 0)); // movq xmm2, xmm0
    expect(Array.from(cpu.xmm.subarray(8, 12))).toEqual([0x11223344, 0x55667788, 0, 0]);
    simdUnit.sse(cpu, mem, insn(0x7e, 0x66, 0, 5)); // movd ebp, xmm0
    expect(cpu.gpr[10]).toBe(0x11223344);
    expect(cpu.gpr[11]).toBe(0);
  });

  it('MMX registers alias the x87 mantissas: TOP = 0, tags valid, EMMS empties', () => {
    const { cpu, mem } = setup();
    cpu.gpr[0] = 0x01020304;
    simdUnit.sse(cpu, mem, insn(0x6e, 0, 3, 0)); // movd mm3, eax
    simdUnit.sse(cpu, mem, insn(0xfc, 0, 3, 3)); // paddb mm3, mm3
    expect(cpu.fpuTag).toBe(0);
    simdUnit.sse(cpu, mem, insn(0x7e, 0, 3, 1)); // movd ecx, mm3
    expect(cpu.gpr[2]).toBe(0x02040608);
    // FXSAVE shows the MMX value as ST3's mantissa with an all-ones exponent
    simdUnit.sse(cpu, mem, insn(0xae, 0, 0, 0, { ea: 0x400, mod: 0 }));
    expect(mem.read32(0x400 + 32 + 48)).toBe(0x02040608);
    expect(mem.read16(0x400 + 32 + 48 + 8)).toBe(0xffff);
    simdUnit.sse(cpu, mem, insn(0x77, 0, 0, 0)); // emms
    expect(cpu.fpuTag).toBe(0xffff);
  });
});

describe('MXCSR, FXSAVE, FXRSTOR', () => {
  it('LDMXCSR rejects reserved bits; STMXCSR stores', () => {
    const { cpu, mem } = setup();
    mem.write32(0x100, 0x10000);
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0xae, 0, 2, 0, { ea: 0x100 })))).toBe(13);
    mem.write32(0x100, 0x7fc0);
    simdUnit.sse(cpu, mem, insn(0xae, 0, 2, 0, { ea: 0x100 }));
    expect(cpu.mxcsr).toBe(0x7fc0);
    simdUnit.sse(cpu, mem, insn(0xae, 0, 3, 0, { ea: 0x104 }));
    expect(mem.read32(0x104)).toBe(0x7fc0);
  });

  it('FXSAVE/FXRSTOR round-trip x87, MMX-free and XMM state; bytes 464..511 untouched; #GP when misaligned', () => {
    const { cpu, mem } = setup();
    // x87: FLD1, FLDPI (stack: ST0 = pi, ST1 = 1)
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xe8));
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xeb));
    for (let k = 0; k < 64; k++) cpu.xmm[k] = k * 0x01010101;
    cpu.mxcsr = 0x1fa0;
    mem.bytes.fill(0xaa, 0x400, 0x600);
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0xae, 0, 0, 0, { ea: 0x408, rexW: true })))).toBe(13);
    simdUnit.sse(cpu, mem, insn(0xae, 0, 0, 0, { ea: 0x400, rexW: true }));
    expect(mem.read16(0x400)).toBe(0x037f);
    expect((mem.read16(0x402) >> 11) & 7).toBe(6); // TOP after two pushes
    expect(mem.read8(0x404)).toBe(0xc0); // physical registers 6 and 7 in use
    expect(mem.read32(0x418)).toBe(0x1fa0);
    expect(mem.read32(0x41c)).toBe(0xffff);
    // ST0 = pi as 80 bits: 4000 C90FDAA2 2168C235
    expect(mem.read32(0x420) >>> 0).toBe(0x2168c235);
    expect(mem.read32(0x424) >>> 0).toBe(0xc90fdaa2);
    expect(mem.read16(0x428)).toBe(0x4000);
    expect(mem.read32(0x400 + 160 + 16 * 15 + 12) >>> 0).toBe(63 * 0x01010101);
    expect(mem.bytes.subarray(0x400 + 464, 0x600).every((b) => b === 0xaa)).toBe(true);

    const saved = mem.bytes.slice(0x400, 0x600);
    simdUnit.reset(cpu);
    expect(cpu.fpuTag).toBe(0xffff);
    simdUnit.sse(cpu, mem, insn(0xae, 0, 1, 0, { ea: 0x400, rexW: true }));
    expect(cpu.mxcsr).toBe(0x1fa0);
    expect(cpu.fpuTag).toBe(0x0fff); // R6, R7 valid (00), the rest empty
    expect(cpu.xmm[63]).toBe(63 * 0x01010101);
    mem.bytes.fill(0xaa, 0x400, 0x600);
    simdUnit.sse(cpu, mem, insn(0xae, 0, 0, 0, { ea: 0x400, rexW: true }));
    expect(mem.bytes.subarray(0x400, 0x400 + 464)).toEqual(saved.subarray(0, 464));
  });

  it('FXRSTOR rejects an MXCSR with reserved bits', () => {
    const { cpu, mem } = setup();
    mem.write32(0x400 + 24, 0x12340000);
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0xae, 0, 1, 0, { ea: 0x400 })))).toBe(13);
  });
});

describe('x87 control and environment', () => {
  it('FNINIT, FNSTCW, FLDCW, FNSTSW AX', () => {
    const { cpu, mem } = setup();
    simdUnit.x87(cpu, mem, x87insn(0xd9, 7, 0, 0x100)); // fnstcw [0x100]
    expect(mem.read16(0x100)).toBe(0x037f);
    mem.write16(0x100, 0x0c7f);
    simdUnit.x87(cpu, mem, x87insn(0xd9, 5, 0, 0x100)); // fldcw
    expect(cpu.fpuControl).toBe(0x0c7f);
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xee)); // fldz
    cpu.gpr[0] = 0x7777ffff;
    simdUnit.x87(cpu, mem, x87op(0xdf, 0xe0)); // fnstsw ax
    expect(cpu.gpr[0]! >>> 0).toBe(0x77773800); // TOP = 7
    simdUnit.x87(cpu, mem, x87op(0xdb, 0xe3)); // fninit
    expect(cpu.fpuControl).toBe(0x037f);
    expect(cpu.fpuStatus).toBe(0);
    expect(cpu.fpuTag).toBe(0xffff);
  });

  it('an unmasked exception is pending until FWAIT/next x87 op raises #MF; FNCLEX clears it', () => {
    const { cpu, mem } = setup();
    mem.write16(0x100, 0x037b); // unmask ZE
    simdUnit.x87(cpu, mem, x87insn(0xd9, 5, 0, 0x100));
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xe8)); // fld1
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xee)); // fldz
    simdUnit.x87(cpu, mem, x87op(0xde, 0xf9)); // fdivp st1, st0 → 1/0
    expect(cpu.fpuStatus & 0x8084).toBe(0x8084); // B, ES, ZE
    expect(faultOf(() => fwait(cpu, mem))).toBe(16);
    expect(faultOf(() => simdUnit.x87(cpu, mem, x87op(0xd9, 0xe8)))).toBe(16);
    simdUnit.x87(cpu, mem, x87op(0xdb, 0xe2)); // fnclex
    expect(faultOf(() => fwait(cpu, mem))).toBe(-1);
  });

  it('FNSAVE / FRSTOR round-trip the stack and reinitialize', () => {
    const { cpu, mem } = setup();
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xea)); // fldl2e
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xe8)); // fld1
    simdUnit.x87(cpu, mem, x87insn(0xdd, 6, 0, 0x200)); // fnsave [0x200]
    expect(cpu.fpuTag).toBe(0xffff);
    expect(mem.read16(0x200 + 28 + 8)).toBe(0x3fff); // ST0 = 1.0
    simdUnit.x87(cpu, mem, x87insn(0xdd, 4, 0, 0x200)); // frstor
    simdUnit.x87(cpu, mem, x87insn(0xdd, 3, 0, 0x300)); // fstp qword [0x300]
    simdUnit.x87(cpu, mem, x87insn(0xdd, 3, 0, 0x308)); // fstp qword [0x308]
    const f = new Float64Array(mem.bytes.slice(0x300, 0x310).buffer);
    expect(f[0]).toBe(1);
    expect(f[1]).toBe(Math.LOG2E);
  });

  it('FCOMI sets ZF/PF/CF through SimdMemory; FCMOVB reads CF', () => {
    const { cpu, mem } = setup();
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xe8)); // fld1
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xee)); // fldz: ST0 = 0, ST1 = 1
    simdUnit.x87(cpu, mem, x87op(0xdb, 0xf1)); // fcomi st0, st1
    expect(mem.flags).toBe(1); // 0 < 1: CF
    simdUnit.x87(cpu, mem, x87op(0xda, 0xc1)); // fcmovb st0, st1
    simdUnit.x87(cpu, mem, x87insn(0xdd, 3, 0, 0x300));
    expect(new Float64Array(mem.bytes.slice(0x300, 0x308).buffer)[0]).toBe(1);
  });

  it('stack underflow stores the indefinite (masked) and sets IE|SF', () => {
    const { cpu, mem } = setup();
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xfa)); // fsqrt on an empty stack
    expect(cpu.fpuStatus & 0x41).toBe(0x41);
  });
});

describe('extended precision conversions', () => {
  it('double → extended → double is exact for specials, denormals and normals', () => {
    const values = [0, -0, 1, -2.5, Math.PI, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, Infinity, -Infinity];
    for (const v of values) {
      doubleToExt(v);
      expect(Object.is(extToDouble(ext.lo, ext.hi, ext.se), v)).toBe(true);
    }
    doubleToExt(1);
    expect([ext.lo, ext.hi, ext.se]).toEqual([0, 0x80000000, 0x3fff]);
    doubleToExt(5e-324);
    expect([ext.lo, ext.hi, ext.se]).toEqual([0, 0x80000000, 16383 - 1074]);
    expect(Number.isNaN(extToDouble(0, 0xc0000000, 0xffff))).toBe(true);
  });

  it('extended → double rounds to nearest even', () => {
    // 1 + 2^-53 (a tie) rounds to 1; 1 + 2^-53 + 2^-63 rounds up
    expect(extToDouble(0x400, 0x80000000, 0x3fff)).toBe(1);
    expect(extToDouble(0x401, 0x80000000, 0x3fff)).toBe(1 + 2 ** -52);
  });
});

describe('x87 odds and ends', () => {
  it('FILD m64 → FBSTP → FBLD → FISTP m64 round-trips an 18-digit value exactly', () => {
    const { cpu, mem } = setup();
    const v = 123456789012345678n;
    new DataView(mem.bytes.buffer).setBigInt64(0x100, -v, true);
    simdUnit.x87(cpu, mem, x87insn(0xdf, 5, 0, 0x100)); // fild qword
    simdUnit.x87(cpu, mem, x87insn(0xdf, 6, 0, 0x110)); // fbstp
    expect(hexBytes(mem.bytes.subarray(0x110, 0x11a))).toBe('78 56 34 12 90 78 56 34 12 80');
    simdUnit.x87(cpu, mem, x87insn(0xdf, 4, 0, 0x110)); // fbld
    simdUnit.x87(cpu, mem, x87insn(0xdf, 7, 0, 0x120)); // fistp qword
    expect(new DataView(mem.bytes.buffer).getBigInt64(0x120, true)).toBe(-v);
  });

  it('a value written to cpu.st from outside (snapshot restore) wins over a stale 80-bit image', () => {
    const { cpu, mem } = setup();
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xeb)); // fldpi → R7
    cpu.st[7] = 2.5;
    simdUnit.x87(cpu, mem, x87insn(0xdd, 3, 0, 0x100)); // fstp qword
    expect(new DataView(mem.bytes.buffer).getFloat64(0x100, true)).toBe(2.5);
  });

  it('FSIN / FCOS / FPTAN / FPATAN are close to the libm values and raise PE', () => {
    const { cpu, mem } = setup();
    new DataView(mem.bytes.buffer).setFloat64(0x100, 0.5, true);
    simdUnit.x87(cpu, mem, x87insn(0xdd, 0, 0, 0x100)); // fld 0.5
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xfe)); // fsin
    simdUnit.x87(cpu, mem, x87insn(0xdd, 3, 0, 0x108));
    expect(new DataView(mem.bytes.buffer).getFloat64(0x108, true)).toBeCloseTo(Math.sin(0.5), 15);
    expect(cpu.fpuStatus & 0x20).toBe(0x20);
    simdUnit.x87(cpu, mem, x87insn(0xdd, 0, 0, 0x100));
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xf2)); // fptan: ST0 = 1, ST1 = tan
    simdUnit.x87(cpu, mem, x87op(0xd9, 0xf3)); // fpatan: atan2(tan(0.5), 1)
    simdUnit.x87(cpu, mem, x87insn(0xdd, 3, 0, 0x110));
    expect(new DataView(mem.bytes.buffer).getFloat64(0x110, true)).toBeCloseTo(0.5, 15);
    expect((cpu.fpuStatus >> 11) & 7).toBe(0);
  });
});

function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

describe('less common SSE/MMX forms', () => {
  it('MASKMOVDQU stores the selected bytes at RDI; MOVNTI stores a GPR', () => {
    const { cpu, mem } = setup();
    cpu.gpr[14] = 0x300; // RDI
    cpu.xmmU8.set([...Array(16).keys()].map((k) => 0xa0 + k), 0);
    cpu.xmmU8.set([0x80, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff], 16);
    simdUnit.sse(cpu, mem, insn(0xf7, 0x66, 0, 1));
    expect(Array.from(mem.bytes.subarray(0x300, 0x310))).toEqual([0xa0, 0, 0xa2, ...Array(12).fill(0), 0xaf]);
    cpu.gpr[2] = 0x12345678;
    cpu.gpr[3] = -1;
    simdUnit.sse(cpu, mem, insn(0xc3, 0, 1, 0, { ea: 0x320, rexW: true }));
    expect(mem.read32(0x320)).toBe(0x12345678);
    expect(mem.read32(0x324)).toBe(0xffffffff);
  });

  it('PINSRW / PEXTRW / PSHUFW on MMX and CVTPI2PS / CVTTPS2PI', () => {
    const { cpu, mem } = setup();
    cpu.gpr[0] = 0xbeef;
    simdUnit.sse(cpu, mem, insn(0xc4, 0, 1, 0, { imm8: 2 })); // pinsrw mm1, eax, 2
    simdUnit.sse(cpu, mem, insn(0x70, 0, 2, 1, { imm8: 0xaa })); // pshufw mm2, mm1, all lanes ← word 2
    simdUnit.sse(cpu, mem, insn(0xc5, 0, 3, 2, { imm8: 3 })); // pextrw ebx, mm2, 3
    expect(cpu.gpr[6]).toBe(0xbeef);
    cpu.gpr[0] = 7;
    simdUnit.sse(cpu, mem, insn(0x6e, 0, 4, 0)); // movd mm4, eax → (7, 0)
    simdUnit.sse(cpu, mem, insn(0x2a, 0, 5, 4)); // cvtpi2ps xmm5, mm4
    expect(Array.from(cpu.xmmF32.subarray(20, 22))).toEqual([7, 0]);
    cpu.xmmF32[20] = -2.75;
    simdUnit.sse(cpu, mem, insn(0x2c, 0, 6, 5)); // cvttps2pi mm6, xmm5
    simdUnit.sse(cpu, mem, insn(0x7e, 0, 6, 1)); // movd ecx, mm6
    expect(cpu.gpr[2]).toBe(-2);
  });

  it('CVTSD2SI honours MXCSR.RC; overflow gives the integer indefinite with IE', () => {
    const { cpu, mem } = setup();
    cpu.xmmF64[0] = 2.5;
    simdUnit.sse(cpu, mem, insn(0x2d, 0xf2, 1, 0)); // cvtsd2si ecx, xmm0 (nearest even)
    expect(cpu.gpr[2]).toBe(2);
    cpu.mxcsr = 0x1f80 | (2 << 13); // round up
    simdUnit.sse(cpu, mem, insn(0x2d, 0xf2, 1, 0));
    expect(cpu.gpr[2]).toBe(3);
    expect(cpu.mxcsr & 0x20).toBe(0x20); // PE
    cpu.xmmF64[0] = 1e10;
    simdUnit.sse(cpu, mem, insn(0x2d, 0xf2, 1, 0));
    expect(cpu.gpr[2]! >>> 0).toBe(0x80000000);
    expect(cpu.mxcsr & 1).toBe(1);
  });

  it('an unmasked SSE exception raises #XM (with CR4.OSXMMEXCPT) and leaves the destination alone', () => {
    const { cpu, mem } = setup();
    cpu.cr4 |= 1 << 10;
    cpu.mxcsr = 0x1f80 & ~(1 << 9); // unmask ZE
    cpu.xmmF64[0] = 1;
    cpu.xmmF64[2] = 0;
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0x5e, 0xf2, 0, 1)))).toBe(19); // divsd xmm0, xmm1
    expect(cpu.xmmF64[0]).toBe(1);
    expect(cpu.mxcsr & 4).toBe(4);
  });
});
