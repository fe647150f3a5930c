/**
 * XSAVE, XSAVEOPT and XRSTOR in the SIMD unit (the core's #UD/#NM checks are tested in
 * src/cpu/system/xcr.test.ts): which bytes each requested-feature bitmap writes, the header, the
 * init of components whose XSTATE_BV bit is clear, and XRSTOR's #GP checks.
 */
import { describe, expect, it } from 'vitest';
import { CpuState } from '../state.js';
import { simdUnit } from './index.js';
import { FlatMemory, faultOf, insn, x87op } from './testing.js';

const CR4_OSFXSR = 1 << 9;
const AREA = 0x400;
const FILL = 0xaa;

/** A CPU with two x87 registers loaded (FLD1, FLDPI), every XMM byte set, MXCSR 0x1fa0. */
function setup(xcr0 = 3): { cpu: CpuState; mem: FlatMemory } {
  const cpu = new CpuState();
  cpu.cr4 |= CR4_OSFXSR;
  simdUnit.reset(cpu);
  cpu.xcr0 = xcr0;
  const mem = new FlatMemory();
  simdUnit.x87(cpu, mem, x87op(0xd9, 0xe8));
  simdUnit.x87(cpu, mem, x87op(0xd9, 0xeb));
  for (let k = 0; k < 64; k++) cpu.xmm[k] = (k + 1) * 0x01010101;
  cpu.mxcsr = 0x1fa0;
  mem.bytes.fill(FILL, AREA, AREA + 0x300);
  return { cpu, mem };
}

/** EDX:EAX = the requested-feature mask. */
function request(cpu: CpuState, lo: number, hi = 0): void {
  cpu.gpr[0] = lo;
  cpu.gpr[4] = hi;
}

const xsave = (ea: number, extra = {}): ReturnType<typeof insn> => insn(0xae, 0, 4, 0, { ea, ...extra });
const xrstor = (ea: number, extra = {}): ReturnType<typeof insn> => insn(0xae, 0, 5, 0, { ea, ...extra });
const xsaveopt = (ea: number, extra = {}): ReturnType<typeof insn> => insn(0xae, 0, 6, 0, { ea, ...extra });
const fxsave = (ea: number, extra = {}): ReturnType<typeof insn> => insn(0xae, 0, 0, 0, { ea, ...extra });

/** Is every byte of [from, to) of the area still the fill byte? */
function untouched(mem: FlatMemory, from: number, to: number): boolean {
  return mem.bytes.subarray(AREA + from, AREA + to).every((b) => b === FILL);
}

