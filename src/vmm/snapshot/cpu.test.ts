import { describe, expect, it } from 'vitest';
import { applyEntryState } from '../../cpu/system/entry.js';
import { isNmiBlocked } from '../../cpu/system/interrupts.js';
import { readMsr, readMsrHi, writeMsr } from '../../cpu/system/msr.js';
import { setRegExt } from '../../cpu/fpu/x87.js';
import { applyCpu, parseCpu, saveCpu, type CpuSnapshot } from './cpu.js';
import { FakeClock } from '../../devices/testing/fake-clock.js';
import { buildRig, cpuFields } from './testing.js';

/** Deterministic pseudo-random 32-bit values. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    return x;
  };
}

const CLOCK = 1e9;

/** A CPU in long mode with every register, segment, MSR, x87/SSE and event field set to something. */
function busyCpu(seed: number, backend: 'interp' | 'wasm' = 'interp') {
  const r = buildRig({ cpu: backend, virtio: false });
  const cpu = r.cpu;
  const s = cpu.s;
  applyEntryState(cpu, { mode: 'long64', rip: -0x7f00_0000 + 0x123, regs: {}, cr3: 0x1000, gdt: { base: 0x500, limit: 0x3f, cs: 0x10, ds: 0x18 } });
  const next = rng(seed);
  for (let i = 0; i < 32; i++) s.gpr[i] = next() | 0;
  cpu.setRflags(0x246 | (next() & 0x8d5) | 0x40000, 0xffff_ffff);
  s.segBase[4] = -0x7777_0000_0000 + next(); // FS base, canonical high
  s.segBase[5] = next();
  s.segSel[4] = 0x2b;
  s.segAttr[4] = 0xc0f3;
  s.ldtrSel = 0x28;
  s.ldtrBase = 0x7000;
  s.ldtrLimit = 0xff;
  s.trSel = 0x40;
  s.trBase = -0x7e00_0000_0000;
  s.trLimit = 0x67;
  s.trAttr = 0x8b;
  s.idtrBase = -0x7f00_0000 + 0x4000;
  s.idtrLimit = 0xfff;
  s.cr0 = (s.cr0 | 0x2) & ~0x8; // MP, no TS
  s.cr2 = -0x1234_5000;
  s.cr4 |= 0x600 | 0x80 | 0x800 | 0x10000 | 0x40000; // OSFXSR, OSXMMEXCPT, PGE, UMIP, FSGSBASE, OSXSAVE
  s.xcr0 = 3; // x87 and SSE
  s.cr8 = 5;
  s.efer |= 0x801; // SCE, NXE
  s.cpl = 0;
  for (const [msr, lo, hi] of [
    [0x174, 0x10, 0], [0x175, 0x1000, 0xffff_8000], [0x176, 0x2000, 0xffff_8000], [0x1a0, 0x850089, 0],
    [0x277, 0x00070106, 0x00070406], [0xc000_0081, 0, 0x0023_0010], [0xc000_0082, 0x8100_0000, 0xffff_ffff],
    [0xc000_0083, 0x8100_0040, 0xffff_ffff], [0xc000_0084, 0x47700, 0], [0xc000_0102, 0x1234_0000, 0xffff_8880],
    [0x2ff, 0xc06, 0], [0x200, 0x6, 0], [0x201, 0xfff0_0800, 0xff], [0x250, 0x0606_0606, 0x0606_0606], [0x1d9, 1, 0],
    [0x4b56_4d01, 0x5001, 0], [0x4b56_4d00, 0x6000, 0], [0x10, 0x1234_5678, 0x9],
  ] as const) {
    writeMsr(cpu, msr, lo, hi);
  }
  s.tscAux = 7;
  // x87: a mix of values, an MMX value (exact 64-bit payload), a NaN with a payload, empties
  for (let p = 0; p < 8; p++) s.st[p] = Math.PI * (p - 3);
  setRegExt(s, 2, 0xdead_beef | 0, 0x1234_5678, 0xffff);
  setRegExt(s, 5, 0x1, 0xc000_0001 | 0, 0x7fff);
  s.fpuStatus = (5 << 11) | 0x20;
  s.fpuTag = 0b11_00_00_10_01_00_11_00;
  s.fpuControl = 0x027f;
  s.fpuOpcode = 0x5d9;
  s.fpuIp = -0x7f00_0000 + 0x789;
  s.fpuDp = 0x20_0010;
  s.mxcsr = 0x1fa0;
  for (let i = 0; i < 64; i++) s.xmm[i] = next() | 0;
  s.dr[0] = 0x40_1000;
  s.dr[3] = -0x7f00_0000;
  s.dr[6] = 0xffff4ff1;
  s.dr[7] = 0x403;
  s.halted = true;
  s.interruptShadow = false;
  return { r, cpu };
}

const viaJson = (c: CpuSnapshot): unknown => JSON.parse(JSON.stringify(c));

describe('CPU snapshot', () => {
  it.each(['interp', 'wasm'] as const)('every architectural field round-trips into another CPU (%s)', (backend) => {
    const { cpu } = busyCpu(7, backend);
    const snap = saveCpu(cpu, CLOCK);
    const b = buildRig({ cpu: backend, virtio: false });
    applyCpu(b.cpu, parseCpu(viaJson(snap)), CLOCK);
    expect(cpuFields(b.cpu)).toEqual(cpuFields(cpu));
    expect(saveCpu(b.cpu, CLOCK)).toEqual(snap);
    // the side tables: MTRRs and kvm-clock MSRs, exact x87 images
    for (const msr of [0x2ff, 0x201, 0x250, 0x1d9, 0x4b56_4d01, 0x10]) {
      expect([readMsr(b.cpu, msr), readMsrHi()]).toEqual([readMsr(cpu, msr), readMsrHi()]);
    }
  });

  it('uses the names of KVM\'s structures and unsigned hex for 64-bit values', () => {
    const { cpu } = busyCpu(3);
    const snap = saveCpu(cpu, CLOCK);
    expect(Object.keys(snap.regs).sort()).toEqual(['r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'r8', 'r9', 'rax', 'rbp', 'rbx', 'rcx', 'rdi', 'rdx', 'rflags', 'rip', 'rsi', 'rsp']);
    expect(snap.regs.rip).toBe('0xffffffff81000123');
    expect(snap.sregs.cs).toMatchObject({ l: 1, db: 0, present: 1, s: 1, dpl: 0 });
    expect(snap.sregs.efer).toBe('0xd01');
    expect(snap.fpu.fpr[(2 - 5) & 7]).toBe('0xffff12345678deadbeef'); // physical R2 is ST((2 - TOP) & 7)
    expect(snap.msrs.find((m) => m.index === 0xc000_0082)!.data).toBe('0xffffffff81000000');
    expect(snap.events).toEqual({ halted: true, interruptShadow: false, nmiMasked: false });
  });

  it('the TSC continues from its value at the snapshot time', () => {
    const { cpu } = busyCpu(1);
    const snap = saveCpu(cpu, CLOCK);
    const tsc = BigInt(snap.msrs.find((m) => m.index === 0x10)!.data);
    const b = buildRig({ cpu: 'interp', virtio: false });
    // the restored machine's clock reads the snapshot time (restoreMachine sets it)
    (b.clock as FakeClock).now = CLOCK;
    applyCpu(b.cpu, parseCpu(viaJson(snap)), CLOCK);
    const lo = b.cpu.readTsc();
    expect((BigInt(b.cpu.scratchHi >>> 0) << 32n) | BigInt(lo >>> 0)).toBe(tsc);
  });

  it('real mode and 32-bit protected mode keep RIP unsigned', () => {
    for (const entry of [{ mode: 'real16', rip: 0xf_fff0, realCs: 0xf000, regs: {} }, { mode: 'protected32', rip: 0xffff_fff0, regs: {} }] as const) {
      const a = buildRig({ virtio: false });
      applyEntryState(a.cpu, entry);
      const snap = saveCpu(a.cpu, CLOCK);
      const b = buildRig({ virtio: false });
      applyCpu(b.cpu, parseCpu(viaJson(snap)), CLOCK);
      expect(cpuFields(b.cpu)).toEqual(cpuFields(a.cpu));
    }
  });

  it('CR4.SMEP/SMAP and EFLAGS.AC round-trip; the restored CPU holds no SMAP grants in its TLB', () => {
    const { cpu } = busyCpu(5, 'wasm');
    cpu.s.cr4 |= 0x30_0000;
    const snap = saveCpu(cpu, CLOCK);
    expect(snap.sregs.cr4).toBe('0x350ea0'); // busyCpu's OSFXSR, OSXMMEXCPT, PGE, UMIP, FSGSBASE, OSXSAVE, with SMEP and SMAP
    const b = buildRig({ cpu: 'wasm', virtio: false });
    applyCpu(b.cpu, parseCpu(viaJson(snap)), CLOCK);
    expect(b.cpu.s.cr4 & 0x30_0000).toBe(0x30_0000);
    expect(b.cpu.getRflags() & 0x4_0000).toBe(0x4_0000);
    expect(b.cpu.tlb.granted).toBe(0);
  });

  it('NMI blocking and the interrupt shadow are restored', () => {
    const { cpu } = busyCpu(9);
    const snap = saveCpu(cpu, CLOCK);
    snap.events = { halted: false, interruptShadow: true, nmiMasked: true };
    const b = buildRig({ virtio: false });
    applyCpu(b.cpu, parseCpu(viaJson(snap)), CLOCK);
    expect(b.cpu.s.interruptShadow).toBe(true);
    expect(isNmiBlocked(b.cpu.s)).toBe(true);
  });

  it('restore leaves no stale translation: TLB empty, mode recomputed', () => {
    const { cpu } = busyCpu(4);
    const snap = saveCpu(cpu, CLOCK);
    const b = buildRig({ virtio: false });
    b.cpu.tlbTag.fill(5);
    applyCpu(b.cpu, parseCpu(viaJson(snap)), CLOCK);
    expect(b.cpu.long).toBe(true);
    expect(b.cpu.tlbTag.every((t) => t !== 5)).toBe(true);
  });
});
