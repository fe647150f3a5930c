; A multiboot test kernel for several vCPUs (issue 12). Command line: "N ITERS" — N vCPUs (the
; ACPI MADT's count; the test passes the VM's --cpus), ITERS increments each.
;
; The boot CPU enters long mode, copies a real-mode trampoline to 0x8000 and starts the other
; N-1 with INIT and STARTUP (vector 0x08) to all but itself; each application processor goes from
; real mode straight to long mode on the same page tables and reports in. Then, printing a line
; for each on COM1:
;   sum=S       every vCPU adds 1 to one counter ITERS times with LOCK XADD (S = N * ITERS when
;               the read-modify-writes are atomic across vCPUs)
;   xmc=ok      vCPU 1 calls `mov eax, imm32; ret` in a hot loop (translated), the boot CPU
;               rewrites the immediate, and vCPU 1 must return the new value ("xmc=stale" when it
;               still runs the old code 3 * 10^9 TSC ticks later)
;   timers=ok   each application processor runs its own local APIC timer (periodic, vector
;               0x41) and halts between ticks; each one counts 3 ticks of its own
;   ipi=K       the boot CPU sends a fixed IPI (vector 0x40) to each application processor by
;               APIC ID; K = how many handled it within 3 * 10^9 TSC ticks (N - 1 expected)
; and ends with "done" and debug-exit value 0x10 (status 0x21).
bits 32
%include "multiboot-args.inc"
org 0x100000

MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 0) | (1 << 1) | (1 << 16)
TRAMP equ 0x8000                ; the application processors start here (STARTUP vector 0x08)
LAPIC equ 0xfee00000
MAXCPU equ 16

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
  mov esp, stack_top
  mov esi, [ebx + 16]           ; command line
  SKIP_KERNEL_NAME              ; tests/support/asm/multiboot-args.inc
  mov [cmdline], esi
  ; identity-map the first 1 GiB with 2 MiB pages, and the APIC page (3 GiB + 1016 MiB) too
  mov edi, pd
  xor eax, eax
  mov ecx, 512
.pde:
  mov edx, eax
  or edx, 0x83                  ; present, writable, 2 MiB
  mov [edi], edx
  mov dword [edi + 4], 0
  add eax, 0x200000
  add edi, 8
  loop .pde
  mov dword [pd_hi + 503 * 8], 0xfee00000 | 0x9b   ; 0xfee00000: present, writable, PCD|PWT, 2 MiB
  mov dword [pdpt], pd + 3
  mov dword [pdpt + 3 * 8], pd_hi + 3
  mov dword [pml4], pdpt + 3
  call enter_long
  jmp 0x08:bsp64

enter_long:                     ; 32-bit: PAE, CR3, EFER.LME, PG; the caller jumps to a 64-bit segment
  mov eax, cr4
  or eax, 1 << 5
  mov cr4, eax
  mov eax, pml4
  mov cr3, eax
  mov ecx, 0xC0000080
  rdmsr
  or eax, 1 << 8
  wrmsr
  mov eax, cr0
  or eax, 0x80000001
  mov cr0, eax
  lgdt [gdtr]
  ret

; ---- the trampoline, copied to TRAMP: real mode -> long mode -------------------------------
bits 16
tramp:
  cli
  xor ax, ax
  mov ds, ax
  o32 lgdt [TRAMP + (t_gdtr - tramp)]
  mov eax, cr4
  or eax, 1 << 5
  mov cr4, eax
  mov eax, [TRAMP + (t_cr3 - tramp)]
  mov cr3, eax
  mov ecx, 0xC0000080
  rdmsr
  or eax, 1 << 8
  wrmsr
  mov eax, cr0
  or eax, 0x80000001
  mov cr0, eax
  jmp dword 0x08:ap64
align 4
t_cr3: dd pml4
t_gdtr:
  dw gdt_end - gdt - 1
  dd gdt
tramp_end:

bits 64
; ---- the boot CPU --------------------------------------------------------------------------
bsp64:
  call seg_setup
  mov rsp, stack_top
  call cpu_setup
  mov esi, [cmdline]
  call number
  mov [ncpu], eax
  call number
  mov [iters], eax
  ; the trampoline below 1 MiB, then INIT and STARTUP to all but self
  mov rsi, tramp
  mov rdi, TRAMP
  mov rcx, tramp_end - tramp
  rep movsb
  mov dword [r15 + 0x310], 0
  mov dword [r15 + 0x300], 0x000c4500   ; INIT, all excluding self
  mov dword [r15 + 0x300], 0x000c4608   ; STARTUP, vector 0x08
  mov eax, [ncpu]
  dec eax
.wait_started:
  pause
  cmp [started], eax
  jne .wait_started
  mov byte [go], 1
  call count_loop
  mov eax, [ncpu]
.wait_done:
  pause
  cmp [done], eax
  jne .wait_done
  mov rsi, msg_sum
  call puts
  mov eax, [counter]
  call putdec
  call newline
  ; cross-modifying code: vCPU 1 calls xfun until it returns 2
  cmp dword [ncpu], 2
  jb .timers
.wait_calls:
  pause
  cmp dword [calls], 100000
  jb .wait_calls
  mov dword [xfun + 1], 2
  call deadline
.wait_seen:
  cmp dword [xseen], 2
  je .xmc_ok
  pause
  call expired
  jb .wait_seen
  mov rsi, msg_stale
  call puts
  jmp .timers
.xmc_ok:
  mov rsi, msg_ok
  call puts
.timers:
  mov ebx, 1                    ; every application processor's own timer ticked 3 times
.wait_ticks:
  cmp ebx, [ncpu]
  jae .ticks_done
.tick_spin:
  pause
  cmp dword [ticks + rbx * 4], 3
  jb .tick_spin
  inc ebx
  jmp .wait_ticks
.ticks_done:
  mov rsi, msg_timers
  call puts
  ; a fixed IPI to each application processor, by APIC ID
  mov ebx, 1
.send:
  cmp ebx, [ncpu]
  jae .sent
  mov eax, ebx
  shl eax, 24
  mov [r15 + 0x310], eax
  mov dword [r15 + 0x300], 0x00004040   ; fixed, physical, assert, vector 0x40
  inc ebx
  jmp .send
.sent:
  call deadline
.wait_ipi:
  mov eax, [ncpu]
  dec eax
  cmp [ipis], eax
  je .ipi_done
  pause
  call expired
  jb .wait_ipi
.ipi_done:
  mov rsi, msg_ipi
  call puts
  mov eax, [ipis]
  call putdec
  call newline
  mov rsi, msg_done
  call puts
  mov dx, 0xf4
  mov eax, 0x10
  out dx, eax
  cli
  hlt

; ---- the application processors -------------------------------------------------------------
ap64:
  mov ax, 0x10                  ; no stack yet: no call before RSP is set
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov eax, 1
  lock xadd [next_id], eax      ; 1, 2, ...
  mov ebx, eax
  mov eax, ebx
  inc eax
  shl eax, 12
  lea rsp, [ap_stacks + rax]    ; a 4 KiB stack each
  call cpu_setup
  lock inc dword [started]
.wait_go:
  pause
  cmp byte [go], 0
  je .wait_go
  call count_loop
  cmp ebx, 1
  jne .timer
.xmc:                           ; until the boot CPU rewrites xfun
  call xfun
  mov [xseen], eax
  inc dword [calls]
  cmp eax, 2
  jne .xmc
.timer:
  mov dword [r15 + 0x3e0], 0xb        ; divide by 1
  mov dword [r15 + 0x320], 0x20041    ; periodic, vector 0x41
  mov dword [r15 + 0x380], 200000     ; initial count
.sleep:
  sti
  hlt
  jmp .sleep

; ---- shared pieces -------------------------------------------------------------------------
seg_setup:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  ret

cpu_setup:                      ; IDT, R15 = the local APIC's page for good, the APIC software-enabled (spurious vector 0xff)
  lidt [idtr]
  mov r15d, LAPIC
  mov dword [r15 + 0xf0], 0x1ff
  ret

count_loop:                     ; ITERS x LOCK XADD of 1 to the counter (hot: translated)
  mov ecx, [iters]
.again:
  mov eax, 1
  lock xadd [counter], eax
  dec ecx
  jnz .again
  lock inc dword [done]
  ret

ipi_handler:
  lock inc dword [ipis]
  mov dword [r15 + 0xb0], 0
  iretq

timer_handler:
  push rax
  mov eax, [r15 + 0x20]       ; this CPU's APIC ID
  shr eax, 24
  inc dword [ticks + rax * 4]
  cmp dword [ticks + rax * 4], 3
  jb .eoi
  mov dword [r15 + 0x320], 0x10041    ; three are enough: mask it
.eoi:
  mov dword [r15 + 0xb0], 0
  pop rax
  iretq

deadline:                       ; R9 = the TSC 3 * 10^9 ticks from now (1-3 s)
  rdtsc
  shl rdx, 32
  or rax, rdx
  mov r9, 3000000000
  add r9, rax
  ret

expired:                        ; CF clear once the TSC passed R9 (JB loops while it has not)
  rdtsc
  shl rdx, 32
  or rax, rdx
  cmp rax, r9
  ret

number:                         ; parse decimal at RSI (skipping spaces) into EAX
  xor eax, eax
.skip:
  cmp byte [rsi], ' '
  jne .digit
  inc rsi
  jmp .skip
.digit:
  movzx edx, byte [rsi]
  sub edx, '0'
  cmp edx, 9
  ja .end
  imul eax, eax, 10
  add eax, edx
  inc rsi
  jmp .digit
.end:
  ret

puts:                           ; RSI = NUL-terminated string, to COM1
  lodsb
  test al, al
  jz .done
  mov dx, 0x3f8
  out dx, al
  jmp puts
.done:
  ret

newline:
  mov al, 10
  mov dx, 0x3f8
  out dx, al
  ret

putdec:                         ; EAX unsigned, decimal
  mov ecx, 10
  xor r8d, r8d
.div:
  xor edx, edx
  div ecx
  push rdx
  inc r8d
  test eax, eax
  jnz .div
.out:
  pop rax
  add al, '0'
  mov dx, 0x3f8
  out dx, al
  dec r8d
  jnz .out
  ret

align 64
xfun:                           ; its own line: the immediate is rewritten by the boot CPU
  mov eax, 1
  ret
align 64

align 8
gdt:
  dq 0
  dq 0x00AF9A000000FFFF         ; 64-bit code
  dq 0x00CF92000000FFFF         ; data
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt
align 8
idtr:
  dw 256 * 16 - 1
  dq idt
%macro GATE 1                   ; a 64-bit interrupt gate to handler %1 (image below 4 GiB)
  dw (%1 - $$ + 0x100000) & 0xffff
  dw 0x08
  dw 0x8e00
  dw ((%1 - $$ + 0x100000) >> 16) & 0xffff
  dd 0
  dd 0
%endmacro
align 16
idt:
  times 0x40 dq 0, 0
  GATE ipi_handler              ; 0x40
  GATE timer_handler            ; 0x41
  times (0xff - 0x42) dq 0, 0
  GATE spurious                 ; 0xff
spurious:
  iretq
cmdline: dd 0
ncpu: dd 0
iters: dd 0
next_id: dd 1
started: dd 0
go: db 0
align 64
counter: dd 0
align 64
done: dd 0
calls: dd 0
xseen: dd 0
ipis: dd 0
ticks: times MAXCPU dd 0
msg_sum: db "sum=", 0
msg_ok: db "xmc=ok", 10, 0
msg_stale: db "xmc=stale", 10, 0
msg_timers: db "timers=ok", 10, 0
msg_ipi: db "ipi=", 0
msg_done: db "done", 10, 0
image_end:
  alignb 4096
pml4: resb 4096
pdpt: resb 4096
pd: resb 4096
pd_hi: resb 4096
  resb 8192
stack_top:
ap_stacks: resb 4096 * (MAXCPU + 1)
bss_end:
