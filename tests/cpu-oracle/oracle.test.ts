/**
 * Self-test of the oracle: differences between the worlds must be reported (a comparison that
 * silently passes everything would make every other oracle test worthless), and identical runs
 * must not be.
 */
import { describe, expect, it } from 'vitest';
import { nasmMissing } from './assemble.js';
import { nativeSupported } from './native.js';
import { runOracle } from './oracle.js';
import { blankState } from './state.js';

const RBX = 3;

function rbxCase(asm: string): { asm: string; state: ReturnType<typeof blankState>; ptrRegs: number[] } {
  const state = blankState();
  state.gpr[RBX] = 0x100n;
  return { asm, state, ptrRegs: [RBX] };
}

describe.skipIf(nasmMissing || !nativeSupported)('oracle: self-test', () => {
  it('agrees on a run both worlds compute the same way', () => {
    const r = runOracle([rbxCase('mov rax, 5\nadd rax, [rbx]\nmovq xmm3, rax\nmov [rbx+8], eax\nfld1\nfstp tword [rbx+16]')]);
    expect(r.failures).toEqual([]);
  });

  it('reports a general register that differs (the host and guest buffer addresses)', () => {
    const r = runOracle([rbxCase('mov rax, rbx')]);
    expect(r.failures.length).toBe(1);
    expect(r.failures[0]).toContain('rax: expected');
  });

  it('reports memory that differs', () => {
    const r = runOracle([rbxCase('mov [rbx], rbx')]);
    expect(r.failures[0]).toMatch(/mem\[0x10[0-7]\.\.\]/); // the low byte of both buffer addresses is 0
  });

  it('reports an XMM register that differs', () => {
    const r = runOracle([rbxCase('movq xmm7, rbx')]);
    expect(r.failures[0]).toContain('xmm7: expected');
  });

  it('reports defined flags that differ and keeps undefined ones apart', () => {
    // CF after `cmp rbx, rcx` with RCX between the two buffer addresses differs between worlds
    const c = rbxCase('mov rcx, 0x10000000\ncmp rbx, rcx');
    const r = runOracle([c, { ...rbxCase('mov rcx, 0x10000000\ncmp rbx, rcx'), undefFlags: 0x8d5 }]);
    expect(r.failures.length).toBe(1);
    expect(r.failures[0]).toContain('flags: expected');
    expect(r.undefinedDiffs.length).toBe(1);
  });
});
