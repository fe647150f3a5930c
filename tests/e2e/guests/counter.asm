; A multiboot test kernel that counts and prints each count on COM1, for pause and snapshot tests:
;   "n=0000002a ap=000013f0\n"
; The count lives in ESI (a register), its complement in EDI, and a copy in memory: each step
; checks they agree and that the UART's scratch register still holds 0xa5 (device state), and
; prints "BAD" and stops counting otherwise. The BSP sends INIT and STARTUP to all but itself
; (with one vCPU nobody receives them; CPUID's logical-processor count is no guide: the bt CPU
; reports one per package, and kvm_pvm the host's); the AP counts in memory (ap=...) in real
; mode and does a port write each step (an exit the device thread serves through its mailbox).
; Steps are paced by the TSC (~2 ms at 2-3 GHz).
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
COM1 equ 0x3f8
UART_SCR equ COM1 + 7
SCRATCH equ 0xa5
AP_COUNT equ 0x600          ; the AP's counter (below 1 MiB: the AP runs in real mode)
AP_TRAMPOLINE equ 0x8000
STEP_TSC equ 5000000
header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, image_end, bss_end, start
start:
  mov esp, stack_top
  mov dx, UART_SCR
  mov al, SCRATCH
  out dx, al
  mov dword [AP_COUNT], 0
  ; copy the AP's code below 1 MiB and wake it (INIT, then SIPI vector 0x08 -> 0x8000)
  mov esi, ap_start
  mov edi, AP_TRAMPOLINE
  mov ecx, ap_end - ap_start
  rep movsb
  mov dword [0xfee00310], 0
  mov dword [0xfee00300], 0x000c4500
  mov dword [0xfee00300], 0x000c4608
.counting:
  xor esi, esi
  mov edi, -1
  mov [counter], esi
.step:
  cmp esi, [counter]
  jne bad
  mov eax, esi
  not eax
  cmp eax, edi
  jne bad
  mov dx, UART_SCR
  in al, dx
  cmp al, SCRATCH
  jne bad
  mov al, 'n'
  call putc
  mov al, '='
  call putc
  mov eax, esi
  call puthex
  mov al, ' '
  call putc
  mov al, 'a'
  call putc
  mov al, 'p'
  call putc
  mov al, '='
  call putc
  mov eax, [AP_COUNT]
  call puthex
  mov al, 10
  call putc
  inc esi
  dec edi
  mov [counter], esi
  rdtsc
  mov ebx, eax
.wait:
  pause
  rdtsc
  sub eax, ebx
  cmp eax, STEP_TSC
  jb .wait
  jmp .step

bad:
  mov al, 'B'
  call putc
  mov al, 'A'
  call putc
  mov al, 'D'
  call putc
  mov al, 10
  call putc
.stuck:
  jmp .stuck

putc:                       ; AL
  push edx
  mov dx, COM1
  out dx, al
  pop edx
  ret

puthex:                     ; EAX as 8 hex digits
  push ecx
  push ebx
  mov ebx, eax
  mov ecx, 8
.digit:
  rol ebx, 4
  mov al, bl
  and al, 0xf
  add al, '0'
  cmp al, '9'
  jbe .out
  add al, 'a' - '0' - 10
.out:
  call putc
  loop .digit
  pop ebx
  pop ecx
  ret

ap_start:
bits 16
  xor ax, ax
  mov ds, ax
.ap_step:
  inc dword [AP_COUNT]
  out 0x80, al
  mov cx, 0x4000
.ap_wait:
  pause
  loop .ap_wait
  jmp .ap_step
ap_end:
bits 32

counter: dd 0
image_end:
  alignb 16
  times 4096 db 0
stack_top:
bss_end:
