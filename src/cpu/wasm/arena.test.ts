import { describe, expect, it } from 'vitest';
import { allocArenaRam, arenaFits, arenaOf, withArena } from './arena.js';
import { Cpu, DEFAULT_JIT_THRESHOLD } from '../core/cpu.js';
import { createTestMachine } from '../core/test-machine.js';
import { GuestMemory } from '../../machine/memory.js';

describe('wasm arena', () => {
  it('holds a first RAM region that fits in a 32-bit wasm memory, and refuses a larger one', () => {
    expect(arenaFits(512 << 20)).toBe(true);
    expect(arenaFits(3 * 1024 ** 3)).toBe(true);
    expect(arenaFits(4 * 1024 ** 3)).toBe(false);
    expect(() => allocArenaRam(4 * 1024 ** 3)).toThrow(RangeError);
    // too big: the specs come back unchanged (a CPU over them interprets)
    const big: { base: number; size: number; buffer?: ArrayBuffer }[] = [{ base: 0, size: 4 * 1024 ** 3 }];
    expect(withArena(big)[0]!.buffer).toBeUndefined();
  });

  it('gives each vCPU a state area of its own after RAM and one code-line map all of them use', () => {
    const buf = allocArenaRam(1 << 20, 3);
    const [a0, a1, a2] = [0, 1, 2].map((i) => arenaOf(buf, i)!);
    expect(arenaOf(buf, 3)).toBeUndefined();
    expect(a0.codeLinesBase).toBeGreaterThanOrEqual(1 << 20);
    expect(a1.base - a0.base).toBe(a2.base - a1.base);
    expect(a2.base + (a1.base - a0.base)).toBeLessThanOrEqual(buf.byteLength);
    for (const a of [a1, a2]) expect(a.codeLinesBase).toBe(a0.codeLinesBase);
    a1.codeLines()[5] = 1;
    expect(a2.codeLines()[5]).toBe(1);
    // registers are not shared
    a1.gpr()[0] = 7;
    expect(a0.gpr()[0]).toBe(0);
    expect(a2.gpr()[0]).toBe(0);
    expect(arenaFits(512 << 20, 64)).toBe(true);
  });

  it('puts the registers and the TLB next to RAM, shared by the interpreter and wasm blocks', () => {
    const buf = allocArenaRam(1 << 20);
    const arena = arenaOf(buf)!;
    expect(arena.base).toBeGreaterThanOrEqual(1 << 20);
    const t = createTestMachine({ ramBytes: 1 << 20, jitThreshold: 1 });
    expect(t.cpu.wasm).toBeDefined();
    expect(t.cpu.jit).toBe(true);
    expect(t.cpu.s.gpr.buffer).toBe(t.cpu.arena!.buffer);
    t.cpu.s.gpr[2 * 3] = 0x1234;
    expect(new Int32Array(t.cpu.arena!.buffer, t.cpu.arena!.base, 8)[6]).toBe(0x1234);
  });

  it('without an arena a CPU only interprets (no translator; jit stays off)', () => {
    const t = createTestMachine({ ramBytes: 1 << 20 });
    expect(t.cpu.arena).toBeUndefined();
    expect(t.cpu.wasm).toBeUndefined();
    t.cpu.jit = true;
    expect(t.cpu.jit).toBe(false);
  });

  it('a CPU takes its translation threshold from its options: Infinity interprets even over an arena', () => {
    const t = createTestMachine({ ramBytes: 1 << 20 });
    const base = { pio: t.pio, mmio: t.mmio, interrupts: t.irq, clock: t.clock };
    const memory = (): GuestMemory => new GuestMemory([{ base: 0, size: 1 << 20, buffer: allocArenaRam(1 << 20) }]);
    expect(new Cpu({ ...base, memory: memory(), jitThreshold: Infinity }).wasm).toBeUndefined();
    const hot = new Cpu({ ...base, memory: memory(), jitThreshold: 5 });
    expect(hot.wasm).toBeDefined();
    expect(hot.cache!.threshold).toBe(5);
    expect(new Cpu({ ...base, memory: memory() }).cache!.threshold).toBe(DEFAULT_JIT_THRESHOLD);
  });

  it('is cleared only for a second CPU: a new one is all zero already (no 8 MiB of link table made resident)', () => {
    const buf = allocArenaRam(1 << 20);
    const arena = arenaOf(buf)!;
    expect(arena.claim()).toBe(true);
    expect(arena.claim()).toBe(false);

    const buf2 = allocArenaRam(1 << 20);
    const t = createTestMachine({ ramBytes: 1 << 20 });
    const opts = { memory: new GuestMemory([{ base: 0, size: 1 << 20, buffer: buf2 }]), pio: t.pio, mmio: t.mmio, interrupts: t.irq, clock: t.clock, jitThreshold: 1 };
    const first = new Cpu(opts);
    // what a first CPU leaves behind: exit links, indirect-branch entries, code lines
    const a = first.arena!;
    a.links()[2] = 7;
    a.icI32()[3] = 9;
    a.codeLines()[1] = 1;
    new Cpu(opts);
    expect(a.links()[2]).toBe(0);
    expect(a.icI32()[3]).toBe(0);
    expect(a.codeLines()[1]).toBe(0);
  });
});
