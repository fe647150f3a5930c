; A hostile-guest test kernel (multiboot v1, 32-bit flat protected mode). The first word of the
; command line picks what it does to the machine; the ones that survive report through the
; debug-exit port (status 0x11 -> exit 35):
;   "ports"  - read every I/O port at every size, then write all-ones to every port except the
;              ones that end the VM (debug-exit, pvpanic, reset, i8042 command, ACPI PM1 control)
;   "mmio"   - read and write all-ones at every page of the 32-bit MMIO hole (3 GiB .. 4 GiB),
;              and over every register of the IOAPIC and the local APIC
;   "timers" - run the PIT at its fastest rate, the local APIC timer at count 1 (periodic) and the
;              RTC's periodic interrupt at 8 kHz, all unmasked, while looping
;   "idt0"   - an empty IDT and a software interrupt (triple fault)
;   "gdt"    - a GDT of garbage and a far jump through it (#GP with no IDT: triple fault)
;   "reset"  - print "reset kernel up" and reset the machine through the PIIX reset register
bits 32
%include "multiboot-args.inc"
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
LAPIC equ 0xFEE00000
IOAPIC equ 0xFEC00000

header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, image_end, bss_end, start

start:
  mov esp, stack_top
  mov esi, [ebx + 16]
  SKIP_KERNEL_NAME              ; tests/support/asm/multiboot-args.inc
  mov eax, [esi]
  cmp eax, 'port'
  je ports
  cmp eax, 'mmio'
  je mmio
  cmp eax, 'time'
  je timers
  cmp eax, 'idt0'
  je idt0
  cmp eax, 'gdt'
  je gdt_bad
  cmp eax, 'rese'
  je reset
  jmp bad

; ---- ports -----------------------------------------------------------------------------------
ports:
  xor edx, edx
.read:
  in al, dx
  in ax, dx
  in eax, dx
  inc edx
  cmp edx, 0x10000
  jb .read
  xor edx, edx
.write:
  cmp dx, 0xf4                  ; debug-exit (4 ports)
  jb .ok
  cmp dx, 0xf8
  jb .skip
.ok:
  cmp dx, 0x505                 ; pvpanic
  je .skip
  cmp dx, 0xcf9                 ; reset control
  je .skip
  cmp dx, 0x64                  ; i8042 command (0xfe pulses reset)
  je .skip
  cmp dx, 0x604                 ; ACPI PM1a control (S5: power off)
  je .skip
  cmp dx, 0x605
  je .skip
  mov al, 0xff
  out dx, al
.skip:
  inc edx
  cmp edx, 0x10000
  jb .write
  jmp good

; ---- mmio ------------------------------------------------------------------------------------
mmio:
  mov edi, 0xC0000000
.page:
  mov eax, [edi]
  mov dword [edi], 0xFFFFFFFF
  mov ax, [edi + 2]
  mov byte [edi + 1], 0xFF
  add edi, 0x1000
  jnz .page                     ; wraps to 0 after the last page
  ; every IOAPIC register through its index/data window, and every LAPIC register
  xor ecx, ecx
.ioapic:
  mov [IOAPIC], ecx
  mov eax, [IOAPIC + 0x10]
  mov dword [IOAPIC + 0x10], 0xFFFFFFFF
  inc ecx
  cmp ecx, 256
  jb .ioapic
  mov edi, LAPIC
.lapic:
  cmp edi, LAPIC + 0x300        ; ICR low: an all-ones write would send an INIT IPI to everyone
  je .lapic_next
  mov eax, [edi]
  mov dword [edi], 0xFFFFFFFF
.lapic_next:
  add edi, 0x10
  cmp edi, LAPIC + 0x1000
  jb .lapic
  jmp good

; ---- timers ----------------------------------------------------------------------------------
timers:
  ; an IDT whose every gate goes to `tick`
  mov edi, idt
  mov ecx, 256
  mov eax, tick
  mov bx, cs
.gate:
  mov [edi], ax
  mov [edi + 2], bx
  mov word [edi + 4], 0x8E00    ; present, DPL 0, 32-bit interrupt gate
  mov edx, eax
  shr edx, 16
  mov [edi + 6], dx
  add edi, 8
  loop .gate
  lidt [idtr]
  ; PIC: ICW1..ICW4, vectors 0x20/0x28, everything unmasked
  mov al, 0x11
  out 0x20, al
  out 0xa0, al
  mov al, 0x20
  out 0x21, al
  mov al, 0x28
  out 0xa1, al
  mov al, 4
  out 0x21, al
  mov al, 2
  out 0xa1, al
  mov al, 1
  out 0x21, al
  out 0xa1, al
  xor al, al
  out 0x21, al
  out 0xa1, al
  ; PIT channel 0, mode 2, divisor 2
  mov al, 0x34
  out 0x43, al
  mov al, 2
  out 0x40, al
  xor al, al
  out 0x40, al
  ; RTC: periodic interrupt at 8192 Hz
  mov al, 0x8A
  out 0x70, al
  mov al, 0x23
  out 0x71, al
  mov al, 0x8B
  out 0x70, al
  in al, 0x71
  or al, 0x40
  mov ah, al
  mov al, 0x8B
  out 0x70, al
  mov al, ah
  out 0x71, al
  ; local APIC: software-enabled, timer periodic at count 1, divide by 1
  or dword [LAPIC + 0xF0], 0x1FF
  mov dword [LAPIC + 0x3E0], 0xB
  mov dword [LAPIC + 0x320], 0x20040
  mov dword [LAPIC + 0x380], 1
  sti
  mov ecx, 3000000
.spin:
  dec ecx
  jnz .spin
  cli
  cmp dword [ticks], 0
  je bad
  jmp good

tick:
  push eax
  inc dword [ticks]
  mov dword [LAPIC + 0xB0], 0   ; EOI to the local APIC
  mov al, 0x0C                  ; read RTC register C (acknowledges its interrupt)
  out 0x70, al
  in al, 0x71
  mov al, 0x20                  ; EOI to both PICs
  out 0xa0, al
  out 0x20, al
  pop eax
  iret

; ---- broken descriptor tables ------------------------------------------------------------------
idt0:
  lidt [empty]
  int 0x80
  jmp bad

gdt_bad:
  lidt [empty]
  lgdt [garbage_gdtr]
  jmp 0x18:bad

reset:
  mov esi, reset_msg
  mov dx, 0x3f8
.putc:
  lodsb
  test al, al
  jz .go
  out dx, al
  jmp .putc
.go:
  mov dx, 0xcf9
  mov al, 0x06                  ; RST_CPU | SYS_RST
  out dx, al
  jmp bad

good:
  mov dx, 0xf4
  mov eax, 0x11
  out dx, eax
bad:
  mov dx, 0xf4
  mov eax, 0x13
  out dx, eax
  hlt

empty:
  dw 0
  dd 0
garbage_gdtr:
  dw 31
  dd garbage
garbage:
  dd 0xDEADBEEF, 0x12345678, 0x0BADF00D, 0xFFFFFFFF, 0x00000000, 0x00001000, 0x55AA55AA, 0xAA55AA55
idtr:
  dw 256 * 8 - 1
  dd idt
ticks: dd 0
reset_msg: db "reset kernel up", 10, 0
image_end:
  alignb 8
idt: resb 256 * 8
  resb 4096
stack_top:
bss_end:
