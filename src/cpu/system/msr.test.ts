import { describe, it, expect } from 'vitest';
import { CpuFault } from '../system-api.js';
import { Efer, SReg } from '../state.js';
import { MSR_APIC_BASE, MSR_EFER, MSR_FS_BASE, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_MISC_ENABLE, MSR_PAT, MSR_STAR, MSR_TSC, rdmsr, wrmsr } from './msr.js';
import { longModeHost, type TestHost, fault } from './testhost.js';
import { cpuidLeaf } from './cpuid.js';

function wr(h: TestHost, msr: number, lo: number, hi: number): void {
  h.s.gpr[2] = msr | 0;
  h.s.gpr[0] = lo | 0;
  h.s.gpr[4] = hi | 0;
  wrmsr(h);
}
function rd(h: TestHost, msr: number): [number, number] {
  h.s.gpr[2] = msr | 0;
  h.s.gpr[1] = -1;
  rdmsr(h);
  expect(h.s.gpr[1]).toBe(0);
  return [h.s.gpr[0]! >>> 0, h.s.gpr[4]! >>> 0];
}
describe('MSRs', () => {
  it('round-trips the syscall MSRs and segment bases', () => {
    const h = longModeHost();
    wr(h, MSR_STAR, 0, 0x00230010);
    expect(rd(h, MSR_STAR)).toEqual([0, 0x00230010]);
    wr(h, MSR_LSTAR, 0x81a00000, 0xffffffff);
    expect(h.s.lstar).toBe(-0x7e600000);
    expect(rd(h, MSR_LSTAR)).toEqual([0x81a00000, 0xffffffff]);
    wr(h, MSR_FS_BASE, 0x1000, 0x7fff);
    expect(h.s.segBase[SReg.FS]).toBe(0x7fff_0000_1000);
    wr(h, MSR_KERNEL_GS_BASE, 0x2000, 0xffff8880);
    expect(h.s.kernelGsBase).toBe(-0x777f_ffff_e000);
    expect(fault(() => wr(h, MSR_LSTAR, 0, 0x8000))).toEqual(new CpuFault(13, 0));
  });

  it('IA32_APIC_BASE: moves and disables the APIC through the host, CPUID.1:EDX.APIC follows EN, reserved bits #GP', () => {
    const h = longModeHost();
    const seen: number[] = [];
    (h as TestHost & { apicBaseChanged(v: number): void }).apicBaseChanged = (v) => seen.push(v);
    const apicBit = (): number => {
      const out = new Uint32Array(4);
      cpuidLeaf(h.s, 1, 0, out);
      return (out[3]! >> 9) & 1;
    };
    expect(apicBit()).toBe(1);
    wr(h, MSR_APIC_BASE, 0xfed4_0800, 0); // relocated, enabled
    expect(rd(h, MSR_APIC_BASE)).toEqual([0xfed4_0900, 0]); // BSP kept
    wr(h, MSR_APIC_BASE, 0xfee0_0000, 0); // back, globally disabled
    expect(apicBit()).toBe(0);
    expect(seen).toEqual([0xfed4_0900, 0xfee0_0100]);
    for (const [lo, hi] of [[0xfee0_0801, 0], [0xfee0_0c00, 0], [0xfee0_0800, 1]] as const) {
      expect(fault(() => wr(h, MSR_APIC_BASE, lo, hi))).toEqual(new CpuFault(13, 0));
    }
    wr(h, MSR_APIC_BASE, 0xfee0_0800, 0);
    expect(apicBit()).toBe(1);
  });

  it('keeps both halves of IA32_MISC_ENABLE (bit 34, XD disable, is in the high one)', () => {
    const h = longModeHost();
    wr(h, MSR_MISC_ENABLE, 0x1, 0x4);
    expect(rd(h, MSR_MISC_ENABLE)).toEqual([0x1, 0x4]);
  });

  it('sets EFER.NXE with a TLB flush and refuses reserved bits and LMA changes', () => {
    const h = longModeHost();
    const [lo] = rd(h, MSR_EFER);
    wr(h, MSR_EFER, lo & ~Efer.NXE, 0);
    expect(h.s.efer & Efer.NXE).toBe(0);
    expect(h.flushes).toContain('all');
    expect(fault(() => wr(h, MSR_EFER, lo | 0x2, 0))).toEqual(new CpuFault(13, 0));
    expect(fault(() => wr(h, MSR_EFER, lo & ~Efer.LMA, 0))).toEqual(new CpuFault(13, 0));
  });

  it('#GP for unknown and unadvertised MSRs, and for invalid PAT types', () => {
    const h = longModeHost();
    expect(fault(() => rd(h, 0x10a))).toEqual(new CpuFault(13, 0)); // ARCH_CAPABILITIES
    expect(fault(() => rd(h, 0x6e0))).toEqual(new CpuFault(13, 0)); // TSC_DEADLINE
    expect(fault(() => rd(h, 0xc0011029))).toEqual(new CpuFault(13, 0));
    expect(fault(() => wr(h, MSR_PAT, 0x02, 0))).toEqual(new CpuFault(13, 0));
    wr(h, MSR_PAT, 0x00070106, 0x00070406);
    expect(rd(h, MSR_PAT)).toEqual([0x00070106, 0x00070406]);
  });

  it('stores MTRRs and offsets the TSC on writes', () => {
    const h = longModeHost();
    expect(rd(h, 0xfe)[0]).toBe(0x508);
    expect(rd(h, 0x2ff)).toEqual([0x806, 0]);
    wr(h, 0x2ff, 0xc06, 0);
    expect(rd(h, 0x2ff)).toEqual([0xc06, 0]);
    h.tsc = 1000;
    wr(h, MSR_TSC, 5000, 0);
    expect(h.s.tscOffset).toBe(4000);
  });

  it('requires CPL 0', () => {
    const h = longModeHost();
    h.s.cpl = 3;
    expect(fault(() => rd(h, MSR_EFER))).toEqual(new CpuFault(13, 0));
  });
});
