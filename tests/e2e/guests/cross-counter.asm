; A multiboot test kernel for snapshots that move a running guest between the engines (kvm <-> bt),
; and for pause/resume and same-engine snapshots. It sleeps in HLT between ticks of the local APIC
; timer and prints a line on COM1 every 5 ticks (~5 ms):
;   "n=0000002a t=000000d3\n"       (n = line count from 0, t = timer ticks so far; both hex)
; The vCPU is HALTED nearly all the time, so a snapshot usually catches it in HLT with the timer
; armed (and, while a line is printed, with a tick pending in the APIC's IRR: interrupts are on
; only around the HLT). Everything a move must carry over is set once and checked before each
; line; a difference prints "BAD <what>" and stops (cli; hlt):
;   - "BAD reg":   the line count in ESI, its complement in EDI, n ^ 0x5a5a5a5a in EBP, a copy in
;                  memory, ESP at the top of the stack (general registers and RAM);
;   - "BAD xmm":   XMM0..XMM7 hold distinct 128-bit patterns (stored with MOVDQU to a scratch area
;                  and compared with REPE CMPSD against the patterns in memory);
;   - "BAD fpu":   the x87 and SSE state through FXSAVE against the image FXRSTOR loaded: FCW
;                  (0x027f, not the default), FSW (TOP = 3), the abridged tag word (ST0..ST4 in use:
;                  pi, 1, -123456789, log2(10), a negative 80-bit constant; ST5..ST7 empty but
;                  holding patterns), MXCSR (0xbf80: FZ, round down; not the default), the eight
;                  80-bit registers and XMM0..XMM7 (FOP/FIP/FDP and reserved bytes are ignored);
;   - "BAD cr":    CR0 (PE MP NE WP PG, EM and TS clear), CR3, CR4 (PSE PAE OSFXSR OSXMMEXCPT), EFER
;                  (LME LMA), as read at start;
;   - "BAD dt":    GDTR and IDTR (SGDT/SIDT) as loaded;
;   - "BAD seg":   the selectors of CS/DS/ES/SS/FS/GS, and the hidden bases of FS and GS (their
;                  descriptors have bases 0x300000 and 0x340000: [fs:0] and [gs:0] read markers
;                  written there; a move that lost a base reads something else);
;   - "BAD wp":    a write through a read-only 2 MiB alias (virtual 0x40000000 -> physical 0) must
;                  take #PF (CR0.WP and the page tables in force); a read through the alias must see
;                  the identity-mapped data; "BAD pf": the #PF came with an error code other than 3
;                  (present, write, supervisor) or CR2 other than the address written;
;   - "BAD apic":  the local APIC's SVR (enabled, spurious vector 0xff), LVT timer (periodic, vector
;                  0x40, unmasked), TDCR (3: divide by 16), TICR (62500: ~1 ms at the engines' 1 GHz
;                  APIC bus), current count <= TICR, TPR 0; "BAD isr": a vector in service outside
;                  the timer handler (an EOI lost in a move would also stop the ticks);
;   - "BAD pic":   both legacy PICs (remapped to 0x20/0x28) still have every line masked;
;   - "BAD uart":  the UART's scratch register still holds 0xa5 (device state);
;   - "BAD tick":  the tick count went back since the last line;
;   - "BAD fault XX ..." / "BAD int XX ...": an exception (0..31, NMI included) or an unexpected
;                  interrupt vector XX (a PIC line unmasked by a move, a timer with another vector),
;                  then the low halves of the four quadwords of the frame: [error code,] RIP, CS,
;                  RFLAGS.
; If the ticks stop (a timer lost or disarmed in a move), the lines stop: the test times out. t
; grows by exactly 5 per line (interrupts are off from reading t to the next wait), across pauses
; and snapshots too: a test can check that.
;
; Made to run on a kvm_pvm host too, where KVM's instruction emulator runs every instruction of a
; guest like this one, which shapes it:
;   - it runs 32-bit code in IA-32e compatibility mode: kvm_pvm refuses CR0.PG outside long mode
;     (#GP on the MOV to CR0, with 32-bit paging and with PAE alike), so paging is 4-level (EFER.LME,
;     CR4.PAE) with 2 MiB pages: the first 16 MiB identity-mapped, the local APIC's page (uncached)
;     and the read-only alias above; CS stays a 32-bit code segment except in the handlers, which
;     are 64-bit (the IDT has 16-byte gates);
;   - no IRET (the emulator does IRET in real mode only): interrupts are on only in the wait loop
;     (sti; hlt), and a handler drops its frame (RSP back from the frame), then goes back to the
;     loop's head with a far JMP to the 32-bit code segment (the #PF of the WP probe goes to its
;     resume point the same way);
;   - no x87 loads or arithmetic (of the x87 the emulator knows FNINIT, FNSTCW and FNSTSW; FLDCW
;     and FLDPI end the run with "KVM instruction emulation failed"): the x87 registers and MXCSR
;     are loaded with FXRSTOR and checked with FXSAVE; XMM with MOVDQU.
; Build: nasm -f bin -o cross-counter.bin tests/e2e/guests/cross-counter.asm
bits 32
org 0x100000
MB_MAGIC equ 0x1BADB002
MB_FLAGS equ (1 << 1) | (1 << 16)
COM1 equ 0x3f8
UART_LSR equ COM1 + 5
UART_SCR equ COM1 + 7
SCRATCH equ 0xa5
APIC equ 0xfee00000
APIC_TPR equ APIC + 0x80
APIC_EOI equ APIC + 0xb0
APIC_SVR equ APIC + 0xf0
APIC_ISR equ APIC + 0x100           ; 8 registers, 16 bytes apart
APIC_LVT_TIMER equ APIC + 0x320
APIC_TICR equ APIC + 0x380
APIC_TCCR equ APIC + 0x390
APIC_TDCR equ APIC + 0x3e0
TIMER_VEC equ 0x40
SPURIOUS_VEC equ 0xff
TIMER_COUNT equ 62500               ; 1 GHz / 16 / 62500 = 1 kHz
TICKS_PER_LINE equ 5
MSR_EFER equ 0xc0000080
FS_BASE equ 0x300000
GS_BASE equ 0x340000
FS_MARK equ 0x46534653              ; "SFSF"
GS_MARK equ 0x47534753              ; "SGSG"
RO_ALIAS equ 0x40000000             ; read-only 2 MiB page onto physical 0
EBP_XOR equ 0x5a5a5a5a
SEL_CODE32 equ 0x08
SEL_DATA equ 0x10
SEL_FS equ 0x18
SEL_GS equ 0x20
SEL_CODE64 equ 0x28
STUB_SIZE equ 16                    ; the 64-bit stubs, one per vector
FX_COMPARED equ 288                 ; FXSAVE bytes compared: the header, ST0..ST7, XMM0..XMM7

