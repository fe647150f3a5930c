import { describe, it, expect } from 'vitest';
import { CpuState } from '../state.js';
import { CPUID_BRAND, cpuid, cpuidLeaf } from './cpuid.js';
import { features } from '../features.js';
import { TestHost } from './testhost.js';

function leaf(l: number, sub = 0): Uint32Array {
  const out = new Uint32Array(4);
  cpuidLeaf(new CpuState(), l, sub, out);
  return out;
}
function text(words: number[]): string {
  return words.map((w) => String.fromCharCode(w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24)).join('');
}

describe('cpuid', () => {
  it('reports GenuineIntel, the brand string and address sizes', () => {
    const l0 = leaf(0);
    expect(text([l0[1]!, l0[3]!, l0[2]!])).toBe('GenuineIntel');
    const brand = text([...leaf(0x80000002), ...leaf(0x80000003), ...leaf(0x80000004)]);
    expect(brand.replace(/\0+$/, '')).toBe(CPUID_BRAND);
    expect(leaf(0x80000008)[0]).toBe(0x3028);
  });

  it('advertises the x86-64 baseline and the hypervisor bit, nothing unimplemented', () => {
    const l1 = leaf(1);
    const edx = l1[3]!;
    for (const bit of [0, 3, 4, 5, 6, 8, 9, 13, 15, 16, 19, 23, 24, 25, 26]) expect((edx >>> bit) & 1).toBe(1);
    expect(l1[2]! >>> 31).toBe(1);
    expect(l1[2]! & (1 << 21)).toBe(0); // x2APIC
    expect(l1[2]! & (1 << 24)).toBe(0); // TSC-deadline
    expect((l1[2]! >>> 26) & 1).toBe(features.xsave ? 1 : 0); // XSAVE
    expect(l1[2]! & 1).toBe(features.sse3 ? 1 : 0);
    const ext = leaf(0x80000001);
    expect(ext[3]! & ((1 << 11) | (1 << 20) | (1 << 29))).toBe(((1 << 11) | (1 << 20) | (1 << 29)) >>> 0);
    expect(ext[2]! & 1).toBe(1);
  });

  it('advertises RDTSCP, RDPID, CLFLUSHOPT, CLWB, FSGSBASE and UMIP exactly when their features are on', () => {
    const names = ['rdtscp', 'rdpid', 'clflushopt', 'clwb', 'fsgsbase', 'umip'] as const;
    const saved = names.map((n) => features[n]);
    try {
      for (const on of [true, false]) {
        for (const n of names) features[n] = on;
        const bit = (v: number, b: number): boolean => ((v >>> b) & 1) === 1;
        const l7 = leaf(7);
        expect(bit(leaf(0x80000001)[3]!, 27)).toBe(on); // RDTSCP
        expect(bit(l7[2]!, 22)).toBe(on); // RDPID
        expect(bit(l7[1]!, 23)).toBe(on); // CLFLUSHOPT
        expect(bit(l7[1]!, 24)).toBe(on); // CLWB
        expect(bit(l7[1]!, 0)).toBe(on); // FSGSBASE
        expect(bit(l7[2]!, 2)).toBe(on); // UMIP
      }
    } finally {
      names.forEach((n, i) => (features[n] = saved[i]!));
    }
  });

  it('advertises SMEP and SMAP (leaf 7 EBX bits 7 and 20) exactly as features.ts says', () => {
    const saved = [features.smep, features.smap];
    try {
      for (const [smep, smap] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        features.smep = smep;
        features.smap = smap;
        const ebx = leaf(7)[1]!;
        expect([(ebx >>> 7) & 1, (ebx >>> 20) & 1]).toEqual([smep ? 1 : 0, smap ? 1 : 0]);
      }
    } finally {
      [features.smep, features.smap] = saved as [boolean, boolean];
    }
  });

  it('writes EAX..EDX with cleared upper halves', () => {
    const h = new TestHost();
    h.s.gpr[0] = 0x80000008;
    h.s.gpr[1] = 5;
    h.s.gpr[7] = 9;
    cpuid(h);
    expect(h.s.gpr[0]).toBe(0x3028);
    expect(h.s.gpr[1]).toBe(0);
    expect(h.s.gpr[7]).toBe(0);
  });
});