describe('XSAVE', () => {
  it('with RFBM = 3 writes FXSAVE64\'s legacy region and sets XSTATE_BV bits 0 and 1, nothing else', () => {
    const { cpu, mem } = setup();
    request(cpu, 0xffffffff, 0xffffffff); // RFBM = XCR0 AND EDX:EAX = 3
    simdUnit.sse(cpu, mem, xsave(AREA, { rexW: true }));
    const image = mem.bytes.slice(AREA, AREA + 576);
    simdUnit.sse(cpu, mem, fxsave(AREA + 0x400, { rexW: true }));
    expect(image.subarray(0, 416)).toEqual(mem.bytes.subarray(AREA + 0x400, AREA + 0x400 + 416));
    expect(untouched(mem, 416, 512)).toBe(true); // reserved, and available to software
    expect(mem.read32(AREA + 512) >>> 0).toBe(0xaaaaaaab); // XSTATE_BV: old bits kept, RFBM bits set
    expect(mem.read32(AREA + 516) >>> 0).toBe(0xaaaaaaaa);
    expect(untouched(mem, 520, 0x300)).toBe(true); // XCOMP_BV and the rest of the header
  });

  it('with RFBM = 1 writes the x87 state only, without MXCSR', () => {
    const { cpu, mem } = setup();
    request(cpu, 1);
    simdUnit.sse(cpu, mem, xsave(AREA));
    expect(mem.read16(AREA)).toBe(0x037f);
    expect(mem.read16(AREA + 0x28)).toBe(0x4000); // ST0 = pi, exponent
    expect(untouched(mem, 24, 32)).toBe(true);
    expect(untouched(mem, 160, 512)).toBe(true);
    expect(mem.read8(AREA + 512)).toBe(0xab);
  });

  it('with RFBM = 2 writes MXCSR, MXCSR_MASK and the XMM registers only', () => {
    const { cpu, mem } = setup();
    request(cpu, 2);
    simdUnit.sse(cpu, mem, xsave(AREA));
    expect(untouched(mem, 0, 24)).toBe(true);
    expect(untouched(mem, 32, 160)).toBe(true);
    expect(mem.read32(AREA + 24)).toBe(0x1fa0);
    expect(mem.read32(AREA + 28)).toBe(0xffff);
    expect(mem.read32(AREA + 160 + 16 * 15 + 12) >>> 0).toBe(64 * 0x01010101);
    expect(mem.read8(AREA + 512)).toBe(0xaa | 2);
  });

  it('RFBM is XCR0 AND EDX:EAX: with XCR0 = 1 the SSE state is not saved', () => {
    const { cpu, mem } = setup(1);
    request(cpu, 3);
    simdUnit.sse(cpu, mem, xsave(AREA));
    expect(untouched(mem, 24, 32)).toBe(true);
    expect(untouched(mem, 160, 512)).toBe(true);
    expect(mem.read8(AREA + 512)).toBe(0xab);
  });

  it('outside 64-bit mode saves XMM0-7 only', () => {
    const { cpu, mem } = setup();
    request(cpu, 3);
    simdUnit.sse(cpu, mem, xsave(AREA, { long: false }));
    expect(mem.read32(AREA + 160 + 16 * 7 + 12) >>> 0).toBe(32 * 0x01010101);
    expect(untouched(mem, 288, 512)).toBe(true);
  });

  it('#GP(0) unless the area is 64-byte aligned; a #PF leaves memory untouched', () => {
    const { cpu, mem } = setup();
    request(cpu, 3);
    for (const off of [16, 32, 48, 8]) expect(faultOf(() => simdUnit.sse(cpu, mem, xsave(AREA + off)))).toBe(13);
    expect(faultOf(() => simdUnit.sse(cpu, mem, xsaveopt(AREA + 16)))).toBe(13);
    expect(faultOf(() => simdUnit.sse(cpu, mem, xrstor(AREA + 32)))).toBe(13);
    expect(untouched(mem, 0, 0x300)).toBe(true);
    // the header lies beyond the end of memory: nothing of the legacy region may be written
    const end = mem.bytes.length - 512;
    mem.bytes.fill(FILL, end, end + 512);
    expect(faultOf(() => simdUnit.sse(cpu, mem, xsave(end)))).toBe(14);
    expect(mem.bytes.subarray(end).every((b) => b === FILL)).toBe(true);
  });

  it('XSAVEOPT saves as XSAVE (XINUSE reads as all ones)', () => {
    const a = setup();
    const b = setup();
    request(a.cpu, 3);
    request(b.cpu, 3);
    simdUnit.sse(a.cpu, a.mem, xsave(AREA, { rexW: true }));
    simdUnit.sse(b.cpu, b.mem, xsaveopt(AREA, { rexW: true }));
    expect(b.mem.bytes).toEqual(a.mem.bytes);
  });

  it('rejects the register form and mandatory prefixes (#UD)', () => {
    const { cpu, mem } = setup();
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0xae, 0, 4, 0)))).toBe(6);
    expect(faultOf(() => simdUnit.sse(cpu, mem, insn(0xae, 0x66, 6, 0, { ea: AREA })))).toBe(6);
  });
});

