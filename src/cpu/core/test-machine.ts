/**
 * A headless machine for exercising the CPU core in tests and benchmarks: one RAM region, empty
 * buses, a scripted interrupt controller, and a direct long-mode (or 32-bit/real-mode) setup with
 * identity-mapped page tables, a GDT and an IDT whose handlers record the vector and halt.
 *
 * Layout (physical = linear in the identity map):
 *   0x0500 GDT  0x1000 PML4  0x2000 PDPT  0x3000 PD (2 MiB pages, first 1 GiB)
 *   0x4000 IDT (long mode, 256 gates)   0x6000 handler stubs: `mov eax, 0xdead0000+vector; hlt`
 *   0x7000 IDT (32-bit)                 0x80000 initial stack top
 *   CODE_BASE (1 MiB) the test code
 */
import { Cpu } from './cpu.js';
import { GuestMemory } from '../../machine/memory.js';
import { allocArenaRam } from '../wasm/arena.js';
import { Bus } from '../../machine/bus.js';
import type { CpuInterruptController } from '../../machine/interrupts.js';
import type { Clock } from '../../machine/clock.js';
import type { SimdUnit } from '../simd-api.js';

export const CODE_BASE = 0x100000;
export const STACK_TOP = 0x80000;
export const HANDLER_BASE = 0x6000;
export const HANDLER_MARK = 0xdead0000;

/** An interrupt controller the test drives: queue vectors, they are delivered when IF allows. */
export class ScriptedInterrupts implements CpuInterruptController {
  readonly pending: number[] = [];
  nmi = false;
  hasInterrupt(): boolean {
    return this.pending.length > 0;
  }
  acknowledge(): number {
    return this.pending.shift() ?? 0xff;
  }
  takeNmi(): boolean {
    const n = this.nmi;
    this.nmi = false;
    return n;
  }
}

export class StepClock implements Clock {
  now = 0;
  nowNs(): number {
    return this.now;
  }
}

export interface TestMachine {
  cpu: Cpu;
  memory: GuestMemory;
  pio: Bus;
  mmio: Bus;
  irq: ScriptedInterrupts;
  clock: StepClock;
}

/**
 * How createTestMachine's CPUs translate when the call does not say: Infinity interprets only; a
 * suite that runs its tests translated sets it (beforeAll) — tests only, the CPU has no such default.
 */
export const testCpuDefaults = { jitThreshold: Infinity };

/**
 * `jitThreshold` (default testCpuDefaults.jitThreshold): finite puts the RAM in a wasm arena and
 * translates each block after that many executions (1: at once); Infinity interprets only.
 */
/** `shared`: guest RAM in a shared arena, as with vCPUs on threads (atomic LOCK, cross-thread code). */
export function createTestMachine(opts: { ramBytes?: number; simd?: SimdUnit; jitThreshold?: number; shared?: boolean; backgroundMerges?: boolean } = {}): TestMachine {
  const ramBytes = opts.ramBytes ?? 32 * 1024 * 1024;
  const jitThreshold = opts.jitThreshold ?? testCpuDefaults.jitThreshold;
  const translate = jitThreshold !== Infinity;
  const memory = new GuestMemory([{ base: 0, size: ramBytes, buffer: translate ? allocArenaRam(ramBytes, 1, opts.shared) : undefined }]);
  const pio = new Bus('pio');
  const mmio = new Bus('mmio');
  const irq = new ScriptedInterrupts();
  const clock = new StepClock();
  const cpu = new Cpu({ memory, pio, mmio, interrupts: irq, clock, simd: opts.simd, jitThreshold, backgroundMerges: opts.backgroundMerges });
  return { cpu, memory, pio, mmio, irq, clock };
}

function w64(m: GuestMemory, addr: number, lo: number, hi: number): void {
  m.write32(addr, lo >>> 0);
  m.write32(addr + 4, hi >>> 0);
}

/** GDT: 0x08 code64, 0x10 data, 0x18 code32, 0x20 user data (DPL3), 0x28 user code64 (DPL3), 0x30 code16, 0x38 data16. */
function writeGdt(m: GuestMemory): void {
  const g = 0x500;
  w64(m, g + 0x00, 0, 0);
  w64(m, g + 0x08, 0x0000ffff, 0x00af9a00);
  w64(m, g + 0x10, 0x0000ffff, 0x00cf9200);
  w64(m, g + 0x18, 0x0000ffff, 0x00cf9a00);
  w64(m, g + 0x20, 0x0000ffff, 0x00cff200);
  w64(m, g + 0x28, 0x0000ffff, 0x00affa00);
  w64(m, g + 0x30, 0x0000ffff, 0x00009a00);
  w64(m, g + 0x38, 0x0000ffff, 0x00009200);
}

function writeHandlers(m: GuestMemory): void {
  for (let v = 0; v < 256; v++) {
    const a = HANDLER_BASE + v * 8;
    m.write8(a, 0xb8); // mov eax, imm32
    m.write32(a + 1, (HANDLER_MARK + v) >>> 0);
    m.write8(a + 5, 0xf4); // hlt
    m.write8(a + 6, 0xeb); // jmp $-1 (back to hlt)
    m.write8(a + 7, 0xfd);
  }
}

/** Put the CPU in 64-bit mode at CPL 0 with identity paging over the first 1 GiB. */
export function enterLongMode(t: TestMachine, rip = CODE_BASE): void {
  const { cpu, memory: m } = t;
  const s = cpu.s;
  writeGdt(m);
  writeHandlers(m);
  w64(m, 0x1000, 0x2003, 0);
  w64(m, 0x2000, 0x3003, 0);
  for (let i = 0; i < 512; i++) w64(m, 0x3000 + i * 8, (i * 0x200000 + 0x83) >>> 0, 0);
  // 64-bit IDT: interrupt gates, selector 0x08, DPL 3 (so INT n works from any ring)
  for (let v = 0; v < 256; v++) {
    const h = HANDLER_BASE + v * 8;
    const e = 0x4000 + v * 16;
    m.write32(e, ((0x08 << 16) | (h & 0xffff)) >>> 0);
    m.write32(e + 4, ((h & 0xffff0000) | 0xee00) >>> 0);
    m.write32(e + 8, 0);
    m.write32(e + 12, 0);
  }
  s.gdtrBase = 0x500;
  s.gdtrLimit = 0x3f;
  s.idtrBase = 0x4000;
  s.idtrLimit = 0xfff;
  s.cr3 = 0x1000;
  s.cr4 = 0x20 | 0x200; // PAE, OSFXSR
  s.efer = 0x500 | 0x800; // LME, LMA, NXE
  s.cr0 = 0x80000033; // PG, NE, ET, MP, PE
  const seg = (i: number, sel: number, attr: number): void => {
    s.segSel[i] = sel;
    s.segBase[i] = 0;
    s.segLimit[i] = 0xffffffff;
    s.segAttr[i] = attr;
  };
  seg(1, 0x08, 0xa09b);
  for (const i of [0, 2, 3, 4, 5]) seg(i, 0x10, 0xc093);
  s.cpl = 0;
  s.rip = rip;
  s.gpr.fill(0);
  s.gpr[8] = STACK_TOP;
  s.rflagsRest = 2;
  cpu.setArith(0);
  s.halted = false;
  cpu.flushTlb(false);
  cpu.modeChanged();
}

/** Put the CPU in flat 32-bit protected mode (no paging), CPL 0. */
export function enterProtected32(t: TestMachine, rip = CODE_BASE): void {
  const { cpu, memory: m } = t;
  const s = cpu.s;
  writeGdt(m);
  writeHandlers(m);
  for (let v = 0; v < 256; v++) {
    const h = HANDLER_BASE + v * 8;
    const e = 0x7000 + v * 8;
    m.write32(e, ((0x18 << 16) | (h & 0xffff)) >>> 0);
    m.write32(e + 4, ((h & 0xffff0000) | 0xee00) >>> 0);
  }
  s.gdtrBase = 0x500;
  s.gdtrLimit = 0x3f;
  s.idtrBase = 0x7000;
  s.idtrLimit = 0x7ff;
  s.cr0 = 0x33;
  s.cr4 = 0x200;
  s.efer = 0;
  const seg = (i: number, sel: number, attr: number): void => {
    s.segSel[i] = sel;
    s.segBase[i] = 0;
    s.segLimit[i] = 0xffffffff;
    s.segAttr[i] = attr;
  };
  seg(1, 0x18, 0xc09b);
  for (const i of [0, 2, 3, 4, 5]) seg(i, 0x10, 0xc093);
  s.cpl = 0;
  s.rip = rip;
  s.gpr.fill(0);
  s.gpr[8] = STACK_TOP;
  s.rflagsRest = 2;
  cpu.setArith(0);
  s.halted = false;
  cpu.flushTlb(false);
  cpu.modeChanged();
}

/** Real mode with CS = DS = ES = SS = `seg`, IP = `ip`. */
export function enterReal(t: TestMachine, seg: number, ip: number): void {
  const { cpu } = t;
  const s = cpu.s;
  cpu.reset();
  for (let i = 0; i < 6; i++) {
    s.segSel[i] = seg;
    s.segBase[i] = seg * 16;
    s.segLimit[i] = 0xffff;
    s.segAttr[i] = i === 1 ? 0x9b : 0x93;
  }
  s.rip = ip;
  s.gpr.fill(0);
  s.gpr[8] = 0xfff0;
  cpu.modeChanged();
}
