; A multiboot test kernel for interrupt rules both typevisor and QEMU TCG must follow (issue 13),
; printing one line per rule on COM1, then exiting through the debug-exit port with 0x21:
; - "window": two self-IPIs pending with IF=0 are both taken in `sti; nop; cli`, after the
;   one-instruction STI shadow (the handlers record the order: 0x41 first, then 0x40);
; - "nmi": NMIs sent while the NMI handler runs are held until its IRET and collapse into one
;   (handler runs: 2; the count seen at the end of the first run: 1);
; - "apic-off": with IA32_APIC_BASE.EN clear, CPUID.1:EDX.APIC (bit 9) reads 0 (then EN is set
;   again: the SDM allows it and typevisor's CPUID shows the APIC again; QEMU keeps it disabled
;   until reset, so the kernel does not print that).
bits 32
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
APIC equ 0xfee00000
ICR_SELF equ 1 << 18

header:
  dd MB_MAGIC
  dd MB_FLAGS
  dd -(MB_MAGIC + MB_FLAGS)
  dd header
  dd header
  dd image_end
  dd bss_end
  dd start

start:
  cli
  mov esp, stack_top
  mov ebx, cs
  mov eax, nmi_handler
  mov edi, idt + 2 * 8
  call set_gate
  mov eax, h40
  mov edi, idt + 0x40 * 8
  call set_gate
  mov eax, h41
  mov edi, idt + 0x41 * 8
  call set_gate
  lidt [idtr]
  mov dword [APIC + 0xf0], 0x1ff        ; software-enable, spurious vector 0xff

  ; --- window
  mov dword [APIC + 0x300], ICR_SELF | 0x41
  mov dword [APIC + 0x300], ICR_SELF | 0x40
  sti
  nop
  cli
  mov esi, s_window
  call puts
  mov esi, order
  call puts
  call newline

  ; --- nmi
  mov dword [APIC + 0x300], ICR_SELF | (4 << 8)
  mov ecx, 1000000
.wait_nmi:
  cmp dword [nmi_runs], 2
  jae .nmi_done
  loop .wait_nmi
.nmi_done:
  mov ecx, 100000                       ; any further (wrong) NMI has time to arrive
.settle:
  loop .settle
  mov esi, s_nmi
  call puts
  mov eax, [nmi_runs]
  call putdec
  mov al, ' '
  call putc
  mov eax, [nmi_inside]
  call putdec
  call newline

  ; --- apic-off
  mov ecx, 0x1b
  rdmsr
  mov [apic_base], eax
  and eax, ~(1 << 11)
  wrmsr
  mov eax, 1
  cpuid
  shr edx, 9
  and edx, 1
  mov [apic_bit], edx
  mov ecx, 0x1b
  mov eax, [apic_base]
  xor edx, edx
  wrmsr
  mov esi, s_apic
  call puts
  mov eax, [apic_bit]
  call putdec
  call newline

  mov dx, 0xf4
  mov eax, 0x21
  out dx, eax
  hlt

set_gate:                               ; EAX = handler, BX = CS, EDI = gate
  mov [edi], ax
  mov [edi + 2], bx
  mov word [edi + 4], 0x8e00
  shr eax, 16
  mov [edi + 6], ax
  ret

h40:
  push eax
  mov al, '0'
  jmp record
h41:
  push eax
  mov al, '1'
record:
  push edi
  mov edi, [order_end]
  mov [edi], al
  inc dword [order_end]
  mov dword [APIC + 0xb0], 0            ; EOI
  pop edi
  pop eax
  iret

nmi_handler:
  push eax
  push ecx
  inc dword [nmi_runs]
  cmp dword [nmi_runs], 1
  jne .out
  mov dword [APIC + 0x300], ICR_SELF | (4 << 8)
  mov dword [APIC + 0x300], ICR_SELF | (4 << 8)
  mov ecx, 100000
.spin:
  loop .spin
  mov eax, [nmi_runs]
  mov [nmi_inside], eax
.out:
  pop ecx
  pop eax
  iret

newline:
  mov al, 10
  jmp putc
putdec:                                 ; EAX < 10
  add al, '0'
  jmp putc
puts:
  lodsb
  test al, al
  jz .done
  call putc
  jmp puts
.done:
  ret
putc:
  push edx
  push eax
  mov dx, 0x3fd
.wait:
  in al, dx
  test al, 0x20
  jz .wait
  pop eax
  mov dx, 0x3f8
  out dx, al
  pop edx
  ret

s_window: db "window: ", 0
s_nmi: db "nmi: ", 0
s_apic: db "apic-off: ", 0
align 8
idtr:
  dw 256 * 8 - 1
  dd idt
order_end: dd order
nmi_runs: dd 0
nmi_inside: dd 0
apic_base: dd 0
apic_bit: dd 0
order: times 8 db 0
  alignb 16
idt: times 256 * 8 db 0
  times 4096 db 0
stack_top:
image_end:
bss_end:
