/**
 * A real guest across a snapshot: a long-mode program (nasm) that checksums and rewrites a
 * memory block, runs x87 and SSE arithmetic, reads the TSC, writes MSRs (LSTAR, PAT, an MTRR,
 * FS base) and prints to COM1. Machine A runs it part way; its state and RAM go to machine B,
 * built fresh; then both run on. Registers (every CpuState field), RAM and UART output must be
 * identical — and identical to a machine C that ran straight through without a snapshot.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { applyEntryState } from '../../cpu/system/entry.js';
import { FakeClock } from '../../devices/testing/fake-clock.js';
import type { EntryState } from '../../machine/engine.js';
import { assembleMany, nasmMissing } from '../../../tests/cpu-oracle/assemble.js';
import { CODE_BASE, DATA_BASE, GDT_BASE, IDT_BASE, PDPT_BASE, PML4_BASE, SEL_CODE64, SEL_DATA, SEL_TSS, TSS_BASE, setIdtGate, writeSystemStructures } from '../../../tests/cpu-oracle/emulated.js';
import { restoreMachine, saveMachine, type MachineState } from './state.js';
import { buildRig, copyRam, cpuFields, type Rig } from './testing.js';

const GUEST = `
  mov rsp, 0x1f000
  mov r13, rdi                 ; outer iterations
  mov ecx, 0xc0000082          ; LSTAR
  mov eax, 0x12345678
  mov edx, 0xffff8000
  wrmsr
  mov ecx, 0xc0000102          ; KERNEL_GS_BASE
  mov eax, 0xabcd0000
  xor edx, edx
  wrmsr
  mov ecx, 0x277               ; PAT
  mov eax, 0x00070106
  mov edx, 0x00070406
  wrmsr
  mov ecx, 0x2ff               ; MTRRdefType (a side-table MSR)
  mov eax, 0xc06
  xor edx, edx
  wrmsr
  mov ecx, 0xc0000100          ; FS base
  mov eax, 0x00250000
  xor edx, edx
  wrmsr
  mov rax, cr4
  or eax, 0x600                ; OSFXSR, OSXMMEXCPT
  mov cr4, rax
  fninit
  fld1
  fldpi
  mov rax, 0x3ff8000000000000
  movq xmm1, rax
  pxor xmm2, xmm2
  xor r15, r15
  xor r14, r14
.outer:
  mov rsi, 0x200000
  mov ecx, 1024
  mov rax, r15
.inner:
  add rax, [rsi]
  rol rax, 7
  xor [rsi], rax
  adc rax, 3
  add rsi, 8
  dec ecx
  jnz .inner
  fmul st0, st1
  fsqrt
  fst qword [r15*8 + 0x210000]
  movq xmm0, rax
  addpd xmm1, xmm0
  pxor xmm2, xmm1
  pushfq
  pop r12
  rdtsc
  add r14, rax
  mov rbx, rax
  xor rbx, [rsi - 8]
  and ebx, 15
  lea rdx, [rel .hex]
  mov al, [rdx + rbx]
  mov dx, 0x3f8
  out dx, al
  mov eax, [fs:0]
  add [fs:8], eax
  inc r15
  cmp r15, r13
  jb .outer
  mov al, 10
  mov dx, 0x3f8
  out dx, al
  hlt
.hex: db "0123456789abcdef"
`;

/** A machine with the guest loaded and the CPU at its entry. */
function guestRig(backend: 'interp' | 'wasm', iterations: number, code: Uint8Array): Rig {
  const r = buildRig({ cpu: backend, virtio: false });
  const mem = r.memory;
  writeSystemStructures(mem);
  mem.writeBytes(CODE_BASE, code);
  let x = 0x1234567;
  for (let a = DATA_BASE; a < DATA_BASE + 0x60000; a += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    mem.write32(a, x);
  }
  const entry: EntryState = { mode: 'long64', rip: CODE_BASE, regs: { rdi: iterations }, cr3: PML4_BASE, gdt: { base: GDT_BASE, limit: 0x3f, cs: SEL_CODE64, ds: SEL_DATA } };
  applyEntryState(r.cpu, entry);
  return r;
}

const ramHash = (r: Rig): string => {
  const h = createHash('sha256');
  for (const reg of r.memory.regions) h.update(reg.bytes);
  return h.digest('hex');
};

function picture(r: Rig): { cpu: Record<string, unknown>; ram: string; out: string } {
  r.built.uart.flush();
  return { cpu: cpuFields(r.cpu), ram: ramHash(r), out: Buffer.from(r.out).toString('latin1') };
}

/**
 * Run until the guest halts (its last instruction). The clock stands still: with translated
 * code a slice may end a few instructions past its budget, at different places in a machine
 * whose code is warm and one whose code is cold, so time must not depend on where slices end
 * (the lockstep test moves the clock).
 */
function runToHalt(r: Rig): void {
  for (let i = 0; i < 100_000 && !r.cpu.s.halted; i++) {
    r.cpu.run(20_000);
    expect(r.cpu.shutdown).toBeUndefined();
  }
  expect(r.cpu.s.halted).toBe(true);
}

describe.skipIf(nasmMissing)('a guest continues exactly after save and restore into a new machine', () => {
  const code = nasmMissing ? new Uint8Array(0) : assembleMany([GUEST])[0]!;

  it('interpreter, in lockstep: identical at every checkpoint', () => {
    const a = guestRig('interp', 24, code);
    a.cpu.jit = false;
    for (let i = 0; i < 7; i++) {
      expect(a.cpu.run(13_337)).toBe(13_337);
      (a.clock as FakeClock).now += 777;
    }
    const state: MachineState = JSON.parse(JSON.stringify(saveMachine(a.built, a.cpu))) as MachineState;
    const b = buildRig({ cpu: 'interp', virtio: false });
    copyRam(a.memory, b.memory);
    b.out.push(...a.out);
    restoreMachine(b.built, b.cpu, state);
    b.cpu.jit = false;
    expect(picture(b)).toEqual(picture(a));
    for (let i = 0; i < 40 && !a.cpu.s.halted; i++) {
      const n = a.cpu.run(7_919);
      expect(b.cpu.run(7_919)).toBe(n);
      (a.clock as FakeClock).now += 1_001;
      (b.clock as FakeClock).now += 1_001;
      expect(picture(b)).toEqual(picture(a));
    }
    expect(a.cpu.s.halted).toBe(true);
    expect(picture(a).out).toHaveLength(25);
  });

  it.each(['interp', 'wasm'] as const)('%s: to the end, the same as a run without a snapshot', (backend) => {
    const iterations = 120;
    const c = guestRig(backend, iterations, code);
    runToHalt(c);
    const a = guestRig(backend, iterations, code);
    // part way, with translated code warm
    for (let i = 0; i < 25; i++) a.cpu.run(20_000);
    expect(a.cpu.s.halted).toBe(false);
    const state = JSON.parse(JSON.stringify(saveMachine(a.built, a.cpu))) as MachineState;
    const b = buildRig({ cpu: backend, virtio: false });
    copyRam(a.memory, b.memory);
    b.out.push(...a.out);
    restoreMachine(b.built, b.cpu, state);
    runToHalt(a);
    runToHalt(b);
    const pa = picture(a);
    expect(picture(b)).toEqual(pa);
    expect(pa.out).toHaveLength(iterations + 1);
    expect(b.cpu.s.gpr[2 * 15]).toBe(iterations); // r15
    // C ran without a snapshot
    expect(pa).toEqual(picture(c));
    if (backend === 'wasm') expect(b.cpu.cache!.compiled).toBeGreaterThan(0);
  });

  it('wasm: restoring into a CPU warm with other code at the same addresses drops that code', () => {
    const backend = 'wasm';
    const other = assembleMany([GUEST.replace('rol rax, 7', 'rol rax, 9')])[0]!;
    expect(other.length).toBe(code.length);
    const a = guestRig(backend, 60, code);
    for (let i = 0; i < 10; i++) a.cpu.run(20_000);
    const state = JSON.parse(JSON.stringify(saveMachine(a.built, a.cpu))) as MachineState;
    // D ran the other program (same addresses, one constant differs) until its code was translated
    const d = guestRig(backend, 60, other);
    for (let i = 0; i < 10; i++) d.cpu.run(20_000);
    expect(d.cpu.cache!.compiled).toBeGreaterThan(0);
    // RAM is loaded behind the CPU's back (as a memory file is); only the restore tells it
    copyRam(a.memory, d.memory);
    d.built.uart.flush(); // the other program's output, then the snapshot's
    d.out.length = 0;
    d.out.push(...a.out);
    restoreMachine(d.built, d.cpu, state);
    runToHalt(a);
    runToHalt(d);
    expect(picture(d)).toEqual(picture(a));
  });

  it('interrupts and timers: a guest halting between PIT and local APIC timer ticks counts on after the restore', () => {
    const tickCode = assembleMany([TICK_GUEST])[0]!;
    const build = (): Rig => {
      const r = buildRig({ cpu: 'interp', virtio: false });
      const mem = r.memory;
      writeSystemStructures(mem);
      // the local APIC page: PDPT[3] -> a PD whose 2 MiB page 503 is 0xfee00000 (uncached)
      mem.fill(0x9000, 0x1000, 0);
      mem.write64(PDPT_BASE + 3 * 8, BigInt(0x9000 | 3));
      mem.write64(0x9000 + 503 * 8, BigInt((0xfee0_0000 | 0x93) >>> 0));
      mem.writeBytes(CODE_BASE, tickCode);
      setIdtGate(mem, 0x20, CODE_BASE + 0x800, 0);
      setIdtGate(mem, 0x40, CODE_BASE + 0x900, 0);
      applyEntryState(r.cpu, { mode: 'long64', rip: CODE_BASE, regs: { rdi: 30 }, cr3: PML4_BASE, gdt: { base: GDT_BASE, limit: 0x3f, cs: SEL_CODE64, ds: SEL_DATA } });
      // the IDT and TSS writeSystemStructures built (a kernel would LIDT and LTR them)
      Object.assign(r.cpu.s, { idtrBase: IDT_BASE, idtrLimit: 0xfff, trSel: SEL_TSS, trBase: TSS_BASE, trLimit: 0x67, trAttr: 0x8b });
      return r;
    };
    const pitTicks = (r: Rig): number => r.memory.read32(0x22_0000);
    const apicTicks = (r: Rig): number => r.memory.read32(0x22_0008);
    /** What the bt engine does: slices, due timers, and while halted a jump to the next deadline. */
    const drive = (r: Rig, until: () => boolean): void => {
      const clock = r.clock as FakeClock;
      for (let i = 0; i < 200_000 && !until(); i++) {
        r.cpu.run(5000);
        expect(r.cpu.shutdown).toBeUndefined();
        if (r.cpu.s.halted && (r.cpu.getRflags() & 0x200) === 0) return;
        if (r.cpu.s.halted && !r.built.lapic!.hasInterrupt()) clock.now = Math.max(clock.now, r.built.machine.timers.nextDeadline());
        else clock.now += 1000;
        r.built.machine.timers.runDue();
      }
    };
    const done = (r: Rig) => (): boolean => r.cpu.s.halted && (r.cpu.getRflags() & 0x200) === 0;
    const c = build();
    drive(c, done(c));
    const a = build();
    drive(a, () => pitTicks(a) >= 12);
    expect(a.cpu.s.halted).toBe(true); // waiting for the next tick, interrupts on
    const state = JSON.parse(JSON.stringify(saveMachine(a.built, a.cpu))) as MachineState;
    const b = build();
    copyRam(a.memory, b.memory);
    b.out.push(...a.out);
    restoreMachine(b.built, b.cpu, state);
    drive(a, done(a));
    drive(b, done(b));
    expect(pitTicks(b)).toBe(30);
    expect(apicTicks(b)).toBeGreaterThan(90);
    expect(picture(b)).toEqual(picture(a));
    expect(picture(a)).toEqual(picture(c));
    expect(Buffer.from(b.out).toString()).toBe('tick guest done\n');
  });
});

/**
 * PIT channel 0 every 10 ms through the 8259 (virtual wire, vector 0x20) and the local APIC
 * timer every 3 ms (vector 0x40); the guest halts between interrupts until rdi PIT ticks.
 */
const TICK_GUEST = `
start:
  mov rsp, 0x1f000
  mov r13, rdi
  mov al, 0x11
  out 0x20, al
  mov al, 0x20
  out 0x21, al
  mov al, 4
  out 0x21, al
  mov al, 1
  out 0x21, al
  mov al, 0x11
  out 0xa0, al
  mov al, 0x28
  out 0xa1, al
  mov al, 2
  out 0xa1, al
  mov al, 1
  out 0xa1, al
  mov al, 0xfe
  out 0x21, al
  mov al, 0xff
  out 0xa1, al
  mov al, 0x34
  out 0x43, al
  mov al, 0x9c
  out 0x40, al
  mov al, 0x2e
  out 0x40, al
  mov rbx, 0xfee00000
  mov dword [rbx + 0xf0], 0x1ff
  mov dword [rbx + 0x350], 0x700
  mov dword [rbx + 0x3e0], 0xb
  mov dword [rbx + 0x320], 0x20040
  mov dword [rbx + 0x380], 3000000
  sti
.wait:
  hlt
  mov rax, [0x220000]
  cmp rax, r13
  jb .wait
  cli
  lea rsi, [rel .msg]
  mov dx, 0x3f8
.print:
  lodsb
  test al, al
  jz .end
  out dx, al
  jmp .print
.end:
  hlt
.msg: db "tick guest done", 10, 0
  times 0x800 - ($ - start) db 0x90
pit_handler:
  push rax
  inc qword [0x220000]
  mov al, 0x20
  out 0x20, al
  pop rax
  iretq
  times 0x900 - ($ - start) db 0x90
apic_handler:
  push rbx
  inc qword [0x220008]
  mov rbx, 0xfee00000
  mov dword [rbx + 0xb0], 0
  pop rbx
  iretq
`;
