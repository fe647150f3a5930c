/**
 * Self-test of the native harness (no emulator involved): known results on the host CPU, so a
 * broken prologue/epilogue is caught before it is blamed on the emulator.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { assemble, nasmMissing } from './assemble.js';
import { NativeRunner, nativeSupported } from './native.js';
import { blankState } from './state.js';

describe.skipIf(nasmMissing || !nativeSupported)('oracle: native harness', () => {
  const native = nativeSupported && !nasmMissing ? new NativeRunner() : undefined;
  afterAll(() => native?.close());

  it('adds with carry out and reports the flags', () => {
    const s = blankState();
    s.gpr[0] = 0xffff_ffff_ffff_ffffn;
    s.gpr[3] = 1n;
    const out = native!.run(assemble('add rax, rbx'), s);
    expect(out.gpr[0]).toBe(0n);
    expect(out.rflags & 0x8d5).toBe(0x55); // CF PF AF ZF
  });

  it('loads and stores every general register except RSP', () => {
    const s = blankState();
    for (let i = 0; i < 16; i++) s.gpr[i] = i === 4 ? 0n : 0x0101_0101_0101_0101n * BigInt(i + 1);
    const out = native!.run(assemble('nop'), s);
    for (let i = 0; i < 16; i++) if (i !== 4) expect(out.gpr[i]).toBe(s.gpr[i]);
  });

  it('loads the arithmetic flags and DF', () => {
    const s = blankState();
    s.rflags = 0x8d5 | 0x400;
    const out = native!.run(assemble('nop'), s);
    expect(out.rflags & 0xcd5).toBe(0xcd5);
  });

  it('relocates pointer registers to the data buffer and back', () => {
    const s = blankState();
    s.gpr[3] = 0x10n;
    s.mem[0x18] = 0x42;
    const out = native!.run(assemble('movzx eax, byte [rbx+8]\nmov byte [rbx], 0x99\nadd rbx, 4'), s, { ptrRegs: [3] });
    expect(out.gpr[0]).toBe(0x42n);
    expect(out.gpr[3]).toBe(0x14n);
    expect(out.mem[0x10]).toBe(0x99);
  });

  it('loads and stores XMM registers and MXCSR', () => {
    const s = blankState();
    for (let i = 0; i < 256; i++) s.xmm[i] = i;
    s.mxcsr = 0x1f80 | 0x6000; // round toward zero
    const out = native!.run(assemble('paddb xmm0, xmm15\nstmxcsr [rbx]'), s, { ptrRegs: [3] });
    for (let i = 0; i < 16; i++) expect(out.xmm[i]).toBe((i + 240 + i) & 0xff);
    expect(out.xmm.subarray(16)).toEqual(s.xmm.subarray(16));
    expect(out.mxcsr).toBe(0x7f80);
    expect(out.mem[1]).toBe(0x7f);
  });
});