header:
  dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
  dd header, header, image_end, bss_end, start

start:
  cli
  cld
  mov esp, stack_top
  lgdt [gdtr]
  jmp SEL_CODE32:.reload
.reload:
  mov ax, SEL_DATA
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov ax, SEL_FS
  mov fs, ax
  mov ax, SEL_GS
  mov gs, ax
  mov dword [FS_BASE], FS_MARK
  mov dword [GS_BASE], GS_MARK
  mov word [to_resume + 4], SEL_CODE32
  mov dx, UART_SCR
  mov al, SCRATCH
  out dx, al

  ; IDT (16-byte gates): every vector to its stub (which prints BAD), then the timer, spurious and
  ; #PF handlers
  xor ecx, ecx
.gate:
  mov eax, ecx
  shl eax, 4                                ; STUB_SIZE
  add eax, stubs
  call set_gate
  inc ecx
  cmp ecx, 256
  jb .gate
  mov ecx, TIMER_VEC
  mov eax, timer_handler
  call set_gate
  mov ecx, SPURIOUS_VEC
  mov eax, spurious_handler
  call set_gate
  mov ecx, 14
  mov eax, pf_handler
  call set_gate
  lidt [idtr]

  ; legacy PICs: remap to 0x20/0x28, then mask every line
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
  mov al, 0xff
  out 0x21, al
  out 0xa1, al

  ; page tables: 2 MiB pages; identity 0..16 MiB, the read-only alias, the APIC's page uncached
  mov dword [pml4], pdpt + 3
  mov dword [pdpt + 0 * 8], pd_low + 3      ; 0..1 GiB
  mov dword [pdpt + 1 * 8], pd_alias + 3    ; 1..2 GiB
  mov dword [pdpt + 3 * 8], pd_apic + 3     ; 3..4 GiB
  xor ecx, ecx
.pde:
  mov eax, ecx
  shl eax, 21
  or eax, 0x83                              ; present, writable, 2 MiB
  mov [pd_low + ecx * 8], eax
  inc ecx
  cmp ecx, 8
  jb .pde
  mov dword [pd_alias + ((RO_ALIAS >> 21) & 0x1ff) * 8], 0x00000000 | 0x81   ; present, read-only
  mov dword [pd_apic + ((APIC >> 21) & 0x1ff) * 8], (APIC & 0xffe00000) | 0x9b   ; PCD, PWT
  mov eax, pml4
  mov cr3, eax
  mov eax, cr4
  or eax, (1 << 4) | (1 << 5) | (1 << 9) | (1 << 10)    ; PSE, PAE, OSFXSR, OSXMMEXCPT
  mov cr4, eax
  mov ecx, MSR_EFER
  rdmsr
  or eax, 1 << 8                            ; LME
  wrmsr
  mov eax, cr0
  and eax, ~((1 << 2) | (1 << 3))           ; EM and TS clear
  or eax, (1 << 31) | (1 << 16) | (1 << 5) | (1 << 1)   ; PG, WP, NE, MP
  mov cr0, eax                              ; IA-32e mode, in a 32-bit (compatibility) segment
  jmp SEL_CODE32:.paged
.paged:

  ; x87, MXCSR and XMM
  fninit
  fxrstor [fx_image]
  movdqu xmm0, [xmm_ref + 0 * 16]
  movdqu xmm1, [xmm_ref + 1 * 16]
  movdqu xmm2, [xmm_ref + 2 * 16]
  movdqu xmm3, [xmm_ref + 3 * 16]
  movdqu xmm4, [xmm_ref + 4 * 16]
  movdqu xmm5, [xmm_ref + 5 * 16]
  movdqu xmm6, [xmm_ref + 6 * 16]
  movdqu xmm7, [xmm_ref + 7 * 16]

  ; the control registers, EFER and descriptor tables as they are now, for the checks
  mov eax, cr0
  mov [cr_ref + 0], eax
  mov eax, cr3
  mov [cr_ref + 4], eax
  mov eax, cr4
  mov [cr_ref + 8], eax
  mov ecx, MSR_EFER
  rdmsr
  mov [cr_ref + 12], eax
  sgdt [dt_ref + 0]
  sidt [dt_ref + 8]

  ; local APIC: software-enabled, spurious vector 0xff; timer periodic, vector 0x40, ~1 ms
  mov dword [APIC_TPR], 0
  mov dword [APIC_SVR], 0x100 | SPURIOUS_VEC
  mov dword [APIC_TDCR], 3
  mov dword [APIC_LVT_TIMER], (1 << 17) | TIMER_VEC
  mov dword [APIC_TICR], TIMER_COUNT

  xor esi, esi
  mov edi, -1
  mov ebp, EBP_XOR
  mov [counter], esi
  mov dword [last_t], 0

