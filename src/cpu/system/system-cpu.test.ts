/**
 * End-to-end: real code through the core's Cpu and this module — the path the Linux kernel
 * takes after startup_64: LGDT + LRETQ to reload CS, LTR, LIDT, the INT3 self-test (IRETQ),
 * SYSCALL MSRs, IRETQ to ring 3, SYSCALL/SWAPGS/SYSRETQ, then a user page fault with CR2 and
 * the error code. Skipped when nasm is missing.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cpu } from '../core/cpu.js';
import { GuestMemory } from '../../machine/memory.js';
import { Bus } from '../../machine/bus.js';
import type { CpuInterruptController } from '../../machine/interrupts.js';
import { BOOT_GDT_START } from '../../machine/layout.js';
import { Mode, SReg } from '../state.js';
import { applyEntryState } from './entry.js';
import { segDesc, writeGate64, writeSysDesc64 } from './testhost.js';

const hasNasm = existsSync('/usr/bin/nasm');

function assemble(src: string, org: number, bits = 64): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'tv-system-'));
  writeFileSync(join(dir, 't.asm'), `bits ${bits}\norg 0x${org.toString(16)}\n${src}\n`);
  execFileSync('nasm', ['-f', 'bin', '-o', join(dir, 't.bin'), join(dir, 't.asm')]);
  return new Uint8Array(readFileSync(join(dir, 't.bin')));
}

const CODE = 0x100000;
const GDT = 0x5000;
const IDT = 0x6000;
const TSS = 0x7000;

const KERNEL = `
start:
  lgdt [gdt_ptr]
  push 0x10
  lea rax, [rel cs_reloaded]
  push rax
  o64 retf
cs_reloaded:
  mov ax, 0x18
  mov ds, ax
  mov es, ax
  mov ss, ax
  xor eax, eax
  mov fs, ax
  mov gs, ax
  mov ax, 0x40
  ltr ax
  lidt [idt_ptr]
  xor r15, r15
  int3
  cmp r15, 1
  jne fail
  mov ecx, 0xc0000080
  rdmsr
  or eax, 0x801            ; SCE | NXE
  wrmsr
  mov ecx, 0xc0000081
  xor eax, eax
  mov edx, 0x00230010
  wrmsr
  mov ecx, 0xc0000082
  lea rax, [rel syscall_entry]
  mov rdx, rax
  shr rdx, 32
  wrmsr
  mov ecx, 0xc0000084
  mov eax, 0x47700
  xor edx, edx
  wrmsr
  mov ecx, 0xc0000102
  mov eax, percpu
  xor edx, edx
  wrmsr
  push 0x2b
  push 0x200000
  push 0x202
  push 0x33
  push user_code
  iretq

user_code:
  mov eax, 39
  syscall
  cmp rax, 1234
  jne user_fail
  mov rbx, 0x40000000
  mov qword [rbx], 1
user_fail:
  ud2

syscall_entry:
  swapgs
  mov [gs:0], rsp
  mov rsp, [gs:8]
  push rcx
  push r11
  mov r14, rax
  mov eax, 1234
  pop r11
  pop rcx
  mov rsp, [gs:0]
  swapgs
  o64 sysret

fail:
  mov r10, 0xbad
  hlt

align 16
gdt_ptr: dw 0x4f
  dq ${GDT}
align 16
idt_ptr: dw 0xfff
  dq ${IDT}
align 16
percpu: dq 0, 0x88000

times 0x800-($-$$) db 0
bp_handler:                 ; CODE + 0x800
  inc r15
  iretq
times 0x900-($-$$) db 0
pf_handler:                 ; CODE + 0x900
  pop r13
  mov r12, cr2
  mov r11, [rsp+8]
  hlt
times 0xa00-($-$$) db 0
other_handler:              ; CODE + 0xa00
  mov r10, 0xee
  hlt
`;

class NoInterrupts implements CpuInterruptController {
  readonly pending: number[] = [];
  hasInterrupt(): boolean {
    return this.pending.length > 0;
  }
  acknowledge(): number {
    return this.pending.shift() ?? 0xff;
  }
  takeNmi(): boolean {
    return false;
  }
}

function machine(): { memory: GuestMemory; cpu: Cpu; irq: NoInterrupts } {
  const memory = new GuestMemory([{ base: 0, size: 32 * 1024 * 1024 }]);
  const irq = new NoInterrupts();
  const cpu = new Cpu({ memory, pio: new Bus('pio'), mmio: new Bus('mmio'), interrupts: irq, clock: { nowNs: () => 0 } });
  return { memory, cpu, irq };
}

/** Page tables, loader GDT, kernel GDT/TSS/IDT (catch-all gates at CODE + 0xa00). */
function writeTables(memory: GuestMemory): void {
  // Identity map of the first 16 MiB with user-accessible 2 MiB pages.
  memory.write64(0x1000, 0x2000n | 7n);
  memory.write64(0x2000, 0x3000n | 7n);
  for (let i = 0; i < 8; i++) memory.write64(0x3000 + i * 8, BigInt(i * 0x200000) | 0x87n);
  // Loader GDT (boot protocol: CS 0x10, DS 0x18).
  memory.write64(BOOT_GDT_START + 0x10, segDesc(0, 0xfffff, 0xa09b));
  memory.write64(BOOT_GDT_START + 0x18, segDesc(0, 0xfffff, 0xc093));
  // The kernel's own GDT, TSS and IDT.
  memory.write64(GDT + 0x10, segDesc(0, 0xfffff, 0xa09b));
  memory.write64(GDT + 0x18, segDesc(0, 0xfffff, 0xc093));
  memory.write64(GDT + 0x20, segDesc(0, 0xfffff, 0xc0fb));
  memory.write64(GDT + 0x28, segDesc(0, 0xfffff, 0xc0f3));
  memory.write64(GDT + 0x30, segDesc(0, 0xfffff, 0xa0fb));
  writeSysDesc64(memory, GDT + 0x40, TSS, 0x67, 0x9);
  memory.write64(TSS + 4, 0x90000n);
  for (let v = 0; v < 32; v++) writeGate64(memory, IDT, v, 0x10, BigInt(CODE + 0xa00));
}

describe.skipIf(!hasNasm)('system module through the Cpu', () => {
  it('runs the kernel startup path: GDT/LRETQ, LTR, INT3 self-test, ring 3, SYSCALL/SYSRET, #PF', () => {
    const { memory, cpu } = machine();
    writeTables(memory);
    writeGate64(memory, IDT, 3, 0x10, BigInt(CODE + 0x800), { dpl: 3 });
    writeGate64(memory, IDT, 14, 0x10, BigInt(CODE + 0x900));
    memory.writeBytes(CODE, assemble(KERNEL, CODE));

    applyEntryState(cpu, {
      mode: 'long64', rip: CODE, regs: { rsp: 0x80000 }, cr3: 0x1000,
      gdt: { base: BOOT_GDT_START, limit: 0x1f, cs: 0x10, ds: 0x18 },
    });
    cpu.run(10_000);
    const g = cpu.s.gpr;
    expect(cpu.shutdown).toBeUndefined();
    expect(cpu.s.halted).toBe(true);
    expect(g[2 * 10]).toBe(0); // neither fail nor the catch-all handler ran
    expect(g[2 * 15]).toBe(1); // INT3 handler ran once
    expect(g[2 * 14]).toBe(39); // syscall number seen by the kernel
    expect(g[2 * 13]).toBe(6); // #PF error code: user write, not present
    expect(g[2 * 12]).toBe(0x40000000); // CR2
    expect(g[2 * 11]).toBe(0x33); // interrupted CS: user code
    expect(cpu.s.cpl).toBe(0);
    expect(cpu.s.mode).toBe(Mode.Long64);
    expect(cpu.s.segSel[SReg.SS]).toBe(0);
    expect(g[2 * 4]).toBe(0x90000 - 40); // RSP0 frame, error code popped
    expect(memory.read8(GDT + 0x45) & 0xf).toBe(0xb); // TSS busy
  });

  it('REP STOSB that faults on its second page resumes where it stopped (RCX and RDI agree)', () => {
    const { memory, cpu } = machine();
    writeTables(memory);
    // 0x400000..0x5fffff in 4 KiB pages, 0x401000 not present until the #PF handler maps it
    const PT = 0x8000;
    memory.write64(0x3000 + 2 * 8, BigInt(PT) | 3n);
    for (let i = 0; i < 512; i++) memory.write64(PT + i * 8, BigInt(0x400000 + i * 0x1000) | (i === 1 ? 0n : 3n));
    writeGate64(memory, IDT, 14, 0x10, BigInt(CODE + 0x900));
    const code = assemble(`
  lidt [idt_ptr]
  mov rdi, 0x400800
  mov rcx, 0x1000
  mov al, 0xab
  rep stosb
  mov r14, rcx
  mov r13, rdi
  hlt
idt_ptr:
  dw 0xfff
  dq ${IDT}
times 0x900 - ($ - $$) db 0
  inc r15
  mov r12, cr2
  mov qword [${PT + 8}], 0x401003
  invlpg [0x401000]
  add rsp, 8
  iretq
`, CODE);
    memory.writeBytes(CODE, code);
    applyEntryState(cpu, {
      mode: 'long64', rip: CODE, regs: { rsp: 0x80000 }, cr3: 0x1000,
      gdt: { base: BOOT_GDT_START, limit: 0x1f, cs: 0x10, ds: 0x18 },
    });
    cpu.run(100_000);
    const g = cpu.s.gpr;
    expect(cpu.shutdown).toBeUndefined();
    expect(g[2 * 15]).toBe(1); // one #PF
    expect(g[2 * 12]).toBe(0x401000); // at the second page
    expect(g[2 * 14]).toBe(0); // RCX done
    expect(g[2 * 13]).toBe(0x401800); // RDI just past the 4 KiB
    expect([...memory.readBytes(0x400800, 0x1000)].every((b) => b === 0xab)).toBe(true);
    expect(memory.read8(0x401800)).toBe(0); // not a byte further (the restart used to redo a page)
  });

  it('holds NMIs while the NMI handler runs and delivers one after its IRETQ, however many arrived', () => {
    const { memory, cpu, irq } = machine();
    writeTables(memory);
    writeGate64(memory, IDT, 2, 0x10, BigInt(CODE + 0x900));
    let arrivals = 3; // NMIs keep arriving: a new one is pending whenever the controller is asked
    irq.takeNmi = () => arrivals-- > 0;
    const code = assemble(`
  lidt [idt_ptr]
  xor r15, r15
l:
  inc rbx
  cmp r15, 3
  jb l
  hlt
idt_ptr:
  dw 0xfff
  dq ${IDT}
times 0x900 - ($ - $$) db 0
  inc r15
  mov ecx, 500          ; long enough for the run loop to poll for interrupts many times
spin:
  dec ecx
  jnz spin
  mov rax, r15
  cmp rax, r14
  jbe nested
  mov r14, rax          ; handlers never nested: r14 follows r15
nested:
  iretq
`, CODE);
    memory.writeBytes(CODE, code);
    applyEntryState(cpu, {
      mode: 'long64', rip: CODE, regs: { rsp: 0x80000 }, cr3: 0x1000,
      gdt: { base: BOOT_GDT_START, limit: 0x1f, cs: 0x10, ds: 0x18 },
    });
    cpu.run(200_000);
    const g = cpu.s.gpr;
    expect(cpu.shutdown).toBeUndefined();
    expect(g[2 * 15]).toBe(3); // three handler runs, one after another
    expect(g[2 * 14]).toBe(3); // each finished before the next began
    expect(cpu.s.halted).toBe(true);
  });

  it('takes a timer interrupt in ring 3 and IRETQs back to the user loop', () => {
    const { memory, cpu, irq } = machine();
    writeTables(memory);
    writeGate64(memory, IDT, 0x20, 0x10, BigInt(CODE + 0x800));
    memory.writeBytes(CODE, assemble(TIMER, CODE));
    applyEntryState(cpu, {
      mode: 'long64', rip: CODE, regs: { rsp: 0x80000 }, cr3: 0x1000,
      gdt: { base: BOOT_GDT_START, limit: 0x1f, cs: 0x10, ds: 0x18 },
    });
    cpu.run(500);
    expect(cpu.s.cpl).toBe(3);
    expect(cpu.s.halted).toBe(false);
    irq.pending.push(0x20);
    cpu.run(100_000);
    const g = cpu.s.gpr;
    expect(cpu.shutdown).toBeUndefined();
    expect(g[2 * 15]).toBe(1); // timer handler ran once
    expect(g[2 * 9]).toBe(0x33); // it interrupted user code
    expect(g[2 * 8]).toBe(0x2b); // with the user SS in the frame
    expect(g[2 * 3]).toBeGreaterThan(0); // the user loop ran
    expect(g[2 * 10]).toBe(0xee); // the UD2 after the loop reached the catch-all handler
  });

  it('goes from real mode to protected mode to long mode (the AP trampoline path)', () => {
    const { memory, cpu } = machine();
    writeTables(memory);
    memory.writeBytes(0x8000, assemble(TRAMPOLINE, 0x8000, 16));
    applyEntryState(cpu, { mode: 'real16', rip: 0x8000, regs: {}, realCs: 0 });
    cpu.run(1000);
    const g = cpu.s.gpr;
    expect(cpu.shutdown).toBeUndefined();
    expect(cpu.s.halted).toBe(true);
    expect(g[0]! >>> 0).toBe(0x23456789);
    expect(g[1]).toBe(1);
    expect(cpu.s.mode).toBe(Mode.Long64);
    expect(cpu.s.segSel[SReg.CS]).toBe(0x10);
  });
});

const TIMER = `
  lgdt [gdt_ptr]
  push 0x10
  lea rax, [rel reloaded]
  push rax
  o64 retf
reloaded:
  mov ax, 0x18
  mov ss, ax
  mov ax, 0x40
  ltr ax
  lidt [idt_ptr]
  push 0x2b
  push 0x200000
  push 0x202
  push 0x33
  push user
  iretq
user:
  inc rbx
  cmp r15, 1
  jne user
  ud2
align 16
gdt_ptr: dw 0x4f
  dq ${GDT}
align 16
idt_ptr: dw 0xfff
  dq ${IDT}
times 0x800-($-$$) db 0
timer:                      ; CODE + 0x800
  inc r15
  mov r9, [rsp+8]
  mov r8, [rsp+32]
  iretq
times 0xa00-($-$$) db 0
  mov r10, 0xee
  hlt
`;

const TRAMPOLINE = `
  cli
  xor ax, ax
  mov ds, ax
  lgdt [gdtp]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp dword 0x08:pm32
bits 32
pm32:
  mov ax, 0x18
  mov ds, ax
  mov ss, ax
  mov eax, cr4
  or eax, 0x20
  mov cr4, eax
  mov eax, 0x1000
  mov cr3, eax
  mov ecx, 0xc0000080
  rdmsr
  or eax, 0x100
  wrmsr
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  jmp 0x10:lm64
bits 64
lm64:
  mov rax, 0x123456789
  hlt
align 8
gdtp: dw 0x1f
  dd gdt
align 8
gdt: dq 0
  dq 0x00cf9a000000ffff
  dq 0x00af9a000000ffff
  dq 0x00cf92000000ffff
`;