describe('XRSTOR', () => {
  /** Save the state with RFBM = 3, then scramble the CPU's x87/SSE state. */
  function saved(): { cpu: CpuState; mem: FlatMemory } {
    const t = setup();
    request(t.cpu, 3);
    t.mem.bytes.fill(0, AREA + 512, AREA + 576);
    simdUnit.sse(t.cpu, t.mem, xsave(AREA, { rexW: true }));
    simdUnit.reset(t.cpu);
    t.cpu.xmm.fill(-1);
    t.cpu.mxcsr = 0x1f80;
    return t;
  }

  it('restores what XSAVE saved', () => {
    const { cpu, mem } = saved();
    const image = mem.bytes.slice(AREA, AREA + 416);
    simdUnit.sse(cpu, mem, xrstor(AREA, { rexW: true }));
    expect(cpu.mxcsr).toBe(0x1fa0);
    expect(cpu.fpuTag).toBe(0x0fff);
    expect(cpu.xmm[63]).toBe(64 * 0x01010101);
    mem.bytes.fill(0, AREA + 0x400, AREA + 0x800);
    simdUnit.sse(cpu, mem, fxsave(AREA + 0x400, { rexW: true }));
    expect(mem.bytes.subarray(AREA + 0x400, AREA + 0x400 + 416)).toEqual(image);
  });

  it('puts a component whose XSTATE_BV bit is clear in its initial configuration; MXCSR still comes from memory', () => {
    const { cpu, mem } = saved();
    mem.write32(AREA + 512, 0);
    simdUnit.sse(cpu, mem, xrstor(AREA));
    expect(cpu.fpuControl).toBe(0x037f);
    expect(cpu.fpuStatus).toBe(0);
    expect(cpu.fpuTag).toBe(0xffff);
    expect(cpu.xmm.every((v) => v === 0)).toBe(true);
    expect(cpu.mxcsr).toBe(0x1fa0);
    // the x87 registers are zero too: FXSAVE shows them so
    mem.bytes.fill(FILL, AREA + 0x400, AREA + 0x600);
    simdUnit.sse(cpu, mem, fxsave(AREA + 0x400));
    expect(mem.bytes.subarray(AREA + 0x400 + 8, AREA + 0x400 + 24).every((b) => b === 0)).toBe(true); // FIP, FDP
    expect(mem.bytes.subarray(AREA + 0x400 + 32, AREA + 0x400 + 160).every((b) => b === 0)).toBe(true);
  });

  it('touches only the RFBM components', () => {
    const { cpu, mem } = saved();
    request(cpu, 2);
    simdUnit.sse(cpu, mem, xrstor(AREA));
    expect(cpu.fpuTag).toBe(0xffff); // x87 not restored
    expect(cpu.xmm[63]).toBe(64 * 0x01010101);
    cpu.xmm.fill(-1);
    request(cpu, 1);
    mem.write32(AREA + 24, 0xffffffff); // MXCSR is not read without RFBM bit 1
    simdUnit.sse(cpu, mem, xrstor(AREA));
    expect(cpu.fpuTag).toBe(0x0fff);
    expect(cpu.xmm[0]).toBe(-1);
    expect(cpu.mxcsr).toBe(0x1fa0);
  });

  it('outside 64-bit mode leaves XMM8-15 alone, also when initializing', () => {
    const { cpu, mem } = saved();
    mem.write32(AREA + 512, 1);
    simdUnit.sse(cpu, mem, xrstor(AREA, { long: false }));
    expect(cpu.xmm.subarray(0, 32).every((v) => v === 0)).toBe(true);
    expect(cpu.xmm.subarray(32).every((v) => v === -1)).toBe(true);
  });

  it('#GP(0) for XSTATE_BV bits beyond XCR0, a nonzero XCOMP_BV or bytes 16..23, reserved MXCSR bits — state unchanged', () => {
    const cases: [number, number][] = [
      [512, 7], [512, 0x80000003], [516, 1], [520, 3], [524, 0x80000000], [528, 1], [532, 0x100], [24, 0x10000],
    ];
    for (const [off, v] of cases) {
      const { cpu, mem } = saved();
      mem.write32(AREA + off, v);
      expect(faultOf(() => simdUnit.sse(cpu, mem, xrstor(AREA))), `offset ${off}`).toBe(13);
      expect(cpu.fpuTag).toBe(0xffff);
      expect(cpu.xmm[0]).toBe(-1);
      expect(cpu.mxcsr).toBe(0x1f80);
    }
    // XSTATE_BV bit 1 with XCR0 = 1
    const { cpu, mem } = saved();
    cpu.xcr0 = 1;
    expect(faultOf(() => simdUnit.sse(cpu, mem, xrstor(AREA)))).toBe(13);
  });

  it('does not check header bytes 24..63', () => {
    const { cpu, mem } = saved();
    mem.bytes.fill(0xff, AREA + 536, AREA + 576);
    simdUnit.sse(cpu, mem, xrstor(AREA));
    expect(cpu.mxcsr).toBe(0x1fa0);
  });
});
