; A multiboot test kernel for the small instructions of the x86-64-v2+ CPU model (issue 13), in
; 32-bit protected mode, printing one line per checked behaviour on COM1, then exiting through the
; debug-exit port with 0x21. A result is "-" when the instruction ran, else the vector it raised
; (":" and the error code for #GP).
; - "cpuid v2": the x86-64-v2 level's bits (SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT, LAHF_LM);
; - "cpuid": the feature bits (RDTSCP 80000001:EDX.27; 7.0: RDPID ECX.22, CLFLUSHOPT EBX.23,
;   CLWB EBX.24, FSGSBASE EBX.0, UMIP ECX.2);
; - "tsc_aux": WRMSR IA32_TSC_AUX, then RDMSR, RDTSCP's ECX and RDPID (#UD where CPUID has no
;   RDPID) read it back; RDTSCP's TSC does not run behind an earlier RDTSC ("order"); a CPU
;   without them prints the vectors instead (every instruction that may fault runs under TRY; a
;   fault elsewhere prints "unexpected fault" and exits with 0x31);
; - "tsc_aux hi": WRMSR TSC_AUX with bits 63:32 set (SDM: reserved, #GP(0)), and the value after;
; - "rdtscp cpl3": RDTSCP at CPL 3 without and with CR4.TSD;
; - "flush": CLFLUSHOPT, CLWB, CLFLUSH of a byte of RAM; "np fences": LFENCE/MFENCE/SFENCE with a
;   66 prefix (66 0F AE /6 register form is TPAUSE);
; - "fsgsbase 32": RDFSBASE with CR4.FSGSBASE set outside 64-bit mode (#UD);
; - "umip": SGDT SIDT SLDT STR SMSW at CPL 3 without CR4.UMIP, at CPL 3 with it, at CPL 0 with it.
; CPL 3 runs through a GDT of our own with ring-3 segments and a TSS (ESP0: a stack of its own);
; INT 0x80 comes back to CPL 0.
%include "lib/kernel32.inc"

SEL_CODE0 equ 0x08
SEL_DATA0 equ 0x10
SEL_CODE3 equ 0x18 | 3
SEL_DATA3 equ 0x20 | 3
SEL_TSS equ 0x28
MSR_TSC_AUX equ 0xc0000103
CR4_TSD equ 1 << 2
CR4_UMIP equ 1 << 11
CR4_FSGSBASE equ 1 << 16
NONE equ 0xff

; TRY insn: run one instruction; [last_vec] is then the vector it raised (NONE: none) and
; [last_err] its error code
%macro TRY 1
  mov dword [last_vec], NONE
  mov dword [last_err], 0
  mov dword [resume], %%after
  %1
%%after:
  mov dword [resume], 0                 ; a fault outside TRY is unexpected
%endmacro

; REC n: keep [last_vec]/[last_err] in results slot n (any CPL)
%macro REC 1
  push eax
  mov eax, [last_vec]
  mov [results + %1 * 8], eax
  mov eax, [last_err]
  mov [results + %1 * 8 + 4], eax
  pop eax
%endmacro

; SHOW: print the last result (after a space)
%macro SHOW 0
  mov eax, [last_vec]
  mov edx, [last_err]
  call putres
%endmacro

main:
  ; our GDT: flat ring-0 and ring-3 segments, a TSS
  mov eax, tss
  mov [gdt + SEL_TSS + 2], ax
  shr eax, 16
  mov [gdt + SEL_TSS + 4], al
  mov [gdt + SEL_TSS + 7], ah
  lgdt [gdtr]
  jmp SEL_CODE0:.cs
.cs:
  mov ax, SEL_DATA0
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  mov dword [tss + 4], kstack_top       ; ESP0
  mov dword [tss + 8], SEL_DATA0        ; SS0
  mov word [tss + 102], 104             ; no I/O bitmap
  mov ax, SEL_TSS
  ltr ax
  mov eax, ud_handler
  mov edi, 6
  call set_gate
  mov eax, gp_handler
  mov edi, 13
  call set_gate
  mov eax, back_to_ring0
  mov edi, 0x80
  call set_gate

  ; --- cpuid
  PRINT "cpuid:"
  mov eax, 0x80000001
  cpuid
  PRINT " rdtscp "
  bt edx, 27
  call putcf
  mov eax, 7
  xor ecx, ecx
  cpuid
  mov esi, ecx
  PRINT " rdpid "
  bt esi, 22
  call putcf
  PRINT " clflushopt "
  bt ebx, 23
  call putcf
  PRINT " clwb "
  bt ebx, 24
  call putcf
  PRINT " fsgsbase "
  bt ebx, 0
  call putcf
  PRINT " umip "
  bt esi, 2
  call putcf
  call newline

  ; --- cpuid v2: the x86-64-v2 level (1:ECX SSE3.0 SSSE3.9 CX16.13 SSE4_1.19 SSE4_2.20
  ; POPCNT.23; 80000001:ECX LAHF_LM.0)
  PRINT "cpuid v2:"
  mov eax, 1
  cpuid
  mov esi, ecx
  PRINT " sse3 "
  bt esi, 0
  call putcf
  PRINT " ssse3 "
  bt esi, 9
  call putcf
  PRINT " cx16 "
  bt esi, 13
  call putcf
  PRINT " sse4_1 "
  bt esi, 19
  call putcf
  PRINT " sse4_2 "
  bt esi, 20
  call putcf
  PRINT " popcnt "
  bt esi, 23
  call putcf
  mov eax, 0x80000001
  cpuid
  PRINT " lahf_lm "
  bt ecx, 0
  call putcf
  call newline

  ; --- tsc_aux: WRMSR, then RDMSR, RDTSCP, RDPID
  PRINT "tsc_aux:"
  mov ecx, MSR_TSC_AUX
  mov eax, 0x12345678
  xor edx, edx
  TRY wrmsr
  SHOW
  mov ecx, MSR_TSC_AUX
  TRY rdmsr
  call putval
  rdtsc
  mov [tsc0], eax
  mov [tsc0 + 4], edx
  mov ecx, 0xffffffff
  TRY rdtscp
  cmp dword [last_vec], NONE
  jne .no_order
  cmp edx, [tsc0 + 4]                   ; EDX:EAX >= tsc0 (unsigned, 64 bits)
  jne .hi_differs
  cmp eax, [tsc0]
.hi_differs:
  setae [order]
.no_order:
  mov eax, ecx
  call putval
  mov eax, 0xffffffff
  TRY {rdpid eax}                       ; #UD where CPUID says no RDPID
  call putval
  PRINT " order "
  movzx eax, byte [order]
  call putdec
  call newline

  ; --- tsc_aux hi: reserved bits 63:32
  PRINT "tsc_aux hi:"
  mov ecx, MSR_TSC_AUX
  mov eax, 1
  mov edx, 1
  TRY wrmsr
  SHOW
  mov ecx, MSR_TSC_AUX
  TRY rdmsr
  mov ebx, edx
  call putval
  mov eax, ebx
  call putval
  call newline

  ; --- rdtscp cpl3: without and with CR4.TSD
  PRINT "rdtscp cpl3:"
  mov eax, user_rdtscp
  call run_user
  call show_slot0
  mov eax, cr4
  or eax, CR4_TSD
  mov cr4, eax
  mov eax, user_rdtscp
  call run_user
  call show_slot0
  mov eax, cr4
  and eax, ~CR4_TSD
  mov cr4, eax
  call newline

  ; --- flush: CLFLUSHOPT, CLWB, CLFLUSH
  PRINT "flush:"
  TRY {clflushopt [buf]}
  SHOW
  TRY {clwb [buf + 3]}
  SHOW
  TRY {clflush [buf]}
  SHOW
  call newline
  PRINT "np fences:"
  TRY {db 0x66, 0x0f, 0xae, 0xe8}       ; 66 lfence
  SHOW
  TRY {db 0x66, 0x0f, 0xae, 0xf0}       ; 66 mfence: TPAUSE eax
  SHOW
  TRY {db 0x66, 0x0f, 0xae, 0xf8}       ; 66 sfence
  SHOW
  TRY lfence
  SHOW
  call newline

  ; --- fsgsbase outside 64-bit mode
  PRINT "fsgsbase 32:"
  mov eax, cr4
  or eax, CR4_FSGSBASE
  TRY {mov cr4, eax}
  SHOW
  TRY {db 0xf3, 0x0f, 0xae, 0xc0}       ; rdfsbase eax
  SHOW
  mov eax, cr4
  and eax, ~CR4_FSGSBASE
  mov cr4, eax
  call newline

  ; --- umip
  PRINT "umip cpl3 off:"
  mov eax, user_umip
  call run_user
  call show_umip
  mov eax, cr4
  or eax, CR4_UMIP
  TRY {mov cr4, eax}
  PRINT " set"
  SHOW
  call newline
  PRINT "umip cpl3 on:"
  mov eax, user_umip
  call run_user
  call show_umip
  call newline
  PRINT "umip cpl0 on:"
  call user_umip
  call show_umip
  call newline
  mov eax, cr4
  and eax, ~CR4_UMIP
  mov cr4, eax

  EXIT 0x21

; ---- CPL 3 -----------------------------------------------------------------------------------

; run_user: call the routine at EAX at CPL 3; returns here, at CPL 0, when it returns
run_user:
  mov [saved_esp], esp
  mov [user_fn], eax
  push SEL_DATA3
  push ustack_top
  pushfd
  push SEL_CODE3
  push user_entry
  iret
user_entry:
  mov ax, SEL_DATA3
  mov ds, ax
  mov es, ax
  call [user_fn]
  int 0x80
back_to_ring0:                          ; INT 0x80 (gate DPL 3): drop the frame, return from run_user
  mov ax, SEL_DATA0
  mov ds, ax
  mov es, ax
  mov esp, [saved_esp]
  ret

user_rdtscp:
  TRY rdtscp
  REC 0
  ret

user_umip:                              ; any CPL
  TRY {sgdt [buf]}
  REC 0
  TRY {sidt [buf]}
  REC 1
  TRY {sldt [buf]}
  REC 2
  TRY {str [buf]}
  REC 3
  TRY {smsw [buf]}
  REC 4
  ret

; ---- exception handlers: record, resume at [resume] ------------------------------------------

ud_handler:
  cmp dword [resume], 0
  je unexpected
  mov dword [last_vec], 6
  push eax
  mov eax, [resume]
  mov [esp + 4], eax
  pop eax
  iret

gp_handler:
  cmp dword [resume], 0
  je unexpected
  pop dword [last_err]
  mov dword [last_vec], 13
  push eax
  mov eax, [resume]
  mov [esp + 4], eax
  pop eax
  iret

unexpected:                             ; a fault outside TRY: say so, fail
  mov ax, SEL_DATA0
  mov ds, ax
  mov es, ax
  call newline
  PRINT "unexpected fault"
  call newline
  EXIT 0x31

; ---- output ------------------------------------------------------------------------------------

putval:                                 ; after TRY: " " and EAX in hex, or the result as putres
  cmp dword [last_vec], NONE
  je putsphex
  mov eax, [last_vec]
  mov edx, [last_err]
  jmp putres

putcf:                                  ; " 0" or "1" from CF (no space)
  setc al
  movzx eax, al
  jmp putdec

putsphex:                               ; " " and EAX in hex
  push eax
  mov al, ' '
  call putc
  pop eax
  jmp puthex

putres:                                 ; " -", " 6" or " 13:err" from EAX (vector), EDX (error code)
  push eax
  mov al, ' '
  call putc
  pop eax
  cmp eax, NONE
  jne .vec
  mov al, '-'
  jmp putc
.vec:
  push ebx
  mov ebx, eax
  call putdec
  cmp ebx, 13
  pop ebx
  jne .done
  mov al, ':'
  call putc
  mov eax, edx
  call putdec
.done:
  ret

show_slot0:
  mov eax, [results]
  mov edx, [results + 4]
  jmp putres

show_umip:
  push ecx
  push esi
  xor esi, esi
.next:
  mov eax, [results + esi * 8]
  mov edx, [results + esi * 8 + 4]
  call putres
  inc esi
  cmp esi, 5
  jb .next
  pop esi
  pop ecx
  ret

; ---- data --------------------------------------------------------------------------------------

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff                 ; 0x08 code, ring 0
  dq 0x00cf92000000ffff                 ; 0x10 data, ring 0
  dq 0x00cffa000000ffff                 ; 0x18 code, ring 3
  dq 0x00cff2000000ffff                 ; 0x20 data, ring 3
  dq 0x0000890000000067                 ; 0x28 32-bit TSS (base filled in by main)
gdt_end:
gdtr:
  dw gdt_end - gdt - 1
  dd gdt
align 8
tss: times 104 db 0
tsc0: dq 0
order: dd 0
last_vec: dd 0
last_err: dd 0
resume: dd 0
saved_esp: dd 0
user_fn: dd 0
results: times 8 dq 0
buf: times 16 db 0
align 16
  times 4096 db 0
kstack_top:
  times 4096 db 0
ustack_top:

KERNEL_END