step:
  call check
  mov al, 'n'
  call putc
  mov al, '='
  call putc
  mov eax, esi
  call puthex
  mov al, ' '
  call putc
  mov al, 't'
  call putc
  mov al, '='
  call putc
  mov eax, [ticks]
  mov [last_t], eax
  call puthex
  mov al, 10
  call putc
  inc esi
  dec edi
  mov ebp, esi
  xor ebp, EBP_XOR
  mov [counter], esi
  mov eax, [ticks]
  mov [line_base], eax
wait_tick:                                  ; the handlers come back here, interrupts off
  mov eax, [ticks]
  sub eax, [line_base]
  cmp eax, TICKS_PER_LINE
  jae step
  sti                                       ; the STI shadow covers HLT: no tick is missed
  hlt
  cli                                       ; (woken by something that is not an interrupt)
  jmp wait_tick

; check: everything set at start still holds; prints BAD and stops otherwise. Keeps ESI, EDI, EBP.
check:
  ; general registers, the stack pointer and memory
  cmp esi, [counter]
  jne bad_reg
  mov eax, esi
  not eax
  cmp eax, edi
  jne bad_reg
  mov eax, esi
  xor eax, EBP_XOR
  cmp eax, ebp
  jne bad_reg
  cmp esp, stack_top - 4                    ; the return address of this call
  jne bad_reg
  ; the UART's scratch register
  mov dx, UART_SCR
  in al, dx
  cmp al, SCRATCH
  jne bad_uart
  ; XMM0..XMM7
  movdqu [xmm_tmp + 0 * 16], xmm0
  movdqu [xmm_tmp + 1 * 16], xmm1
  movdqu [xmm_tmp + 2 * 16], xmm2
  movdqu [xmm_tmp + 3 * 16], xmm3
  movdqu [xmm_tmp + 4 * 16], xmm4
  movdqu [xmm_tmp + 5 * 16], xmm5
  movdqu [xmm_tmp + 6 * 16], xmm6
  movdqu [xmm_tmp + 7 * 16], xmm7
  push esi
  push edi
  mov esi, xmm_tmp
  mov edi, xmm_ref
  mov ecx, 8 * 16 / 4
  repe cmpsd
  pop edi
  pop esi
  jne bad_xmm
  ; x87 and SSE state: FXSAVE, blank what is not compared, compare with the image
  fxsave [fx_area]
  xor eax, eax
  mov [fx_area + 6], ax                     ; FOP
  mov [fx_area + 8], eax                    ; FIP, FCS, FDP, FDS
  mov [fx_area + 12], eax
  mov [fx_area + 16], eax
  mov [fx_area + 20], eax
  mov [fx_area + 28], eax                   ; MXCSR_MASK
  xor ecx, ecx
