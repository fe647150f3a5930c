/**
 * Small guests for the KVM tests, assembled at test time with nasm (Debian package `nasm`).
 * All start in real mode at 0000:7c00 (EntryState mode real16).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const GUEST_ORG = 0x7c00;

export function nasmAvailable(): boolean {
  try {
    execFileSync('nasm', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'typevisor-guest-'));
  try {
    writeFileSync(join(dir, 'g.asm'), source);
    execFileSync('nasm', ['-f', 'bin', '-o', join(dir, 'g.bin'), join(dir, 'g.asm')], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Uint8Array(readFileSync(join(dir, 'g.bin')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Real mode -> flat 32-bit protected mode, then `body32` runs (DX = 0x3f8). GDT included. */
const TO_PROTECTED = `
bits 16
org 0x7c00
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  mov dx, 0x3f8
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp 0x08:pm32
bits 32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
`;
const GDT = `
align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff ; 0x08: 32-bit code, flat
  dq 0x00cf92000000ffff ; 0x10: data, flat
  dq 0x00af9a000000ffff ; 0x18: 64-bit code
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt
`;

/** Prints R, P, L at each mode switch, then debug-exit 0x21 from long mode. */
export const MODES_GUEST = `
bits 16
org 0x7c00
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  mov dx, 0x3f8
  mov al, 'R'
  out dx, al
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  jmp 0x08:pm32
bits 32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov al, 'P'
  out dx, al
  mov edi, 0x1000           ; PML4 0x1000, PDPT 0x2000, PD 0x3000
  xor eax, eax
  mov ecx, 0xc00
  rep stosd
  mov dword [0x1000], 0x2003
  mov dword [0x2000], 0x3003
  mov dword [0x3000], 0x83  ; 2 MiB page at 0, identity
  mov eax, 0x1000
  mov cr3, eax
  mov eax, cr4
  or eax, 1 << 5            ; PAE
  mov cr4, eax
  mov ecx, 0xc0000080       ; EFER
  rdmsr
  or eax, 1 << 8            ; LME
  wrmsr
  mov eax, cr0
  or eax, 1 << 31           ; PG
  mov cr0, eax
  jmp 0x18:lm64
bits 64
lm64:
  mov dx, 0x3f8             ; rdmsr clobbered EDX
  mov al, 'L'
  out dx, al
  mov al, 0x21
  out 0xf4, al
  hlt
${GDT}
`;

/** 32-bit: write then read the MMIO scratch register; prints the low byte read; debug-exit 1. */
export const MMIO_GUEST = `${TO_PROTECTED}
  mov dword [0xc0000000], 0x12345678
  mov eax, [0xc0000000]     ; device returns value ^ 0xffffffff
  cmp eax, 0xedcba987
  jne fail
  mov al, 'M'
  out dx, al
  mov al, 1
  out 0xf4, al
fail:
  mov al, 'F'
  out dx, al
  mov al, 2
  out 0xf4, al
${GDT}
`;

/** Real mode: PIC remapped to 0x20, IRQ 5 unmasked; asks the device to raise GSI 5 and waits. */
export const IRQ_GUEST = `
bits 16
org 0x7c00
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  mov word [0x25 * 4], handler
  mov word [0x25 * 4 + 2], 0
  mov al, 0x11              ; ICW1: edge, cascade, ICW4
  out 0x20, al
  mov al, 0x20              ; ICW2: vectors 0x20..0x27
  out 0x21, al
  mov al, 0x04              ; ICW3: slave on IRQ2
  out 0x21, al
  mov al, 0x01              ; ICW4: 8086 mode
  out 0x21, al
  mov al, 0xdf              ; unmask IRQ 5 only
  out 0x21, al
  mov byte [0x600], 0
  mov dx, 0x510
  mov al, 5
  out dx, al                ; raise GSI 5
  sti
wait_loop:
  hlt
  cmp byte [0x600], 1
  jne wait_loop
  mov al, 3
  out 0xf4, al
handler:
  push ax
  push dx
  mov dx, 0x511
  mov al, 5
  out dx, al                ; lower GSI 5
  mov dx, 0x3f8
  mov al, 'I'
  out dx, al
  mov al, 0x20
  out 0x20, al              ; EOI
  mov byte [0x600], 1
  pop dx
  pop ax
  iret
`;

/** Real mode: i8042 reset command. */
export const RESET_GUEST = `
bits 16
org 0x7c00
  mov al, 0xfe
  out 0x64, al
  hlt
`;

/** Real mode: debug exit right away with value 0x7. */
export const EXIT_GUEST = `
bits 16
org 0x7c00
  mov al, 7
  out 0xf4, al
  hlt
`;

/** Prints 'S', then spins forever (`jmp $`) or halts with interrupts off. */
export const SPIN_GUEST = `
bits 16
org 0x7c00
  mov dx, 0x3f8
  mov al, 'S'
  out dx, al
  jmp $
`;
export const HALT_GUEST = `
bits 16
org 0x7c00
  cli
  mov dx, 0x3f8
  mov al, 'H'
  out dx, al
  hlt
  jmp $ - 1
`;

/** Asks the test device for a 1 ms timer that ends the VM with value 9, then halts forever. */
export const TIMER_GUEST = `
bits 16
org 0x7c00
  cli
  mov dx, 0x520
  mov al, 9
  out dx, al
halt:
  hlt
  jmp halt
`;

/**
 * Two vCPUs: the BSP reports its APIC id (CPUID.1:EBX[31:24]) as '0'+id, starts the AP with
 * INIT/SIPI through the in-kernel LAPIC (AP code at 0x8000), waits for it to report and exits
 * with value 5. The AP reports its own id the same way.
 */
export const SMP_GUEST = `${TO_PROTECTED}
  mov byte [0x600], 0
  mov esi, ap_start
  mov edi, 0x8000
  mov ecx, ap_end - ap_start
  rep movsb
  mov eax, 1
  cpuid
  shr ebx, 24
  lea eax, [ebx + '0']
  mov dx, 0x3f8
  out dx, al
  mov dword [0xfee00310], 0         ; ICR high: destination (shorthand used)
  mov dword [0xfee00300], 0x000c4500 ; INIT, all excluding self
  mov dword [0xfee00300], 0x000c4608 ; SIPI, vector 0x08 -> 0x8000
wait_loop:
  pause
  cmp byte [0x600], 1
  jne wait_loop
  mov al, 5
  out 0xf4, al
ap_start:
bits 16
  mov eax, 1
  cpuid
  shr ebx, 24
  lea ax, [bx + '0']
  mov dx, 0x3f8
  out dx, al
  xor ax, ax
  mov ds, ax
  mov byte [0x600], 1
  cli
ap_halt:
  hlt
  jmp ap_halt
ap_end:
bits 32
${GDT}
`;

/** Entered directly in 64-bit (or 32-bit) mode at 0x10000: prints the low byte of ESI, exits 0x11. */
export const ENTRY_GUEST_64 = `
bits 64
org 0x10000
  mov dx, 0x3f8
  mov eax, esi
  out dx, al
  mov al, 0x11
  out 0xf4, al
  hlt
`;
export const ENTRY_GUEST_32 = ENTRY_GUEST_64.replace('bits 64', 'bits 32');