.st_reserved:                               ; bytes 10..15 of each ST slot
  mov [fx_area + 32 + 10 + ecx], ax
  mov [fx_area + 32 + 12 + ecx], eax
  add ecx, 16
  cmp ecx, 8 * 16
  jb .st_reserved
  push esi
  push edi
  mov esi, fx_area
  mov edi, fx_image
  mov ecx, FX_COMPARED / 4
  repe cmpsd
  pop edi
  pop esi
  jne bad_fpu
  ; control registers and EFER
  mov eax, cr0
  cmp eax, [cr_ref + 0]
  jne bad_cr
  mov eax, cr3
  cmp eax, [cr_ref + 4]
  jne bad_cr
  mov eax, cr4
  cmp eax, [cr_ref + 8]
  jne bad_cr
  mov ecx, MSR_EFER
  rdmsr
  cmp eax, [cr_ref + 12]
  jne bad_cr
  ; GDTR, IDTR
  sgdt [dt_tmp + 0]
  sidt [dt_tmp + 8]
  mov eax, [dt_tmp + 0]
  cmp eax, [dt_ref + 0]
  jne bad_dt
  mov ax, [dt_tmp + 4]
  cmp ax, [dt_ref + 4]
  jne bad_dt
  mov eax, [dt_tmp + 8]
  cmp eax, [dt_ref + 8]
  jne bad_dt
  mov ax, [dt_tmp + 12]
  cmp ax, [dt_ref + 12]
  jne bad_dt
  ; segments: selectors, and the bases of FS and GS
  mov ax, cs
  cmp ax, SEL_CODE32
  jne bad_seg
  mov ax, ds
  cmp ax, SEL_DATA
  jne bad_seg
  mov ax, es
  cmp ax, SEL_DATA
  jne bad_seg
  mov ax, ss
  cmp ax, SEL_DATA
  jne bad_seg
  mov ax, fs
  cmp ax, SEL_FS
  jne bad_seg
  mov ax, gs
  cmp ax, SEL_GS
  jne bad_seg
  cmp dword [fs:0], FS_MARK
  jne bad_seg
  cmp dword [gs:0], GS_MARK
  jne bad_seg
  ; paging: the read-only alias reads the identity-mapped data, and a write to it faults (WP)
  mov eax, [RO_ALIAS + wp_probe]
  cmp eax, [wp_probe]
  jne bad_wp
  mov dword [pf_resume], .after_write
  mov [RO_ALIAS + wp_probe], eax
  mov dword [pf_resume], 0
  jmp bad_wp                                ; the write went through
.after_write:
  cmp dword [pf_seen], 1
  jne bad_wp
  mov dword [pf_seen], 0
  ; local APIC
  mov eax, [APIC_SVR]
  and eax, 0x1ff
  cmp eax, 0x100 | SPURIOUS_VEC
  jne bad_apic
  mov eax, [APIC_LVT_TIMER]
  and eax, 0x710ff                          ; mode, mask, vector
  cmp eax, (1 << 17) | TIMER_VEC
  jne bad_apic
  mov eax, [APIC_TDCR]
  and eax, 0xb
  cmp eax, 3
  jne bad_apic
  cmp dword [APIC_TICR], TIMER_COUNT
  jne bad_apic
  cmp dword [APIC_TCCR], TIMER_COUNT
  ja bad_apic
  mov eax, [APIC_TPR]
  and eax, 0xff
  jnz bad_apic
  xor ecx, ecx
.isr:
  mov edx, ecx
  shl edx, 4
  cmp dword [APIC_ISR + edx], 0
  jne bad_isr
  inc ecx
  cmp ecx, 8
  jb .isr
  ; legacy PICs: every line still masked
  in al, 0x21
  cmp al, 0xff
  jne bad_pic
  in al, 0xa1
  cmp al, 0xff
  jne bad_pic
  ; the tick count never goes back
  mov eax, [ticks]
  cmp eax, [last_t]
  jb bad_tick
  ret

set_gate:                                   ; EAX = handler (below 4 GiB), ECX = vector
  push ecx
  shl ecx, 4
  mov [idt + ecx], ax
  mov word [idt + ecx + 2], SEL_CODE64
  mov word [idt + ecx + 4], 0x8e00          ; present, DPL 0, 64-bit interrupt gate
  shr eax, 16
  mov [idt + ecx + 6], ax
  mov dword [idt + ecx + 8], 0
  mov dword [idt + ecx + 12], 0
  pop ecx
  ret

bad_reg:  mov esi, msg_reg
          jmp bad
bad_uart: mov esi, msg_uart
          jmp bad
bad_xmm:  mov esi, msg_xmm
          jmp bad
bad_fpu:  mov esi, msg_fpu
          jmp bad
bad_cr:   mov esi, msg_cr
          jmp bad
bad_dt:   mov esi, msg_dt
          jmp bad
bad_seg:  mov esi, msg_seg
          jmp bad
bad_wp:   mov esi, msg_wp
          jmp bad
bad_pf:   mov esi, msg_pf
          jmp bad
bad_apic: mov esi, msg_apic
          jmp bad
bad_isr:  mov esi, msg_isr
          jmp bad
bad_pic:  mov esi, msg_pic
          jmp bad
bad_tick: mov esi, msg_tick
          jmp bad
bad:                                        ; ESI = the message
  cli
  call puts
stop:
  cli
  hlt
  jmp stop

unexpected:                                 ; from a 64-bit stub: EBX = vector, EDX = its frame
  mov esi, msg_fault
  cmp ebx, 32
  jb .print
  mov esi, msg_int
.print:
  call puts
  mov eax, ebx
  shl eax, 24
  mov ecx, 2
  call puthex_n
  mov ecx, 4                                ; the frame's quadwords, low halves
.frame:
  mov al, ' '
  call putc
  mov eax, [edx]
  call puthex
  add edx, 8
  loop .frame
  mov al, 10
  call putc
  jmp stop

puts:                                       ; ESI = zero-terminated string
  lodsb
  test al, al
  jz .done
  call putc
  jmp puts
.done:
  ret

putc:                                       ; AL; waits for the transmitter (LSR bit 5)
  push edx
  push eax
  mov dx, UART_LSR
.wait:
  in al, dx
  test al, 0x20
  jz .wait
  pop eax
  mov dx, COM1
  out dx, al
  pop edx
  ret

puthex:                                     ; EAX as 8 hex digits
  push ecx
  mov ecx, 8
  call puthex_n
  pop ecx
  ret

puthex_n:                                   ; the top ECX hex digits of EAX
  push ebx
  mov ebx, eax
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
  ret

; ---- 64-bit handlers: no IRET; each drops its frame and far-jumps back to 32-bit code ----
bits 64
timer_handler:
  inc dword [ticks]
  mov eax, APIC_EOI
  mov dword [rax], 0
  mov rsp, [rsp + 24]                       ; RSP when interrupted (the frame is RIP CS RFLAGS RSP SS)
  jmp far dword [to_wait]

spurious_handler:                           ; no EOI for the spurious vector
  mov rsp, [rsp + 24]
  jmp far dword [to_wait]

pf_handler:                                 ; the expected #PF of the WP probe, or a fault
  cmp dword [pf_resume], 0
  je stubs + 14 * STUB_SIZE
  cmp qword [rsp], 3                        ; error code: present, write, supervisor
  jne .bad
  mov rax, cr2
  cmp rax, RO_ALIAS + wp_probe
  jne .bad
  mov dword [pf_seen], 1
  mov rsp, [rsp + 32]                       ; the frame has an error code first
  mov eax, [pf_resume]
  mov dword [pf_resume], 0
  mov [to_resume], eax
  jmp far dword [to_resume]
.bad:
  jmp far dword [to_bad_pf]

; one stub per vector: the vector in EBX, the frame in EDX, then the 32-bit fault path
align STUB_SIZE
stubs:
%assign v 0
%rep 256
  mov ebx, v
  mov rdx, rsp
  jmp far dword [to_unexpected]
  align STUB_SIZE                           ; (15 bytes of code)
%assign v v + 1
%endrep
bits 32

to_wait:       dd wait_tick
               dw SEL_CODE32
to_unexpected: dd unexpected
               dw SEL_CODE32
to_bad_pf:     dd bad_pf
               dw SEL_CODE32

msg_fault: db "BAD fault ", 0
msg_int:   db "BAD int ", 0
msg_reg:   db "BAD reg", 10, 0
msg_uart:  db "BAD uart", 10, 0
msg_xmm:   db "BAD xmm", 10, 0
msg_fpu:   db "BAD fpu", 10, 0
msg_cr:    db "BAD cr", 10, 0
msg_dt:    db "BAD dt", 10, 0
msg_seg:   db "BAD seg", 10, 0
msg_wp:    db "BAD wp", 10, 0
msg_pf:    db "BAD pf", 10, 0
msg_apic:  db "BAD apic", 10, 0
msg_isr:   db "BAD isr", 10, 0
msg_pic:   db "BAD pic", 10, 0
msg_tick:  db "BAD tick", 10, 0

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff                     ; 0x08 32-bit code, flat
  dq 0x00cf92000000ffff                     ; 0x10 data, flat
  dq 0x00cf92300000ffff                     ; 0x18 data, base 0x300000 (FS)
  dq 0x00cf92340000ffff                     ; 0x20 data, base 0x340000 (GS)
  dq 0x00af9a000000ffff                     ; 0x28 64-bit code (the handlers)
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt
idtr:
  dw 256 * 16 - 1
  dd idt

wp_probe:  dd 0x600dcafe

; the FXRSTOR image, and the reference for the checks (bytes 0..287; what is not compared is 0)
%macro F80 2                                ; mantissa, sign and exponent: one 16-byte ST slot
  dq %1
  dw %2
  times 6 db 0
%endmacro
align 16
fx_image:
  dw 0x027f                                 ; FCW: all masked, 53-bit precision
  dw 3 << 11                                ; FSW: TOP = 3
  db 0xf8                                   ; abridged FTW: physical 3..7 (ST0..ST4) in use
  db 0
  dw 0                                      ; FOP
  dd 0, 0, 0, 0                             ; FIP, FCS, FDP, FDS
  dd 0xbf80                                 ; MXCSR: all masked, FZ, round down
  dd 0                                      ; MXCSR_MASK (not loaded)
  F80 0xc90fdaa22168c235, 0x4000            ; ST0 pi
  F80 0x8000000000000000, 0x3fff            ; ST1 1.0
  F80 0xeb79a2a000000000, 0xc019            ; ST2 -123456789
  F80 0xd49a784bcd1b8afe, 0x4000            ; ST3 log2(10)
  F80 0x8123456789abcdef, 0xbffe            ; ST4 -0.5045...
  F80 0x1111222233334444, 0x5555            ; ST5..ST7: empty, their contents kept all the same
  F80 0x6666777788889999, 0x2aaa
  F80 0xbbbbccccddddeeee, 0x7fff
xmm_ref:                                    ; XMM0..XMM7 (offset 160)
  dd 0x00010203, 0x04050607, 0x08090a0b, 0x0c0d0e0f
  dd 0x11111111, 0x22222222, 0x33333333, 0x44444444
  dd 0xdeadbeef, 0xfeedface, 0xcafebabe, 0x8badf00d
  dd 0x7fffffff, 0x80000000, 0xffffffff, 0x00000001
  dd 0x3ff00000, 0x00000000, 0x400921fb, 0x54442d18
  dd 0xa5a5a5a5, 0x5a5a5a5a, 0x0f0f0f0f, 0xf0f0f0f0
  dd 0x13579bdf, 0x2468ace0, 0x97531fdb, 0xeca86420
  dd 0x01234567, 0x89abcdef, 0xfedcba98, 0x76543210
  times 512 - ($ - fx_image) db 0
image_end:

absolute image_end
alignb 4096
pml4:       resb 4096
pdpt:       resb 4096
pd_low:     resb 4096
pd_alias:   resb 4096
pd_apic:    resb 4096
idt:        resb 256 * 16
fx_area:    resb 512                        ; 16-byte aligned (follows 4 KiB-aligned tables)
xmm_tmp:    resb 8 * 16
cr_ref:     resb 16
dt_ref:     resb 16
dt_tmp:     resb 16
counter:    resd 1
ticks:      resd 1
last_t:     resd 1
line_base:  resd 1
pf_resume:  resd 1
pf_seen:    resd 1
to_resume:  resd 2                          ; far pointer: pf_resume, SEL_CODE32
alignb 16
            resb 8192
stack_top:
bss_end:
